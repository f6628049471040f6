"""Rate-limited log summaries: one line per (reason, source) per window, with a count.

A flood of spoofed first messages must not become a flood of log lines (each
stored line costs a disk write and pushes real events out of the store). The
first occurrence of a reason from a source is reported at once, so a lone
failure is seen as it happens; what follows within the window is only counted
and reported as one line when the window ends. Sans-I/O: `now` is passed in.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

WINDOW = 10.0  # seconds: at most one line per reason and source this often
MAX_KEYS = 256  # sources tracked one by one; beyond that they share one line
ANY_SOURCE = "*"


@dataclass(frozen=True)
class Notice:
    """One summary line for the driver's log."""

    cls: str
    severity: int
    text: str
    source: str  # the peer's address, or ANY_SOURCE


@dataclass
class _Window:
    opened: float
    pending: int = 0  # occurrences not yet reported


# text(source, count, window seconds) -> the line
Wording = Callable[[str, int, float], str]


class Summariser:
    """Counts occurrences per (reason, source) and emits bounded summary lines."""

    def __init__(self, window: float = WINDOW, max_keys: int = MAX_KEYS) -> None:
        self.window = window
        self.max_keys = max_keys
        self._open: dict[tuple[str, str], _Window] = {}
        self._wording: dict[str, tuple[str, int, Wording]] = {}
        self.notices: deque[Notice] = deque()

    def reason(self, reason: str, cls: str, severity: int, wording: Wording) -> None:
        self._wording[reason] = (cls, severity, wording)

    def note(self, reason: str, source: str, now: float) -> None:
        key = (reason, source)
        w = self._open.get(key)
        if w is None and len(self._open) >= self.max_keys:
            key = (reason, ANY_SOURCE)  # many sources: one shared line, bounded state
            w = self._open.get(key)
        if w is None:
            self._open[key] = _Window(now)
            self._emit(reason, key[1], 1, 0.0)
            return
        w.pending += 1

    def flush(self, now: float) -> None:
        """Report the windows that ended; forget the quiet ones (state shrinks back)."""
        if not self._open:
            return
        done = [k for k, w in self._open.items() if now - w.opened >= self.window]
        for key in done:
            w = self._open.pop(key)
            if w.pending:
                self._emit(key[0], key[1], w.pending, now - w.opened)
                self._open[key] = _Window(now)  # keep limiting while it goes on
        if not self._open:
            self._open = {}  # a dict never shrinks its table: give the memory back

    def _emit(self, reason: str, source: str, count: int, seconds: float) -> None:
        cls, severity, wording = self._wording[reason]
        self.notices.append(Notice(cls, severity, wording(source, count, seconds), source))
