"""RFC 3948 demux of UDP 4500 payloads."""

from __future__ import annotations

import pytest

from vpnhub.net.udpencap import (
    KEEPALIVE,
    NON_ESP_MARKER,
    Esp,
    Ike,
    Keepalive,
    Malformed,
    classify,
    ike_datagram,
    keepalive_datagram,
)

IKE_HEADER = bytes(range(1, 17)) + bytes([8, 0x10, 4, 0]) + bytes(4) + (28).to_bytes(4, "big")


def test_keepalive() -> None:
    assert classify(b"\xff") is KEEPALIVE
    assert isinstance(classify(keepalive_datagram()), Keepalive)


def test_ike_after_marker() -> None:
    kind = classify(NON_ESP_MARKER + IKE_HEADER)
    assert kind == Ike(IKE_HEADER)
    assert ike_datagram(IKE_HEADER) == NON_ESP_MARKER + IKE_HEADER
    assert classify(ike_datagram(IKE_HEADER)) == Ike(IKE_HEADER)


def test_esp() -> None:
    packet = b"\x00\x00\x01\x00" + b"\x00\x00\x00\x01" + bytes(40)
    kind = classify(packet)
    assert isinstance(kind, Esp)
    assert kind.spi == 256
    assert kind.packet == packet
    assert isinstance(classify(b"\x12\x34\x56\x78\x00\x00\x00\x01"), Esp)  # minimum 8 bytes


@pytest.mark.parametrize(
    ("datagram", "reason"),
    [
        (b"", "empty_datagram"),
        (b"\x00", "short_datagram"),
        (b"\xfe", "short_datagram"),
        (b"\xff\xff", "short_datagram"),  # a keepalive is exactly one byte
        (b"\x01\x02\x03\x04\x05\x06\x07", "short_datagram"),
        (NON_ESP_MARKER, "short_ike"),
        (NON_ESP_MARKER + IKE_HEADER[:27], "short_ike"),
    ],
)
def test_malformed(datagram: bytes, reason: str) -> None:
    assert classify(datagram) == Malformed(reason)
