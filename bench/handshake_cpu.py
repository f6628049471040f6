"""The concentrator's CPU per full handshake, in process (issue 13).

    python bench/handshake_cpu.py [--tunnels 600] [--runs 3] [--group 14]
                                  [--profile OUT.txt] [--json OUT] [--smoke]

No root, no lab, no sockets: the concentrator core (`ConcentratorCore` with
the real IKE driver, session store, event log and XAUTH behind the lock-out
wrapper, a fake data plane) is driven by the core rig of
tests/concentrator/core_harness.py, and the clients are our engine as
initiator behind one PAT, as bench/handshake.py's load generator: Aggressive
Mode with the group PSK, XAUTH, Mode Config, Quick Mode with PFS, DH group
``--group``, ``--batch`` clients started together.

Only the core's side is timed (`time.process_time`): each
`ConcentratorCore.receive` (driver, endpoint demux, decrypt, HASH checks,
answers built and handed to the send callback, events through the core) and
each step of the core's coroutines (the XAUTH check). The clients' CPU is
left out. The DH part (the group's modular exponentiations run inside the
core's calls) is timed apart, so that ``other_ms`` is the concentrator's CPU
per tunnel without the DH: what is left of a handshake once the DH moves to
a worker thread. What the process's shell adds (sockets, the data plane's
thread, the event store's SQLite) is not in the figure: bench/handshake.py
measures the whole process.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# This tree's vpnhub before the venv's editable install (which points at one
# checkout): run from a worktree, the script measures that worktree's code.
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "concentrator"))  # the core rig

from common import summary  # noqa: E402
from core_harness import (  # noqa: E402
    BENCH_ACCOUNTS,
    BENCH_BATCH,
    BENCH_PASSWORD,
    CoreRig,
    config_text,
)

import vpnhub  # noqa: E402
from vpnhub.concentrator.service import GC_THRESHOLDS  # noqa: E402
from vpnhub.config import parse_config  # noqa: E402
from vpnhub.crypto.dh import ModpGroup, dh_group  # noqa: E402
from vpnhub.ike.policy import Policy  # noqa: E402


class CoreMeter:
    """The CPU of the core's calls, and of the DH exponentiations made inside them."""

    def __init__(self, profile: cProfile.Profile | None) -> None:
        self.cpu = 0.0
        self.dh_cpu = 0.0
        self.dh_calls = 0
        self.inside = False
        self.in_dh = False  # a g^x that falls back to powmod is one DH call, timed once
        self.profile = profile

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kw: Any) -> Any:
            if self.profile is not None:
                self.profile.enable()
            self.inside = True
            t0 = time.process_time()
            try:
                return fn(*args, **kw)
            finally:
                self.cpu += time.process_time() - t0
                self.inside = False
                if self.profile is not None:
                    self.profile.disable()
        return timed

    def wrap_dh(self, fn: Callable[..., int]) -> Callable[..., int]:
        """A MODP group's exponentiations: `powmod` (g^xy, RSA) and `generator_power`
        (our own g^x, from the fixed-base table since crypto.fixedbase: no powmod)."""
        def timed(*args: int) -> int:
            if not self.inside or self.in_dh:
                return fn(*args)  # a client's, or a powmod inside a timed g^x
            self.in_dh = True
            t0 = time.process_time()
            try:
                return fn(*args)
            finally:
                self.dh_cpu += time.process_time() - t0
                self.dh_calls += 1
                self.in_dh = False
        return timed


def build_rig(store: Path) -> CoreRig:
    """The core rig, its event log as `vpnhub serve` configures it: the default
    console and keep severities, the secrets hidden, the SQLite store."""
    users = {f"bench{i:02d}": BENCH_PASSWORD for i in range(BENCH_ACCOUNTS)}
    config = parse_config(config_text(users=users, pool="10.40.0.0/16", store=str(store),
                                      group_extra="simultaneous_logins = 1000000"))
    rig = CoreRig(config)
    problem = rig.log.configure(config)
    if problem:
        raise SystemExit(problem)
    return rig


def one_run(tunnels: int, group: int, batch: int, rate: float,
            profile: cProfile.Profile | None) -> dict[str, float]:
    gc.collect()  # the previous run's garbage is not this one's cost
    with tempfile.TemporaryDirectory() as tmp:
        return _timed_run(build_rig(Path(tmp) / "events.db"), tunnels, group, batch, rate,
                          profile)


def _timed_run(rig: CoreRig, tunnels: int, group: int, batch: int, rate: float,
               profile: cProfile.Profile | None) -> dict[str, float]:
    meter = CoreMeter(profile)
    modp = dh_group(group)
    saved = modp.powmod if isinstance(modp, ModpGroup) else None
    if isinstance(modp, ModpGroup):
        modp.powmod = meter.wrap_dh(modp.powmod)
        modp.generator_power = meter.wrap_dh(modp.generator_power)  # type: ignore[method-assign]
    rig.core.receive = meter.wrap(rig.core.receive)  # type: ignore[method-assign]
    rig._run_tasks = meter.wrap(rig._run_tasks)  # type: ignore[method-assign]
    try:
        for i in range(tunnels):
            pc = rig.add_pc(f"bench{i % BENCH_ACCOUNTS:02d}", BENCH_PASSWORD,
                            local_ip=f"10.10.{i // 250}.{i % 250 + 2}")
            pc.sa.config.policy = Policy(dh_group=group)
            pc.sa.initiate(rig.now)
            rig._start(pc, pc.sa)
            if i % batch == batch - 1:
                rig.settle()
                rig.now += batch / rate
        rig.settle()
        up = sum(pc.up for pc in rig.pcs)
        if up != tunnels:
            raise SystemExit(f"only {up} of {tunnels} tunnels established")
    finally:
        if saved is not None and isinstance(modp, ModpGroup):
            modp.powmod = saved
            del modp.generator_power  # the class's method again
        rig.close()
    return {"conc_ms": meter.cpu / tunnels * 1e3,
            "dh_ms": meter.dh_cpu / tunnels * 1e3,
            "other_ms": (meter.cpu - meter.dh_cpu) / tunnels * 1e3,
            "dh_per_tunnel": meter.dh_calls / tunnels}


FIELDS = ("conc_ms", "dh_ms", "other_ms", "dh_per_tunnel")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tunnels", type=int, default=600)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--group", type=int, default=14, help="DH group (phase 1 and PFS)")
    parser.add_argument("--batch", type=int, default=BENCH_BATCH,
                        help="clients started together")
    parser.add_argument("--rate", type=float, default=80.0,
                        help="tunnels started per simulated second (any rate is no"
                             " flood: each batch answers before the next starts)")
    parser.add_argument("--profile", default="",
                        help="cProfile of the core's calls in a run of its own")
    parser.add_argument("--json", default="", help="write the results there too")
    parser.add_argument("--smoke", action="store_true", help="20 tunnels, one run")
    parser.add_argument("--prefix", default="", help="ignored (the smoke runner passes it)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.tunnels, args.runs = 20, 1
    gc.set_threshold(*GC_THRESHOLDS)  # as `vpnhub serve` runs
    runs = []
    for _ in range(args.runs):
        runs.append(one_run(args.tunnels, args.group, args.batch, args.rate, None))
        print(" ".join(f"{k}={runs[-1][k]:.3f}" for k in FIELDS), flush=True)
    if args.profile:  # a run of its own: the profiler's overhead stays out of the figures
        prof = cProfile.Profile(time.process_time)  # CPU: the machine is shared
        one_run(args.tunnels, args.group, args.batch, args.rate, prof)
        text = io.StringIO()
        stats = pstats.Stats(prof, stream=text)
        stats.sort_stats("tottime").print_stats(60)
        stats.sort_stats("cumulative").print_stats(80)
        Path(args.profile).write_text(text.getvalue())
    results = {k: summary([r[k] for r in runs]) for k in FIELDS}
    for k, s in results.items():
        print(f"{k:>14}: {s['median']:8.3f} ({s['min']:.3f}..{s['max']:.3f})")
    if args.json:
        doc: dict[str, Any] = {"tunnels": args.tunnels, "runs": args.runs,
                               "group": args.group, "results": results, "each": runs,
                               "vpnhub": str(Path(vpnhub.__file__).resolve().parent)}
        Path(args.json).write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
