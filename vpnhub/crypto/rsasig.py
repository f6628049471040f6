"""IKEv1 RSA signatures: PKCS#1 v1.5 padding over the bare hash, no DigestInfo.

RFC 2409 5.1 says SIG_I/SIG_R are the signature of HASH_I/HASH_R with the
negotiated algorithm; for RSA every IKEv1 implementation (strongSwan's
SIGN_RSA_EMSA_PKCS1_NULL, vpnc's crypto_decrypt_signature, Cisco) puts the
prf output itself in an EMSA-PKCS1-v1_5 block type 1 (RFC 8017 9.2 without
step 2, the DigestInfo). `cryptography` verifies such a signature with
`recover_data_from_signature(..., algorithm=None)` but has no signing call
for it, so signing is the RSA primitive (RFC 8017 5.2.1) with blinding.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from vpnhub.crypto.dh import powmod_backend

# RFC 8017 9.2 step 3: at least 8 bytes of 0xFF padding, so the data is at most k - 11
_MIN_PAD = 11
# gmpy2 when installed: 2048-bit signatures in ~1 ms instead of ~8 ms with pow()
_powmod = powmod_backend()


def emsa_pkcs1_null(data: bytes, k: int) -> int:
    """0x00 0x01 FF..FF 0x00 data as an integer, k bytes long (RFC 8017 9.2, no T)."""
    if len(data) > k - _MIN_PAD:
        raise ValueError(f"{len(data)} bytes do not fit a {k * 8}-bit RSA signature")
    block = b"\x00\x01" + b"\xff" * (k - len(data) - 3) + b"\x00" + data
    return int.from_bytes(block, "big")


def sign_pkcs1_null(key: rsa.RSAPrivateKey, data: bytes,
                    rng: Callable[[int], bytes] = os.urandom) -> bytes:
    """The RSA signature of `data` without DigestInfo (SIG_R of RFC 2409 5.1).

    Blinded (r^e * m)^d * r^-1 mod n, so the time of the exponentiation does not
    follow the message (the timing attack on unblinded RSA, Kocher 1996).
    """
    priv = key.private_numbers()
    pub = priv.public_numbers
    k = (pub.n.bit_length() + 7) // 8
    m = emsa_pkcs1_null(data, k)
    r = _unit(pub.n, rng)
    blinded = (_powmod(r, pub.e, pub.n) * m) % pub.n
    s = (_crt(priv, blinded) * pow(r, -1, pub.n)) % pub.n
    if _powmod(s, pub.e, pub.n) != m:  # a fault in the CRT must not leak a factor
        raise ValueError("RSA signature self-check failed")
    return s.to_bytes(k, "big")


def _unit(n: int, rng: Callable[[int], bytes]) -> int:
    size = (n.bit_length() + 7) // 8
    while True:
        r = int.from_bytes(rng(size), "big") % n
        if r > 1:
            return r


def _crt(priv: rsa.RSAPrivateNumbers, c: int) -> int:
    # RFC 8017 5.1.2 step 2b (the CRT form)
    m1 = _powmod(c, priv.dmp1, priv.p)
    m2 = _powmod(c, priv.dmq1, priv.q)
    h = (priv.iqmp * (m1 - m2)) % priv.p
    return m2 + h * priv.q


def verify_pkcs1_null(key: rsa.RSAPublicKey, data: bytes, signature: bytes) -> bool:
    """True if `signature` is `data` signed without DigestInfo (constant-time compare)."""
    # RFC 8017 8.2.2 step 1: exactly k octets; OpenSSL would take a shorter one as
    # the integer with leading zeros, one more form of the same signature
    if len(signature) != (key.key_size + 7) // 8:
        return False
    try:
        recovered = key.recover_data_from_signature(signature, padding.PKCS1v15(), None)
    except (InvalidSignature, ValueError):
        return False
    return hmac.compare_digest(recovered, data)
