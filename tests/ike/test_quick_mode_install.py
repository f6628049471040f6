"""The Quick Mode responder hands its inbound SA over with message 2, its outbound SA
with message 3 (RFC 2409 5.5: the initiator may send once it sent message 3), and
withdraws the inbound one when no valid message 3 comes (vpnhub/ike/quick.py)."""

from __future__ import annotations

import pytest
from ike_harness import Client, Lab

from vpnhub.ike import events as ev
from vpnhub.ike import quick
from vpnhub.ike.sa import Datagram, IkeSA


def _up(lab: Lab) -> tuple[Client, IkeSA]:
    c = lab.add_client()
    c.sa.initiate(lab.now)
    lab.run()
    srv = lab.server_sa_for(c)
    assert c.sa.established and c.children and srv is not None
    return c, srv


def _message_1(lab: Lab, c: Client) -> list[Datagram]:
    """The client starts a rekey of its child; its message 1 reaches the concentrator,
    whose answer is held back (returned) instead of delivered."""
    c.sa.rekey_child(c.children[-1].spi_in, lab.now)
    _to_server(lab, c)
    back, lab._to_client = lab._to_client, []
    return back


def _to_server(lab: Lab, c: Client) -> list[Datagram]:
    """What the client queued, delivered to the concentrator (returned too)."""
    c.driver.service(c.sa, lab.now)
    out, lab._to_server = lab._to_server, []
    for _, d in out:
        _deliver(lab, c, d)
    return [d for _, d in out]


def _deliver(lab: Lab, c: Client, d: Datagram) -> None:
    lab.server.receive(d.data, c.public(d.local_port, lab.port_alloc), d.remote[1],
                       d.transport, lab.now)


def _again(lab: Lab, c: Client, d: Datagram) -> list[Datagram]:
    """`d` once more from the client (a retransmission); the answers, held back."""
    _deliver(lab, c, d)
    back, lab._to_client = lab._to_client, []
    return back


def _of(lab: Lab, srv: IkeSA, kind: type, since: int = 0) -> list:  # type: ignore[type-arg]
    return [e for s, e in lab.server_events[since:] if s is srv and isinstance(e, kind)]


def test_inbound_goes_in_with_message_2_and_outbound_with_message_3() -> None:
    lab = Lab()
    c, srv = _up(lab)
    mark = len(lab.server_events)
    order: list[str] = []  # what the concentrator's driver did, in order
    on_event, send = lab.server._on_event, lab.server._send
    lab.server._on_event = lambda sa, e, now: (order.append(type(e).__name__),
                                               on_event(sa, e, now))[-1]
    lab.server._send = lambda sa, d: (order.append("send"), send(sa, d))[-1]
    msg2 = _message_1(lab, c)
    ready = _of(lab, srv, ev.ChildSAInboundReady, mark)
    assert len(msg2) == 1 and len(ready) == 1
    assert _of(lab, srv, ev.ChildSAEstablished, mark) == []  # no outbound before message 3
    # the data plane gets the inbound SA before message 2 leaves
    assert order.index("ChildSAInboundReady") < order.index("send")
    lab._to_client = msg2
    lab.run()
    done = _of(lab, srv, ev.ChildSAEstablished, mark)
    assert len(done) == 1 and done[0].inbound_early
    assert (done[0].spi_in, done[0].enc_key_in, done[0].auth_key_in) == (
        ready[0].spi_in, ready[0].enc_key_in, ready[0].auth_key_in)
    assert len(_of(lab, srv, ev.ChildSAInboundReady, mark)) == 1  # installed once
    mine = c.children[-1]  # the client encrypts with the keys the concentrator installed
    assert (mine.spi_out, mine.enc_key_out, mine.auth_key_out) == (
        ready[0].spi_in, ready[0].enc_key_in, ready[0].auth_key_in)
    assert mine.rekey_of is not None and done[0].rekey_of is not None
    assert _of(lab, srv, ev.ChildSAAbandoned) == []
    assert srv.exchanges == {} and srv.pending_quick_inbound() == []


def test_retransmitted_message_1_installs_nothing_twice() -> None:
    lab = Lab()
    c, srv = _up(lab)
    mark = len(lab.server_events)
    c.sa.rekey_child(c.children[-1].spi_in, lab.now)
    [msg1] = _to_server(lab, c)
    first, lab._to_client = lab._to_client, []
    assert [d.data for d in _again(lab, c, msg1)] == [d.data for d in first]  # same answer
    assert len(_of(lab, srv, ev.ChildSAInboundReady, mark)) == 1
    lab._to_client = first
    lab.run()
    assert len(_of(lab, srv, ev.ChildSAEstablished, mark)) == 1
    # long after, when the answer cache forgot it: no second Quick Mode either
    srv._last_in.clear()
    assert _again(lab, c, msg1) == []
    assert srv.drops["quick_mode_replay"] == 1
    assert len(_of(lab, srv, ev.ChildSAInboundReady, mark)) == 1 and srv.exchanges == {}


def test_no_message_3_withdraws_the_inbound_sa_when_retransmissions_run_out() -> None:
    lab = Lab()
    c, srv = _up(lab)
    mark = len(lab.server_events)
    _message_1(lab, c)
    lab.clients.remove(c)  # the peer is gone: message 2 and its retransmissions get lost
    ready = _of(lab, srv, ev.ChildSAInboundReady, mark)
    assert len(ready) == 1
    for _ in range(30):
        lab.advance(10)
    gone = _of(lab, srv, ev.ChildSAAbandoned, mark)
    assert [(e.spi_in, e.reason) for e in gone] == [(ready[0].spi_in, "quick_mode_abandoned")]
    assert srv.drops["quick_mode_abandoned"] == 1
    kinds = [type(e) for _, e in lab.server_events[mark:] if _ is srv]
    assert kinds.index(ev.ChildSAAbandoned) < kinds.index(ev.SADeleted)
    assert _of(lab, srv, ev.ChildSAEstablished, mark) == []


def test_wrong_hash_3_withdraws_the_inbound_sa_and_deletes_it_at_the_peer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    lab = Lab()
    c, srv = _up(lab)
    mark, client_mark = len(lab.server_events), len(c.events)
    msg2 = _message_1(lab, c)
    with monkeypatch.context() as m:  # a peer that answers message 2 with a wrong HASH(3)
        m.setattr(quick, "qm_hash3", lambda *a: bytes(20))
        for d in msg2:
            lab._deliver_to_client(d)
    lab.run()
    ready = _of(lab, srv, ev.ChildSAInboundReady, mark)
    gone = _of(lab, srv, ev.ChildSAAbandoned, mark)
    assert [e.spi_in for e in gone] == [ready[0].spi_in]
    assert srv.drops["hash_mismatch"] == 1 and srv.drops["quick_mode_abandoned"] == 1
    assert _of(lab, srv, ev.ChildSAEstablished, mark) == [] and srv.established
    # the initiator installed its side after message 2: the DELETE takes it away
    deleted = [e for e in c.events[client_mark:] if isinstance(e, ev.ChildSADeleted)]
    assert [e.spi_out for e in deleted] == [ready[0].spi_in]


def test_pending_quick_modes_are_bounded_and_all_go_with_the_sa() -> None:
    lab = Lab()
    c, srv = _up(lab)
    srv.config.max_pending_quick_modes = 3
    mark = len(lab.server_events)
    lab.clients.remove(c)  # a peer that never sends message 3
    for _ in range(5):
        c.sa.start_quick_mode(lab.now)
    _to_server(lab, c)
    ready = _of(lab, srv, ev.ChildSAInboundReady, mark)
    assert len(ready) == 3 and srv.drops["quick_mode_limit"] == 2
    assert sorted(srv.pending_quick_inbound()) == sorted(e.spi_in for e in ready)
    for _ in range(30):
        lab.advance(10)
    gone = _of(lab, srv, ev.ChildSAAbandoned, mark)
    assert sorted(e.spi_in for e in gone) == sorted(e.spi_in for e in ready)
    assert lab.server_sa_for(c) is None
