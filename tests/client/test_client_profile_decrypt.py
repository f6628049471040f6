"""The Cisco VPN Client's enc_GroupPwd obfuscation, checked against public values."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from hypothesis import given
from hypothesis import strategies as st

from vpnhub.client.cisco_decrypt import CiscoDecodeError, decode_password, encode_password

# University of Tromsø student profile, quoted in the Ubuntu Forums thread
# "vpnc INVALID_PAYLOAD_TYPE" (user flyingman, 2005-11-04): its enc_GroupPwd,
# next to the working vpnc.conf of the same post ("IPSec secret student.uit.no").
UIT_ENC = (
    "F992230153F51928672DF6C7B9C61EF8437252CFBE28C1101EF1A119D077E93C"
    "CCEEE4FE72E8A2DF5EC384E005F77577CCA7CCCA231FE9D8"
)
UIT_CLEAR = b"student.uit.no"

# GabLeRoux/cisco-password-decoder-cli, test/test.js (commit 11be1cf9):
# decrypt_password(...) == "HelloWorld". This one encrypts the C string's NUL too.
HELLO_ENC = (
    "A39CADD77ED72A9C75467D0F5A5C88BFCD75370DD63E3388D3F402AF50C4E502"
    "9071B0965C343B99B6D6636A8698562DDB2EE51020D87EA3"
)
HELLO_CLEAR = b"HelloWorld"

# demosdemon/pcf_decrypt, tests/test_cisco_decrypt.py (commit 4c63de2b),
# test_decrypt: plaintext 'Sh@r3dK3ySP*&%$'.
SHARED_ENC = (
    "D06615FC4D2046942A6F39951FC40794740E30C485090B4416C9D5A65DE59E52"
    "30A63D391F2A634820B574A37E16DB23820C89CD29DA2245"
)
SHARED_CLEAR = b"Sh@r3dK3ySP*&%$"

VECTORS = [
    pytest.param(UIT_ENC, UIT_CLEAR, False, id="uit-forum-post"),
    pytest.param(HELLO_ENC, HELLO_CLEAR, True, id="cisco-password-decoder-cli"),
    pytest.param(SHARED_ENC, SHARED_CLEAR, False, id="pcf_decrypt"),
]


@pytest.mark.parametrize(("enc", "clear", "with_nul"), VECTORS)
def test_public_values_decode(enc: str, clear: bytes, with_nul: bool) -> None:
    assert decode_password(enc) == clear
    assert decode_password(enc.lower()) == clear  # vpnc's hex2bin takes either case


@pytest.mark.parametrize(("enc", "clear", "with_nul"), VECTORS)
def test_encoder_reproduces_public_values(enc: str, clear: bytes, with_nul: bool) -> None:
    # Same H1 (the first 20 bytes) -> the very same value: the padding the Cisco
    # client uses (n bytes of value n) and the key derivation are both right.
    salt = bytes.fromhex(enc[:40])
    assert encode_password(clear, salt=salt, nul_terminate=with_nul) == enc


@given(st.binary(max_size=80).filter(lambda b: b"\0" not in b), st.booleans())
def test_round_trip(password: bytes, with_nul: bool) -> None:
    assert decode_password(encode_password(password, nul_terminate=with_nul)) == password


def test_str_password_is_utf8_and_salt_is_random() -> None:
    a, b = encode_password("pässword"), encode_password("pässword")
    assert a != b
    assert decode_password(a) == decode_password(b) == "pässword".encode()


def _forge(plain: bytes, salt: bytes = bytes(range(20))) -> str:
    """A value with a good checksum around an arbitrary (unpadded) plaintext."""
    ht = bytearray(salt)
    ht[19] += 1
    h2 = hashlib.sha1(ht).digest()
    ht[19] += 2
    key = h2 + hashlib.sha1(ht).digest()[:4]
    enc = Cipher(TripleDES(key), modes.CBC(salt[:8])).encryptor()
    ciphertext = enc.update(plain) + enc.finalize()
    return (salt + hashlib.sha1(ciphertext).digest() + ciphertext).hex()


def test_forge_helper_matches_encoder() -> None:
    assert _forge(b"abc" + b"\5" * 5).upper() == encode_password("abc", salt=bytes(range(20)))


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param("", "too short", id="empty"),
        pytest.param(UIT_ENC[:94], "too short", id="47-bytes"),
        pytest.param(UIT_ENC + "0", "odd number", id="odd-digits"),
        pytest.param(UIT_ENC[:-2] + "ZZ", "not a hex string", id="not-hex"),
        pytest.param(UIT_ENC[:50] + " " + UIT_ENC[50:], "not a hex string", id="inner-space"),
        pytest.param(UIT_ENC[:-1] + "9", "checksum mismatch", id="last-digit-changed"),
        pytest.param(UIT_ENC[:60] + "00" + UIT_ENC[62:], "checksum mismatch", id="h4-changed"),
        pytest.param(UIT_ENC + "00", "checksum mismatch", id="extra-byte"),
        pytest.param(_forge(b"password" + b"\0" * 8), "bad padding", id="pad-0"),
        pytest.param(_forge(b"password" + b"\x09" * 8), "bad padding", id="pad-9"),
    ],
)
def test_undecodable_values(value: str, reason: str) -> None:
    with pytest.raises(CiscoDecodeError, match=reason) as info:
        decode_password(value)
    assert value.strip() == "" or value[:40] not in str(info.value)  # never echoes the value


def test_changed_salt_passes_the_checksum_but_not_the_padding() -> None:
    # H1 is outside the SHA-1 checksum: another H1 is another key and IV, so the
    # plaintext is garbage, caught here by its padding byte.
    for changed in ("00" + UIT_ENC[2:], UIT_ENC[:38] + "00" + UIT_ENC[40:]):
        with pytest.raises(CiscoDecodeError, match="bad padding"):
            decode_password(changed)


def test_encoder_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="NUL"):
        encode_password(b"a\0b")
    with pytest.raises(ValueError, match="20 bytes"):
        encode_password("x", salt=b"short")
