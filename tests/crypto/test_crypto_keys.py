"""Key derivation shapes and formulas (RFC 2409 5, 5.5, 5.7, appendix B; RFC 3947 3.2).

The formulas are re-derived here with the standard library's hmac/hashlib, a
second implementation independent of `cryptography`, to catch wiring mistakes
(argument order, octet constants, message-ID encoding).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os

import pytest

from vpnhub.crypto import (
    AES_128,
    AES_256,
    MD5,
    SHA1,
    SHA2_256,
    SHA2_512,
    SUPPORTED_HASHES,
    TRIPLE_DES,
    HashAlg,
    IkeCipher,
    Phase1Keys,
    UnsupportedAlgorithm,
    derive_phase1,
    derive_skeyids,
    dh_group,
    expand_key,
    hash_alg,
    hash_i,
    hash_r,
    hashes_equal,
    info_hash,
    keymat,
    natd_hash,
    phase1_iv,
    phase2_iv,
    qm_hash1,
    qm_hash2,
    qm_hash3,
    skeyid_psk,
    skeyid_sig,
)

ALL_HASHES = [hash_alg(i) for i in SUPPORTED_HASHES]
_STDLIB = {
    "MD5": "md5",
    "SHA1": "sha1",
    "SHA2-256": "sha256",
    "SHA2-384": "sha384",
    "SHA2-512": "sha512",
}


def ref_prf(h: HashAlg, key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, _STDLIB[h.name]).digest()


def ref_hash(h: HashAlg, data: bytes) -> bytes:
    return hashlib.new(_STDLIB[h.name], data).digest()


def test_hash_alg_table() -> None:
    assert SUPPORTED_HASHES == (1, 2, 4, 5, 6)
    assert [(h.name, h.ike_id, h.digest_size) for h in ALL_HASHES] == [
        ("MD5", 1, 16),
        ("SHA1", 2, 20),
        ("SHA2-256", 4, 32),
        ("SHA2-384", 5, 48),
        ("SHA2-512", 6, 64),
    ]
    for h in ALL_HASHES:
        assert h.hash(b"abc") == ref_hash(h, b"abc")
        assert h.prf(b"", b"abc") == ref_prf(h, b"", b"abc")  # empty key allowed
        assert h.prf(b"k" * 200, b"abc") == ref_prf(h, b"k" * 200, b"abc")  # key > block
    for bad in (0, 3, 7, 65001):
        with pytest.raises(UnsupportedAlgorithm):
            hash_alg(bad)


@pytest.mark.parametrize("h", ALL_HASHES, ids=lambda h: h.name)
@pytest.mark.parametrize("length", [0, 1, 8, 16, 20, 24, 32, 33, 48, 64, 65, 100, 256])
def test_expand_key_lengths(h: HashAlg, length: int) -> None:
    skeyid_e = os.urandom(h.digest_size)
    key = expand_key(h, skeyid_e, length)
    assert len(key) == length
    if length <= h.digest_size:
        assert key == skeyid_e[:length]
    else:
        # RFC 2409 appendix B: K1 = prf(SKEYID_e, 0), K2 = prf(SKEYID_e, K1), ...
        k = ref_prf(h, skeyid_e, b"\x00")
        ref = k
        while len(ref) < length:
            k = ref_prf(h, skeyid_e, k)
            ref += k
        assert key == ref[:length]
        # a longer key extends a shorter one
        assert expand_key(h, skeyid_e, length + 7)[:length] == key


def test_expand_key_cases_that_matter() -> None:
    # 3DES (24 bytes) with SHA1 (20) and AES-256 with SHA1 or MD5 need expansion;
    # AES-128 with MD5 (16) and anything with SHA2-256+ for <= 32 bytes do not.
    e = bytes(range(20))
    k1 = ref_prf(SHA1, e, b"\0")
    assert expand_key(SHA1, e, 24) == k1 + ref_prf(SHA1, e, k1)[:4]
    assert expand_key(SHA1, e, 24)[:20] != e  # expansion does not start with SKEYID_e
    e16 = bytes(range(16))
    assert expand_key(MD5, e16, 16) == e16
    with pytest.raises(ValueError):
        expand_key(SHA1, e, -1)


@pytest.mark.parametrize("h", ALL_HASHES, ids=lambda h: h.name)
@pytest.mark.parametrize("cipher", [AES_128, AES_256, TRIPLE_DES], ids=lambda c: c.name)
def test_derive_phase1(h: HashAlg, cipher: IkeCipher) -> None:
    ni, nr = os.urandom(20), os.urandom(16)
    cky_i, cky_r = os.urandom(8), os.urandom(8)
    group = dh_group(2)
    a, b = group.generate(), group.generate()
    g_xy = a.shared_secret(b.public)
    psk = b"secret"
    skeyid = skeyid_psk(h, psk, ni, nr)
    assert skeyid == ref_prf(h, psk, ni + nr)
    keys = derive_phase1(h, cipher, skeyid, g_xy, cky_i, cky_r, a.public, b.public)
    d = ref_prf(h, skeyid, g_xy + cky_i + cky_r + b"\x00")
    a_ = ref_prf(h, skeyid, d + g_xy + cky_i + cky_r + b"\x01")
    e = ref_prf(h, skeyid, a_ + g_xy + cky_i + cky_r + b"\x02")
    assert (keys.skeyid, keys.skeyid_d, keys.skeyid_a, keys.skeyid_e) == (skeyid, d, a_, e)
    assert derive_skeyids(h, skeyid, g_xy, cky_i, cky_r) == (d, a_, e)
    assert len(keys.enc_key) == cipher.key_len
    assert keys.enc_key == expand_key(h, e, cipher.key_len)
    assert keys.iv == ref_hash(h, a.public + b.public)[: cipher.block_size]
    assert keys.iv == phase1_iv(h, a.public, b.public, cipher.block_size)
    assert len(keys.iv) == cipher.block_size
    # the encryption key works with the cipher
    assert len(cipher.encrypt(keys.enc_key, keys.iv, bytes(cipher.block_size * 3))) == 3 * (
        cipher.block_size
    )


def test_phase1_keys_repr_hides_secrets() -> None:
    secret = bytes.fromhex("deadbeefcafebabe")
    keys = Phase1Keys(secret, secret, secret, secret, secret, secret)
    text = repr(keys)
    assert "dead" not in text and "xde" not in text
    assert "skeyid" not in text or "=" not in text


def test_skeyid_sig() -> None:
    ni, nr, gxy = b"n" * 16, b"r" * 16, b"g" * 128
    assert skeyid_sig(SHA1, ni, nr, gxy) == ref_prf(SHA1, ni + nr, gxy)


@pytest.mark.parametrize("h", ALL_HASHES, ids=lambda h: h.name)
def test_hash_i_and_hash_r(h: HashAlg) -> None:
    skeyid = os.urandom(h.digest_size)
    gxi, gxr, ci, cr = b"I" * 128, b"R" * 128, b"c" * 8, b"d" * 8
    sai, idii, idir = (
        b"sa-body",
        b"\x01\x00\x00\x00\x0a\x00\x00\x01",
        b"\x01\x00\x00\x00\x0a\x00\x00\x02",
    )
    hi = hash_i(h, skeyid, gxi, gxr, ci, cr, sai, idii)
    hr = hash_r(h, skeyid, gxi, gxr, ci, cr, sai, idir)
    assert hi == ref_prf(h, skeyid, gxi + gxr + ci + cr + sai + idii)
    assert hr == ref_prf(h, skeyid, gxr + gxi + cr + ci + sai + idir)
    assert len(hi) == len(hr) == h.digest_size
    assert hashes_equal(hi, bytes(hi))
    assert not hashes_equal(hi, hr)


@pytest.mark.parametrize("h", ALL_HASHES, ids=lambda h: h.name)
@pytest.mark.parametrize("block_size", [8, 16])
@pytest.mark.parametrize("message_id", [0, 1, 0x12345678, 0xFFFFFFFF])
def test_phase2_iv(h: HashAlg, block_size: int, message_id: int) -> None:
    last = os.urandom(block_size)
    iv = phase2_iv(h, last, message_id, block_size)
    assert len(iv) == block_size
    assert iv == ref_hash(h, last + message_id.to_bytes(4, "big"))[:block_size]
    other = phase2_iv(h, last, (message_id + 1) & 0xFFFFFFFF, block_size)
    assert other != iv


def test_phase2_iv_rejects_oversized_message_id() -> None:
    with pytest.raises(OverflowError):
        phase2_iv(SHA1, bytes(16), 1 << 32, 16)


@pytest.mark.parametrize("h", [MD5, SHA1, SHA2_256], ids=lambda h: h.name)
def test_quick_mode_and_info_hashes(h: HashAlg) -> None:
    ska = os.urandom(h.digest_size)
    mid = 0xA1B2C3D4
    mid_b = bytes.fromhex("a1b2c3d4")
    ni_b, nr_b = os.urandom(16), os.urandom(20)
    rest = b"SA..Ni..IDci..IDcr"
    assert qm_hash1(h, ska, mid, rest) == ref_prf(h, ska, mid_b + rest)
    assert qm_hash2(h, ska, mid, ni_b, rest) == ref_prf(h, ska, mid_b + ni_b + rest)
    assert qm_hash3(h, ska, mid, ni_b, nr_b) == ref_prf(h, ska, b"\x00" + mid_b + ni_b + nr_b)
    assert info_hash(h, ska, mid, rest) == ref_prf(h, ska, mid_b + rest)
    for value in (
        qm_hash1(h, ska, mid, rest),
        qm_hash2(h, ska, mid, ni_b, rest),
        qm_hash3(h, ska, mid, ni_b, nr_b),
    ):
        assert len(value) == h.digest_size


@pytest.mark.parametrize("h", ALL_HASHES, ids=lambda h: h.name)
@pytest.mark.parametrize("pfs", [False, True])
@pytest.mark.parametrize("length", [0, 16, 20, 36, 40, 52, 64, 96, 128])
def test_keymat_shapes_and_expansion(h: HashAlg, pfs: bool, length: int) -> None:
    skd = os.urandom(h.digest_size)
    spi = bytes.fromhex("c0ffee01")
    ni_b, nr_b = os.urandom(16), os.urandom(16)
    g_qm = os.urandom(128) if pfs else None
    km = keymat(h, skd, 3, spi, ni_b, nr_b, length, g_qm)
    assert len(km) == length
    seed = (g_qm or b"") + b"\x03" + spi + ni_b + nr_b
    k = ref_prf(h, skd, seed)
    ref = k
    while len(ref) < length:
        k = ref_prf(h, skd, k + seed)
        ref += k
    assert km == ref[:length]


def test_keymat_depends_on_every_input() -> None:
    args = dict(h=SHA1, skeyid_d=b"d" * 20, protocol=3, spi=b"\x00\x00\x10\x01", ni_b=b"i" * 16)
    base = keymat(**args, nr_b=b"r" * 16, length=36)  # type: ignore[arg-type]
    variants = [
        keymat(SHA1, b"D" * 20, 3, b"\x00\x00\x10\x01", b"i" * 16, b"r" * 16, 36),
        keymat(SHA1, b"d" * 20, 2, b"\x00\x00\x10\x01", b"i" * 16, b"r" * 16, 36),
        keymat(SHA1, b"d" * 20, 3, b"\x00\x00\x10\x02", b"i" * 16, b"r" * 16, 36),
        keymat(SHA1, b"d" * 20, 3, b"\x00\x00\x10\x01", b"r" * 16, b"i" * 16, 36),
        keymat(SHA1, b"d" * 20, 3, b"\x00\x00\x10\x01", b"i" * 16, b"r" * 16, 36, b"g" * 128),
        keymat(SHA2_512, b"d" * 20, 3, b"\x00\x00\x10\x01", b"i" * 16, b"r" * 16, 36),
    ]
    assert len({base, *variants}) == len(variants) + 1
    # the two directions of one Quick Mode differ only by SPI
    assert keymat(SHA1, b"d" * 20, 3, b"\x00\x00\x10\x01", b"i" * 16, b"r" * 16, 20) == base[:20]


@pytest.mark.parametrize("h", ALL_HASHES, ids=lambda h: h.name)
def test_natd_hash(h: HashAlg) -> None:
    ci, cr = bytes.fromhex("0011223344556677"), bytes.fromhex("8899aabbccddeeff")
    expect = ref_hash(h, ci + cr + bytes([203, 0, 113, 5]) + (4500).to_bytes(2, "big"))
    assert natd_hash(h, ci, cr, bytes([203, 0, 113, 5]), 4500) == expect
    assert natd_hash(h, ci, cr, "203.0.113.5", 4500) == expect
    assert natd_hash(h, ci, cr, ipaddress.ip_address("203.0.113.5"), 4500) == expect
    assert len(expect) == h.digest_size
    v6 = ipaddress.ip_address("2001:db8::1")
    assert natd_hash(h, ci, cr, v6, 500) == ref_hash(h, ci + cr + v6.packed + b"\x01\xf4")
    # RFC 3947: a changed port (what a PAT does) changes the hash
    assert natd_hash(h, ci, cr, "203.0.113.5", 1025) != expect
    with pytest.raises(ValueError):
        natd_hash(h, ci, cr, b"\x01\x02\x03", 500)
    with pytest.raises(OverflowError):
        natd_hash(h, ci, cr, "10.0.0.1", 70000)


@pytest.mark.parametrize("h", ALL_HASHES, ids=lambda h: h.name)
@pytest.mark.parametrize("key_len", [0, 1, 20, 64, 65, 128, 129, 300])
def test_keyed_prf_is_the_prf(h: HashAlg, key_len: int) -> None:
    """One key made ready for many calls (an SA's SKEYID_a) gives HMAC's output for
    every message, whatever the key's length against the hash's block (RFC 2104 2)."""
    key = os.urandom(key_len)
    keyed = h.keyed(key)
    for data in (b"", b"a", os.urandom(100), os.urandom(1000), b"a"):  # repeated: no state kept
        assert keyed(data) == h.prf(key, data) == ref_prf(h, key, data)
    if key_len >= 16:  # a secret: its repr does not show it
        assert key.hex() not in repr(keyed)


@pytest.mark.parametrize("h", ALL_HASHES, ids=lambda h: h.name)
def test_exchange_hashes_take_a_keyed_prf(h: HashAlg) -> None:
    """The HASHes and keys under SKEYID, SKEYID_a and SKEYID_d come out the same from
    the key's bytes and from the key made ready (`HashAlg.keyed`)."""
    skeyid, ska, skd = os.urandom(h.digest_size), os.urandom(h.digest_size), os.urandom(20)
    ni, nr, g, rest = os.urandom(16), os.urandom(16), os.urandom(128), os.urandom(60)
    ci, cr, spi = os.urandom(8), os.urandom(8), bytes.fromhex("c0ffee01")
    for k_id, k_a, k_d in ((skeyid, ska, skd), (h.keyed(skeyid), h.keyed(ska), h.keyed(skd))):
        assert derive_skeyids(h, k_id, g, ci, cr) == (
            ref_prf(h, skeyid, g + ci + cr + b"\x00"),
            ref_prf(h, skeyid, ref_prf(h, skeyid, g + ci + cr + b"\x00") + g + ci + cr + b"\x01"),
            derive_skeyids(h, skeyid, g, ci, cr)[2])
        assert hash_i(h, k_id, g, g[::-1], ci, cr, rest, ni) == hash_i(
            h, skeyid, g, g[::-1], ci, cr, rest, ni)
        assert hash_r(h, k_id, g, g[::-1], ci, cr, rest, nr) == ref_prf(
            h, skeyid, g[::-1] + g + cr + ci + rest + nr)
        mid = (0x1234ABCD).to_bytes(4, "big")
        assert qm_hash1(h, k_a, 0x1234ABCD, rest) == ref_prf(h, ska, mid + rest)
        assert qm_hash2(h, k_a, 0x1234ABCD, ni, rest) == ref_prf(h, ska, mid + ni + rest)
        assert qm_hash3(h, k_a, 0x1234ABCD, ni, nr) == ref_prf(h, ska, b"\x00" + mid + ni + nr)
        assert info_hash(h, k_a, 0x1234ABCD, rest) == ref_prf(h, ska, mid + rest)
        assert keymat(h, k_d, 3, spi, ni, nr, 100, g) == keymat(h, skd, 3, spi, ni, nr, 100, g)
