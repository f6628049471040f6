"""Hypothesis strategies producing valid vpnhub.wire objects (every field in range)."""

from __future__ import annotations

from hypothesis import strategies as st

from vpnhub.wire import (
    AttributePayload,
    CertPayload,
    CertRequestPayload,
    DataAttribute,
    DeletePayload,
    Flag,
    FragmentPayload,
    HashPayload,
    IDPayload,
    KEPayload,
    Message,
    NatDPayload,
    NatOAPayload,
    NoncePayload,
    NotifyPayload,
    PayloadType,
    Proposal,
    SAPayload,
    SigPayload,
    Transform,
    UnknownPayload,
    VendorIDPayload,
)
from vpnhub.wire.payloads import Payload

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
small_bytes = st.binary(max_size=40)

KNOWN_TYPES = frozenset(int(t) for t in PayloadType)

data_attributes = st.builds(
    DataAttribute,
    st.integers(0, 0x7FFF),
    st.one_of(u16, st.binary(max_size=24)),
)
attribute_lists = st.lists(data_attributes, max_size=6)

transforms = st.builds(Transform, u8, u8, attribute_lists)
proposals = st.builds(
    Proposal,
    u8,
    u8,
    st.binary(max_size=16),
    st.lists(transforms, min_size=1, max_size=4),
)
sa_payloads = st.builds(SAPayload, st.lists(proposals, min_size=1, max_size=3))


def _opaque(cls: type) -> st.SearchStrategy[Payload]:
    return st.builds(cls, small_bytes)


unknown_types = st.integers(1, 255).filter(lambda t: t not in KNOWN_TYPES)

payloads: st.SearchStrategy[Payload] = st.one_of(
    sa_payloads,
    _opaque(KEPayload),
    _opaque(HashPayload),
    _opaque(SigPayload),
    _opaque(NoncePayload),
    _opaque(VendorIDPayload),
    st.builds(IDPayload, u8, small_bytes, u8, u16),
    st.builds(CertPayload, u8, small_bytes),
    st.builds(CertRequestPayload, u8, small_bytes),
    st.builds(NotifyPayload, u16, u8, st.binary(max_size=16), small_bytes, u32),
    st.integers(1, 16).flatmap(
        lambda size: st.builds(
            DeletePayload, u8, st.lists(st.binary(min_size=size, max_size=size), min_size=1), u32
        )
    ),
    st.builds(AttributePayload, u8, u16, attribute_lists),
    st.builds(NatDPayload, small_bytes, st.sampled_from([20, 130])),
    st.builds(NatOAPayload, u8, small_bytes, st.sampled_from([21, 131])),
    st.builds(FragmentPayload, u16, st.integers(1, 255), st.booleans(), small_bytes),
    st.builds(UnknownPayload, unknown_types, small_bytes),
)

cookies = st.binary(min_size=8, max_size=8)

messages = st.builds(
    Message,
    cookies,
    cookies,
    u8,
    u8.map(lambda f: f & ~int(Flag.ENCRYPTION) & 0xFF),  # cleartext messages
    u32,
    st.lists(payloads, max_size=8),
    st.integers(0x10, 0x1F),  # major version 1, any minor
)
