"""What a thread making g^x costs a loop thread beside it: powmod against the fixed-base comb.

    .venv/bin/python bench/dh_gil.py [--group 14] [--rate 500] [--busy-us 50,200]
        [--seconds 2] [--rounds 5]

The concentrator's DH worker thread (net.dhworker) fills the pool of key pairs
(ike.dhpool) with the GIL released inside gmpy2 (crypto.dh
`release_gil_in_this_thread`). Before the fixed-base table (crypto.fixedbase)
a g^x was one powmod: the thread let go of the GIL once per pair. With the
table it is ~50 multiplications and reductions, each a gmpy2 call that lets go
of the GIL and takes it back: many short calls, which might keep the GIL from
the loop more of the time. This measures it, in process:

- a "loop" thread does `--busy-us` of Python per turn, then one datagram
  through a socketpair (a system call: it lets go of the GIL, as the IKE
  loop does for each packet), and counts its turns and their duration;
- a "DH" thread beside it makes `--rate` g^x a second (0: as fast as it can)
  with the GIL released in gmpy2, either by powmod ("powmod") or by the comb
  ("comb"), or there is no DH thread ("none").

The three modes alternate within each round. Per mode it prints the medians
over the rounds (and range) of the loop's turns a second, its 99th percentile
turn time, the DH thread's pairs a second and its CPU per pair. On a shared
machine other load lowers every mode alike; compare modes within rounds.
"""

from __future__ import annotations

import argparse
import secrets
import socket
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

from vpnhub.crypto.dh import ModpGroup, dh_group, release_gil_in_this_thread

MODES = ("none", "powmod", "comb")


def dh_thread(make: Callable[[int], object], bits: int, rate: float, stop: threading.Event,
              out: dict[str, float]) -> None:
    release_gil_in_this_thread()
    made, cpu0, due = 0, time.thread_time(), time.perf_counter()
    while not stop.is_set():
        if rate:
            due += 1 / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        make(secrets.randbits(bits) | (1 << (bits - 1)))
        made += 1
    out["pairs"] = made
    out["cpu"] = time.thread_time() - cpu0


def loop_thread(seconds: float, busy_us: float, out: dict[str, float]) -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    turns: list[float] = []
    end = time.perf_counter() + seconds
    try:
        while (start := time.perf_counter()) < end:
            spin = start + busy_us / 1e6
            while time.perf_counter() < spin:
                pass
            a.send(b"x" * 100)
            b.recv(200)
            turns.append(time.perf_counter() - start)
    finally:
        a.close()
        b.close()
    turns.sort()
    out["turns"] = len(turns) / seconds
    out["p99_ms"] = turns[int(len(turns) * 0.99)] * 1e3


def one_run(group: ModpGroup, mode: str, seconds: float, busy_us: float,
            rate: float) -> dict[str, float]:
    loop: dict[str, float] = {}
    dh: dict[str, float] = {}
    stop = threading.Event()
    thread = None
    if mode != "none":
        p, g = group.prime, group.generator
        make: Callable[[int], object] = (group.generator_power if mode == "comb"
                                         else lambda x: group.powmod(g, x, p))
        thread = threading.Thread(target=dh_thread,
                                  args=(make, group.exponent_bits, rate, stop, dh))
        thread.start()
    try:
        loop_thread(seconds, busy_us, loop)
    finally:
        stop.set()
        if thread is not None:
            thread.join()
    pairs = dh.get("pairs", 0.0)
    return {"turns": loop["turns"], "p99_ms": loop["p99_ms"], "pairs": pairs / seconds,
            "cpu_us": dh["cpu"] / pairs * 1e6 if pairs else 0.0}


def spread(values: list[float], fmt: str) -> str:
    return (f"{format(statistics.median(values), fmt)}"
            f" ({format(min(values), fmt)}-{format(max(values), fmt)})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--group", type=int, default=14)
    ap.add_argument("--rate", type=float, default=500.0, help="g^x a second (0: flat out)")
    ap.add_argument("--busy-us", default="50,200", help="the loop's Python per turn, us")
    ap.add_argument("--seconds", type=float, default=2.0, help="per run")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    group = dh_group(args.group, backend="gmpy2")
    assert isinstance(group, ModpGroup)
    group.generator_power(3)  # build the table before the clock starts
    for busy in (float(b) for b in args.busy_us.split(",") if b):
        runs: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
        for _ in range(args.rounds):
            for mode in MODES:
                runs[mode].append(one_run(group, mode, args.seconds, busy, args.rate))
        for mode in MODES:
            r: dict[str, Any] = {k: [run[k] for run in runs[mode]] for k in runs[mode][0]}
            print(f"group {args.group} loop busy {busy:.0f} us, DH {args.rate:.0f}/s, {mode:6}:"
                  f" loop turns/s {spread(r['turns'], '.0f')}, p99 turn"
                  f" {spread(r['p99_ms'], '.2f')} ms; pairs/s {spread(r['pairs'], '.0f')},"
                  f" DH CPU/pair {spread(r['cpu_us'], '.0f')} us", flush=True)


if __name__ == "__main__":
    main()
