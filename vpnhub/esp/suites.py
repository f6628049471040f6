"""ESP transforms and integrity algorithms as negotiated in IKEv1 Quick Mode.

Identifiers are the IPsec DOI ones (RFC 2407 4.4.4 / 4.5, IANA "IPsec
Security Association Attributes"): the ESP transform ID of the proposal and
the Authentication Algorithm SA attribute.  They equal the values of
``vpnhub.wire.constants.EspTransform`` / ``IPsecAuth``; plain ints are
accepted so this package does not depend on the wire codec.

KEYMAT (RFC 2409 5.5) for one SA is drawn as the encryption key followed by
the integrity key; :func:`key_lengths` tells the IKE engine how many bytes of
each.  For AES-GCM the "encryption key" is the AES key plus a 4-byte salt
(RFC 4106 8.1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives import hashes

from .errors import UnsupportedSuite

# ESP transform IDs (RFC 2407 4.4.4, RFC 3602, RFC 4106).
ESP_3DES: Final = 3
ESP_NULL: Final = 11
ESP_AES_CBC: Final = 12
ESP_AES_GCM_16: Final = 20

# Authentication Algorithm attribute values (RFC 2407 4.5, RFC 4868 3).
AUTH_NONE: Final = 0
HMAC_MD5_96: Final = 1
HMAC_SHA1_96: Final = 2
HMAC_SHA2_256_128: Final = 5
HMAC_SHA2_384_192: Final = 6
HMAC_SHA2_512_256: Final = 7


@dataclass(frozen=True, slots=True)
class CipherSpec:
    """How one ESP transform frames its payload."""

    name: str
    transform: int
    key_len: int  # bytes of cipher key (without salt)
    salt_len: int  # bytes of KEYMAT after the key used as nonce salt (GCM: 4)
    block_size: int  # payload + pad + 2 must be a multiple of this (at least 4)
    iv_len: int  # explicit IV bytes carried in each packet
    aead_icv_len: int  # ICV produced by the cipher itself (0: not AEAD)

    @property
    def aead(self) -> bool:
        return self.aead_icv_len > 0


@dataclass(frozen=True, slots=True)
class IntegSpec:
    """An HMAC integrity algorithm with its ICV truncation."""

    name: str
    auth_id: int
    key_len: int
    icv_len: int
    hash_name: str  # name of the cryptography.hazmat.primitives.hashes class

    def hash_algorithm(self) -> hashes.HashAlgorithm:
        algorithm: hashes.HashAlgorithm = getattr(hashes, self.hash_name)()
        return algorithm


@dataclass(frozen=True, slots=True)
class Suite:
    """A complete ESP suite: cipher and (unless AEAD) integrity algorithm."""

    cipher: CipherSpec
    integ: IntegSpec | None

    @property
    def name(self) -> str:
        if self.integ is None:
            return self.cipher.name
        return f"{self.cipher.name}/{self.integ.name}"

    @property
    def enc_key_len(self) -> int:
        return self.cipher.key_len + self.cipher.salt_len

    @property
    def integ_key_len(self) -> int:
        return 0 if self.integ is None else self.integ.key_len

    @property
    def icv_len(self) -> int:
        if self.cipher.aead:
            return self.cipher.aead_icv_len
        return 0 if self.integ is None else self.integ.icv_len

    def overhead(self, inner_len: int) -> int:
        """ESP bytes added to an inner packet of ``inner_len`` bytes (no UDP/IP)."""
        bs = self.cipher.block_size
        padded = inner_len + 2 + (-(inner_len + 2) % bs)
        return 8 + self.cipher.iv_len + padded - inner_len + self.icv_len


_INTEG: dict[int, IntegSpec] = {
    HMAC_MD5_96: IntegSpec("HMAC-MD5-96", HMAC_MD5_96, 16, 12, "MD5"),  # RFC 2403
    HMAC_SHA1_96: IntegSpec("HMAC-SHA1-96", HMAC_SHA1_96, 20, 12, "SHA1"),  # RFC 2404
    HMAC_SHA2_256_128: IntegSpec("HMAC-SHA2-256-128", HMAC_SHA2_256_128, 32, 16, "SHA256"),
    HMAC_SHA2_384_192: IntegSpec("HMAC-SHA2-384-192", HMAC_SHA2_384_192, 48, 24, "SHA384"),
    HMAC_SHA2_512_256: IntegSpec("HMAC-SHA2-512-256", HMAC_SHA2_512_256, 64, 32, "SHA512"),
}

_AES_BITS = (128, 192, 256)


def _cipher_spec(transform: int, key_len_bits: int | None) -> CipherSpec:
    if transform == ESP_AES_CBC:
        # RFC 3602 5.3: the Key Length attribute is mandatory for AES.
        if key_len_bits not in _AES_BITS:
            raise UnsupportedSuite(f"AES-CBC key length {key_len_bits!r}")
        return CipherSpec(f"AES-{key_len_bits}-CBC", transform, key_len_bits // 8, 0, 16, 16, 0)
    if transform == ESP_AES_GCM_16:
        if key_len_bits not in _AES_BITS:
            raise UnsupportedSuite(f"AES-GCM key length {key_len_bits!r}")
        # RFC 4106: 8-byte explicit IV, 16-byte ICV, 4-byte salt; 4-byte alignment.
        return CipherSpec(f"AES-{key_len_bits}-GCM-16", transform, key_len_bits // 8, 4, 4, 8, 16)
    # Fixed-size ciphers: no Key Length attribute (None, or 0 as the IKE engine reports it).
    if transform == ESP_3DES:
        if key_len_bits not in (None, 0, 192):
            raise UnsupportedSuite(f"3DES key length {key_len_bits!r}")
        return CipherSpec("3DES-CBC", transform, 24, 0, 8, 8, 0)  # RFC 2451
    if transform == ESP_NULL:
        if key_len_bits not in (None, 0):
            raise UnsupportedSuite(f"NULL key length {key_len_bits!r}")
        return CipherSpec("NULL", transform, 0, 0, 4, 0, 0)  # RFC 2410
    raise UnsupportedSuite(f"ESP transform {transform}")


def get_suite(
    transform: int,
    key_len_bits: int | None,
    auth: int | None,
    *,
    allow_no_integrity: bool = False,
) -> Suite:
    """Validate a negotiated combination and describe it.

    ``auth`` None or 0 means "no Authentication Algorithm attribute": required
    for AES-GCM (RFC 4106 5), refused with NULL encryption (RFC 4303 3.2: ESP
    must provide confidentiality or integrity), and refused with CBC ciphers
    unless ``allow_no_integrity`` (encryption without integrity is open to
    cut-and-paste attacks and disables the replay window).
    """
    cipher = _cipher_spec(transform, key_len_bits)
    if auth in (None, AUTH_NONE):
        if cipher.aead:
            return Suite(cipher, None)
        if transform == ESP_NULL:
            raise UnsupportedSuite("ESP_NULL without an integrity algorithm")
        if not allow_no_integrity:
            raise UnsupportedSuite(f"{cipher.name} without an integrity algorithm")
        return Suite(cipher, None)
    if cipher.aead:
        raise UnsupportedSuite(f"{cipher.name} is combined mode: no separate integrity")
    integ = _INTEG.get(auth)
    if integ is None:
        raise UnsupportedSuite(f"ESP authentication algorithm {auth}")
    return Suite(cipher, integ)


def key_lengths(transform: int, key_len_bits: int | None, auth: int | None) -> tuple[int, int]:
    """(encryption key bytes, integrity key bytes) of KEYMAT for one SA.

    KEYMAT is split in that order (RFC 2409 5.5 / RFC 2407): first the
    encryption key (for AES-GCM: key then 4-byte salt), then the integrity key.
    """
    suite = get_suite(transform, key_len_bits, auth, allow_no_integrity=True)
    return suite.enc_key_len, suite.integ_key_len
