"""What the warning banners and /metrics count, kept by the store's session events.

`ManagerView.warnings()` runs for every page of the manager and for
/api/v1/warnings, and /metrics on every scrape: listing and scanning 10,000
sessions each time was O(sessions) on the event loop (issue 13). Here each
remote access session is classified once per SessionStarted / SessionChanged
(and forgotten at SessionEnded): stuck behind NAT without NAT-T, legacy
crypto, its protocol if it has an IPsec SA. A read is then O(1) for a count,
and the first five names are picked among the flagged sessions only (and
only again after that set changed).
"""

from __future__ import annotations

import functools
import heapq
import re
from collections import Counter
from collections.abc import Callable

from vpnhub.crypto.suites import is_legacy_esp
from vpnhub.session.model import SessionKey, SessionView
from vpnhub.session.store import (
    SessionChanged,
    SessionEnded,
    SessionEvent,
    SessionStarted,
    SessionStore,
)

LEGACY_IKE = frozenset(("3DES", "DES", "MD5", "MODP_768", "MODP_1024", "MODP_1536"))
NAMES_SHOWN = 5  # a banner names this many sessions, then "..."

_Order = tuple[float, str]  # (login time, user): the Sessions page's default order
# The fields the classification reads: a SessionChanged of others (the traffic
# counters the concentrator refreshes for every session every 10 s) is not even
# built for the tally (the store filters by these fields).
FIELDS = frozenset(("user", "lan_to_lan", "login_time", "diagnosis", "peer_behind_nat",
                    "nat_t", "ike", "children", "transport"))


def is_legacy(s: SessionView) -> bool:
    """3DES, DES, MD5 or DH group 1/2/5 in phase 1, or a legacy ESP transform."""
    ike = s.ike
    if _legacy_ike(str(ike.get("encryption", "")), str(ike.get("hash", "")),
                   str(ike.get("dh_group", ""))):
        return True
    return any(is_legacy_esp(c.transform, c.auth or None) for c in s.children.values())


@functools.lru_cache(maxsize=256)
def _legacy_ike(encryption: str, hash_: str, dh_group: str) -> bool:
    # a few suites are in use, and every session event of every login classifies
    # its session: the split and set cost ~12 us a call, the cache ~0.2 (issue 13)
    ike = f"{encryption} {hash_} {dh_group}"
    return bool(set(re.split(r"[^A-Z0-9_]+", ike.upper())) & LEGACY_IKE)


def is_stuck(s: SessionView) -> bool:
    """Behind NAT without NAT-T (or diagnosed so): the tunnel is up, no data passes."""
    return bool(s.diagnosis) or (s.peer_behind_nat and not s.nat_t)


class _Flagged:
    """The sessions with one flag, and their first names in (login time, user) order."""

    def __init__(self) -> None:
        self.members: dict[SessionKey, _Order] = {}
        self._names: str | None = None  # cached until the set changes

    def set(self, key: SessionKey, order: _Order | None) -> None:
        if order is None:
            if self.members.pop(key, None) is not None:
                self._names = None
        elif self.members.get(key) != order:
            self.members[key] = order
            self._names = None

    def names(self) -> str:
        """The first NAMES_SHOWN users, then " ..." if there are more."""
        if self._names is None:
            first = heapq.nsmallest(NAMES_SHOWN, self.members.values())
            more = " ..." if len(self.members) > NAMES_SHOWN else ""
            self._names = ", ".join(user for _, user in first) + more
        return self._names


class SessionTally:
    """Counts over the remote access sessions, updated per session event."""

    def __init__(self, store: SessionStore) -> None:
        self.stuck = _Flagged()
        self.legacy = _Flagged()
        self.by_protocol: Counter[str] = Counter()  # sessions with an IPsec SA
        self._protocol: dict[SessionKey, str] = {}
        for s in store.all():  # the sessions that exist already, once
            self._classify(s)
        self._unsubscribe: Callable[[], None] = store.subscribe(
            self.on_session_event, (SessionStarted, SessionChanged, SessionEnded), FIELDS)

    def close(self) -> None:
        self._unsubscribe()

    def on_session_event(self, e: SessionEvent) -> None:
        if isinstance(e, SessionEnded):
            self._forget(e.session.key)
        else:  # the store sends a SessionChanged only if it touched FIELDS
            self._classify(e.session)

    def _classify(self, s: SessionView) -> None:
        if not s.user or s.lan_to_lan:  # not a remote access session (yet)
            self._forget(s.key)
            return
        order = (s.login_time, s.user)
        self.stuck.set(s.key, order if is_stuck(s) else None)
        self.legacy.set(s.key, order if is_legacy(s) else None)
        self._set_protocol(s.key, s.protocol if s.children else None)

    def _forget(self, key: SessionKey) -> None:
        self.stuck.set(key, None)
        self.legacy.set(key, None)
        self._set_protocol(key, None)

    def _set_protocol(self, key: SessionKey, protocol: str | None) -> None:
        old = self._protocol.pop(key, None)
        if old is not None:
            self.by_protocol[old] -= 1
            if not self.by_protocol[old]:
                del self.by_protocol[old]
        if protocol is not None:
            self._protocol[key] = protocol
            self.by_protocol[protocol] += 1
