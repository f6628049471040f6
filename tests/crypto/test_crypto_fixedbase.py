"""The fixed-base comb behind a MODP group's own g^x: the same values as pow(), always."""

from __future__ import annotations

import random

import pytest

from vpnhub.crypto import SUPPORTED_GROUPS, ModpGroup, available_backends, dh_group
from vpnhub.crypto.fixedbase import MAX_TABLES, ROWS, TABLE_BYTES, FixedBaseComb, tables_for

MODP_GROUPS = [g for g in SUPPORTED_GROUPS if isinstance(dh_group(g), ModpGroup)]
BACKENDS = available_backends()
# Random exponents per group and backend; pure pow() as the reference costs up to
# ~15 ms per exponent for group 16, so fewer with the "pow" backend.
RANDOM_EXPONENTS = {"gmpy2": 100, "pow": 20}


def _modp(gid: int, backend: str) -> ModpGroup:
    group = dh_group(gid, backend=backend)
    assert isinstance(group, ModpGroup)
    return group


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("gid", MODP_GROUPS)
def test_random_full_length_exponents_match_pow(gid: int, backend: str) -> None:
    """generate()'s exponents: top bit set, exactly exponent_bits long."""
    group = _modp(gid, backend)
    rng = random.Random(gid * 1000 + len(backend))
    bits = group.exponent_bits
    for _ in range(RANDOM_EXPONENTS[backend]):
        x = rng.getrandbits(bits) | (1 << (bits - 1))
        assert x.bit_length() == bits
        expected = pow(2, x, group.prime)
        assert group.generator_power(x) == expected
        assert group.from_private(x).public == expected.to_bytes(group.public_len, "big")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("gid", MODP_GROUPS)
def test_edge_exponents_match_pow(gid: int, backend: str) -> None:
    """Sparse and dense exponents, one bit in each column and row, the largest the
    table takes, and longer ones (a test vector's private value: powmod instead)."""
    group = _modp(gid, backend)
    bits = group.exponent_bits
    span = -(-bits // ROWS) * ROWS  # what the comb covers: exponent_bits rounded up to rows
    exponents = [2, 3, (1 << bits) - 1, 1 << (bits - 1), (1 << span) - 1, 1 << (span - 1),
                 (1 << span) + 1, group.prime - 2, int("10" * (bits // 2), 2)]
    exponents += [1 << n for n in range(0, span, 7)]
    for x in exponents:
        assert group.generator_power(x) == pow(2, x, group.prime), hex(x)


@pytest.mark.skipif("gmpy2" not in BACKENDS, reason="gmpy2 not installed")
@pytest.mark.parametrize("gid", MODP_GROUPS)
def test_backends_give_the_same_key_pairs(gid: int) -> None:
    fast, slow = _modp(gid, "gmpy2"), _modp(gid, "pow")
    x = random.Random(gid).getrandbits(fast.exponent_bits) | (1 << (fast.exponent_bits - 1))
    assert fast.from_private(x).public == slow.from_private(x).public


@pytest.mark.parametrize("backend", BACKENDS)
def test_generate_takes_no_powmod(backend: str) -> None:
    """Our own g^x comes from the table; only the peer's y^x is a powmod."""
    group = _modp(14, backend).with_backend(backend)  # a private object: powmod is replaced
    real = group.powmod
    calls = []

    def counting(base: int, exp: int, mod: int) -> int:
        calls.append(base)
        return real(base, exp, mod)

    group.powmod = counting
    ours, peer = group.generate(), group.generate()
    assert calls == []
    secret = ours.shared_secret(peer.public)
    assert len(calls) == 1
    assert secret == peer.shared_secret(ours.public)


@pytest.mark.parametrize("gid", MODP_GROUPS)
def test_table_size_is_bounded(gid: int) -> None:
    """A few hundred KiB of values at most per group and backend (docstring figures)."""
    group = _modp(gid, BACKENDS[0])
    comb = FixedBaseComb(2, group.prime, group.exponent_bits)
    assert comb.table_values * group.public_len <= TABLE_BYTES
    assert comb.table_values == tables_for(group.public_len) << ROWS
    assert comb.exponent_bits >= group.exponent_bits
    if gid == 14:
        assert comb.table_values == MAX_TABLES << ROWS  # 1024 values, 256 KiB


@pytest.mark.parametrize("tables", [1, 2, 3, 5, 64])
def test_comb_shapes_against_pow(tables: int) -> None:
    """Any number of tables, exponent sizes that are not multiples of 8 or of the
    tables, a modulus that is not a MODP prime."""
    rng = random.Random(tables)
    p = (1 << 127) - 1
    for bits in (1, 7, 8, 9, 23, 64, 65, 127, 200):
        comb = FixedBaseComb(3, p, bits, int, tables)
        for _ in range(20):
            x = rng.getrandbits(bits)
            assert comb.power(x) == pow(3, x, p)
        assert comb.power(0) == 1
        assert comb.power((1 << comb.exponent_bits) - 1) == pow(3, (1 << comb.exponent_bits) - 1, p)
        with pytest.raises(ValueError):
            comb.power(1 << comb.exponent_bits)
        with pytest.raises(ValueError):
            comb.power(-1)


def test_comb_rejects_bad_parameters() -> None:
    for base, modulus, bits in ((1, 23, 8), (23, 23, 8), (2, 23, 0)):
        with pytest.raises(ValueError):
            FixedBaseComb(base, modulus, bits)
