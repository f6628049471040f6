"""The session table behind a `SessionStore` interface, and its in-memory store.

Every change goes through the store (`start`, `update`, `add_child`,
`remove_child`, `end`), and each one is told to the subscribers as a typed
event (vpnhub.session.events) carrying a frozen snapshot. Readers get the
live sessions as `SessionView`, read-only to the type checker (a copy of
every session at each read would cost the manager ten times its sampling),
so a change nobody was told about cannot be written. That is what lets accounting and a
cluster peer subscribe later without the concentrator knowing them (as
strongSwan's listeners on its bus: plugins/ha/ha_ike.c, eap_radius).
The concentrator core holds its store as a `SessionStore`: mypy refuses any
attribute write on what it reads.

A subscriber that raises is counted and logged; the store and the other
subscribers go on (one faulty listener must not stop a login).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable
from typing import Any, Protocol, runtime_checkable

from vpnhub.session.events import (
    ALL_KINDS,
    SessionChanged,
    SessionEnded,
    SessionEvent,
    SessionStarted,
    Subscriber,
)
from vpnhub.session.model import ChildInfo, Session, SessionKey, SessionView

__all__ = ["ALL_KINDS", "MemorySessionStore", "SessionChanged", "SessionEnded", "SessionEvent",
           "SessionStarted", "SessionStore", "Subscriber"]

log = logging.getLogger("vpnhub.session.store")

# What `update` may set: every field but the key (the session's identity).
_FIELDS = frozenset(f.name for f in dataclasses.fields(Session)) - {"key"}
_MAPS = frozenset({"ike", "children", "drops"})  # copied in: the caller keeps no alias
# What `_count` reads: a write that touches none of them leaves the counters and the
# user index as they are (most of a login's writes: phase 1, address, client, ...)
_COUNTED = frozenset({"children", "user", "lan_to_lan", "authenticated"})
# A subscriber: its callback, the event kinds it wants, and the fields a
# SessionChanged must touch to reach it (None: any).
_Subscription = tuple[Subscriber, tuple[type[SessionEvent], ...], frozenset[str] | None]
_Listener = tuple[Subscriber, frozenset[str] | None]  # a subscription of one kind


@runtime_checkable
class SessionStore(Protocol):
    """The sessions of one concentrator: reads are read-only views, writes emit events."""

    @property
    def limit(self) -> int: ...

    @property
    def peak(self) -> int: ...

    @property
    def cumulative(self) -> int: ...

    # -- reads
    def get(self, key: SessionKey) -> SessionView | None: ...

    def all(self) -> list[SessionView]: ...

    def __len__(self) -> int: ...

    def __contains__(self, key: object) -> bool: ...

    def logins_of(self, user: str, *, besides: SessionView) -> list[SessionView]: ...

    def login_count(self, user: str, *, besides: SessionView) -> int: ...

    def at_address(self, public_ip: str, public_port: int) -> list[SessionView]: ...

    def active(self) -> int: ...

    def active_l2l(self) -> int: ...

    def summary(self) -> dict[str, int]: ...

    def to_json(self, now: float) -> dict[str, Any]: ...

    # -- writes
    def start(self, key: SessionKey, public_ip: str, public_port: int, /,
              **fields: Any) -> SessionView: ...

    def update(self, key: SessionKey, /, **fields: Any) -> bool: ...

    def add_child(self, key: SessionKey, child: ChildInfo) -> bool: ...

    def remove_child(self, key: SessionKey, spi_in: int) -> ChildInfo | None: ...

    def end(self, key: SessionKey, reason: str) -> SessionView | None: ...

    def logged_in(self, s: SessionView) -> None: ...

    def update_peak(self) -> None: ...

    def restore_counters(self, peak: int, cumulative: int) -> None: ...

    def subscribe(self, callback: Subscriber,
                  kinds: tuple[type[SessionEvent], ...] = ALL_KINDS,
                  fields: frozenset[str] | None = None) -> Callable[[], None]: ...


class MemorySessionStore:
    """The session table in a dict; the Session Summary's counters beside it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._sessions: dict[SessionKey, Session] = {}
        self.peak = 0
        self.cumulative = 0
        self.subscriber_errors = 0  # events a subscriber raised on (logged too)
        # (callback, the event kinds it wants, the fields of a SessionChanged it
        # wants or None for all): a snapshot is built only for an event someone
        # wants -- the counters refresh changes 10,000 sessions every 10 s and the
        # manager's tally reads none of those fields
        self._subscribers: list[_Subscription] = []
        # The same, by event kind: (callback, fields) in the order they subscribed.
        # Rebuilt (a new dict) by subscribe and unsubscribe, read by every write: a
        # login's seven writes do not scan every subscription's kinds twice (issue 13)
        self._by_kind: dict[type[SessionEvent], list[_Listener]] = {}
        # Kept up to date by every write (all writes come through here), so that a
        # login does not scan 10,000 sessions twice (the simultaneous-logins check
        # and the peak): sessions with a user and an IPsec SA, LAN-to-LAN ones among
        # them, and each user's logged-in sessions.
        self._active = 0
        self._active_l2l = 0
        self._by_user: dict[str, dict[SessionKey, None]] = {}
        # Sessions by the client's public address and port (its NAT mapping), in the
        # order they started: a login asks whether it renews one from the same
        # mapping (a phase 1 rekey), and a scan of the whole table per login made the
        # set-up of N sessions cost O(N^2) (issue 13).
        self._by_address: dict[tuple[str, int], dict[SessionKey, None]] = {}

    # ------------------------------------------------------------------ reads
    def get(self, key: SessionKey) -> SessionView | None:
        return self._sessions.get(key)

    def all(self) -> list[SessionView]:
        return list(self._sessions.values())

    def __len__(self) -> int:
        return len(self._sessions)

    def __contains__(self, key: object) -> bool:
        return key in self._sessions

    def logins_of(self, user: str, *, besides: SessionView) -> list[SessionView]:
        """The sessions `user` is logged in with (XAUTH accepted), `besides` left out."""
        return [self._sessions[k] for k in self._by_user.get(user, ()) if k != besides.key]

    def login_count(self, user: str, *, besides: SessionView) -> int:
        """How many `logins_of` lists, without the list: every login checks it (a
        shared account of the benchmarks has dozens of sessions, issue 13)."""
        logins = self._by_user.get(user, {})
        return len(logins) - (besides.key in logins)

    def at_address(self, public_ip: str, public_port: int) -> list[SessionView]:
        """The sessions whose client is at that public address and port, oldest first."""
        keys = self._by_address.get((public_ip, public_port), ())
        return [self._sessions[k] for k in keys]

    def active(self) -> int:
        """Sessions with a user and at least one IPsec SA."""
        return self._active

    def active_l2l(self) -> int:
        return self._active_l2l

    def summary(self) -> dict[str, int]:
        active = self.active()
        self.peak = max(self.peak, active)
        l2l = self.active_l2l()
        ra = active - l2l
        return {"active_remote_access": ra, "active_lan_to_lan": l2l,
                "active_management": 0, "active": ra, "total_active": active,
                "peak": self.peak, "concurrent_limit": self.limit,
                "cumulative": self.cumulative}

    def to_json(self, now: float) -> dict[str, Any]:
        """The admin socket's `sessions` answer (the Session Summary and both lists)."""
        listed = [s.as_dict(now) for s in self._sessions.values()
                  if s.user and not s.lan_to_lan]
        sites = [s.as_dict(now) for s in self._sessions.values() if s.lan_to_lan]
        return {"summary": self.summary(), "sessions": listed, "lan_to_lan": sites}

    # ------------------------------------------------------------------ writes
    def start(self, key: SessionKey, public_ip: str, public_port: int, /,
              **fields: Any) -> SessionView:
        """A new session (SessionStarted); the one already under `key` if any."""
        s = self._sessions.get(key)
        if s is None:
            s = Session(key, public_ip, public_port, **_checked(fields))
            self._sessions[key] = s
            self._count(s, +1)
            self._by_address.setdefault((public_ip, public_port), {})[key] = None
            if self._wants(SessionStarted):
                self._emit(SessionStarted(s.snapshot()))
        return s

    def update(self, key: SessionKey, /, **fields: Any) -> bool:
        """Set `fields` of the session; SessionChanged names those whose value
        changed (no event if none did). False if there is no such session."""
        s = self._sessions.get(key)
        if s is None:
            return False
        changed = set()
        counted = not _COUNTED.isdisjoint(_checked(fields))
        if counted:
            self._count(s, -1)
        moves = "public_ip" in fields or "public_port" in fields
        if moves:
            self._unindex_address(s)
        current = s.__dict__  # a plain dataclass: its fields are its __dict__
        for name, value in fields.items():
            if current[name] != value:
                current[name] = value
                changed.add(name)
        if counted:
            self._count(s, +1)
        if moves:
            self._by_address.setdefault((s.public_ip, s.public_port), {})[s.key] = None
        if changed:
            self._changed(s, changed)
        return True

    def add_child(self, key: SessionKey, child: ChildInfo) -> bool:
        """A new IPsec SA of the session (Quick Mode, RFC 2409 5.5)."""
        s = self._sessions.get(key)
        if s is None:
            return False
        self._count(s, -1)
        s.children[child.spi_in] = child
        self._count(s, +1)
        self._changed(s, {"children"})
        return True

    def remove_child(self, key: SessionKey, spi_in: int) -> ChildInfo | None:
        s = self._sessions.get(key)
        if s is None or spi_in not in s.children:
            return None
        self._count(s, -1)
        child = s.children.pop(spi_in)
        self._count(s, +1)
        self._changed(s, {"children"})
        return child

    def end(self, key: SessionKey, reason: str) -> SessionView | None:
        """Remove the session (SessionEnded with `reason`); how it was last, or None."""
        s = self._sessions.pop(key, None)
        if s is None:
            return None
        self._count(s, -1)
        self._unindex_address(s)
        if self._wants(SessionEnded):
            self._emit(SessionEnded(s.snapshot(), reason))
        return s

    def logged_in(self, s: SessionView) -> None:
        """Counted once XAUTH succeeded (a session is a logged-in user)."""
        self.cumulative += 1
        self.peak = max(self.peak, self.active())

    def update_peak(self) -> None:
        self.peak = max(self.peak, self.active())

    def restore_counters(self, peak: int, cumulative: int) -> None:
        """The previous run's Session Summary counters (from its state record)."""
        self.peak = max(self.peak, peak)
        self.cumulative += cumulative

    def _count(self, s: Session, sign: int) -> None:
        """Take `s` out of the counters and the user index (-1) before a write, and
        put it back as it is now (+1) after it."""
        if s.children:
            if s.user:
                self._active += sign
            if s.lan_to_lan:
                self._active_l2l += sign
        if s.authenticated and s.user:
            logins = self._by_user.setdefault(s.user, {})
            if sign > 0:
                logins[s.key] = None
            else:
                logins.pop(s.key, None)
                if not logins:
                    del self._by_user[s.user]

    def _unindex_address(self, s: Session) -> None:
        address = (s.public_ip, s.public_port)
        keys = self._by_address.get(address)
        if keys is not None:
            keys.pop(s.key, None)
            if not keys:
                del self._by_address[address]

    # ------------------------------------------------------------------ events
    def subscribe(self, callback: Subscriber,
                  kinds: tuple[type[SessionEvent], ...] = ALL_KINDS,
                  fields: frozenset[str] | None = None) -> Callable[[], None]:
        """Call `callback` with every event of `kinds` from now on (all by default),
        a SessionChanged only if it changed one of `fields` (any, if None);
        returns the unsubscribe."""
        entry = (callback, kinds, fields)
        self._subscribers.append(entry)
        self._index()

        def unsubscribe() -> None:
            if entry in self._subscribers:
                self._subscribers.remove(entry)
                self._index()
        return unsubscribe

    def _index(self) -> None:
        """`_by_kind` from `_subscribers`: a new dict and new lists, so that an event
        being told goes on with the listeners it had (one may unsubscribe meanwhile)."""
        self._by_kind = {kind: [(callback, want) for callback, kinds, want in self._subscribers
                                if kind in kinds] for kind in ALL_KINDS}

    def _wants(self, kind: type[SessionEvent]) -> bool:
        return bool(self._by_kind.get(kind))

    def _changed(self, s: Session, fields: Iterable[str]) -> None:
        listeners = self._by_kind.get(SessionChanged)
        if not listeners:
            return  # nobody to tell: no event built
        names = frozenset(fields)
        told = [callback for callback, want in listeners
                if want is None or not want.isdisjoint(names)]
        if names and told:
            self._tell(told, SessionChanged(s.snapshot(), names))

    def _emit(self, event: SessionStarted | SessionEnded) -> None:
        self._tell([callback for callback, _ in self._by_kind.get(type(event), ())], event)

    def _tell(self, callbacks: list[Subscriber], event: SessionEvent) -> None:
        for callback in callbacks:
            try:
                callback(event)
            except Exception:
                self.subscriber_errors += 1
                log.exception("session event subscriber %r failed on %s", callback,
                              type(event).__name__)


def _checked(fields: dict[str, Any]) -> dict[str, Any]:
    """`fields` (the call's own keyword dict) with the maps copied in; a name that is
    no Session field is a bug. Cheap: the stats refresh calls it per session."""
    if not _FIELDS.issuperset(fields):
        raise TypeError(f"not a session field: {', '.join(sorted(set(fields) - _FIELDS))}")
    if not _MAPS.isdisjoint(fields):
        for name in _MAPS.intersection(fields):
            fields[name] = dict(fields[name])
    return fields
