"""IKEv1 RSA signatures without DigestInfo (crypto/rsasig.py, RFC 2409 5.1, RFC 8017 9.2)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from vpnhub.crypto.rsasig import emsa_pkcs1_null, sign_pkcs1_null, verify_pkcs1_null

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
HASH = bytes(range(20))  # a SHA1-sized HASH_I


def test_signature_is_what_openssl_recovers_as_the_bare_hash() -> None:
    sig = sign_pkcs1_null(KEY, HASH)
    assert len(sig) == 256
    # what vpnc (crypto_decrypt_signature) and strongSwan (EMSA_PKCS1_NULL) do
    assert KEY.public_key().recover_data_from_signature(sig, padding.PKCS1v15(), None) == HASH


def test_signature_is_deterministic_despite_blinding() -> None:
    assert sign_pkcs1_null(KEY, HASH) == sign_pkcs1_null(KEY, HASH)


def test_verify_accepts_only_the_signed_hash() -> None:
    sig = sign_pkcs1_null(KEY, HASH)
    assert verify_pkcs1_null(KEY.public_key(), HASH, sig)
    assert not verify_pkcs1_null(KEY.public_key(), HASH[::-1], sig)
    assert not verify_pkcs1_null(KEY.public_key(), HASH, sig[:-1] + b"\x00")
    assert not verify_pkcs1_null(KEY.public_key(), HASH, b"")
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert not verify_pkcs1_null(other.public_key(), HASH, sig)


def test_emsa_block_layout_and_size_limit() -> None:
    block = emsa_pkcs1_null(b"\xaa", 16).to_bytes(16, "big")
    assert block == b"\x00\x01" + b"\xff" * 12 + b"\x00\xaa"
    with pytest.raises(ValueError):
        emsa_pkcs1_null(bytes(6), 16)  # RFC 8017 9.2: at least 8 bytes of padding
