"""TUN offloads (issue 16): split the kernel's super-packets, coalesce our own.

A TUN opened with ``IFF_VNET_HDR`` carries a ``struct virtio_net_hdr``
(include/uapi/linux/virtio_net.h, 10 bytes, little-endian on the hosts we run
on: the legacy header is in native order) before every packet, both ways:

    u8 flags  u8 gso_type  u16 hdr_len  u16 gso_size  u16 csum_start  u16 csum_offset

- Read (LAN -> client): with ``TUNSETOFFLOAD`` (TUN_F_CSUM | TUN_F_TSO4/6, and
  TUN_F_USO4/6 where the kernel has them, Linux 6.2) the host stack hands us one
  up-to-64 KiB TCP (or UDP) *super-packet* instead of many segments, with
  ``gso_type``/``gso_size`` saying how to cut it, and any packet may come
  with only a partial checksum (``VIRTIO_NET_HDR_F_NEEDS_CSUM``: the
  pseudo-header sum sits at ``csum_start + csum_offset`` and the sum from
  ``csum_start`` to the end is ours to finish). ``from_kernel`` turns one read
  into the ordinary IP packets the ESP side encrypts: cut at ``gso_size``,
  each with its IP total length, IP id (+1 per segment, as the kernel's own
  segmentation does), IP checksum, TCP sequence number, flags (FIN and PSH
  only on the last segment, CWR only on the first) and a full TCP/UDP
  checksum (net/ipv4/tcp_offload.c ``tcp_gso_segment``,
  net/ipv4/udp_offload.c ``__udp_gso_segment``).
- Write (client -> LAN): ``coalesce`` takes the inner packets one batch
  decrypted and joins the TCP segments of one flow that follow each other
  (same addresses and ports, same ACK number, the next sequence number, flags
  ACK or ACK|PSH with PSH ending the run, identical TCP options, same TOS,
  TTL and DF, equal payload sizes with a shorter last one) into one
  super-packet with ``GSO_TCPV4``, ``gso_size`` and ``NEEDS_CSUM`` (the TCP
  checksum field then holds the pseudo-header sum, not complemented), written
  with one ``write``; the kernel cuts it again where it must (or delivers it
  whole to a local socket). Everything else goes alone with a zero header.
  A segment joins only if its own checksum is right: the kernel completes the
  super-packet's checksum, so a bad one would otherwise be made good.
  This is the rule of wireguard-go's tun/offload_linux.go, which follows the
  kernel's GRO self-tests (tools/testing/selftests/net/gro.c).

IPv4 only, as the data plane. Pure functions over bytes (no I/O): a read the
kernel should never produce, or a hostile packet, raises ``OffloadError``
with a stable drop reason; the caller drops and counts it.

Checksums: the one's-complement sum of 16-bit words is the big-endian integer
of the (even-length) bytes modulo 0xFFFF, since 2**16 == 1 (mod 0xFFFF)
(RFC 1071 2(B)); ``int.from_bytes`` and ``%`` do it (``ones_sum_py``, the
reference). ``ones_sum`` is the C twin of it from ``_netfast.c`` when built
(vpnhub/net/accel.py; about 20 times faster on a 1400-byte segment, where the
Python one cost as much as the packet's HMAC), else ``ones_sum_py``; every
checksum here (split, complete, the check of a segment before it joins) goes
through it.
"""

from __future__ import annotations

import struct
from typing import Final, Protocol

from vpnhub.net.accel import NETFAST

VNET_HDR_LEN: Final = 10
_VNET: Final = struct.Struct("<BBHHHH")

# include/uapi/linux/virtio_net.h
F_NEEDS_CSUM: Final = 1
F_DATA_VALID: Final = 2
GSO_NONE: Final = 0
GSO_TCPV4: Final = 1
GSO_UDP: Final = 3  # UFO (IP fragments): never offered, refused
GSO_TCPV6: Final = 4
GSO_UDP_L4: Final = 5
GSO_ECN: Final = 0x80

# include/uapi/linux/if_tun.h
TUN_F_CSUM: Final = 0x01
TUN_F_TSO4: Final = 0x02
TUN_F_TSO6: Final = 0x04
TUN_F_TSO_ECN: Final = 0x08
TUN_F_UFO: Final = 0x10
TUN_F_USO4: Final = 0x20
TUN_F_USO6: Final = 0x40

ZERO_HDR: Final = bytes(VNET_HDR_LEN)
MAX_IP: Final = 65535  # an IPv4 total length
READ_SIZE: Final = VNET_HDR_LEN + MAX_IP

# Drop reasons (the data plane counts them).
BAD_VNET_HDR: Final = "bad_vnet_header"  # shorter than the header, unknown GSO type
BAD_SUPER_PACKET: Final = "bad_super_packet"  # headers that do not hold together

_FIN: Final = 0x01
_PSH: Final = 0x08
_ACK: Final = 0x10
_CWR: Final = 0x80
_TCP: Final = 6
_UDP: Final = 17


class OffloadError(ValueError):
    """A read or packet that cannot be handled; ``reason`` is the drop counter's name."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def ones_sum_py(data: bytes | bytearray | memoryview, initial: int = 0, start: int = 0) -> int:
    """The one's-complement sum of ``data[start:]`` (padded to even length) plus
    `initial`, modulo 0xFFFF (so "zero" is 0, never 0xFFFF)."""
    if start:  # an offset instead of a slice: no copy, no view to make (the C twin's way)
        if start < 0:
            raise ValueError("ones_sum() start must not be negative")
        data = memoryview(data)[start:]
    n = int.from_bytes(data, "big")
    if len(data) & 1:
        n <<= 8
    return (n + initial) % 0xFFFF


# The C twin when built and allowed (same results: tests/net/test_netfast.py); looked
# up at each call, so a test can put the reference in its place.
class _OnesSum(Protocol):
    def __call__(self, data: bytes | bytearray | memoryview, initial: int = 0,
                 start: int = 0, /) -> int: ...


ones_sum: _OnesSum = ones_sum_py if NETFAST is None else NETFAST.ones_sum


def pseudo_sum(packet: bytes | bytearray, proto: int, length: int) -> int:
    """The IPv4 pseudo-header (RFC 793 3.1, RFC 768) of `packet`'s addresses."""
    return ones_sum(packet[12:20], proto + length)


def _fold_checksum(total: int) -> int:
    """The checksum field for a sum taken with the field at zero (never 0: UDP's
    "no checksum", RFC 768; 0xFFFF is the same one's-complement zero for TCP)."""
    return 0xFFFF - total  # total < 0xFFFF, so this is 1..0xFFFF


def ip_checksum(header: bytes | bytearray | memoryview) -> int:
    """The IPv4 header checksum of `header` with its checksum field at zero."""
    return _fold_checksum(ones_sum(header))


# -- read: the kernel's packets to plain IP packets -------------------------------

def from_kernel(frame: bytes) -> list[bytes]:
    """The IP packets of one read of a ``IFF_VNET_HDR`` TUN (header included)."""
    if len(frame) < VNET_HDR_LEN + 20:
        raise OffloadError(BAD_VNET_HDR)
    flags, gso_type, _hdr_len, gso_size, csum_start, csum_offset = _VNET.unpack_from(frame)
    packet = frame[VNET_HDR_LEN:]
    kind = gso_type & ~GSO_ECN
    if packet[0] >> 4 != 4:  # IPv6 (TSO6/USO6 come with TSO4/USO4): the caller drops it
        return [packet]
    if kind == GSO_NONE:
        if flags & F_NEEDS_CSUM:
            return [complete_checksum(packet, csum_start, csum_offset)]
        return [packet]
    if kind == GSO_TCPV4:
        return split_tcp(packet, gso_size)
    if kind == GSO_UDP_L4:
        return split_udp(packet, gso_size)
    raise OffloadError(BAD_VNET_HDR)  # TCPv6 on IPv4, UFO (never offered): not ours


def complete_checksum(packet: bytes, start: int, offset: int) -> bytes:
    """Finish a partial checksum: the sum from `start` to the end (the field holds
    the pseudo-header's), complemented, at `start + offset` (virtio 1.x 5.1.6.2)."""
    at = start + offset
    if start < 20 or at + 2 > len(packet):
        raise OffloadError(BAD_VNET_HDR)
    buf = bytearray(packet)
    struct.pack_into("!H", buf, at, _fold_checksum(ones_sum(buf, 0, start)))
    return bytes(buf)


def _ip_header(packet: bytes, proto: int) -> int:
    """The IPv4 header length of a super-packet of `proto`; checks what we rely on."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        raise OffloadError(BAD_SUPER_PACKET)
    ihl = (packet[0] & 0x0F) * 4
    total = int.from_bytes(packet[2:4], "big")
    if ihl < 20 or packet[9] != proto or total != len(packet):
        raise OffloadError(BAD_SUPER_PACKET)
    if packet[6] & 0x3F or packet[7]:  # MF or a fragment offset: not a whole datagram
        raise OffloadError(BAD_SUPER_PACKET)
    return ihl


def split_tcp(packet: bytes, mss: int) -> list[bytes]:
    """A TCPv4 super-packet cut into segments of `mss` payload bytes (tcp_gso_segment)."""
    ihl = _ip_header(packet, _TCP)
    if len(packet) < ihl + 20:
        raise OffloadError(BAD_SUPER_PACKET)
    thl = (packet[ihl + 12] >> 4) * 4
    hl = ihl + thl
    if thl < 20 or hl > len(packet) or mss <= 0:
        raise OffloadError(BAD_SUPER_PACKET)
    payload = memoryview(packet)[hl:]
    if not payload:
        raise OffloadError(BAD_SUPER_PACKET)
    ip_id = int.from_bytes(packet[4:6], "big")
    seq = int.from_bytes(packet[ihl + 4:ihl + 8], "big")
    flags = packet[ihl + 13]
    head = bytearray(packet[:hl])
    out = []
    last = (len(payload) - 1) // mss
    for i in range(last + 1):
        chunk = payload[i * mss:(i + 1) * mss]
        seg = head + chunk
        _set_ip(seg, ihl, (ip_id + i) & 0xFFFF)
        struct.pack_into("!I", seg, ihl + 4, (seq + i * mss) & 0xFFFFFFFF)
        f = flags if i == last else flags & ~(_FIN | _PSH)
        seg[ihl + 13] = f if i == 0 else f & ~_CWR
        _set_l4_checksum(seg, ihl, ihl + 16, _TCP)
        out.append(bytes(seg))
    return out


def split_udp(packet: bytes, size: int) -> list[bytes]:
    """A UDPv4 super-packet (UDP_SEGMENT) cut into datagrams of `size` payload bytes."""
    ihl = _ip_header(packet, _UDP)
    hl = ihl + 8
    if hl > len(packet) or size <= 0 or len(packet) == hl:
        raise OffloadError(BAD_SUPER_PACKET)
    payload = memoryview(packet)[hl:]
    ip_id = int.from_bytes(packet[4:6], "big")
    head = bytearray(packet[:hl])
    out = []
    for i in range((len(payload) + size - 1) // size):
        chunk = payload[i * size:(i + 1) * size]
        seg = head + chunk
        _set_ip(seg, ihl, (ip_id + i) & 0xFFFF)
        struct.pack_into("!H", seg, ihl + 4, 8 + len(chunk))
        _set_l4_checksum(seg, ihl, ihl + 6, _UDP)
        out.append(bytes(seg))
    return out


def _set_ip(seg: bytearray, ihl: int, ip_id: int) -> None:
    """Total length, id and header checksum of one segment."""
    struct.pack_into("!HH", seg, 2, len(seg), ip_id)
    seg[10:12] = b"\0\0"
    struct.pack_into("!H", seg, 10, ip_checksum(seg[:ihl]))


def _set_l4_checksum(seg: bytearray, ihl: int, at: int, proto: int) -> None:
    """The full TCP or UDP checksum of one segment, computed afresh (the kernel's
    field held the super-packet's pseudo-header sum)."""
    seg[at:at + 2] = b"\0\0"
    total = ones_sum(seg, pseudo_sum(seg, proto, len(seg) - ihl), ihl)
    struct.pack_into("!H", seg, at, _fold_checksum(total))


# -- write: the decrypted packets of one batch, coalesced -----------------------------

class _Run:
    """Consecutive TCP segments of one flow being joined (the first one's headers)."""

    __slots__ = ("ack", "count", "head", "hl", "ihl", "next_seq", "parts", "pushed", "short",
                 "size", "total")

    def __init__(self, packet: bytes, ihl: int, hl: int) -> None:
        self.head = packet
        self.ihl = ihl
        self.hl = hl
        self.ack = packet[ihl + 8:ihl + 12]
        self.size = len(packet) - hl  # gso_size: the first segment's payload
        self.next_seq = (int.from_bytes(packet[ihl + 4:ihl + 8], "big") + self.size) & 0xFFFFFFFF
        self.parts: list[bytes] = []  # the payloads of the segments joined
        self.pushed = bool(packet[ihl + 13] & _PSH)
        self.short = False
        self.count = 1
        self.total = len(packet)

    def takes(self, pkt: bytes, ihl: int, hl: int) -> bool:
        """Whether `pkt` (a candidate of the same addresses and ports) extends the run."""
        head = self.head
        n = len(pkt) - hl
        return (not self.pushed and not self.short and ihl == self.ihl and hl == self.hl
                and n <= self.size and self.total + n <= MAX_IP
                and pkt[ihl + 8:ihl + 12] == self.ack
                and int.from_bytes(pkt[ihl + 4:ihl + 8], "big") == self.next_seq
                and pkt[1] == head[1] and pkt[8] == head[8]  # TOS, TTL
                and pkt[6] >> 5 == head[6] >> 5  # DF (and the reserved bit)
                and pkt[ihl + 20:hl] == head[ihl + 20:hl])  # TCP options

    def add(self, pkt: bytes, hl: int) -> None:
        n = len(pkt) - hl
        self.parts.append(pkt[hl:])
        self.total += n
        self.count += 1
        self.next_seq = (self.next_seq + n) & 0xFFFFFFFF
        self.short = n < self.size
        self.pushed = bool(pkt[self.ihl + 13] & _PSH)

    def frame(self) -> bytes:
        """The super-packet behind its header (or the one packet behind a zero header):
        one join of the headers and the payloads (cheaper in CPython than a writev
        of a memoryview per segment, measured)."""
        if self.count == 1:
            return ZERO_HDR + self.head
        ihl, hl = self.ihl, self.hl
        head = bytearray(self.head[:hl])
        if self.pushed:
            head[ihl + 13] |= _PSH
        struct.pack_into("!H", head, 2, self.total)
        head[10:12] = b"\0\0"
        struct.pack_into("!H", head, 10, ip_checksum(head[:ihl]))
        # NEEDS_CSUM: the field holds the pseudo-header sum over the whole TCP length,
        # not complemented; the kernel adds the rest per segment (tcp_gso_segment).
        struct.pack_into("!H", head, ihl + 16,
                         pseudo_sum(head, _TCP, self.total - ihl) or 0xFFFF)
        hdr = _VNET.pack(F_NEEDS_CSUM, GSO_TCPV4, hl, self.size, ihl, 16)
        return b"".join((hdr, head, self.head[hl:], *self.parts))


def _candidate(pkt: bytes) -> tuple[int, int] | None:
    """(IP header length, IP + TCP header length) of a TCPv4 segment that may join a
    run: whole datagram, flags ACK or ACK|PSH, payload (its checksum: ``_sound``)."""
    n = len(pkt)
    if n < 40 or pkt[0] >> 4 != 4 or pkt[9] != _TCP:
        return None
    ihl = (pkt[0] & 0x0F) * 4
    if ihl < 20 or n < ihl + 20 or int.from_bytes(pkt[2:4], "big") != n:
        return None
    if pkt[6] & 0x3F or pkt[7]:
        return None
    if pkt[ihl + 13] & ~_PSH != _ACK:
        return None
    hl = ihl + (pkt[ihl + 12] >> 4) * 4
    if hl - ihl < 20 or hl >= n:
        return None
    return ihl, hl


def _sound(pkt: bytes, ihl: int) -> bool:
    """Whether the TCP checksum of `pkt` is right: a bad one stays bad (written alone,
    the kernel drops it), since the kernel completes a super-packet's checksum.
    Checked only when a segment is about to join or be joined."""
    n = len(pkt)
    # the addresses and the TCP segment in one sum when they are adjacent (no IP options)
    if ihl == 20:
        return ones_sum(pkt, _TCP + n - ihl, 12) == 0
    return ones_sum(pkt, pseudo_sum(pkt, _TCP, n - ihl), ihl) == 0


def coalesce_py(packets: list[bytes]) -> list[bytes]:
    """The writes for `packets` (virtio_net_hdr + packet), in their order, each flow's
    consecutive TCP segments joined (module doc). The reference of ``coalesce``."""
    frames: list[bytes | _Run] = []
    runs: dict[bytes, _Run] = {}
    for pkt in packets:
        where = _candidate(pkt)
        if where is None:
            if len(pkt) >= 24 and pkt[9] == _TCP:  # a FIN, SYN, pure ACK... ends its flow's run
                ihl = (pkt[0] & 0x0F) * 4
                runs.pop(pkt[12:20] + pkt[ihl:ihl + 4], None)
            frames.append(ZERO_HDR + pkt)
            continue
        ihl, hl = where
        key = pkt[12:20] + pkt[ihl:ihl + 4]
        run = runs.get(key)
        if run is not None and run.takes(pkt, ihl, hl):
            if run.count == 1 and not _sound(run.head, ihl):
                del runs[key]  # its head stays alone; this one may start a run
            elif not _sound(pkt, ihl):
                frames.append(ZERO_HDR + pkt)
                continue
            else:
                run.add(pkt, hl)
                continue
        run = _Run(pkt, ihl, hl)
        runs[key] = run
        frames.append(run)
    return [f.frame() if isinstance(f, _Run) else f for f in frames]


class _Coalesce(Protocol):
    def __call__(self, packets: list[bytes], /) -> list[bytes]: ...


# The C twin (_netfast.coalesce, same frames: tests/net/test_netfast.py) when built:
# the per-segment bookkeeping above was ~3 us a segment in Python (2026-12-04-netfast).
coalesce: _Coalesce = coalesce_py if NETFAST is None else NETFAST.coalesce


def parse_header(frame: bytes) -> tuple[int, int, int, int, int, int]:
    """The six fields of the virtio_net_hdr in front of `frame` (for tests and tools)."""
    if len(frame) < VNET_HDR_LEN:
        raise OffloadError(BAD_VNET_HDR)
    fields: tuple[int, int, int, int, int, int] = _VNET.unpack_from(frame)
    return fields
