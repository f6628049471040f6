"""IKEv1 phase 1 ciphers: CBC without padding logic (RFC 2409 appendix B, RFC 3602).

The IKE engine pads (RFC 2409 appendix B: zero padding to the block size,
receivers ignore trailing bytes) and chains IVs itself; these objects only
encrypt and decrypt whole blocks. 3DES comes from
`cryptography.hazmat.decrepit`. Single DES is there for known-answer vectors
only (`allow_des=True`): it is run as 3DES with K1 = K2 = K3, which is DES.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import (
    BlockCipherAlgorithm,
    Cipher,
    CipherContext,
    algorithms,
    modes,
)

from vpnhub.crypto.errors import InvalidLength, UnsupportedAlgorithm

# IKEv1 encryption algorithm identifiers (RFC 2409 appendix A, RFC 3602).
IKE_ENCR_DES_CBC = 1
IKE_ENCR_3DES_CBC = 5
IKE_ENCR_AES_CBC = 7


def _aes(key: bytes) -> BlockCipherAlgorithm:
    return algorithms.AES(key)


def _tdes(key: bytes) -> BlockCipherAlgorithm:
    return TripleDES(key)


def _des(key: bytes) -> BlockCipherAlgorithm:
    # EDE with three equal keys is single DES; 24-byte keys avoid the
    # deprecation warning cryptography gives for 8-byte TripleDES keys.
    return TripleDES(key * 3)


@dataclass(frozen=True, slots=True)
class IkeCipher:
    """A CBC cipher for IKE payload encryption: `key_len` and `block_size` in bytes."""

    name: str
    ike_id: int
    block_size: int
    key_len: int
    _algorithm: Callable[[bytes], BlockCipherAlgorithm] = field(repr=False, compare=False)

    def _cipher(self, key: bytes, iv: bytes, data: bytes) -> Cipher[modes.CBC]:
        if len(key) != self.key_len:
            raise InvalidLength(
                f"{self.name}: key is {len(key)} bytes, expected {self.key_len}",
                reason="bad_key_length",
            )
        _check_blocks(self, iv, data)
        return Cipher(self._algorithm(key), modes.CBC(iv))

    def encrypt(self, key: bytes, iv: bytes, plaintext: bytes) -> bytes:
        """CBC-encrypt whole blocks; the last ciphertext block is the next IV."""
        enc = self._cipher(key, iv, plaintext).encryptor()
        return enc.update(plaintext) + enc.finalize()

    def decrypt(self, key: bytes, iv: bytes, ciphertext: bytes) -> bytes:
        """CBC-decrypt whole blocks; InvalidLength ("bad_cipher_length") on a partial block."""
        dec = self._cipher(key, iv, ciphertext).decryptor()
        return dec.update(ciphertext) + dec.finalize()

    def keyed(self, key: bytes) -> KeyedCbc:
        """This cipher with one key (an IKE SA's SKEYID_e-derived key, RFC 2409
        appendix B), for many messages: the key schedule is made once."""
        if len(key) != self.key_len:
            raise InvalidLength(
                f"{self.name}: key is {len(key)} bytes, expected {self.key_len}",
                reason="bad_key_length",
            )
        return KeyedCbc(self, self._algorithm(key))


def _check_blocks(c: IkeCipher, iv: bytes, data: bytes) -> None:
    """A whole IV and whole blocks (RFC 2409 5.3: IKE pads to the block size)."""
    if len(iv) != c.block_size:
        raise InvalidLength(
            f"{c.name}: IV is {len(iv)} bytes, expected {c.block_size}",
            reason="bad_iv_length",
        )
    if len(data) % c.block_size:
        raise InvalidLength(
            f"{c.name}: {len(data)} bytes is not a multiple of the block size"
            f" {c.block_size}"
        )


class KeyedCbc:
    """CBC with one key, as `IkeCipher.encrypt`/`decrypt` with that key give.

    An IKE SA encrypts and decrypts about ten messages with one key; building a
    CBC context per message (key object, mode object, OpenSSL key schedule) cost
    more than the cipher itself (issue 13: CPU per handshake, bench/handshake_cpu.py).
    Decryption runs one ECB context for the SA's life: CBC decryption is
    P_i = D(C_i) XOR C_(i-1) with C_0 = IV (RFC 3602 section 2, NIST SP 800-38A
    6.2), every block on its own, so the XOR is done here over the whole message
    at once. Encryption chains each block into the next: one CBC context serves
    every message too (issue 13: a context per message cost ~4 us of ~5.6 for
    AES). A CBC encryptor computes C_1 = E(P_1 XOR S), S being the last block
    it output (its IV at first); the message's own IV is brought in by feeding
    P_1 XOR IV XOR S as the first block, so C_1 = E(P_1 XOR IV) and the other
    blocks chain as they always do (RFC 3602 section 2): the same ciphertext as
    a fresh context with that IV.
    """

    __slots__ = ("_algorithm", "_bs", "_cbc_encryptor", "_chain", "_ecb_decryptor", "cipher")

    def __init__(self, cipher: IkeCipher, algorithm: BlockCipherAlgorithm) -> None:
        self.cipher = cipher
        self._bs = cipher.block_size
        self._algorithm = algorithm
        self._ecb_decryptor = Cipher(algorithm, modes.ECB()).decryptor()
        self._cbc_encryptor: CipherContext | None = None  # made by the first encrypt
        self._chain = 0  # S: the last block the encryptor output, as an int

    def encrypt(self, iv: bytes, plaintext: bytes) -> bytes:
        """CBC-encrypt whole blocks; the last ciphertext block is the next IV."""
        bs = self._bs
        if len(iv) != bs or len(plaintext) % bs:  # the check's call only when it fails
            _check_blocks(self.cipher, iv, plaintext)
        if not plaintext:
            return b""
        enc = self._cbc_encryptor
        if enc is None:  # S starts as this context's IV: zero
            enc = self._cbc_encryptor = Cipher(self._algorithm,
                                               modes.CBC(bytes(bs))).encryptor()
            self._chain = 0
        first = int.from_bytes(plaintext[:bs], "big") ^ int.from_bytes(iv, "big") ^ self._chain
        out = enc.update(first.to_bytes(bs, "big") + plaintext[bs:])
        if len(out) != len(plaintext):  # whole blocks in, whole blocks out (no padding)
            self._cbc_encryptor = None  # S unknown now: the next message starts afresh
            raise InvalidLength(f"{self.cipher.name}: CBC gave {len(out)} bytes for"
                                f" {len(plaintext)}", reason="cipher_state")
        self._chain = int.from_bytes(out[-bs:], "big")
        return out

    def decrypt(self, iv: bytes, ciphertext: bytes) -> bytes:
        """CBC-decrypt whole blocks; InvalidLength ("bad_cipher_length") on a partial block."""
        bs = self._bs
        if len(iv) != bs or len(ciphertext) % bs:  # the check's call only when it fails
            _check_blocks(self.cipher, iv, ciphertext)
        if not ciphertext:
            return b""
        # ECB keeps no state between calls on whole blocks: one context serves them all
        blocks = self._ecb_decryptor.update(ciphertext)
        chained = iv + ciphertext[:-bs]
        mixed = int.from_bytes(blocks, "big") ^ int.from_bytes(chained, "big")
        return mixed.to_bytes(len(ciphertext), "big")


_AES = {
    bits: IkeCipher(f"AES-{bits}", IKE_ENCR_AES_CBC, 16, bits // 8, _aes)
    for bits in (128, 192, 256)
}
TRIPLE_DES = IkeCipher("3DES", IKE_ENCR_3DES_CBC, 8, 24, _tdes)
DES = IkeCipher("DES", IKE_ENCR_DES_CBC, 8, 8, _des)
AES_128, AES_192, AES_256 = _AES[128], _AES[192], _AES[256]


def ike_cipher(encr_id: int, key_len_bits: int | None, *, allow_des: bool = False) -> IkeCipher:
    """The cipher for a phase 1 ENCRYPTION_ALGORITHM and KEY_LENGTH attribute.

    AES_CBC needs a key length of 128, 192 or 256 bits (RFC 3602 section 5:
    the KEY_LENGTH attribute is mandatory for it); 3DES and DES have a fixed
    key and accept None or their own size (192, 64). Anything else raises
    UnsupportedAlgorithm, which the engine treats as "transform not acceptable".
    """
    if encr_id == IKE_ENCR_AES_CBC:
        if key_len_bits in _AES:
            return _AES[key_len_bits]
        raise UnsupportedAlgorithm(f"AES-CBC key length {key_len_bits} not supported")
    if encr_id == IKE_ENCR_3DES_CBC and key_len_bits in (None, 192):
        return TRIPLE_DES
    if encr_id == IKE_ENCR_DES_CBC and allow_des and key_len_bits in (None, 64):
        return DES
    raise UnsupportedAlgorithm(
        f"IKE encryption {encr_id} (key length {key_len_bits}) not supported"
    )
