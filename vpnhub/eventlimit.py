"""Rate limits for per-packet log lines, so that a flood cannot erase the audit trail.

Without a limit, every junk packet can cost one stored event: 18,985 mutated
packets made 7,144 events, 5,000 spoofed first messages about 23,000, and
the store keeps a bounded number, so minutes of junk pushed out the logins
and logouts an operator needs. This follows what kernels and routers do:
Linux `net_ratelimit()` (a burst of 10 per 5 s window, then "N callbacks
suppressed") and Cisco IOS `logging rate-limit` - a budget per window, the
rest counted and summarised once the window ends.

Two budgets apply:
- per key (class, reason, source address): `burst` lines per `interval`;
  a key that went over gets one summary line when its window ends;
- all unauthenticated lines together (whatever their source, so 5,000
  spoofed sources do not get 5,000 budgets): `unauth_burst` per `interval`,
  with one summary per window for what it refused.
Audit events (logins, logouts, administrators) are never passed through here.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field

Key = tuple[str, str, str]  # (class, reason, source address)


@dataclass(frozen=True)
class Summary:
    """A line to log: `count` events like `key` were suppressed over `seconds`."""

    cls: str
    severity: int
    peer: str
    text: str
    authenticated: bool


@dataclass
class _Window:
    start: float
    admitted: int = 0
    suppressed: int = 0
    severity: int = 13  # the most important severity suppressed (lowest number)
    sources: set[str] = field(default_factory=set)
    cls: str = ""
    authenticated: bool = True


class EventLimiter:
    """Decides whether a rate-limited line is logged; produces the summaries."""

    def __init__(self, *, burst: int = 10, interval: float = 10.0, unauth_burst: int = 100,
                 max_keys: int = 4096) -> None:
        self.burst = burst
        self.interval = interval
        self.unauth_burst = unauth_burst
        self.max_keys = max_keys
        self._keys: OrderedDict[Key, _Window] = OrderedDict()
        self._unauth: _Window | None = None
        self.suppressed: Counter[str] = Counter()  # by class, for metrics
        self._next_scan = 0.0

    def admit(self, key: Key, severity: int, authenticated: bool, now: float
              ) -> tuple[bool, list[Summary]]:
        """Whether to log this line, and summary lines that are due now (log them first)."""
        due = self._roll_key(key, now)
        w = self._keys.get(key)
        if w is None:
            w = self._new_key(key, now, authenticated)
        self._keys.move_to_end(key)
        out: list[Summary] = []
        for s in due:
            if s.authenticated or self._unauth_gate(s.cls, s.severity, s.peer, now, out):
                out.append(s)
        if w.admitted >= self.burst:
            self._suppress(w, key[0], severity, key[2])
            return False, out
        if not authenticated and not self._unauth_gate(key[0], severity, key[2], now, out):
            return False, out
        w.admitted += 1
        return True, out

    def tick(self, now: float) -> list[Summary]:
        """Summaries of every window that has ended; forget idle keys (bounded memory).
        Scans at most once a second, however often it is called (up to max_keys keys)."""
        out: list[Summary] = []
        if now < self._next_scan:
            return out
        self._next_scan = now + 1.0
        for key in list(self._keys):
            for s in self._roll_key(key, now):
                if s.authenticated or self._unauth_gate(s.cls, s.severity, s.peer, now, out):
                    out.append(s)
            w = self._keys.get(key)
            if w is not None and now - w.start >= self.interval:
                del self._keys[key]
        u = self._unauth
        if u is not None and now - u.start >= self.interval:
            out += self._unauth_summary(u, now)
            self._unauth = None
        return out

    # -- per key
    def _new_key(self, key: Key, now: float, authenticated: bool) -> _Window:
        while len(self._keys) >= self.max_keys:  # oldest key goes; its count is kept
            _, old = self._keys.popitem(last=False)
            if old.suppressed:
                u = self._unauth_window(now)
                u.suppressed += old.suppressed
        w = self._keys[key] = _Window(now, authenticated=authenticated)
        return w

    def _roll_key(self, key: Key, now: float) -> list[Summary]:
        w = self._keys.get(key)
        if w is None or now - w.start < self.interval:
            return []
        del self._keys[key]
        if not w.suppressed:
            return []
        return [Summary(key[0], w.severity, key[2],
                        f"{w.suppressed} similar events suppressed in the last"
                        f" {now - w.start:.0f} s ({_what(key)})", w.authenticated)]

    def _suppress(self, w: _Window, cls: str, severity: int, source: str) -> None:
        w.suppressed += 1
        w.severity = min(w.severity, severity)
        if len(w.sources) < 1024:  # enough to tell one source from many
            w.sources.add(source)
        w.cls = cls
        self.suppressed[cls] += 1

    # -- all unauthenticated lines together
    def _unauth_window(self, now: float) -> _Window:
        if self._unauth is None:
            self._unauth = _Window(now)
        return self._unauth

    def _unauth_gate(self, cls: str, severity: int, source: str, now: float,
                     out: list[Summary]) -> bool:
        u = self._unauth_window(now)
        if now - u.start >= self.interval:
            out += self._unauth_summary(u, now)
            u = self._unauth = _Window(now)
        if u.admitted < self.unauth_burst:
            u.admitted += 1
            return True
        self._suppress(u, cls, severity, source)
        return False

    def _unauth_summary(self, u: _Window, now: float) -> list[Summary]:
        if not u.suppressed:
            return []
        return [Summary(u.cls or "IKE", min(u.severity, 3), "",
                        f"{u.suppressed} unauthenticated events from {len(u.sources)}"
                        f"{'+' if len(u.sources) >= 1024 else ''} source(s) suppressed in the"
                        f" last {now - u.start:.0f} s (budget {self.unauth_burst} per"
                        f" {self.interval:.0f} s)", False)]


def _what(key: Key) -> str:
    cls, reason, source = key
    return ", ".join(x for x in (cls, reason, f"from {source}" if source else "") if x)
