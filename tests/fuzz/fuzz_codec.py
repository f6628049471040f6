"""Fuzz target (a): the ISAKMP codec (vpnhub.wire) and the IKE fragment reassembler.

The input's first byte picks the decoder, the rest is its input:
whole messages (`decode_message`), payload chains (`decode_payloads`, with
the first payload type and `trailing_ok` from the input), data attributes,
Cisco Unity split-network lists, and IKE fragments (RFC-less Cisco/strongSwan
FRAGMENTATION payloads, `ike.fragment.Reassembler`).

Invariants, as tests/wire/test_wire_properties.py states them:
- only `WireError` (fragments: `FragmentError`) is raised;
- what decodes can be described (the log lines) and re-encodes: a decoded
  message encodes to a message that decodes to the same thing; attributes
  re-encode to the exact input bytes.
"""

from __future__ import annotations

from vpnhub.ike.fragment import FragmentError, Reassembler
from vpnhub.wire import (
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


class InvariantViolation(AssertionError):
    """An invariant of the target failed: a finding, reported as a crash."""


def _message(data: bytes) -> None:
    try:
        msg = decode_message(data)
    except WireError:
        return
    msg.describe(detail=True)
    msg.cisco_summary()
    for p in msg.payloads:
        payload_body(p)
    again = decode_message(encode_message(msg))
    if again != msg:
        raise InvariantViolation("decode(encode(decode(m))) != decode(m)")


def _payloads(data: bytes) -> None:
    if len(data) < 2:
        return
    try:
        items = decode_payloads(data[0], data[2:], trailing_ok=bool(data[1] & 1))
    except WireError:
        return
    for p in items:
        p.describe()
        payload_body(p)
    if items and decode_payloads(items[0].payload_type, encode_payloads(items)) != items:
        raise InvariantViolation("payload chain does not survive re-encoding")


def _attributes(data: bytes) -> None:
    try:
        attributes = decode_attributes(data)
    except WireError:
        return
    if encode_attributes(attributes) != data:
        raise InvariantViolation("attributes do not re-encode to their bytes")


def _split_networks(data: bytes) -> None:
    try:
        decode_split_networks(data)
    except WireError:
        return


def _fragments(data: bytes) -> None:
    """Several fragments (2-byte length + bytes each) into one small reassembler."""
    r = Reassembler(max_messages=4, max_bytes=4096)
    pos, now = 0, 1000.0
    while pos + 2 <= len(data):
        n = int.from_bytes(data[pos:pos + 2], "big") % 2048
        piece = data[pos + 2:pos + 2 + n]
        pos += 2 + n
        now += 1.0
        try:
            whole = r.feed(piece, ("203.0.113.78", 500), now)
        except FragmentError:
            continue
        if whole is not None:
            _message(whole)
        if len(r) > 4:
            raise InvariantViolation(f"reassembler holds {len(r)} > 4 messages")


DECODERS = (_message, _payloads, _attributes, _split_networks, _fragments)


def one_input(data: bytes) -> None:
    if not data:
        return
    # most inputs are whole messages: the seeds are, and it is the widest decoder
    kind = data[0] % 8
    DECODERS[kind if kind < len(DECODERS) else 0](data[1:])
