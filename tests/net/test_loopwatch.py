"""LoopWatch (issue 13): how late the loop runs a callback scheduled at a known time."""

from __future__ import annotations

import asyncio
import linecache
import sys
import threading
import time
from collections.abc import Callable

from vpnhub.net.loopwatch import STACK_DEPTH, LoopWatch, StallWatch, where


class FakeHandle:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """A clock the test moves and one pending `call_at`, run by `run_until`."""

    def __init__(self) -> None:
        self.now = 100.0
        self.pending: tuple[float, Callable[[], object], FakeHandle] | None = None

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], object], /) -> FakeHandle:
        h = FakeHandle()
        self.pending = (when, callback, h)
        return h

    def run_at(self, t: float) -> None:
        """Run the pending callback at loop time `t` (>= its due time: late by the rest)."""
        assert self.pending is not None
        when, cb, h = self.pending
        assert t >= when and not h.cancelled
        self.now = t
        cb()


def test_on_time_ticks_report_no_delay() -> None:
    loop = FakeLoop()
    w = LoopWatch(loop, interval=0.1)
    w.start()
    for _ in range(50):
        assert loop.pending is not None
        loop.run_at(loop.pending[0])
    assert w.ticks == 50
    assert w.max_delay == 0.0 and w.recent_max() == 0.0


def test_a_stall_is_the_worst_since_start_and_leaves_the_recent_window() -> None:
    loop = FakeLoop()
    w = LoopWatch(loop, interval=0.1, window=10.0)
    w.start()
    assert loop.pending is not None
    loop.run_at(loop.pending[0] + 0.25)  # something held the loop 250 ms
    assert abs(w.max_delay - 0.25) < 1e-9
    assert abs(w.recent_max() - 0.25) < 1e-9
    assert w.to_json() == {"loop_delay_max_ms": 250.0, "loop_delay_recent_max_ms": 250.0}
    # the next tick is due one interval after the late one ran: no burst of catch-ups
    assert abs(loop.pending[0] - (loop.now + 0.1)) < 1e-9
    for _ in range(150):  # 15 s of punctual ticks, 5 ms late each
        loop.run_at(loop.pending[0] + 0.005)
    assert abs(w.max_delay - 0.25) < 1e-9  # since start: kept
    assert abs(w.recent_max() - 0.005) < 1e-9  # the last 10 s: the stall left


def test_early_callbacks_are_not_negative_delays() -> None:
    w = LoopWatch(FakeLoop())
    w.record(-0.001, 100.0)
    w.record(0.0, 100.5)
    assert w.max_delay == 0.0


def test_stop_cancels_the_timer() -> None:
    loop = FakeLoop()
    w = LoopWatch(loop)
    w.start()
    assert loop.pending is not None
    handle = loop.pending[2]
    w.stop()
    assert handle.cancelled


def test_a_real_loop_blocked_for_200_ms_is_seen() -> None:
    async def main() -> LoopWatch:
        w = LoopWatch(asyncio.get_running_loop(), interval=0.05)
        w.start()
        await asyncio.sleep(0.12)
        time.sleep(0.2)  # a callback that holds the loop, as a listing did
        await asyncio.sleep(0.12)
        w.stop()
        return w

    w = asyncio.run(main())
    assert w.max_delay >= 0.15
    assert w.recent_max() >= 0.15


def test_stall_watch_names_the_code_that_holds_the_loop() -> None:
    """A callback that blocks the real loop for 0.5 s is reported once, with its own
    frame in `where` (the admin status's loop_stalls)."""

    def hold_the_loop_for_a_while() -> None:
        time.sleep(0.5)

    async def main() -> list[dict[str, object]]:
        loop = asyncio.get_running_loop()
        watch = LoopWatch(loop, interval=0.05)
        watch.start()
        stalls = StallWatch(watch, threading.get_ident(), threshold=0.15, period=0.02)
        stalls.start()
        try:
            await asyncio.sleep(0.2)
            loop.call_soon(hold_the_loop_for_a_while)
            await asyncio.sleep(0.3)
        finally:
            stalls.stop()
            watch.stop()
        return stalls.to_json()

    found = asyncio.run(main())
    assert len(found) == 1, found
    where = found[0]["where"]
    assert isinstance(where, list) and any("hold_the_loop_for_a_while" in w for w in where)
    assert float(found[0]["late_ms"]) >= 150  # type: ignore[arg-type]


def test_naming_a_stall_reads_no_source_file() -> None:
    """`where` gives file:line and function without the source line: the traceback
    module's line lookup would load each file on the stack into linecache and keep
    it (issue 11: 7,000+ source lines read during a flood and kept after it,
    docs/reliability/ike-dos.md)."""
    linecache.clearcache()
    found = where(sys._getframe())
    assert found[0].startswith("test_loopwatch.py:")
    assert found[0].endswith(" test_naming_a_stall_reads_no_source_file")
    assert len(found) <= STACK_DEPTH
    assert not linecache.cache
