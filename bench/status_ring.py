"""What the Status page's ring costs: a sample, the hour's JSON, its memory (issue 15).

    python bench/status_ring.py [--sessions 10000] [--runs 5] [--json OUT] [--smoke]

In-process, no root, like bench/manager_cost.py: the manager tests' fake
concentrator with the real session store filled with `--sessions` sessions
(the tally by protocol kept by the store's events, as in a running
concentrator), a real `ManagerView`, and every drop reason /metrics knows
counting (the worst case of the drops chart: one array per reason).

- "sample": `statushistory.read(view)` and `StatusRing.add`, what the manager's
  ticker does every STATUS_EVERY (10 s); CPU time (`time.process_time`) per
  sample over 1,000 samples, median and range of `--runs` runs, in us, and
  as % of a core at one sample per 10 s.
- "history": `StatusRing.history()` of a full ring (360 samples) and its
  `json.dumps`, what GET /api/v1/status/history answers: CPU time per call
  (median and range of `--runs` runs of 20 calls, ms) and the body's bytes
  (quiet drops, and every reason dropping in every interval).
- "memory": tracemalloc of a full ring with every drop reason (bytes).

Neither cost depends on the number of sessions (the tally keeps the count);
the run with 10,000 and the smoke run with 200 show it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "manager"))

from manager_fakes import FakeConcentrator, config_text

from vpnhub.config import parse_config
from vpnhub.eventlog import EventLog
from vpnhub.manager.metrics import ESP_DROPS, IKE_DROPS
from vpnhub.manager.statushistory import KEEP, STATUS_EVERY, StatusRing, read
from vpnhub.manager.view import ManagerView
from vpnhub.net.stats import DataplaneStats, Traffic

SAMPLES_TIMED = 1000
HISTORY_CALLS = 20


def build(n: int) -> ManagerView:
    conc = FakeConcentrator(parse_config(config_text(None, pool="10.40.0.0/16")), EventLog())
    for i in range(n):
        conc.add_session(f"user{i:05d}", 1024 + i % 60000)
    return ManagerView(conc)


def tick(view: ManagerView, i: int, dropping: bool) -> None:
    """The counters move as in a busy concentrator: traffic, handshakes, drops."""
    view.snapshot = DataplaneStats(
        esp_totals=Traffic(1_000_000 * i, 1000 * i, 2_000_000 * i, 2000 * i),
        drops_total={r: (i if dropping else 0) for r in ESP_DROPS})
    view.handshakes.completed = 5 * i
    drops = view.conc.endpoint.drops
    for r in IKE_DROPS:
        drops[r] = i if dropping else 0


def stats(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3)}


def time_samples(view: ManagerView) -> float:
    """CPU us per read + add."""
    ring = StatusRing()
    tick(view, 1, True)
    t0 = time.process_time()
    for i in range(SAMPLES_TIMED):
        ring.add(i * STATUS_EVERY, read(view))
    return (time.process_time() - t0) / SAMPLES_TIMED * 1e6


def full_ring(view: ManagerView, dropping: bool) -> StatusRing:
    ring = StatusRing()
    for i in range(KEEP):
        tick(view, i, dropping)
        ring.add(1_700_000_000.0 + i * STATUS_EVERY, read(view))
    return ring


def time_history(ring: StatusRing) -> tuple[float, int]:
    """CPU ms per build of the answer (history() and its JSON), and the body's bytes."""
    t0 = time.process_time()
    for _ in range(HISTORY_CALLS):
        ring._body = (-1, b"")  # built anew, as after each sample
        body = ring.history_json()
    return (time.process_time() - t0) / HISTORY_CALLS * 1e3, len(body)


def time_cached(ring: StatusRing) -> float:
    """CPU us per answer between two samples (the body built for this sample)."""
    ring.history_json()
    t0 = time.process_time()
    for _ in range(SAMPLES_TIMED):
        ring.history_json()
    return (time.process_time() - t0) / SAMPLES_TIMED * 1e6


def memory(view: ManagerView) -> int:
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    ring = full_ring(view, True)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    size = sum(s.size_diff for s in after.compare_to(before, "filename"))
    del ring
    return size


def main(a: argparse.Namespace) -> dict[str, Any]:
    view = build(a.sessions)
    assert sum(view.tally.by_protocol.values()) == a.sessions
    per_sample = [time_samples(view) for _ in range(a.runs)]
    quiet, busy = full_ring(view, False), full_ring(view, True)
    history = [time_history(busy) for _ in range(a.runs)]
    res: dict[str, Any] = {
        "sessions": a.sessions, "runs": a.runs, "keep": KEEP, "interval_s": STATUS_EVERY,
        "drop_reasons": len(IKE_DROPS) + len(ESP_DROPS),
        "sample_us": stats(per_sample),
        "sample_core_percent": round(statistics.median(per_sample) / 1e6 / STATUS_EVERY
                                     * 100, 5),
        "history_ms": stats([ms for ms, _ in history]),
        "history_cached_us": stats([time_cached(busy) for _ in range(a.runs)]),
        "history_bytes_quiet": len(quiet.history_json()),
        "history_bytes_every_reason_dropping": history[0][1],
        "memory_bytes": memory(view),
    }
    view.close()
    return res


def show(r: dict[str, Any]) -> None:
    s, hm = r["sample_us"], r["history_ms"]
    print(f"sessions {r['sessions']}, {r['runs']} runs; ring of {r['keep']} samples"
          f" every {r['interval_s']:g} s, {r['drop_reasons']} drop reasons counting")
    print(f"sample (read + add): {s['median']} us median ({s['min']}-{s['max']}),"
          f" {r['sample_core_percent']} % of a core")
    print(f"history() + JSON of the full hour: {hm['median']} ms median"
          f" ({hm['min']}-{hm['max']}); {r['history_bytes_quiet']} bytes without drops,"
          f" {r['history_bytes_every_reason_dropping']} with every reason dropping;"
          f" the same answer again until the next sample: {r['history_cached_us']['median']}"
          " us")
    print(f"memory of the full ring: {r['memory_bytes']} bytes")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sessions", type=int, default=10000)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--json", type=Path)
    p.add_argument("--smoke", action="store_true", help="200 sessions, one run")
    p.add_argument("--prefix", default="", help="ignored (the smoke runner passes it)")
    args = p.parse_args()
    if args.smoke:
        args.sessions, args.runs = 200, 1
    result = main(args)
    show(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
