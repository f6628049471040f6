"""vpnc's own DPD (RFC 3706) against the concentrator's lean R-U-THERE answer (issue 13).

vpnc behind the lab's PAT, idle, asks R-U-THERE every 10 s on UDP 4500; the
concentrator (event log at severity 5, so the lean path of ike/dpdanswer.py
answers) must send R-U-THERE-ACKs that vpnc accepts: its debug log says
"got r-u-there ack" and the session stays.
"""

from __future__ import annotations

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


def test_vpnc_r_u_there_is_answered_on_4500(lab_prefix: str, lab_run_dir: Path,
                                            peer_tools: None, vpnhub: StartVpnhub) -> None:
    with Topology(lab_prefix, clients=1, run_dir=lab_run_dir) as topo:
        srv = vpnhub(topo, natt=True)
        vpnc = start_vpnc(topo, "c1", natt_mode="natt", dh="dh14", dpd_idle=10, debug=3)
        vpnc.wait_usable(20)
        acks = vpnc.log.read_text().count("got r-u-there ack")
        before = admin(srv, {"cmd": "stats"})["ike_4500"]
        # idle: vpnc asks after 10 s without a word from us, twice more within ~25 s
        wait_until(lambda: vpnc.log.read_text().count("got r-u-there ack") >= acks + 2, 45,
                   what="two more R-U-THERE-ACKs accepted by vpnc")
        text = vpnc.log.read_text()
        assert "ISAKMP_N_R_U_THERE" in text, text[-2000:]
        after = admin(srv, {"cmd": "stats"})["ike_4500"]
        assert after["rx"] >= before["rx"] + 2 and after["tx"] >= before["tx"] + 2, after
        assert after["drops"] == {}, after
        assert not srv.lines("hash_mismatch") and not srv.lines("dpd_stale_sequence")
        assert not srv.lines("dead peer"), srv.tail()
        data = srv.wait_sessions(lambda d: len(d["sessions"]) == 1, "the session",
                                 logs=[vpnc])
        assert data["sessions"][0]["ipsec"], data
        assert topo.ping(vpnc.host, LAN_HOST, count=2, interval=0.2, timeout=2,
                         interface=vpnc.host.tun), srv.explain("no ping after DPD", vpnc)
        vpnc.stop()
