"""The numbers the IKE engine is written against (docs/API-CONTRACT.md, vpnhub.wire)."""

from __future__ import annotations

import pytest

from vpnhub.wire import (
    AuthMethod,
    CfgAttr,
    CfgType,
    EncapsulationMode,
    EspTransform,
    ExchangeType,
    Flag,
    IdType,
    IkeEncr,
    IkeHash,
    IPsecAttr,
    IPsecAuth,
    LifeType,
    NotifyType,
    P1Attr,
    PayloadType,
    ProtocolId,
)
from vpnhub.wire.constants import enum_name

CONTRACT = {
    ExchangeType: dict(
        BASE=1,
        IDENTITY_PROTECTION=2,
        AUTH_ONLY=3,
        AGGRESSIVE=4,
        INFORMATIONAL=5,
        TRANSACTION=6,
        QUICK_MODE=32,
        NEW_GROUP_MODE=33,
    ),
    PayloadType: dict(
        NONE=0,
        SA=1,
        PROPOSAL=2,
        TRANSFORM=3,
        KE=4,
        ID=5,
        CERT=6,
        CR=7,
        HASH=8,
        SIG=9,
        NONCE=10,
        NOTIFY=11,
        DELETE=12,
        VENDOR_ID=13,
        ATTRIBUTE=14,
        NAT_D=20,
        NAT_OA=21,
        NAT_D_DRAFT=130,
        NAT_OA_DRAFT=131,
        FRAGMENT=132,
    ),
    Flag: dict(ENCRYPTION=1, COMMIT=2, AUTH_ONLY=4),
    IdType: dict(
        IPV4_ADDR=1,
        FQDN=2,
        USER_FQDN=3,
        IPV4_ADDR_SUBNET=4,
        IPV6_ADDR=5,
        IPV6_ADDR_SUBNET=6,
        IPV4_ADDR_RANGE=7,
        IPV6_ADDR_RANGE=8,
        DER_ASN1_DN=9,
        DER_ASN1_GN=10,
        KEY_ID=11,
    ),
    ProtocolId: dict(ISAKMP=1, IPSEC_AH=2, IPSEC_ESP=3, IPCOMP=4),
    NotifyType: dict(
        INVALID_PAYLOAD_TYPE=1,
        INVALID_MAJOR_VERSION=5,
        PAYLOAD_MALFORMED=16,
        INVALID_ID_INFORMATION=18,
        AUTHENTICATION_FAILED=24,
        UNEQUAL_PAYLOAD_LENGTHS=30,
        RESPONDER_LIFETIME=24576,
        REPLAY_STATUS=24577,
        INITIAL_CONTACT=24578,
        R_U_THERE=36136,
        R_U_THERE_ACK=36137,
        CISCO_KEEPALIVE=40500,
        UNITY_LOAD_BALANCE=40501,
        UNITY_HEARTBEAT=40503,
    ),
    P1Attr: dict(
        ENCRYPTION_ALGORITHM=1,
        HASH_ALGORITHM=2,
        AUTHENTICATION_METHOD=3,
        GROUP_DESCRIPTION=4,
        LIFE_TYPE=11,
        LIFE_DURATION=12,
        PRF=13,
        KEY_LENGTH=14,
        FIELD_SIZE=15,
        GROUP_ORDER=16,
    ),
    IkeEncr: dict(DES_CBC=1, TRIPLE_DES_CBC=5, AES_CBC=7),
    IkeHash: dict(MD5=1, SHA=2, TIGER=3, SHA2_256=4, SHA2_384=5, SHA2_512=6),
    AuthMethod: dict(
        PSK=1,
        DSS_SIG=2,
        RSA_SIG=3,
        RSA_ENC=4,
        RSA_REV_ENC=5,
        XAUTH_INIT_PSK=65001,
        XAUTH_RESP_PSK=65002,
        XAUTH_INIT_RSA=65005,
        XAUTH_RESP_RSA=65006,
        HYBRID_INIT_RSA=64221,
        HYBRID_RESP_RSA=64222,
    ),
    LifeType: dict(SECONDS=1, KILOBYTES=2),
    IPsecAttr: dict(
        SA_LIFE_TYPE=1,
        SA_LIFE_DURATION=2,
        GROUP_DESCRIPTION=3,
        ENCAPSULATION_MODE=4,
        AUTHENTICATION_ALGORITHM=5,
        KEY_LENGTH=6,
        KEY_ROUNDS=7,
    ),
    EspTransform: dict(
        DES=2, TRIPLE_DES=3, NULL=11, AES_CBC=12, AES_GCM_8=18, AES_GCM_12=19, AES_GCM_16=20
    ),
    IPsecAuth: dict(
        HMAC_MD5=1,
        HMAC_SHA=2,
        DES_MAC=3,
        KPDK=4,
        HMAC_SHA2_256=5,
        HMAC_SHA2_384=6,
        HMAC_SHA2_512=7,
    ),
    EncapsulationMode: dict(
        TUNNEL=1,
        TRANSPORT=2,
        UDP_TUNNEL=3,
        UDP_TRANSPORT=4,
        UDP_TUNNEL_DRAFT=61443,
        UDP_TRANSPORT_DRAFT=61444,
    ),
    CfgType: dict(REQUEST=1, REPLY=2, SET=3, ACK=4),
    CfgAttr: dict(
        INTERNAL_IP4_ADDRESS=1,
        APPLICATION_VERSION=7,
        INTERNAL_IP4_SUBNET=13,
        SUPPORTED_ATTRIBUTES=14,
        INTERNAL_IP6_SUBNET=15,
        XAUTH_TYPE=16520,
        XAUTH_USER_NAME=16521,
        XAUTH_USER_PASSWORD=16522,
        XAUTH_STATUS=16527,
        XAUTH_ANSWER=16529,
        UNITY_BANNER=28672,
        UNITY_SAVE_PASSWD=28673,
        UNITY_SPLIT_INCLUDE=28676,
        UNITY_NATT_PORT=28677,
        UNITY_PFS=28679,
        UNITY_DDNS_HOSTNAME=28682,
    ),
}


@pytest.mark.parametrize("enum_cls", list(CONTRACT), ids=lambda c: c.__name__)
def test_contract_values(enum_cls):
    for name, value in CONTRACT[enum_cls].items():
        assert enum_cls[name] == value, name


def test_notify_errors_are_contiguous():
    assert [int(NotifyType(v)) for v in range(1, 31)] == list(range(1, 31))


def test_enum_name():
    assert enum_name(PayloadType, 13, "P_") == "VENDOR_ID"
    assert enum_name(PayloadType, 99, "P_") == "P_99"
