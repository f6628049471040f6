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


def _raw_sign(block: bytes) -> bytes:
    """The RSA primitive over an arbitrary block: what a forger with the key would send."""
    priv = KEY.private_numbers()
    n = priv.public_numbers.n
    return pow(int.from_bytes(block, "big"), priv.d, n).to_bytes(256, "big")


def test_signature_must_be_exactly_k_bytes() -> None:
    """RFC 8017 8.2.2 step 1: a signature whose length is not that of the modulus is
    invalid, also when it is the right integer without its leading zero octet."""
    data, sig = next((d, s) for d in (i.to_bytes(20, "big") for i in range(4096))
                     if (s := sign_pkcs1_null(KEY, d))[0] == 0)
    assert verify_pkcs1_null(KEY.public_key(), data, sig)
    assert not verify_pkcs1_null(KEY.public_key(), data, sig[1:])
    assert not verify_pkcs1_null(KEY.public_key(), data, b"\x00" + sig)


@pytest.mark.parametrize("block", [
    b"\x00\x01" + b"\xff" * 7 + b"\x00" + bytes(226) + HASH,  # data longer than the hash
    b"\x00\x01" + b"\xff" * 232 + b"\x00" + HASH + b"\x00",  # hash not at the end
    b"\x00\x02" + b"\xff" * 233 + b"\x00" + HASH,  # block type 2 (encryption)
    b"\x00\x01" + b"\xff" * 100 + b"\xfe" + b"\xff" * 132 + b"\x00" + HASH,  # not all FF
    b"\x00\x01" + b"\xff" * 233 + b"\x01" + HASH,  # no zero separator
])
def test_lenient_padding_is_refused(block: bytes) -> None:
    """No Bleichenbacher 2006 style parse: the whole block must be EMSA-PKCS1-v1_5
    with the bare hash filling it to the end (RFC 8017 9.2 without the DigestInfo)."""
    assert len(block) == 256
    assert not verify_pkcs1_null(KEY.public_key(), HASH, _raw_sign(block))
