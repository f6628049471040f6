"""Time one page of GET /api/v1/sessions with 10,000 sessions, in-process (issue 13).

    python bench/sessions_page.py [--sessions 10000] [--limit 100] [--runs 3] [--json OUT]

The manager tests' fake concentrator (tests/manager/manager_fakes.py) with
the real session store, filled through the store as the core does, and a
data-plane snapshot holding both SAs of every session (as a running
concentrator's would: session_json looks each child's counters up in it).
The handler is called directly (aiohttp's mocked request): what is timed is
the handler's own work on the event loop -- parameters, filter, order, the
page's dicts, the JSON -- without the login check and the socket.

Prints, for each case, the median and the range of `--runs` runs in ms, the
longest the handler held the event loop in one go (a task beside it that
yields at every turn measures the longest gap between two of its turns: IKE
waits that long, issue 13), and the page's size. No network, no root.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "manager"))

from aiohttp.test_utils import make_mocked_request
from manager_fakes import FakeConcentrator, config_text

from vpnhub.concentrator.service import GC_THRESHOLDS
from vpnhub.config import parse_config
from vpnhub.eventlog import EventLog
from vpnhub.manager.app import MANAGER_KEY, Manager, api_sessions, build_app
from vpnhub.net.stats import DataplaneStats, SaStats

CASES = [
    ("first page, default order", {}),
    ("second page (cursor)", {"cursor": None}),
    ("sort=bytes&order=desc", {"sort": "bytes", "order": "desc"}),
    ("sort=user, filter group and has_diagnosis", {"sort": "user", "group": "vpngroup",
                                                   "has_diagnosis": "false"}),
]


def fill(conc: FakeConcentrator, n: int) -> DataplaneStats:
    sas: list[SaStats] = []
    for i in range(n):
        s = conc.add_session(f"user{i:05d}", 1024 + i % 60000, nat_t=i % 2 == 0,
                             login_time=1_700_000_000.0 + (i * 7919) % n)
        conc.sessions.update(s.key, public_ip=f"198.51.{100 + i // 250 % 100}.{i % 250 + 1}")
        for c in s.children.values():
            sas.append(SaStats(c.spi_in, "in", "AES-256/SHA1", (s.public_ip, s.public_port),
                               "udp", True, bytes_in=1000 + i))
            sas.append(SaStats(c.spi_out, "out", "AES-256/SHA1", (s.public_ip, s.public_port),
                               "udp", True, bytes_out=2000 + i))
    return DataplaneStats(sas=tuple(sas))


class Turns:
    """The longest gap between two turns of the event loop while it runs: in time, and
    in CPU time of the loop's thread (the work itself, whatever else the machine runs)."""

    def __init__(self) -> None:
        self.longest = 0.0
        self.longest_cpu = 0.0
        self.running = True

    async def run(self) -> None:
        last, last_cpu = time.perf_counter(), time.thread_time()
        while self.running:
            await asyncio.sleep(0)
            now, now_cpu = time.perf_counter(), time.thread_time()
            self.longest = max(self.longest, now - last)
            self.longest_cpu = max(self.longest_cpu, now_cpu - last_cpu)
            last, last_cpu = now, now_cpu


async def one(app: Any, query: dict[str, str],
              limit: int) -> tuple[float, tuple[float, float], dict[str, Any]]:
    """The handler's time, the longest it held the loop (time, CPU time), in seconds,
    and the page."""
    qs = "&".join(f"{k}={v}" for k, v in {"limit": str(limit), **query}.items())
    req = make_mocked_request("GET", f"/api/v1/sessions?{qs}", app=app)
    turns = Turns()
    ticker = asyncio.create_task(turns.run())
    await asyncio.sleep(0)  # the ticker's first turn
    t0 = time.perf_counter()
    resp = await api_sessions(req)
    dt = time.perf_counter() - t0
    turns.running = False
    await ticker
    assert resp.status == 200, resp.text
    assert resp.text is not None
    return dt, (turns.longest, turns.longest_cpu), json.loads(resp.text)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    gc.set_threshold(*GC_THRESHOLDS)  # as `vpnhub serve` runs (concentrator/service.py)
    config = parse_config(config_text(None, pool="10.64.0.0/16"))
    conc = FakeConcentrator(config, EventLog())
    t0 = time.perf_counter()
    snapshot = fill(conc, args.sessions)
    setup = time.perf_counter() - t0
    m = Manager(conc)
    m.view.snapshot = snapshot
    app = build_app(m)
    app[MANAGER_KEY] = m
    out: dict[str, Any] = {"sessions": args.sessions, "limit": args.limit, "runs": args.runs,
                           "setup_s": round(setup, 1), "cases": {}}
    _, _, first = await one(app, {}, args.limit)
    for name, query in CASES:
        q = {k: (first["next_cursor"] if v is None else v) for k, v in query.items()}
        times: list[float] = []
        holds: list[float] = []
        cpu_holds: list[float] = []
        for _ in range(args.runs):
            dt, (held, held_cpu), body = await one(app, q, args.limit)
            times.append(dt * 1000)
            holds.append(held * 1000)
            cpu_holds.append(held_cpu * 1000)
        out["cases"][name] = {"median_ms": round(statistics.median(times), 1),
                              "min_ms": round(min(times), 1), "max_ms": round(max(times), 1),
                              "loop_held_max_ms": round(max(holds), 1),
                              "loop_held_cpu_median_ms": round(statistics.median(cpu_holds), 1),
                              "page": len(body["sessions"]), "total": body["total"]}
    m.view.close()
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sessions", type=int, default=10000)
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    result = asyncio.run(main(args))
    for name, c in result["cases"].items():
        print(f"{name:45s} {c['median_ms']:7.1f} ms median ({c['min_ms']}-{c['max_ms']} ms),"
              f" loop held {c['loop_held_max_ms']} ms at most ({c['loop_held_cpu_median_ms']} ms"
              f" CPU, median), {c['page']} of {c['total']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
