"""A strongSwan client with IKEv1 fragmentation forced (every message in FRAGMENT
payloads, the first one too) completes its handshake with vpnhub and passes traffic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vpnhub.lab.peers import start_strongswan_client
from vpnhub.lab.topology import LAN_HOST, Topology


def test_strongswan_forced_ike_fragmentation(lab_prefix: str, lab_run_dir: Path,
                                             peer_tools: None, vpnhub: Any) -> None:
    with Topology(lab_prefix, clients=1, run_dir=lab_run_dir) as topo:
        topo.start_lan_services()
        srv = vpnhub(topo, natt=True, legacy=False)
        swan = start_strongswan_client(topo, "c1", suite="aes256-sha1", fragmentation="force",
                                       fragment_size=300)
        conf = swan.swanctl_conf.read_text()
        swan.swanctl_conf.write_text(conf.replace("modp1024", "modp2048"))
        swan.load()
        cp = swan.initiate(timeout=20)
        assert cp.returncode == 0, srv.explain(f"swanctl --initiate: {cp.stdout[-2000:]}",
                                               swan.log)
        log = Path(swan.log).read_text()
        # charon really sent the first message in pieces, and vpnhub announced support
        assert "splitting IKE message" in log and "FRAG(1)" in log, log[-3000:]
        assert "received FRAGMENTATION vendor ID" in log, log[-3000:]
        topo.wait_ping("c1", LAN_HOST, interface=swan.tun, timeout=10)
        stats = srv.cli("sessions", "--json")
        assert "vpnuser1" in stats.stdout
        swan.terminate()
