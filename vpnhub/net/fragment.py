"""The VPN 3000 fragmentation policy: inner packets too big for the tunnel.  Sans-I/O.

ESP adds 50-80 bytes (SPI, sequence number, IV, padding, ICV, plus the outer
IP and UDP or TCP headers).  A full-size 1500-byte LAN packet therefore
becomes an outer packet above a 1500-byte path MTU, which the sending kernel
splits into IP fragments, and some NAT devices drop IP fragments (they
cannot translate a fragment without the UDP header, which only the first one
carries).  The VPN 3000 concentrator offers three choices per interface
(Configuration > Interfaces > Ethernet, "Fragmentation Policy"; the Cisco
note asks for "the second or third option" with NAT-T):

``none``
    Do not fragment before IPsec encapsulation: encrypt the whole packet and
    let the outer packet be fragmented on transmission (the data plane sets
    ``IP_PMTUDISC_DONT`` on its sockets so the kernel does).  Counted as
    ``outer_oversize`` and logged "outer packet needs fragmentation; policy
    none", since a fragment-dropping NAT device loses those packets.
``before-encryption``
    Fragment before encapsulation, with path MTU discovery (RFC 1191): an
    inner packet with DF set that exceeds the tunnel MTU is answered with an
    ICMP "fragmentation needed" (type 3 code 4) carrying the tunnel MTU as
    next-hop MTU, written back towards the sender; one without DF is split
    into inner IPv4 fragments (RFC 791 3.2) that each fit one ESP packet.
    The destination host reassembles them.
``clear-df``
    Fragment before encapsulation without path MTU discovery: clear DF and
    split, like the above for packets without DF.

The tunnel MTU (the largest inner packet whose ESP packet fits ``outer_mtu``)
depends on the SA's suite and the transport: :func:`max_inner_len`.
:class:`FragmentPolicy` makes the decision and keeps the counters (plain
ints, DATAPLANE.md); the data plane moves the bytes.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import Final

from vpnhub.esp.suites import Suite

FRAG_NONE: Final = "none"
FRAG_BEFORE_ENCRYPTION: Final = "before-encryption"
FRAG_CLEAR_DF: Final = "clear-df"
POLICIES: Final = (FRAG_NONE, FRAG_BEFORE_ENCRYPTION, FRAG_CLEAR_DF)

IP_DF: Final = 0x4000
IP_MF: Final = 0x2000
IP_OFFSET_MASK: Final = 0x1FFF
IPPROTO_ICMP: Final = 1
ICMP_DEST_UNREACH: Final = 3
ICMP_FRAG_NEEDED: Final = 4  # code: fragmentation needed and DF set (RFC 792, RFC 1191)
ICMP_ERROR_TYPES: Final = frozenset({3, 4, 5, 11, 12})  # never answered with an error
ICMP_ERROR_MAX: Final = 576  # RFC 1812 4.3.2.3: quote as much as fits in 576 bytes
MIN_MTU: Final = 68  # RFC 791: every IPv4 host must take 68 bytes unfragmented

# Outer headers in front of the ESP packet, by transport (IPv4 without options).
OUTER_HEADERS: Final = {
    "natt": 20 + 8,  # IP + UDP 4500 (RFC 3948)
    "natt-virtual": 20 + 8,  # the same, from the cluster's virtual address
    "cisco-udp": 20 + 8,  # IP + UDP 10000, no marker
    "esp": 20,  # IP protocol 50
    "ctcp": 20 + 32 + 16,  # IP + TCP with timestamps + cTCP trailer: one frame per segment
}

# Why an inner packet did not go out as it came (stable names, counted by the data plane).
DF_TOO_BIG: Final = "frag_needed_df"  # DF set and too big: answered with ICMP, dropped
CANNOT_FRAGMENT: Final = "cannot_fragment"  # malformed IPv4 header, or MTU below header + 8
OUTER_FRAGMENTED: Final = "outer packet needs fragmentation; policy none"


class FragmentError(ValueError):
    """The packet cannot be fragmented (malformed header, MTU too small)."""


def ipv4_checksum(header: bytes | bytearray | memoryview) -> int:
    """RFC 1071 one's complement sum of 16-bit words (checksum field included as is)."""
    if len(header) % 2:
        header = bytes(header) + b"\x00"
    total: int = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def max_inner_len(suite: Suite, outer_mtu: int, outer_header: int) -> int:
    """Largest inner packet whose ESP packet, with ``outer_header`` bytes, fits ``outer_mtu``.

    ESP length = 8 (SPI, sequence) + IV + payload padded with its 2 trailer
    bytes to the cipher block (RFC 4303 2.4) + ICV.
    """
    cipher = suite.cipher
    room = outer_mtu - outer_header - 8 - cipher.iv_len - suite.icv_len
    block = max(cipher.block_size, 4)
    return room - room % block - 2


def _header(packet: bytes) -> int:
    if len(packet) < 20 or packet[0] >> 4 != 4:
        raise FragmentError("not an IPv4 packet")
    hlen = (packet[0] & 0x0F) * 4
    total = int.from_bytes(packet[2:4], "big")
    if hlen < 20 or total < hlen or total > len(packet):
        raise FragmentError("inconsistent IPv4 lengths")
    return hlen


def _copied_options(options: bytes) -> bytes:
    """Options with the "copied" flag (RFC 791 3.1): they go into every fragment."""
    out = bytearray()
    i = 0
    while i < len(options):
        kind = options[i]
        if kind == 0:  # end of option list
            break
        if kind == 1:  # no-operation
            i += 1
            continue
        if i + 1 >= len(options) or options[i + 1] < 2:
            raise FragmentError("malformed IPv4 option")
        length = options[i + 1]
        if kind & 0x80:
            out += options[i:i + length]
        i += length
    out += b"\x00" * (-len(out) % 4)
    return bytes(out)


def _build(header: bytes, flags_offset: int, data: bytes | memoryview, ident: int) -> bytes:
    hlen = len(header)
    head = bytearray(header)
    head[0] = 0x40 | (hlen // 4)
    head[2:4] = (hlen + len(data)).to_bytes(2, "big")
    head[4:6] = ident.to_bytes(2, "big")
    head[6:8] = flags_offset.to_bytes(2, "big")
    head[10:12] = b"\x00\x00"
    head[10:12] = ipv4_checksum(head).to_bytes(2, "big")
    return bytes(head) + bytes(data)


def fragment(packet: bytes, mtu: int, *, ident: int | None = None) -> list[bytes]:
    """Split an IPv4 packet into fragments of at most ``mtu`` bytes (RFC 791 3.2).

    Every fragment but the last carries MF and a multiple of 8 data bytes;
    offsets count from the original datagram's (a fragment can be
    fragmented again).  DF is cleared.  ``ident`` replaces the IP ID (used
    when the original ID is 0, as Linux sends on DF packets, so that the
    fragments cannot be confused with another datagram's).
    """
    hlen = _header(packet)
    total = int.from_bytes(packet[2:4], "big")
    header = packet[:hlen]
    data = memoryview(packet)[hlen:total]
    flags_offset = int.from_bytes(packet[6:8], "big")
    base = flags_offset & IP_OFFSET_MASK
    last_mf = flags_offset & IP_MF
    ident = int.from_bytes(packet[4:6], "big") if ident is None else ident & 0xFFFF
    later_header = header[:20] + _copied_options(header[20:])
    pieces: list[bytes] = []
    pos = 0
    while True:
        head = header if pos == 0 else later_header
        room = (mtu - len(head)) & ~7
        if room < 8:
            raise FragmentError(f"MTU {mtu} leaves no room for data")
        chunk = data[pos:pos + room]
        pos += len(chunk)
        more = IP_MF if pos < len(data) else last_mf
        pieces.append(_build(head, more | (base + (pos - len(chunk)) // 8), chunk, ident))
        if pos >= len(data):
            return pieces


def may_answer_with_icmp(packet: bytes) -> bool:
    """RFC 1812 4.3.2.7: no ICMP error about ICMP errors, non-first fragments or odd sources."""
    hlen = (packet[0] & 0x0F) * 4
    if int.from_bytes(packet[6:8], "big") & IP_OFFSET_MASK:
        return False
    src = packet[12]
    if src == 0 or src == 127 or src >= 224:
        return False
    return not (packet[9] == IPPROTO_ICMP and len(packet) > hlen
                and packet[hlen] in ICMP_ERROR_TYPES)


def frag_needed(packet: bytes, mtu: int, source: bytes | None = None) -> bytes:
    """ICMP type 3 code 4 about ``packet``, with next-hop MTU ``mtu`` (RFC 1191 4).

    Sent from ``source`` (4 bytes; default the original destination: that
    address is routed through the tunnel on the side that receives it back,
    so reverse-path filters accept it) to the original source, quoting as
    much of the original as fits in 576 bytes.
    """
    quote = packet[:ICMP_ERROR_MAX - 28]
    icmp = bytearray(struct.pack("!BBHHH", ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, 0, 0, mtu))
    icmp += quote
    icmp[2:4] = ipv4_checksum(icmp).to_bytes(2, "big")
    src = packet[16:20] if source is None else source
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0xC0, 20 + len(icmp),
                               int.from_bytes(os.urandom(2), "big"), 0, 64, IPPROTO_ICMP, 0,
                               src, packet[12:16]))
    ip[10:12] = ipv4_checksum(ip).to_bytes(2, "big")
    return bytes(ip) + bytes(icmp)


@dataclass
class Decision:
    """What to do with one oversized inner packet."""

    encrypt: list[bytes] = field(default_factory=list)  # packets to encapsulate, in order
    to_sender: bytes | None = None  # ICMP to write back into the TUN
    drop: str | None = None  # stable reason when nothing is encrypted
    outer_fragmented: bool = False  # policy none: the kernel fragments the outer packet


class FragmentPolicy:
    """Decisions and counters for one data plane (see the module docstring).

    ``apply(packet, mtu, now)`` is called only for packets longer than the
    SA's tunnel MTU.  ICMP errors are limited to ``icmp_per_second`` (RFC
    1812 4.3.2.8).
    """

    def __init__(self, policy: str = FRAG_NONE, *, icmp_per_second: int = 100) -> None:
        if policy not in POLICIES:
            raise ValueError(f"fragmentation policy must be one of {', '.join(POLICIES)}")
        self.policy = policy
        self.icmp_per_second = icmp_per_second
        self.packets_fragmented = 0  # inner packets split before encryption
        self.fragments_made = 0  # inner fragments produced
        self.icmp_sent = 0  # ICMP "fragmentation needed" written back
        self.icmp_suppressed = 0  # ... not written (rate limit, or not allowed)
        self.df_cleared = 0  # packets whose DF was cleared (clear-df)
        self.outer_oversize = 0  # policy none: outer packets the kernel had to fragment
        self._id = int.from_bytes(os.urandom(2), "big")
        self._icmp_window = 0.0
        self._icmp_in_window = 0

    def stats(self) -> dict[str, object]:
        return {
            "policy": self.policy,
            "packets_fragmented": self.packets_fragmented,
            "fragments_made": self.fragments_made,
            "icmp_sent": self.icmp_sent,
            "icmp_suppressed": self.icmp_suppressed,
            "df_cleared": self.df_cleared,
            "outer_oversize": self.outer_oversize,
        }

    def apply(self, packet: bytes, mtu: int, now: float) -> Decision:
        if self.policy == FRAG_NONE:
            self.outer_oversize += 1
            return Decision([packet], outer_fragmented=True)
        try:
            df = int.from_bytes(packet[6:8], "big") & IP_DF
            if df and self.policy == FRAG_BEFORE_ENCRYPTION:
                return Decision(to_sender=self._icmp(packet, mtu, now), drop=DF_TOO_BIG)
            if df:
                self.df_cleared += 1
            ident = None
            if packet[4:6] == b"\x00\x00":
                self._id = (self._id + 1) & 0xFFFF
                ident = self._id
            pieces = fragment(packet, mtu, ident=ident)
        except (FragmentError, IndexError):
            return Decision(drop=CANNOT_FRAGMENT)
        self.packets_fragmented += 1
        self.fragments_made += len(pieces)
        return Decision(pieces)

    def _icmp(self, packet: bytes, mtu: int, now: float) -> bytes | None:
        if not may_answer_with_icmp(packet):
            self.icmp_suppressed += 1
            return None
        if now - self._icmp_window >= 1.0:
            self._icmp_window = now
            self._icmp_in_window = 0
        if self._icmp_in_window >= self.icmp_per_second:
            self.icmp_suppressed += 1
            return None
        self._icmp_in_window += 1
        self.icmp_sent += 1
        return frag_needed(packet, mtu)
