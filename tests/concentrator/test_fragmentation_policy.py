"""The VPN 3000's fragmentation policy against a NAT device that drops IP fragments.

The PAT gets an nft rule that drops every IP fragment. Full-size packets from the
private LAN to a client (a 1472-byte ping, a TCP transfer with the LAN's 1460-byte
MSS) then pass only when the concentrator fragments before encapsulating; with
policy "none" the outer packets are fragmented by the kernel, the PAT drops the
pieces, and the concentrator's log says why.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from client_harness import TUN, _connect, _profile, _wait_connected
from vpnhub_harness import ServerOptions, iperf_result, start_iperf, start_vpnhub

from vpnhub.lab.topology import Topology

pytestmark = pytest.mark.netns


def _drop_fragments(topo: Topology) -> None:
    # before conntrack (priority -400), which would otherwise reassemble them first
    topo.exec(topo.pat, ["nft", "add", "table", "ip", "nofrag"], check=True)
    topo.exec(topo.pat, ["nft", "add", "chain", "ip", "nofrag", "pre",
                         "{ type filter hook prerouting priority -450 ; }"], check=True)
    topo.exec(topo.pat, ["nft", "add", "rule", "ip", "nofrag", "pre", "ip", "frag-off",
                         "&", "0x3fff", "!=", "0", "counter", "drop"], check=True)


@pytest.mark.parametrize("policy", ["before-encryption", "none"])
def test_large_packets_through_a_pat_that_drops_fragments(
        lab_prefix: str, lab_run_dir: Path, policy: str) -> None:
    with Topology(lab_prefix, clients=1, run_dir=lab_run_dir) as topo:
        server = start_vpnhub(topo, ServerOptions(extra={
            "concentrator": {"fragmentation": policy}}))
        c = topo.clients[0]
        _drop_fragments(topo)
        proc = _connect(topo, c, "vpnuser1", "userpass1", _profile(topo, "frag"))
        _wait_connected(topo, c, proc)
        # a full-size MTU on the client's side too, so that the LAN host's TCP segments
        # are the 1460-byte ones of its Ethernet (the MSS the client advertises)
        topo.exec(c, ["ip", "link", "set", "dev", TUN, "mtu", "1500"], check=True)
        addr = topo.exec(c, ["ip", "-4", "-o", "addr", "show", "dev", TUN]).stdout.split()[3]
        client_ip = addr.split("/")[0]
        small = topo.exec(topo.lan, ["ping", "-c", "2", "-W", "2", client_ip])
        assert small.returncode == 0, small.stdout  # the tunnel works
        big = topo.exec(topo.lan, ["ping", "-c", "3", "-W", "2", "-s", "1472", "-M", "dont",
                                   client_ip])
        # a TCP transfer towards the client with full-size segments (iperf3 -R)
        topo.start_lan_services(iperf_ports=[5201])
        run = start_iperf(topo, c, 5201, 2, reverse=True)
        result = iperf_result(run, 20)
        if policy == "before-encryption":
            assert big.returncode == 0, big.stdout + server.tail()
            assert result.returncode == 0 and result.received_bytes > 100_000, result
        else:
            assert big.returncode != 0, big.stdout
            assert result.received_bytes < 100_000, result
            assert server.lines('fragmentation policy "none"'), server.tail()
        assert proc.stop(10) == 0

