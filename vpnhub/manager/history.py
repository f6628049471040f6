"""Each session's bytes at the manager's last samples, in fixed arrays (issue 13).

Every session is sampled at the same instants (ManagerView.sample, every 2 s),
so the times are kept once, in one ring shared by all sessions, and each
session has one preallocated ``array("Q")`` of its tx and rx byte counts at
those instants: no tuple or deque per sample (a deque of 150 (time, tx, rx)
tuples was ~11 KiB per session; this is ~2.5 KiB). Appending is O(1): two
stores at the ring's position.

A sample is written in steps (the sampler yields to the event loop between
chunks of sessions) and becomes visible only at `commit`: a reader between
two steps sees the previous samples, never half of the new one. The ring
has one slot more than readers see, so the slot being written is never one
a reader reads.
"""

from __future__ import annotations

import itertools
from array import array
from collections.abc import Hashable


class ThroughputHistory:
    """The last `keep` samples of (tx bytes, rx bytes) per key, at shared times."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self._slots = keep + 1  # one more: the slot being written is never read
        self._times = array("d", bytes(8 * self._slots))
        self._taken = 0  # samples committed; the next sample's number
        # per key: tx of each slot, rx of each slot, then the number of the key's
        # first sample (older slots hold another session's or no values)
        self._rows: dict[Hashable, array[int]] = {}

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
        if row is None:
            row = self._rows[key] = array("Q", bytes(8 * (2 * n + 1)))
            row[2 * n] = self._taken
        pos = self._taken % n
        row[pos] = tx
        row[n + pos] = rx

    def commit(self) -> None:
        """The sample begun is complete: readers see it from now on."""
        self._taken += 1

    def drop(self, key: Hashable) -> None:
        """Forget `key` (its session ended)."""
        self._rows.pop(key, None)

    def points(self, key: Hashable) -> list[tuple[float, int, int]]:
        """(time, tx bytes, rx bytes) of `key`'s committed samples, oldest first."""
        row = self._rows.get(key)
        if row is None:
            return []
        n = self._slots
        first = max(row[2 * n], self._taken - self.keep)
        return [(self._times[i % n], row[i % n], row[n + i % n])
                for i in range(first, self._taken)]

    def rates(self, key: Hashable) -> list[tuple[float, float, float]]:
        """(time, tx bytes/s, rx bytes/s) between consecutive samples (counters that
        went down, a new SA's, count as 0)."""
        return [(t1, max(0.0, (tx1 - tx0) / (t1 - t0)), max(0.0, (rx1 - rx0) / (t1 - t0)))
                for (t0, tx0, rx0), (t1, tx1, rx1) in itertools.pairwise(self.points(key))
                if t1 > t0]
