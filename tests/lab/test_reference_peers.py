"""Reference interop: strongSwan concentrator, two vpnc clients behind one PAT.

This is the scenario the vpnhub concentrator will be swapped into: same
topology, same clients, same checks (tunnels usable through the TUN, two
different PAT ports on UDP 4500, the LAN services reachable only via ESP).
"""

from __future__ import annotations

import ipaddress
import sys
import time
from pathlib import Path

import pytest
from netns_util import assert_nothing_left, require_tools

from vpnhub.lab.peers import (
    CHARON,
    VpncClient,
    start_strongswan_client,
    start_strongswan_concentrator,
    start_vpnc,
)
from vpnhub.lab.topology import CONC_PUBLIC, LAN_HOST, PAT_OUTSIDE, POOL, Topology

PEER_TOOLS = ("vpnc", "swanctl", CHARON, "nft", "conntrack", "iperf3", "stdbuf", "unshare")


def check_tunnel(topo: Topology, client: VpncClient, http_url: str) -> str:
    """The client's tunnel carries ping and HTTP to the LAN host; returns its inner address."""
    env = client.wait_connected(timeout=10)
    inner = env["INTERNAL_IP4_ADDRESS"]
    assert ipaddress.ip_address(inner) in ipaddress.ip_network(POOL)
    assert (env["CISCO_SPLIT_INC"], env["CISCO_SPLIT_INC_0_ADDR"]) == ("1", "192.168.2.0")
    route = topo.exec(client.host, ["ip", "route", "get", LAN_HOST], check=True).stdout
    assert f"dev {client.host.tun}" in route and f"src {inner}" in route
    assert topo.ping(client.host, LAN_HOST, interface=client.host.tun, count=3, interval=0.1)
    fetch = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read())"
    cp = topo.exec(client.host, [sys.executable, "-c", fetch, http_url], check=True, timeout=10)
    assert "private LAN host" in cp.stdout
    return inner


@pytest.mark.netns
def test_two_vpnc_behind_pat_to_strongswan(lab_prefix: str, lab_run_dir: Path) -> None:
    require_tools(*PEER_TOOLS)
    with Topology(lab_prefix, clients=2, run_dir=lab_run_dir) as topo:
        services = topo.start_lan_services()
        conc = start_strongswan_concentrator(topo)
        topo.flush_pat_conntrack()
        # both clients at the same instant, like the document's two PCs
        t0 = time.monotonic()
        clients = [start_vpnc(topo, c) for c in topo.clients]
        for c in clients:
            c.wait_usable(timeout=30)
        both_usable = time.monotonic() - t0
        inner = {check_tunnel(topo, c, services.http_url) for c in clients}
        assert len(inner) == 2

        for c in clients:
            assert "this end behind NAT? YES" in c.log.read_text()
        assert conc.established() == 2
        sas = conc.list_sas()
        assert sas.count("INSTALLED, TUNNEL-in-UDP") == 2
        assert sas.count(f"@ {PAT_OUTSIDE}[") == 2

        # the PAT's "show xlate": one public address, a different port per client
        natt = [e for e in topo.pat_conntrack("udp") if e.remote == (CONC_PUBLIC, 4500)]
        assert sorted(e.inside for e in natt) == [("10.10.10.2", 4500), ("10.10.10.3", 4500)]
        assert {e.outside[0] for e in natt} == {PAT_OUTSIDE}
        assert len({e.outside[1] for e in natt}) == 2
        ike = [e for e in topo.pat_conntrack("udp") if e.remote == (CONC_PUBLIC, 500)]
        assert {e.inside for e in ike} == {("10.10.10.2", 500), ("10.10.10.3", 500)}

        pids = tuple(p.pid for p in topo.processes())
        print(f"2 vpnc started together -> both answered through their tunnels: "
              f"{both_usable:.3f} s")
    assert_nothing_left(lab_prefix, pids)


@pytest.mark.netns
def test_strongswan_client_and_weak_suite(lab_prefix: str, lab_run_dir: Path) -> None:
    """The second client implementation, with the document's 3DES/MD5 suite."""
    require_tools(*PEER_TOOLS)
    with Topology(lab_prefix, clients=2, run_dir=lab_run_dir) as topo:
        topo.start_lan_services()
        conc = start_strongswan_concentrator(topo, suite="3des-md5")
        swan = start_strongswan_client(topo, "c2", suite="3des-md5")
        assert swan.initiate().returncode == 0, swan.log.read_text()[-2000:]
        topo.wait_ping("c2", LAN_HOST, interface=swan.tun, timeout=10)
        vpnc = start_vpnc(topo, "c1", weak=True)
        vpnc.wait_usable(timeout=30)
        assert conc.established() == 2
        assert "3DES_CBC/HMAC_MD5_96" in conc.list_sas()
        swan.terminate()
