"""IKEv1 fragmentation (Cisco's, also strongSwan's and libreswan's `fragmentation`).

A large ISAKMP message is cut into pieces; each travels as its own ISAKMP
message: the original header (next payload 132, E flag cleared, new length)
then one FRAGMENT payload (fragment ID, number from 1, LAST flag) holding a
slice of the whole original packet, header included. The receiver joins the
slices in number order and processes the original. Announced with the
"FRAGMENTATION" vendor ID; used when a NAT device or a path drops the IP
fragments of large UDP datagrams (certificates, long proposal lists).
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from dataclasses import dataclass, field

from vpnhub.wire.constants import PayloadType

HEADER_LEN = 28
FRAGMENT_HEADER = struct.Struct("!BBHHBB")  # next, reserved, length, id, number, flags
LAST = 0x01
MAX_FRAGMENTS = 16  # libreswan refuses more, so do we
DEFAULT_FRAGMENT_SIZE = 576  # whole fragment datagram, as IKEv1 implementations default


class FragmentError(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def is_fragment(data: bytes) -> bool:
    return len(data) >= HEADER_LEN + FRAGMENT_HEADER.size and data[16] == PayloadType.FRAGMENT


def split(packet: bytes, max_size: int = DEFAULT_FRAGMENT_SIZE, frag_id: int = 1) -> list[bytes]:
    """The fragments of a complete ISAKMP packet, each at most `max_size` bytes."""
    room = max_size - HEADER_LEN - FRAGMENT_HEADER.size
    if room <= 0:
        raise ValueError(f"fragment size {max_size} leaves no room for data")
    chunks = [packet[i:i + room] for i in range(0, len(packet), room)]
    if len(chunks) > MAX_FRAGMENTS:
        raise ValueError(f"{len(packet)} bytes need {len(chunks)} fragments (max"
                         f" {MAX_FRAGMENTS})")
    out = []
    for n, chunk in enumerate(chunks, start=1):
        frag_len = FRAGMENT_HEADER.size + len(chunk)
        hdr = bytearray(packet[:HEADER_LEN])
        hdr[16] = PayloadType.FRAGMENT
        hdr[19] &= ~0x01  # the fragment itself is not encrypted (the slice may be)
        hdr[24:28] = (HEADER_LEN + frag_len).to_bytes(4, "big")
        flags = LAST if n == len(chunks) else 0
        out.append(bytes(hdr) + FRAGMENT_HEADER.pack(0, 0, frag_len, frag_id, n, flags) + chunk)
    return out


@dataclass
class _Partial:
    started: float
    pieces: dict[int, bytes] = field(default_factory=dict)
    last: int = 0
    size: int = 0


class Reassembler:
    """Bounded: a few messages in flight, 16 fragments each, dropped after `timeout`."""

    def __init__(self, *, max_messages: int = 64, timeout: float = 30.0,
                 max_bytes: int = 65535) -> None:
        self.max_messages = max_messages
        self.timeout = timeout
        self.max_bytes = max_bytes
        self._partial: OrderedDict[tuple[object, ...], _Partial] = OrderedDict()

    def feed(self, data: bytes, source: object, now: float) -> bytes | None:
        """A fragment from `source`; the whole packet once the last piece is in."""
        if not is_fragment(data):
            raise FragmentError("not_a_fragment", "no FRAGMENT payload")
        _, _, frag_len, frag_id, number, flags = FRAGMENT_HEADER.unpack_from(data, HEADER_LEN)
        if frag_len != len(data) - HEADER_LEN or not 1 <= number <= MAX_FRAGMENTS:
            raise FragmentError("bad_fragment", f"fragment {number} with length {frag_len}")
        self._expire(now)
        key = (source, data[:16], frag_id)
        part = self._partial.get(key)
        if part is None:
            while len(self._partial) >= self.max_messages:
                self._partial.popitem(last=False)
            part = self._partial[key] = _Partial(now)
        chunk = data[HEADER_LEN + FRAGMENT_HEADER.size:]
        if number not in part.pieces:
            part.pieces[number] = chunk
            part.size += len(chunk)
        if flags & LAST:
            part.last = number
        if part.size > self.max_bytes:
            del self._partial[key]
            raise FragmentError("fragments_too_large", f"more than {self.max_bytes} bytes")
        if not part.last or len(part.pieces) < part.last:
            return None
        del self._partial[key]
        if any(n not in part.pieces for n in range(1, part.last + 1)):
            raise FragmentError("bad_fragment", "fragment numbers beyond the last one")
        return b"".join(part.pieces[n] for n in range(1, part.last + 1))

    def _expire(self, now: float) -> None:
        while self._partial:
            key, part = next(iter(self._partial.items()))
            if now - part.started < self.timeout:
                return
            del self._partial[key]

    def __len__(self) -> int:
        return len(self._partial)
