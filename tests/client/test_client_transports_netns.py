"""The vpnhub client over Cisco IPsec over UDP and over TCP (cTCP), through the PAT.

cTCP: the PAT's nft rules drop ALL UDP, so IKE itself must travel in TCP; a
capture on the internet link decodes as TCPENCAP with ISAKMP and ESP inside.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
from client_harness import TUN, _connect, _profile, _status, _wait_connected, serve_ok
from vpnhub_harness import ServerOptions, start_vpnhub

from vpnhub.lab.topology import LAN_HOST, Topology

pytestmark = pytest.mark.netns
__all__ = ["serve_ok"]


def test_client_ipsec_over_udp(lab_prefix: str, lab_run_dir: Path, serve_ok: None) -> None:
    """.pcf TunnelingMode=0 with EnableNat=1 against a concentrator with NAT-T off and
    IPsec over UDP on: the tunnel uses UDP 10000, not NAT-T."""
    with Topology(lab_prefix, clients=1, run_dir=lab_run_dir) as topo:
        server = start_vpnhub(topo, ServerOptions(natt=False, extra={
            "nat_transparency": {"ipsec_over_udp": True}}))
        c = topo.clients[0]
        proc = _connect(topo, c, "vpnuser1", "userpass1", _profile(topo, "udp"))
        _wait_connected(topo, c, proc)
        assert topo.ping(c, LAN_HOST, count=3, interval=0.2, timeout=2, interface=TUN)
        st = _status(topo, c)
        assert st["tunnel_port"] == 10000 and "UDP port 10000" in st["transport"], st
        sessions = server.sessions()["sessions"]
        assert sessions[0]["protocol"] == "IPsec/UDP", sessions
        assert proc.stop(10) == 0


def test_client_ipsec_over_tcp_through_a_pat_dropping_udp(lab_prefix: str, lab_run_dir: Path,
                                                          serve_ok: None) -> None:
    with Topology(lab_prefix, clients=1, run_dir=lab_run_dir) as topo:
        server = start_vpnhub(topo, ServerOptions(extra={
            "nat_transparency": {"ipsec_over_tcp": True, "ipsec_over_tcp_ports": [10000]}}))
        topo.exec(topo.pat, ["nft", "add", "table", "ip", "nodgram"], check=True)
        topo.exec(topo.pat, ["nft", "add", "chain", "ip", "nodgram", "dropudp",
                             "{ type filter hook forward priority 0 ; }"], check=True)
        topo.exec(topo.pat, ["nft", "add", "rule", "ip", "nodgram", "dropudp", "meta", "l4proto",
                             "udp", "counter", "drop"], check=True)
        cap = topo.run_dir / "ctcp.pcap"
        dump = None
        if shutil.which("tcpdump"):
            dump = topo.spawn(topo.conc, ["tcpdump", "-U", "-n", "-i", "any", "-w", str(cap),
                                          "tcp", "port", "10000"], "tcpdump.log")
            time.sleep(0.5)
        c = topo.clients[0]
        proc = _connect(topo, c, "vpnuser1", "userpass1",
                        _profile(topo, "tcp", tunneling_mode="tcp", tcp_port=10000))
        _wait_connected(topo, c, proc)
        assert topo.ping(c, LAN_HOST, count=3, interval=0.2, timeout=2, interface=TUN)
        st = _status(topo, c)
        assert st["tunnel_port"] == 10000 and "TCP" in st["transport"], st
        assert server.sessions()["sessions"][0]["protocol"] == "IPsec/TCP"
        dropped = topo.exec(topo.pat, ["nft", "list", "table", "ip", "nodgram"]).stdout
        assert proc.stop(10) == 0
        if dump is not None and shutil.which("tshark"):
            time.sleep(0.3)
            dump.stop(5)
            out = subprocess.run(["tshark", "-r", str(cap), "-d", "tcp.port==10000,tcpencap",
                                  "-T", "fields", "-e", "frame.protocols"],
                                 capture_output=True, text=True, timeout=60).stdout
            assert "tcpencap" in out and "isakmp" in out and "esp" in out, out[-2000:]
        assert "counter packets" in dropped
