"""Each session's bytes at the manager's last samples, in fixed arrays (issue 13).

Every session is sampled at the same instants (ManagerView.sample, every 10 s),
so the times are kept once, in one ring shared by all sessions, and each
session has one preallocated ``array("I")`` of the bytes it sent and received
between consecutive samples (4 bytes each: 4 GiB in 10 s would be 3.4 Gbit/s,
more than this data plane forwards; more is clamped) plus its last counts: no
tuple or deque per sample (a deque of 150 (time, tx, rx) tuples was ~11 KiB
per session; 64-bit counts were ~2.5 KiB; 150 samples of this ~1.4 KiB, the
30 of a sample every 10 s ~0.5 KiB). Appending is O(1): two stores at the
ring's position. A counter that went down (a new SA's) counts as no traffic.

A sample is written in steps (the sampler yields to the event loop between
chunks of sessions) and becomes visible only at `commit`: a reader between
two steps sees the previous samples, never half of the new one. The ring
has one slot more than readers see, so the slot being written is never one
a reader reads.
"""

from __future__ import annotations

from array import array
from collections.abc import Hashable

DELTA_MAX = 0xFFFFFFFF  # bytes between two samples, at most (array "I")


class ThroughputHistory:
    """The last `keep` samples of (tx bytes, rx bytes) per key, at shared times."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self._slots = keep + 1  # one more: the slot being written is never read
        self._times = array("d", bytes(8 * self._slots))
        self._taken = 0  # samples committed; the next sample's number
        # per key: tx bytes since the sample before, for each slot, then rx likewise
        self._rows: dict[Hashable, array[int]] = {}
        # per key: last tx count, last rx count, the number of the key's first sample
        # (older slots hold another session's or no values), the number of the
        # sample those counts belong to (it may not be committed yet)
        self._last: dict[Hashable, array[int]] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, key: object) -> bool:
        return key in self._rows

    def begin(self, now: float) -> None:
        """Start a sample taken at `now` (invisible until `commit`)."""
        self._times[self._taken % self._slots] = now

    def put(self, key: Hashable, tx: int, rx: int) -> None:
        """`key`'s byte counts at the sample begun (a new key starts its history)."""
        row = self._rows.get(key)
        n = self._slots
        pos = self._taken % n
        if row is None:
            row = self._rows[key] = array("I", bytes(4 * 2 * n))
            self._last[key] = array("Q", (tx, rx, self._taken, self._taken))
            return  # the first sample: counts, no traffic yet
        last = self._last[key]
        row[pos] = min(DELTA_MAX, max(0, tx - last[0]))
        row[n + pos] = min(DELTA_MAX, max(0, rx - last[1]))
        last[0], last[1], last[3] = tx, rx, self._taken

    def commit(self) -> None:
        """The sample begun is complete: readers see it from now on."""
        self._taken += 1

    def drop(self, key: Hashable) -> None:
        """Forget `key` (its session ended)."""
        self._rows.pop(key, None)
        self._last.pop(key, None)

    def points(self, key: Hashable) -> list[tuple[float, int, int]]:
        """(time, tx bytes, rx bytes) of `key`'s committed samples, oldest first (the
        counts rebuilt backwards from the last ones; one that went down shows as
        unchanged)."""
        row = self._rows.get(key)
        if row is None:
            return []
        last, n = self._last[key], self._slots
        first = max(last[2], self._taken - self.keep)
        tx, rx = last[0], last[1]
        if last[3] == self._taken and last[2] != self._taken:  # a sample being written
            tx -= row[self._taken % n]
            rx -= row[n + self._taken % n]
        out: list[tuple[float, int, int]] = []
        for i in range(self._taken - 1, first - 1, -1):
            out.append((self._times[i % n], tx, rx))
            tx -= row[i % n]
            rx -= row[n + i % n]
        out.reverse()
        return out

    def rates(self, key: Hashable) -> list[tuple[float, float, float]]:
        """(time, tx bytes/s, rx bytes/s) between consecutive samples (counters that
        went down, a new SA's, count as 0)."""
        row = self._rows.get(key)
        if row is None:
            return []
        n, times = self._slots, self._times
        first = max(self._last[key][2], self._taken - self.keep)
        out: list[tuple[float, float, float]] = []
        for i in range(first + 1, self._taken):
            t0, t1 = times[(i - 1) % n], times[i % n]
            if t1 > t0:
                out.append((t1, row[i % n] / (t1 - t0), row[n + i % n] / (t1 - t0)))
        return out
