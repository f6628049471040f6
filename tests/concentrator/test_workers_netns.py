"""``[dataplane] workers = 2`` with real peers in the lab (issue 16 item 1).

vpnhub runs two data-plane worker processes; the kernel steers each inbound ESP
packet by SPI to the worker that owns its SA (net/ikesplit.py), and a LAN packet
read by the other worker is handed over (net/handover.py). With real vpnc
clients behind the lab's PAT:

1. two vpnc behind one PAT both pass traffic, and land on different workers
   (the admin ``stats`` answer lists each worker's SAs);
2. traffic first sent from the LAN host to each client reaches it (the kernel
   picks the TUN queue of a new flow by hash: some first packets are handed over);
3. SIGKILL of one worker: it comes back (new pid, ``restarts`` 1) and both
   sessions pass traffic again;
4. phase 2 rekeys under a 10 packets/s ping lose nothing, with a strongSwan
   client at the same time;
5. Cisco IPsec over UDP (vpnc) and cTCP (the vpnhub client) still work.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from client_harness import TUN as CLIENT_TUN
from client_harness import _connect, _profile, _wait_connected
from vpnhub_harness import VpnhubServer

from vpnhub.admin import request
from vpnhub.lab.peers import VpncClient, start_strongswan_client, start_vpnc
from vpnhub.lab.topology import LAN_HOST, Topology, wait_until

pytestmark = pytest.mark.netns

StartVpnhub = Callable[..., VpnhubServer]
DH = "dh14"
LAN_FLOWS = 16
# Run on the LAN host: how many of LAN_FLOWS connections to a closed port got their RST.
LAN_FIRST = f"""
import socket, sys
refused = 0
for _ in range({LAN_FLOWS}):
    s = socket.socket()
    s.settimeout(3)
    refused += s.connect_ex((sys.argv[1], 9)) == 111  # ECONNREFUSED: the client's RST
    s.close()
print(refused)
"""


def _workers(srv: VpnhubServer) -> list[dict[str, Any]]:
    reply = request(str(srv.admin_socket), {"cmd": "stats"})
    workers = reply.get("workers")
    assert isinstance(workers, list), srv.explain(f"admin stats without workers: {reply}")
    # what _ping_losses shows: the workers' drops, summed
    assert isinstance(reply.get("dataplane_drops"), dict), srv.explain(f"{reply}")
    return workers


def _parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def test_two_vpnc_on_two_workers(lab_prefix: str, lab_run_dir: Path, peer_tools: None,
                                 vpnhub: StartVpnhub) -> None:
    with Topology(lab_prefix, clients=2, run_dir=lab_run_dir) as topo:
        topo.start_lan_services()
        srv = vpnhub(topo, natt=True, extra={"dataplane": {"workers": 2}})
        topo.flush_pat_conntrack()
        clients = [start_vpnc(topo, c, dh=DH) for c in topo.clients]
        for c in clients:
            try:
                c.wait_usable(timeout=30)
            except (TimeoutError, RuntimeError) as e:
                raise AssertionError(srv.explain(f"{c.host.role}: {e}", c)) from None
        inner = {c.host.role: c.wait_connected(5)["INTERNAL_IP4_ADDRESS"] for c in clients}

        # 1. both pass traffic, each on its own worker
        for c in clients:
            assert topo.ping(c.host, LAN_HOST, interface=c.host.tun, count=3, interval=0.1), (
                srv.explain(f"{c.host.role}: no ping to the LAN host", c))
        workers = _workers(srv)
        assert len(workers) == 2, workers
        assert [w["sas"] for w in workers] == [2, 2], srv.explain(f"SAs per worker: {workers}")
        assert all(w["packets"] > 0 for w in workers), workers

        # 2. the LAN host speaks first: TCP connections to a closed port of each client
        # (its kernel answers RST), each from a new source port, so a new flow that the
        # kernel puts on a TUN queue by hash; those on the wrong one are handed over
        for c in clients:
            addr = inner[c.host.role]
            cp = topo.exec(topo.lan, [sys.executable, "-c", LAN_FIRST, addr], timeout=60)
            assert cp.stdout.split() == [str(LAN_FLOWS)], srv.explain(
                f"LAN -> {c.host.role} ({addr}): {cp.stdout} {cp.stderr}", c)
        workers = _workers(srv)
        handed = sum(w["handed_over"] for w in workers)
        assert handed >= 1 and handed == sum(w["handed_in"] for w in workers), workers
        assert sum(w["handover_dropped"] for w in workers) == 0, workers

        # 3. SIGKILL of one worker (a child of the vpnhub we started): it comes back
        victim = workers[1]
        assert _parent_of(victim["pid"]) == srv.proc.pid
        os.kill(victim["pid"], signal.SIGKILL)
        wait_until(lambda: _workers(srv)[1]["restarts"] == 1, 10,
                   what="worker 1 restarted")
        after = _workers(srv)
        assert after[1]["pid"] != victim["pid"] and after[1]["sas"] == 2, after
        assert srv.lines("data-plane worker 1"), srv.tail()
        for c in clients:
            topo.wait_ping(c.host, LAN_HOST, interface=c.host.tun, timeout=10)
            assert topo.ping(c.host, LAN_HOST, interface=c.host.tun, count=3, interval=0.1), (
                srv.explain(f"{c.host.role}: no ping after the worker restart", c))
            assert topo.ping(topo.lan, inner[c.host.role], count=2, timeout=2), (
                srv.explain(f"{c.host.role}: no ping from the LAN after the restart", c))
        data = srv.sessions()
        assert data["summary"].get("active") == 2, data["summary"]
        for c in clients:
            c.stop()


def test_rekeys_under_ping_with_strongswan_beside(lab_prefix: str, lab_run_dir: Path,
                                                  peer_tools: None,
                                                  vpnhub: StartVpnhub) -> None:
    """Phase 2 rekeys (lifetime 15 s: the concentrator rekeys vpnc at 92 %) under a
    10 packets/s ping lose nothing, vpnc and a strongSwan client at the same time."""
    with Topology(lab_prefix, clients=2, run_dir=lab_run_dir) as topo:
        topo.start_lan_services()
        srv = vpnhub(topo, natt=True, extra={"dataplane": {"workers": 2},
                                             "concentrator": {"ipsec_lifetime": 15}})
        v = start_vpnc(topo, "c1", dh=DH)
        swan = start_strongswan_client(topo, "c2", suite="aes256-sha1")
        conf = swan.swanctl_conf.read_text()
        swan.swanctl_conf.write_text(conf.replace("modp1024", "modp2048"))
        swan.load()
        cp = swan.initiate(timeout=20)
        assert cp.returncode == 0, srv.explain(f"swanctl --initiate: {cp.stdout[-2000:]}",
                                               swan.log)
        v.wait_usable(timeout=30)
        topo.wait_ping("c2", LAN_HOST, interface=swan.tun, timeout=10)
        workers = _workers(srv)
        assert sorted(w["peers"] for w in workers) == [1, 1], srv.explain(f"{workers}")

        # 25 s of 10 pings a second through both tunnels: at least one rekey each
        bg = topo.spawn("c2", ["ping", "-n", "-q", "-i", "0.1", "-c", "250", "-W", "1",
                               "-I", swan.tun, LAN_HOST], "ping-c2.log")
        r = topo.exec("c1", ["ping", "-n", "-q", "-i", "0.1", "-c", "250", "-W", "1",
                             "-I", v.host.tun, LAN_HOST], timeout=60)
        bg.popen.wait(30)
        lost = {name: out for name, out in (("vpnc", r.stdout), ("strongSwan", bg.log_text()))
                if " 0% packet loss" not in out}
        assert not lost, srv.explain(_ping_losses(srv, lost, v), v, swan.log)
        rekeyed = srv.lines("rekeyed:")
        assert {u for u in ("vpnuser1", "vpnuser2") if any(u in x for x in rekeyed)} == {
            "vpnuser1", "vpnuser2"}, srv.explain(f"rekeys: {rekeyed}")
        # the old SAs are gone; each peer's new ones stayed in its worker
        wait_until(lambda: sorted(w["sas"] for w in _workers(srv)) == [2, 2], 10,
                   what="two SAs per worker after the rekeys")
        swan.terminate()
        v.stop()


def _ping_losses(srv: VpnhubServer, lost: dict[str, str], v: VpncClient) -> str:
    """Which peer lost pings, and why it may have: vpnc's "unknown spi" lines (ESP on
    an SA whose message 3 it had not read, or that it dropped) and the concentrator's
    data-plane drops (e.g. "unknown_spi": ESP on an SA not installed yet)."""
    parts = [f"{name} lost pings: {' '.join(out.split()[-12:])}" for name, out in lost.items()]
    unknown = [ln for ln in v.proc.log_text().splitlines() if "unknown spi" in ln.lower()]
    parts.append(f"vpnc 'unknown spi' lines ({len(unknown)}): {unknown[-10:]}")
    try:
        reply = request(str(srv.admin_socket), {"cmd": "stats"})
        parts.append(f"concentrator data-plane drops: {reply.get('dataplane_drops')}")
    except (OSError, ValueError) as e:
        parts.append(f"concentrator stats unavailable: {e}")
    return "\n".join(parts)


def test_cisco_udp_and_ctcp_on_two_workers(lab_prefix: str, lab_run_dir: Path,
                                           peer_tools: None, vpnhub: StartVpnhub) -> None:
    """vpnc in Cisco IPsec over UDP mode and the vpnhub client over cTCP (its sessions
    live in worker 0) both pass traffic both ways with two workers."""
    with Topology(lab_prefix, clients=2, run_dir=lab_run_dir) as topo:
        topo.start_lan_services()
        srv = vpnhub(topo, natt=True, extra={
            "dataplane": {"workers": 2},
            "nat_transparency": {"ipsec_over_udp": True, "ipsec_over_tcp": True,
                                 "ipsec_over_tcp_ports": [10001]}})
        v = start_vpnc(topo, "c1", natt_mode="cisco-udp", dh=DH)
        c2 = topo.clients[1]
        proc = _connect(topo, c2, "vpnuser2", "userpass2",
                        _profile(topo, "tcp", tunneling_mode="tcp", tcp_port=10001))
        v.wait_usable(timeout=30)
        _wait_connected(topo, c2, proc)
        assert topo.ping("c1", LAN_HOST, count=3, interval=0.2, timeout=2, interface=v.host.tun)
        assert topo.ping(c2, LAN_HOST, count=3, interval=0.2, timeout=2, interface=CLIENT_TUN)
        protocols = {s["user"]: s["protocol"] for s in srv.sessions()["sessions"]}
        assert protocols == {"vpnuser1": "IPsec/UDP", "vpnuser2": "IPsec/TCP"}, protocols
        workers = _workers(srv)
        assert workers[0]["peers"] >= 1 and sum(w["peers"] for w in workers) == 2, workers
        for s in srv.sessions()["sessions"]:  # the LAN host speaks first
            cp = topo.exec(topo.lan, [sys.executable, "-c", LAN_FIRST, s["assigned_ip"]],
                           timeout=60)
            assert cp.stdout.split() == [str(LAN_FLOWS)], srv.explain(
                f"LAN -> {s['user']}: {cp.stdout} {cp.stderr}", v)
        assert proc.stop(10) == 0
        v.stop()
