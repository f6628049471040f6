"""XAUTH against RADIUS: `RadiusAuthenticator`, an `Authenticator` backend.

The XAUTH user name and password go to the servers of `[[radius.server]]` in a
PAP Access-Request (RFC 2865 4.1, 5.2) with a Message-Authenticator (RFC 3579
3.2). What an Access-Accept carries is handed back in the `AuthResult`:

- Class `OU=<group>;` names the group whose policy the session gets, as the
  VPN 3000 reads it (RFC 2865 5.25 leaves Class opaque; the Class values are
  also kept to be echoed in accounting);
- Framed-IP-Address (5.8), Session-Timeout (5.27), Reply-Message (5.18).

An Access-Reject is a wrong password (`BAD_PASSWORD`), exactly as for a local
user: the client cannot tell a RADIUS refusal from a local one, and the lock-out
counts it alike. An Access-Challenge cannot be carried by this PAP exchange and
no server answering is not a verdict on the user: both raise `BackendError`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from typing import TYPE_CHECKING, Any

from pyrad import packet as rp

from vpnhub.auth.api import AuthReason, AuthRequest, AuthResult, BackendError
from vpnhub.auth.radiusclient import RadiusClient
from vpnhub.auth.radiusdict import radius_dictionary
from vpnhub.text import printable

if TYPE_CHECKING:
    from vpnhub.config import RadiusConfig, RadiusServerConfig

__all__ = ["NasIdentity", "RadiusAuthenticator", "class_group"]

_CLASS_GROUP = re.compile(rb"OU=([^;]{1,64});?")
_NAS_PORT_TYPE_VIRTUAL = 5  # RFC 2865 5.41: a connection through a transport (IPsec)
_SERVICE_TYPE_FRAMED = 2  # RFC 2865 5.6: a tunnel with an address (Framed-User)
_MAX_MESSAGE = 1000
_MAX_USER_NAME = 253  # RFC 2865 5.1: one or more octets, one attribute's value
_MAX_PAP_PASSWORD = 128  # RFC 2865 5.2: User-Password hides at most 128 octets


class NasIdentity:
    """What every request says about the NAS: NAS-IP-Address and NAS-Identifier."""

    def __init__(self, radius: RadiusConfig, public_address: ipaddress.IPv4Address) -> None:
        self.ip = str(radius.nas_ip_address or public_address)
        self.identifier = radius.nas_identifier

    def stamp(self, p: rp.Packet) -> None:
        p["NAS-IP-Address"] = self.ip
        p["NAS-Identifier"] = self.identifier
        p["NAS-Port-Type"] = _NAS_PORT_TYPE_VIRTUAL


def calling_station(source: str, port: int) -> str:
    """Calling-Station-Id (RFC 2865 5.31): the public address and port, so two PCs
    behind one PAT are told apart (RFC 3580 3.20 uses the same attribute for the
    remote end's address)."""
    return f"{source}:{port}" if port else source


def class_group(classes: tuple[bytes, ...]) -> str | None:
    """The group of the first Class of the VPN 3000's form `OU=<group>;`."""
    for value in classes:
        m = _CLASS_GROUP.match(value)
        if m is not None:
            return m.group(1).decode("utf-8", "replace")
    return None


class RadiusAuthenticator:
    """PAP Access-Request to the configured servers; never blocks the loop."""

    def __init__(self, radius: RadiusConfig, public_address: ipaddress.IPv4Address,
                 client: RadiusClient | None = None, *,
                 servers: tuple[RadiusServerConfig, ...] | None = None,
                 realm: str = "") -> None:
        """`servers`/`realm`: a group's own [[group.radius_server]]s and its name
        (issue 14); by default the global [[radius.server]]s, realm ""."""
        self.client = client or RadiusClient(radius.servers if servers is None else servers,
                                             "auth")
        self.nas = NasIdentity(radius, public_address)
        self.realm = realm

    def _access_request(self, request: AuthRequest, secret: bytes) -> rp.Packet:
        p = rp.AuthPacket(secret=secret, dict=radius_dictionary())
        p["User-Name"] = request.user
        p.authenticator = p.CreateAuthenticator()  # User-Password is hidden with it
        p["User-Password"] = p.PwCrypt(request.password.reveal())
        self.nas.stamp(p)
        p["Service-Type"] = _SERVICE_TYPE_FRAMED
        p["Calling-Station-Id"] = calling_station(request.source, request.port)
        p.add_message_authenticator()
        return p

    async def authenticate(self, request: AuthRequest) -> AuthResult:
        if not _fits_pap(request):
            # the peer's input, which no server could check: an Access-Reject's answer,
            # not pyrad's ValueError (which left the XAUTH unanswered)
            return AuthResult(AuthReason.BAD_PASSWORD, request.user)
        server, reply = await self.client.request(
            lambda secret: self._access_request(request, secret))
        if reply.code == rp.AccessReject:
            return AuthResult(AuthReason.BAD_PASSWORD, request.user, server=server)
        if reply.code != rp.AccessAccept:
            raise BackendError(f"RADIUS server {server} answered with an Access-Challenge,"
                               " which XAUTH with PAP cannot carry: refused")
        return dataclasses.replace(_accepted(request.user, server, reply), realm=self.realm)

    def close(self) -> None:
        self.client.close()

    async def aclose(self) -> None:
        self.client.close()


def _fits_pap(request: AuthRequest) -> bool:
    return (0 < len(request.user.encode()) <= _MAX_USER_NAME
            and len(request.password.reveal()) <= _MAX_PAP_PASSWORD)


def _accepted(user: str, server: str, reply: Any) -> AuthResult:
    classes = tuple(v for v in _values(reply, "Class") if isinstance(v, bytes))
    address = _first(reply, "Framed-IP-Address")
    timeout = _first(reply, "Session-Timeout")
    message = "".join(str(m) for m in _values(reply, "Reply-Message"))
    return AuthResult(
        AuthReason.OK, user, group=class_group(classes),
        address=_framed(address),
        session_timeout=int(timeout) if isinstance(timeout, int) and timeout > 0 else None,
        message=printable(message)[:_MAX_MESSAGE], classes=classes, server=server)


def _framed(value: Any) -> ipaddress.IPv4Address | None:
    """RFC 2865 5.8: 255.255.255.254 lets the NAS choose and 255.255.255.255 the
    user (which XAUTH cannot): both mean the pool."""
    if not isinstance(value, str):
        return None
    try:
        address = ipaddress.IPv4Address(value)
    except ValueError:
        return None
    return None if int(address) >= 0xFFFFFFFE else address


def _values(reply: Any, name: str) -> list[Any]:
    try:
        return list(reply.get(name, []) or [])
    except Exception:  # a value pyrad cannot decode (bad length): as if absent
        return []


def _first(reply: Any, name: str) -> Any:
    values = _values(reply, name)
    return values[0] if values else None
