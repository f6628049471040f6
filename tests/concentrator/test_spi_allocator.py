"""Issue 16: the concentrator draws inbound SPIs through `spi_allocator`, so that the
kernel steers each SA's ESP to the data-plane worker that will own it.

In memory (tests/concentrator/core_harness.py): real initiator IkeSAs as clients,
the SPIs checked where an operator sees them, in the data plane's installed SAs.
"""

from __future__ import annotations

import itertools

from core_harness import CoreRig, Pc, config_text

from vpnhub.esp.spi import spi_for_worker
from vpnhub.ike import events as ev
from vpnhub.ike.sa import Address
from vpnhub.net.messages import AddInbound, SaExhausted

WORKERS = 3


class Allocator:
    """Round robin over the workers; remembers who asked for what."""

    def __init__(self) -> None:
        self.calls: list[tuple[Address, str, int]] = []
        self._next = itertools.cycle(range(WORKERS))

    def __call__(self, remote: Address, transport: str) -> int:
        spi = spi_for_worker(next(self._next), WORKERS)
        self.calls.append((remote, transport, spi))
        return spi


def _inbound(rig: CoreRig) -> set[int]:
    return {spi for spi, c in rig.installed().items() if isinstance(c, AddInbound)}


def _child(pc: Pc) -> ev.ChildSAEstablished:
    return [e for e in pc.events if isinstance(e, ev.ChildSAEstablished)][-1]


def test_every_inbound_spi_of_quick_mode_comes_from_the_allocator() -> None:
    rig = CoreRig.from_text(config_text(
        nat_extra="ipsec_over_tcp = true\nipsec_over_tcp_ports = [10000]\n"
                  "ipsec_over_udp = true"))
    alloc = Allocator()
    rig.core.spi_allocator = alloc
    natt = rig.connect(rig.add_pc("vpnuser1"))  # behind the PAT: NAT-T
    tcp = rig.connect(rig.add_pc("vpnuser2", ctcp_port=10000))
    assert natt.up and tcp.up, rig.console.getvalue()
    # the SPI the client sends to is the one the allocator drew: its worker's
    assert _inbound(rig) == {spi for _r, _t, spi in alloc.calls}
    assert {_child(pc).spi_out for pc in (natt, tcp)} == _inbound(rig)
    by_peer = {remote: transport for remote, transport, _spi in alloc.calls}
    assert by_peer == {_peer(rig, "vpnuser1"): "natt", _peer(rig, "vpnuser2"): "ctcp"}
    assert {spi % WORKERS for spi in _inbound(rig)} == {0, 1}  # round robin: two SAs


def _peer(rig: CoreRig, user: str) -> Address:
    (s,) = [s for s in rig.sessions() if s["user"] == user]
    return (s["public_ip"], s["public_port"])


def test_ike_on_500_is_told_apart_as_bare_esp_or_cisco_ipsec_over_udp() -> None:
    """Clients on public addresses without NAT-T: ESP as IP protocol 50, or, where the
    concentrator offers it, Cisco IPsec over UDP (asked for in Mode Config)."""
    for udp, want in ((False, "esp"), (True, "cisco-udp")):
        rig = CoreRig.from_text(config_text(
            nat_extra=f"ipsec_over_udp = {'true' if udp else 'false'}"))
        alloc = Allocator()
        rig.core.spi_allocator = alloc
        pc = rig.connect(rig.add_pc("vpnuser1", behind_pat=False, natt=False))
        assert pc.up, rig.console.getvalue()
        assert [(r, t) for r, t, _spi in alloc.calls] == [((pc.local_ip, 500), want)]
        assert _inbound(rig) == {alloc.calls[0][2]} == {_child(pc).spi_out}


def test_a_rekey_started_by_the_concentrator_draws_from_the_allocator_too() -> None:
    rig = CoreRig.from_text(config_text())
    alloc = Allocator()
    rig.core.spi_allocator = alloc
    pc = rig.connect(rig.add_pc("vpnuser1"))
    first = _child(pc)
    rig.dataplane_event(SaExhausted(first.spi_in))  # our outbound SA: the client's in
    rig.settle()
    assert len(alloc.calls) == 2, rig.console.getvalue()
    assert _child(pc).spi_out == alloc.calls[1][2] != first.spi_out
    assert alloc.calls[1][2] in _inbound(rig)


def test_without_an_allocator_spis_are_random_as_before() -> None:
    rig = CoreRig.from_text(config_text())
    assert rig.core.spi_allocator is None
    pc = rig.connect(rig.add_pc("vpnuser1"))
    assert pc.up and all(spi >= 256 for spi in _inbound(rig))
