"""Property tests: the codec round-trips valid input and rejects everything else
with a WireError only (no IndexError, struct.error, ValueError, ...)."""

from __future__ import annotations

import contextlib
import struct

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from wire_strategies import messages, payloads

from vpnhub.wire import (
    PayloadType,
    WireError,
    decode_attributes,
    decode_message,
    decode_payloads,
    decode_split_networks,
    encode_attributes,
    encode_message,
    encode_payloads,
    payload_body,
)
from vpnhub.wire.payloads import Payload

FUZZ = settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
any_type = st.integers(0, 255)


def _exercise(items: list[Payload]) -> None:
    """What a log line or the engine does with decoded payloads must not raise, and
    re-encoding gives the same objects back."""
    for p in items:
        p.describe()
        payload_body(p)
    if items:
        assert decode_payloads(items[0].payload_type, encode_payloads(items)) == items


@given(messages)
@settings(max_examples=300)
def test_valid_messages_round_trip(msg):
    data = encode_message(msg)
    decoded = decode_message(data)
    assert decoded == msg
    assert encode_message(decoded) == data
    assert b"".join(p.raw for p in decoded.payloads) == data[28:]
    decoded.describe(detail=True)
    decoded.cisco_summary()


@given(st.lists(payloads, min_size=1, max_size=8))
def test_payload_chain_raw_and_body(items):
    data = encode_payloads(items)
    decoded = decode_payloads(items[0].payload_type, data)
    assert decoded == items
    assert b"".join(p.raw for p in decoded) == data
    for original, again in zip(items, decoded, strict=True):
        assert payload_body(again) == payload_body(original)


@given(st.lists(payloads, min_size=2, max_size=6))
def test_encoding_of_the_rest_does_not_depend_on_the_first(items):
    # RFC 2409 HASH(1) is computed over the payloads after HASH.
    assert encode_payloads(items).endswith(encode_payloads(items[1:]))


@given(st.lists(payloads, max_size=5), st.binary(max_size=31))
def test_trailing_padding_is_ignored_only_when_allowed(items, padding):
    first = items[0].payload_type if items else PayloadType.NONE
    data = encode_payloads(items)
    assert decode_payloads(first, data + padding, trailing_ok=True) == items
    if padding:
        try:
            decode_payloads(first, data + padding)
        except WireError as exc:
            assert exc.reason == "trailing_data"
        else:
            raise AssertionError("trailing bytes accepted")


@FUZZ
@given(st.binary(max_size=600))
@example(b"")
@example(bytes(28))
def test_random_bytes_decode_message_only_raises_wire_error(data):
    try:
        msg = decode_message(data)
    except WireError:
        return
    msg.describe(detail=True)
    msg.cisco_summary()
    again = decode_message(encode_message(msg))
    assert again == msg


@FUZZ
@given(any_type, st.binary(max_size=400), st.booleans())
def test_random_bytes_decode_payloads_only_raises_wire_error(first, data, trailing_ok):
    try:
        items = decode_payloads(first, data, trailing_ok=trailing_ok)
    except WireError:
        return
    _exercise(items)


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes_decode_attributes_only_raises_wire_error(data):
    try:
        attributes = decode_attributes(data)
    except WireError:
        return
    assert encode_attributes(attributes) == data


@FUZZ
@given(st.binary(max_size=100))
def test_random_split_lists_only_raise_wire_error(data):
    with contextlib.suppress(WireError):
        decode_split_networks(data)


def _mutations(data: bytes) -> st.SearchStrategy[bytes]:
    """Single-byte corruptions and truncations of a valid message."""
    flips = st.tuples(st.integers(0, len(data) - 1), st.integers(0, 255)).map(
        lambda iv: data[: iv[0]] + bytes((iv[1],)) + data[iv[0] + 1 :]
    )
    cuts = st.integers(0, len(data)).map(lambda n: data[:n])
    return st.one_of(flips, cuts)


@FUZZ
@given(messages.map(encode_message).flatmap(_mutations))
def test_corrupted_valid_messages_only_raise_wire_error(data):
    try:
        msg = decode_message(data)
    except WireError:
        return
    msg.describe(detail=True)
    for p in msg.payloads:
        payload_body(p)


@FUZZ
@given(
    messages.map(encode_message).flatmap(_mutations),
    st.binary(max_size=64),
)
def test_corrupted_bodies_with_fixed_header_length(data, tail):
    # Re-stamp the header length so the corruption reaches the payload walker.
    if len(data) < 28:
        return
    body = data[28:] + tail
    fixed = data[:24] + struct.pack("!I", 28 + len(body)) + body
    with contextlib.suppress(WireError):
        decode_message(fixed)
