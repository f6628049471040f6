"""Issue 17: phase 1 on the cluster's virtual address, then redirect (notify 40501) to
the member the Balancer names, or serve the client (no Unity, or no [cluster]
load balancing, or no Balancer). The core in memory (core_harness); the redirect
message itself is tests/ike/test_exchange_redirect.py's, vpnc following it
tests/cluster/test_redirect_netns.py's."""

from __future__ import annotations

import ipaddress

from core_harness import PAT, CoreRig, Pc, config_text

from vpnhub.ike import events as ev
from vpnhub.ike.informational import REDIRECT_LINGER
from vpnhub.net.messages import TRANSPORT_NATT_VIRTUAL
from vpnhub.wire.vendor import VendorId

VIP = "203.0.113.60"
OWN = ipaddress.IPv4Address("203.0.113.50")
OTHER = ipaddress.IPv4Address("198.51.100.12")


class StaticBalancer:
    """A fixed answer (the real one reads the cluster directory)."""

    def __init__(self, target: ipaddress.IPv4Address | None) -> None:
        self.target = target
        self.asked = 0

    def redirect_target(self) -> ipaddress.IPv4Address | None:
        self.asked += 1
        return self.target


def _rig(target: ipaddress.IPv4Address | None, *, load_balancing: bool = True) -> CoreRig:
    cluster = (f'\n[cluster]\ndsn = "host=192.168.5.10 dbname=vpnhub"\nmember = "a"\n'
               f'virtual_address = "{VIP}"\nload_balancing = '
               f'{"true" if load_balancing else "false"}\n')
    rig = CoreRig.from_text(config_text(limits_extra="") + cluster)
    rig.core.balancer = StaticBalancer(target)
    rig.virtual = True
    return rig


def _vpnc_like(rig: CoreRig) -> Pc:
    """Our engine as vpnc announces itself: Cisco Unity, no IKE fragmentation."""
    pc = rig.add_pc()
    pc.sa.config.fragmentation = False
    return pc


def test_unity_client_on_virtual_address_is_redirected() -> None:
    rig = _rig(OTHER)
    pc = _vpnc_like(rig)
    pc.sa.remote = pc.sa.first_remote = (VIP, 500)  # its NAT-D hashes the virtual address
    rig.connect(pc)
    assert not pc.up
    assert not any(isinstance(e, ev.XauthRequested) for e in pc.events)
    assert rig.core.sessions.all() == []  # never a session here
    lines = rig.lines(f"redirected {PAT}:")
    assert lines and f"to member {OTHER} (load-balancing)" in lines[0]
    # the answers left from the virtual address (NAT-D hashed it: no NAT on our side)
    sa = next(iter(rig.core.endpoint))
    assert sa.config.local_address == VIP and not sa.local_behind_nat
    stats = rig.core.admin_command({"cmd": "stats"})["redirects"]
    assert stats == {"to_member": 1, "to_self": 0, "served_on_virtual": 0}
    rig.now += REDIRECT_LINGER + 1
    rig.driver.timer(rig.now)
    rig.settle()
    assert len(rig.core.endpoint) == 0 and rig.core.sessions.all() == []


def test_kept_client_goes_to_this_members_own_address() -> None:
    rig = _rig(None)
    rig.connect(_vpnc_like(rig))
    assert rig.lines(f"to member {OWN} (this member is the least loaded)")
    assert rig.core.admin_command({"cmd": "stats"})["redirects"]["to_self"] == 1


def test_clients_that_follow_no_redirect_are_served_on_virtual_address() -> None:
    rig = _rig(OTHER)
    plain = rig.add_pc("vpnuser1")
    plain.sa.config.unity = plain.sa.config.fragmentation = False  # no Cisco Unity
    swan = rig.add_pc("vpnuser2")  # Unity and IKE fragmentation: strongSwan's defaults
    rig.connect(plain)
    rig.connect(swan)
    assert plain.up and swan.up and rig.sessions("vpnuser1") and rig.sessions("vpnuser2")
    balancer = rig.core.balancer
    assert isinstance(balancer, StaticBalancer) and balancer.asked == 0
    assert rig.core.admin_command({"cmd": "stats"})["redirects"]["served_on_virtual"] == 2
    # their ESP in UDP goes to and from the virtual address ("natt-virtual")
    assert len(rig.lines("is served on the virtual cluster address")) == 2
    assert not rig.lines("not carried")
    cmds = [*rig.dp.inbound.values(), *rig.dp.outbound.values()]
    assert len(cmds) == 4 and {c.transport for c in cmds} == {TRANSPORT_NATT_VIRTUAL}


def test_cisco_client_vendor_id_counts_with_fragmentation() -> None:
    rig = _rig(OTHER)
    pc = rig.add_pc()  # IKE fragmentation, but vpnc's (the Cisco client's) vendor ID
    pc.sa.config.extra_vendor_ids = (VendorId.CISCO_CLIENT_MSG3,)
    rig.connect(pc)
    assert not pc.up and rig.lines(f"to member {OTHER}")


def test_member_address_and_balancing_off_serve_as_before() -> None:
    rig = _rig(OTHER)
    rig.virtual = False  # to this member's own address: never redirected
    assert rig.connect(_vpnc_like(rig)).up
    off = _rig(OTHER, load_balancing=False)
    assert off.connect(_vpnc_like(off)).up
    assert not rig.lines("redirected") and not off.lines("redirected")
    # to the member's own address: its ESP is the data plane's own (plain "natt")
    assert {c.transport for c in rig.dp.inbound.values()} == {""}


def test_raw_esp_on_virtual_address_is_said_not_carried() -> None:
    rig = _rig(OTHER)
    pc = rig.add_pc()
    pc.sa.config.unity = pc.sa.config.fragmentation = False
    pc.sa.config.natt = False  # no NAT-T: raw ESP, whose socket is the member's address
    rig.connect(pc)
    assert pc.up
    assert len(rig.lines("without NAT-T, whose ESP is not carried there")) == 1
    assert {c.transport for c in rig.dp.inbound.values()} == {""}
