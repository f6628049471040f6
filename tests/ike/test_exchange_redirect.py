"""Issue 17: the cluster's virtual address sends a client to another member with the
Cisco load-balance notify (40501) instead of the first XAUTH request, as vpnc expects
it (vpnc.c do_phase2_notice_check): an informational message under the new phase 1
SA, HASH(1) then N, 4 bytes of data, the member's address; the SA then ends quietly."""

from __future__ import annotations

import ipaddress

from ike_harness import Lab

from vpnhub.crypto.keys import info_hash
from vpnhub.ike import events as ev
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
