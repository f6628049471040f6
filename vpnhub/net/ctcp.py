"""Cisco "IPsec over TCP" (cTCP): IKE and ESP framed in one TCP connection.  Sans-I/O.

What the framing is, and where it is documented
-----------------------------------------------

Cisco never published cTCP.  Two public sources describe it:

* Wireshark's TCPENCAP dissector, ``epan/dissectors/packet-tcpencap.c`` in
  wireshark/wireshark ("TCP Encapsulation of IPsec Packets as supported by the
  cisco vpn3000 concentrator series", Joerg Mayer, 2007).  It treats one TCP
  segment as one encapsulated packet followed by a 16-byte trailer
  (``TRAILERLENGTH 16``; default port ``TCP_CISCO_IPSEC 10000``).  It names
  the trailer fields from captures without knowing their meaning (its TODO
  says "Find out the meaning of the (unknown) trailer"):

  ====== ====== ==========================================================
  offset length Wireshark's field
  ====== ====== ==========================================================
  0      4      ``tcpencap.zero`` "All zero"
  4      2      ``tcpencap.seq`` "Sequence number"
  6      2      IKE: ``tcpencap.ikedirection`` 0x0000 "Server to client",
                0x4000 "Client to server"; ESP: ``tcpencap.espzero``
  8      5      ``tcpencap.magic`` "Magic number"
  13     1      ``tcpencap.proto``: 0x11 "ISAKMP", 0x32 "ESP"
  14     2      ``tcpencap.magic2`` "Magic 2"
  ====== ====== ==========================================================

  An IKE packet is carried *with its UDP header*: the dissector recognises it
  by its first four bytes ``0x01f401f4`` (UDP source and destination port
  500) and hands the bytes before the trailer to the UDP dissector, which
  then decodes ISAKMP; anything else before the trailer goes to the ESP
  dissector, starting at the SPI.  Its heuristic accepts a segment when the
  trailer's first 4 bytes are zero, the low 12 bits of offset 6 are zero and
  the protocol byte is 17 or 50.  There is no length field, no preamble and
  no handshake beyond TCP's own.

* The constants the dissector leaves unknown are in INSIDE Secure's QuickSec
  engine (``engine_tcp_encaps.c`` / ``engine_tcp_encaps.h``, published on
  GitHub), an implementation that interoperates with the Cisco VPN client:
  bytes 8-11 are a constant cookie ``21 45 6c 69`` ("!Eli"), byte 12 is
  ``0x10``, byte 13 the protocol (17 or 50), bytes 14-15 ``01 00``; bytes
  4-5 carry a 16-bit sequence on IKE packets (QuickSec copies the IP ID)
  and are zero on ESP.  It zeroes the inner UDP checksum ("the Cisco VPN
  client does not recalculate UDP checksum during decapsulation"), and its
  connections follow a plain TCP three-way handshake after which the first
  packet is IKE (the connection is bound to the IKE initiator cookie and is
  closed if no IKE negotiation completes).

How vpnhub reads a byte stream
------------------------------

Cisco's cTCP is a pseudo-TCP: each TCP segment carries exactly one packet.
vpnhub uses the kernel's TCP, whose segments do not follow ``send()`` calls,
so :class:`CtcpFramer` finds frame boundaries in the stream itself:

* a frame whose first bytes are a UDP header from and to port 500 (or 4500)
  is IKE: the UDP length field says where the trailer starts, and the
  trailer found there must say protocol 17;
* anything else is ESP, which carries no length: the frame ends at the next
  trailer, found by its fixed bytes (4 zero bytes, then at offset 8 the
  5-byte magic ``21 45 6c 69 10`` and protocol 50).  Ciphertext matches
  those 10 fixed bytes by chance with probability 2^-80 per position.

Output follows the Cisco layout exactly (one frame per ``send``, the caller
sets ``TCP_NODELAY``), so Wireshark decodes it with
``-d tcp.port==10000,tcpencap``.

Garbage (no trailer within :data:`MAX_FRAME` bytes, a trailer naming a
protocol other than UDP or ESP, a frame starting with SPI 0) raises
:class:`CtcpError` with a stable reason; the connection must then be
dropped: a byte stream cannot be resynchronised safely.
"""

from __future__ import annotations

import struct
from typing import Final, Literal, NamedTuple

DEFAULT_PORT: Final = 10000  # TCP_CISCO_IPSEC in packet-tcpencap.c
TRAILER_LEN: Final = 16  # TRAILERLENGTH in packet-tcpencap.c
MAGIC: Final = b"\x21\x45\x6c\x69\x10"  # trailer bytes 8-12 (QuickSec cookie "!Eli" + 0x10)
MAGIC2: Final = b"\x01\x00"  # trailer bytes 14-15
PROTO_IKE: Final = 17  # the trailer says "UDP": an IKE packet with its UDP header
PROTO_ESP: Final = 50
DIR_SERVER_TO_CLIENT: Final = 0x0000
DIR_CLIENT_TO_SERVER: Final = 0x4000
IKE_PORT: Final = 500
NATT_PORT: Final = 4500
UDP_HEADER_LEN: Final = 8
ISAKMP_HEADER_LEN: Final = 28
ESP_MIN_LEN: Final = 8  # SPI + sequence number
MAX_PAYLOAD: Final = 65535
MAX_FRAME: Final = MAX_PAYLOAD + TRAILER_LEN
NON_ESP_MARKER: Final = b"\x00\x00\x00\x00"

_ZERO4: Final = b"\x00\x00\x00\x00"
_ESP_ANCHOR: Final = MAGIC + bytes([PROTO_ESP])  # trailer bytes 8-13 of an ESP frame
_IKE_UDP_HEADS: Final = frozenset({
    struct.pack("!HH", IKE_PORT, IKE_PORT), struct.pack("!HH", NATT_PORT, NATT_PORT)})
_UDP: Final = struct.Struct("!HHHH")  # source port, destination port, length, checksum

Kind = Literal["ike", "esp"]
Role = Literal["client", "server"]

# Stable reasons (the connection is dropped; the data plane counts them).
FRAME_TOO_LONG: Final = "ctcp_frame_too_long"  # no trailer within MAX_FRAME bytes
BAD_PROTOCOL: Final = "ctcp_bad_protocol"  # trailer names neither UDP (IKE) nor ESP
ZERO_SPI: Final = "ctcp_zero_spi"  # an "ESP" frame starting with SPI 0 (RFC 4303 2.1)
ALL_REASONS: Final = (FRAME_TOO_LONG, BAD_PROTOCOL, ZERO_SPI)


class CtcpError(Exception):
    """The stream is not cTCP; ``reason`` is one of the stable names above."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class Frame(NamedTuple):
    """One packet out of the stream: an IKE message (UDP header removed) or ESP.

    A named tuple: it is made once per packet on the data path (0.1 us
    against 0.8 us for a frozen dataclass).
    """

    kind: Kind
    payload: bytes


def trailer(proto: int, seq: int = 0, direction: int = 0) -> bytes:
    """The 16-byte trailer (layout in the module docstring)."""
    return b"".join((_ZERO4, struct.pack("!HH", seq & 0xFFFF, direction), MAGIC,
                     bytes([proto]), MAGIC2))


ESP_TRAILER: Final = trailer(PROTO_ESP)


def encode_ike(message: bytes, *, seq: int = 0, direction: int = DIR_CLIENT_TO_SERVER) -> bytes:
    """An IKE message as one cTCP frame: UDP header (checksum 0) + message + trailer."""
    length = UDP_HEADER_LEN + len(message)
    if length > MAX_PAYLOAD:
        raise ValueError("IKE message too long for one cTCP frame")
    return b"".join((_UDP.pack(IKE_PORT, IKE_PORT, length, 0), message,
                     trailer(PROTO_IKE, seq, direction)))


def encode_esp(packet: bytes) -> bytes:
    """An ESP packet (starting at the SPI) as one cTCP frame."""
    if len(packet) > MAX_PAYLOAD:
        raise ValueError("ESP packet too long for one cTCP frame")
    return packet + ESP_TRAILER


class CtcpFramer:
    """One direction-pair of a cTCP connection: splits received bytes, frames sent ones.

    ``feed(data)`` returns the complete frames found so far and keeps the
    rest (at most :data:`MAX_FRAME` bytes of an unfinished frame, plus what
    arrived with it); it raises :class:`CtcpError` on garbage.  ``role``
    picks the IKE direction written in the trailer.
    """

    __slots__ = ("_buf", "_scan", "ike_seq", "role")

    def __init__(self, role: Role = "client") -> None:
        self.role: Role = role
        self.ike_seq = 0
        self._buf = b""  # the unfinished frame
        self._scan = 0  # where the ESP trailer search resumes in it (no rescans)

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def encode_ike(self, message: bytes) -> bytes:
        """Frame an IKE message; the trailer carries this side's direction and a sequence."""
        self.ike_seq = (self.ike_seq + 1) & 0xFFFF
        direction = DIR_CLIENT_TO_SERVER if self.role == "client" else DIR_SERVER_TO_CLIENT
        return encode_ike(message, seq=self.ike_seq, direction=direction)

    @staticmethod
    def encode_esp(packet: bytes) -> bytes:
        return encode_esp(packet)

    def feed(self, data: bytes) -> list[Frame]:
        """Frames completed by ``data``; raises :class:`CtcpError` on garbage."""
        buf = self._buf + data if self._buf else bytes(data)
        frames: list[Frame] = []
        pos = 0
        scan = self._scan
        while pos < len(buf):
            end = self._ike_end(buf, pos)
            if end is None:  # not IKE: ESP up to the next ESP trailer
                end, scan = self._esp_end(buf, pos, scan)
                if end < 0:
                    break
                frames.append(Frame("esp", buf[pos:end]))
            elif end < 0:
                break  # an IKE frame, not complete yet
            else:
                message = buf[pos + UDP_HEADER_LEN:end]
                if buf[pos:pos + 2] == b"\x11\x94" and message[:4] == NON_ESP_MARKER:
                    message = message[4:]  # from port 4500: drop the non-ESP marker
                frames.append(Frame("ike", message))
            pos = end + TRAILER_LEN
            scan = 0
        self._buf = buf[pos:]
        self._scan = scan - pos if scan else 0
        return frames

    @staticmethod
    def _ike_end(buf: bytes, pos: int) -> int | None:
        """End of the IKE frame at ``pos`` (-1: incomplete), or None if it is not IKE.

        Length-delimited: nothing inside an IKE message is searched (its
        content is the sender's to choose, trailer look-alikes included).
        """
        if len(buf) - pos < UDP_HEADER_LEN or buf[pos:pos + 4] not in _IKE_UDP_HEADS:
            return None
        length = (buf[pos + 4] << 8) | buf[pos + 5]
        if length < UDP_HEADER_LEN + ISAKMP_HEADER_LEN:
            return None  # an ESP packet whose SPI reads 0x01f401f4
        end = pos + length
        if len(buf) < end + TRAILER_LEN:
            return -1
        if buf[end:end + 4] == _ZERO4 and buf[end + 8:end + 13] == MAGIC:
            proto = buf[end + 13]
            if proto == PROTO_IKE:
                return end
            if proto != PROTO_ESP:
                raise CtcpError(BAD_PROTOCOL, f"trailer protocol {proto}")
        return None  # no IKE trailer there: ESP after all

    @staticmethod
    def _esp_end(buf: bytes, pos: int, scan: int) -> tuple[int, int]:
        """(end of the ESP frame at ``pos`` or -1 if incomplete, where to resume the search)."""
        if buf[pos:pos + 4] == _ZERO4:
            raise CtcpError(ZERO_SPI, "frame starts with 4 zero bytes")
        first = pos + ESP_MIN_LEN + 8  # the anchor sits 8 bytes into the trailer
        start = max(scan, first)
        while True:
            at = buf.find(_ESP_ANCHOR, start)
            if at < 0:
                if len(buf) - pos > MAX_FRAME:
                    raise CtcpError(FRAME_TOO_LONG, f"{len(buf) - pos} bytes without a trailer")
                # Resume where a partial anchor could still begin.
                return -1, max(first, len(buf) - len(_ESP_ANCHOR) + 1)
            if buf[at - 8:at - 4] == _ZERO4:
                end = at - 8
                if len(buf) < end + TRAILER_LEN:
                    return -1, at  # found again once the trailer is complete
                return end, 0
            start = at + 1
