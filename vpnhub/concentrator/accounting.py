"""RADIUS accounting (RFC 2866) of the sessions RADIUS let in, driven by session events.

`RadiusAccounting` subscribes to the session store (vpnhub/session/events.py):

- Start when a session that a RADIUS server accepted gets its first IPsec SA
  (the tunnel exists and has its address: RFC 2866 5.1 "the start of user
  service delivery");
- Interim-Update every `[radius] interim_interval` seconds (RFC 2869 2.1),
  from a heap of due times checked on each tick, at most `INTERIM_PER_TICK`
  per tick: never O(sessions) work in one step of the IKE loop;
- Stop when the session ends, with Acct-Terminate-Cause from its reason.

Octets and packets are the session's counters, which the shell refreshes from
the data plane's compact counters (`apply_counters_in_steps`, every 10 s and
before a Disconnect-Request is carried out); above 2**32 the Gigawords carry
the rest (RFC 2869 5.1, 5.2). Calling-Station-Id is the public address and
port, so two PCs behind one PAT are told apart. A group with servers of its own
(`[[group.radius_server]]`) has its sessions accounted there. Requests go out as tasks on the
loop; a server that does not answer is logged, never waited for by IKE.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from pyrad import packet as rp

from vpnhub.auth.api import AuthResult, BackendError
from vpnhub.auth.radius import NasIdentity, calling_station
from vpnhub.auth.radiusclient import RadiusClient
from vpnhub.auth.radiusdict import radius_dictionary
from vpnhub.eventlog import EventLog
from vpnhub.session.events import SessionChanged, SessionEnded, SessionEvent
from vpnhub.session.model import SessionKey, SessionView
from vpnhub.session.store import SessionStore

__all__ = ["INTERIM_PER_TICK", "RadiusAccounting", "session_id", "session_key", "terminate_cause"]

INTERIM_PER_TICK = 200  # Interim-Updates started per tick at most (the rest wait a tick)
_GIGA = 1 << 32
Clock = Callable[[], float]
Spawn = Callable[[Coroutine[Any, Any, None]], object]

# SADeleted reasons (the engine's and the core's) -> Acct-Terminate-Cause (RFC 2866 5.10)
_CAUSES: tuple[tuple[str, str], ...] = (
    ("deleted by peer", "User-Request"),
    ("peer sent", "User-Request"),
    ("logged out by administrator", "Admin-Reset"),
    ("RADIUS Disconnect-Request", "Admin-Reset"),
    ("session timeout", "Session-Timeout"),
    ("idle", "Idle-Timeout"),
    ("dead peer", "Lost-Carrier"),
    ("IPsec over TCP connection closed", "Lost-Carrier"),
    ("concentrator shutting down", "Admin-Reboot"),
)


def terminate_cause(reason: str) -> str:
    """The Acct-Terminate-Cause of a session that ended for `reason`."""
    low = reason.lower()
    return next((cause for key, cause in _CAUSES if key.lower() in low), "NAS-Request")


def session_id(key: SessionKey) -> str:
    """Acct-Session-Id (RFC 2866 5.5): the ISAKMP cookies, unique per IKE SA."""
    return (key[0] + key[1]).hex()


def session_key(acct_session_id: str) -> SessionKey | None:
    """The session an Acct-Session-Id names (RFC 5176 Disconnect-Request), or None."""
    try:
        raw = bytes.fromhex(acct_session_id)
    except ValueError:
        return None
    return (raw[:8], raw[8:]) if len(raw) == 16 else None


@dataclass(frozen=True)
class _Accounted:
    """An accounted session: when it started (wall clock), its Acct-Session-Id (kept
    across phase 1 rekeys), what RADIUS granted (its Class values are echoed)."""

    start: float
    acct_id: str
    grant: AuthResult


class RadiusAccounting:
    """Start / Interim-Update / Stop for the sessions in `grants` (RADIUS-accepted)."""

    def __init__(self, *, client: RadiusClient, nas: NasIdentity, interim: int,
                 grants: Mapping[SessionKey, AuthResult], store: SessionStore,
                 log: EventLog, clock: Clock, wall: Clock, spawn: Spawn,
                 realms: Mapping[str, RadiusClient] | None = None) -> None:
        """`client`: the global [[radius.server]]s; `realms`: a group's own
        [[group.radius_server]]s by group name (issue 14). A session's requests go to
        the list whose server let it in (its grant's realm)."""
        self.client = client
        self.realms = dict(realms or {})
        self.nas = nas
        self.interim = interim
        self.grants = grants
        self.store = store
        self.log = log
        self.clock, self.wall, self.spawn = clock, wall, spawn
        self.started: dict[SessionKey, _Accounted] = {}
        self._by_id: dict[str, SessionKey] = {}  # Acct-Session-Id -> the session now
        self._due: list[tuple[float, SessionKey]] = []
        self.sent = {"Start": 0, "Interim-Update": 0, "Stop": 0}
        self.failed = 0
        self._unsubscribe = store.subscribe(self.on_event, (SessionChanged, SessionEnded))

    # ------------------------------------------------------------ session events
    def on_event(self, e: SessionEvent) -> None:
        match e:
            case SessionChanged() if "children" in e.fields:
                s = e.session
                if s.children and s.key not in self.started and s.key in self.grants:
                    self._start(s)
            case SessionEnded():
                begun = self.started.pop(e.session.key, None)
                if begun is not None:
                    self._by_id.pop(begun.acct_id, None)
                    self._send(e.session, "Stop", begun, terminate_cause(e.reason))
            case _:
                pass

    def _start(self, s: SessionView) -> None:
        begun = _Accounted(self.wall(), session_id(s.key), self.grants[s.key])
        self.started[s.key] = begun
        self._by_id[begun.acct_id] = s.key
        self._send(s, "Start", begun)
        self._schedule(s.key)

    def _schedule(self, key: SessionKey) -> None:
        if self.interim:
            heapq.heappush(self._due, (self.clock() + self.interim, key))

    def renewed(self, old: SessionKey, new: SessionKey) -> None:
        """A phase 1 rekey took session `old` over as `new` (the core's renewal_hook):
        the same accounting session goes on, under its first Acct-Session-Id."""
        begun = self.started.pop(old, None)
        if begun is not None:
            self.started[new] = begun
            self._by_id[begun.acct_id] = new
            self._schedule(new)

    def acct_id(self, key: SessionKey) -> str:
        """The Acct-Session-Id the server knows this session by."""
        begun = self.started.get(key)
        return begun.acct_id if begun is not None else session_id(key)

    def key_of(self, acct_id: str) -> SessionKey | None:
        """The session an Acct-Session-Id names (a RFC 5176 request), or None."""
        return self._by_id.get(acct_id) or session_key(acct_id)

    # ------------------------------------------------------------ interim updates
    def tick(self, now: float) -> None:
        """Interim-Updates that are due, at most INTERIM_PER_TICK of them."""
        for _ in range(INTERIM_PER_TICK):
            if not self._due or self._due[0][0] > now:
                return
            _, key = heapq.heappop(self._due)
            begun = self.started.get(key)
            s = self.store.get(key)
            if begun is None or s is None:
                continue  # ended (its Stop went out) or renewed under another key
            self._send(s, "Interim-Update", begun)
            heapq.heappush(self._due, (now + self.interim, key))

    # ------------------------------------------------------------ requests
    def _send(self, s: SessionView, status: str, begun: _Accounted,
              cause: str | None = None) -> None:
        attrs = self._attributes(s, status, begun, cause)
        self.sent[status] += 1
        self.spawn(self._deliver(s, status, attrs, begun.grant.realm))

    def _attributes(self, s: SessionView, status: str, begun: _Accounted,
                    cause: str | None) -> list[tuple[str, Any]]:
        now = self.wall()
        attrs: list[tuple[str, Any]] = [
            ("Acct-Status-Type", status), ("Acct-Session-Id", begun.acct_id),
            ("User-Name", s.user), ("Calling-Station-Id", calling_station(s.public_ip,
                                                                         s.public_port)),
            ("Acct-Authentic", "RADIUS"), ("Event-Timestamp", int(now)),
        ]
        if s.assigned_ip is not None:
            attrs.append(("Framed-IP-Address", str(s.assigned_ip)))
        attrs += [("Class", c) for c in begun.grant.classes]  # RFC 2865 5.25: echoed as is
        if status != "Start":
            attrs += [*_counters(s), ("Acct-Session-Time", max(0, int(now - begun.start)))]
        if cause is not None:
            attrs.append(("Acct-Terminate-Cause", cause))
        return attrs

    async def _deliver(self, s: SessionView, status: str, attrs: list[tuple[str, Any]],
                       realm: str = "") -> None:
        def build(secret: bytes) -> rp.Packet:
            p = rp.AcctPacket(secret=secret, dict=radius_dictionary())
            self.nas.stamp(p)
            for name, value in attrs:
                p.AddAttribute(name, value)
            return p
        try:
            await self.realms.get(realm, self.client).request(build)
        except BackendError as exc:
            self.failed += 1
            self.log.add("AUTH", 3, f"accounting {status} of {s.user} not delivered: {exc}",
                         peer=f"{s.public_ip}:{s.public_port}", group=s.group, user=s.user)

    def close(self) -> None:
        self._unsubscribe()
        self.client.close()
        for client in self.realms.values():
            client.close()


def _counters(s: SessionView) -> list[tuple[str, Any]]:
    """RFC 2866 5.3/5.4/5.8/5.9 with RFC 2869 5.1/5.2: input is what came from the
    client (the session's rx), output what went to it (tx)."""
    return [
        ("Acct-Input-Octets", s.bytes_rx % _GIGA), ("Acct-Input-Gigawords", s.bytes_rx // _GIGA),
        ("Acct-Output-Octets", s.bytes_tx % _GIGA),
        ("Acct-Output-Gigawords", s.bytes_tx // _GIGA),
        ("Acct-Input-Packets", s.packets_rx % _GIGA), ("Acct-Output-Packets", s.packets_tx % _GIGA),
    ]
