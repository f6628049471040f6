"""Each payload type: exact bytes both ways, raw/payload_body, describe(), helpers."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest

from vpnhub.wire import (
    AttributePayload,
    AuthMethod,
    CertEncoding,
    CertPayload,
    CertRequestPayload,
    CfgAttr,
    CfgType,
    DataAttribute,
    DeletePayload,
    EncapsulationMode,
    EspTransform,
    FragmentPayload,
    GroupDescription,
    HashPayload,
    IDPayload,
    IdType,
    IkeEncr,
    IkeHash,
    IPsecAttr,
    IPsecAuth,
    KEPayload,
    LifeType,
    NatDPayload,
    NatOAPayload,
    NoncePayload,
    NotifyPayload,
    NotifyType,
    P1Attr,
    PayloadType,
    Proposal,
    ProtocolId,
    SAPayload,
    SigPayload,
    Transform,
    UnknownPayload,
    VendorId,
    VendorIDPayload,
    decode_payloads,
    encode_payload,
    encode_payloads,
    payload_body,
)


def ike_transform(number: int = 1, auth: int = AuthMethod.XAUTH_INIT_PSK) -> Transform:
    return Transform(
        number,
        1,
        [
            DataAttribute(P1Attr.ENCRYPTION_ALGORITHM, IkeEncr.AES_CBC),
            DataAttribute(P1Attr.KEY_LENGTH, 128),
            DataAttribute(P1Attr.HASH_ALGORITHM, IkeHash.SHA),
            DataAttribute(P1Attr.GROUP_DESCRIPTION, GroupDescription.MODP_1024),
            DataAttribute(P1Attr.AUTHENTICATION_METHOD, auth),
            DataAttribute(P1Attr.LIFE_TYPE, LifeType.SECONDS),
            DataAttribute.number(P1Attr.LIFE_DURATION, 86400),
        ],
    )


def esp_transform() -> Transform:
    return Transform(
        1,
        EspTransform.AES_CBC,
        [
            DataAttribute(IPsecAttr.SA_LIFE_TYPE, LifeType.SECONDS),
            DataAttribute(IPsecAttr.SA_LIFE_DURATION, 28800),
            DataAttribute(IPsecAttr.ENCAPSULATION_MODE, EncapsulationMode.UDP_TUNNEL),
            DataAttribute(IPsecAttr.AUTHENTICATION_ALGORITHM, IPsecAuth.HMAC_SHA),
            DataAttribute(IPsecAttr.KEY_LENGTH, 256),
            DataAttribute(IPsecAttr.GROUP_DESCRIPTION, GroupDescription.MODP_1024),
        ],
    )


# (payload, expected body hex) -- bodies written out from the RFC layouts
CASES = [
    (KEPayload(b"\x01\x02"), "0102"),
    (HashPayload(b"\xaa" * 4), "aaaaaaaa"),
    (SigPayload(b"\x05"), "05"),
    (NoncePayload(b"\x10\x11"), "1011"),
    (VendorIDPayload(VendorId.XAUTH), "09002689dfd6b712"),
    (IDPayload.key_id("vpngroup", 17, 500), "0b1101f4" + b"vpngroup".hex()),
    (IDPayload.ipv4("203.0.113.50"), "01000000cb007132"),
    (IDPayload.ipv4_subnet("10.40.1.0/24"), "040000000a280100ffffff00"),
    (IDPayload.ipv4_range("10.0.0.1", "10.0.0.9"), "070000000a0000010a000009"),
    (IDPayload.fqdn("vpn.example"), "02000000" + b"vpn.example".hex()),
    (IDPayload.user_fqdn("a@b"), "03000000" + b"a@b".hex()),
    (CertPayload(CertEncoding.X509_SIG, b"\x30\x00"), "043000"),
    (CertRequestPayload(CertEncoding.X509_SIG, b""), "04"),
    (
        NotifyPayload(NotifyType.INITIAL_CONTACT, spi=bytes(range(16))),
        "0000000101106002" + bytes(range(16)).hex(),
    ),
    (
        NotifyPayload(NotifyType.R_U_THERE, spi=bytes(16), data=b"\x00\x00\x00\x07"),
        "0000000101108d28" + "00" * 16 + "00000007",
    ),
    (
        DeletePayload(ProtocolId.IPSEC_ESP, [b"\xb7\x4c\xb1\x69", b"\xcf\xc4\x32\xac"]),
        "0000000103040002b74cb169cfc432ac",
    ),
    (
        AttributePayload(CfgType.REPLY, 20, [DataAttribute.ipv4(1, "10.40.1.1")]),
        "02000014000100040a280101",
    ),
    (NatDPayload(b"\x01" * 20), "01" * 20),
    (NatDPayload(b"\x02" * 16, PayloadType.NAT_D_DRAFT), "02" * 16),
    (NatOAPayload.ipv4("10.10.10.2"), "010000000a0a0a02"),
    (NatOAPayload.ipv4("10.10.10.3", PayloadType.NAT_OA_DRAFT), "010000000a0a0a03"),
    (FragmentPayload(1, 2, True, b"xy"), "000102017879"),
    (FragmentPayload(7, 1, False, b""), "00070100"),
    (UnknownPayload(99, b"\xde\xad"), "dead"),
]


@pytest.mark.parametrize(("p", "body_hex"), CASES, ids=lambda x: type(x).__name__)
def test_payload_round_trip(p, body_hex):
    body = bytes.fromhex(body_hex)
    data = encode_payload(p)
    assert data == bytes([0, 0]) + (4 + len(body)).to_bytes(2, "big") + body
    (decoded,) = decode_payloads(p.payload_type, data)
    assert decoded == p and type(decoded) is type(p)
    assert decoded.raw == data
    assert payload_body(decoded) == body == payload_body(p)
    assert "\n" not in decoded.describe()


def test_sa_round_trip_and_layout():
    sa = SAPayload([Proposal(1, ProtocolId.ISAKMP, b"", [ike_transform()])])
    data = encode_payload(sa)
    assert data[4:12] == bytes.fromhex("0000000100000001")  # DOI IPSEC, IDENTITY_ONLY
    proposal = data[12:]
    assert proposal[:8] == bytes([0, 0]) + len(proposal).to_bytes(2, "big") + bytes([1, 1, 0, 1])
    transform = proposal[8:]
    assert transform[:8] == bytes([0, 0]) + len(transform).to_bytes(2, "big") + bytes([1, 1, 0, 0])
    (decoded,) = decode_payloads(PayloadType.SA, data)
    assert decoded == sa
    assert decoded.proposals[0].raw == proposal
    assert decoded.proposals[0].transforms[0].raw == transform


def test_sa_describe_matches_the_contract_example():
    sa = SAPayload([Proposal(1, ProtocolId.ISAKMP, b"", [ike_transform()])])
    assert sa.describe() == (
        "SA(doi=IPSEC, 1 proposal: #1 ISAKMP 1 transform: "
        "AES_CBC-128/SHA/MODP_1024/XAUTHInitPreShared, life 86400s)"
    )


def test_multi_proposal_quick_mode_sa():
    spi = bytes.fromhex("b74cb169")
    sa = SAPayload(
        [
            Proposal(1, ProtocolId.IPSEC_ESP, spi, [esp_transform()]),
            Proposal(2, ProtocolId.IPSEC_ESP, spi, [esp_transform(), esp_transform()]),
        ]
    )
    (decoded,) = decode_payloads(PayloadType.SA, encode_payload(sa))
    assert decoded == sa
    assert decoded.describe() == (
        "SA(doi=IPSEC, 2 proposals: #1 ESP spi=b74cb169 1 transform: "
        "AES_CBC-256/HMAC_SHA/UDP_TUNNEL/PFS MODP_1024, life 28800s; "
        "#2 ESP spi=b74cb169 2 transforms: "
        "AES_CBC-256/HMAC_SHA/UDP_TUNNEL/PFS MODP_1024, life 28800s | "
        "AES_CBC-256/HMAC_SHA/UDP_TUNNEL/PFS MODP_1024, life 28800s)"
    )


def test_transform_accessors():
    t = ike_transform()
    assert t.value(P1Attr.ENCRYPTION_ALGORITHM) == IkeEncr.AES_CBC
    assert t.value(P1Attr.LIFE_DURATION) == 86400
    assert t.value(P1Attr.PRF) is None
    assert t.get(P1Attr.KEY_LENGTH) == DataAttribute(P1Attr.KEY_LENGTH, 128)


def test_transform_describe_with_unknown_values_and_kilobytes():
    t = Transform(
        1,
        1,
        [
            DataAttribute(P1Attr.ENCRYPTION_ALGORITHM, 99),
            DataAttribute(P1Attr.PRF, 3),
            DataAttribute(P1Attr.LIFE_TYPE, LifeType.KILOBYTES),
            DataAttribute(P1Attr.LIFE_DURATION, 4608000 & 0xFFFF),
            DataAttribute(P1Attr.GROUP_PRIME, bytes(128)),
        ],
    )
    assert t.describe() == "ENCR_99, PRF=3, life 20480KB, GROUP_PRIME=<128 bytes>"


@pytest.mark.parametrize(
    ("p", "text"),
    [
        (KEPayload(bytes(128)), "KE(128 bytes)"),
        (NoncePayload(bytes(20)), "NONCE(20 bytes)"),
        (HashPayload(bytes(20)), "HASH(20 bytes)"),
        (VendorIDPayload(VendorId.CISCO_UNITY), "VID(Cisco Unity)"),
        (VendorIDPayload(b"\x01\x02"), "VID(0102)"),
        (IDPayload.key_id("vpngroup"), "ID(KEY_ID 'vpngroup')"),
        (IDPayload.ipv4("10.40.1.1"), "ID(IPV4_ADDR 10.40.1.1)"),
        (IDPayload.ipv4_subnet("0.0.0.0/0"), "ID(IPV4_ADDR_SUBNET 0.0.0.0/0)"),
        (IDPayload.ipv4_range("10.0.0.1", "10.0.0.9"), "ID(IPV4_ADDR_RANGE 10.0.0.1-10.0.0.9)"),
        (IDPayload(IdType.DER_ASN1_DN, bytes(30)), "ID(DER_ASN1_DN <30 bytes>)"),
        (IDPayload(IdType.IPV4_ADDR, b"\x01"), "ID(IPV4_ADDR 01)"),
        (
            NotifyPayload(NotifyType.R_U_THERE, spi=bytes(16), data=b"\x00\x00\x00\x07"),
            f"NOTIFY(R_U_THERE, proto=ISAKMP, spi={'00' * 16}, seq=7)",
        ),
        (
            NotifyPayload(
                NotifyType.RESPONDER_LIFETIME,
                ProtocolId.IPSEC_ESP,
                b"\x01\x02\x03\x04",
                bytes.fromhex("800100010002000400007080"),
            ),
            "NOTIFY(RESPONDER_LIFETIME, proto=ESP, spi=01020304, life 28800s)",
        ),
        (NotifyPayload(40500, 1, b"", b"\x01"), "NOTIFY(CISCO_KEEPALIVE, proto=ISAKMP, data=01)"),
        (NotifyPayload(12345), "NOTIFY(NOTIFY_12345, proto=ISAKMP)"),
        (DeletePayload(3, [b"\x00\x00\x00\x01"]), "DELETE(ESP, 1 SPI: 00000001)"),
        (CertPayload(4, bytes(812)), "CERT(X509_SIG, 812 bytes)"),
        (CertRequestPayload(4, b""), "CR(X509_SIG, 0 bytes)"),
        (NatDPayload(b"\xab" * 4), "NAT_D(abababab)"),
        (NatDPayload(b"\xab", 130), "NAT_D(ab, type 130)"),
        (NatOAPayload.ipv4("10.10.10.2"), "NAT_OA(IPV4_ADDR 10.10.10.2)"),
        (FragmentPayload(1, 3, True, bytes(500)), "FRAG(id=1 #3 last, 500 bytes)"),
        (UnknownPayload(99, b"ab"), "PAYLOAD_99(2 bytes)"),
        (
            AttributePayload(
                CfgType.REPLY,
                0,
                [
                    DataAttribute.text(CfgAttr.XAUTH_USER_NAME, "vpnuser1"),
                    DataAttribute(CfgAttr.XAUTH_USER_PASSWORD, b"secret"),
                ],
            ),
            "ATTR(CFG_REPLY id=0: XAUTH_USER_NAME='vpnuser1', XAUTH_USER_PASSWORD=<hidden>)",
        ),
    ],
)
def test_describe(p, text):
    assert p.describe() == text


def test_id_helpers_give_ipaddress_objects_back():
    assert IDPayload.ipv4("10.40.1.1").address() == IPv4Address("10.40.1.1")
    assert IDPayload.ipv4("10.40.1.1").network() == IPv4Network("10.40.1.1/32")
    assert IDPayload.ipv4_subnet("192.168.2.0/24").network() == IPv4Network("192.168.2.0/24")
    first, last = IDPayload.ipv4_range("10.0.0.1", "10.0.0.9").address_range()
    assert (first, last) == (IPv4Address("10.0.0.1"), IPv4Address("10.0.0.9"))
    assert IDPayload.ipv6("2001:db8::1").address() == IPv6Address("2001:db8::1")
    net6 = IDPayload.ipv6_subnet("2001:db8::/32")
    assert net6.id_type == IdType.IPV6_ADDR_SUBNET and net6.network() == IPv6Network(
        "2001:db8::/32"
    )
    assert IDPayload.key_id(b"\x00\x01").data == b"\x00\x01"
    assert IDPayload.fqdn("vpn.example").text() == "vpn.example"
    assert IDPayload.user_fqdn("u@vpn.example").text() == "u@vpn.example"
    assert NatOAPayload.ipv4("10.10.10.2").address() == IPv4Address("10.10.10.2")


def test_subnet_id_with_host_bits_is_normalised():
    p = IDPayload(IdType.IPV4_ADDR_SUBNET, bytes([10, 40, 1, 7, 255, 255, 255, 0]))
    assert p.network() == IPv4Network("10.40.1.0/24")


def test_notify_data_attributes():
    n = NotifyPayload(NotifyType.RESPONDER_LIFETIME, data=bytes.fromhex("800b0001000c000400015180"))
    assert n.data_attributes() == [DataAttribute(11, 1), DataAttribute(12, b"\x00\x01\x51\x80")]
    assert n.describe() == "NOTIFY(RESPONDER_LIFETIME, proto=ISAKMP, life 86400s)"
    assert NotifyPayload(NotifyType.R_U_THERE, data=b"\x01").dpd_sequence is None


def test_attribute_payload_accessors():
    p = AttributePayload(
        CfgType.REPLY,
        1,
        [DataAttribute.ipv4(3, "192.168.2.10"), DataAttribute.ipv4(3, "192.168.2.11")],
    )
    assert p.get(CfgAttr.INTERNAL_IP4_DNS).as_ipv4() == IPv4Address("192.168.2.10")
    assert len(p.get_all(CfgAttr.INTERNAL_IP4_DNS)) == 2
    assert p.get(CfgAttr.INTERNAL_IP4_NBNS) is None


def test_payload_body_prefers_received_bytes():
    data = encode_payload(VendorIDPayload(b"abcd"))
    (p,) = decode_payloads(PayloadType.VENDOR_ID, data)
    p.data = b"changed"  # raw still holds what was received (and hashed)
    assert payload_body(p) == b"abcd"
    assert encode_payloads([p]) == encode_payload(VendorIDPayload(b"changed"))


def test_cert_and_cr_are_distinct_classes():
    cert, cr = CertPayload(4, b"x"), CertRequestPayload(4, b"x")
    assert cert != cr
    assert not isinstance(cr, CertPayload)
    assert (cert.payload_type, cr.payload_type) == (PayloadType.CERT, PayloadType.CR)


def test_chain_next_payload_fields():
    items = [HashPayload(b"h"), NotifyPayload(NotifyType.INITIAL_CONTACT), VendorIDPayload(b"v")]
    data = encode_payloads(items)
    assert data[0] == PayloadType.NOTIFY
    second = data[5:]
    assert second[0] == PayloadType.VENDOR_ID
    assert data[-5] == PayloadType.NONE
    assert decode_payloads(PayloadType.HASH, data) == items


def test_encode_hashed_is_the_same_message_as_encoding_it_all() -> None:
    """A HASH over the rest (RFC 2409 5.5): the rest is encoded once, for both."""
    from vpnhub.wire.payloads import encode_hashed

    rest = [NoncePayload(b"\x10" * 16),
            AttributePayload(CfgType.REPLY, 7,
                             [DataAttribute(CfgAttr.INTERNAL_IP4_ADDRESS, b"\x0a\x28\x00\x02")])]
    hp = HashPayload(b"\x01" * 20)
    assert encode_hashed(hp, rest, encode_payloads(rest)) == encode_payloads([hp, *rest])
    assert encode_hashed(hp, [], b"") == encode_payloads([hp])
@pytest.mark.parametrize("ptype", [PayloadType.CERT, PayloadType.CR])
def test_cert_payload_without_its_encoding_byte_is_refused(ptype: int) -> None:
    # RFC 2408 3.9/3.10: the encoding byte is mandatory; hostile input, named error
    from vpnhub.wire.errors import WireError

    with pytest.raises(WireError, match="short"):
        decode_payloads(ptype, bytes([0, 0, 0, 4]))
