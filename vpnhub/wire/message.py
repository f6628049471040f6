"""The ISAKMP header and whole messages (RFC 2408 3.1, 5.1).

`decode_message` handles cleartext messages, or E-flag messages when the caller
has already decrypted the body; the IKE engine owns the crypto.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import TypeVar

from vpnhub.wire.constants import ExchangeType, Flag, NotifyType, PayloadType, enum_name
from vpnhub.wire.errors import Reason, WireError
from vpnhub.wire.payloads import (
    Payload,
    VendorIDPayload,
    cisco_label,
    decode_payloads,
    encode_payloads,
    payload_label,
)

HEADER_LEN = 28
ISAKMP_VERSION = 0x10  # major 1, minor 0 (RFC 2408 3.1)

_HEADER = struct.Struct("!8s8sBBBBII")  # RFC 2408 3.1 figure 2
_ENCRYPTED = int(Flag.ENCRYPTION)  # a plain int: IntFlag bit operations run Python code

# Short exchange names of the Cisco client / VPN 3000 logs ("ISAKMP OAK AG").
_CISCO_EXCHANGE: dict[int, str] = {
    ExchangeType.BASE: "BASE",
    ExchangeType.IDENTITY_PROTECTION: "MM",
    ExchangeType.AUTH_ONLY: "AUTH",
    ExchangeType.AGGRESSIVE: "AG",
    ExchangeType.INFORMATIONAL: "INFO",
    ExchangeType.TRANSACTION: "TRANS",
    ExchangeType.QUICK_MODE: "QM",
    ExchangeType.NEW_GROUP_MODE: "NGM",
}

P = TypeVar("P")


@dataclass
class Header:
    """The fixed 28-byte ISAKMP header."""

    icookie: bytes
    rcookie: bytes
    next_payload: int
    exchange: int
    flags: int
    message_id: int
    length: int
    version: int = ISAKMP_VERSION

    @property
    def encrypted(self) -> bool:
        return bool(self.flags & _ENCRYPTED)


def decode_header(data: bytes) -> Header:
    """Decode and check the header: size, major version 1, length == len(data)."""
    if len(data) < HEADER_LEN:
        raise WireError(Reason.TRUNCATED_HEADER, detail=f"{len(data)} bytes")
    icookie, rcookie, next_payload, version, exchange, flags, message_id, length = (
        _HEADER.unpack_from(data)
    )
    if version >> 4 != 1:
        raise WireError(Reason.BAD_VERSION, NotifyType.INVALID_MAJOR_VERSION, f"{version:#04x}")
    if length != len(data):
        # RFC 2408 5.1: the header length must be the length of the message.
        raise WireError(
            Reason.BAD_LENGTH,
            NotifyType.UNEQUAL_PAYLOAD_LENGTHS,
            f"header says {length}, received {len(data)}",
        )
    return Header(icookie, rcookie, next_payload, exchange, flags, message_id, length, version)


def encode_header(h: Header) -> bytes:
    if len(h.icookie) != 8 or len(h.rcookie) != 8:
        raise WireError(Reason.ENCODE_ERROR, None, "cookies must be 8 bytes")
    try:
        return _HEADER.pack(
            h.icookie,
            h.rcookie,
            h.next_payload,
            h.version,
            h.exchange,
            h.flags,
            h.message_id,
            h.length,
        )
    except struct.error as exc:
        raise WireError(Reason.ENCODE_ERROR, None, f"header: {exc}") from exc


@dataclass
class Message:
    """An ISAKMP message: header fields and the (plaintext) payload list."""

    icookie: bytes
    rcookie: bytes
    exchange: int
    flags: int
    message_id: int
    payloads: list[Payload] = field(default_factory=list)
    version: int = ISAKMP_VERSION

    @property
    def encrypted(self) -> bool:
        return bool(self.flags & _ENCRYPTED)

    def payload_names(self) -> list[str]:
        """Cisco log style names: ["SA", "KE", "NON", "ID", "VID"]."""
        return [cisco_label(p) for p in self.payloads]

    def describe(self, detail: bool = False) -> str:
        """One log line, e.g. `AGGRESSIVE flags=00 msgid=00000000 SA KE NONCE ID VID`.

        With detail=True each payload name is replaced by its describe().
        """
        names = [p.describe() if detail else payload_label(p) for p in self.payloads]
        exchange = enum_name(ExchangeType, self.exchange, "EXCHANGE_")
        head = f"{exchange} flags={self.flags:02x} msgid={self.message_id:08x}"
        return " ".join([head, *names])

    def cisco_summary(self) -> str:
        """Cisco client log style, `ISAKMP OAK AG (SA, KE, NON, ID, VID)`.

        An encrypted message is marked `*(...)`; the logger adds "SENDING >>> ".
        """
        exchange = _CISCO_EXCHANGE.get(self.exchange, str(self.exchange))
        star = "*" if self.encrypted else ""
        return f"ISAKMP OAK {exchange} {star}({', '.join(self.payload_names())})"

    def get(self, kind: type[P]) -> P | None:
        """The first payload of the given class, if any."""
        return next((p for p in self.payloads if isinstance(p, kind)), None)

    def get_all(self, kind: type[P]) -> list[P]:
        return [p for p in self.payloads if isinstance(p, kind)]

    def vendor_ids(self) -> list[bytes]:
        return [p.data for p in self.payloads if isinstance(p, VendorIDPayload)]


def encode_message(
    msg: Message, body: bytes | None = None, *, next_payload: int | None = None
) -> bytes:
    """Header + body; body defaults to the encoded payloads (pass ciphertext for E)."""
    if body is None:
        body = encode_payloads(msg.payloads)
    if next_payload is None:
        next_payload = msg.payloads[0].payload_type if msg.payloads else PayloadType.NONE
    header = Header(
        msg.icookie,
        msg.rcookie,
        next_payload,
        msg.exchange,
        msg.flags,
        msg.message_id,
        HEADER_LEN + len(body),
        msg.version,
    )
    return encode_header(header) + body


def decode_message(data: bytes, *, plaintext: bytes | None = None) -> Message:
    """Decode a cleartext message, or an E-flag one whose decrypted body is given.

    A decrypted body may end in RFC 2409 padding, which is ignored.
    """
    h = decode_header(data)
    if h.encrypted:
        if plaintext is None:
            raise WireError(Reason.ENCRYPTED_MESSAGE, None, "E flag set")
        payloads = decode_payloads(h.next_payload, plaintext, trailing_ok=True)
    else:
        payloads = decode_payloads(h.next_payload, data[HEADER_LEN:])
    return Message(h.icookie, h.rcookie, h.exchange, h.flags, h.message_id, payloads, h.version)
