"""The authentication seam: what the concentrator asks and what it gets back.

The concentrator core hands every XAUTH answer (RFC draft-beaulieu-ike-xauth
section 6) to an `Authenticator` and awaits the result; it never learns which
backend answered. Local users (`local.py`) and RADIUS (`radius.py`) are the
backends, chosen per group (`route.py`); the lock-out / slow-down policy is a
wrapper around any of them (`vpnhub.auth.lockout`).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

from vpnhub.secret import Secret


class AuthReason(StrEnum):
    """Why a login attempt ended as it did; stable names for logs and counters."""

    OK = "ok"
    UNKNOWN_USER = "unknown_user"
    BAD_PASSWORD = "bad_password"
    LOCKED_OUT = "locked_out"
    WRONG_GROUP = "wrong_group"


@dataclass(frozen=True)
class AuthRequest:
    """One XAUTH attempt: `user` with `password`, logging in to `group`, from the
    public address `source` (the PAT's address for clients behind one) and UDP
    `port` (0: unknown; RADIUS sends both as Calling-Station-Id)."""

    user: str
    password: Secret
    group: str
    source: str
    port: int = 0


@dataclass(frozen=True)
class AuthResult:
    """`delay`: seconds the answer was (or is to be) held back to slow down
    guessing (0 on success). `locked_until`: when the lock ends, if locked.
    `group`: the user's configured group (None for unknown users); from RADIUS,
    the group its Class attribute names (None: the group the client asked for).

    What a RADIUS Access-Accept grants (issue 14; empty from other backends):
    `address` (Framed-IP-Address), `session_timeout` (seconds), `message`
    (Reply-Message), `classes` (Class values, sent back in accounting, RFC 2865
    5.25), `server` (the server that answered), `realm` (whose server list it is:
    "" for the global [[radius.server]]s, else the group of [[group.radius_server]];
    accounting goes to the same list)."""

    reason: AuthReason
    username: str
    delay: float = 0.0
    locked_until: float | None = None
    group: str | None = None
    address: ipaddress.IPv4Address | None = None
    session_timeout: int | None = None
    message: str = ""
    classes: tuple[bytes, ...] = ()
    server: str = ""
    realm: str = ""

    @property
    def ok(self) -> bool:
        return self.reason is AuthReason.OK


class BackendError(Exception):
    """The backend could not decide (a RADIUS server silent or with a wrong shared
    secret); the message names what failed and carries no secret."""


class Authenticator(Protocol):
    """Any authentication backend. `authenticate` returns when the XAUTH status may
    be sent: a slow-down wrapper waits before returning, so the caller never does.
    It must not raise for a wrong user or password (that is a result); an exception
    means the backend failed (unreachable server, bad configuration)."""

    async def authenticate(self, request: AuthRequest) -> AuthResult: ...


@runtime_checkable
class Closeable(Protocol):
    """A backend that holds something to release at shutdown (a worker thread, a
    socket). `close` does not wait; `aclose` waits for work in progress."""

    def close(self) -> None: ...

    async def aclose(self) -> None: ...
