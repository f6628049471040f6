"""The manager's login throttle, sans-I/O (the caller passes `now`).

Why not the XAUTH lock-out (vpnhub.auth.lockout)? It locks a user name
everywhere after five failures: anyone who reaches the login form could keep
the administrator out of the console with five wrong passwords every five
minutes. OWASP's Authentication Cheat Sheet ("Account Lockout") warns of
exactly this denial of service and recommends throttling that an attacker
cannot turn against the account's owner. So here:

- Failures are counted per (name, source address) pair. `max_failures` of
  them within the window lock only that pair for `lockout_seconds`: the
  attacker's address is locked out of that name, the administrator elsewhere
  is not.
- Every failure is answered after a delay that doubles per failure of the
  pair: `retry_delay * 2**(n - 1)`, capped at `max_retry_delay`.
- Failures of a name from all addresses, and failures from one address for
  all names, only slow down (never lock): the delay also doubles every
  `max_failures` failures of the name, or of the address. This brakes a
  guesser spread over many addresses, or one trying many names, without
  ever refusing the right password.
- Every name is tracked alike, configured or not, so an unknown name gets
  exactly the delays a known one gets (no enumeration by timing).
- A success clears the pair's and the name's counts.
- Each table keeps at most `max_tracked` entries (least recently touched
  dropped first): random names cost bounded memory.
"""

from __future__ import annotations

from collections.abc import Hashable

from vpnhub.auth.lockout import FailureTable

__all__ = ["LoginThrottle"]

_MAX_EXPONENT = 30  # 2**30 times any sane base delay is far above every cap
_MAX_NAME = 256  # longer names are tracked by their first 256 characters
_DEFAULT_WINDOW = 300.0


class LoginThrottle:
    def __init__(self, *, max_failures: int = 5, lockout_seconds: float = 300.0,
                 retry_delay: float = 1.0, max_retry_delay: float = 16.0,
                 max_tracked: int = 1024) -> None:
        if max_failures < 1 or max_tracked < 1:
            raise ValueError("max_failures and max_tracked must be >= 1")
        if lockout_seconds < 0 or retry_delay < 0 or max_retry_delay < retry_delay:
            raise ValueError("times must be >= 0 and max_retry_delay >= retry_delay")
        self.max_failures = max_failures
        self.lockout_seconds = float(lockout_seconds)
        self.retry_delay = float(retry_delay)
        self.max_retry_delay = float(max_retry_delay)
        window = self.lockout_seconds or _DEFAULT_WINDOW
        self._pairs = FailureTable(max_tracked, window)
        self._names = FailureTable(max_tracked, window)
        self._sources = FailureTable(max_tracked, window)

    # -- queries
    def locked_until(self, name: str, source: str, now: float) -> float | None:
        """When this pair's lock ends, or None: only a pair is ever locked."""
        rec = self._pairs.get(_pair(name, source), now)
        return rec.locked_until if rec is not None else None

    def current_delay(self, name: str, source: str, now: float) -> float:
        """The delay for an attempt refused without a check (the pair is locked)."""
        return self._delay(self._count(self._pairs, _pair(name, source), now),
                           self._count(self._names, _key(name), now),
                           self._count(self._sources, source, now))

    @property
    def tracked(self) -> int:
        return len(self._pairs.records) + len(self._names.records) + len(self._sources.records)

    # -- updates
    def record_failure(self, name: str, source: str, now: float) -> tuple[float, float | None]:
        """Count one failure; returns (delay before answering, lock end if now locked)."""
        pair = self._pairs.touch(_pair(name, source), now)
        pair.failures += 1
        pair.last_failure = now
        if (self.lockout_seconds and pair.locked_until is None
                and pair.failures >= self.max_failures):
            pair.locked_until = now + self.lockout_seconds
        wide = []
        for table, key in ((self._names, _key(name)), (self._sources, source)):
            rec = table.touch(key, now)
            rec.failures += 1
            rec.last_failure = now
            wide.append(rec.failures)
        return self._delay(pair.failures, *wide), pair.locked_until

    def record_success(self, name: str, source: str) -> None:
        self._pairs.forget(_pair(name, source))
        self._names.forget(_key(name))

    def prune(self, now: float) -> int:
        """Drop stale records; returns how many. Call now and then."""
        return sum(t.prune(now) for t in (self._pairs, self._names, self._sources))

    # -- internals
    @staticmethod
    def _count(table: FailureTable, key: Hashable, now: float) -> int:
        rec = table.get(key, now)
        return rec.failures if rec is not None else 0

    def _delay(self, pair: int, name: int, source: int) -> float:
        """Doubles per failure of the pair, and per `max_failures` of the name or source."""
        steps = max(pair, -(-name // self.max_failures), -(-source // self.max_failures))
        if steps <= 0:
            return 0.0
        return min(self.max_retry_delay, self.retry_delay * (1 << min(steps - 1, _MAX_EXPONENT)))


def _key(name: str) -> str:
    return name[:_MAX_NAME]


def _pair(name: str, source: str) -> tuple[str, str]:
    return (_key(name), source)
