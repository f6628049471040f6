"""Password hash strings: the format, its bounds, and the parser.

PHC string format, salt and hash in standard base64 without padding::

    $scrypt$ln=15,r=8,p=1$<salt>$<hash>            hashlib.scrypt, N = 2**ln
    $pbkdf2-sha256$i=600000$<salt>$<hash>          hashlib.pbkdf2_hmac
    $pbkdf2-sha512$i=210000$<salt>$<hash>

Part of the configuration package (it imports nothing of vpnhub) so that the
configuration can reject a malformed `password_hash` at load time without
importing the XAUTH code (issue 12: the configuration is a leaf). Hashing and
verification live in vpnhub/auth/users.py, which re-exports these names.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

__all__ = ["PBKDF2_DIGESTS", "PasswordHash", "PasswordHashError", "parse_password_hash"]

# Upper bounds on the cost a hash string may ask for, so a bad file cannot make
# one login burn gigabytes or minutes.
_MAX_SCRYPT_LOG2_N = 20
_MAX_SCRYPT_R = 32
_MAX_SCRYPT_P = 16
_MAX_PBKDF2_ITERATIONS = 10_000_000
PBKDF2_DIGESTS = {"pbkdf2-sha256": "sha256", "pbkdf2-sha512": "sha512"}


class PasswordHashError(ValueError):
    """A password hash string is malformed. The message never quotes the hash."""


@dataclass(frozen=True)
class PasswordHash:
    scheme: str  # "scrypt" | "pbkdf2-sha256" | "pbkdf2-sha512"
    salt: bytes
    digest: bytes
    log2_n: int = 0  # scrypt
    r: int = 0  # scrypt
    p: int = 0  # scrypt
    iterations: int = 0  # pbkdf2

    def compute(self, password: bytes) -> bytes:
        if self.scheme == "scrypt":
            n = 1 << self.log2_n
            maxmem = 128 * self.r * (n + self.p + 2) + (1 << 20)
            return hashlib.scrypt(
                password, salt=self.salt, n=n, r=self.r, p=self.p,
                maxmem=maxmem, dklen=len(self.digest),
            )  # fmt: skip
        algorithm = PBKDF2_DIGESTS[self.scheme]
        return hashlib.pbkdf2_hmac(
            algorithm, password, self.salt, self.iterations, dklen=len(self.digest)
        )

    def encode(self) -> str:
        if self.scheme == "scrypt":
            params = f"ln={self.log2_n},r={self.r},p={self.p}"
        else:
            params = f"i={self.iterations}"
        return f"${self.scheme}${params}${_b64(self.salt)}${_b64(self.digest)}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str, what: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9+/]*", text):
        raise PasswordHashError(f"the {what} is not base64")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise PasswordHashError(f"the {what} is not base64") from None


def _params(text: str, names: tuple[str, ...]) -> dict[str, int]:
    values: dict[str, int] = {}
    for item in text.split(","):
        key, _, value = item.partition("=")
        if key not in names or key in values or not re.fullmatch(r"[0-9]{1,9}", value):
            raise PasswordHashError(f"bad parameters; expected {'=N,'.join(names)}=N")
        values[key] = int(value)
    if set(values) != set(names):
        raise PasswordHashError(f"bad parameters; expected {'=N,'.join(names)}=N")
    return values


def parse_password_hash(encoded: str) -> PasswordHash:
    """Parse and bound-check a hash string. Raises PasswordHashError."""
    parts = encoded.split("$")
    if len(parts) != 5 or parts[0] != "":
        raise PasswordHashError(
            "not a password hash; expected '$scrypt$ln=..,r=..,p=..$salt$hash' or "
            "'$pbkdf2-sha256$i=..$salt$hash' (make one with: python -m vpnhub.auth.users)"
        )
    _, scheme, params, salt_text, digest_text = parts
    if scheme != "scrypt" and scheme not in PBKDF2_DIGESTS:
        known = ", ".join(["scrypt", *PBKDF2_DIGESTS])
        raise PasswordHashError(f"unknown hash scheme (known: {known})")
    salt = _unb64(salt_text, "salt")
    digest = _unb64(digest_text, "hash")
    if len(salt) < 8:
        raise PasswordHashError("the salt is shorter than 8 bytes")
    if not 16 <= len(digest) <= 128:
        raise PasswordHashError("the hash must be 16 to 128 bytes long")
    if scheme == "scrypt":
        v = _params(params, ("ln", "r", "p"))
        if not (1 <= v["ln"] <= _MAX_SCRYPT_LOG2_N and 1 <= v["r"] <= _MAX_SCRYPT_R
                and 1 <= v["p"] <= _MAX_SCRYPT_P):  # fmt: skip
            raise PasswordHashError(
                f"scrypt parameters out of range (ln 1..{_MAX_SCRYPT_LOG2_N}, "
                f"r 1..{_MAX_SCRYPT_R}, p 1..{_MAX_SCRYPT_P})"
            )
        return PasswordHash(scheme, salt, digest, log2_n=v["ln"], r=v["r"], p=v["p"])
    iterations = _params(params, ("i",))["i"]
    if not 1000 <= iterations <= _MAX_PBKDF2_ITERATIONS:
        raise PasswordHashError(f"iterations out of range (1000..{_MAX_PBKDF2_ITERATIONS})")
    return PasswordHash(scheme, salt, digest, iterations=iterations)
