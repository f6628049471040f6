"""IKE CBC ciphers: selection by attribute, whole-block behaviour, length errors."""

from __future__ import annotations

import os

import pytest

from vpnhub.crypto import (
    AES_128,
    AES_192,
    AES_256,
    DES,
    TRIPLE_DES,
    CryptoError,
    IkeCipher,
    InvalidLength,
    UnsupportedAlgorithm,
    ike_cipher,
)


@pytest.mark.parametrize(
    ("encr", "bits", "expected"),
    [
        (7, 128, AES_128),
        (7, 192, AES_192),
        (7, 256, AES_256),
        (5, None, TRIPLE_DES),
        (5, 192, TRIPLE_DES),
    ],
)
def test_selection(encr: int, bits: int | None, expected: IkeCipher) -> None:
    assert ike_cipher(encr, bits) is expected


def test_shapes() -> None:
    assert [
        (c.name, c.block_size, c.key_len) for c in (AES_128, AES_192, AES_256, TRIPLE_DES, DES)
    ] == [
        ("AES-128", 16, 16),
        ("AES-192", 16, 24),
        ("AES-256", 16, 32),
        ("3DES", 8, 24),
        ("DES", 8, 8),
    ]


@pytest.mark.parametrize(
    ("encr", "bits"),
    [
        (7, None),
        (7, 64),
        (7, 512),
        (5, 128),
        (1, None),
        (1, 64),
        (2, None),
        (3, 128),
        (6, 128),
        (99, None),
    ],
)
def test_unsupported(encr: int, bits: int | None) -> None:
    with pytest.raises(UnsupportedAlgorithm):
        ike_cipher(encr, bits)


def test_des_only_on_request() -> None:
    assert ike_cipher(1, None, allow_des=True) is DES
    assert ike_cipher(1, 64, allow_des=True) is DES
    with pytest.raises(UnsupportedAlgorithm):
        ike_cipher(1, 128, allow_des=True)


@pytest.mark.parametrize("c", [AES_128, AES_192, AES_256, TRIPLE_DES, DES], ids=lambda c: c.name)
def test_roundtrip_and_cbc_chaining(c: IkeCipher) -> None:
    key, iv = os.urandom(c.key_len), os.urandom(c.block_size)
    plain = os.urandom(c.block_size * 5)
    ct = c.encrypt(key, iv, plain)
    assert len(ct) == len(plain) and ct != plain
    assert c.decrypt(key, iv, ct) == plain
    # CBC: the last ciphertext block is the IV of the continuation (RFC 2409 appendix B)
    first = c.encrypt(key, iv, plain[: 2 * c.block_size])
    rest = c.encrypt(key, first[-c.block_size :], plain[2 * c.block_size :])
    assert first + rest == ct
    assert c.encrypt(key, iv, b"") == b""


@pytest.mark.parametrize("c", [AES_128, TRIPLE_DES], ids=lambda c: c.name)
def test_length_errors(c: IkeCipher) -> None:
    key, iv = os.urandom(c.key_len), os.urandom(c.block_size)
    with pytest.raises(InvalidLength) as exc:
        c.decrypt(key, iv, bytes(c.block_size + 1))
    assert exc.value.reason == "bad_cipher_length"
    assert isinstance(exc.value, CryptoError)
    with pytest.raises(InvalidLength) as exc:
        c.encrypt(key, iv, b"x")
    with pytest.raises(InvalidLength) as exc:
        c.encrypt(key[:-1], iv, bytes(c.block_size))
    assert exc.value.reason == "bad_key_length"
    with pytest.raises(InvalidLength) as exc:
        c.decrypt(key, iv + b"\x00", bytes(c.block_size))
    assert exc.value.reason == "bad_iv_length"
    # key material never appears in the message
    assert key.hex() not in str(exc.value)


@pytest.mark.parametrize("c", [AES_128, AES_192, AES_256, TRIPLE_DES, DES], ids=lambda c: c.name)
def test_keyed_matches_the_one_shot_cipher(c: IkeCipher) -> None:
    """`keyed(key)` (one key schedule for an SA's messages, issue 13) gives exactly
    what encrypt/decrypt give with that key, message after message on one object."""
    key = os.urandom(c.key_len)
    k = c.keyed(key)
    for blocks in (1, 2, 7, 1, 30):
        iv, plain = os.urandom(c.block_size), os.urandom(c.block_size * blocks)
        ct = c.encrypt(key, iv, plain)
        assert k.encrypt(iv, plain) == ct
        assert k.decrypt(iv, ct) == plain == c.decrypt(key, iv, ct)
        assert k.decrypt(iv, bytes(ct)) == plain  # the ECB context kept no state
    assert k.decrypt(os.urandom(c.block_size), b"") == b""


@pytest.mark.parametrize("c", [AES_128, TRIPLE_DES], ids=lambda c: c.name)
def test_keyed_length_errors(c: IkeCipher) -> None:
    key, iv = os.urandom(c.key_len), os.urandom(c.block_size)
    with pytest.raises(InvalidLength) as exc:
        c.keyed(key[:-1])
    assert exc.value.reason == "bad_key_length"
    assert key.hex() not in str(exc.value)
    k = c.keyed(key)
    with pytest.raises(InvalidLength) as exc:
        k.decrypt(iv, bytes(c.block_size + 1))
    assert exc.value.reason == "bad_cipher_length"
    with pytest.raises(InvalidLength) as exc:
        k.encrypt(iv, b"x")
    assert exc.value.reason == "bad_cipher_length"
    with pytest.raises(InvalidLength) as exc:
        k.decrypt(iv + b"\x00", bytes(c.block_size))
    assert exc.value.reason == "bad_iv_length"


@pytest.mark.parametrize("c", [AES_128, AES_256, TRIPLE_DES], ids=lambda c: c.name)
def test_keyed_encrypt_one_cbc_context_any_iv_order(c: IkeCipher) -> None:
    """One CBC context serves every message (issue 13): whatever IV each message
    brings (the same twice, the previous message's last block as RFC 2409 appendix B
    chains phase 1, a new one), an empty message or a refused one in between, each
    ciphertext is what a fresh context with that IV gives."""
    key = os.urandom(c.key_len)
    k = c.keyed(key)
    bs = c.block_size
    iv = os.urandom(bs)
    for step in range(12):
        plain = os.urandom(bs * (1 + step % 4))
        ct = k.encrypt(iv, plain)
        assert ct == c.encrypt(key, iv, plain)
        if step == 4:
            assert k.encrypt(iv, b"") == b""
        if step == 6:
            with pytest.raises(InvalidLength):
                k.encrypt(iv, b"short")
        # next IV: the last block (phase 1's chain), the same IV again, or a fresh one
        iv = (ct[-bs:], iv, os.urandom(bs))[step % 3]
