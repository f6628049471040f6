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
   sessions pass traffic again.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from vpnhub_harness import VpnhubServer

from vpnhub.admin import request
from vpnhub.lab.peers import start_vpnc
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
