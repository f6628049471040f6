"""Diffie-Hellman: agreement, fixed lengths, public value validation, the RFC primes."""

from __future__ import annotations

import random

import pytest

from vpnhub.crypto import (
    SUPPORTED_GROUPS,
    CryptoError,
    EcpGroup,
    InvalidPublicValue,
    ModpGroup,
    UnsupportedAlgorithm,
    available_backends,
    dh_group,
)

MODP_GROUPS = [g for g in SUPPORTED_GROUPS if isinstance(dh_group(g), ModpGroup)]
ECP_GROUPS = [g for g in SUPPORTED_GROUPS if isinstance(dh_group(g), EcpGroup)]

# Public value length in bytes: the prime length (RFC 2409 6, RFC 3526), 2 x field (RFC 5903).
EXPECTED = {
    1: ("MODP_768", 96),
    2: ("MODP_1024", 128),
    5: ("MODP_1536", 192),
    14: ("MODP_2048", 256),
    15: ("MODP_3072", 384),
    16: ("MODP_4096", 512),
    19: ("ECP_256", 64),
    20: ("ECP_384", 96),
    21: ("ECP_521", 132),
}


def test_supported_groups_names_and_lengths() -> None:
    assert set(SUPPORTED_GROUPS) == set(EXPECTED)
    for gid, (name, length) in EXPECTED.items():
        g = dh_group(gid)
        assert (g.group_id, g.name, g.public_len) == (gid, name, length)


@pytest.mark.parametrize("gid", [0, 3, 4, 17, 18, 22, 24, 31, 65535])
def test_unsupported_group(gid: int) -> None:
    with pytest.raises(UnsupportedAlgorithm) as exc:
        dh_group(gid)
    assert isinstance(exc.value, CryptoError)
    assert exc.value.reason == "unsupported_algorithm"


# 1000 exchanges in all, weighted so pure pow() (no gmpy2) stays within a few seconds.
EXCHANGES = {19: 400, 20: 60, 21: 60, 1: 150, 2: 200, 5: 60, 14: 40, 15: 15, 16: 15}


def test_1000_random_exchanges_agree() -> None:
    assert sum(EXCHANGES.values()) == 1000
    assert set(EXCHANGES) == set(SUPPORTED_GROUPS)
    for gid, count in EXCHANGES.items():
        g = dh_group(gid)
        seen = set()
        for _ in range(count):
            a, b = g.generate(), g.generate()
            assert len(a.public) == len(b.public) == g.public_len
            zz = a.shared_secret(b.public)
            assert zz == b.shared_secret(a.public)
            # g^xy is padded to the prime length; ECP's is the x coordinate only.
            assert len(zz) == (g.public_len if isinstance(g, ModpGroup) else g.public_len // 2)
            seen.add(a.public)
        assert len(seen) == count  # fresh randomness every time


@pytest.mark.parametrize("gid", MODP_GROUPS)
def test_modp_private_exponent_size(gid: int) -> None:
    g = dh_group(gid)
    assert isinstance(g, ModpGroup)
    # RFC 3526 section 8: twice the group's strength, at least 256 bits here.
    assert g.exponent_bits >= 256
    assert g.exponent_bits >= {1: 160, 2: 160, 5: 180, 14: 220, 15: 260, 16: 300}[gid]
    assert g.exponent_bits < g.bits
    kp = g.generate()
    assert kp._x.bit_length() == g.exponent_bits


@pytest.mark.skipif("gmpy2" not in available_backends(), reason="gmpy2 not installed")
@pytest.mark.parametrize("gid", MODP_GROUPS)
def test_gmpy2_and_pow_agree(gid: int) -> None:
    fast, slow = dh_group(gid, backend="gmpy2"), dh_group(gid, backend="pow")
    x = random.getrandbits(300) | 2
    peer = dh_group(gid).generate()
    a, b = fast.from_private(x), slow.from_private(x)
    assert a.public == b.public
    assert a.shared_secret(peer.public) == b.shared_secret(peer.public)


def test_unknown_backend() -> None:
    with pytest.raises(UnsupportedAlgorithm):
        dh_group(2, backend="nope")


@pytest.mark.parametrize("gid", MODP_GROUPS)
def test_modp_outputs_left_padded(gid: int) -> None:
    g = dh_group(gid)
    kp = g.from_private(2)  # g^x = 4: three-byte-short numbers must still fill the prime length
    assert kp.public == bytes(g.public_len - 1) + b"\x04"
    peer = (4).to_bytes(g.public_len, "big")
    assert kp.shared_secret(peer) == bytes(g.public_len - 1) + b"\x10"
    assert g.from_private(kp._x.to_bytes(8, "big")).public == kp.public  # type: ignore[attr-defined]


def _invalid_modp_values(g: ModpGroup) -> list[bytes]:
    n = g.public_len
    p = g.prime
    return [
        b"",
        b"\x02",
        (2).to_bytes(n - 1, "big"),  # right value, one byte short
        (2).to_bytes(n + 1, "big"),  # one byte long
        bytes(n),  # 0
        (1).to_bytes(n, "big"),  # 1: small subgroup
        (p - 1).to_bytes(n, "big"),  # p-1: order 2
        p.to_bytes(n, "big"),  # p
        (p + 2).to_bytes(n, "big"),  # >= p
        b"\xff" * n,
    ]


@pytest.mark.parametrize("gid", MODP_GROUPS)
def test_modp_rejects_invalid_public_values(gid: int) -> None:
    g = dh_group(gid)
    assert isinstance(g, ModpGroup)
    kp = g.generate()
    for bad in _invalid_modp_values(g):
        with pytest.raises(InvalidPublicValue) as exc:
            kp.shared_secret(bad)
        assert exc.value.reason == "invalid_public_value"
    # the boundaries that are valid
    assert len(kp.shared_secret((2).to_bytes(g.public_len, "big"))) == g.public_len
    assert len(kp.shared_secret((g.prime - 2).to_bytes(g.public_len, "big"))) == g.public_len


@pytest.mark.parametrize("gid", ECP_GROUPS)
def test_ecp_rejects_invalid_public_values(gid: int) -> None:
    g = dh_group(gid)
    assert isinstance(g, EcpGroup)
    kp, other = g.generate(), g.generate()
    good = other.public
    c = g.coord_len
    x, y = good[:c], good[c:]
    y_flipped = y[:-1] + bytes([y[-1] ^ 1])
    p_bytes = b"\xff" * c  # >= the field prime for every NIST curve
    bad_values = [
        b"",
        good[:-1],
        good + b"\x00",
        b"\x04" + good,  # SEC1 prefix is not part of the IKE KE payload (RFC 5903 7)
        b"\x04" + good[:-1],  # right length, wrong encoding
        bytes(2 * c),  # the point at infinity has no affine x | y
        x + y_flipped,  # off the curve
        p_bytes + y,
        x + p_bytes,
    ]
    for bad in bad_values:
        with pytest.raises(InvalidPublicValue):
            kp.shared_secret(bad)
    assert kp.shared_secret(good) == other.shared_secret(kp.public)


def test_private_value_hidden_in_repr() -> None:
    for gid in (2, 19):
        kp = dh_group(gid).from_private(0x1234567)
        assert "1234567" not in repr(kp)
        assert str(0x1234567) not in repr(kp)
        assert "hidden" in repr(kp)


def test_modp_from_private_range() -> None:
    g = dh_group(2)
    assert isinstance(g, ModpGroup)
    for bad in (0, 1, g.prime - 1, g.prime):
        with pytest.raises(ValueError):
            g.from_private(bad)


# ---------------------------------------------------------------------------
# The primes. RFC 2409 section 6.1/6.2 and RFC 3526 define each one as
#   p = 2^n - 2^(n-64) - 1 + 2^64 * ( [2^(n-130) pi] + k )
# with these k. Recompute pi and compare: an independent check of the hex in dh.py.
# Source: RFC 2409 sections 6.1 (768: 149686), 6.2 (1024: 129093); RFC 3526 sections 2
# (1536: 741804), 3 (2048: 124476), 4 (3072: 1690314), 5 (4096: 240904).
RFC_PRIME_OFFSETS = {1: 149686, 2: 129093, 5: 741804, 14: 124476, 15: 1690314, 16: 240904}


def _arctan_inv(x: int, one: int) -> int:
    total = term = one // x
    x2, n, sign = x * x, 1, -1
    while term:
        term //= x2
        n += 2
        total += sign * (term // n)
        sign = -sign
    return total


def _floor_pi_times_2_pow(bits: int) -> int:
    guard = 64
    one = 1 << (bits + guard)
    pi = 4 * (4 * _arctan_inv(5, one) - _arctan_inv(239, one))  # Machin's formula
    return pi >> guard


@pytest.mark.parametrize("gid", sorted(RFC_PRIME_OFFSETS))
def test_primes_match_rfc_formula(gid: int) -> None:
    g = dh_group(gid)
    assert isinstance(g, ModpGroup)
    n = g.bits
    expected = (
        2**n - 2 ** (n - 64) - 1 + 2**64 * (_floor_pi_times_2_pow(n - 130) + RFC_PRIME_OFFSETS[gid])
    )
    assert g.prime == expected
    assert g.generator == 2


def _probably_prime(n: int, rounds: int = 4) -> bool:
    rng = random.Random(n)
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for _ in range(rounds):
        a = rng.randrange(2, n - 2)
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


@pytest.mark.parametrize("gid", [1, 2, 5, 14])
def test_primes_are_safe_primes(gid: int) -> None:
    g = dh_group(gid)
    assert isinstance(g, ModpGroup)
    assert _probably_prime(g.prime)
    assert _probably_prime((g.prime - 1) // 2)
