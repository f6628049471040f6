"""What idle sessions cost the concentrator: DPD, NAT keepalives, timers (issue 13).

    python bench/dpd_cost.py [--sessions 2000] [--runs 3] [--window 60]
                             [--profile OUT.txt] [--json OUT] [--smoke]

In process, no root, simulated time. N sessions are set up through the
concentrator core (`ConcentratorCore` with the real session store, event log
and IKE driver) by the core rig of tests/concentrator/core_harness.py, each
client our engine as initiator behind a PAT, as in bench/shutdown.py. Then
the idle workload of bench/scale.py's load generator (RFC 3706: a client asks
R-U-THERE after 30 s without a word from the concentrator; RFC 3948 2.3: a
one-byte NAT keepalive every 20 s), timed by CPU (`time.process_time`):

- ``rut_us``: one R-U-THERE through `ConcentratorCore.receive` (the driver,
  the endpoint's demux, decrypt, HASH check, the R-U-THERE-ACK encrypted and
  handed to the send callback, the events through the core's `on_event`, the
  timer bookkeeping). The clients build their messages beforehand, untimed.
- ``keepalive_us``: one NAT keepalive through a real `Dataplane` (in-memory
  TUN, the split UDP 4500 sockets of net/ikesplit.py on loopback; a one-byte
  datagram never reaches the IKE socket). Where the tree has the keepalives'
  own socket (``keepalive_path`` "tick"), a second's worth at 10,000 sessions
  (500) is read by one tick; before it ("poll"), one `poll()` per keepalive,
  as 500 keepalives a second spread over time woke the data-plane thread once
  each. The thread wake-ups themselves (and the GIL hand-overs they cause)
  are not in the figure.
- the steady state over ``--window`` simulated seconds: every session's client
  asks R-U-THERE 30 s after it last heard from the core, on its own 1 s grid
  (the load generator's engine rounds idle deadlines up, as the core does), and
  the core's timer runs as `AsyncIkeDriver` runs it (one armed deadline,
  re-armed only if a message brings an earlier one; on firing,
  `IkeDriver.timer` then `next_timer`). In a slot where both are due the core's
  timer runs first: both processes wake at the same instant of the same clock.
  ``timer_us_per_s``: the CPU of the timer work per simulated second;
  ``ike_us_per_s``: all of the core's IKE work per second (R-U-THEREs answered,
  its own probes and their ACKs, timers); ``client_rut_per_s`` and
  ``core_rut_per_s``: the R-U-THEREs each side sent.

The figures for 10,000 sessions are projected linearly (``*_10k``): both the
R-U-THERE rate and the timer work grow with the count; ``idle_cpu_pct_10k``
adds 500 keepalives a second. What is left out: the
socket system calls of IKE on 4500 (`IkeSocket.read`/`send`) and the asyncio
loop's own wake-ups; bench/scale.py measures the whole process.
"""

from __future__ import annotations

import argparse
import cProfile
import heapq
import io
import json
import math
import pstats
import socket
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "concentrator"))  # the core rig

from common import summary  # noqa: E402
from core_harness import CoreRig, Pc, established_rig  # noqa: E402

from vpnhub.ike.driver import IkeDriver  # noqa: E402
from vpnhub.ike.transport import Transport  # noqa: E402
from vpnhub.net.dataplane import Dataplane  # noqa: E402
from vpnhub.net.ikesplit import open_natt_sockets  # noqa: E402
from vpnhub.net.tun import FakeTun  # noqa: E402

try:  # the keepalives' own socket (issue 13); before it, the 4500 socket had them
    from vpnhub.net.ikesplit import open_keepalive_socket
except ImportError:
    open_keepalive_socket = None  # type: ignore[assignment]

DPD = 30.0  # the load generator's and the concentrator's DPD interval, s
KEEPALIVE = 20.0  # the load generator's NAT keepalive interval, s
PROJECT = 10_000


def r_u_there(rig: CoreRig, pc: Pc) -> tuple[bytes, tuple[str, int]]:
    """The client's R-U-THERE, as it reaches the core (marker removed, PAT address)."""
    pc.sa.send_dpd(rig.now)
    (d,) = pc.sa.datagrams_to_send()
    return d.data, rig._public(pc, d.local_port)


def answer_clients(rig: CoreRig) -> float:
    """The core's datagrams reach the clients and their answers the core, until all is
    quiet; returns the CPU seconds of the core's part (the clients' is not counted)."""
    cpu = 0.0
    receive = rig.core.receive
    while rig._outbox or rig._inbox:
        out, rig._outbox = rig._outbox, []
        for d in out:
            rig._deliver(d)
        inbox, rig._inbox = rig._inbox, []
        for data, src, transport in inbox:
            t0 = time.process_time()
            receive(data, src, transport)
            cpu += time.process_time() - t0
    rig.sent.clear()
    return cpu


def time_r_u_there(rig: CoreRig, profile: cProfile.Profile | None) -> float:
    """CPU microseconds per R-U-THERE answered by the core."""
    msgs = [r_u_there(rig, pc) for pc in rig.pcs]
    receive, natt = rig.core.receive, Transport.NATT
    if profile is not None:
        profile.enable()
    t0 = time.process_time()
    for data, src in msgs:
        receive(data, src, natt)
    cpu = time.process_time() - t0
    if profile is not None:
        profile.disable()
    acks = len(rig._outbox)
    if acks != len(msgs):
        raise SystemExit(f"{acks} R-U-THERE-ACKs for {len(msgs)} R-U-THEREs")
    answer_clients(rig)
    return cpu / len(msgs) * 1e6


class ArmedTimer:
    """`AsyncIkeDriver`'s timer logic on the simulated clock: one armed deadline."""

    def __init__(self, driver: IkeDriver, profile: cProfile.Profile | None) -> None:
        self.driver = driver
        self.profile: cProfile.Profile | None = profile
        self.at = driver.next_timer()
        self.cpu = 0.0
        self.fired = 0

    def after_message(self) -> None:
        t0 = time.process_time()
        when = self.driver.earliest_touched()
        if when is not None and (self.at is None or when < self.at):
            self.at = when
        self.cpu += time.process_time() - t0

    def fire(self, now: float) -> None:
        if self.profile is not None:
            self.profile.enable()
        t0 = time.process_time()
        self.driver.timer(now)
        self.at = self.driver.next_timer()
        self.cpu += time.process_time() - t0
        if self.profile is not None:
            self.profile.disable()
        self.fired += 1


def server_seqs(rig: CoreRig) -> dict[int, int]:
    """Each core SA's last R-U-THERE sequence number (RFC 3706 7: random start)."""
    out = {}
    for i, pc in enumerate(rig.pcs):
        sa = rig.core.endpoint.get(pc.sa.icookie, pc.sa.rcookie)
        if sa is not None:
            out[i] = sa.dpd_seq
    return out


def steady_state(rig: CoreRig, window: float,
                 profile: cProfile.Profile | None) -> dict[str, float]:
    """Every client asks R-U-THERE 30 s after it last heard from the core, on its own
    1 s grid (the load generator's engine rounds idle deadlines up, as the core does);
    the core's timer runs. In a slot where both are due, the core's timer runs first
    (both processes wake at the same instant of the same clock, and the core's probes
    leave before the clients' arrive): a race the client still sends its probe in."""
    n = len(rig.pcs)
    start = rig.now
    # warm-up: one round spread over just under one interval, so that the clients'
    # and the core's last-heard times are spread as in a long-running concentrator
    heap = [(start + (DPD - 1.0) * i / n, i) for i in range(n)]
    timer = ArmedTimer(rig.driver, None)
    measure_from = start + DPD + 2.0
    end = measure_from + window
    receive, natt = rig.core.receive, Transport.NATT
    cpu = t_first_cpu = 0.0
    measuring = False
    asked = 0
    seqs: dict[int, int] = {}
    while True:
        next_msg = heap[0][0] if heap else end
        if timer.at is not None and timer.at <= next_msg and timer.at <= end:
            rig.now = max(rig.now, timer.at)
            timer.fire(rig.now)
            cpu += answer_clients(rig)  # the core's probes, answered
            continue
        if next_msg >= end:
            break
        if not measuring and next_msg >= measure_from:
            measuring, t_first_cpu, cpu, timer.fired, asked = True, timer.cpu, 0.0, 0, 0
            seqs = server_seqs(rig)
            timer.profile = profile
        due, i = heapq.heappop(heap)
        pc = rig.pcs[i]
        heard = pc.sa.last_heard
        again = math.ceil(heard + DPD)
        if due >= start + DPD and heard < due and again > due:
            heapq.heappush(heap, (again, i))  # it heard the core before: it waits
            continue
        rig.now = due
        data, src = r_u_there(rig, pc)
        asked += 1
        t0 = time.process_time()
        receive(data, src, natt)
        cpu += time.process_time() - t0
        timer.after_message()
        cpu += answer_clients(rig)
        heapq.heappush(heap, (math.ceil(pc.sa.last_heard + DPD), i))
    timer_cpu = timer.cpu - t_first_cpu
    probes = sum((seq - seqs[i]) & 0xFFFFFFFF for i, seq in server_seqs(rig).items()
                 if i in seqs)
    return {"timer_us_per_s": timer_cpu / window * 1e6,
            "ike_us_per_s": (cpu + timer_cpu) / window * 1e6,
            "timer_fires_per_s": timer.fired / window,
            "client_rut_per_s": asked / window, "core_rut_per_s": probes / window}


def time_keepalives(count: int) -> tuple[float, str]:
    """CPU microseconds per NAT keepalive, and the path it took.

    "tick": the tree sets keepalives aside in the kernel (ikesplit's third socket)
    and the data plane reads them in its tick: one second's worth at 10,000
    sessions per tick. "poll": they come on the 4500 socket, one `poll()` each."""
    tun = FakeTun()
    esp, ike = open_natt_sockets("127.0.0.1", 0)
    keepalives = open_keepalive_socket(esp) if open_keepalive_socket and ike else None
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    now = [1000.0]
    dp = (Dataplane(tun, udp=esp, keepalive_sock=keepalives, clock=lambda: now[0])
          if keepalives is not None else Dataplane(tun, udp=esp, clock=lambda: now[0]))
    try:
        addr = esp.getsockname()
        cpu = 0.0
        per_tick = int(PROJECT / KEEPALIVE)
        for sent in range(0, count, per_tick if keepalives is not None else 1):
            batch = min(count - sent, per_tick) if keepalives is not None else 1
            for _ in range(batch):
                peer.sendto(b"\xff", addr)
            now[0] += 1.0  # the tick is due: poll() runs it
            t0 = time.process_time()
            dp.poll(0.1 if keepalives is None else 0.0)
            cpu += time.process_time() - t0
        if dp.keepalive_rx != count:
            raise SystemExit(f"data plane counted {dp.keepalive_rx} of {count} keepalives")
        return cpu / count * 1e6, "tick" if keepalives is not None else "poll"
    finally:
        dp.close()
        for s in (esp, ike, keepalives, peer):
            if s is not None:
                s.close()
        tun.close()


def one_run(n: int, window: float, keepalives: int, profile: cProfile.Profile | None,
            timer_profile: cProfile.Profile | None) -> dict[str, Any]:
    rig = established_rig(n)
    try:
        rig.now += 1.0
        rut = time_r_u_there(rig, profile)
        rig.now += DPD  # a fresh start for the steady state (the ACKs set last-heard)
        steady = steady_state(rig, window, timer_profile)
    finally:
        rig.close()
    ka, ka_path = time_keepalives(keepalives)
    scale = PROJECT / n
    per_s_10k = steady["ike_us_per_s"] * scale + (PROJECT / KEEPALIVE) * ka
    return {"rut_us": rut, "keepalive_us": ka, "keepalive_path": ka_path, **steady,
            "ike_us_per_s_10k": steady["ike_us_per_s"] * scale,
            "idle_cpu_pct_10k": per_s_10k / 1e6 * 100}


FIELDS = ("rut_us", "keepalive_us", "timer_us_per_s", "timer_fires_per_s",
          "client_rut_per_s", "core_rut_per_s", "ike_us_per_s", "ike_us_per_s_10k",
          "idle_cpu_pct_10k")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--window", type=float, default=60.0,
                        help="simulated seconds of the steady state")
    parser.add_argument("--keepalives", type=int, default=5000)
    parser.add_argument("--profile", default="", help="cProfile of the last run's core part")
    parser.add_argument("--json", default="", help="write the results there too")
    parser.add_argument("--smoke", action="store_true", help="50 sessions, one run, 35 s")
    parser.add_argument("--prefix", default="", help="ignored (the smoke runner passes it)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.sessions, args.runs, args.window, args.keepalives = 50, 1, 35.0, 200
    runs = []
    for _ in range(args.runs):
        runs.append(one_run(args.sessions, args.window, args.keepalives, None, None))
        print(" ".join(f"{k}={runs[-1][k]:.2f}" for k in FIELDS),
              f"keepalive_path={runs[-1]['keepalive_path']}", flush=True)
    if args.profile:  # a run of its own: the profiler's overhead stays out of the figures
        prof, tprof = cProfile.Profile(), cProfile.Profile()
        one_run(args.sessions, args.window, 1, prof, tprof)
        text = io.StringIO()
        for what, p in (("R-U-THERE, one per session", prof), ("timers", tprof)):
            text.write(f"==== {what}\n")
            pstats.Stats(p, stream=text).sort_stats("tottime").print_stats(40)
        Path(args.profile).write_text(text.getvalue())
    results = {k: summary([r[k] for r in runs]) for k in FIELDS}
    for k, s in results.items():
        print(f"{k:>20}: {s['median']:10.2f} ({s['min']:.2f}..{s['max']:.2f})")
    if args.json:
        doc: dict[str, Any] = {"sessions": args.sessions, "runs": args.runs,
                               "keepalive_path": runs[0]["keepalive_path"],
                               "window_s": args.window, "results": results,
                               "each": runs}
        Path(args.json).write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
