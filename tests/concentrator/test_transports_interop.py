"""The other ways through NAT with real peers: vpnc in Cisco IPsec-over-UDP mode,
the VPN 3000's priority rule (TCP, NAT-T, UDP), and the session's protocol names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vpnhub.lab.peers import start_vpnc
from vpnhub.lab.topology import LAN_HOST, Topology


def _session(srv: Any, user: str) -> dict[str, Any]:
    data = srv.wait_sessions(lambda d: any(s["user"] == user for s in d["sessions"]),
                             f"a session of {user}")
    return next(s for s in data["sessions"] if s["user"] == user)


@pytest.mark.parametrize("natt", [False, True])
def test_vpnc_ipsec_over_udp(lab_prefix: str, lab_run_dir: Path, peer_tools: None,
                             vpnhub: Any, natt: bool) -> None:
    """vpnc --natt-mode cisco-udp asks for the UDP port in Mode Config and sends ESP in
    UDP to 10000; with NAT-T on as well it still gets IPsec over UDP, since it does
    not offer NAT-T (the rule only prefers NAT-T for clients that can do both)."""
    with Topology(lab_prefix, clients=1, run_dir=lab_run_dir) as topo:
        topo.start_lan_services()
        srv = vpnhub(topo, natt=natt, extra={"nat_transparency": {"ipsec_over_udp": True}})
        v = start_vpnc(topo, "c1", natt_mode="cisco-udp", dh="dh14")
        v.wait_usable(15)
        assert topo.ping("c1", LAN_HOST, count=3, interval=0.2, timeout=2, interface=v.host.tun)
        s = _session(srv, "vpnuser1")
        assert s["protocol"] == "IPsec/UDP", s
        assert srv.lines("IPsec over UDP negotiated on port 10000")
        conntrack = topo.pat_conntrack()
        assert any(e.remote[1] == 10000 for e in conntrack), conntrack  # ESP in UDP to 10000
        v.stop()


def test_priority_nat_t_before_udp(lab_prefix: str, lab_run_dir: Path, peer_tools: None,
                                   vpnhub: Any) -> None:
    """A client that can do NAT-T and asks for IPsec over UDP too gets NAT-T."""
    with Topology(lab_prefix, clients=1, run_dir=lab_run_dir) as topo:
        topo.start_lan_services()
        srv = vpnhub(topo, natt=True, extra={"nat_transparency": {"ipsec_over_udp": True}})
        v = start_vpnc(topo, "c1", natt_mode="natt", dh="dh14")
        v.wait_usable(15)
        assert _session(srv, "vpnuser1")["protocol"] == "IPsec/NAT-T"
        v.stop()
