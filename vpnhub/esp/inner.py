"""Checks on the decrypted inner packet (tunnel mode, IPv4).

RFC 4301 5.2 step 4: after decryption the receiver must check that the inner
packet matches the SA's traffic selectors.  For a remote-access client that
means: its source address is the one the concentrator assigned to it (Mode
Config).  Without this a client could spoof other clients' or LAN addresses.
"""

from __future__ import annotations

import ipaddress

from .errors import BAD_INNER_PACKET, SPOOFED_SOURCE, EspDrop


def check_inner_source(packet: bytes, allowed_src: bytes) -> None:
    """Raise ``EspDrop`` unless ``packet`` is IPv4 from ``allowed_src`` (4 bytes)."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        raise EspDrop(BAD_INNER_PACKET)
    if packet[12:16] != allowed_src:
        raise EspDrop(SPOOFED_SOURCE)


def inner_source_reason(packet: bytes, allowed_src: bytes) -> str | None:
    """Same check, returning the drop reason (or None) instead of raising."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return BAD_INNER_PACKET
    if packet[12:16] != allowed_src:
        return SPOOFED_SOURCE
    return None


def ipv4_bytes(address: str) -> bytes:
    """'10.40.1.1' -> b'\\x0a\\x28\\x01\\x01' (the form the lookups key on)."""
    return ipaddress.IPv4Address(address).packed
