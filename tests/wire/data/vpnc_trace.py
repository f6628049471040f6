"""Rebuild ISAKMP packets from a `vpnc --debug 3` trace (independently of vpnhub.wire).

vpnc 0.5.3 prints every packet it sends (before encryption) and receives (after
decryption) field by field, in wire order ("BEGIN_PARSE ... PARSE_OK"). Each
field line maps to a fixed number of bytes, so the packet can be rebuilt
exactly; the RESERVED fields vpnc does not print are zero. Cleartext messages
come back whole (header + payloads); encrypted ones as the decrypted payload
chain without padding (their header length counts the ciphertext). Packets
whose values vpnc hides (the XAUTH reply with the password) are skipped.

    python tests/wire/data/vpnc_trace.py tests/wire/data/vpnc-labc1-debug3.log \
        tests/wire/data
"""

from __future__ import annotations

import re
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

_FIELD = re.compile(r"^\s+([a-z_.0-9]+): ?([0-9a-f ]*)(?: \(.*\))?\s*$")
_HEX_LINE = re.compile(r"^\s+[0-9a-f]{1,8}( [0-9a-f]{1,8})*\s*$")
_PAYLOAD = re.compile(r"^\s+PARSING PAYLOAD type: ([0-9a-f]{2})")
_EXCHANGE = re.compile(r"exchange_type: ([0-9a-f]{2}) \(ISAKMP_EXCHANGE_([A-Z_]+)\)")

# field name -> byte width (0 = variable, the hex as printed)
_WIDTHS = {
    "sa.doi": 4,
    "sa.situation": 4,
    "p.number": 1,
    "p.prot_id": 1,
    "p.spi_size": 1,
    "p.spi": 0,
    "t.number": 1,
    "id.type": 1,
    "id.protocol": 1,
    "id.port": 2,
    "id.data": 0,
    "ke.data": 0,
    "n.doi": 4,
    "n.protocol": 1,
    "n.spi_length": 1,
    "n.type": 2,
    "n.spi": 0,
    "n.data": 0,
    "d.doi": 4,
    "d.protocol": 1,
    "d.spi_length": 1,
    "d.num_spi": 2,
    "d.spi": 0,
    "modecfg.id": 2,
    "t.attributes.u.lots.data": 0,
    "t.attributes.u.acl.addr": 4,
    "t.attributes.u.acl.mask": 4,
    "t.attributes.u.acl.protocol": 2,
    "t.attributes.u.acl.sport": 2,
    "t.attributes.u.acl.dport": 2,
}


@dataclass
class TracedPacket:
    direction: str  # "send" or "recv"
    header: dict[str, str] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)
    complete: bool = True

    @property
    def encrypted(self) -> bool:
        return int(self.header["flags"], 16) & 1 == 1

    @property
    def exchange(self) -> str:
        return self.header["exchange"].lower()

    def header_bytes(self) -> bytes:
        h = self.header
        return (
            bytes.fromhex(h["i_cookie"])
            + bytes.fromhex(h["r_cookie"])
            + bytes.fromhex(h["payload"] + h["isakmp_version"] + h["exchange_type"] + h["flags"])
            + bytes.fromhex(h["message_id"] + h["len"])
        )

    def wire_bytes(self) -> bytes:
        """The whole message (cleartext) or the decrypted payload chain (encrypted)."""
        if self.encrypted:
            return bytes(self.body)
        return self.header_bytes() + bytes(self.body)


_HEADER_KEYS = ("i_cookie", "r_cookie", "payload", "isakmp_version", "exchange_type", "flags")


class _Parser:
    def __init__(self) -> None:
        self.packets: list[TracedPacket] = []
        self.pending_direction = ""
        self.packet: TracedPacket | None = None
        self.attr_type = 0
        self.last_field = ""
        self.in_header = False

    def feed(self, line: str) -> None:
        if "sending: ====" in line:
            self.pending_direction = "send"
        elif "receiving: <===" in line:
            self.pending_direction = "recv"
        elif "BEGIN_PARSE" in line:
            self.packet = TracedPacket(self.pending_direction or "recv")
            self.pending_direction = ""
            self.in_header = True
        elif self.packet is not None:
            self._packet_line(self.packet, line)

    def _packet_line(self, packet: TracedPacket, line: str) -> None:
        if "PARSE_OK" in line:
            self.packets.append(packet)
            self.packet = None
        elif "not dumping" in line:
            packet.complete = False
        elif self.in_header:
            self._header_line(packet, line)
        elif _PAYLOAD.match(line) or _HEX_LINE.match(line):
            if _HEX_LINE.match(line) and _WIDTHS.get(self.last_field) == 0:
                packet.body += bytes.fromhex(line.replace(" ", "").strip())
        else:
            match = _FIELD.match(line)
            if match:
                self._field(packet, match.group(1), match.group(2).replace(" ", ""))

    def _header_line(self, packet: TracedPacket, line: str) -> None:
        match = _FIELD.match(line)
        exchange = _EXCHANGE.search(line)
        if exchange:
            packet.header["exchange"] = exchange.group(2)
        if match:
            key, value = match.group(1), match.group(2).replace(" ", "")
            if key in (*_HEADER_KEYS, "message_id", "len"):
                packet.header[key] = value
            if key == "len":
                self.in_header = False

    def _field(self, packet: TracedPacket, name: str, value: str) -> None:
        self.last_field = name
        body = packet.body
        if name == "next_type":
            body += bytes.fromhex(value) + b"\0"  # next payload, RESERVED
        elif name == "length":
            # payload length (4 hex digits) or, after p.spi_size, # of transforms (2)
            body += bytes.fromhex(value)
        elif name == "t.id":
            body += bytes.fromhex(value) + b"\0\0"  # transform ID, RESERVED2
        elif name == "modecfg.type":
            body += bytes.fromhex(value) + b"\0"  # type, RESERVED
        elif name == "t.attributes.type":
            self.attr_type = int(value, 16)
        elif name == "t.attributes.u.attr_16":
            body += struct.pack("!HH", self.attr_type | 0x8000, int(value, 16))
        elif name == "t.attributes.u.lots.length":
            body += struct.pack("!HH", self.attr_type, int(value, 16))
        elif name in _WIDTHS:
            body += bytes.fromhex(value)


def parse_trace(text: str) -> list[TracedPacket]:
    parser = _Parser()
    for line in text.splitlines():
        parser.feed(line)
    return parser.packets


def check_chain(packet: TracedPacket) -> None:
    """The rebuilt bytes must agree with every length vpnc printed."""
    data = packet.wire_bytes()
    if not packet.encrypted:
        assert len(data) == int(packet.header["len"], 16), "header length"
        offset, next_type = 28, int(packet.header["payload"], 16)
    else:
        offset, next_type = 0, int(packet.header["payload"], 16)
    while next_type:
        next_type, _, length = struct.unpack_from("!BBH", data, offset)
        offset += length
    assert offset == len(data), "payload chain does not end at the last byte"


def file_names(packets: list[TracedPacket]) -> list[tuple[str, TracedPacket]]:
    named = []
    for index, packet in enumerate(packets, 1):
        if not packet.complete:
            continue
        kind = "plain" if packet.encrypted else "msg"
        named.append((f"{index:02d}_{packet.direction}_{packet.exchange}_{kind}.bin", packet))
    return named


def main(log: str, out_dir: str) -> None:
    packets = parse_trace(Path(log).read_text(errors="replace"))
    for name, packet in file_names(packets):
        check_chain(packet)
        Path(out_dir, name).write_bytes(packet.wire_bytes())
        print(name, len(packet.wire_bytes()))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
