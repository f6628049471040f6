"""Errors raised by `vpnhub.crypto`.

Every error carries a stable snake_case `reason`, like `WireError`, so the
IKE engine can count a dropped message under the same name in its tests, its
event log and its metrics. Messages never contain key material.
"""

from __future__ import annotations


class CryptoError(Exception):
    """Base of every error raised by `vpnhub.crypto`."""

    reason: str = "crypto_error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class UnsupportedAlgorithm(CryptoError):
    """An IKE/ESP transform, hash or group this package does not implement."""

    reason = "unsupported_algorithm"


class InvalidPublicValue(CryptoError):
    """A peer's KE payload is unusable (RFC 2409 5, RFC 5903 5, NIST SP 800-56A 5.6.2).

    Wrong length, out of the range 1 < y < p-1, or not a point on the curve.
    """

    reason = "invalid_public_value"


class InvalidLength(CryptoError):
    """A key, IV or CBC input of the wrong size (e.g. ciphertext not a multiple of the block)."""

    reason = "bad_cipher_length"
