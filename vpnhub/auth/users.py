"""XAUTH user verification against the configuration, and password hashes.

Password hash format (PHC string format, salt and hash in standard base64
without padding)::

    $scrypt$ln=15,r=8,p=1$<salt>$<hash>            hashlib.scrypt, N = 2**ln
    $pbkdf2-sha256$i=600000$<salt>$<hash>          hashlib.pbkdf2_hmac
    $pbkdf2-sha512$i=210000$<salt>$<hash>

Make one with `python -m vpnhub.auth.users` (asks for the password twice) or
`hash_password()`. Verification recomputes the hash and compares with
`hmac.compare_digest`; plain-text passwords from the file are compared as
SHA-256 digests of equal length, also with `compare_digest`.

`UserTable.check()` verifies one XAUTH attempt against the configured users
and returns an `AuthResult` with a stable reason; it knows nothing of lock-out.
Verifying an scrypt hash takes about 0.1 s of CPU: `vpnhub.auth.local.LocalUsers`
is the async backend that runs it in a worker thread, and
`vpnhub.auth.lockout.Lockout` adds the lock-out and slow-down around it.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from vpnhub.auth.api import AuthReason, AuthResult
from vpnhub.config.passwordhash import (
    PBKDF2_DIGESTS,
    PasswordHash,
    PasswordHashError,
    parse_password_hash,
)

if TYPE_CHECKING:
    from vpnhub.config import UserConfig

__all__ = [
    "AuthReason",
    "AuthResult",
    "PasswordHash",
    "PasswordHashError",
    "UserTable",
    "hash_password",
    "parse_password_hash",
    "verify_password",
]

_DEFAULT_PBKDF2_ITERATIONS = {"pbkdf2-sha256": 600_000, "pbkdf2-sha512": 210_000}


def _to_bytes(password: str | bytes) -> bytes:
    return password.encode("utf-8") if isinstance(password, str) else bytes(password)


def hash_password(
    password: str | bytes,
    *,
    scheme: str = "scrypt",
    log2_n: int = 15,
    r: int = 8,
    p: int = 1,
    iterations: int | None = None,
    salt: bytes | None = None,
) -> str:
    """Hash a password for `password_hash` in the configuration file."""
    salt = os.urandom(16) if salt is None else salt
    if scheme == "scrypt":
        spec = PasswordHash(scheme, salt, bytes(32), log2_n=log2_n, r=r, p=p)
    elif scheme in PBKDF2_DIGESTS:
        count = iterations or _DEFAULT_PBKDF2_ITERATIONS[scheme]
        spec = PasswordHash(scheme, salt, bytes(32), iterations=count)
    else:
        raise ValueError(f"unknown hash scheme {scheme!r}")
    parse_password_hash(spec.encode())  # the same bounds as verification
    return replace(spec, digest=spec.compute(_to_bytes(password))).encode()


def verify_password(password: str | bytes, encoded: str | PasswordHash) -> bool:
    """Constant-time check of `password` against a hash string. False if malformed."""
    try:
        spec = encoded if isinstance(encoded, PasswordHash) else parse_password_hash(encoded)
    except PasswordHashError:
        return False
    return hmac.compare_digest(spec.compute(_to_bytes(password)), spec.digest)


def _plain_equal(given: bytes, stored: bytes) -> bool:
    # Equal-length digests: the time does not depend on where they differ or on
    # the stored password's length.
    return hmac.compare_digest(hashlib.sha256(given).digest(), hashlib.sha256(stored).digest())


# --------------------------------------------------------------------------- XAUTH


@dataclass(frozen=True)
class _Credential:
    group: str
    plain: bytes | None
    hashed: PasswordHash | None


class UserTable:
    """The configured XAUTH users and their password check; no lock-out, no I/O.

    Order of checks: known user -> password -> group. Unknown users cost the
    same work as known ones (a dummy verification shaped like the configured
    hashes) so timing does not reveal names. A check of an scrypt hash takes
    about 0.1 s of CPU: `vpnhub.auth.local.LocalUsers` runs it in a worker thread.
    """

    def __init__(self, users: Iterable[UserConfig]) -> None:
        self._users: dict[str, _Credential] = {}
        for user in users:
            self._users[user.name] = _credential(user)
        self._dummy: _Credential | None = None
        # No hash anywhere: every check (and the dummy one for unknown names) is a
        # constant-time compare of two SHA-256 digests, microseconds of CPU.
        self.plain_only = all(c.hashed is None for c in self._users.values())

    def knows(self, username: str) -> bool:
        return username in self._users

    def group_of(self, username: str) -> str | None:
        return _group_of(self._users.get(username))

    def check(self, username: str, password: bytes, group: str) -> AuthResult:
        """One attempt by `username` in `group`; the result carries no delay."""
        cred = self._users.get(username)
        if cred is None:
            self._check(self._dummy_credential(), password)
            reason = AuthReason.UNKNOWN_USER
        elif not self._check(cred, password):
            reason = AuthReason.BAD_PASSWORD
        elif cred.group != group:
            reason = AuthReason.WRONG_GROUP
        else:
            reason = AuthReason.OK
        return AuthResult(reason, username, group=_group_of(cred))

    @staticmethod
    def _check(cred: _Credential, given: bytes) -> bool:
        if cred.hashed is not None:
            return verify_password(given, cred.hashed)
        return _plain_equal(given, cred.plain or b"")

    def _dummy_credential(self) -> _Credential:
        """A credential shaped like the configured ones, for unknown names."""
        if self._dummy is None:
            model = next((c.hashed for c in self._users.values() if c.hashed is not None), None)
            hashed = None
            if model is not None:
                hashed = replace(model, digest=os.urandom(len(model.digest)))
            self._dummy = _Credential("", os.urandom(16), hashed)
        return self._dummy


def _group_of(cred: _Credential | None) -> str | None:
    return None if cred is None else cred.group


def _credential(user: UserConfig) -> _Credential:
    if user.password_hash is not None:
        return _Credential(user.group, None, parse_password_hash(user.password_hash.reveal_str()))
    if user.password is None:
        raise ValueError(f"user {user.name!r} has neither password nor password_hash")
    return _Credential(user.group, user.password.reveal(), None)


def main(argv: list[str] | None = None) -> int:
    """`python -m vpnhub.auth.users [--pbkdf2]`: print a hash for the config file."""
    args = sys.argv[1:] if argv is None else argv
    scheme = "pbkdf2-sha256" if "--pbkdf2" in args else "scrypt"
    first = getpass.getpass("Password: ")
    if not first or first != getpass.getpass("Again: "):
        print("passwords are empty or differ", file=sys.stderr)
        return 1
    print(hash_password(first, scheme=scheme))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
