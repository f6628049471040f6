"""Checks on the decrypted inner packet (tunnel mode, IPv4).

RFC 4301 5.2 step 4: after decryption the receiver must check that the inner
packet matches the SA's traffic selectors.  For a remote-access client that
means: its source address is the one the concentrator assigned to it (Mode
Config).  Without this a client could spoof other clients' or LAN addresses.
"""

from __future__ import annotations

import ipaddress

from .errors import BAD_INNER_PACKET, SPOOFED_SOURCE, EspDrop

_PROTOCOLS = {1: "ICMP", 2: "IGMP", 6: "TCP", 17: "UDP", 41: "IPv6", 47: "GRE", 50: "ESP",
              58: "ICMPv6", 103: "PIM", 112: "VRRP", 132: "SCTP"}
_ICMP_TYPES = {0: "echo reply", 3: "destination unreachable", 5: "redirect",
               8: "echo request", 11: "time exceeded"}


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


def refused_head(packet: bytes) -> bytes:
    """What an SA keeps of a refused inner packet (``EspSA.refused``): the IP header
    and the first 4 bytes after it (ports, ICMP type and code), never the payload;
    the first 20 bytes of what is not IPv4 or IPv6."""
    version = packet[0] >> 4 if packet else 0
    if version == 4 and len(packet) >= 20:
        return packet[:max(20, (packet[0] & 0x0F) * 4) + 4]
    if version == 6 and len(packet) >= 40:
        return packet[:44]
    return packet[:20]


def describe_inner(packet: bytes) -> str:
    """The headers of an inner packet in words, for a debug line: "ICMP 10.10.10.2 ->
    192.168.2.10 echo request", "UDP 10.10.10.2:5353 -> 224.0.0.251:5353", "IPv6
    fe80::1 -> ff02::2 ICMPv6"; never its payload."""
    version = packet[0] >> 4 if packet else 0
    if version == 4 and len(packet) >= 20:
        return _describe_ipv4(packet)
    if version == 6 and len(packet) >= 40:
        src = ipaddress.IPv6Address(packet[8:24])
        dst = ipaddress.IPv6Address(packet[24:40])
        return f"IPv6 {src} -> {dst} {_protocol(packet[6])}"
    if version == 4:
        return f"a truncated IPv4 header ({len(packet)} bytes)"
    return f"a packet of IP version {version}"


def refused_text(packet: bytes, allowed_src: bytes | None) -> str:
    """``describe_inner`` and why the inner checks refused it (RFC 4301 5.2: the
    source must be the address the concentrator assigned, ``allowed_src``)."""
    what = describe_inner(packet)
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return f"{what}, not an IPv4 packet"
    if allowed_src is not None and packet[12:16] != allowed_src:
        return f"{what}, its source is not the assigned address {_ipv4(allowed_src)}"
    return f"{what}, too short"  # under the TUN's minimum (receive_run's min_inner)


def _describe_ipv4(packet: bytes) -> str:
    header = (packet[0] & 0x0F) * 4
    proto = packet[9]
    src, dst = _ipv4(packet[12:16]), _ipv4(packet[16:20])
    first = (packet[6] & 0x1F) == 0 and packet[7] == 0  # fragment offset 0 (RFC 791 3.1)
    after = packet[header:header + 4] if first and header >= 20 else b""
    if proto in (6, 17) and len(after) == 4:
        sport, dport = int.from_bytes(after[:2], "big"), int.from_bytes(after[2:], "big")
        return f"{_protocol(proto)} {src}:{sport} -> {dst}:{dport}"
    text = f"{_protocol(proto)} {src} -> {dst}"
    if proto == 1 and len(after) >= 2:
        kind = _ICMP_TYPES.get(after[0], f"type {after[0]}")
        return f"{text} {kind}" + (f" code {after[1]}" if after[1] else "")
    return text


def _protocol(number: int) -> str:
    return _PROTOCOLS.get(number, f"protocol {number}")


def _ipv4(packed: bytes) -> str:
    return str(ipaddress.IPv4Address(packed))
