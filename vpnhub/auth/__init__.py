"""XAUTH user authentication: the `Authenticator` seam, the local-users backend,
password hashes, and lock-out / slow-down as a wrapper around any backend.

`build_authenticator(config)` is what the concentrator awaits answers from:
`Lockout(LocalUsers(config.users), LockoutPolicy.from_limits(config.limits))`,
or, when a group has `xauth = "radius"`, `Lockout(ByGroup(...))` that sends
those groups' attempts to `RadiusAuthenticator` (radius.py; the transport is
radiusclient.py): one for the global `[[radius.server]]`s, one per group that has
its own `[[group.radius_server]]`s. A new backend implements `Authenticator` (vpnhub/auth/api.py)
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
    radius_groups = [g for g in config.groups if g.xauth == "radius"]
    if not radius_groups:
        return Lockout(local, policy)
    public = config.concentrator.public_address
    shared = RadiusAuthenticator(config.radius, public)  # the global [[radius.server]]s
    by_group: dict[str, Authenticator] = {}
    for g in radius_groups:  # a group's own [[group.radius_server]]s (issue 14)
        by_group[g.name] = RadiusAuthenticator(
            config.radius, public, servers=g.radius_servers, realm=g.name) \
            if g.radius_servers else shared
    return Lockout(ByGroup(local, by_group), policy)
