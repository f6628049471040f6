"""XAUTH user authentication: password checks, hashes, lockout and slow-down.

Nothing here imports `vpnhub.config` at run time (config imports the hash
parser from the leaf vpnhub/passwordhash.py, which users.py re-exports), and
nothing touches a socket or a clock: pass `now` in.
"""

from vpnhub.auth.lockout import FailureOutcome, LockoutPolicy
from vpnhub.auth.users import (
    AuthReason,
    AuthResult,
    PasswordHashError,
    XauthAuthenticator,
    hash_password,
    parse_password_hash,
    verify_password,
)

__all__ = [
    "AuthReason",
    "AuthResult",
    "FailureOutcome",
    "LockoutPolicy",
    "PasswordHashError",
    "XauthAuthenticator",
    "hash_password",
    "parse_password_hash",
    "verify_password",
]
