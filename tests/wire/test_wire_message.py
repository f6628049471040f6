"""The ISAKMP header and whole messages (RFC 2408 3.1)."""

from __future__ import annotations

import struct

from vpnhub.wire import (
    HEADER_LEN,
    ExchangeType,
    Flag,
    HashPayload,
    Header,
    IDPayload,
    KEPayload,
    Message,
    NoncePayload,
    NotifyPayload,
    NotifyType,
    PayloadType,
    VendorId,
    VendorIDPayload,
    decode_header,
    decode_message,
    encode_header,
    encode_message,
    encode_payloads,
)

ICOOKIE = bytes.fromhex("172cb0d429b3c609")
RCOOKIE = bytes.fromhex("d38a78ed209d1529")


def test_header_layout():
    h = Header(ICOOKIE, RCOOKIE, PayloadType.HASH, ExchangeType.QUICK_MODE, 1, 0x506D67EB, 60)
    data = encode_header(h)
    assert len(data) == HEADER_LEN == 28
    assert data == ICOOKIE + RCOOKIE + bytes([8, 0x10, 32, 1]) + struct.pack("!II", 0x506D67EB, 60)
    assert decode_header(data + bytes(32)) == h
    assert h.encrypted


def test_message_round_trip_and_names():
    msg = Message(
        ICOOKIE,
        bytes(8),
        ExchangeType.AGGRESSIVE,
        0,
        0,
        [
            KEPayload(bytes(128)),
            NoncePayload(bytes(20)),
            IDPayload.key_id("vpngroup"),
            VendorIDPayload(VendorId.XAUTH),
            VendorIDPayload(VendorId.DPD),
        ],
    )
    data = encode_message(msg)
    assert data[16] == PayloadType.KE
    assert decode_message(data) == msg
    assert msg.payload_names() == ["KE", "NON", "ID", "VID", "VID"]
    assert msg.describe() == "AGGRESSIVE flags=00 msgid=00000000 KE NONCE ID VID VID"
    assert msg.cisco_summary() == "ISAKMP OAK AG (KE, NON, ID, VID, VID)"
    assert msg.vendor_ids() == [VendorId.XAUTH, VendorId.DPD]
    assert msg.get(IDPayload) == IDPayload.key_id("vpngroup")
    assert msg.get(HashPayload) is None
    assert len(msg.get_all(VendorIDPayload)) == 2


def test_empty_message():
    msg = Message(ICOOKIE, RCOOKIE, ExchangeType.INFORMATIONAL, 0, 7)
    data = encode_message(msg)
    assert len(data) == 28 and data[16] == 0
    assert decode_message(data) == msg
    assert msg.describe() == "INFORMATIONAL flags=00 msgid=00000007"


def test_encrypted_body_is_passed_through():
    rest = [NotifyPayload(NotifyType.INITIAL_CONTACT, spi=ICOOKIE + RCOOKIE)]
    msg = Message(
        ICOOKIE, RCOOKIE, ExchangeType.AGGRESSIVE, Flag.ENCRYPTION, 0, [HashPayload(bytes(20))]
    )
    msg.payloads += rest
    plaintext = encode_payloads(msg.payloads)
    ciphertext = bytes(len(plaintext) + 4)  # stands in for CBC output with padding
    data = encode_message(msg, ciphertext)
    h = decode_header(data)
    assert h.next_payload == PayloadType.HASH  # first plaintext payload
    assert h.length == 28 + len(ciphertext) and h.encrypted
    assert data[28:] == ciphertext
    decoded = decode_message(data, plaintext=plaintext + bytes(4))
    assert decoded == msg
    assert decoded.cisco_summary() == "ISAKMP OAK AG *(HASH, NOTIFY)"


def test_next_payload_override():
    msg = Message(ICOOKIE, RCOOKIE, ExchangeType.INFORMATIONAL, 1, 5)
    data = encode_message(msg, bytes(16), next_payload=PayloadType.HASH)
    assert decode_header(data).next_payload == PayloadType.HASH


def test_unknown_exchange_type_is_kept():
    msg = Message(ICOOKIE, RCOOKIE, 240, 0, 0, [VendorIDPayload(b"x")])
    decoded = decode_message(encode_message(msg))
    assert decoded.exchange == 240
    assert decoded.describe() == "EXCHANGE_240 flags=00 msgid=00000000 VID"
    assert decoded.cisco_summary() == "ISAKMP OAK 240 (VID)"


def test_describe_detail():
    msg = Message(
        ICOOKIE,
        RCOOKIE,
        ExchangeType.INFORMATIONAL,
        1,
        0x0B43937D,
        [
            HashPayload(bytes(20)),
            NotifyPayload(NotifyType.R_U_THERE, spi=bytes(16), data=b"\0\0\0\1"),
        ],
    )
    assert msg.describe(detail=True) == (
        "INFORMATIONAL flags=01 msgid=0b43937d HASH(20 bytes) "
        f"NOTIFY(R_U_THERE, proto=ISAKMP, spi={'00' * 16}, seq=1)"
    )
