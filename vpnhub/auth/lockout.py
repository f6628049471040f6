"""XAUTH lock-out and slow-down: the policy (sans-I/O: the caller passes `now`)
and `Lockout`, the wrapper that applies it around any `Authenticator` backend.

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

`Lockout(inner, policy)` asks the lock before it asks the backend (a locked
user's password is not even checked), counts what the backend answered, and
waits the delay before it returns a failure, so its caller never sleeps. Only
names the backend knows are counted per user (an `UNKNOWN_USER` answer counts
against the source only), so random names cannot fill the user table. A
backend exception is not a failure: the backend broke, the user did not guess.
Attempts that share a user or a source are decided one after the other (the
lock check of one sees the failures of the one before, as when one thread
ran them all); their delays are waited side by side, outside that order.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from vpnhub.auth.api import Authenticator, AuthReason, AuthRequest, AuthResult, Closeable

if TYPE_CHECKING:
    from vpnhub.config import LimitsConfig

__all__ = ["FailureOutcome", "FailureRecord", "FailureTable", "Lockout", "LockoutPolicy"]

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


# --------------------------------------------------------------------------- the wrapper


class _KeyedLocks:
    """One asyncio lock per key, made on first use, dropped when nobody holds or
    awaits it (the dict holds only attempts in progress)."""

    def __init__(self) -> None:
        self._locks: dict[Hashable, asyncio.Lock] = {}
        self._holders: dict[Hashable, int] = {}

    def hold(self, key: Hashable) -> _Hold:
        """`async with hold(key):` the key's lock is held inside."""
        return _Hold(self, key)

    def _enter(self, key: Hashable) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        self._holders[key] = self._holders.get(key, 0) + 1
        return lock

    def _leave(self, key: Hashable) -> None:
        self._holders[key] -= 1
        if self._holders[key] == 0:
            del self._holders[key], self._locks[key]

    def __len__(self) -> int:
        return len(self._locks)


class _Hold:
    """`_KeyedLocks.hold`: a class, not an @asynccontextmanager, whose generator and
    wrapper cost ~2 us a use, two uses per login (issue 13)."""

    __slots__ = ("_key", "_lock", "_locks")

    def __init__(self, locks: _KeyedLocks, key: Hashable) -> None:
        self._locks, self._key = locks, key

    async def __aenter__(self) -> None:
        lock = self._locks._enter(self._key)
        try:
            await lock.acquire()
        except BaseException:  # cancelled while waiting: it holds nothing
            self._locks._leave(self._key)
            raise
        self._lock = lock

    async def __aexit__(self, *exc: object) -> None:
        try:
            self._lock.release()
        finally:
            self._locks._leave(self._key)


class Lockout:
    """Lock-out and slow-down around any `Authenticator` (see the module docstring).

    `clock`: monotonic seconds, the policy's `now`. `sleep`: how the delay is
    waited (tests pass a fake). The result's `delay` is the delay applied. A
    `LOCKED_OUT` result carries no `group`: the backend was not asked."""

    def __init__(
        self,
        inner: Authenticator,
        policy: LockoutPolicy,
        clock: Callable[[], float] = time.monotonic,
        *,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.inner = inner
        self.policy = policy
        self.clock = clock
        self._sleep = sleep
        self._serial = _KeyedLocks()

    async def authenticate(self, request: AuthRequest) -> AuthResult:
        # Sources and users are distinct keys; taken in this one order, the two
        # locks cannot deadlock.
        async with (
            self._serial.hold(("source", request.source)),
            self._serial.hold(("user", request.user)),
        ):
            result = await self._decide(request)
        if not result.ok and result.delay > 0:
            await self._sleep(result.delay)  # slow down guessing
        return result

    async def _decide(self, request: AuthRequest) -> AuthResult:
        now = self.clock()
        user, source = request.user, request.source
        # Only names the backend knew were ever counted, so asking by the
        # requested name is asking by "the user if known, else nobody".
        locked = self.policy.locked_until(user, source, now)
        if locked is not None:
            delay = self.policy.current_delay(user, source, now)
            return AuthResult(AuthReason.LOCKED_OUT, user, delay, locked)
        result = await self.inner.authenticate(request)
        if result.ok:
            self.policy.record_success(user, source, now)
            return result
        tracked = None if result.reason is AuthReason.UNKNOWN_USER else user
        outcome = self.policy.record_failure(tracked, source, now)
        return replace(result, delay=outcome.delay, locked_until=outcome.locked_until)

    def close(self) -> None:
        if isinstance(self.inner, Closeable):
            self.inner.close()

    async def aclose(self) -> None:
        if isinstance(self.inner, Closeable):
            await self.inner.aclose()
