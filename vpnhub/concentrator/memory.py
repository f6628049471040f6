"""Give memory back to the system after a burst of half-open SAs.

A flood of first messages allocates thousands of SAs (DH values, keys, the
cached message 2); once they time out Python frees them, but glibc keeps the
freed chunks in its heaps, so the resident size stays near the peak. When the
half-open table has drained after a burst, ``malloc_trim(0)`` returns the free
pages (glibc 2.8+ releases whole free pages inside the heap, not only its top).
Elsewhere (musl, macOS) it is a no-op. What stays resident after that (freed
memory in CPython's 1 MiB pymalloc arenas that a few long-lived objects pin)
is measured in docs/reliability/ike-dos.md.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable

BURST = 256  # half-open SAs: below this a drain is not worth a trim


def _malloc_trim() -> Callable[[], None] | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int

    def call() -> None:
        trim(0)

    return call


class BurstTrimmer:
    """Calls malloc_trim once the half-open count is back to zero after a burst."""

    def __init__(self, burst: int = BURST, trim: Callable[[], None] | None = None) -> None:
        self.burst = burst
        self._trim = trim if trim is not None else _malloc_trim()
        self._peak = 0
        self.trims = 0

    def tick(self, half_open: int) -> None:
        self._peak = max(self._peak, half_open)
        if half_open == 0 and self._peak >= self.burst:
            self._peak = 0
            if self._trim is not None:
                self._trim()
                self.trims += 1
