"""Data attributes (RFC 2408 3.3) and Mode Config / Unity value helpers."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv4Network

import pytest

from vpnhub.wire import (
    CfgAttr,
    DataAttribute,
    SplitNetwork,
    WireError,
    decode_attributes,
    decode_split_networks,
    describe_config_attribute,
    encode_attributes,
    encode_split_networks,
    get_attribute,
)


def test_tv_and_tlv_forms_round_trip():
    data = (
        struct.pack("!HH", 0x8001, 7)  # TV: ENCRYPTION_ALGORITHM = AES_CBC
        + struct.pack("!HH", 0x000C, 4)  # TLV: LIFE_DURATION, 4 bytes
        + (86400).to_bytes(4, "big")
        + struct.pack("!HH", 0x000B, 0)  # TLV of length 0
    )
    attributes = decode_attributes(data)
    assert attributes == [
        DataAttribute(1, 7),
        DataAttribute(12, (86400).to_bytes(4, "big")),
        DataAttribute(11, b""),
    ]
    assert encode_attributes(attributes) == data


def test_a_tlv_holding_a_small_number_keeps_its_form():
    tlv = DataAttribute(12, b"\x00\x00\x00\x05")
    assert tlv.as_int() == 5 and not tlv.is_tv
    assert decode_attributes(encode_attributes([tlv])) == [tlv]


def test_as_int_and_as_bytes():
    assert DataAttribute(1, 0x1234).as_bytes() == b"\x12\x34"
    assert DataAttribute(1, 0x1234).as_int() == 0x1234
    assert DataAttribute(1, b"\x01\x00\x00").as_int() == 0x10000
    assert DataAttribute(1, b"").as_int() == 0


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, 0), (0xFFFF, 0xFFFF), (0x10000, b"\x00\x01\x00\x00"), (2**40, (2**40).to_bytes(6, "big"))],
)
def test_number_picks_tv_when_it_fits(value, expected):
    attribute = DataAttribute.number(12, value)
    assert attribute.value == expected
    assert attribute.as_int() == value


def test_ipv4_and_text_helpers():
    address = DataAttribute.ipv4(CfgAttr.INTERNAL_IP4_ADDRESS, "10.40.1.1")
    assert address.value == bytes([10, 40, 1, 1])
    assert address.as_ipv4() == IPv4Address("10.40.1.1")
    text = DataAttribute.text(CfgAttr.UNITY_DEF_DOMAIN, "lab.example")
    assert text.as_text() == "lab.example"
    assert DataAttribute(7, b"\xff\xfe").as_text() == "\ufffd\ufffd"  # never raises
    subnet = DataAttribute(CfgAttr.INTERNAL_IP4_SUBNET, bytes([192, 168, 2, 0, 255, 255, 255, 0]))
    assert subnet.as_ipv4_network() == IPv4Network("192.168.2.0/24")
    with pytest.raises(WireError):
        DataAttribute(1, b"\x01\x02").as_ipv4()


def test_get_attribute():
    attributes = [DataAttribute(1, 5), DataAttribute(2, 1), DataAttribute(1, 7)]
    assert get_attribute(attributes, 1) == DataAttribute(1, 5)
    assert get_attribute(attributes, 3) is None


def test_split_include_entries_are_14_bytes():
    entries = [
        SplitNetwork(IPv4Network("192.168.2.0/24")),
        SplitNetwork(IPv4Network("10.0.0.0/8"), protocol=6, sport=0, dport=443),
    ]
    data = encode_split_networks(entries)
    assert len(data) == 28
    assert data[:14] == bytes.fromhex("c0a80200ffffff00000000000000")
    assert data[14:] == bytes.fromhex("0a000000ff0000000006000001bb")
    assert decode_split_networks(data) == entries


def test_split_include_host_bits_are_cleared():
    data = bytes.fromhex("c0a80201ffffff00000000000000")
    assert decode_split_networks(data) == [SplitNetwork(IPv4Network("192.168.2.0/24"))]


@pytest.mark.parametrize(
    "data",
    [bytes(13), bytes(15), bytes.fromhex("c0a80200ff00ff00000000000000")],
)
def test_bad_split_include(data):
    with pytest.raises(WireError) as info:
        decode_split_networks(data)
    assert info.value.reason == "bad_attribute"


@pytest.mark.parametrize(
    ("attribute", "text"),
    [
        (DataAttribute(CfgAttr.INTERNAL_IP4_ADDRESS, b""), "INTERNAL_IP4_ADDRESS"),
        (
            DataAttribute.ipv4(CfgAttr.INTERNAL_IP4_DNS, "192.168.2.10"),
            "INTERNAL_IP4_DNS=192.168.2.10",
        ),
        (DataAttribute(CfgAttr.XAUTH_TYPE, 0), "XAUTH_TYPE=GENERIC"),
        (DataAttribute(CfgAttr.XAUTH_STATUS, 0), "XAUTH_STATUS=FAIL"),
        (DataAttribute.text(CfgAttr.XAUTH_USER_NAME, "vpnuser1"), "XAUTH_USER_NAME='vpnuser1'"),
        (DataAttribute(CfgAttr.XAUTH_USER_PASSWORD, b"s3cret"), "XAUTH_USER_PASSWORD=<hidden>"),
        (DataAttribute(CfgAttr.XAUTH_PASSCODE, b"123456"), "XAUTH_PASSCODE=<hidden>"),
        (DataAttribute(CfgAttr.UNITY_SAVE_PASSWD, 1), "UNITY_SAVE_PASSWD=1"),
        (DataAttribute(CfgAttr.UNITY_NATT_PORT, 4500), "UNITY_NATT_PORT=4500"),
        (DataAttribute(CfgAttr.UNITY_BANNER, b"Hello\nworld"), "UNITY_BANNER='Hello\\nworld'"),
        (DataAttribute(CfgAttr.INTERNAL_IP4_DNS, b"\x01"), "INTERNAL_IP4_DNS=01"),
        (
            DataAttribute(CfgAttr.SUPPORTED_ATTRIBUTES, b"\x00\x01\x70\x00"),
            "SUPPORTED_ATTRIBUTES=[INTERNAL_IP4_ADDRESS UNITY_BANNER]",
        ),
        (DataAttribute(28690, b"\xab"), "CFG_ATTR_28690=ab"),
    ],
)
def test_describe_config_attribute(attribute, text):
    assert describe_config_attribute(attribute) == text


def test_passwords_never_reach_repr_or_describe():
    secret = DataAttribute(CfgAttr.XAUTH_USER_PASSWORD, b"hunter2")
    assert "hunter2" not in repr(secret)
    assert "hunter2" not in describe_config_attribute(secret)
    assert "hunter2" not in repr([secret])
