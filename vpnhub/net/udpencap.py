"""RFC 3948 UDP encapsulation: what a datagram on UDP 4500 carries.

On the NAT-T port one socket carries three things (RFC 3948 2.1-2.3):

- a NAT keepalive: exactly one byte 0xFF, sent only to keep a NAT mapping
  open; the receiver ignores it (we count it);
- an IKE message, after a four-byte non-ESP marker of zeros (the marker sits
  where an ESP SPI would be, and SPI 0 is reserved, so it cannot be ESP);
- an ESP packet starting at its SPI (anything else of at least 8 bytes:
  SPI + sequence number).

Cisco IPsec over UDP (the VPN 3000's "IPsec over UDP", vpnc's ``--natt-mode
cisco-udp``) uses its own UDP port (default 10000) for ESP only: IKE stays
on UDP 500, so no non-ESP marker exists there.  Its NAT keepalive is the
five bytes ``00 00 00 00 ff`` (vpnc's ``tunip.c`` sends exactly that in
cisco-udp mode, every 9 s; in RFC 3948 mode it sends the single 0xFF):
:func:`classify_cisco_udp` tells ESP and keepalives apart on that port
(a lone 0xFF is accepted too) and refuses everything else.

Sans-I/O: pure functions over bytes.  The data plane inlines the ESP test
(the hot path) and calls :func:`classify` for the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

NON_ESP_MARKER: Final = b"\x00\x00\x00\x00"
NAT_KEEPALIVE: Final = b"\xff"
CISCO_UDP_KEEPALIVE: Final = b"\x00\x00\x00\x00\xff"  # vpnc tunip.c, cisco-udp mode
IKE_HEADER_LEN: Final = 28  # RFC 2408 3.1
ESP_MIN_LEN: Final = 8  # SPI + sequence number

# Quick Mode ENCAPSULATION_MODE values that mean "ESP inside UDP" (RFC 3947 5.1 and
# the draft-ietf-ipsec-nat-t-ike values still sent by clients in the field).
UDP_ENCAPSULATION_MODES: Final = frozenset({3, 4, 61443, 61444})

# Stable drop reasons for datagrams that are none of the above.
EMPTY_DATAGRAM: Final = "empty_datagram"
SHORT_DATAGRAM: Final = "short_datagram"  # 1..7 bytes and not a keepalive
SHORT_IKE: Final = "short_ike"  # marker present but no room for an ISAKMP header
CISCO_UDP_NOT_ESP: Final = "cisco_udp_not_esp"  # SPI 0 on the Cisco UDP port: no IKE there


@dataclass(frozen=True, slots=True)
class Keepalive:
    """NAT keepalive (RFC 3948 2.3)."""


@dataclass(frozen=True, slots=True)
class Ike:
    """IKE message found after the non-ESP marker (RFC 3948 2.2)."""

    message: bytes


@dataclass(frozen=True, slots=True)
class Esp:
    """ESP packet, starting at the SPI (RFC 3948 2.1)."""

    packet: bytes

    @property
    def spi(self) -> int:
        return int.from_bytes(self.packet[:4], "big")


@dataclass(frozen=True, slots=True)
class Malformed:
    reason: str


Datagram = Keepalive | Ike | Esp | Malformed

KEEPALIVE: Final = Keepalive()


def classify(datagram: bytes) -> Datagram:
    """Tell keepalive, IKE, ESP and garbage apart in one UDP 4500 payload."""
    n = len(datagram)
    if n == 1 and datagram[0] == 0xFF:
        return KEEPALIVE
    if n >= 4 and datagram[:4] == NON_ESP_MARKER:
        if n < 4 + IKE_HEADER_LEN:
            return Malformed(SHORT_IKE)
        return Ike(datagram[4:])
    if n >= ESP_MIN_LEN:
        return Esp(datagram)
    return Malformed(EMPTY_DATAGRAM if n == 0 else SHORT_DATAGRAM)


def classify_cisco_udp(datagram: bytes) -> Datagram:
    """Keepalive, ESP or garbage in one Cisco IPsec over UDP payload (no IKE on that port)."""
    n = len(datagram)
    if datagram == CISCO_UDP_KEEPALIVE or (n == 1 and datagram[0] == 0xFF):
        return KEEPALIVE
    if n >= 4 and datagram[:4] == NON_ESP_MARKER:
        return Malformed(CISCO_UDP_NOT_ESP)
    if n >= ESP_MIN_LEN:
        return Esp(datagram)
    return Malformed(EMPTY_DATAGRAM if n == 0 else SHORT_DATAGRAM)


def ike_datagram(message: bytes) -> bytes:
    """An IKE message as sent on UDP 4500: non-ESP marker + message."""
    return NON_ESP_MARKER + message


def keepalive_datagram() -> bytes:
    """The one-byte NAT keepalive payload."""
    return NAT_KEEPALIVE
