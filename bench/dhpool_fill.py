"""The DH pool's fill: its time and memory per group, and what it costs the IKE loop.

    .venv/bin/python bench/dhpool_fill.py [--groups 14,15,16] [--busy-ms 0,0.5]
        [--json out.json] [--smoke]

Issue 13 (docs/CONFIG.md "DH pool sizing"): the concentrator keeps a pool of
Diffie-Hellman key pairs per group (`ike.dhpool`, 2048 for group 14), filled at
start-up and after each storm by the DH worker thread (`net.dhworker`) with the
GIL released in gmpy2's powmod. Per group this measures, in-process, with the
real `DhPool` and `DhWorker`:

- the default size, the time the worker thread takes to fill it from empty,
  and the memory the ready pairs hold (tracemalloc);
- the lateness of an asyncio loop (timers every 2 ms, each turn then busy for
  `--busy-ms` of Python, as the IKE loop serving logins) over a window while
  the worker fills the pool, against the same window with the worker idle
  before and after: median, 99th percentile and worst, in milliseconds. The
  thread takes the GIL back after each powmod, so the loop waits for it now
  and then; the concentrator counts 50 ms as a stall (`loop_stalls`).

The fill time is read once the filling window is over, so a fill done within
the window shows as the window: then count `made_in_window`, or give `--size`
more pairs than a window makes (the lateness "filling" then covers only filling).

The machine's other load shows in both windows alike; alternate runs on a shared
machine and compare the filling window with the idle ones of the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import write_json

from vpnhub.crypto.dh import DEFAULT_BACKEND, dh_group
from vpnhub.ike.dhpool import DhPool, default_size
from vpnhub.net.dhworker import DhWorker

TICK = 0.002  # the loop's timer period while measuring its lateness


async def lateness(seconds: float, busy_ms: float) -> list[float]:
    """The loop's lateness (ms) for each TICK timer over `seconds`."""
    loop = asyncio.get_running_loop()
    late: list[float] = []
    end = loop.time() + seconds
    while loop.time() < end:
        due = loop.time() + TICK
        await asyncio.sleep(TICK)
        late.append((loop.time() - due) * 1e3)
        spin = time.perf_counter() + busy_ms / 1e3  # Python work, as IKE's
        while time.perf_counter() < spin:
            pass
    return late


def figures(late: list[float]) -> dict[str, float]:
    s = sorted(late)
    return {"n": len(s), "p50_ms": round(statistics.median(s), 3),
            "p99_ms": round(s[min(len(s) - 1, int(len(s) * 0.99))], 3),
            "max_ms": round(s[-1], 3)}


def memory_per_pair(group: int, n: int) -> float:
    g = dh_group(group)
    # The first pair of a MODP group builds its fixed-base table (crypto.fixedbase,
    # ~0.3 MiB for group 14), shared by all pairs: not a cost per pair.
    g.generate()
    tracemalloc.start()
    pairs = [g.generate() for _ in range(n)]
    used, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del pairs
    return used / n


async def one_group(group: int, size: int, busy_ms: float, window: float) -> dict[str, Any]:
    idle_before = await lateness(window, busy_ms)
    pool = DhPool({group: size})
    worker = DhWorker()
    worker.fill_pool(pool)
    t0 = time.monotonic()
    worker.start()
    filling = await lateness(window, busy_ms)
    made_in_window = len(pool)
    while pool.wanted():
        await asyncio.sleep(0.005)
    fill_s = time.monotonic() - t0
    idle_after = await lateness(window, busy_ms)
    worker.stop()
    return {"group": group, "size": size, "busy_ms": busy_ms, "fill_s": round(fill_s, 3),
            "ms_per_pair": round(fill_s / size * 1e3, 3), "made_in_window": made_in_window,
            "idle_before": figures(idle_before), "filling": figures(filling),
            "idle_after": figures(idle_after)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--groups", default="14,15,16")
    ap.add_argument("--busy-ms", default="0,0.5",
                    help="Python work per loop turn while measuring (comma-separated)")
    ap.add_argument("--window", type=float, default=0.8, help="seconds per lateness window")
    ap.add_argument("--size", type=int, default=0,
                    help="pairs to fill per group (default: the pool's default size); more than"
                         " a window's worth keeps the thread filling for the whole window")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--smoke", action="store_true", help="group 19, 64 pairs, short windows")
    ap.add_argument("--prefix", help=argparse.SUPPRESS)  # no lab: the smoke tests pass one
    args = ap.parse_args(argv)
    groups = [int(g) for g in args.groups.split(",") if g]
    busy = [float(b) for b in args.busy_ms.split(",") if b]
    if args.smoke:
        groups, busy, args.window = [19], [0.0], 0.1
    doc: dict[str, Any] = {"bench": "dhpool_fill", "backend": DEFAULT_BACKEND,
                           "started": time.strftime("%Y-%m-%d %H:%M:%S"), "results": []}
    for group in groups:
        size = 64 if args.smoke else args.size or default_size(group)
        kib = memory_per_pair(group, 64 if args.smoke else 256) / 1024
        for b in busy:
            r = asyncio.run(one_group(group, size, b, args.window))
            r["kib_per_pair"] = round(kib, 3)
            r["mib_full"] = round(kib * size / 1024, 2)
            doc["results"].append(r)
            print(f"group {group}: {size} pairs in {r['fill_s']:.2f} s"
                  f" ({r['ms_per_pair']:.3f} ms a pair; {r['made_in_window']} in the"
                  f" {args.window} s window), {kib:.2f} KiB a pair,"
                  f" {r['mib_full']:.2f} MiB full; loop busy {b} ms a turn, late"
                  + "".join(f" {k} p50/p99/max {v['p50_ms']}/{v['p99_ms']}/{v['max_ms']} ms;"
                            for k, v in ((k, r[k]) for k in
                                         ("idle_before", "filling", "idle_after"))),
                  flush=True)
    write_json(args.json, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
