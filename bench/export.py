"""Time GET /api/v1/sessions/export with 10,000 sessions, and the loop's longest step (issue 13).

    python bench/export.py [--sessions 10000] [--runs 3] [--json OUT] [--smoke]

In-process, like bench/sessions_page.py: the manager tests' fake concentrator
with the real session store and a data-plane snapshot holding both SAs of
every session. The manager's app is served on 127.0.0.1 (a free port) and an
aiohttp client in the same event loop downloads each format, so the export
runs as it does in the concentrator: on the one loop everything shares.

Meanwhile a ticker is due every 1 ms and records how late the loop runs it:
the worst lateness is the longest single step the export took without
yielding (what IKE, DPD and the data plane would have waited), where making
the whole file at once would be one step of the whole export.

Prints, for each format: total time, bytes and lines, and the loop's longest
step, as the median and range of `--runs` runs. `--smoke`: 500 sessions, one
run (tests/bench/test_bench_smoke.py). No network outside loopback, no root.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "manager"))

import aiohttp
from aiohttp import web
from manager_fakes import ADMIN, FakeConcentrator, config_text
from sessions_page import fill

from vpnhub.config import parse_config
from vpnhub.eventlog import EventLog
from vpnhub.manager.app import Manager, build_app

TICK = 0.001  # the ticker's period: 1 ms


class Ticker:
    """A callback due every TICK; the worst lateness seen is the loop's longest step."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            due = time.perf_counter() + TICK
            await asyncio.sleep(TICK)
            self.worst = max(self.worst, time.perf_counter() - due)

    def start(self) -> None:
        self.worst = 0.0
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> float:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        return self.worst


async def download(http: aiohttp.ClientSession, url: str, token: str) -> tuple[int, int]:
    """(bytes, lines) of one export, read as it streams."""
    size = lines = 0
    async with http.get(url, headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 200, await r.text()
        async for chunk in r.content.iter_chunked(1 << 16):
            size += len(chunk)
            lines += chunk.count(b"\n")
    return size, lines


def spread(values: list[float], digits: int = 1) -> dict[str, float]:
    return {"median": round(statistics.median(values), digits),
            "min": round(min(values), digits), "max": round(max(values), digits)}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    config = parse_config(config_text(None, pool="10.64.0.0/16"))
    conc = FakeConcentrator(config, EventLog())
    m = Manager(conc)
    m.view.snapshot = fill(conc, args.sessions)
    runner = web.AppRunner(build_app(m), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    token = m.auth.open(ADMIN, "127.0.0.1", "bearer").token
    out: dict[str, Any] = {"sessions": args.sessions, "runs": args.runs, "formats": {}}
    ticker = Ticker()
    async with aiohttp.ClientSession() as http:
        for fmt in ("jsonl", "csv"):
            url = f"http://127.0.0.1:{port}/api/v1/sessions/export?format={fmt}"
            times: list[float] = []
            worst: list[float] = []
            for _ in range(args.runs):
                ticker.start()
                t0 = time.perf_counter()
                size, lines = await download(http, url, token)
                times.append((time.perf_counter() - t0) * 1000)
                worst.append(await ticker.stop() * 1000)
            out["formats"][fmt] = {"total_ms": spread(times), "longest_step_ms": spread(worst),
                                   "bytes": size, "lines": lines}
    await runner.cleanup()
    m.view.close()
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sessions", type=int, default=10000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--json", type=Path)
    p.add_argument("--smoke", action="store_true", help="500 sessions, 1 run")
    p.add_argument("--prefix", default="", help=argparse.SUPPRESS)  # the smoke runner's
    args = p.parse_args()
    if args.smoke:
        args.sessions, args.runs = 500, 1
    result = asyncio.run(main(args))
    for fmt, r in result["formats"].items():
        t, w = r["total_ms"], r["longest_step_ms"]
        print(f"{fmt:6s} {t['median']:8.1f} ms median ({t['min']}-{t['max']} ms),"
              f" {r['bytes']} bytes, {r['lines']} lines; longest loop step"
              f" {w['median']} ms ({w['min']}-{w['max']} ms)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
