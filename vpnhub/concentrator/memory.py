"""Give memory back to the system after a burst of half-open SAs.

A flood of first messages allocates thousands of SAs (DH values, keys, the
cached message 2); once they time out Python frees them, but the process stayed
at its peak size (61 -> 101 MB in the issue) for two reasons, both measured
(docs/reliability/ike-dos.md):

- CPython's small-object allocator (pymalloc) takes memory in 1 MiB arenas and
  returns an arena only when every object in it is gone. The few long-lived
  objects created while a flood goes on (a log record, a timer entry, the
  session of a client that logged in meanwhile) are spread over its arenas and
  pin them. ``vpnhub serve`` therefore runs with the system allocator
  (``PYTHONMALLOC=malloc``, see ``use_system_malloc``), which can give memory
  back page by page.
- glibc keeps freed chunks in its heaps. When the half-open table has drained
  after a burst, a full garbage collection and ``malloc_trim(0)`` return the
  free pages (glibc 2.8+ releases whole free pages inside the heap, not only
  its top). Elsewhere (musl, macOS) the trim is a no-op.

With thousands of sessions held (issue 13) a third cause showed: glibc gives
each thread that allocates its own arena (up to 8 per core), and three of the
concentrator's other threads (the data plane, the state record's writer,
executors) kept arenas of 15.5, 1.7 and 0.8 MB beside
the 77 MB main heap at 2,000 sessions, each grown to its own peak. ``serve()`` therefore
limits the process to ``ARENA_MAX`` arenas (``limit_arenas``, glibc's
``M_ARENA_MAX``) before it starts a thread: every Python allocation already
waits for the GIL, so the threads lose no parallelism by sharing one
(bench/results/2026-12-03-memory-loop.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import sys
from collections.abc import Callable

BURST = 256  # half-open SAs: below this a drain is not worth a trim
M_ARENA_MAX = -8  # glibc <malloc.h>: mallopt() parameter, the most arenas malloc creates
ARENA_MAX = 1  # serve(): every thread allocates from the main heap


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def limit_arenas(arenas: int = ARENA_MAX) -> bool:
    """At most `arenas` malloc arenas in this process (glibc; elsewhere a no-op that
    returns False). Call it before the threads start: an arena a thread has taken
    stays."""
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None) if libc is not None else None
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_ARENA_MAX, arenas))


def _malloc_trim() -> Callable[[], None] | None:
    libc = _libc()
    trim = getattr(libc, "malloc_trim", None) if libc is not None else None
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int

    def call() -> None:
        trim(0)

    return call


def use_system_malloc() -> None:
    """Re-execute this process with PYTHONMALLOC=malloc (same PID, same arguments),
    unless the variable is set already (an operator's choice is kept) or glibc's
    malloc_trim is not there to make it worthwhile."""
    if "PYTHONMALLOC" in os.environ or _malloc_trim() is None or not sys.orig_argv:
        return
    env = dict(os.environ, PYTHONMALLOC="malloc")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


class BurstTrimmer:
    """Calls malloc_trim once the half-open count is back to zero after a burst.

    `before_trim` runs first: it drops what was made during the burst, lives on
    and can be made again (the DH pool's pairs): such objects lie between the
    burst's freed SAs; made again after the trim, they lie together."""

    def __init__(self, burst: int = BURST, trim: Callable[[], None] | None = None,
                 before_trim: Callable[[], None] | None = None) -> None:
        self.burst = burst
        self._trim = trim if trim is not None else _malloc_trim()
        self._before_trim = before_trim
        self._peak = 0
        self.trims = 0

    def tick(self, half_open: int) -> None:
        self._peak = max(self._peak, half_open)
        if half_open == 0 and self._peak >= self.burst:
            self._peak = 0
            if self._before_trim is not None:
                self._before_trim()
            # SAs caught in reference cycles are freed only by a full collection
            gc.collect()
            if self._trim is not None:
                self._trim()
                self.trims += 1


# Sessions of growth between two gc.freeze() calls (HeapFreezer).
FREEZE_GROWTH = 500
# ... or as few as this many, once the young generation is this full (its count over
# its threshold, GC_THRESHOLDS in concentrator/service.py): a login storm's freeze
# then comes before the young collection that would walk the same objects.
FREEZE_EARLY_GROWTH = 50
FREEZE_YOUNG_FILL = 0.5


def young_generation_fill() -> float:
    """How full the young generation is: objects tracked since the last collection or
    freeze, over the count that starts the next collection (1.0: it starts now)."""
    threshold = gc.get_threshold()[0]
    return gc.get_count()[0] / threshold if threshold else 0.0


class HeapFreezer:
    """``gc.freeze()`` after every `growth` new sessions (issue 13).

    Sessions live for hours; each is a few hundred objects that every middle and
    full collection walked again. During a 10,000-session set-up middle
    collections paused the loop 94-233 ms (`GcWatch`; bench/scale.py). Frozen
    objects are left out of every collection, so the collections walk only what
    was made since the last freeze (a 5,000-session set-up, shared machine: the
    longest middle one 1.7 ms of CPU instead of 94-176, the young ones 21 instead
    of 32-37). Reference counting still frees frozen objects; only a frozen
    object that ends up in a reference cycle is never collected: an ended
    session leaves none (tests/concentrator/test_heap_freeze.py). A freeze is a
    list splice, O(1), and it restarts the young generation's count.

    A login storm fills the young generation with its sessions (about 90 tracked
    objects each) faster than `growth` sessions come: its threshold (50,000) was
    crossed at ~510 new SAs, and that collection walked them all once, 11-79 ms
    of the loop in about half of the 600-handshake storms (issue 13,
    bench/handshake.py, shared machine). So after `early_growth` new sessions a
    freeze also comes once the young generation is `young_fill` full (`young`):
    the storm's objects are frozen before any collection walks them. Without new
    sessions nothing changes: the young collections free what dies in cycles.
    `tick` is cheap (two counts compared; the collector's count read only after
    `early_growth` new sessions): the shell calls it after every reader's turn,
    not only from its timer, whose turn can wait behind the data plane's answers."""

    def __init__(self, growth: int = FREEZE_GROWTH,
                 freeze: Callable[[], None] = gc.freeze, *,
                 early_growth: int = FREEZE_EARLY_GROWTH,
                 young_fill: float = FREEZE_YOUNG_FILL,
                 young: Callable[[], float] = young_generation_fill) -> None:
        self.growth = growth
        self.early_growth = early_growth
        self.young_fill = young_fill
        self._freeze = freeze
        self._young = young
        self._base = 0  # the session count at the last freeze (or the lowest since)
        self.freezes = 0

    def set_up(self, sessions: int) -> None:
        """Once, when the process is set up and serves: what the set-up made since
        `serve()` tuned the collector (the manager's web stack, imported then, the
        event store, the sessions restored) lives as long as the process and is
        frozen too; else it waits in the young generation for the first storm's
        collection. Not collected first (a full collection there held the loop
        177-248 ms): the only cycles then are a few dozen objects of the imports'
        class builders, kept for good."""
        self._freeze()
        self._base = sessions
        self.freezes += 1

    def tick(self, sessions: int) -> None:
        grown = sessions - self._base
        if grown < 0:
            self._base = sessions  # sessions ended: growth counts from here
        elif grown >= self.growth or (grown >= self.early_growth
                                      and self._young() >= self.young_fill):
            self._freeze()
            self._base = sessions
            self.freezes += 1

