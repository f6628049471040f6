"""A spoofed flood of IKE first messages with a real vpnc logging in during it.

    sudo .venv/bin/python bench/flood.py [--count 5000] [--seconds 10] [--runs 3]
        [--pat-spoofed 32] [--json out.json]

The issue's figure: 5,000 valid-looking Aggressive Mode first messages in 10 s
from spoofed sources (198.51.100.0/24, 203.0.113.128/25) sent from the lab's
"internet" namespace, plus 32 carrying the PAT's own public address sent from
the PAT; a third of the way in, vpnc behind that PAT connects
(``vpnhub.lab.flood.run_flood``). Each run builds its own lab and concentrator.

Reported per run and as median (min..max) over ``--runs``: how many times vpnc
sent its message 1 (1 = answered within its first retransmission window of
1 s), seconds from vpnc's start to its tunnel, whether ping passed, the
concentrator's RSS before the flood, at its peak and after every half-open SA
timed out, how long that took, and the endpoint's counters.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    environment,
    lab_prefix,
    log,
    run_dir_for,
    start_vpnhub_concentrator,
    vpnhub_config,
    write_json,
)

from vpnhub.lab.flood import run_flood
from vpnhub.lab.topology import Topology


def one_run(count: int, seconds: float, pat_spoofed: int) -> dict[str, Any]:
    prefix = lab_prefix("flood")
    run = run_dir_for(prefix)
    with Topology(prefix, clients=1, run_dir=run) as topo:
        conc = start_vpnhub_concentrator(topo, vpnhub_config(run, console_severity=5))
        assert conc.proc is not None and conc.admin_socket is not None
        r = run_flood(topo, conc.pid, conc.admin_socket, count=count, seconds=seconds,
                      pat_spoofed=pat_spoofed, drain_timeout=90.0)
        out = dataclasses.asdict(r)
        text = conc.proc.log_text().splitlines()
        out["log_lines"] = len(text)
        out["log_lines_recycled"] = sum("recycled" in ln for ln in text)
        out["log_lines_timeouts"] = sum("timed out" in ln for ln in text)
        return out


def cpu_per_message(n: int, reuse: bool) -> float:
    """Milliseconds of CPU per spoofed first message in the sans-I/O endpoint alone
    (group 14), with the flood's DH reuse on or off; no lab, no sockets."""
    import os
    import time

    from vpnhub.ike import endpoint as ep_mod
    from vpnhub.ike.endpoint import IkeEndpoint
    from vpnhub.ike.sa import IkeConfig
    from vpnhub.lab.flood import first_message
    from vpnhub.secret import Secret

    def config(remote: tuple[str, int], local_port: int = 500) -> IkeConfig:
        return IkeConfig(local_address="203.0.113.50", log_severity=5,
                         psk_lookup=lambda t, d, r: Secret(b"labgroupsecret"))

    saved = ep_mod.FLOOD_UNVERIFIED
    ep_mod.FLOOD_UNVERIFIED = 0 if reuse else 10**9  # every SA a flood's, or none
    try:
        ep = IkeEndpoint(config)
        msg = first_message("vpngroup")
        start = time.process_time()
        for i in range(n):
            sa = ep.receive(os.urandom(8) + msg[8:], (f"198.51.100.{i % 250 + 1}", 1024 + i),
                            500, 1000.0)
            if sa is not None:
                sa.datagrams_to_send()
        return (time.process_time() - start) * 1000 / n
    finally:
        ep_mod.FLOOD_UNVERIFIED = saved


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):g} ({min(values):g}..{max(values):g})"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=5000)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--pat-spoofed", type=int, default=32)
    p.add_argument("--json", type=Path)
    p.add_argument("--cpu", action="store_true",
                   help="only CPU ms per first message in process (DH reuse off / on)")
    a = p.parse_args()
    if a.cpu:
        import os

        alloc = os.environ.get("PYTHONMALLOC", "pymalloc")
        for reuse in (False, True):
            ms = [cpu_per_message(2000, reuse) for _ in range(3)]
            print(f"allocator {alloc:8} DH reuse {'on ' if reuse else 'off'}"
                  f" ms/first message {spread([round(m, 3) for m in ms])}")
        return 0
    runs = []
    for i in range(a.runs):
        log(f"flood run {i + 1}/{a.runs}: {a.count} spoofed first messages in {a.seconds:g} s"
            f" + {a.pat_spoofed} from the PAT's address")
        r = one_run(a.count, a.seconds, a.pat_spoofed)
        runs.append(r)
        log(f"  vpnc message 1 sent {r['vpnc_message1_sends']}x, tunnel after"
            f" {r['vpnc_connected_s']:.2f} s, ping {'ok' if r['ping_ok'] else 'FAILED'};"
            f" RSS {r['rss_before_kb'] // 1024} -> peak {r['rss_peak_kb'] // 1024} -> after"
            f" {r['rss_after_kb'] // 1024} MiB; half-open at the end of the flood"
            f" {r['stats_at_peak'].get('half_open')}, drained {r['drain_s']:.1f} s later;"
            f" drops {r['stats_after'].get('endpoint_drops')}; log lines"
            f" {r['log_lines']} ({r['log_lines_recycled']} recycle,"
            f" {r['log_lines_timeouts']} timeout summaries)")
    summary = {
        "vpnc_message1_sends": spread([r["vpnc_message1_sends"] for r in runs]),
        "vpnc_connected_s": spread([round(r["vpnc_connected_s"], 2) for r in runs]),
        "ping_ok": f"{sum(r['ping_ok'] for r in runs)}/{len(runs)}",
        "rss_before_mib": spread([round(r["rss_before_kb"] / 1024, 1) for r in runs]),
        "rss_peak_mib": spread([round(r["rss_peak_kb"] / 1024, 1) for r in runs]),
        "rss_after_mib": spread([round(r["rss_after_kb"] / 1024, 1) for r in runs]),
        "rss_after_vs_before_pct": spread(
            [round(100 * (r["rss_after_kb"] / r["rss_before_kb"] - 1), 1) for r in runs]),
        "half_open_at_flood_end": spread(
            [r["stats_at_peak"].get("half_open", 0) for r in runs]),
        "drain_s": spread([round(r["drain_s"], 1) for r in runs]),
    }
    for k, v in summary.items():
        print(f"{k:28} {v}")
    write_json(a.json, {"benchmark": "flood", "count": a.count, "seconds": a.seconds,
                        "pat_spoofed": a.pat_spoofed, "runs": runs, "summary": summary,
                        "environment": environment()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
