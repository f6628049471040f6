"""The core installs a Quick Mode's inbound SA with message 2 and its outbound SA with
message 3, and removes the inbound one when message 3 never comes (RFC 2409 5.5: the
initiator may send on the new SA right after its message 3; vpnhub/ike/quick.py)."""

from __future__ import annotations

from core_harness import CoreRig, Pc, config_text

from vpnhub.ike import events as ev
from vpnhub.ike.sa import Datagram
from vpnhub.net.messages import AddInbound, AddOutbound, RemoveSA
from vpnhub.wire.constants import ExchangeType


def _rekey_message_1(rig: CoreRig, pc: Pc) -> ev.ChildSAEstablished:
    """The client rekeys its child; only its message 1 reaches the core (the answer
    waits). Returns the child being replaced."""
    old = [e for e in pc.events if isinstance(e, ev.ChildSAEstablished)][-1]
    assert pc.driver is not None
    pc.sa.rekey_child(old.spi_in, rig.now)
    pc.driver.service(pc.sa, rig.now)
    inbox, rig._inbox = rig._inbox, []
    assert len(inbox) == 1
    rig.core.receive(*inbox[0])
    return old


def _new_inbound(rig: CoreRig, before: set[int]) -> int:
    [spi] = set(rig.dp.inbound) - before
    return spi


def test_rekey_inbound_sa_before_message_2_outbound_after_message_3() -> None:
    rig = CoreRig.from_text(config_text())
    pc = rig.connect(rig.add_pc("vpnuser1"))
    assert pc.up
    before = set(rig.dp.inbound)
    outbound_before = set(rig.dp.outbound)
    _rekey_message_1(rig, pc)
    spi_in = _new_inbound(rig, before)  # installed, message 2 not even delivered yet
    assert set(rig.dp.outbound) == outbound_before  # nothing sent on an unconfirmed SA
    assert rig.core.spi_owner[spi_in] == pc.sa.cookies
    rig.settle()  # message 2 to the client, its message 3 back
    new = [e for e in pc.events if isinstance(e, ev.ChildSAEstablished)][-1]
    assert new.spi_out == spi_in  # the client sends on the SA installed with message 2
    assert new.spi_in in rig.dp.outbound
    assert [c.sa.spi for c in rig.commands(AddInbound)].count(spi_in) == 1  # once
    assert [c.sa.spi for c in rig.commands(AddOutbound)].count(new.spi_in) == 1
    assert rig.lines("rekeyed:")
    s = rig.core.sessions.all()[0]
    assert spi_in in s.children


def test_inbound_sa_of_an_unanswered_message_2_is_removed() -> None:
    rig = CoreRig.from_text(config_text())
    pc = rig.connect(rig.add_pc("vpnuser1"))
    before = set(rig.dp.inbound)
    _rekey_message_1(rig, pc)
    spi_in = _new_inbound(rig, before)
    rig.pcs.remove(pc)  # the client is gone: message 2 and its retransmissions get lost
    pc.ports.clear()
    rig.advance(300)
    assert spi_in in [c.spi for c in rig.commands(RemoveSA)]
    assert spi_in not in rig.dp.inbound and spi_in not in rig.core.spi_owner
    assert rig.lines(f"inbound IPsec SA {spi_in:08x} removed")
    assert rig.dp.inbound == {} and rig.dp.outbound == {}  # the session went with it


def _timeline(rig: CoreRig) -> list[tuple[int, bytes]]:
    """(data-plane commands issued so far, Quick Mode message ID) of every Quick Mode
    message the core sends from now on: where each went out among the commands."""
    sent: list[tuple[int, bytes]] = []
    send = rig._send

    def recording(d: Datagram) -> None:
        if d.data[18] == ExchangeType.QUICK_MODE:  # RFC 2408 3.1: the exchange type
            sent.append((len(rig.dp.commands), d.data[20:24]))
        send(d)

    rig._send = recording  # type: ignore[method-assign]
    return sent


def _index(rig: CoreRig, kind: type, spi: int) -> int:
    [i] = [i for i, c in enumerate(rig.dp.commands) if isinstance(c, kind) and c.sa.spi == spi]
    return i


def test_a_quick_mode_we_start_hands_its_outbound_sa_over_after_message_3() -> None:
    """Issue 16: vpnc keeps one SA pair and answers ESP on an SA whose message 3 it has
    not read with "unknown spi": the concentrator's rekey sends message 3 first, then
    adds the outbound SA; its inbound SA goes in before (the peer's ESP follows it)."""
    rig = CoreRig.from_text(config_text())
    pc = rig.connect(rig.add_pc("vpnuser1"))
    ours = rig.core.endpoint.get(*pc.sa.cookies)
    assert ours is not None and pc.up
    old = next(iter(ours.children.values()))
    sent = _timeline(rig)
    ours.rekey_child(old.spi_in, rig.now)
    rig.core._service(ours)
    rig.settle()  # message 1 to the client, its message 2 back, our message 3
    new = [c for c in ours.children.values() if c.spi_in != old.spi_in]
    assert len(new) == 1 and new[0].we_initiated
    [(_, mid), (at_3, mid_3)] = sent  # message 1 and message 3 (same message ID)
    assert mid == mid_3
    assert _index(rig, AddInbound, new[0].spi_in) < at_3  # inbound before message 3
    assert _index(rig, AddOutbound, new[0].spi_out) >= at_3  # outbound after it
    assert new[0].spi_out in rig.dp.outbound and rig.lines("rekeyed:")


def test_a_quick_mode_we_answer_installs_inbound_before_message_2() -> None:
    """The responder's order (RFC 2409 5.5): inbound SA before message 2 leaves, the
    outbound one once message 3 came."""
    rig = CoreRig.from_text(config_text())
    pc = rig.connect(rig.add_pc("vpnuser1"))
    sent = _timeline(rig)
    before = set(rig.dp.inbound)
    _rekey_message_1(rig, pc)
    spi_in = _new_inbound(rig, before)
    [(at_2, _)] = sent
    assert _index(rig, AddInbound, spi_in) < at_2
    rig.settle()
    new = [e for e in pc.events if isinstance(e, ev.ChildSAEstablished)][-1]
    assert _index(rig, AddOutbound, new.spi_in) >= at_2
