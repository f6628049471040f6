"""RFC 5176 Dynamic Authorization: Disconnect-Request and CoA-Request on UDP 3799.

Only the `[[radius.dae_client]]` addresses are heard, each with its own
secret; every other datagram is dropped and counted. A request is hostile
until its Request Authenticator (RFC 5176 3.3) and, when present, its
Message-Authenticator check out; one whose Event-Timestamp is more than
`REPLAY_WINDOW` away from our clock is dropped (RFC 5176 3.4, replay). A
retransmission (same client, Identifier and authenticator) gets the same
answer again without being carried out twice (RFC 5080 2.2.2).

What a request may name (RFC 5176 3): the session by User-Name,
Acct-Session-Id, Framed-IP-Address and/or Calling-Station-Id (all that are
given must match); NAS-IP-Address / NAS-Identifier, if given, must be ours.
- Disconnect-Request: each matching session is logged out (DELETE to the
  client; its accounting Stop says Admin-Reset) -> Disconnect-ACK.
- CoA-Request with Session-Timeout: the sessions end that many seconds from
  now -> CoA-ACK. Anything else a CoA asks cannot be changed on a live IKEv1
  session: CoA-NAK, Unsupported-Attribute.
NAKs carry Error-Cause (RFC 5176 3.5): 401 Unsupported-Attribute,
402 Missing-Attribute, 403 NAS-Identification-Mismatch, 503
Session-Context-Not-Found.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

from pyrad import packet as rp

from vpnhub.auth.radius import NasIdentity, calling_station
from vpnhub.auth.radiusdict import radius_dictionary
from vpnhub.concentrator.accounting import RadiusAccounting, session_id, session_key
from vpnhub.session.model import SessionKey, SessionView

if TYPE_CHECKING:
    from vpnhub.concentrator.core import ConcentratorCore
    from vpnhub.config import RadiusDaeClientConfig

__all__ = ["REPLAY_WINDOW", "DaeServer"]

REPLAY_WINDOW = 300  # seconds; RFC 5176 3.4 suggests 300
_MAX_PACKET = 4096
_RECENT = 256  # answers kept for retransmissions
_IDENTIFY = ("User-Name", "Acct-Session-Id", "Framed-IP-Address", "Calling-Station-Id")
_NAS = ("NAS-IP-Address", "NAS-Identifier")
_ALWAYS = frozenset({*_IDENTIFY, *_NAS, "Event-Timestamp", "Message-Authenticator",
                     "Proxy-State", "Class"})
_COA_ONLY = frozenset({"Session-Timeout"})
_ERROR_UNSUPPORTED, _ERROR_MISSING, _ERROR_NAS_MISMATCH = 401, 402, 403
_ERROR_NOT_FOUND = 503


class DaeServer(asyncio.DatagramProtocol):
    """The RFC 5176 server of the concentrator (`start` binds it)."""

    def __init__(self, core: ConcentratorCore, clients: tuple[RadiusDaeClientConfig, ...],
                 nas: NasIdentity, *,
                 before_disconnect: Callable[[], Awaitable[None]] | None = None,
                 accounting: RadiusAccounting | None = None) -> None:
        self.core = core
        # Acct-Session-Ids as accounting sent them (kept across phase 1 rekeys)
        self.accounting = accounting
        self.secrets = {str(c.address): c.secret.reveal() for c in clients}
        self.nas = nas
        # the shell refreshes the session counters first, so that the Stop is exact
        self.before_disconnect = before_disconnect
        self.transport: asyncio.DatagramTransport | None = None
        self.drops: dict[str, int] = {}
        self.answered: dict[str, int] = {}
        self._recent: OrderedDict[tuple[str, int, bytes], bytes] = OrderedDict()
        # requests being carried out (the counters refresh before a Disconnect
        # awaits): a retransmission of one is not carried out again (RFC 5080 2.2.2)
        self._busy: set[tuple[str, int, bytes]] = set()

    async def start(self, address: str, port: int) -> None:
        await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: self, local_addr=(address, port))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # ------------------------------------------------------------ receive
    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        request = self._authentic(data, str(addr[0]))
        if request is None:
            return
        key = (str(addr[0]), request.id, request.authenticator)
        seen = self._recent.get(key)
        if seen is not None:  # a retransmission: the same answer, carried out once
            self._reply(seen, addr)
            return
        if key in self._busy:  # the first copy's answer is on its way
            self._drop("in_progress")
            return
        self._busy.add(key)
        asyncio.get_running_loop().create_task(self._answer(request, addr))

    def _drop(self, why: str) -> None:
        self.drops[why] = self.drops.get(why, 0) + 1

    def _authentic(self, data: bytes, source: str) -> Any | None:
        secret = self.secrets.get(source)
        if secret is None:
            self._drop("unknown_client")
            return None
        if not 20 <= len(data) <= _MAX_PACKET or data[0] not in (rp.DisconnectRequest,
                                                                 rp.CoARequest):
            self._drop("malformed")
            return None
        try:
            length = int.from_bytes(data[2:4], "big")
            request = rp.CoAPacket(secret=secret, dict=radius_dictionary(),
                                   packet=data[:length])
            valid = request.VerifyCoARequest() and (
                not request.message_authenticator or request.verify_message_authenticator())
        except Exception:  # pyrad's PacketError, KeyError, struct.error on junk
            self._drop("malformed")
            return None
        if not valid:
            self._drop("bad_authenticator")
            return None
        stamp = _first(request, "Event-Timestamp")
        if isinstance(stamp, int) and abs(time.time() - stamp) > REPLAY_WINDOW:
            self._drop("stale_event_timestamp")
            return None
        return request

    # ------------------------------------------------------------ decide
    async def _answer(self, request: Any, addr: tuple[str | Any, int]) -> None:
        try:
            await self._carry_out(request, addr)
        finally:
            self._busy.discard((str(addr[0]), request.id, request.authenticator))

    async def _carry_out(self, request: Any, addr: tuple[str | Any, int]) -> None:
        source = str(addr[0])
        error, keys = self._check(request)
        coa = request.code == rp.CoARequest
        if error is None and not coa and self.before_disconnect is not None:
            await self.before_disconnect()
        if error is None:
            error = self._apply(request, keys, source)
        reply = request.CreateReply()
        reply.message_authenticator = True
        if error is not None:
            reply.code = rp.CoANAK if coa else rp.DisconnectNAK
            reply["Error-Cause"] = error
        kind = ("CoA" if coa else "Disconnect") + ("-NAK" if error else "-ACK")
        self.answered[kind] = self.answered.get(kind, 0) + 1
        self.core.log.add("AUTH", 4 if error is None else 3,
                          f"RADIUS {'CoA' if coa else 'Disconnect'}-Request from {source}:"
                          f" {kind}" + (f" (Error-Cause {error})" if error else
                                        f" ({len(keys)} session(s))"), peer=source)
        raw = reply.ReplyPacket()
        self._recent[(source, request.id, request.authenticator)] = raw
        while len(self._recent) > _RECENT:
            self._recent.popitem(last=False)
        self._reply(raw, addr)

    def _check(self, request: Any) -> tuple[int | None, list[SessionKey]]:
        allowed = _ALWAYS | (_COA_ONLY if request.code == rp.CoARequest else frozenset())
        # pyrad's keys() gives names; iterating the packet would give attribute codes
        names = {_name(request, k) for k in request.keys()}  # noqa: SIM118
        if not names <= allowed:
            return _ERROR_UNSUPPORTED, []
        if request.code == rp.CoARequest and "Session-Timeout" not in names:
            return _ERROR_UNSUPPORTED, []  # nothing else maps to a live IKEv1 session
        if _first(request, "NAS-IP-Address") not in (None, self.nas.ip) or \
                _first(request, "NAS-Identifier") not in (None, self.nas.identifier):
            return _ERROR_NAS_MISMATCH, []
        if not any(n in names for n in _IDENTIFY):
            return _ERROR_MISSING, []
        keys = [s.key for s in self._candidates(request) if self._matches(request, s)]
        return (None, keys) if keys else (_ERROR_NOT_FOUND, [])

    def _candidates(self, request: Any) -> list[SessionView]:
        """The sessions the most specific attribute names: by key or by address when
        given (no scan); only User-Name / Calling-Station-Id look at every session."""
        sessions = self.core.sessions
        acct = _first(request, "Acct-Session-Id")
        if acct is not None:
            key = (self.accounting.key_of(str(acct)) if self.accounting is not None
                   else session_key(str(acct)))
            s = sessions.get(key) if key is not None else None
            return [s] if s is not None else []
        framed = _first(request, "Framed-IP-Address")
        if framed is not None:
            found = []
            for pool in self.core.pools.values():
                owner = pool.owner_of(str(framed)) if framed else None
                s = sessions.get(owner) if isinstance(owner, tuple) else None
                if s is not None:
                    found.append(s)
            return found
        return [s for s in sessions.all() if s.authenticated]

    def _apply(self, request: Any, keys: list[SessionKey], source: str) -> int | None:
        if request.code == rp.CoARequest:
            seconds = _first(request, "Session-Timeout")
            if not isinstance(seconds, int) or seconds <= 0:
                return _ERROR_UNSUPPORTED
            for key in keys:
                self.core.set_session_timeout(key, seconds)
            return None
        done = [self.core.disconnect(k, f"RADIUS Disconnect-Request from {source}")
                for k in keys]
        return None if any(done) else _ERROR_NOT_FOUND

    def _reply(self, raw: bytes, addr: tuple[str | Any, int]) -> None:
        if self.transport is not None:
            self.transport.sendto(raw, addr)


    def _matches(self, request: Any, s: SessionView) -> bool:
        """Every identification attribute given names this session (RFC 5176 3)."""
        acct = self.accounting
        return _matches(request, s, acct.acct_id(s.key) if acct else session_id(s.key))


def _matches(request: Any, s: SessionView, acct_id: str) -> bool:
    wanted = {
        "User-Name": s.user, "Acct-Session-Id": acct_id,
        "Framed-IP-Address": str(s.assigned_ip) if s.assigned_ip else None,
        "Calling-Station-Id": calling_station(s.public_ip, s.public_port),
    }
    return all(_first(request, name) in (None, value) for name, value in wanted.items())


def _name(request: Any, key: Any) -> str:
    """pyrad lists known attributes by name, unknown ones by their code."""
    return key if isinstance(key, str) else str(key)


def _first(request: Any, name: str) -> Any:
    try:
        values = request.get(name) or []
    except Exception:
        return None
    return values[0] if values else None
