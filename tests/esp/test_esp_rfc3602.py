"""RFC 3602 section 4 test cases 5-8: complete ESP packets, AES-128-CBC, no ICV.

The packets are the "ESP packet" / "Plaintext" columns of the RFC (cases 5
and 6 are ICMP in transport mode, next header 1; cases 7 and 8 are tunnel
mode, next header 4).  The RFC uses no integrity algorithm, hence
``allow_no_integrity``.  Encapsulation is checked byte for byte by feeding
the SA a "random" block chosen so that its CBC encryption is the RFC's IV.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from vpnhub.esp import ESP_AES_CBC, EspSA, IvPool

KEY_56 = bytes.fromhex("90d382b410eeba7ad938c46cec1a82bf")
KEY_78 = bytes.fromhex("0123456789abcdef0123456789abcdef")

CASES = {
    # case: (key, spi, seq, next header, ESP packet, plaintext)
    5: (KEY_56, 0x4321, 1, 1,
        "0000432100000001e96e8c08ab465763fd098d45dd3ff893f663c25d325c18c6"
        "a9453e194e120849a4870b66cc6b9965330013b4898dc856a4699e523a55db08"
        "0b59ec3a8e4b7e52775b07d1db34ed9c538ab50c551b874aa269add047ad2d59"
        "13ac19b7cfbad4a6",
        "08000ebda70a00008e9c083db95b070008090a0b0c0d0e0f1011121314151617"
        "18191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637"),
    6: (KEY_56, 0x4321, 8, 1,
        "000043210000000869d08df7d203329db093fc4924e5bd80f51995881ec4e0c4"
        "488987ce742e8109689bb379d2d750c0d915dca346a89f75",
        "0800b5e8a80a0500a69c083d0b660e00777777777777777777777777"),
    7: (KEY_78, 0x8765, 2, 4,
        "0000876500000002f4e765244f6407adf13dc1380f673f37773b5241a4c44922"
        "5e4f3ce5ed611b0c237ca96cf74a93013c1b0ea1a0cf70f8e4ecaec78ac53aad"
        "7a0f022b859243c647752e94a859352b8a4d4d2decd136e5c177f132ad3fbfb2"
        "201ac9904c74ee0a109e0ca1e4dfe9d5a100b842f1c22f0d",
        "45000054090400004001f988c0a87b03c0a87bc808009f76a90a0100b49c083d"
        "02a2040008090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20212223"
        "2425262728292a2b2c2d2e2f3031323334353637"),
    8: (KEY_78, 0x8765, 5, 4,
        "000087650000000585d47224b5f3dd5d2101d4ea8dffab2215b92683819596a8"
        "047232cc00f7048fe45318e11f8a0f62ede3c3fc61203bb50f980a08c9843fd3"
        "a1b06d5c07ff9639b7eb7dfb3512e5de435e7207ed971ef3d2726d9b5ef6affc"
        "6d17a0decbb13892",
        "45000044090c00004001f990c0a87b03c0a87bc80800d63caa0a0200c69c083d"
        "a3de0300ffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
        "ffffffff"),
}


class _FixedBlock(IvPool):
    """Serves one chosen block instead of random bytes."""

    def __init__(self, block: bytes) -> None:
        self.block = block

    def take(self, n: int) -> bytes:
        assert n == len(self.block)
        return self.block


def _sa(key: bytes, spi: int, pool: IvPool | None = None) -> EspSA:
    return EspSA(spi, ESP_AES_CBC, 128, None, key, b"", allow_no_integrity=True,
                 next_headers=(1, 4), iv_pool=pool)


@pytest.mark.parametrize("case", sorted(CASES))
def test_decapsulate(case: int) -> None:
    key, spi, _seq, nh, packet, plain = CASES[case]
    inner, next_header = _sa(key, spi).decapsulate(bytes.fromhex(packet))
    assert inner == bytes.fromhex(plain)
    assert next_header == nh


@pytest.mark.parametrize("case", sorted(CASES))
def test_encapsulate(case: int) -> None:
    key, spi, seq, nh, packet, plain = CASES[case]
    esp = bytes.fromhex(packet)
    iv = esp[8:24]
    # A fresh SA chains from a zero block, so E(R) must equal the IV: R = D(IV).
    decrypt = Cipher(algorithms.AES(key), modes.ECB()).decryptor()
    sa = _sa(key, spi, _FixedBlock(decrypt.update(iv)))
    sa.seq = seq - 1
    assert sa.encapsulate(bytes.fromhex(plain), nh) == esp
