"""XAUTH user authentication: the `Authenticator` seam, the local-users backend,
password hashes, and lock-out / slow-down as a wrapper around any backend.

`build_authenticator(config)` is what the concentrator awaits answers from:
`Lockout(LocalUsers(config.users), LockoutPolicy.from_limits(config.limits))`,
or, when a group has `xauth = "radius"`, `Lockout(ByGroup(...))` that sends
those groups' attempts to `RadiusAuthenticator` (radius.py; the transport is
radiusclient.py). A new backend implements `Authenticator` (vpnhub/auth/api.py)
in a module of its own and goes inside the same `Lockout`.

The password hash parser is vpnhub/config/passwordhash.py (the configuration
checks hashes at load time and imports nothing of auth); users.py re-exports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vpnhub.auth.api import (
    Authenticator,
    AuthReason,
    AuthRequest,
    AuthResult,
    BackendError,
    Closeable,
)
from vpnhub.auth.local import LocalUsers
from vpnhub.auth.lockout import FailureOutcome, Lockout, LockoutPolicy
from vpnhub.auth.radius import RadiusAuthenticator
from vpnhub.auth.route import ByGroup
from vpnhub.auth.users import (
    PasswordHashError,
    UserTable,
    hash_password,
    parse_password_hash,
    verify_password,
)

if TYPE_CHECKING:
    from vpnhub.config import Config

__all__ = [
    "AuthReason",
    "AuthRequest",
    "AuthResult",
    "Authenticator",
    "BackendError",
    "ByGroup",
    "Closeable",
    "FailureOutcome",
    "LocalUsers",
    "Lockout",
    "LockoutPolicy",
    "PasswordHashError",
    "RadiusAuthenticator",
    "UserTable",
    "build_authenticator",
    "hash_password",
    "parse_password_hash",
    "verify_password",
]


def build_authenticator(config: Config) -> Lockout:
    """The configured users behind the configured lock-out and slow-down. An
    `Authenticator`; `close()` (or `await aclose()`) it at shutdown."""
    local = LocalUsers(config.users)
    policy = LockoutPolicy.from_limits(config.limits)
    radius_groups = [g.name for g in config.groups if g.xauth == "radius"]
    if not radius_groups:
        return Lockout(local, policy)
    radius = RadiusAuthenticator(config.radius, config.concentrator.public_address)
    return Lockout(ByGroup(local, dict.fromkeys(radius_groups, radius)), policy)
