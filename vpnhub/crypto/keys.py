"""IKEv1 key derivation and exchange hashes (RFC 2409 sections 5, 5.5, 5.7, appendix B).

Notation as in RFC 2409: `prf` is HMAC with the negotiated hash, `|` is
concatenation, `_b` is a payload body without its generic header, g^xy is
the DH shared secret left-padded to the group's length. Integers are sent
big-endian: message IDs and SPIs on 4 bytes, the protocol on 1 byte.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
from dataclasses import dataclass, field

from vpnhub.crypto.cipher import IkeCipher
from vpnhub.crypto.prf import HashAlg, KeyedPrf

IPAddress = bytes | str | ipaddress.IPv4Address | ipaddress.IPv6Address
# A prf key: the bytes, or the same key made ready for many calls (`HashAlg.keyed`,
# an SA's SKEYID_a for the HASH of each of its messages): the same output either way
PrfKey = bytes | KeyedPrf


def _prf(h: HashAlg, key: PrfKey, data: bytes) -> bytes:
    return h.prf(key, data) if isinstance(key, bytes) else key(data)


def _mid(message_id: int) -> bytes:
    return message_id.to_bytes(4, "big")


@dataclass(frozen=True)
class Phase1Keys:
    """The keys of one ISAKMP SA. Every field is secret: none shows in repr()."""

    skeyid: bytes = field(repr=False)
    skeyid_d: bytes = field(repr=False)
    skeyid_a: bytes = field(repr=False)
    skeyid_e: bytes = field(repr=False)
    enc_key: bytes = field(repr=False)
    iv: bytes = field(repr=False)  # phase 1 IV: hash(g^xi | g^xr), cut to the block size


def skeyid_psk(h: HashAlg, psk: bytes, ni_b: bytes, nr_b: bytes) -> bytes:
    """SKEYID = prf(pre-shared-key, Ni_b | Nr_b)  (RFC 2409 section 5, pre-shared keys)."""
    return h.prf(psk, ni_b + nr_b)


def skeyid_sig(h: HashAlg, ni_b: bytes, nr_b: bytes, g_xy: bytes) -> bytes:
    """SKEYID = prf(Ni_b | Nr_b, g^xy)  (RFC 2409 section 5, signatures; hybrid/XAUTH-RSA)."""
    return h.prf(ni_b + nr_b, g_xy)


def derive_skeyids(
    h: HashAlg, skeyid: PrfKey, g_xy: bytes, cky_i: bytes, cky_r: bytes
) -> tuple[bytes, bytes, bytes]:
    """(SKEYID_d, SKEYID_a, SKEYID_e), RFC 2409 section 5:

    SKEYID_d = prf(SKEYID, g^xy | CKY-I | CKY-R | 0)
    SKEYID_a = prf(SKEYID, SKEYID_d | g^xy | CKY-I | CKY-R | 1)
    SKEYID_e = prf(SKEYID, SKEYID_a | g^xy | CKY-I | CKY-R | 2)
    """
    tail = g_xy + cky_i + cky_r
    skeyid_d = _prf(h, skeyid, tail + b"\x00")
    skeyid_a = _prf(h, skeyid, skeyid_d + tail + b"\x01")
    skeyid_e = _prf(h, skeyid, skeyid_a + tail + b"\x02")
    return skeyid_d, skeyid_a, skeyid_e


def expand_key(h: HashAlg, skeyid_e: bytes, length: int) -> bytes:
    """The phase 1 encryption key of `length` bytes (RFC 2409 appendix B).

    If SKEYID_e is long enough its leading bytes are the key. Otherwise
    K = K1 | K2 | K3 ..., K1 = prf(SKEYID_e, 0), K_n = prf(SKEYID_e, K_(n-1)),
    where 0 is a single zero octet; the key is the first `length` bytes of K.
    """
    if length < 0:
        raise ValueError("negative key length")
    if len(skeyid_e) >= length:
        return skeyid_e[:length]
    block = h.prf(skeyid_e, b"\x00")
    out = block
    while len(out) < length:
        block = h.prf(skeyid_e, block)
        out += block
    return out[:length]


def phase1_iv(h: HashAlg, g_xi: bytes, g_xr: bytes, block_size: int) -> bytes:
    """IV of the first encrypted phase 1 message: hash(g^xi | g^xr), cut (RFC 2409 appx B)."""
    return h.hash(g_xi + g_xr)[:block_size]


def derive_phase1(
    h: HashAlg,
    cipher: IkeCipher,
    skeyid: bytes,
    g_xy: bytes,
    cky_i: bytes,
    cky_r: bytes,
    g_xi: bytes,
    g_xr: bytes,
) -> Phase1Keys:
    """Everything RFC 2409 section 5 and appendix B derive from SKEYID for one ISAKMP SA."""
    skeyid_d, skeyid_a, skeyid_e = derive_skeyids(h, skeyid, g_xy, cky_i, cky_r)
    return Phase1Keys(
        skeyid=skeyid,
        skeyid_d=skeyid_d,
        skeyid_a=skeyid_a,
        skeyid_e=skeyid_e,
        enc_key=expand_key(h, skeyid_e, cipher.key_len),
        iv=phase1_iv(h, g_xi, g_xr, cipher.block_size),
    )


def phase2_iv(h: HashAlg, phase1_last_iv: bytes, message_id: int, block_size: int) -> bytes:
    """IV of the first message of a phase 2, informational or transaction exchange.

    hash(last phase 1 CBC output block | M-ID), cut to the block size (RFC 2409
    appendix B). Later messages of that exchange chain on their own last block.
    """
    return h.hash(phase1_last_iv + _mid(message_id))[:block_size]


def hash_i(
    h: HashAlg,
    skeyid: PrfKey,
    g_xi: bytes,
    g_xr: bytes,
    cky_i: bytes,
    cky_r: bytes,
    sai_b: bytes,
    idii_b: bytes,
) -> bytes:
    """HASH_I = prf(SKEYID, g^xi | g^xr | CKY-I | CKY-R | SAi_b | IDii_b)  (RFC 2409 5)."""
    return _prf(h, skeyid, g_xi + g_xr + cky_i + cky_r + sai_b + idii_b)


def hash_r(
    h: HashAlg,
    skeyid: PrfKey,
    g_xi: bytes,
    g_xr: bytes,
    cky_i: bytes,
    cky_r: bytes,
    sai_b: bytes,
    idir_b: bytes,
) -> bytes:
    """HASH_R = prf(SKEYID, g^xr | g^xi | CKY-R | CKY-I | SAi_b | IDir_b)  (RFC 2409 5).

    Arguments are in the same order as hash_i(); the function swaps them.
    """
    return _prf(h, skeyid, g_xr + g_xi + cky_r + cky_i + sai_b + idir_b)


def qm_hash1(h: HashAlg, skeyid_a: PrfKey, message_id: int, rest: bytes) -> bytes:
    """HASH(1) = prf(SKEYID_a, M-ID | SA | Ni [ | KE ] [ | IDci | IDcr ])  (RFC 2409 5.5).

    `rest` is every payload after the HASH payload, as sent (generic headers included).
    """
    return _prf(h, skeyid_a, _mid(message_id) + rest)


def qm_hash2(h: HashAlg, skeyid_a: PrfKey, message_id: int, ni_b: bytes, rest: bytes
             ) -> bytes:
    """HASH(2) = prf(SKEYID_a, M-ID | Ni_b | SA | Nr [ | KE ] [ | IDci | IDcr ])  (RFC 2409 5.5)."""
    return _prf(h, skeyid_a, _mid(message_id) + ni_b + rest)


def qm_hash3(h: HashAlg, skeyid_a: PrfKey, message_id: int, ni_b: bytes, nr_b: bytes
             ) -> bytes:
    """HASH(3) = prf(SKEYID_a, 0 | M-ID | Ni_b | Nr_b), 0 a single octet  (RFC 2409 5.5)."""
    return _prf(h, skeyid_a, b"\x00" + _mid(message_id) + ni_b + nr_b)


def info_hash(h: HashAlg, skeyid_a: PrfKey, message_id: int, rest: bytes) -> bytes:
    """HASH(1) of informational (RFC 2409 5.7) and transaction (XAUTH/Mode Config) messages.

    prf(SKEYID_a, M-ID | N/D or ATTR ...): the payloads after the HASH payload, as sent.
    """
    return _prf(h, skeyid_a, _mid(message_id) + rest)


def keymat(
    h: HashAlg,
    skeyid_d: PrfKey,
    protocol: int,
    spi: bytes,
    ni_b: bytes,
    nr_b: bytes,
    length: int,
    g_qm: bytes | None = None,
) -> bytes:
    """KEYMAT for one IPsec SA (one direction), `length` bytes (RFC 2409 section 5.5).

    KEYMAT = K1 | K2 | ..., K1 = prf(SKEYID_d, [g(qm)^xy |] protocol | SPI | Ni_b | Nr_b),
    K_n = prf(SKEYID_d, K_(n-1) | [g(qm)^xy |] protocol | SPI | Ni_b | Nr_b).
    `spi` is the SPI of this SA, i.e. the one chosen by its receiving side;
    `g_qm` is the Quick Mode (PFS) shared secret, if any. For ESP the
    encryption key is taken first, then the integrity key (RFC 2401 / 4303).
    """
    if length < 0:
        raise ValueError("negative key length")
    seed = (g_qm or b"") + bytes([protocol]) + spi + ni_b + nr_b
    block = _prf(h, skeyid_d, seed)
    out = block
    while len(out) < length:
        block = _prf(h, skeyid_d, block + seed)
        out += block
    return out[:length]


def _ip_bytes(ip: IPAddress) -> bytes:
    if isinstance(ip, bytes):
        if len(ip) not in (4, 16):
            raise ValueError(f"an IP address is 4 or 16 bytes, not {len(ip)}")
        return ip
    if isinstance(ip, str):
        return _packed(ip)
    return ip.packed


@functools.lru_cache(maxsize=1024)
def _packed(ip: str) -> bytes:
    # NAT detection hashes up to six (address, port) pairs per SA, mostly of the
    # same few addresses (ours, a PAT's): parsing them was ~2.5 % of a handshake's
    # CPU (issue 13). Bounded, and a bad string still raises ValueError each time.
    return ipaddress.ip_address(ip).packed


def natd_hash(h: HashAlg, cky_i: bytes, cky_r: bytes, ip: IPAddress, port: int) -> bytes:
    """NAT-D payload data: HASH(CKY-I | CKY-R | IP | Port)  (RFC 3947 section 3.2).

    The negotiated hash itself, not its prf; IP as 4 or 16 bytes, port on 2
    bytes. The draft NAT-T versions (payload type 130) use the same formula.
    """
    return h.hash(cky_i + cky_r + _ip_bytes(ip) + port.to_bytes(2, "big"))


def hashes_equal(expected: bytes, received: bytes) -> bool:
    """Compare a computed HASH with a received one without an early exit."""
    return hmac.compare_digest(expected, received)
