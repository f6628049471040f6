"""What the manager's and the admin socket's bookkeeping costs the event loop (issue 13).

    python bench/manager_cost.py [--sessions 10000] [--runs 3] [--history-sessions 1000]
                                 [--json OUT] [--smoke]

In-process, no root, like bench/sessions_page.py: the manager tests' fake
concentrator with the real session store, filled through the store as the
core does (one IPsec SA pair per session: 20,000 SAs for 10,000 sessions),
and a real data plane (in-memory TUN, a loopback UDP socket) holding those
SAs. For each of the manager's 2 s sample(), warnings(), summary(), the
/metrics text and one page of the admin socket's `sessions`, the coroutine or
call is stepped by hand: "longest step" is the longest stretch it holds the
event loop without a turn for anything else (IKE, ESP events, the API), "per
call" the whole call; median and range of `--runs` runs, in ms.

The data plane's answer to the sample (the full snapshot, or the compact
counters where the code has them) is built in the data-plane thread in a
running concentrator, so it is timed apart ("data plane answer") and the
sample is given that answer ready-made: what is timed is the loop's share.

"Periodic work, steady state": the CPU time (`time.process_time`, the data
plane's answers included) of what the manager does every 10 s with these
sessions, as % of a core: where the tree has the totals-only refresh
(`ManagerView.sample_totals`, issue 13), one per-session sample (GetCounters
and `sample()`) and four totals refreshes (GetCounters without the SA arrays
and `sample_totals()`); before it, five per-session samples (one every 2 s).
Median and range of `--runs` cycles.

Bytes per session of the throughput history: tracemalloc over `--history-
sessions` sessions (the size per session does not depend on the count) from
the first sample until the history is full (SAMPLES + 1 samples).

Runs against any tree on PYTHONPATH (the figures before issue 13 were taken
with the tree before it): where the code has no paged admin `sessions`, the
whole table is timed and labelled so.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "manager"))

from manager_fakes import FakeConcentrator, config_text

from vpnhub.config import parse_config
from vpnhub.esp import ESP_AES_CBC, HMAC_SHA1_96, SaParams, key_lengths
from vpnhub.eventlog import EventLog
from vpnhub.manager import metrics
from vpnhub.manager.view import SAMPLES, ManagerView
from vpnhub.net.dataplane import Dataplane, open_udp_socket
from vpnhub.net.messages import AddInbound, AddOutbound
from vpnhub.net.stats import SaCounters
from vpnhub.net.tun import FakeTun

try:  # the paged admin `sessions` (issue 13)
    from vpnhub.concentrator.adminsessions import sessions_page
except ImportError:
    sessions_page = None

NOW = 1_700_000_500.0


class Answered:
    """The data plane's answers, ready-made (built once by the real data plane)."""

    def __init__(self, dp: Dataplane) -> None:
        self.full = dp.stats_now()
        self.compact = dp.counters_now() if hasattr(dp, "counters_now") else None

    async def stats(self) -> Any:
        return self.full

    async def counters(self, sas: bool = True) -> Any:
        return self.compact if sas else SaCounters(self.compact.totals)


def fill(conc: FakeConcentrator, n: int) -> None:
    for i in range(n):
        conc.add_session(f"user{i:05d}", 1024 + i % 60000, nat_t=i % 2 == 0,
                         legacy=i % 50 == 0, login_time=1_700_000_000.0 + (i * 7919) % n)


def install(conc: FakeConcentrator) -> Dataplane:
    """Every session's SA pair in a real data plane, with traffic on each."""
    enc, integ = key_lengths(ESP_AES_CBC, 128, HMAC_SHA1_96)
    dp = Dataplane(FakeTun(), udp=open_udp_socket("127.0.0.1", 0))
    for i, s in enumerate(conc.sessions.all()):
        peer = (f"198.51.{100 + i // 250 % 14}.{i % 250 + 1}", 4500 + i // 3500)
        for c in s.children.values():
            for spi, out in ((c.spi_in, False), (c.spi_out, True)):
                keys = SaParams.from_keymat(spi, ESP_AES_CBC, 128, HMAC_SHA1_96,
                                            os.urandom(enc + integ))
                dp.call(AddOutbound(keys, peer, dst=f"10.40.{i // 256}.{i % 256}/32") if out
                        else AddInbound(keys, peer))
    for e in dp._in.values():  # traffic: the counters are not all zero
        e.sa.bytes_in, e.sa.packets_in = 1000 + e.sa.spi, 10
    return dp


def stepped(coro: Coroutine[Any, Any, Any]) -> tuple[float, float]:
    """Run `coro` by hand: (whole call, longest step) in seconds."""
    longest = total = 0.0
    while True:
        t0 = time.perf_counter()
        try:
            coro.send(None)
            done = False
        except StopIteration:
            done = True
        dt = time.perf_counter() - t0
        total += dt
        longest = max(longest, dt)
        if done:
            return total, longest


def plain(call: Callable[[], object]) -> tuple[float, float]:
    t0 = time.perf_counter()
    call()
    dt = time.perf_counter() - t0
    return dt, dt


def admin_page(conc: FakeConcentrator) -> tuple[str, Callable[[], tuple[float, float]]]:
    if sessions_page is not None:
        return ("admin sessions, one page (1000)",
                lambda: stepped(sessions_page(conc.sessions, {"cmd": "sessions"}, NOW)))
    return ("admin sessions (whole table: not paged)",
            lambda: plain(lambda: conc.sessions.to_json(NOW)))


def summarize(values: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values]
    return {"median": round(statistics.median(ms), 2), "min": round(min(ms), 2),
            "max": round(max(ms), 2)}


def timed(runs: int, one: Callable[[], tuple[float, float]]) -> dict[str, Any]:
    results = [one() for _ in range(runs)]
    return {"per_call_ms": summarize([r[0] for r in results]),
            "longest_step_ms": summarize([r[1] for r in results])}


def periodic_cpu(view: ManagerView, dp: Dataplane) -> float:
    """CPU seconds of the manager's periodic work over 10 s (a full cycle)."""
    totals_only = hasattr(view, "sample_totals")
    t0 = time.process_time()
    for i in range(5):  # one SAMPLE_EVERY (2 s) each
        if i == 0 or not totals_only:
            dp.counters_now()  # the data plane's answer, built in its thread
            stepped(view.sample())
        else:
            dp.counters_now(False)
            stepped(view.sample_totals())
    return time.process_time() - t0


def history_bytes(n: int) -> float:
    """Bytes per session of a full throughput history (no data plane: the store's bytes)."""
    conc = FakeConcentrator(parse_config(config_text(None, pool="10.64.0.0/16")), EventLog())
    fill(conc, n)
    clock = iter(float(t) for t in range(10**9))
    view = ManagerView(conc, clock=lambda: next(clock))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(SAMPLES + 1):
            stepped(view.sample())
        return (tracemalloc.get_traced_memory()[0] - before) / n
    finally:
        tracemalloc.stop()
        view.close()


def main(args: argparse.Namespace) -> dict[str, Any]:
    conc = FakeConcentrator(parse_config(config_text(None, pool="10.64.0.0/16")), EventLog())
    fill(conc, args.sessions)
    dp = install(conc)
    try:
        answer = {"data plane answer, full snapshot (GetStats)": dp.stats_now}
        if hasattr(dp, "counters_now"):
            answer["data plane answer, compact counters (GetCounters)"] = dp.counters_now
        conc.dataplane = Answered(dp)
        view = ManagerView(conc)
        stepped(view.sample())  # the history has a first sample: the next is steady state
        page_name, page = admin_page(conc)
        cases: dict[str, Callable[[], tuple[float, float]]] = {
            "sample()": lambda: stepped(view.sample()),
            "warnings()": lambda: plain(view.warnings),
            "summary()": lambda: plain(view.summary),
            "/metrics render": lambda: plain(lambda: metrics.render(view)),
            page_name: page,
        }
        for name, build in answer.items():
            cases[name] = lambda build=build: plain(build)  # type: ignore[misc]
        out: dict[str, Any] = {"sessions": args.sessions, "sas": 2 * args.sessions,
                               "runs": args.runs, "cases": {}}
        if hasattr(view, "sample_totals"):
            cases["sample_totals()"] = lambda: stepped(view.sample_totals())
            cases["data plane answer, totals only (GetCounters(sas=False))"] = \
                lambda: plain(lambda: dp.counters_now(False))
        for name, one in cases.items():
            out["cases"][name] = timed(args.runs, one)
        cycles = [periodic_cpu(view, dp) for _ in range(args.runs)]
        out["periodic_pct_of_core"] = {k: round(v / 100.0, 3)  # ms per 10 s -> % of 1 s
                                       for k, v in summarize(cycles).items()}
        view.close()
    finally:
        dp.close()
        if dp.udp is not None:
            dp.udp.close()
    out["history_sessions"] = args.history_sessions
    out["history_bytes_per_session"] = round(history_bytes(args.history_sessions))
    return out


def show(result: dict[str, Any]) -> None:
    print(f"{result['sessions']} sessions, {result['sas']} SAs, {result['runs']} runs"
          " (ms: median (min-max))")
    print(f"{'':52s} {'per call':>22s} {'longest loop step':>22s}")
    for name, c in result["cases"].items():
        cells = [f"{c[k]['median']:.2f} ({c[k]['min']:.2f}-{c[k]['max']:.2f})"
                 for k in ("per_call_ms", "longest_step_ms")]
        print(f"{name:52s} {cells[0]:>22s} {cells[1]:>22s}")
    p = result["periodic_pct_of_core"]
    print(f"periodic work, steady state: {p['median']:.2f} % of a core"
          f" ({p['min']:.2f}-{p['max']:.2f}), CPU time per 10 s")
    print(f"throughput history, full ({SAMPLES} samples): "
          f"{result['history_bytes_per_session']} bytes per session"
          f" (over {result['history_sessions']} sessions)")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sessions", type=int, default=10000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--history-sessions", type=int, default=1000)
    p.add_argument("--json", type=Path)
    p.add_argument("--smoke", action="store_true", help="200 sessions, one run")
    p.add_argument("--prefix", default="", help="ignored (the smoke runner passes it)")
    a = p.parse_args()
    if a.smoke:
        a.sessions, a.runs, a.history_sessions = 200, 1, 50
    res = main(a)
    show(res)
    if a.json:
        a.json.write_text(json.dumps(res, indent=2) + "\n")
