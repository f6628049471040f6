"""Diffie-Hellman groups for IKEv1: MODP (RFC 2409 6, RFC 3526) and ECP (RFC 5903).

MODP groups use Python's `pow()` (or gmpy2's `powmod` when that optional
package is installed: about 7-10x faster) with a short private exponent, sized
per RFC 3526 section 8 at twice the group's estimated strength. Our own g^x
has a fixed base, so it comes from a per-group table instead (crypto.fixedbase,
a fixed-base comb: ~4x faster than powmod for group 14, built on first use);
the peer's y^x is a powmod as before. `cryptography`
is not used for them: it deprecates finite-field DH, always draws a full-size
exponent and re-validates the prime on every peer key (42 ms per exchange for
group 2 on the project machine, see docs/DATAPLANE-COSTS.md).

ECP groups use `cryptography` (OpenSSL). Their KE payload is x | y, each
left-padded to the field size, without the 0x04 prefix of SEC1; the shared
secret is the x coordinate of the product (RFC 5903 sections 7 and 9).

Public values and shared secrets always have the group's fixed length: the
KE payload and g^xy are left-padded with zeros to the length of the prime
(RFC 2409 section 5 and RFC 2412 appendix E; a short g^xy that is not padded
is the classic one-in-256 interop failure).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import ClassVar

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from vpnhub.crypto.errors import InvalidPublicValue, UnsupportedAlgorithm
from vpnhub.crypto.fixedbase import FixedBaseComb, ToNumber

PowMod = Callable[[int, int, int], int]


def _pow_builtin(base: int, exp: int, mod: int) -> int:
    return pow(base, exp, mod)


def _load_gmpy2() -> tuple[PowMod, ToNumber] | None:
    try:
        import gmpy2
    except ImportError:
        return None
    powmod = gmpy2.powmod
    mpz = gmpy2.mpz

    def _pow_gmpy2(base: int, exp: int, mod: int) -> int:
        return int(powmod(mpz(base), exp, mod))

    return _pow_gmpy2, mpz


_POW_BACKENDS: dict[str, PowMod] = {"pow": _pow_builtin}
# The number type each backend computes with (the fixed-base tables hold these).
_NUMBER_TYPES: dict[str, ToNumber] = {"pow": int}
_gmp = _load_gmpy2()
if _gmp is not None:
    _POW_BACKENDS["gmpy2"], _NUMBER_TYPES["gmpy2"] = _gmp
del _gmp

#: The modular exponentiation used by default: "gmpy2" when installed, else "pow".
DEFAULT_BACKEND = "gmpy2" if "gmpy2" in _POW_BACKENDS else "pow"


def release_gil_in_this_thread() -> bool:
    """Let gmpy2 drop the GIL inside its big-number operations, for the calling thread
    only (gmpy2's context is per thread): a worker thread's powmod (net.dhworker) then
    runs on another core while the IKE loop goes on. False without gmpy2 (pow() keeps
    the GIL: such a worker only moves the work, it does not overlap it)."""
    try:
        import gmpy2
    except ImportError:
        return False
    gmpy2.get_context().allow_release_gil = True
    return True


# Fixed-base tables by (generator, prime, exponent bits, backend), built at first use and
# shared by every ModpGroup object of that group (`with_backend`, `dh_group`).
_COMBS: dict[tuple[int, int, int, str], FixedBaseComb] = {}


def _generator_comb(generator: int, prime: int, exponent_bits: int,
                    backend: str) -> FixedBaseComb:
    key = (generator, prime, exponent_bits, backend)
    comb = _COMBS.get(key)
    if comb is None:
        # Two threads may get here at once (crypto.fixedbase "Threads"): each
        # builds a whole table, one assignment wins.
        comb = FixedBaseComb(generator, prime, exponent_bits, _NUMBER_TYPES[backend])
        _COMBS[key] = comb
    return comb


def powmod_backend(name: str = DEFAULT_BACKEND) -> PowMod:
    """The modular exponentiation by name (RSA signing uses it too, crypto/rsasig.py)."""
    return _POW_BACKENDS[name]


def available_backends() -> tuple[str, ...]:
    """Names accepted by `dh_group(..., backend=)`: always "pow", "gmpy2" if installed."""
    return tuple(_POW_BACKENDS)


# The primes, written out as in RFC 2409 section 6 (groups 1, 2) and RFC 3526
# (groups 5, 14, 15, 16). Each is 2^n - 2^(n-64) - 1 + 2^64 * ([2^(n-130) pi] + k);
# tests/crypto recompute them from that formula. The generator is 2 for all.
_MODP_768 = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A63A3620FFFFFFFFFFFFFFFF",
    16,
)
_MODP_1024 = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381FFFFFFFFFFFFFFFF",
    16,
)
_MODP_1536 = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05"
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
    "9ED529077096966D670C354E4ABC9804F1746C08CA237327FFFFFFFFFFFFFFFF",
    16,
)
_MODP_2048 = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05"
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718"
    "3995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF",
    16,
)
_MODP_3072 = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05"
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718"
    "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33"
    "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7"
    "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864"
    "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2"
    "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF",
    16,
)
_MODP_4096 = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05"
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718"
    "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33"
    "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7"
    "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864"
    "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2"
    "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A92108011A723C12A787E6D7"
    "88719A10BDBA5B2699C327186AF4E23C1A946834B6150BDA2583E9CA2AD44CE8"
    "DBBBC2DB04DE8EF92E8EFC141FBECAA6287C59474E6BC05D99B2964FA090C3A2"
    "233BA186515BE7ED1F612970CEE2D7AFB81BDD762170481CD0069127D5B05AA9"
    "93B4EA988D8FDDC186FFB7DC90A6C08F4DF435C934063199FFFFFFFFFFFFFFFF",
    16,
)


class DHKeyPair:
    """Our half of one exchange: `public` goes in the KE payload."""

    group: DHGroup
    public: bytes

    def shared_secret(self, peer_public: bytes) -> bytes:
        """g^xy for the peer's KE payload data; InvalidPublicValue if it is unusable."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.group.name}, <private hidden>)"


class DHGroup:
    """One IKE Diffie-Hellman group (phase 1 attribute 4, phase 2 GROUP_DESCRIPTION)."""

    group_id: int
    name: str
    public_len: int
    kind: ClassVar[str] = ""

    def generate(self) -> DHKeyPair:
        """A fresh key pair from the OS CSPRNG."""
        raise NotImplementedError

    def from_private(self, priv: int | bytes) -> DHKeyPair:
        """The key pair of a given private value (big-endian bytes or int), for test vectors."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<DHGroup {self.group_id} {self.name}>"


class ModpKeyPair(DHKeyPair):
    __slots__ = ("_modp", "_x", "group", "public")

    def __init__(self, group: ModpGroup, x: int) -> None:
        self.group = self._modp = group
        self._x = x
        self.public = group.encode(group.generator_power(x))

    def shared_secret(self, peer_public: bytes) -> bytes:
        group = self._modp
        y = group.check_public(peer_public)
        zz = group.powmod(y, self._x, group.prime)
        # With a safe prime and 1 < y < p-1 this cannot happen; fail closed anyway.
        if zz <= 1 or zz >= group.prime - 1:
            raise InvalidPublicValue(f"{group.name}: degenerate shared secret")
        return group.encode(zz)


class ModpGroup(DHGroup):
    """A MODP group with generator 2 over a safe prime (RFC 2409 6, RFC 3526)."""

    kind = "MODP"

    def __init__(
        self, group_id: int, prime: int, exponent_bits: int, backend: str | None = None
    ) -> None:
        self.group_id = group_id
        self.prime = prime
        self.generator = 2
        self.bits = prime.bit_length()
        self.name = f"MODP_{self.bits}"
        self.public_len = (self.bits + 7) // 8
        self.exponent_bits = exponent_bits
        self.backend = backend or DEFAULT_BACKEND
        try:
            self.powmod: PowMod = _POW_BACKENDS[self.backend]
        except KeyError:
            raise UnsupportedAlgorithm(f"DH backend {self.backend!r} not available") from None

    def with_backend(self, backend: str) -> ModpGroup:
        """The same group computed with another backend ("pow" or "gmpy2")."""
        return ModpGroup(self.group_id, self.prime, self.exponent_bits, backend)

    def encode(self, value: int) -> bytes:
        return value.to_bytes(self.public_len, "big")

    def generator_power(self, x: int) -> int:
        """g^x mod p: from the group's fixed-base table (crypto.fixedbase) for an
        exponent of up to exponent_bits (rounded up to a multiple of 8), else powmod
        (a test vector's long private value). The same value either way."""
        comb = _generator_comb(self.generator, self.prime, self.exponent_bits, self.backend)
        if x.bit_length() <= comb.exponent_bits:
            return int(comb.power(x))
        return self.powmod(self.generator, x, self.prime)

    def check_public(self, data: bytes) -> int:
        """The peer's y as an int, after the checks of NIST SP 800-56A 5.6.2.3.1.

        Length equal to the prime's, and 1 < y < p-1. The full subgroup check
        (y^q == 1) is skipped: with a safe prime p = 2q+1 the only small
        subgroups are {1} and {1, p-1}, which the range check already rejects.
        """
        if len(data) != self.public_len:
            raise InvalidPublicValue(
                f"{self.name}: KE data is {len(data)} bytes, expected {self.public_len}"
            )
        y = int.from_bytes(data, "big")
        if not 1 < y < self.prime - 1:
            raise InvalidPublicValue(f"{self.name}: public value out of range")
        return y

    def generate(self) -> ModpKeyPair:
        # The top bit is set so every exponent has exactly exponent_bits bits.
        x = secrets.randbits(self.exponent_bits) | (1 << (self.exponent_bits - 1))
        return ModpKeyPair(self, x)

    def from_private(self, priv: int | bytes) -> ModpKeyPair:
        x = int.from_bytes(priv, "big") if isinstance(priv, bytes | bytearray) else priv
        if not 1 < x < self.prime - 1:
            raise ValueError(f"{self.name}: private exponent out of range")
        return ModpKeyPair(self, x)


class EcpKeyPair(DHKeyPair):
    __slots__ = ("_ecp", "_key", "group", "public")

    def __init__(self, group: EcpGroup, key: ec.EllipticCurvePrivateKey) -> None:
        self.group = self._ecp = group
        self._key = key
        point = key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        self.public = point[1:]  # RFC 5903 section 7: x | y without SEC1's 0x04

    def shared_secret(self, peer_public: bytes) -> bytes:
        peer = self._ecp.check_public(peer_public)
        # RFC 5903 section 9: the shared secret is the x coordinate only.
        return self._key.exchange(ec.ECDH(), peer)


class EcpGroup(DHGroup):
    """A NIST prime curve as an IKE ECP group (RFC 5903)."""

    kind = "ECP"

    def __init__(self, group_id: int, curve: ec.EllipticCurve) -> None:
        self.group_id = group_id
        self.curve = curve
        self.bits = curve.key_size
        self.name = f"ECP_{self.bits}"
        self.coord_len = (self.bits + 7) // 8
        self.public_len = 2 * self.coord_len

    def check_public(self, data: bytes) -> ec.EllipticCurvePublicKey:
        """Parse x | y; OpenSSL rejects coordinates >= p and points not on the curve."""
        if len(data) != self.public_len:
            raise InvalidPublicValue(
                f"{self.name}: KE data is {len(data)} bytes, expected {self.public_len}"
            )
        try:
            return ec.EllipticCurvePublicKey.from_encoded_point(self.curve, b"\x04" + data)
        except ValueError:
            raise InvalidPublicValue(f"{self.name}: public value is not on the curve") from None

    def generate(self) -> EcpKeyPair:
        return EcpKeyPair(self, ec.generate_private_key(self.curve))

    def from_private(self, priv: int | bytes) -> EcpKeyPair:
        d = int.from_bytes(priv, "big") if isinstance(priv, bytes | bytearray) else priv
        return EcpKeyPair(self, ec.derive_private_key(d, self.curve))


# Private exponent sizes: twice the upper strength estimate of RFC 3526
# section 8 (1536: 120 bits, 2048: 160, 3072: 210, 4096: 240), and 256 bits for
# the small groups of RFC 2409, well above twice their ~80-bit strength.
_MODP_TABLE: tuple[tuple[int, int, int], ...] = (
    (1, _MODP_768, 256),
    (2, _MODP_1024, 256),
    (5, _MODP_1536, 256),
    (14, _MODP_2048, 320),
    (15, _MODP_3072, 420),
    (16, _MODP_4096, 480),
)

_ECP_TABLE: tuple[tuple[int, ec.EllipticCurve], ...] = (
    (19, ec.SECP256R1()),
    (20, ec.SECP384R1()),
    (21, ec.SECP521R1()),
)

_GROUPS: dict[int, DHGroup] = {gid: ModpGroup(gid, p, bits) for gid, p, bits in _MODP_TABLE}
_GROUPS.update({gid: EcpGroup(gid, curve) for gid, curve in _ECP_TABLE})

#: Group numbers dh_group() accepts (IANA "Group Description" values).
SUPPORTED_GROUPS: tuple[int, ...] = tuple(sorted(_GROUPS))


def dh_group(group_id: int, backend: str | None = None) -> DHGroup:
    """The DHGroup for an IKE group number; UnsupportedAlgorithm otherwise.

    `backend` ("pow" or "gmpy2") only applies to MODP groups; None is the default.
    """
    try:
        group = _GROUPS[group_id]
    except KeyError:
        raise UnsupportedAlgorithm(f"DH group {group_id} not supported") from None
    if backend is not None and isinstance(group, ModpGroup) and backend != group.backend:
        return group.with_backend(backend)
    return group
