"""One direction of an ESP security association: the sans-I/O packet codec.

``EspSA.encapsulate(inner)`` turns an inner IP packet into an ESP packet
(RFC 4303 2: SPI, sequence number, IV, payload, padding, pad length, next
header, ICV) and ``EspSA.decapsulate(esp)`` does the reverse or raises
:class:`EspDrop` with a stable reason.  No sockets, no clocks: the caller
stamps ``last_activity`` with its own clock and moves the bytes.

Costs follow docs/DATAPLANE-COSTS.md ("prepared" column): each SA
keeps one keyed HMAC that is ``copy()``-ed per packet, one long-lived CBC
encryptor and decryptor, one ``AESGCM`` object, and takes CBC randomness from
an :class:`IvPool`.

CBC without a fresh context per packet: the encryptor runs in CBC mode across
packets, so it is fed one random block in front of each payload.  That block's
ciphertext ``E(R xor previous_block)`` is unpredictable and becomes the
packet's IV (the "encrypt a nonce to get the IV" idea of NIST SP 800-38A
appendix C); the rest of the output is exactly ``CBC_IV(payload)``.  The
decryptor likewise decrypts ``IV || ciphertext`` and throws away the first
output block, which only depends on the previous packet.

With the C accelerator (``_espfast.c``, docs/ARCHITECTURE.md "C accelerators")
AES-CBC with an HMAC and AES-GCM-16 run one C call per packet instead of the
~6 calls into ``cryptography`` below; this module stays the reference and the
fallback (3DES, NULL, CBC without integrity, ``VPNHUB_PURE_PYTHON=1``, no
compiler).  The C CBC path takes its IV straight from the :class:`IvPool`
(random bytes, unpredictable as RFC 3602 3 asks) and sets it on a keyed
context; the same IV given to both paths yields the same packet.

AES-GCM IVs (RFC 4106 3.1) are a random 4-byte prefix chosen when the SA is
built followed by the 32-bit sequence number: unique for every packet of the
SA (sequence numbers never repeat), and even if the same keys were installed
twice by mistake the prefixes differ with probability 1 - 2^-32.  Random
64-bit IVs would instead collide with probability ~1/2 over 2^32 packets.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from hmac import compare_digest
from typing import TYPE_CHECKING, Final, NoReturn, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import (
    AUTH_FAILED,
    BAD_INNER_PACKET,
    BAD_NEXT_HEADER,
    BAD_PADDING,
    DUMMY_PACKET,
    REPLAY,
    SEQ_EXHAUSTED,
    SHORT_PACKET,
    SPOOFED_SOURCE,
    EspDrop,
    UnsupportedSuite,
)
from .inner import inner_source_reason, refused_head
from .replay import ReplayWindow
from .suites import ESP_3DES, ESP_AES_CBC, ESP_AES_GCM_16, ESP_NULL, Suite, get_suite

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType

    from cryptography.hazmat.primitives.ciphers import CipherContext

    from ._espfast import Codec, Window


def _load_accelerator() -> ModuleType | None:
    """The C codec, unless VPNHUB_PURE_PYTHON is set or it was not built."""
    if os.environ.get("VPNHUB_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        from . import _espfast
    except ImportError:
        return None
    return _espfast


_espfast = _load_accelerator()
ACCELERATED: Final = _espfast is not None  # the service says so at start

NH_IPV4: Final = 4  # IP-in-IP: tunnel mode IPv4 inner packet
NH_IPV6: Final = 41
NH_NO_NEXT: Final = 59  # dummy packet (RFC 4303 2.6), silently discarded
SEQ_MAX: Final = 0xFFFFFFFF

# Default padding is 1, 2, 3, ... (RFC 4303 2.4); index = pad length.
_PADS: Final = tuple(bytes(range(1, n + 1)) for n in range(256))
_BYTE: Final = tuple(bytes((i,)) for i in range(256))


class IvPool:
    """Random bytes served from a buffer refilled from ``os.urandom``.

    Slicing a pooled buffer costs ~0.2 us against ~0.6 us per ``os.urandom``
    call (DATAPLANE.md).  Not locked: SAs used from two threads may race on a
    shared pool and draw the same block, which is harmless here (each SA is
    used by one thread, and a block only masks the chaining value under that
    SA's own key); give each data-plane thread its own pool if in doubt.
    """

    __slots__ = ("_buf", "_pos", "_size")

    def __init__(self, size: int = 16384) -> None:
        self._size = size
        self._buf = os.urandom(size)
        self._pos = 0

    def take(self, n: int) -> bytes:
        pos = self._pos
        end = pos + n
        if end > self._size:
            self._buf = os.urandom(self._size)
            pos, end = 0, n
        self._pos = end
        return self._buf[pos:end]


_DEFAULT_POOL = IvPool()


@dataclass(frozen=True)
class SaParams:
    """Everything needed to build an :class:`EspSA`; plain data, picklable.

    This is what the control plane hands to a data plane (possibly in another
    process).  Keys are excluded from ``repr`` so they never reach a log line.
    """

    spi: int
    transform: int
    key_len_bits: int | None
    auth: int | None
    enc_key: bytes = field(repr=False)
    integ_key: bytes = field(repr=False)
    replay_window: int = 1024
    # Where a reinstalled SA resumes (a data-plane worker restarted, vpnhub/net/workers.py):
    # the last outbound sequence number sent (never repeated, RFC 4303 3.3.3) and the
    # top of the inbound replay window (RFC 4303 3.4.3). 0 for a new SA.
    seq: int = 0
    replay_top: int = 0

    @classmethod
    def from_keymat(
        cls,
        spi: int,
        transform: int,
        key_len_bits: int | None,
        auth: int | None,
        keymat: bytes,
        replay_window: int = 1024,
    ) -> SaParams:
        """Split RFC 2409 KEYMAT: encryption key first, then integrity key."""
        suite = get_suite(transform, key_len_bits, auth, allow_no_integrity=True)
        enc_len, integ_len = suite.enc_key_len, suite.integ_key_len
        if len(keymat) != enc_len + integ_len:
            raise ValueError(f"{suite.name} needs {enc_len + integ_len} bytes of KEYMAT")
        return cls(spi, transform, key_len_bits, auth, keymat[:enc_len], keymat[enc_len:],
                   replay_window)

    def build(self) -> EspSA:
        sa = EspSA(self.spi, self.transform, self.key_len_bits, self.auth, self.enc_key,
                   self.integ_key, replay_window=self.replay_window)
        sa.seq = self.seq
        sa.replay.top = self.replay_top
        return sa


def _receive_drops() -> dict[int, str]:
    """The C receive()'s failure codes and the drop reasons they stand for."""
    if _espfast is None:
        return {}
    f = _espfast
    return {f.ERR_SHORT: SHORT_PACKET, f.ERR_REPLAY: REPLAY, f.ERR_AUTH: AUTH_FAILED,
            f.ERR_PADDING: BAD_PADDING, f.ERR_NEXT_HEADER: BAD_NEXT_HEADER,
            f.ERR_DUMMY: DUMMY_PACKET, f.ERR_SPOOFED: SPOOFED_SOURCE,
            f.ERR_BAD_INNER: BAD_INNER_PACKET}


_RECEIVE_DROPS: Final = _receive_drops()
_NH_MAPS: dict[frozenset[int], bytes] = {}


def _nh_map(allowed: frozenset[int]) -> bytes:
    """The next-header policy as 256 bytes, non-zero where allowed (Codec.receive)."""
    found = _NH_MAPS.get(allowed)
    if found is None:
        found = _NH_MAPS[allowed] = bytes(1 if i in allowed else 0 for i in range(256))
    return found


class _Encapsulate(Protocol):
    def __call__(self, inner: bytes, next_header: int = NH_IPV4) -> bytes: ...


class _Decapsulate(Protocol):
    def __call__(self, esp: bytes) -> tuple[bytes, int]: ...


class _Receive(Protocol):
    def __call__(self, esp: bytes, allowed_src: bytes | None) -> bytes | None: ...


Datagrams = list[tuple[bytes, tuple[str, int], int]]  # a receive batch (udpgso.BatchReader)


class EspSA:
    """One direction of an ESP SA (tunnel mode).

    ``encapsulate(inner: bytes, next_header: int = 4) -> bytes``
        Build the next outbound ESP packet (sequence numbers start at 1).
        Raises ``EspDrop("seq_exhausted")`` once 2^32-1 packets were sent:
        the SA must be rekeyed (RFC 4303 3.3.3, no cycling).
    ``decapsulate(esp: bytes) -> tuple[bytes, int]``
        Verify and decrypt an inbound ESP packet (starting at the SPI) and
        return ``(inner_packet, next_header)``; raises ``EspDrop`` with one
        of "short_packet", "replay", "auth_failed", "bad_padding",
        "bad_next_header", "dummy_packet".  The SPI is not checked here:
        the demux looked the SA up by it.
    ``receive(esp: bytes, allowed_src: bytes | None) -> bytes | None``
        The data plane's inbound step: ``decapsulate`` and then, if
        ``allowed_src`` (4 bytes) is given, the inner source check (RFC 4301
        5.2, "spoofed_source" / "bad_inner_packet"); the inner packet, or None
        for a drop (counted on the SA, no exception).  With the C codec it is
        one C call (``Codec.receive``, the replay window a C ``Window``);
        ``_receive_py`` is the reference.

    Counters are plain ints: ``packets_in``, ``bytes_in``, ``packets_out``,
    ``bytes_out`` (inner packet bytes), ``drops`` (reason -> count) and
    ``last_activity`` (set by the caller, in its clock's units). ``refused`` holds
    the headers (``inner.refused_head``: no payload) of the last decrypted inner
    packet the inner checks refused, so that a debug line can say what it was.

    ``accelerated=False`` keeps this SA on the pure-Python codec even when the
    C one is available (tests compare the two); ``accelerated`` tells which runs.
    """

    encapsulate: _Encapsulate
    decapsulate: _Decapsulate
    receive: _Receive
    replay: ReplayWindow | Window
    _hmac: hmac.HMAC  # keyed once, copied per packet; absent without integrity

    def __init__(
        self,
        spi: int,
        transform: int,
        key_len_bits: int | None,
        auth: int | None,
        enc_key: bytes,
        integ_key: bytes,
        *,
        replay_window: int = 1024,
        next_headers: tuple[int, ...] = (NH_IPV4,),
        allow_no_integrity: bool = False,
        strict_padding: bool = True,
        iv_pool: IvPool | None = None,
        accelerated: bool = True,
    ) -> None:
        if not 0 < spi <= SEQ_MAX or spi < 256:
            raise ValueError("SPI must be 256..2^32-1 (RFC 4303 2.1)")
        suite = get_suite(transform, key_len_bits, auth, allow_no_integrity=allow_no_integrity)
        if len(enc_key) != suite.enc_key_len or len(integ_key) != suite.integ_key_len:
            raise UnsupportedSuite(
                f"{suite.name} needs {suite.enc_key_len}+{suite.integ_key_len} key bytes")
        self.spi = spi
        self.spi_bytes = spi.to_bytes(4, "big")
        self.suite: Suite = suite
        self.seq = 0  # last sequence number sent
        self.replay = ReplayWindow(replay_window)  # the C one with the C codec (below)
        self.packets_in = 0
        self.bytes_in = 0
        self.packets_out = 0
        self.bytes_out = 0
        self.drops: dict[str, int] = {}
        # The headers of the last decrypted inner packet refused (spoofed_source,
        # bad_inner_packet), for the data plane's debug line (inner.refused_text).
        self.refused = b""
        self.last_activity = 0.0
        self._next_headers = frozenset(next_headers)
        self._strict_padding = strict_padding
        self._pool = iv_pool if iv_pool is not None else _DEFAULT_POOL
        cipher = suite.cipher
        self._bs = cipher.block_size
        self._iv_len = cipher.iv_len
        self._icv_len = suite.icv_len
        # Smallest well-formed packet: header, IV, one block (or 4 bytes), ICV.
        self._min_len = 8 + cipher.iv_len + cipher.block_size + suite.icv_len
        self.accelerated = accelerated and _espfast is not None and (
            transform == ESP_AES_GCM_16 or (transform == ESP_AES_CBC and suite.integ is not None))
        self.receive = self._receive_py
        if self.accelerated:
            self._init_c(transform, enc_key, integ_key, replay_window)
            return
        if suite.integ is not None:
            self._hmac = hmac.HMAC(integ_key, suite.integ.hash_algorithm())
        if transform == ESP_AES_GCM_16:
            self._aead = AESGCM(enc_key[: cipher.key_len])
            self._salt = enc_key[cipher.key_len :]
            self._iv_prefix = os.urandom(4)
            self.encapsulate = self._encap_gcm
            self.decapsulate = self._decap_gcm
        elif transform in (ESP_AES_CBC, ESP_3DES):
            algo = algorithms.AES(enc_key) if transform == ESP_AES_CBC else TripleDES(enc_key)
            # Each OpenSSL context is made by its first packet: an SA carries one
            # direction, so it only ever encrypts (outbound) or decrypts (inbound),
            # and a context is ~1.1 KiB, two per session unused (issue 13).
            self._cbc = Cipher(algo, modes.CBC(bytes(self._bs)))
            self._enc: CipherContext
            self._dec: CipherContext
            self.encapsulate = self._encap_cbc_first
            self.decapsulate = self._decap_cbc_first
        elif transform == ESP_NULL:
            self.encapsulate = self._encap_null
            self.decapsulate = self._decap_null
        else:  # pragma: no cover - get_suite refused it already
            raise UnsupportedSuite(f"ESP transform {transform}")

    # -- C accelerator -------------------------------------------------------
    # One Codec per direction, made by the first packet like the CBC contexts below
    # (issue 13: an SA only ever encrypts or decrypts).  Replay window, counters and
    # the next-header policy stay here, so drops and stats are those of the Python path.

    def _init_c(self, transform: int, enc_key: bytes, integ_key: bytes,
                replay_window: int) -> None:
        assert _espfast is not None
        self._keys = (enc_key, integ_key)
        self._cenc: Callable[[bytes, int, int, bytes], bytes]
        self._cdec: Callable[[bytes, int], tuple[bytes, int, int] | int]
        self._crecv: Callable[[bytes, Window, bytes, bytes | None],
                              bytes | int | tuple[int, bytes]]
        self._cin: Codec | None = None
        self._gcm = transform == ESP_AES_GCM_16
        if self._gcm:
            self._iv_prefix = os.urandom(4)  # as in the Python path (module docstring)
        # The window in C, so that receive() checks and moves it in its one call; same
        # API and rules as ReplayWindow (top read and set by a restarted worker).
        self.replay = self._cwin = _espfast.Window(replay_window)
        # The next-header policy as a byte per value, for the C call (one per policy:
        # 10,000 sessions share it, issue 13).
        self._nh_map = _nh_map(self._next_headers)
        self.encapsulate = self._encap_c_first
        self.decapsulate = self._decap_c_first
        self.receive = self._receive_c_first

    def _codec(self, encrypt: bool) -> Codec:
        assert _espfast is not None
        integ = self.suite.integ
        enc_key, integ_key = self._keys
        codec: Codec = _espfast.Codec(self.spi, self.suite.cipher.transform, enc_key,
                                      integ.hash_name if integ else None, integ_key,
                                      self._icv_len, encrypt, self._strict_padding)
        return codec

    def _encap_c_first(self, inner: bytes, next_header: int = NH_IPV4) -> bytes:
        self._cenc = self._codec(True).encap
        self.encapsulate = self._encap_c
        return self._encap_c(inner, next_header)

    def _inbound_codec(self) -> Codec:
        """The one decrypting Codec, made by the first packet (decapsulate or receive)."""
        if self._cin is None:
            self._cin = self._codec(False)
        return self._cin

    def _decap_c_first(self, esp: bytes) -> tuple[bytes, int]:
        self._cdec = self._inbound_codec().decap
        self.decapsulate = self._decap_c
        return self._decap_c(esp)

    def _receive_c_first(self, esp: bytes, allowed_src: bytes | None) -> bytes | None:
        self._crecv = self._inbound_codec().receive
        self.receive = self._receive_c
        return self._receive_c(esp, allowed_src)

    def _receive_c(self, esp: bytes, allowed_src: bytes | None) -> bytes | None:
        # Length, window, ICV, window update, trailer, next header, inner source: C.
        result = self._crecv(esp, self._cwin, self._nh_map, allowed_src)
        if result.__class__ is bytes:
            self.packets_in += 1
            self.bytes_in += len(result)
            return result
        self._receive_c_refused(result)  # type: ignore[arg-type]
        return None

    def _receive_c_refused(self, result: int | tuple[int, bytes]) -> None:
        """The C receive's failure as _receive_py counts it."""
        if isinstance(result, tuple):  # decrypted (so received), then refused
            code, inner = result
            self.packets_in += 1
            self.bytes_in += len(inner)
            self.refused = refused_head(inner)
        else:
            code = result
        self.count_drop(_RECEIVE_DROPS[code])

    def _encap_c(self, inner: bytes, next_header: int = NH_IPV4) -> bytes:
        seq = self._next_seq()
        # CBC: a fresh unpredictable IV; GCM: the SA's prefix, the codec adds seq
        iv = self._iv_prefix if self._gcm else self._pool.take(16)
        esp = self._cenc(inner, next_header, seq, iv)
        self.packets_out += 1
        self.bytes_out += len(inner)
        return esp

    def _decap_c(self, esp: bytes) -> tuple[bytes, int]:
        # Packets at or left of the window top come back as ERR_REPLAY_CHECK before
        # any crypto: the window decides first (RFC 4303 3.4.3), as in _decap_cbc.
        result = self._cdec(esp, self.replay.top)
        if isinstance(result, int):
            result = self._decap_c_refused(esp, result)
        inner, next_header, seq = result
        self.replay.update(seq)  # authentic (RFC 4303 3.4.3)
        if next_header not in self._next_headers:
            self._drop(DUMMY_PACKET if next_header == NH_NO_NEXT else BAD_NEXT_HEADER)
        self.packets_in += 1
        self.bytes_in += len(inner)
        return inner, next_header

    def _decap_c_refused(self, esp: bytes, code: int) -> tuple[bytes, int, int]:
        """The C codec's failure ``code`` as the Python path's drop, or a retry."""
        assert _espfast is not None
        if code == _espfast.ERR_REPLAY_CHECK:
            self._replay_drop(int.from_bytes(esp[4:8], "big"))
            result = self._cdec(esp, -1)  # inside the window and new: decrypt it
            if not isinstance(result, int):
                return result
            code = result
        if code == _espfast.ERR_PADDING:
            self.replay.update(int.from_bytes(esp[4:8], "big"))  # it was authentic
            self._drop(BAD_PADDING)
        self._drop(SHORT_PACKET if code == _espfast.ERR_SHORT else AUTH_FAILED)

    def _receive_py(self, esp: bytes, allowed_src: bytes | None) -> bytes | None:
        """``receive`` in Python: the reference of ``Codec.receive`` (same drops, same
        order, same counters)."""
        try:
            inner = self.decapsulate(esp)[0]
        except EspDrop:
            return None  # counted on the SA
        if allowed_src is not None and (refused := inner_source_reason(inner, allowed_src)):
            self.count_drop(refused)
            self.refused = refused_head(inner)
            return None
        return inner

    def receive_run(self, batch: Datagrams, start: int, allowed_src: bytes | None,
                    addr: tuple[str, int], limit: int,
                    min_inner: int) -> tuple[int, list[bytes], int]:
        """``receive`` on ``batch[start:]`` while an item is ESP of this SA (>= 8 bytes,
        its SPI) from ``addr`` and fewer than ``limit`` inner packets were taken; an
        inner packet shorter than ``min_inner`` is dropped ("bad_inner_packet").

        Returns (the first item not taken, the inner packets, how many packets were
        received, i.e. whether ``last_activity`` moves). One C call with the codec
        (``Codec.receive_run``); this loop is the reference.
        """
        if self.accelerated:
            return self._receive_run_c(batch, start, allowed_src, addr, limit, min_inner)
        return self._receive_run_py(batch, start, allowed_src, addr, limit, min_inner)

    def _receive_run_py(self, batch: Datagrams, start: int, allowed_src: bytes | None,
                        addr: tuple[str, int], limit: int,
                        min_inner: int) -> tuple[int, list[bytes], int]:
        inners: list[bytes] = []
        spi = self.spi_bytes
        received = 0
        i = start
        while i < len(batch) and len(inners) < limit:
            esp, source = batch[i][0], batch[i][1]
            if len(esp) < 8 or esp[:4] != spi or source != addr:
                break
            i += 1
            before = self.packets_in
            inner = self.receive(esp, allowed_src)
            received += self.packets_in - before
            if inner is None:
                continue
            if len(inner) < min_inner:  # the TUN would refuse it
                self.count_drop(BAD_INNER_PACKET)
                self.refused = refused_head(inner)
                continue
            inners.append(inner)
        return i, inners, received

    def _receive_run_c(self, batch: Datagrams, start: int, allowed_src: bytes | None,
                       addr: tuple[str, int], limit: int,
                       min_inner: int) -> tuple[int, list[bytes], int]:
        end, inners, received, nbytes, drops, refused = self._inbound_codec().receive_run(
            batch, start, self._cwin, self._nh_map, allowed_src, self.spi_bytes, addr,
            limit, min_inner)
        self.packets_in += received
        self.bytes_in += nbytes
        for code in drops:
            self.count_drop(_RECEIVE_DROPS[code])
        if refused is not None:
            self.refused = refused_head(refused)
        return end, inners, received

    # -- bookkeeping ---------------------------------------------------------

    def _drop(self, reason: str) -> NoReturn:
        self.drops[reason] = self.drops.get(reason, 0) + 1
        raise EspDrop(reason)

    def count_drop(self, reason: str) -> None:
        """Count a drop decided by the caller (e.g. "spoofed_source")."""
        self.drops[reason] = self.drops.get(reason, 0) + 1

    def _next_seq(self) -> int:
        seq = self.seq + 1
        if seq > SEQ_MAX:
            self._drop(SEQ_EXHAUSTED)
        self.seq = seq
        return seq

    @property
    def seq_remaining(self) -> int:
        """Packets this SA may still send before it must be replaced."""
        return SEQ_MAX - self.seq

    def stats(self) -> dict[str, object]:
        return {
            "spi": f"{self.spi:08x}",
            "suite": self.suite.name,
            "packets_in": self.packets_in,
            "bytes_in": self.bytes_in,
            "packets_out": self.packets_out,
            "bytes_out": self.bytes_out,
            "seq_out": self.seq,
            "replay_top": self.replay.top,
            "drops": dict(self.drops),
            "last_activity": self.last_activity,
        }

    def __repr__(self) -> str:
        return f"EspSA(spi={self.spi:#010x}, suite={self.suite.name})"

    # -- outbound ------------------------------------------------------------

    def _trailer(self, length: int, next_header: int) -> tuple[bytes, bytes]:
        return _PADS[-(length + 2) % self._bs], _BYTE[next_header]

    def _encap_cbc_first(self, inner: bytes, next_header: int = NH_IPV4) -> bytes:
        self._enc = self._cbc.encryptor()
        self.encapsulate = self._encap_cbc
        return self._encap_cbc(inner, next_header)

    def _decap_cbc_first(self, esp: bytes) -> tuple[bytes, int]:
        self._dec = self._cbc.decryptor()
        self.decapsulate = self._decap_cbc if self.suite.integ else self._decap_cbc_no_integrity
        return self.decapsulate(esp)

    def _encap_cbc(self, inner: bytes, next_header: int = NH_IPV4) -> bytes:
        header = self.spi_bytes + self._next_seq().to_bytes(4, "big")
        pad, nh = self._trailer(len(inner), next_header)
        # First output block is E(random xor chain): the IV (module docstring).
        body = self._enc.update(b"".join((self._pool.take(self._bs), inner, pad, _BYTE[len(pad)],
                                          nh)))
        self.packets_out += 1
        self.bytes_out += len(inner)
        if not self._icv_len:
            return header + body
        mac = self._hmac.copy()
        mac.update(header)
        mac.update(body)
        return b"".join((header, body, mac.finalize()[: self._icv_len]))

    def _encap_gcm(self, inner: bytes, next_header: int = NH_IPV4) -> bytes:
        seq = self._next_seq().to_bytes(4, "big")
        header = self.spi_bytes + seq
        iv = self._iv_prefix + seq
        pad, nh = self._trailer(len(inner), next_header)
        # AAD is SPI || sequence number (RFC 4106 5, no ESN); output is ciphertext || tag.
        sealed = self._aead.encrypt(self._salt + iv,
                                    b"".join((inner, pad, _BYTE[len(pad)], nh)), header)
        self.packets_out += 1
        self.bytes_out += len(inner)
        return b"".join((header, iv, sealed))

    def _encap_null(self, inner: bytes, next_header: int = NH_IPV4) -> bytes:
        header = self.spi_bytes + self._next_seq().to_bytes(4, "big")
        pad, nh = self._trailer(len(inner), next_header)
        body = b"".join((header, inner, pad, _BYTE[len(pad)], nh))
        mac = self._hmac.copy()  # get_suite refuses NULL without integrity
        mac.update(body)
        self.packets_out += 1
        self.bytes_out += len(inner)
        return body + mac.finalize()[: self._icv_len]

    # -- inbound -------------------------------------------------------------
    # The fast path is written out in each _decap_* (no helper per step): a
    # Python call costs ~0.1 us and there are a dozen steps per packet.

    def _replay_drop(self, seq: int) -> None:
        # Called only when seq <= top: the window decides (new packets skip it).
        if not self.replay.check(seq):
            self._drop(REPLAY)

    def _finish(self, plain: bytes, start: int) -> tuple[bytes, int]:
        """Strip padding / pad length / next header from ``plain[start:]``."""
        pad_len = plain[-2]
        next_header = plain[-1]
        end = len(plain) - 2 - pad_len
        if end < start or (self._strict_padding and plain[end:-2] != _PADS[pad_len]):
            self._drop(BAD_PADDING)
        if next_header not in self._next_headers:
            self._drop(DUMMY_PACKET if next_header == NH_NO_NEXT else BAD_NEXT_HEADER)
        self.packets_in += 1
        self.bytes_in += end - start
        return plain[start:end], next_header

    def _decap_cbc(self, esp: bytes) -> tuple[bytes, int]:
        n = len(esp)
        icv_len = self._icv_len
        if n < self._min_len or (n - 8 - icv_len) % self._bs:
            self._drop(SHORT_PACKET)  # too short, or ciphertext not block aligned
        seq = int.from_bytes(esp[4:8], "big")
        replay = self.replay
        if seq <= replay.top:
            self._replay_drop(seq)
        cut = n - icv_len
        body = esp[:cut]
        mac = self._hmac.copy()
        mac.update(body)
        if not compare_digest(mac.finalize()[:icv_len], esp[cut:]):
            self._drop(AUTH_FAILED)
        replay.update(seq)  # only now: the packet is authentic (RFC 4303 3.4.3)
        # IV || ciphertext through the long-lived context; block 0 is discarded.
        return self._finish(self._dec.update(body[8:]), self._bs)

    def _decap_cbc_no_integrity(self, esp: bytes) -> tuple[bytes, int]:
        # No ICV, hence no anti-replay either (RFC 4303 3.4.3 needs integrity).
        if len(esp) < self._min_len or (len(esp) - 8) % self._bs:
            self._drop(SHORT_PACKET)
        return self._finish(self._dec.update(esp[8:]), self._bs)

    def _decap_gcm(self, esp: bytes) -> tuple[bytes, int]:
        if len(esp) < self._min_len:
            self._drop(SHORT_PACKET)
        seq = int.from_bytes(esp[4:8], "big")
        replay = self.replay
        if seq <= replay.top:
            self._replay_drop(seq)
        try:
            # Nonce = salt || explicit IV; AAD = SPI || seq (RFC 4106 4, 5).
            plain = self._aead.decrypt(self._salt + esp[8:16], esp[16:], esp[:8])
        except InvalidTag:
            self._drop(AUTH_FAILED)
        replay.update(seq)
        return self._finish(plain, 0)

    def _decap_null(self, esp: bytes) -> tuple[bytes, int]:
        n = len(esp)
        if n < self._min_len:
            self._drop(SHORT_PACKET)
        seq = int.from_bytes(esp[4:8], "big")
        if seq <= self.replay.top:
            self._replay_drop(seq)
        cut = n - self._icv_len
        body = esp[:cut]
        mac = self._hmac.copy()
        mac.update(body)
        if not compare_digest(mac.finalize()[: self._icv_len], esp[cut:]):
            self._drop(AUTH_FAILED)
        self.replay.update(seq)
        return self._finish(body, 8)
