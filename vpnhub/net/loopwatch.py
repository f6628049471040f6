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

import math
from collections.abc import Callable
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
