"""The core installs a Quick Mode's inbound SA with message 2 and its outbound SA with
message 3, and removes the inbound one when message 3 never comes (RFC 2409 5.5: the
initiator may send on the new SA right after its message 3; vpnhub/ike/quick.py)."""

from __future__ import annotations

from core_harness import CoreRig, Pc, config_text

from vpnhub.ike import events as ev
from vpnhub.net.messages import AddInbound, AddOutbound, RemoveSA


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
