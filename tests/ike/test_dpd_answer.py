"""The lean R-U-THERE answer (ike/dpdanswer.py, issue 13) against the general path.

The same received R-U-THERE, on two copies of one established server SA, once
through `dpdanswer` and once through the general informational path, must
leave the same bytes on the wire and the same state; bad input is dropped and
counted the same way (RFC 2409 5.7 HASH(1), RFC 3706 7 sequence numbers).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from collections.abc import Callable

import pytest
from ike_harness import Lab

from vpnhub.ike import dpdanswer, informational
from vpnhub.ike import events as ev
from vpnhub.ike.sa import IkeSA
from vpnhub.ike.transport import Transport

QUIET = 5  # a log severity below the decode lines (8): what the concentrator runs with


def _up(lab: Lab, severity: int = QUIET):  # type: ignore[no-untyped-def]
    c = lab.add_client()
    c.sa.initiate(lab.now)
    lab.run()
    srv = lab.server_sa_for(c)
    assert c.sa.established and srv is not None
    srv.config = dataclasses.replace(srv.config, log_severity=severity)
    return c, srv


def _r_u_there(c, lab: Lab) -> tuple[bytes, tuple[str, int]]:  # type: ignore[no-untyped-def]
    """The client's next R-U-THERE as the server receives it (marker stripped)."""
    c.sa.send_dpd(lab.now)
    (d,) = c.sa.datagrams_to_send()
    return d.data, c.public(d.local_port, lab.port_alloc)


def _counting_rng() -> Callable[[int], bytes]:
    n = itertools.count(0x1000)
    return lambda size: next(n).to_bytes(size, "big")


def _state(sa: IkeSA) -> dict[str, object]:
    return {"out": [d.data for d in sa.datagrams_to_send()],
            "events": [type(e).__name__ for e in list(sa._events)],
            "last_in": dict(sa._last_in), "drops": dict(sa.drops), "stats": dict(sa.stats),
            "mids": bytes(sa._used_message_ids._buf or b""), "remote": sa.remote,
            "last_heard": sa.last_heard, "dpd_next_at": sa.dpd_next_at,
            "peer_seq": sa.dpd_peer_seq, "pending": dict(sa._pending)}


def _both_ways(monkeypatch: pytest.MonkeyPatch, srv: IkeSA, data: bytes,
               src: tuple[str, int], now: float) -> tuple[dict[str, object], dict[str, object]]:
    """`data` received by a copy of `srv` through the lean path and by another copy
    through the general one (same message IDs drawn), and what each left."""
    srv.datagrams_to_send()
    srv._events.clear()
    states = []
    for lean in (True, False):
        sa = copy.deepcopy(srv)
        sa.config = dataclasses.replace(sa.config, rng=_counting_rng())
        with monkeypatch.context() as m:
            if not lean:
                m.setattr(dpdanswer, "answer", lambda *a: False)
            calls = []
            real = dpdanswer.answer

            def spy(*a, _real=real, _calls=calls):  # type: ignore[no-untyped-def]
                _calls.append(1)
                return _real(*a)

            if lean:
                m.setattr(dpdanswer, "answer", spy)
            sa.receive(data, src, 4500, now, Transport.NATT)
            if lean:
                assert calls
        states.append(_state(sa))
    return states[0], states[1]


def test_lean_answer_is_the_general_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    lab = Lab()
    c, srv = _up(lab)
    lab.now += 40
    data, src = _r_u_there(c, lab)
    lean, general = _both_ways(monkeypatch, srv, data, src, lab.now)
    assert lean == general
    assert len(lean["out"]) == 1 and lean["events"] == ["KeepaliveReceived"]  # type: ignore[arg-type]
    assert lean["last_heard"] == lab.now and lean["drops"] == {}


def test_lean_answer_follows_a_new_nat_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    lab = Lab()
    c, srv = _up(lab)
    data, _ = _r_u_there(c, lab)
    lean, general = _both_ways(monkeypatch, srv, data, ("203.0.113.78", 40000), lab.now)
    assert lean == general and lean["remote"] == ("203.0.113.78", 40000)


def test_r_u_there_answered_through_the_driver_and_acked() -> None:
    lab = Lab()
    c, srv = _up(lab)
    before = srv.stats["messages_sent"]
    c.sa.send_dpd(lab.now)
    lab.run()
    acks = [e for e in c.events if isinstance(e, ev.DpdAck)]
    assert [a.sequence for a in acks] == [c.sa.dpd_seq] and c.sa.dpd_outstanding == 0
    assert srv.stats["messages_sent"] == before + 1 and srv.dpd_peer_seq == c.sa.dpd_seq


@pytest.mark.parametrize("lean", [True, False])
def test_bad_hash_is_dropped_and_counted(monkeypatch: pytest.MonkeyPatch, lean: bool) -> None:
    lab = Lab()
    c, srv = _up(lab)
    if not lean:
        monkeypatch.setattr(dpdanswer, "answer", lambda *a: False)
    heard = srv.last_heard
    lab.now += 10
    with monkeypatch.context() as m:  # the client signs with a wrong HASH(1)
        m.setattr(informational, "info_hash", lambda *a: bytes(20))
        data, src = _r_u_there(c, lab)
    srv.receive(data, src, 4500, lab.now, Transport.NATT)
    assert srv.drops["hash_mismatch"] == 1
    assert srv.datagrams_to_send() == [] and srv.last_heard == heard
    assert not any(isinstance(e, ev.KeepaliveReceived) for e in srv._events)


@pytest.mark.parametrize("lean", [True, False])
def test_older_sequence_is_a_replay(monkeypatch: pytest.MonkeyPatch, lean: bool) -> None:
    """RFC 3706 7: an R-U-THERE older than one answered proves nothing; the same
    number again (vpnc's retry under a new message ID) is answered."""
    lab = Lab()
    c, srv = _up(lab)
    if not lean:
        monkeypatch.setattr(dpdanswer, "answer", lambda *a: False)
    for _ in range(2):
        data, src = _r_u_there(c, lab)
        srv.receive(data, src, 4500, lab.now, Transport.NATT)
    assert len(srv.datagrams_to_send()) == 2
    heard = srv.last_heard
    c.sa.dpd_seq -= 2  # the next one repeats the first number
    lab.now += 5
    data, src = _r_u_there(c, lab)
    srv.receive(data, src, 4500, lab.now, Transport.NATT)
    assert srv.drops["dpd_stale_sequence"] == 1
    assert srv.datagrams_to_send() == [] and srv.last_heard == heard
    c.sa.dpd_seq += 1  # a retry of the newest one: answered again
    data, src = _r_u_there(c, lab)
    srv.receive(data, src, 4500, lab.now, Transport.NATT)
    assert len(srv.datagrams_to_send()) == 1 and srv.last_heard == lab.now


def test_sequence_wraps_around() -> None:
    lab = Lab()
    c, srv = _up(lab)
    c.sa.dpd_seq = 0xFFFFFFFE
    for _ in range(3):  # 0xffffffff, 0, 1: each newer than the one before
        data, src = _r_u_there(c, lab)
        srv.receive(data, src, 4500, lab.now, Transport.NATT)
    assert len(srv.datagrams_to_send()) == 3 and srv.dpd_peer_seq == 1
    assert srv.drops == {}


@pytest.mark.parametrize("lean", [True, False])
def test_repeated_r_u_there_is_a_retransmission(monkeypatch: pytest.MonkeyPatch,
                                                lean: bool) -> None:
    """The same message again (a replay, or the network's duplicate) is counted and
    not answered on either path: the answer went under its own message ID (RFC 2409
    5.7), and a client that lost it asks again under a new one."""
    lab = Lab()
    c, srv = _up(lab)
    if not lean:
        monkeypatch.setattr(dpdanswer, "answer", lambda *a: False)
    data, src = _r_u_there(c, lab)
    srv.receive(data, src, 4500, lab.now, Transport.NATT)
    assert len(srv.datagrams_to_send()) == 1
    srv.receive(data, src, 4500, lab.now + 1, Transport.NATT)
    assert srv.datagrams_to_send() == [] and srv.drops["retransmission"] == 1
    assert srv.last_heard == lab.now


def test_decode_logging_takes_the_general_path(monkeypatch: pytest.MonkeyPatch) -> None:
    lab = Lab()
    c, srv = _up(lab, severity=9)
    data, src = _r_u_there(c, lab)
    srv._events.clear()
    srv.receive(data, src, 4500, lab.now, Transport.NATT)
    lines = [e.text for e in srv._events if isinstance(e, ev.LogLine)]
    assert any("RECEIVED <<<" in t for t in lines) and any("SENDING >>>" in t for t in lines)
    assert len(srv.datagrams_to_send()) == 1


def test_other_notifies_take_the_general_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Cisco keepalive notify is not an R-U-THERE: untouched by the lean path."""
    lab = Lab()
    c, srv = _up(lab)
    informational.send_notify(c.sa, 40500, lab.now)
    (d,) = c.sa.datagrams_to_send()
    assert not dpdanswer.answer(srv, d.data, c.public(d.local_port, lab.port_alloc),
                                4500, lab.now)
    srv.receive(d.data, c.public(d.local_port, lab.port_alloc), 4500, lab.now,
                Transport.NATT)
    assert any(isinstance(e, ev.KeepaliveReceived) and e.kind == "cisco-40500"
               for e in srv._events)
    assert srv.datagrams_to_send() == []
