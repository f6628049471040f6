"""A RADIUS server in-process for the tests: pyrad decodes, a handler decides.

`FakeRadius` listens on 127.0.0.1 (a random port) inside the running asyncio
loop; `handler(request) -> reply | None` builds the answer (None: silent). It
checks every request's Message-Authenticator and Request Authenticator as a
real server would, and keeps what it received.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable
from typing import Any, cast

from pyrad import packet as rp

from vpnhub.auth.radiusdict import radius_dictionary
from vpnhub.config import RadiusServerConfig, Secret

Handler = Callable[[Any], Any]


def accept(**attributes: Any) -> Handler:
    def handle(req: Any) -> Any:
        reply = req.CreateReply()
        for name, value in attributes.items():
            reply[name.replace("_", "-")] = value
        return reply
    return handle


def check_password(password: str, **attributes: Any) -> Handler:
    """Access-Accept with `attributes` for the right password, Access-Reject else."""
    def handle(req: Any) -> Any:
        reply = accept(**attributes)(req)
        if req.PwDecrypt(req["User-Password"][0]) != password:
            reply = req.CreateReply()
            reply.code = rp.AccessReject
        return reply
    return handle


class FakeRadius(asyncio.DatagramProtocol):
    def __init__(self, secret: bytes, handler: Handler, *, kind: str = "auth") -> None:
        self.secret = secret
        self.handler = handler
        self.kind = kind
        self.received: list[Any] = []
        self.raw: list[bytes] = []
        self.port = 0
        self.transport: asyncio.DatagramTransport | None = None

    async def start(self) -> FakeRadius:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=("127.0.0.1", 0))
        self.port = transport.get_extra_info("sockname")[1]
        return self

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.raw.append(data)
        cls = rp.AuthPacket if data[0] == rp.AccessRequest else rp.AcctPacket
        req = cls(secret=self.secret, dict=radius_dictionary(), packet=data)
        if data[0] == rp.AccessRequest:
            assert req.message_authenticator and req.verify_message_authenticator()
        else:
            assert req.VerifyAcctRequest()
        self.received.append(req)
        reply = self.handler(req)
        if reply is not None and self.transport is not None:
            for r in reply if isinstance(reply, list) else [reply]:
                self.transport.sendto(r if isinstance(r, bytes) else r.ReplyPacket(), addr)

    def config(self, secret: bytes | None = None, *, timeout: float = 0.2,
               retries: int = 1) -> RadiusServerConfig:
        """A [[radius.server]] pointing here (`secret`: the client's, if different)."""
        ports = {"auth_port": self.port} if self.kind == "auth" else {"acct_port": self.port}
        return RadiusServerConfig(ipaddress.IPv4Address("127.0.0.1"),
                                  Secret(secret if secret is not None else self.secret),
                                  timeout=timeout, retries=retries, **ports)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
