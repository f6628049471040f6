"""Every class of bad input: a WireError with a stable reason and the RFC 2408 notify."""

from __future__ import annotations

import struct

import pytest

from vpnhub.wire import (
    MAX_PAYLOADS,
    DataAttribute,
    DeletePayload,
    IDPayload,
    Message,
    NotifyType,
    PayloadType,
    UnknownPayload,
    VendorIDPayload,
    WireError,
    decode_attributes,
    decode_header,
    decode_message,
    decode_payloads,
    encode_attributes,
    encode_header,
    encode_message,
    encode_payloads,
    payloads,
)
from vpnhub.wire.message import Header

COOKIES = bytes(range(1, 9)) + bytes(8)


def header(next_payload: int, body_len: int, version: int = 0x10, flags: int = 0) -> bytes:
    return COOKIES + struct.pack("!BBBBII", next_payload, version, 4, flags, 0, 28 + body_len)


def payload(next_type: int, body: bytes, reserved: int = 0, length: int | None = None) -> bytes:
    size = 4 + len(body) if length is None else length
    return struct.pack("!BBH", next_type, reserved, size) + body


def message(first: int, body: bytes, **kw: int) -> bytes:
    return header(first, len(body), **kw) + body


def transform(number: int, attrs: bytes, next_type: int = 0) -> bytes:
    return payload(next_type, struct.pack("!BBH", number, 1, 0) + attrs)


def proposal(transforms: bytes, count: int, spi: bytes = b"", next_type: int = 0) -> bytes:
    return payload(next_type, struct.pack("!BBBB", 1, 1, len(spi), count) + spi + transforms)


def sa(proposals: bytes, doi: int = 1, situation: int = 1) -> bytes:
    return payload(0, struct.pack("!II", doi, situation) + proposals)


GOOD_ATTRS = struct.pack("!HH", 0x8001, 7) + struct.pack("!HH", 12, 4) + (86400).to_bytes(4, "big")


def expect(reason: str, notify: NotifyType | None, fn, *args, **kwargs) -> WireError:
    with pytest.raises(WireError) as info:
        fn(*args, **kwargs)
    assert info.value.reason == reason, info.value
    assert info.value.notify == notify
    return info.value


# --- header (RFC 2408 3.1, 5.1) ---


@pytest.mark.parametrize("size", [0, 1, 27])
def test_truncated_header(size):
    expect("truncated_header", NotifyType.PAYLOAD_MALFORMED, decode_message, bytes(size))


@pytest.mark.parametrize("version", [0x00, 0x20, 0x21, 0xF0])
def test_bad_major_version(version):
    data = message(0, b"", version=version)
    expect("bad_version", NotifyType.INVALID_MAJOR_VERSION, decode_header, data)


def test_minor_version_is_kept():
    data = message(0, b"", version=0x11)
    assert decode_message(data).version == 0x11
    assert encode_message(decode_message(data)) == data


@pytest.mark.parametrize("delta", [-1, 1, 100])
def test_bad_length_field(delta):
    data = bytearray(message(PayloadType.VENDOR_ID, payload(0, b"abcd")))
    struct.pack_into("!I", data, 24, len(data) + delta)
    expect("bad_length", NotifyType.UNEQUAL_PAYLOAD_LENGTHS, decode_message, bytes(data))


def test_extra_datagram_bytes_are_a_bad_length():
    data = message(PayloadType.VENDOR_ID, payload(0, b"abcd")) + b"\0"
    expect("bad_length", NotifyType.UNEQUAL_PAYLOAD_LENGTHS, decode_message, data)


def test_encrypted_message_needs_its_plaintext():
    body = payload(0, b"h" * 20)
    data = message(PayloadType.HASH, bytes(32), flags=1)
    expect("encrypted_message", None, decode_message, data)
    msg = decode_message(data, plaintext=body + bytes(12))  # RFC 2409 padding ignored
    assert msg.encrypted and msg.payloads[0].describe() == "HASH(20 bytes)"


# --- the payload chain (RFC 2408 3.2, 5.2) ---


def test_payload_overrun():
    body = payload(0, b"abcd", length=200)
    data = message(PayloadType.VENDOR_ID, body)
    expect("payload_overrun", NotifyType.PAYLOAD_MALFORMED, decode_message, data)


def test_chain_announces_a_payload_past_the_end():
    body = payload(PayloadType.VENDOR_ID, b"abcd")  # next says VID, nothing follows
    expect("payload_overrun", NotifyType.PAYLOAD_MALFORMED, decode_message, message(13, body))
    body += b"\0\0"  # half a generic header
    expect("payload_overrun", NotifyType.PAYLOAD_MALFORMED, decode_message, message(13, body))


@pytest.mark.parametrize("length", [0, 1, 3])
def test_zero_length_payload(length):
    body = payload(PayloadType.VENDOR_ID, b"", length=length) + payload(0, b"")
    data = message(PayloadType.VENDOR_ID, body)
    expect("zero_length_payload", NotifyType.PAYLOAD_MALFORMED, decode_message, data)


@pytest.mark.parametrize(
    ("ptype", "body"),
    [
        (PayloadType.SA, bytes(7)),
        (PayloadType.ID, bytes(3)),
        (PayloadType.NOTIFY, bytes(7)),
        (PayloadType.DELETE, bytes(7)),
        (PayloadType.ATTRIBUTE, bytes(3)),
        (PayloadType.CERT, b""),
        (PayloadType.CR, b""),
        (PayloadType.NAT_OA, bytes(3)),
        (PayloadType.FRAGMENT, bytes(3)),
    ],
)
def test_payload_too_short_for_its_fixed_fields(ptype, body):
    expect(
        "payload_too_short", NotifyType.PAYLOAD_MALFORMED, decode_payloads, ptype, payload(0, body)
    )


def test_payload_loop_guard():
    vids = payload(13, b"") * MAX_PAYLOADS + payload(0, b"")
    expect("payload_loop", NotifyType.PAYLOAD_MALFORMED, decode_payloads, 13, vids)
    ok = payload(13, b"") * (MAX_PAYLOADS - 1) + payload(0, b"")
    assert len(decode_payloads(13, ok)) == MAX_PAYLOADS


def test_trailing_data():
    data = payload(0, b"abcd") + b"\0\0\0\0"
    expect("trailing_data", NotifyType.PAYLOAD_MALFORMED, decode_payloads, 13, data)
    assert len(decode_payloads(13, data, trailing_ok=True)) == 1


def test_trailing_data_after_an_empty_chain():
    expect("trailing_data", NotifyType.PAYLOAD_MALFORMED, decode_message, message(0, b"junk"))


@pytest.mark.parametrize("ptype", [PayloadType.PROPOSAL, PayloadType.TRANSFORM])
def test_proposal_or_transform_outside_an_sa(ptype):
    data = payload(0, bytes(8))
    expect("invalid_payload_type", NotifyType.INVALID_PAYLOAD_TYPE, decode_payloads, ptype, data)


def test_unknown_critical_payload_is_rejected():
    data = payload(0, b"xyz", reserved=0x80)
    err = expect(
        "unsupported_critical_payload",
        NotifyType.INVALID_PAYLOAD_TYPE,
        decode_payloads,
        99,
        data,
    )
    assert "99" in str(err)


@pytest.mark.parametrize("ptype", [15, 99, 127, 128, 200, 255])
def test_unknown_non_critical_payload_is_kept_raw(ptype):
    data = payload(0, b"xyz", reserved=0x01)
    (p,) = decode_payloads(ptype, data)
    assert p == UnknownPayload(ptype, b"xyz")
    assert p.raw == data
    assert p.describe() == f"PAYLOAD_{ptype}(3 bytes)"


def test_known_payload_reserved_bits_are_ignored():
    (p,) = decode_payloads(13, payload(0, b"abcd", reserved=0x80))
    assert p == VendorIDPayload(b"abcd")


# --- SA / proposal / transform (RFC 2408 3.4-3.6, 5.4-5.6) ---


def test_valid_sa_for_reference():
    data = sa(proposal(transform(1, GOOD_ATTRS), 1))
    (p,) = decode_payloads(PayloadType.SA, data)
    assert encode_payloads([p]) == data


def test_transform_count_mismatch():
    data = sa(proposal(transform(1, GOOD_ATTRS), 2))
    expect("bad_proposal_syntax", NotifyType.BAD_PROPOSAL_SYNTAX, decode_payloads, 1, data)


def test_proposal_chain_with_wrong_next_payload():
    data = sa(proposal(transform(1, GOOD_ATTRS), 1, next_type=PayloadType.KE))
    expect("bad_proposal_syntax", NotifyType.BAD_PROPOSAL_SYNTAX, decode_payloads, 1, data)


def test_transform_chain_with_wrong_next_payload():
    data = sa(proposal(transform(1, GOOD_ATTRS, next_type=PayloadType.PROPOSAL), 1))
    expect("bad_proposal_syntax", NotifyType.BAD_PROPOSAL_SYNTAX, decode_payloads, 1, data)


def test_sa_without_proposals():
    expect("bad_proposal_syntax", NotifyType.BAD_PROPOSAL_SYNTAX, decode_payloads, 1, sa(b""))


def test_spi_size_overruns_proposal():
    bad = payload(0, struct.pack("!BBBB", 1, 3, 200, 1) + bytes(4))
    expect("bad_proposal_syntax", NotifyType.BAD_PROPOSAL_SYNTAX, decode_payloads, 1, sa(bad))


def test_transform_length_overruns_proposal():
    bad_transform = payload(0, struct.pack("!BBH", 1, 1, 0), length=64)
    data = sa(proposal(bad_transform, 1))
    expect("bad_proposal_syntax", NotifyType.BAD_PROPOSAL_SYNTAX, decode_payloads, 1, data)


def test_bytes_after_the_last_proposal():
    data = sa(proposal(transform(1, GOOD_ATTRS), 1) + b"\0\0")
    expect("bad_proposal_syntax", NotifyType.BAD_PROPOSAL_SYNTAX, decode_payloads, 1, data)


def test_unsupported_doi_and_situation():
    good = proposal(transform(1, GOOD_ATTRS), 1)
    expect("doi_not_supported", NotifyType.DOI_NOT_SUPPORTED, decode_payloads, 1, sa(good, doi=2))
    expect(
        "situation_not_supported",
        NotifyType.SITUATION_NOT_SUPPORTED,
        decode_payloads,
        1,
        sa(good, situation=2),
    )


@pytest.mark.parametrize(
    "attrs",
    [
        b"\x80",  # half a header
        b"\x80\x01\x00",  # three bytes
        struct.pack("!HH", 12, 4) + b"\0\0",  # TLV value overruns
        GOOD_ATTRS + b"\x00",
    ],
)
def test_bad_attribute(attrs):
    expect("bad_attribute", NotifyType.PAYLOAD_MALFORMED, decode_attributes, attrs)
    data = sa(proposal(transform(1, attrs), 1))
    expect("bad_attribute", NotifyType.PAYLOAD_MALFORMED, decode_payloads, 1, data)


def test_bad_attribute_in_attribute_payload():
    data = payload(0, struct.pack("!BBH", 1, 0, 7) + b"\x40\x89\x00\x05ab")
    expect("bad_attribute", NotifyType.PAYLOAD_MALFORMED, decode_payloads, 14, data)


# --- NOTIFY / DELETE / FRAGMENT / ID ---


def test_notify_spi_overrun():
    data = payload(0, struct.pack("!IBBH", 1, 1, 16, 24578) + bytes(8))
    expect("bad_spi_size", NotifyType.PAYLOAD_MALFORMED, decode_payloads, 11, data)


@pytest.mark.parametrize(
    ("spi_size", "count", "spis"),
    [(4, 2, bytes(4)), (4, 1, bytes(6)), (0, 1, b""), (4, 0, b""), (16, 1, bytes(15))],
)
def test_delete_spi_fields_inconsistent(spi_size, count, spis):
    data = payload(0, struct.pack("!IBBH", 1, 3, spi_size, count) + spis)
    expect("bad_spi_size", NotifyType.PAYLOAD_MALFORMED, decode_payloads, 12, data)


def test_fragment_number_zero():
    data = payload(0, struct.pack("!HBB", 1, 0, 1) + b"x")
    expect("bad_fragment", NotifyType.PAYLOAD_MALFORMED, decode_payloads, 132, data)


@pytest.mark.parametrize(
    ("p", "method"),
    [
        (IDPayload(1, bytes(3)), "address"),
        (IDPayload(2, b"host"), "address"),
        (IDPayload(4, bytes(7)), "network"),
        (IDPayload(4, bytes(4) + bytes.fromhex("ff00ff00")), "network"),
        (IDPayload(7, bytes(4)), "address_range"),
        (IDPayload(1, bytes(4)), "text"),
    ],
)
def test_id_accessors_reject_mismatched_data(p, method):
    expect("bad_id", NotifyType.INVALID_ID_INFORMATION, getattr(p, method))
    assert p.describe().startswith("ID(")  # a log line never raises


# --- encoding errors ---


@pytest.mark.parametrize(
    "attribute",
    [DataAttribute(0x8000, 1), DataAttribute(1, 0x10000), DataAttribute(1, -1)],
)
def test_attribute_out_of_range_is_an_encode_error(attribute):
    expect("encode_error", None, encode_attributes, [attribute])


def test_payload_too_long_is_an_encode_error():
    expect("encode_error", None, encode_payloads, [VendorIDPayload(bytes(0xFFFC))])
    assert len(encode_payloads([VendorIDPayload(bytes(0xFFFB))])) == 0xFFFF


@pytest.mark.parametrize(
    "p",
    [
        IDPayload(256, b""),
        DeletePayload(3, [bytes(4), bytes(5)]),
        UnknownPayload(300, b""),
    ],
)
def test_field_out_of_range_is_an_encode_error(p):
    expect("encode_error", None, encode_payloads, [VendorIDPayload(b""), p])


def test_bad_cookies_are_an_encode_error():
    expect("encode_error", None, encode_header, Header(b"short", bytes(8), 0, 4, 0, 0, 28))
    expect("encode_error", None, encode_message, Message(bytes(8), bytes(8), 256, 0, 0))


# --- a transform chain seen before (payloads._TRANSFORM_MEMO) decodes as the first time ---


def test_a_repeated_transform_gets_its_own_attribute_list():
    data = sa(proposal(transform(1, GOOD_ATTRS), 1))
    (first,) = decode_payloads(PayloadType.SA, data)
    (again,) = decode_payloads(PayloadType.SA, data)
    assert first == again
    first.proposals[0].transforms[0].attributes.append(DataAttribute(14, 128))
    assert len(again.proposals[0].transforms[0].attributes) == 2
    (third,) = decode_payloads(PayloadType.SA, data)
    assert encode_payloads([third]) == data


def test_a_bad_transform_is_refused_every_time():
    data = sa(proposal(transform(1, b"\x80\x01\x00"), 1))
    for _ in range(3):
        expect("bad_attribute", NotifyType.PAYLOAD_MALFORMED, decode_payloads, 1, data)


def test_the_transform_memo_stays_bounded():
    for i in range(payloads.TRANSFORM_MEMO_SIZE + 10):
        attrs = struct.pack("!HH", 0x8001, i % 0x8000) + struct.pack("!HH", 0x8002, i >> 15)
        decode_payloads(PayloadType.SA, sa(proposal(transform(1, attrs), 1)))
        assert len(payloads._TRANSFORM_MEMO) <= payloads.TRANSFORM_MEMO_SIZE


def test_a_broken_chain_is_reported_before_a_bad_transform_in_it():
    # RFC 2408 3.5: the whole proposal chain is checked before any transform is
    # decoded, so a known-good first transform does not hide the broken second one.
    good_first = proposal(transform(1, GOOD_ATTRS), 1, next_type=PayloadType.PROPOSAL)
    decode_payloads(PayloadType.SA, sa(proposal(transform(1, GOOD_ATTRS), 1)))
    bad_attr_then_short = proposal(transform(1, b"\x80"), 1, next_type=PayloadType.PROPOSAL)
    err = expect(
        "bad_proposal_syntax",
        NotifyType.BAD_PROPOSAL_SYNTAX,
        decode_payloads,
        1,
        sa(good_first + bad_attr_then_short + b"\0\0\0"),
    )
    assert err.detail == "truncated proposal"


def test_a_long_transform_chain_is_decoded_but_not_kept():
    big = struct.pack("!HH", 12, payloads.TRANSFORM_MEMO_MAX_CHAIN) + bytes(
        payloads.TRANSFORM_MEMO_MAX_CHAIN
    )
    data = sa(proposal(transform(1, GOOD_ATTRS + big), 1))
    payloads._TRANSFORM_MEMO.clear()
    (p,) = decode_payloads(PayloadType.SA, data)
    assert p.proposals[0].transforms[0].attributes[-1].value == bytes(
        payloads.TRANSFORM_MEMO_MAX_CHAIN
    )
    assert not payloads._TRANSFORM_MEMO
    assert encode_payloads([p]) == data
