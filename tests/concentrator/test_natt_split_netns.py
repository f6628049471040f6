"""IKE on UDP 4500 on the control plane's own socket, and the DH pool (issue 13, point 4).

vpnc behind the lab's PAT floats to 4500 after Aggressive Mode message 2, so
its message 3, XAUTH, Mode Config and Quick Mode all arrive on 4500: they
reach the concentrator through the socket the kernel gives IKE
(vpnhub/net/ikesplit.py), while its ESP still goes to the data plane. The
concentrator's first message 2 takes its key pair from the DH pool, filled
before any client came.
"""

from __future__ import annotations

import re
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


def admin(srv: VpnhubServer, req: dict[str, Any]) -> dict[str, Any]:
    return request(str(srv.admin_socket), req)


def _skmem(topo: Topology, port: int) -> dict[str, int]:
    """The receive and send buffers (ss's skmem rb and tb) of the concentrator's
    UDP socket on `port`; on 4500 the smallest of the group's (the IKE and the
    keepalive sockets have 1 MiB, the data plane's 4 MiB)."""
    out = topo.exec(topo.conc, ["ss", "-Hulnm", f"sport = :{port}"], check=True).stdout
    found = re.findall(r"\brb(\d+),t\d+,tb(\d+)", out)
    assert found, out
    if port == 4500:
        rb, tb = min(found, key=lambda f: int(f[0]))
    else:
        (rb, tb), = found
    return {"rb": int(rb), "tb": int(tb)}


def test_ike_on_4500_and_esp_split_and_the_dh_pool_serves_the_first_login(
        lab_prefix: str, lab_run_dir: Path, peer_tools: None, vpnhub: StartVpnhub) -> None:
    with Topology(lab_prefix, clients=1, run_dir=lab_run_dir) as topo:
        srv = vpnhub(topo, natt=True, extra={"limits": {"dh_pool_size": 8}})
        wait_until(lambda: admin(srv, {"cmd": "stats"})["dh_pool"]["ready"] == 8, 10,
                   what="the DH pool to fill in idle time")
        vpnc = start_vpnc(topo, "c1", natt_mode="natt", dh="dh14")
        vpnc.wait_usable(20)
        assert topo.ping(vpnc.host, LAN_HOST, count=2, interval=0.2, timeout=2,
                         interface=vpnc.host.tun), srv.explain("no ping", vpnc)
        assert not srv.lines("cannot split IKE from ESP"), srv.tail()
        # both IKE sockets with 1 MiB (the kernel shows twice that: socket(7))
        for port in (500, 4500):
            mem = _skmem(topo, port)
            assert min(mem["rb"], mem["tb"]) >= 2 << 20, (port, mem)
        # issue 16: the UDP sockets read trains where the kernel coalesced them (GRO),
        # ESP to a peer leaves in trains (GSO); the admin stats count the calls
        io = admin(srv, {"cmd": "stats"})["udp_io"]
        assert io["gro"] and io["gso"], io
        assert 1 <= io["rx_calls"] <= io["rx_datagrams"], io
        assert 1 <= io["tx_calls"] <= io["tx_datagrams"], io
        split = admin(srv, {"cmd": "stats"})["ike_4500"]
        # message 3, XAUTH (2 exchanges), Mode Config, Quick Mode (2 in): 6 or more in
        assert split is not None and split["rx"] >= 6 and split["tx"] >= 4, split
        assert split["drops"] == {}, split
        data = srv.wait_sessions(lambda d: len(d["sessions"]) == 1 and bool(
            d["sessions"][0]["ipsec"]), "the session", logs=[vpnc])
        for sa in data["sessions"][0]["ipsec"]:
            assert sa["udp_dst_port"] == 4500, sa  # ESP in UDP 4500: the data plane's
        pool = admin(srv, {"cmd": "stats"})["dh_pool"]
        assert pool["taken"] == 1 and pool["missed"] == 0, pool
        # refilled after the login, once IKE was quiet for a moment
        wait_until(lambda: admin(srv, {"cmd": "stats"})["dh_pool"]["ready"] == 8, 10,
                   what="the DH pool to be refilled")
        vpnc.stop()
