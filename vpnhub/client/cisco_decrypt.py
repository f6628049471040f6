"""The Cisco VPN Client's obfuscation of passwords in .pcf profiles.

`enc_GroupPwd` and `enc_UserPassword` hold a hex string. This is obfuscation,
not protection: the key is derived from bytes stored next to the ciphertext.
Decoding follows vpnc's `cisco-decrypt` (the algorithm as vpnc documents it in
`deobfuscate()`, originally posted by HAL-9000@evilscientists.de)::

    bytes  0..19  H1    random; H1[0:8] is also the CBC IV
    bytes 20..39  H4    SHA1(ciphertext), a checksum
    bytes 40..    C     3DES-CBC(key, iv=H1[0:8], password + padding)

    key = SHA1(H1 with its last byte + 1) || SHA1(H1 with its last byte + 3)[0:4]

The last plaintext byte n says how many padding bytes to drop (vpnc checks no
more than that); what is left is read as a C string, up to the first NUL,
because some client versions encrypt the terminating NUL as well.
"""

from __future__ import annotations

import hashlib
import os

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

__all__ = ["CiscoDecodeError", "decode_password", "encode_password"]

_SALT_LEN = 20  # H1
_HEADER_LEN = 40  # H1 + H4
_BLOCK = 8  # 3DES block size
_MIN_LEN = _HEADER_LEN + _BLOCK  # vpnc refuses anything shorter than 48 bytes


class CiscoDecodeError(ValueError):
    """An `enc_*` value that is not a Cisco-obfuscated password.

    The message names what is wrong and never includes the value itself.
    """


def _key(h1: bytes) -> bytes:
    """The 3DES key of a given H1 (DES parity bits are ignored, as by vpnc)."""
    ht = bytearray(h1)
    ht[19] = (ht[19] + 1) & 0xFF
    h2 = hashlib.sha1(ht).digest()
    ht[19] = (ht[19] + 2) & 0xFF
    h3 = hashlib.sha1(ht).digest()
    return h2 + h3[:4]


def _hex_bytes(text: str) -> bytes:
    # vpnc's hex2bin: hex digits of either case only, an even count, nothing else.
    if any(c not in "0123456789abcdefABCDEF" for c in text):
        raise CiscoDecodeError("not a hex string")
    if len(text) % 2:
        raise CiscoDecodeError("odd number of hex digits")
    return bytes.fromhex(text)


def decode_password(text: str) -> bytes:
    """The cleartext of an `enc_GroupPwd` / `enc_UserPassword` value.

    Raises CiscoDecodeError when the value is not hex, too short, fails its
    SHA1 checksum, or does not decrypt to a padded plaintext.
    """
    data = _hex_bytes(text.strip())
    if len(data) < _MIN_LEN:
        raise CiscoDecodeError(f"too short ({len(data)} bytes, at least {_MIN_LEN} expected)")
    h1, h4, ciphertext = data[:_SALT_LEN], data[_SALT_LEN:_HEADER_LEN], data[_HEADER_LEN:]
    if hashlib.sha1(ciphertext).digest() != h4:
        raise CiscoDecodeError("checksum mismatch (the value is damaged or truncated)")
    if len(ciphertext) % _BLOCK:
        raise CiscoDecodeError("ciphertext is not a whole number of 3DES blocks")
    decryptor = Cipher(TripleDES(_key(h1)), modes.CBC(h1[:_BLOCK])).decryptor()
    plain = decryptor.update(ciphertext) + decryptor.finalize()
    pad = plain[-1]
    if not 1 <= pad <= _BLOCK:
        raise CiscoDecodeError("bad padding after decryption")
    return plain[: len(plain) - pad].split(b"\0", 1)[0]


def encode_password(
    password: bytes | str, *, salt: bytes | None = None, nul_terminate: bool = False
) -> str:
    """Obfuscate a password the way the Cisco client writes `enc_GroupPwd`.

    `salt` is H1 (20 bytes, random when None); with the salt of a known value
    the output reproduces it exactly. `nul_terminate` also encrypts the C
    string's NUL, as some client versions do. Returns upper-case hex.
    """
    plain = password.encode("utf-8") if isinstance(password, str) else bytes(password)
    if b"\0" in plain:
        raise ValueError("a password cannot contain NUL (it ends the C string)")
    h1 = os.urandom(_SALT_LEN) if salt is None else bytes(salt)
    if len(h1) != _SALT_LEN:
        raise ValueError(f"salt must be {_SALT_LEN} bytes")
    if nul_terminate:
        plain += b"\0"
    pad = _BLOCK - len(plain) % _BLOCK  # 1..8: decode_password needs at least one
    plain += bytes([pad]) * pad
    encryptor = Cipher(TripleDES(_key(h1)), modes.CBC(h1[:_BLOCK])).encryptor()
    ciphertext = encryptor.update(plain) + encryptor.finalize()
    return (h1 + hashlib.sha1(ciphertext).digest() + ciphertext).hex().upper()
