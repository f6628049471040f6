"""How late the asyncio loop runs a callback: the IKE loop's worst delay (issue 13).

A callback is scheduled with `loop.call_at(due)` every `interval` seconds; when
it runs, `loop.time() - due` is how long anything else held the loop (a
listing, a state record, a burst of handshakes). DPD, retransmissions and
every IKE answer wait that long too, so this is the figure the "nothing the
manager does delays IKE by more than a few milliseconds" goal is checked
against (admin socket `status`, /metrics `vpnhub_event_loop_delay_max_seconds`).

Cheap on purpose: one timer handle per tick and a few floats; the recent
worst is kept in one slot per second of the window (a ring of maxima), so
neither a tick nor a read allocates a list.
"""

from __future__ import annotations

import contextlib
import gc
import math
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from types import FrameType
from typing import Protocol


class _Handle(Protocol):
    def cancel(self) -> None: ...


class LoopLike(Protocol):
    """What `LoopWatch` needs of an asyncio loop (a fake one in the tests)."""

    def time(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], object], /) -> _Handle: ...


class LoopWatch:
    """Worst lateness of a periodic callback: since start, and over the last `window` s."""

    def __init__(self, loop: LoopLike, *, interval: float = 0.1, window: float = 10.0) -> None:
        self._loop = loop
        self.interval = interval
        self.window = window
        self.max_delay = 0.0  # worst since start, seconds
        self.ticks = 0
        slots = max(1, math.ceil(window))
        self._slot_max = [0.0] * slots  # worst lateness seen in each second of the ring
        self._slot_sec = [-1] * slots  # which second (int(loop.time())) each slot holds
        self._due = 0.0
        self._handle: _Handle | None = None

    @property
    def due(self) -> float:
        """When the pending tick is due (loop time; 0 before `start`)."""
        return self._due

    def start(self) -> None:
        self._due = self._loop.time() + self.interval
        self._handle = self._loop.call_at(self._due, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        now = self._loop.time()
        # asyncio may run a callback up to its clock resolution early: not "late"
        self.record(max(0.0, now - self._due), now)
        # the next tick is due `interval` after this one ran, not after it was due:
        # after a stall, one late tick reports it, not a burst of catch-up ticks
        self._due = now + self.interval
        self._handle = self._loop.call_at(self._due, self._tick)

    def record(self, late: float, now: float) -> None:
        """One observed lateness `late` at loop time `now`."""
        self.ticks += 1
        if late > self.max_delay:
            self.max_delay = late
        sec = int(now)
        i = sec % len(self._slot_max)
        if self._slot_sec[i] != sec:  # a second the ring has not seen yet: reuse its slot
            self._slot_sec[i] = sec
            self._slot_max[i] = late
        elif late > self._slot_max[i]:
            self._slot_max[i] = late

    def recent_max(self, now: float | None = None) -> float:
        """Worst lateness over the last `window` seconds (whole seconds of the ring)."""
        t = self._loop.time() if now is None else now
        oldest = int(t) - len(self._slot_max) + 1
        worst = 0.0
        for sec, late in zip(self._slot_sec, self._slot_max, strict=True):
            if sec >= oldest and late > worst:
                worst = late
        return worst

    def to_json(self) -> dict[str, float]:
        """The admin socket `status` fields, in milliseconds."""
        return {"loop_delay_max_ms": round(self.max_delay * 1e3, 3),
                "loop_delay_recent_max_ms": round(self.recent_max() * 1e3, 3)}


class StallWatch:
    """Names the code that holds the loop: a thread that looks at the loop's thread
    when a `LoopWatch` tick is `threshold` s overdue and keeps where it stood (a
    pause of the garbage collector holds every thread, this one too: GcWatch counts
    those).

    The worst delay says that IKE waited, not why; a stall of a second with 10,000
    sessions was found this way (issue 13). The thread wakes every `period` s and
    reads two floats; only an overdue tick costs a stack walk (one per stall). The
    last `keep` stalls are in the admin socket's `status` (`loop_stalls`).
    """

    def __init__(self, watch: LoopWatch, loop_thread: int, *, threshold: float = 0.05,
                 period: float = 0.05, keep: int = 10,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.watch = watch
        self.loop_thread = loop_thread
        self.threshold = threshold
        self.period = period
        self.clock = clock  # the loop's clock (asyncio's loop.time() is time.monotonic)
        self.stalls: deque[dict[str, object]] = deque(maxlen=keep)
        self._seen_due = -1.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="loop-stall-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1.0)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self.check(self.clock())

    def check(self, now: float) -> None:
        """One look: an overdue tick not reported yet -> where the loop's thread is."""
        due = self.watch.due
        late = now - due
        if due <= 0 or late < self.threshold or due == self._seen_due:
            return
        self._seen_due = due
        frame = sys._current_frames().get(self.loop_thread)
        self.stalls.append({"late_ms": round(late * 1e3, 1), "where": where(frame)})

    def to_json(self) -> list[dict[str, object]]:
        return list(self.stalls)


STACK_DEPTH = 8  # innermost frames kept per stall


def where(frame: FrameType | None, depth: int = STACK_DEPTH) -> list[str]:
    """"file:line function" of the `depth` innermost frames, innermost first.

    Read from the frames themselves, not with traceback.extract_stack: that
    looks up each frame's source line, and linecache then keeps every file on
    the stack in memory for good (7,000-9,500 lines, 0.7 MB of strings, read
    while a flood of first messages stalled the loop, between the flood's SAs,
    and still there after it; docs/reliability/ike-dos.md)."""
    out: list[str] = []
    while frame is not None and len(out) < depth:
        code = frame.f_code
        out.append(f"{code.co_filename.rsplit('/', 2)[-1]}:{frame.f_lineno} {code.co_name}")
        frame = frame.f_back
    return out


class GcWatch:
    """How often and how long Python's cyclic garbage collector ran, by generation.

    A full (generation 2) collection walks every tracked object: with 10,000
    sessions that is about a million, and the loop stops for it (the stalls
    StallWatch found in bench/scale.py, issue 13). Counted with `gc.callbacks`,
    which run only around a collection.
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.count = [0, 0, 0]
        self.total = [0.0, 0.0, 0.0]
        self.worst = [0.0, 0.0, 0.0]
        # when the worst pass of each generation ran, seconds after `start` (set-up
        # or polling? the 10,000-session run's 164 ms pause could not be placed)
        self.worst_at = [0.0, 0.0, 0.0]
        self._started = 0.0
        self._since = 0.0

    def start(self) -> None:
        self._since = self.clock()
        gc.callbacks.append(self._callback)

    def stop(self) -> None:
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = self.clock()
            return
        g = info.get("generation", 0)
        if not 0 <= g <= 2:
            return
        took = self.clock() - self._started
        self.count[g] += 1
        self.total[g] += took
        if took > self.worst[g]:
            self.worst[g] = took
            self.worst_at[g] = self._started - self._since

    def to_json(self) -> dict[str, dict[str, float]]:
        return {f"gen{g}": {"count": self.count[g], "total_ms": round(self.total[g] * 1e3, 1),
                            "max_ms": round(self.worst[g] * 1e3, 1),
                            "max_at_s": round(self.worst_at[g], 1)} for g in range(3)}
