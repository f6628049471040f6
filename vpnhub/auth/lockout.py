"""XAUTH lockout and slow-down policy, sans-I/O: the caller passes `now`.

Failures are counted per user and per source (the peer's public address,
without the port: behind a PAT every client shares it, and an attacker's
ports change). Rules:

- `max_failures` failures of one user within the window lock that user for
  `lockout_seconds`; `max_failures_per_source` failures from one address lock
  the address (0 disables the source lock). The window is `lockout_seconds`
  (300 s when locking is disabled): a failure older than that is forgotten,
  and a lock that ran out starts the count afresh.
- Every failure returns a delay for the concentrator to wait before it answers:
  `retry_delay * 2**(n - 1)` capped at `max_retry_delay`, where n is the larger
  of the user's and the source's count.
- A success clears the user's and the source's counts.
- At most `max_tracked` users and `max_tracked` sources are remembered; the
  least recently touched is dropped first.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vpnhub.config import LimitsConfig

__all__ = ["FailureOutcome", "FailureRecord", "FailureTable", "LockoutPolicy"]

_DEFAULT_WINDOW = 300.0
_MAX_EXPONENT = 30  # 2**30 times any sane base delay is far above every cap


@dataclass
class FailureRecord:
    failures: int = 0
    last_failure: float = 0.0
    locked_until: float | None = None


@dataclass(frozen=True)
class FailureOutcome:
    """What one failure led to: the delay to apply, and the lock end if now locked."""

    delay: float
    locked_until: float | None
    user_failures: int
    source_failures: int


class FailureTable:
    """Failure records by key (a user, a source, a pair), least recently touched first;
    stale ones are forgotten. Shared with the manager's login throttle."""

    def __init__(self, cap: int, window: float) -> None:
        self.cap = cap
        self.window = window
        self.records: OrderedDict[Hashable, FailureRecord] = OrderedDict()

    def get(self, key: Hashable | None, now: float) -> FailureRecord | None:
        if key is None:
            return None
        record = self.records.get(key)
        if record is not None and self._stale(record, now):
            del self.records[key]
            return None
        return record

    def touch(self, key: Hashable, now: float) -> FailureRecord:
        record = self.get(key, now)
        if record is None:
            while len(self.records) >= self.cap:
                self.records.popitem(last=False)
            record = self.records[key] = FailureRecord()
        else:
            self.records.move_to_end(key)
        return record

    def forget(self, key: Hashable | None) -> None:
        if key is not None:
            self.records.pop(key, None)

    def _stale(self, record: FailureRecord, now: float) -> bool:
        if record.locked_until is not None:
            return now >= record.locked_until  # lock over: a fresh start
        return now - record.last_failure >= self.window

    def prune(self, now: float) -> int:
        stale = [key for key, rec in self.records.items() if self._stale(rec, now)]
        for key in stale:
            del self.records[key]
        return len(stale)


class LockoutPolicy:
    def __init__(
        self,
        *,
        max_failures: int = 5,
        lockout_seconds: float = 300.0,
        retry_delay: float = 1.0,
        max_retry_delay: float = 30.0,
        max_failures_per_source: int = 25,
        max_tracked: int = 4096,
    ) -> None:
        if max_failures < 1 or max_tracked < 1 or max_failures_per_source < 0:
            raise ValueError("max_failures and max_tracked must be >= 1")
        if lockout_seconds < 0 or retry_delay < 0 or max_retry_delay < retry_delay:
            raise ValueError("times must be >= 0 and max_retry_delay >= retry_delay")
        self.max_failures = max_failures
        self.max_failures_per_source = max_failures_per_source
        self.lockout_seconds = float(lockout_seconds)
        self.retry_delay = float(retry_delay)
        self.max_retry_delay = float(max_retry_delay)
        window = self.lockout_seconds or _DEFAULT_WINDOW
        self._users = FailureTable(max_tracked, window)
        self._sources = FailureTable(max_tracked, window)

    @classmethod
    def from_limits(cls, limits: LimitsConfig) -> LockoutPolicy:
        return cls(
            max_failures=limits.xauth_max_failures,
            lockout_seconds=limits.xauth_lockout_seconds,
            retry_delay=limits.xauth_retry_delay,
            max_retry_delay=limits.xauth_max_retry_delay,
            max_failures_per_source=limits.xauth_max_failures_per_source,
            max_tracked=limits.xauth_tracked_entries,
        )

    # -- queries
    def locked_until(self, user: Hashable | None, source: Hashable, now: float) -> float | None:
        """When the lock on this user or source ends, or None if neither is locked."""
        ends = [
            rec.locked_until
            for rec in (self._users.get(user, now), self._sources.get(source, now))
            if rec is not None and rec.locked_until is not None
        ]
        return max(ends) if ends else None

    def failures(self, user: Hashable | None, source: Hashable | None, now: float) -> int:
        """The larger of the user's and the source's current failure count."""
        counts = [
            rec.failures
            for rec in (self._users.get(user, now), self._sources.get(source, now))
            if rec is not None
        ]
        return max(counts, default=0)

    def current_delay(self, user: Hashable | None, source: Hashable, now: float) -> float:
        """The delay for an attempt refused without counting it (e.g. while locked)."""
        return self._delay(self.failures(user, source, now))

    @property
    def tracked_users(self) -> int:
        return len(self._users.records)

    @property
    def tracked_sources(self) -> int:
        return len(self._sources.records)

    # -- updates
    def record_failure(self, user: Hashable | None, source: Hashable, now: float) -> FailureOutcome:
        """Count one failed attempt. `user` None: count against the source only."""
        src = self._sources.touch(source, now)
        self._count(src, now, self.max_failures_per_source)
        user_failures = 0
        if user is not None:
            rec = self._users.touch(user, now)
            self._count(rec, now, self.max_failures)
            user_failures = rec.failures
        n = max(user_failures, src.failures)
        return FailureOutcome(
            self._delay(n), self.locked_until(user, source, now), user_failures, src.failures
        )

    def record_success(self, user: Hashable | None, source: Hashable, now: float) -> None:
        self._users.forget(user)
        self._sources.forget(source)

    def prune(self, now: float) -> int:
        """Drop forgotten and expired records; returns how many. Call now and then."""
        return self._users.prune(now) + self._sources.prune(now)

    # -- internals
    def _count(self, record: FailureRecord, now: float, limit: int) -> None:
        record.failures += 1
        record.last_failure = now
        locking = limit and self.lockout_seconds and record.locked_until is None
        if locking and record.failures >= limit:
            record.locked_until = now + self.lockout_seconds

    def _delay(self, failures: int) -> float:
        if failures <= 0:
            return 0.0
        exponent = min(failures - 1, _MAX_EXPONENT)
        return min(self.max_retry_delay, self.retry_delay * (1 << exponent))
