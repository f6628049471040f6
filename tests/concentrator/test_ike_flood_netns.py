"""A spoofed flood of first messages while a real vpnc logs in (issue 11, point 1).

From the "internet" namespace, thousands of valid-looking Aggressive Mode
first messages with spoofed sources (198.51.100.0/24, 203.0.113.128/25), and
from the PAT 32 more carrying the PAT's own public address, the number that
used to lock every PC behind it out for 30 s. During the flood vpnc, behind
that PAT, must get its tunnel within its first retransmission window: vpnc
sends message 1 and waits 1 s before sending it again (``sendrecv``:
``poll(timeout << tries)`` with ``s->ike.timeout = 1000``), so it must send
its message 1 exactly once. The concentrator must see the flood (by its
unanswered half-open SAs, vpnhub/ike/endpoint.py) and stop computing g^xy
for SAs that never come back. Then ping passes through the tunnel, every
half-open SA times out, the operator's log holds summaries, not a line per
spoofed packet, and the concentrator's resident memory comes back.

What "comes back" can honestly mean was measured (docs/reliability/ike-dos.md,
"Memory comes back"): all of the growth is in glibc's main heap and nearly all
of it is free again after the trim (memory in use +0.3 MB once the stall watch
stopped reading source files into linecache), but the 23 MB freed lie in some
2,300 free chunks between live ones and glibc can give back only whole free
pages, so about 4.5 MiB of partly used pages stay resident: the first flood
leaves +8 to +9 % (11 to 14 % before that fix).
It is bounded, not a leak: further floods in the same process added 0.5 to
1.8 % each. So the first flood may keep up to 15 %, and a second identical
flood must add no more than 5 % to what the first left (a leak of 1.7 KiB per
spoofed SA would exceed it).

Sizes: VPNHUB_FLOOD_COUNT first messages over VPNHUB_FLOOD_SECONDS (default
2000 in 4 s, the rate of the issue's 5,000 in 10 s); bench/flood.py runs the
full figure.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from vpnhub_harness import VpnhubServer

from vpnhub.ike.endpoint import FLOOD_UNVERIFIED
from vpnhub.lab.flood import run_flood
from vpnhub.lab.topology import Topology

pytestmark = pytest.mark.netns

COUNT = int(os.environ.get("VPNHUB_FLOOD_COUNT", "2000"))
SECONDS = float(os.environ.get("VPNHUB_FLOOD_SECONDS", "4"))
PAT_SPOOFED = 32
PHASE1_TIMEOUT = 30.0  # a half-open SA is dropped after this (IkeConfig.phase1_timeout)


def test_vpnc_behind_a_flooded_pat_gets_its_tunnel_and_memory_returns(
        lab_prefix: str, lab_run_dir: Path, peer_tools: None,
        vpnhub: Callable[..., VpnhubServer]) -> None:
    with Topology(lab_prefix, clients=1, run_dir=lab_run_dir) as topo:
        srv = vpnhub(topo, console_severity=5)
        run = run_flood(topo, srv.proc.pid, srv.admin_socket, count=COUNT, seconds=SECONDS,
                        pat_spoofed=PAT_SPOOFED, drain_timeout=PHASE1_TIMEOUT + 20)
        print(run)
        vpnc_log = topo.run_dir / "vpnc-c1" / "vpnc.log"
        assert run.sent == COUNT and run.pat_sent == PAT_SPOOFED, run
        assert run.ping_ok, srv.explain(f"no ping through the tunnel: {run}", vpnc_log)
        assert run.vpnc_message1_sends == 1, srv.explain(
            f"vpnc sent message 1 {run.vpnc_message1_sends} times: its first retransmission"
            f" window (1 s) was not enough (connected after {run.vpnc_connected_s:.1f} s)",
            vpnc_log)
        assert run.stats_after["half_open"] == 0
        # the concentrator saw the flood (more than FLOOD_UNVERIFIED unanswered SAs, or
        # the PAT's per-source cap): from then on g^xy waited for a message 3 that
        # spoofed SAs never send, so the DH worker got only the SAs before it and vpnc's
        worker = run.stats_at_peak["dh_worker"]
        assert worker["submitted"] <= FLOOD_UNVERIFIED + PAT_SPOOFED + 8, worker
        assert run.rss_after_kb <= run.rss_before_kb * 1.15, srv.explain(
            f"memory did not come back: {run}")

        # the operator reads summaries, not one line per spoofed packet
        log = srv.log_text().splitlines()
        assert not [ln for ln in log if "wrong group password" in ln], srv.explain(
            "spoofed first messages blamed on the group password")
        recycled = [ln for ln in log if "recycled" in ln]
        assert len(recycled) <= 2 * (SECONDS / 10 + 2) + 4, srv.explain(
            f"{len(recycled)} recycle lines")
        assert any("timed out unanswered" in ln for ln in log), srv.explain(
            "no summary of the flood's timeouts")

        # a second flood: what the first left is bounded retention, not a leak
        again = run_flood(topo, srv.proc.pid, srv.admin_socket, count=COUNT,
                          seconds=SECONDS, pat_spoofed=PAT_SPOOFED,
                          drain_timeout=PHASE1_TIMEOUT + 20, prepare=False)
        print(again)
        assert again.sent == COUNT and again.stats_after["half_open"] == 0, again
        assert again.rss_after_kb <= run.rss_after_kb * 1.05, srv.explain(
            f"a second flood kept more memory: {run.rss_after_kb} -> {again.rss_after_kb} kB"
            f" ({again})")
