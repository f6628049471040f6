"""Issue 17: the cluster's virtual address sends a client to another member with the
Cisco load-balance notify (40501) instead of the first XAUTH request, as vpnc expects
it (vpnc.c do_phase2_notice_check): an informational message under the new phase 1
SA, HASH(1) then N, 4 bytes of data, the member's address; the SA then ends quietly."""

from __future__ import annotations

import ipaddress

from ike_harness import Lab

from vpnhub.concentrator.core import follows_redirects
from vpnhub.crypto.keys import info_hash
from vpnhub.ike import events as ev
from vpnhub.ike import informational
from vpnhub.ike.endpoint import Limits
from vpnhub.ike.informational import REDIRECT_LINGER
from vpnhub.ike.sa import Datagram, IkeSA
from vpnhub.ike.state import SaState
from vpnhub.ike.transitions import State
from vpnhub.ike.transport import Transport
from vpnhub.wire.constants import Doi, ExchangeType, NotifyType, ProtocolId
from vpnhub.wire.message import decode_header
from vpnhub.wire.payloads import HashPayload, NotifyPayload

MEMBER = ipaddress.IPv4Address("198.51.100.12")


def _redirecting_lab(target: ipaddress.IPv4Address | None = MEMBER) -> tuple[Lab, list[Datagram]]:
    lab = Lab()
    asked: list[SaState] = []

    def redirect_for(sa: SaState) -> ipaddress.IPv4Address | None:
        asked.append(sa)
        return target

    lab.server_redirect = redirect_for
    sent: list[Datagram] = []
    deliver = lab._deliver_to_client

    def record(d: Datagram) -> None:
        sent.append(d)
        deliver(d)

    lab._deliver_to_client = record  # type: ignore[method-assign]
    return lab, sent


def _informationals(sent: list[Datagram]) -> list[Datagram]:
    return [d for d in sent if decode_header(d.data).exchange == ExchangeType.INFORMATIONAL]


def _open(client_sa: IkeSA, d: Datagram) -> tuple[int, list[object]]:
    hdr = decode_header(d.data)
    msg, _ = client_sa._open(hdr, d.data)
    return hdr.message_id, list(msg.payloads)


def test_redirect_instead_of_xauth() -> None:
    lab, sent = _redirecting_lab()
    c = lab.add_client()  # behind a PAT: message 3 and the notify go over UDP 4500
    c.sa.initiate(lab.now)
    lab.run()
    server_types = lab.server_event_types()
    assert "Redirected" in server_types and "XauthCredentials" not in server_types
    assert not any(isinstance(e, ev.XauthRequested) for e in c.events)
    infos = _informationals(sent)
    assert len(infos) == 1
    d = infos[0]
    assert d.local_port == 4500 and d.remote[1] != 500  # where message 3 came from
    hdr = decode_header(d.data)
    assert hdr.flags == 1  # encrypted, nothing else: vpnc wants exactly ISAKMP_FLAG_E
    mid, payloads = _open(c.sa, d)
    assert mid != 0
    assert len(payloads) == 2
    h, n = payloads
    assert isinstance(h, HashPayload) and isinstance(n, NotifyPayload)
    # RFC 2409 5.7: HASH(1) = prf(SKEYID_a, M-ID | N)
    assert c.sa.hash is not None
    assert h.data == info_hash(c.sa.hash, c.sa.skeyid_a, mid, n.raw)
    assert n.notify_type == NotifyType.UNITY_LOAD_BALANCE == 40501
    assert n.doi == Doi.IPSEC and n.protocol_id == ProtocolId.ISAKMP
    assert n.spi == c.sa.icookie + c.sa.rcookie
    assert n.data == MEMBER.packed and len(n.data) == 4
    srv = lab.server_sa_for(c)
    assert srv is not None and srv.redirected_to == MEMBER
    assert [e.target for _, e in lab.server_events if isinstance(e, ev.Redirected)] == [MEMBER]


def test_redirected_sa_repeats_then_ends_quietly() -> None:
    lab, sent = _redirecting_lab()
    to_server: list[tuple[bytes, tuple[str, int], int]] = []
    receive = lab.server.receive

    def record(data: bytes, remote: tuple[str, int], local_port: int, transport: Transport,
               now: float) -> IkeSA | None:
        to_server.append((data, remote, local_port))
        return receive(data, remote, local_port, transport, now)

    lab.server.receive = record  # type: ignore[method-assign]
    c = lab.add_client()
    c.sa.initiate(lab.now)
    lab.run()
    srv = lab.server_sa_for(c)
    assert srv is not None
    before = len(_informationals(sent))
    # vpnc did not get the notify and sends message 3 again (it retransmits): the
    # same notify again, from the SA kept for that
    am3, src, port = to_server[-1]
    assert decode_header(am3).exchange == ExchangeType.AGGRESSIVE
    receive(am3, src, port, srv.transport, lab.now)
    lab.run()
    again = _informationals(sent)
    assert len(again) == before + 1 and again[-1].data == again[-2].data
    # the XAUTH timer never fires, no DELETE goes out, the SA ends after the linger
    assert srv.get_timer() == srv.redirect_ends_at
    lab.advance(REDIRECT_LINGER + 1)
    assert srv.state is State.DELETED
    assert len(_informationals(sent)) == before + 1  # no DELETE
    ends = [e for s, e in lab.server_events if isinstance(e, ev.SADeleted) and s is srv]
    assert len(ends) == 1 and "redirected" in ends[0].reason and not ends[0].by_peer
    assert not any(isinstance(e, ev.NegotiationFailed) for s, e in lab.server_events if s is srv)
    assert lab.server_sa_for(c) is None


def test_no_target_means_xauth_as_usual() -> None:
    lab, _sent = _redirecting_lab(target=None)
    c = lab.add_client()
    c.sa.initiate(lab.now)
    lab.run()
    assert c.sa.established and len(c.children) == 1
    assert "Redirected" not in lab.server_event_types()


# ------------------------------------------------------------ the initiator's side
def _events(c: object, kind: type) -> list:  # type: ignore[type-arg]
    return [e for e in c.events if isinstance(e, kind)]  # type: ignore[attr-defined]


def test_client_follows_the_notify() -> None:
    """A client that follows redirects says so as vpnc does (its Cisco client vendor
    ID in message 3), is redirected, gets RedirectRequested and ends its SA quietly."""
    lab, _sent = _redirecting_lab()
    c = lab.add_client(follow_redirects=True)
    c.sa.initiate(lab.now)
    lab.run()
    srv = lab.server_sa_for(c)
    assert srv is not None and srv.peer_cisco_client
    assert follows_redirects(srv)  # the concentrator's rule (it announces fragmentation)
    assert [e.target for e in _events(c, ev.RedirectRequested)] == [MEMBER]
    assert not _events(c, ev.RedirectRefused) and not _events(c, ev.XauthRequested)
    assert c.sa.state is State.DELETED
    ends = _events(c, ev.SADeleted)
    assert len(ends) == 1 and not ends[0].by_peer and str(MEMBER) in ends[0].reason
    # no DELETE went back (it would end the master's SA now): the master forgets the
    # SA by itself after the linger (vpnc sends none)
    assert srv.state is State.ESTABLISHED and srv.redirect_ends_at is not None


def _waiting_client() -> tuple[Lab, IkeSA, IkeSA]:
    """A client that finished phase 1 and waits for XAUTH: the master's own notify
    was lost (dropped here), so what the test sends next is the first it sees."""
    return _waiting(follow_redirects=True)


def _waiting(*, follow_redirects: bool) -> tuple[Lab, IkeSA, IkeSA]:
    lab, _sent = _redirecting_lab()
    deliver = lab._deliver_to_client
    lost = [False]

    def lose_first_notify(d: Datagram) -> None:
        if not lost[0] and decode_header(d.data).exchange == ExchangeType.INFORMATIONAL:
            lost[0] = True
            return
        deliver(d)

    lab._deliver_to_client = lose_first_notify  # type: ignore[method-assign]
    c = lab.add_client(follow_redirects=follow_redirects)
    c.sa.initiate(lab.now)
    lab.run()
    srv = lab.server_sa_for(c)
    assert lost[0] and srv is not None and c.sa.established
    c.events.clear()
    return lab, c.sa, srv


def _notify(srv: IkeSA, data: bytes) -> NotifyPayload:
    return NotifyPayload(NotifyType.UNITY_LOAD_BALANCE, ProtocolId.ISAKMP,
                         srv.icookie + srv.rcookie, data)


def _refused(lab: Lab, client_sa: IkeSA, reason: str) -> None:
    c = lab.clients[0]
    refused = _events(c, ev.RedirectRefused)
    assert [e.reason for e in refused] == [reason]
    assert "refused" in refused[0].detail
    assert not _events(c, ev.RedirectRequested)
    assert client_sa.drops[reason] == 1
    assert client_sa.state is State.ESTABLISHED  # the SA goes on, nothing followed


def test_a_good_notify_while_waiting_for_xauth_is_followed() -> None:
    lab, sa, srv = _waiting_client()
    informational._send_info(srv, [_notify(srv, MEMBER.packed)], lab.now)
    lab.run()
    assert [e.target for e in _events(lab.clients[0], ev.RedirectRequested)] == [MEMBER]
    assert sa.state is State.DELETED


def test_malformed_targets_are_refused() -> None:
    for data in (b"", b"\xc6\x33\x64", MEMBER.packed + b"\x00", bytes(4),
                 ipaddress.IPv4Address("224.0.0.5").packed, b"\xff\xff\xff\xff",
                 ipaddress.IPv4Address("127.0.0.1").packed):
        lab, sa, srv = _waiting_client()
        informational._send_info(srv, [_notify(srv, data)], lab.now)
        lab.run()
        _refused(lab, sa, "redirect_malformed")


def test_a_notify_with_a_wrong_hash_is_refused() -> None:
    lab, sa, srv = _waiting_client()
    n = _notify(srv, MEMBER.packed)
    assert srv.hash is not None
    bad = bytes(len(info_hash(srv.hash, srv.skeyid_a, 1, n.raw or b"")))
    srv.send(ExchangeType.INFORMATIONAL, [HashPayload(bad), n],
             message_id=srv.new_message_id(), encrypt=True, expect_reply=False, now=lab.now)
    lab.run()
    _refused(lab, sa, "redirect_bad_hash")


def test_an_unencrypted_notify_is_refused() -> None:
    lab, sa, srv = _waiting_client()
    srv.send(ExchangeType.INFORMATIONAL, [_notify(srv, MEMBER.packed)], message_id=0,
             expect_reply=False, now=lab.now)
    lab.run()
    _refused(lab, sa, "redirect_unencrypted")


def test_a_notify_after_xauth_or_unwanted_is_refused() -> None:
    # after the login: a session is not moved away under the user
    lab = Lab()
    c = lab.add_client(follow_redirects=True)
    c.sa.initiate(lab.now)
    lab.run()
    srv = lab.server_sa_for(c)
    assert srv is not None and len(c.children) == 1
    c.events.clear()
    informational._send_info(srv, [_notify(srv, MEMBER.packed)], lab.now)
    lab.run()
    _refused(lab, c.sa, "redirect_unexpected")
    # a client not configured to follow (IkeConfig.follow_redirects off) refuses it too
    lab2, sa2, srv2 = _waiting(follow_redirects=False)
    informational._send_info(srv2, [_notify(srv2, MEMBER.packed)], lab2.now)
    lab2.run()
    _refused(lab2, sa2, "redirect_unexpected")
    # and is not taken for one that follows by the concentrator's rule
    assert not srv2.peer_cisco_client and not follows_redirects(srv2)


def test_lingering_redirects_do_not_count_against_max_sessions() -> None:
    """A master redirecting a burst keeps each redirected SA for REDIRECT_LINGER s to
    repeat the notify; those are not sessions: with max_sessions = 2, three clients
    in a row are all redirected (the bench saw a master refuse first messages)."""
    lab, sent = _redirecting_lab()
    lab.endpoint.limits = Limits(sessions_total=2)
    clients = [lab.add_client() for _ in range(3)]
    for c in clients:
        c.sa.initiate(lab.now)
        lab.run()
    assert len(_informationals(sent)) == 3
    assert lab.endpoint.drops["sessions_total"] == 0
    # bounded all the same: at most as many lingering again as max_sessions
    more = [lab.add_client() for _ in range(2)]
    for c in more:
        c.sa.initiate(lab.now)
        lab.run()
    assert lab.endpoint.drops["sessions_total"] >= 1
