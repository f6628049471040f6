"""The RADIUS transport: an asyncio UDP client that never blocks the IKE loop.

pyrad is the codec (packets, User-Password hiding, the authenticators); this
module only moves its bytes. What it guarantees (RFC 2865 3, RFC 5080 2.2):

- Servers are tried in the order of the configuration. Each gets `1 + retries`
  tries of `timeout` seconds; a retransmission is the same packet (same
  Identifier and Request Authenticator, RFC 5080 2.2.1), so a late answer to an
  earlier try still counts.
- Identifiers are per socket (the server tells requests apart by source address,
  port and Identifier): one connected socket per server port holds at most 256
  requests in flight; when all are taken another socket is opened.
- A reply is accepted only if its Identifier is one in flight, its code answers
  the request's, its Response Authenticator is right and, for Access-Request, it
  carries a valid Message-Authenticator (RFC 3579 3.2; the BlastRADIUS fix,
  CVE-2024-3596; `require_message_authenticator = false` lets an old server
  omit it, a Message-Authenticator it sends is still checked). Anything else
  is dropped and counted, and the request keeps waiting for a good answer: a
  forged datagram cannot end a login. A server whose only answers were bad is
  reported as having a wrong shared secret.
- When every server failed, `RadiusUnavailable` says, server by server, why.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from pyrad import packet as rp

from vpnhub.auth.api import BackendError
from vpnhub.auth.radiusdict import radius_dictionary

if TYPE_CHECKING:
    from vpnhub.config import RadiusServerConfig

__all__ = ["RadiusClient", "RadiusUnavailable", "ServerFailure"]

MAX_PACKET = 4096  # RFC 2865 3: the maximum length of a RADIUS packet
_ANSWERS = {  # request code -> the codes that may answer it
    rp.AccessRequest: (rp.AccessAccept, rp.AccessReject, rp.AccessChallenge),
    rp.AccountingRequest: (rp.AccountingResponse,),
}
# Builds the request for one server: (its shared secret) -> packet. The secret is
# per server and User-Password is hidden with it (RFC 2865 5.2).
PacketFactory = Callable[[bytes], rp.Packet]


@dataclass
class ServerFailure:
    """Why one server gave no usable answer."""

    server: str
    tries: int
    timeout: float
    bad_replies: int = 0
    refused: bool = False
    error: str = ""  # the socket could not be opened (no route, a forbidden address)

    def describe(self) -> str:
        if self.error:
            return f"RADIUS server {self.server} cannot be reached ({self.error})"
        if self.bad_replies:
            return (f"RADIUS server {self.server} answered {self.bad_replies} time(s) with a bad"
                    " Response Authenticator or Message-Authenticator (wrong shared secret?)")
        if self.refused:
            return f"RADIUS server {self.server} is unreachable (ICMP port unreachable)"
        # RFC 3579 3.2: a server drops a request whose Message-Authenticator does not
        # check, so a wrong shared secret is silence too (FreeRADIUS logs "Shared
        # secret is incorrect" on its side)
        return (f"RADIUS server {self.server} did not answer ({self.tries} tries of"
                f" {self.timeout:g} s): down, unreachable, or dropping our requests"
                " (a wrong shared secret fails their Message-Authenticator)")


class RadiusUnavailable(BackendError):
    """No configured server gave a usable answer; the message names each one."""

    def __init__(self, failures: list[ServerFailure]) -> None:
        self.failures = failures
        super().__init__("; ".join(f.describe() for f in failures) or "no RADIUS server")


@dataclass
class _Pending:
    request: rp.Packet
    answer: asyncio.Future[rp.Packet]
    bad_replies: int = 0


@dataclass
class _Socket(asyncio.DatagramProtocol):
    """One connected UDP socket to one server port and its 256 Identifiers."""

    dictionary: Any = field(repr=False)
    # never in a repr: asyncio's exception handler logs the protocol of a transport
    secret: bytes = field(repr=False)
    require_ma: bool = True
    pending: dict[int, _Pending] = field(default_factory=dict, repr=False)
    transport: asyncio.DatagramTransport | None = None
    next_id: int = field(default_factory=lambda: random.randrange(256))
    dropped: int = 0
    refused: bool = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable on a connected socket: nothing listens there
        self.refused = isinstance(exc, ConnectionRefusedError)

    def free_id(self) -> int | None:
        for ident in itertools.islice(itertools.count(self.next_id), 256):
            ident %= 256
            if ident not in self.pending:
                self.next_id = (ident + 1) % 256
                return ident
        return None

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        """Every reply is hostile until its authenticators check out."""
        if not 20 <= len(data) <= MAX_PACKET:
            self.dropped += 1
            return
        p = self.pending.get(data[1])
        if p is None or p.answer.done():
            self.dropped += 1  # not in flight, or answered already (a duplicate)
            return
        if not self._valid(p, data):
            p.bad_replies += 1
            self.dropped += 1
            return
        p.answer.set_result(self._decode(p, data))

    def _valid(self, p: _Pending, data: bytes) -> bool:
        if data[0] not in _ANSWERS.get(p.request.code, ()):
            return False
        try:
            reply = self._decode(p, data)
        except Exception:  # pyrad raises PacketError, KeyError, struct.error on junk
            return False
        enforce = self.require_ma and p.request.code == rp.AccessRequest
        return bool(p.request.VerifyReply(reply, data, enforce_ma=enforce))

    def _decode(self, p: _Pending, data: bytes) -> rp.Packet:
        length = int.from_bytes(data[2:4], "big")
        return rp.Packet(secret=self.secret, dict=self.dictionary, packet=data[:length])


class _Server:
    """One server port: its sockets, opened on demand."""

    def __init__(self, cfg: RadiusServerConfig, port: int) -> None:
        self.address = str(cfg.address)
        self.port = port
        self.secret = cfg.secret.reveal()
        self.timeout = cfg.timeout
        self.tries = 1 + cfg.retries
        self.require_ma = cfg.require_message_authenticator
        self.sockets: list[_Socket] = []
        self._opening = asyncio.Lock()
        self.name = f"{self.address}:{port}"

    async def slot(self) -> tuple[_Socket, int]:
        """A socket and a free Identifier; the caller registers it before it awaits
        anything, so no other request can take the same one."""
        found = self._free_slot()
        if found is not None:
            return found
        async with self._opening:  # one new socket at a time, however many wait
            found = self._free_slot()
            if found is None:
                sock = _Socket(radius_dictionary(), self.secret, self.require_ma)
                await asyncio.get_running_loop().create_datagram_endpoint(
                    lambda: sock, remote_addr=(self.address, self.port))
                self.sockets.append(sock)
                found = self._free_slot()
        assert found is not None
        return found

    def _free_slot(self) -> tuple[_Socket, int] | None:
        for sock in self.sockets:
            ident = sock.free_id()
            if ident is not None:
                return sock, ident
        return None

    def close(self) -> None:
        for sock in self.sockets:
            if sock.transport is not None:
                sock.transport.close()
            for p in sock.pending.values():
                p.answer.cancel()
        self.sockets.clear()


class RadiusClient:
    """Requests to the servers of one port kind ("auth": auth_port, "acct": acct_port)."""

    def __init__(self, servers: tuple[RadiusServerConfig, ...], kind: str) -> None:
        self.servers = [_Server(s, s.auth_port if kind == "auth" else s.acct_port)
                        for s in servers]

    async def request(self, build: PacketFactory) -> tuple[str, rp.Packet]:
        """The first good answer, and the name of the server that gave it; raises
        `RadiusUnavailable` when no server gave one."""
        failures: list[ServerFailure] = []
        for server in self.servers:
            failure = ServerFailure(server.name, server.tries, server.timeout)
            reply = await self._ask(server, build, failure)
            if reply is not None:
                return server.name, reply
            failures.append(failure)
        raise RadiusUnavailable(failures)

    async def _ask(self, server: _Server, build: PacketFactory,
                   failure: ServerFailure) -> rp.Packet | None:
        try:
            sock, ident = await server.slot()
        except OSError as exc:  # connect() of the UDP socket: ENETUNREACH, EACCES
            failure.error = exc.strerror or str(exc)
            return None
        request = build(server.secret)
        request.id = ident
        data = request.RequestPacket()  # sets the Request Authenticator once
        loop = asyncio.get_running_loop()
        pending = _Pending(request, loop.create_future())
        sock.pending[ident] = pending
        sock.refused = False
        try:
            for _ in range(server.tries):
                if sock.transport is None or sock.transport.is_closing():
                    break
                sock.transport.sendto(data)
                done, _ = await asyncio.wait({pending.answer}, timeout=server.timeout)
                if done:
                    return pending.answer.result()
            failure.bad_replies, failure.refused = pending.bad_replies, sock.refused
            return None
        finally:
            del sock.pending[ident]

    @property
    def dropped(self) -> int:
        """Datagrams dropped: unknown Identifier, duplicate, bad authenticator, junk."""
        return sum(sock.dropped for server in self.servers for sock in server.sockets)

    def close(self) -> None:
        for server in self.servers:
            server.close()
