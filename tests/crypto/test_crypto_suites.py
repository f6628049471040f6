"""Algorithm names for logs and the legacy classification."""

from __future__ import annotations

import pytest

from vpnhub.crypto import (
    auth_method_name,
    dh_group,
    dh_group_name,
    esp_auth_name,
    esp_encr_name,
    esp_key_lengths,
    esp_suite_name,
    hash_alg,
    ike_cipher,
    ike_encr_name,
    ike_hash_name,
    ike_legacy_reasons,
    ike_suite_name,
    is_legacy_esp,
    is_legacy_ike,
)
from vpnhub.crypto.dh import SUPPORTED_GROUPS
from vpnhub.crypto.prf import SUPPORTED_HASHES


@pytest.mark.parametrize(
    ("args", "name"),
    [
        ((7, 256, 2, 14), "AES-256/SHA1/MODP_2048"),
        ((7, 128, 2, 2), "AES-128/SHA1/MODP_1024"),
        ((5, None, 1, 2), "3DES/MD5/MODP_1024"),
        ((5, 192, 1, 2), "3DES/MD5/MODP_1024"),
        ((1, None, 1, 1), "DES/MD5/MODP_768"),
        ((7, 192, 4, 19), "AES-192/SHA2-256/ECP_256"),
        ((7, 256, 6, 21), "AES-256/SHA2-512/ECP_521"),
        ((42, 128, 9, 99), "ENCR_42-128/HASH_9/GROUP_99"),
    ],
)
def test_ike_suite_name(args: tuple[int, int | None, int, int], name: str) -> None:
    assert ike_suite_name(*args) == name


def test_names_agree_with_crypto_objects() -> None:
    for gid in SUPPORTED_GROUPS:
        assert dh_group_name(gid) == dh_group(gid).name
    for hid in SUPPORTED_HASHES:
        assert ike_hash_name(hid) == hash_alg(hid).name
    for bits in (128, 192, 256):
        assert ike_encr_name(7, bits) == ike_cipher(7, bits).name
    assert ike_encr_name(5, 192) == ike_cipher(5, None).name == "3DES"


@pytest.mark.parametrize(
    ("encr", "hash_", "group", "legacy"),
    [
        (7, 2, 14, False),
        (7, 4, 19, False),
        (7, 2, 2, True),
        (7, 2, 5, True),
        (7, 2, 1, True),
        (7, 1, 14, True),
        (5, 2, 14, True),
        (1, 2, 14, True),
        (5, 1, 2, True),
        (7, 6, 16, False),
    ],
)
def test_is_legacy_ike(encr: int, hash_: int, group: int, legacy: bool) -> None:
    assert is_legacy_ike(encr, hash_, group) is legacy
    assert bool(ike_legacy_reasons(encr, hash_, group)) is legacy


def test_legacy_reasons_are_plain_words() -> None:
    reasons = ike_legacy_reasons(5, 1, 2)
    assert reasons == [
        "3DES is a legacy 64-bit block cipher",
        "MD5 is a legacy hash",
        "DH group 2 (MODP_1024) is a legacy group",
    ]


def test_other_names() -> None:
    assert dh_group_name(None) == dh_group_name(0) == "none"
    assert auth_method_name(1) == "PSK"
    assert auth_method_name(65001) == "XAUTH-INIT-PSK"
    assert auth_method_name(7) == "AUTH_7"
    assert esp_encr_name(12, 128) == "AES-128"
    assert esp_encr_name(3, 192) == "3DES"
    assert esp_encr_name(20, 256) == "AES-256-GCM-16"
    assert esp_encr_name(18, 128) == "AES-128-GCM-8"
    assert esp_auth_name(2) == "HMAC-SHA1-96"
    assert esp_auth_name(None) == "none"


@pytest.mark.parametrize(
    ("args", "name", "legacy"),
    [
        ((12, 128, 2), "AES-128/HMAC-SHA1-96", False),
        ((12, 256, 5), "AES-256/HMAC-SHA2-256-128", False),
        ((3, None, 1), "3DES/HMAC-MD5-96", True),
        ((12, 128, 1), "AES-128/HMAC-MD5-96", True),
        ((20, 256, None), "AES-256-GCM-16", False),
        ((11, None, 2), "NULL/HMAC-SHA1-96", True),
        ((2, None, 2), "DES/HMAC-SHA1-96", True),
    ],
)
def test_esp_suite_name(args: tuple[int, int | None, int | None], name: str, legacy: bool) -> None:
    assert esp_suite_name(*args) == name
    assert is_legacy_esp(args[0], args[2]) is legacy


@pytest.mark.parametrize(
    ("args", "lengths"),
    [
        ((12, 128, 2), (16, 20)),
        ((12, 192, 1), (24, 16)),
        ((12, 256, 5), (32, 32)),
        ((12, 256, 7), (32, 64)),
        ((3, None, 1), (24, 16)),
        ((3, None, 2), (24, 20)),
        ((2, None, 2), (8, 20)),
        ((20, 128, None), (20, 0)),  # RFC 4106 8.1: key + 4-byte salt
        ((18, 256, 0), (36, 0)),
        ((11, None, 6), (0, 48)),
    ],
)
def test_esp_key_lengths(
    args: tuple[int, int | None, int | None], lengths: tuple[int, int]
) -> None:
    assert esp_key_lengths(*args) == lengths


@pytest.mark.parametrize("args", [(12, None, 2), (12, 100, 2), (99, 128, 2), (12, 128, 99)])
def test_esp_key_lengths_errors(args: tuple[int, int | None, int | None]) -> None:
    with pytest.raises(ValueError):
        esp_key_lengths(*args)
