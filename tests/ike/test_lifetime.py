"""The SA lifetime helpers against the wire encodings of RFC 2407 4.5/4.6.3.1.

Attributes are RFC 2408 3.3 data attributes: TV = type | 0x8000, 2-byte
value; TLV = type, 2-byte length, value.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from vpnhub.ike.lifetime import (
    duration_value,
    life_attr_types,
    lifetime_from_notify,
    read_responder_lifetime,
    responder_lifetime,
    shorter_lifetime,
)
from vpnhub.wire.payloads import NotifyPayload, Payload, decode_payloads, encode_payloads

RESPONDER_LIFETIME = 24576  # RFC 2407 4.6.3
PROTO_ISAKMP, PROTO_ESP = 1, 3  # RFC 2407 4.4.1
COOKIES = bytes(range(16))
PAYLOAD_N = 11  # Notification payload type, RFC 2408 3.1
ESP_SPI = b"\x12\x34\x56\x78"

# ISAKMP table: Life Type (11) = seconds (1), Life Duration (12) = 86400 as
# a 4-byte TLV since it does not fit 16 bits.
P1_86400 = bytes.fromhex("800b0001" "000c0004" "00015180")
# IPsec DOI: SA Life Type (1) = seconds (1), SA Life Duration (2) = 28800 (TV).
P2_28800 = bytes.fromhex("80010001" "80027080")


def _notify(protocol: int, spi: bytes, data: bytes) -> NotifyPayload:
    return NotifyPayload(RESPONDER_LIFETIME, protocol, spi, data)


def test_attribute_numbers_per_doi_table() -> None:
    assert life_attr_types(PROTO_ISAKMP) == (11, 12)
    assert life_attr_types(PROTO_ESP) == (1, 2)


@pytest.mark.parametrize(("seconds", "value"), [
    (600, 600),
    (0xFFFF, 0xFFFF),
    (0x10000, b"\x00\x01\x00\x00"),
    (86400, b"\x00\x01\x51\x80"),
])
def test_duration_is_tv_up_to_16_bits_then_4_byte_tlv(seconds: int, value: int | bytes) -> None:
    assert duration_value(seconds) == value


def test_responder_lifetime_phase1_bytes() -> None:
    n = responder_lifetime(86400, PROTO_ISAKMP, COOKIES)
    assert (n.notify_type, n.protocol_id, n.spi) == (RESPONDER_LIFETIME, PROTO_ISAKMP, COOKIES)
    assert n.data == P1_86400


def test_responder_lifetime_esp_bytes_survive_the_wire() -> None:
    n = responder_lifetime(28800, PROTO_ESP, ESP_SPI)
    assert n.data == P2_28800
    (decoded,) = decode_payloads(PAYLOAD_N, encode_payloads([n]))
    assert isinstance(decoded, NotifyPayload)
    assert lifetime_from_notify(decoded) == 28800


@pytest.mark.parametrize(("protocol", "spi", "data", "seconds"), [
    (PROTO_ISAKMP, COOKIES, P1_86400, 86400),
    (PROTO_ESP, ESP_SPI, P2_28800, 28800),
    # Life type omitted: seconds is the default (RFC 2407 4.5).
    (PROTO_ESP, ESP_SPI, bytes.fromhex("80020e10"), 3600),
    # Kilobytes (2) is not a time: no lifetime in seconds.
    (PROTO_ESP, ESP_SPI, bytes.fromhex("80010002" "80021000"), 0),
    # Kilobytes then seconds pairs: the seconds pair counts.
    (PROTO_ESP, ESP_SPI, bytes.fromhex("80010002" "80021000" "80010001" "80020258"), 600),
    # The other table's numbers do not count for this protocol.
    (PROTO_ISAKMP, COOKIES, P2_28800, 0),
    # No duration at all, truncated attribute, empty data: 0, no exception.
    (PROTO_ESP, ESP_SPI, bytes.fromhex("80010001"), 0),
    (PROTO_ISAKMP, COOKIES, bytes.fromhex("000c0004" "0001"), 0),
    (PROTO_ISAKMP, COOKIES, b"", 0),
])
def test_lifetime_from_notify(protocol: int, spi: bytes, data: bytes, seconds: int) -> None:
    assert lifetime_from_notify(_notify(protocol, spi, data)) == seconds


@pytest.mark.parametrize(("offered", "ours", "used"), [
    (0, 28800, 28800),  # nothing proposed: our policy
    (3600, 28800, 3600),
    (86400, 28800, 28800),
])
def test_shorter_lifetime(offered: int, ours: int, used: int) -> None:
    assert shorter_lifetime(offered, ours) == used


@dataclass
class _SA:
    """The two things read_responder_lifetime touches on an IkeSA."""

    lifetime: int
    lines: list[str] = field(default_factory=list)

    def log(self, facility: str, level: int, text: str) -> None:
        self.lines.append(text)


@pytest.mark.parametrize(("ours", "notified", "used"), [
    (2147483, 86400, 86400),
    (3600, 86400, 3600),  # a longer notify never lengthens ours
    (0, 86400, 86400),
])
def test_read_responder_lifetime_takes_the_shorter(ours: int, notified: int, used: int) -> None:
    sa = _SA(ours)
    payloads: list[Payload] = [responder_lifetime(notified, PROTO_ISAKMP, COOKIES)]
    read_responder_lifetime(sa, payloads)  # type: ignore[arg-type]
    assert sa.lifetime == used
    assert sa.lines == [f"RESPONDER-LIFETIME notify has value of {notified} seconds"]


def test_read_responder_lifetime_ignores_a_notify_without_seconds() -> None:
    sa = _SA(3600)
    payloads: list[Payload] = [_notify(PROTO_ISAKMP, COOKIES, bytes.fromhex("800b0002" "800c1000"))]
    read_responder_lifetime(sa, payloads)  # type: ignore[arg-type]
    assert sa.lifetime == 3600 and sa.lines == []
