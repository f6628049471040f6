"""Suites and KEYMAT lengths (RFC 2407, RFC 3602, RFC 4106, RFC 4868, RFC 2451)."""

from __future__ import annotations

import pytest

from vpnhub.esp import (
    ESP_3DES,
    ESP_AES_CBC,
    ESP_AES_GCM_16,
    ESP_NULL,
    HMAC_MD5_96,
    HMAC_SHA1_96,
    HMAC_SHA2_256_128,
    HMAC_SHA2_384_192,
    HMAC_SHA2_512_256,
    UnsupportedSuite,
    get_suite,
    key_lengths,
)


@pytest.mark.parametrize(
    ("transform", "bits", "auth", "expected"),
    [
        (ESP_AES_CBC, 128, HMAC_SHA1_96, (16, 20)),
        (ESP_AES_CBC, 192, HMAC_MD5_96, (24, 16)),
        (ESP_AES_CBC, 256, HMAC_SHA2_256_128, (32, 32)),
        (ESP_AES_CBC, 256, HMAC_SHA2_384_192, (32, 48)),
        (ESP_AES_CBC, 256, HMAC_SHA2_512_256, (32, 64)),
        (ESP_3DES, None, HMAC_MD5_96, (24, 16)),
        (ESP_3DES, 192, HMAC_SHA1_96, (24, 20)),
        (ESP_3DES, 0, HMAC_SHA1_96, (24, 20)),  # IKE engine: 0 = fixed key size
        (ESP_NULL, 0, HMAC_MD5_96, (0, 16)),
        (ESP_AES_GCM_16, 128, None, (20, 0)),  # key + 4-byte salt (RFC 4106 8.1)
        (ESP_AES_GCM_16, 256, 0, (36, 0)),
        (ESP_NULL, None, HMAC_SHA1_96, (0, 20)),
    ],
)
def test_key_lengths(transform: int, bits: int | None, auth: int | None,
                     expected: tuple[int, int]) -> None:
    assert key_lengths(transform, bits, auth) == expected


@pytest.mark.parametrize(
    ("auth", "icv"),
    [(HMAC_MD5_96, 12), (HMAC_SHA1_96, 12), (HMAC_SHA2_256_128, 16),
     (HMAC_SHA2_384_192, 24), (HMAC_SHA2_512_256, 32)],
)
def test_icv_truncation(auth: int, icv: int) -> None:
    assert get_suite(ESP_AES_CBC, 128, auth).icv_len == icv


@pytest.mark.parametrize(
    ("transform", "bits", "auth"),
    [
        (ESP_AES_CBC, None, HMAC_SHA1_96),  # AES needs a key length (RFC 3602 5.3)
        (ESP_AES_CBC, 64, HMAC_SHA1_96),
        (ESP_AES_CBC, 0, HMAC_SHA1_96),
        (ESP_AES_GCM_16, 128, HMAC_SHA1_96),  # combined mode + HMAC
        (ESP_AES_GCM_16, None, None),
        (ESP_NULL, None, None),  # neither confidentiality nor integrity
        (ESP_AES_CBC, 128, None),  # no integrity unless explicitly allowed
        (ESP_AES_CBC, 128, 3),  # DES-MAC
        (2, None, HMAC_SHA1_96),  # single DES
        (ESP_3DES, 128, HMAC_SHA1_96),
    ],
)
def test_refused(transform: int, bits: int | None, auth: int | None) -> None:
    with pytest.raises(UnsupportedSuite):
        get_suite(transform, bits, auth)


def test_no_integrity_only_when_allowed() -> None:
    suite = get_suite(ESP_AES_CBC, 128, None, allow_no_integrity=True)
    assert suite.icv_len == 0
    assert suite.name == "AES-128-CBC"


def test_names_and_overhead() -> None:
    suite = get_suite(ESP_AES_CBC, 128, HMAC_SHA1_96)
    assert suite.name == "AES-128-CBC/HMAC-SHA1-96"
    # 8 header + 16 IV + 1400 + 2 -> padded to 1408 + 12 ICV
    assert suite.overhead(1400) == 8 + 16 + 8 + 12
    gcm = get_suite(ESP_AES_GCM_16, 256, None)
    assert gcm.overhead(1400) == 8 + 8 + 4 + 16
