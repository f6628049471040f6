"""ISAKMP / IKEv1 numbers, named as in the RFCs.

Sources: RFC 2408 (ISAKMP) sections 3.1, 3.14.1; RFC 2407 (IPsec DOI) section 4;
RFC 2409 (IKE) appendix A; RFC 3947 (NAT-T); RFC 3706 (DPD);
draft-ietf-ipsec-isakmp-xauth-06 and draft-ietf-ipsec-isakmp-mode-cfg-05;
Cisco Unity attribute numbers as used by vpnc, strongSwan and the Cisco clients.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag


class ExchangeType(IntEnum):
    """RFC 2408 3.1 Exchange Type; RFC 2409 5.5 (Quick Mode), 5.6 (New Group Mode)."""

    BASE = 1
    IDENTITY_PROTECTION = 2  # Main Mode
    AUTH_ONLY = 3
    AGGRESSIVE = 4
    INFORMATIONAL = 5
    TRANSACTION = 6  # draft-ietf-ipsec-isakmp-mode-cfg-05 3.1
    QUICK_MODE = 32
    NEW_GROUP_MODE = 33


class PayloadType(IntEnum):
    """RFC 2408 3.1 Next Payload types; RFC 3947 (NAT-D, NAT-OA); Cisco fragmentation."""

    NONE = 0
    SA = 1
    PROPOSAL = 2
    TRANSFORM = 3
    KE = 4
    ID = 5
    CERT = 6
    CR = 7
    HASH = 8
    SIG = 9
    NONCE = 10
    NOTIFY = 11
    DELETE = 12
    VENDOR_ID = 13
    ATTRIBUTE = 14  # mode-cfg-05 3.2
    NAT_D = 20  # RFC 3947 3.2
    NAT_OA = 21  # RFC 3947 5.2
    NAT_D_DRAFT = 130  # draft-ietf-ipsec-nat-t-ike-02/03
    NAT_OA_DRAFT = 131
    FRAGMENT = 132  # Cisco IKE fragmentation


class Flag(IntFlag):
    """RFC 2408 3.1 header flags."""

    ENCRYPTION = 1
    COMMIT = 2
    AUTH_ONLY = 4


class Doi(IntEnum):
    """RFC 2408 3.4 Domain of Interpretation; RFC 2407 4.2."""

    ISAKMP = 0
    IPSEC = 1


class Situation(IntFlag):
    """RFC 2407 4.2 IPsec DOI situation bits."""

    IDENTITY_ONLY = 1
    SECRECY = 2
    INTEGRITY = 4


class IdType(IntEnum):
    """RFC 2407 4.6.2.1 Identification Type Values."""

    IPV4_ADDR = 1
    FQDN = 2
    USER_FQDN = 3
    IPV4_ADDR_SUBNET = 4
    IPV6_ADDR = 5
    IPV6_ADDR_SUBNET = 6
    IPV4_ADDR_RANGE = 7
    IPV6_ADDR_RANGE = 8
    DER_ASN1_DN = 9
    DER_ASN1_GN = 10
    KEY_ID = 11


class ProtocolId(IntEnum):
    """RFC 2407 4.4.1 IPsec Security Protocol Identifiers."""

    ISAKMP = 1
    IPSEC_AH = 2
    IPSEC_ESP = 3
    IPCOMP = 4


class IkeTransformId(IntEnum):
    """RFC 2407 4.4.2 IPsec ISAKMP Transform Identifiers."""

    KEY_IKE = 1


class NotifyType(IntEnum):
    """RFC 2408 3.14.1 (errors 1..30, status 16384), RFC 2407 4.6.3, RFC 3706, Cisco."""

    INVALID_PAYLOAD_TYPE = 1
    DOI_NOT_SUPPORTED = 2
    SITUATION_NOT_SUPPORTED = 3
    INVALID_COOKIE = 4
    INVALID_MAJOR_VERSION = 5
    INVALID_MINOR_VERSION = 6
    INVALID_EXCHANGE_TYPE = 7
    INVALID_FLAGS = 8
    INVALID_MESSAGE_ID = 9
    INVALID_PROTOCOL_ID = 10
    INVALID_SPI = 11
    INVALID_TRANSFORM_ID = 12
    ATTRIBUTES_NOT_SUPPORTED = 13
    NO_PROPOSAL_CHOSEN = 14
    BAD_PROPOSAL_SYNTAX = 15
    PAYLOAD_MALFORMED = 16
    INVALID_KEY_INFORMATION = 17
    INVALID_ID_INFORMATION = 18
    INVALID_CERT_ENCODING = 19
    INVALID_CERTIFICATE = 20
    CERT_TYPE_UNSUPPORTED = 21
    INVALID_CERT_AUTHORITY = 22
    INVALID_HASH_INFORMATION = 23
    AUTHENTICATION_FAILED = 24
    INVALID_SIGNATURE = 25
    ADDRESS_NOTIFICATION = 26
    NOTIFY_SA_LIFETIME = 27
    CERTIFICATE_UNAVAILABLE = 28
    UNSUPPORTED_EXCHANGE_TYPE = 29
    UNEQUAL_PAYLOAD_LENGTHS = 30
    CONNECTED = 16384  # RFC 2408 3.14.1 status
    RESPONDER_LIFETIME = 24576  # RFC 2407 4.6.3.1
    REPLAY_STATUS = 24577  # RFC 2407 4.6.3.2
    INITIAL_CONTACT = 24578  # RFC 2407 4.6.3.3
    R_U_THERE = 36136  # RFC 3706 5.1
    R_U_THERE_ACK = 36137
    CISCO_KEEPALIVE = 40500  # Cisco proprietary keepalive
    UNITY_LOAD_BALANCE = 40501
    UNITY_HEARTBEAT = 40503


class P1Attr(IntEnum):
    """RFC 2409 appendix A, phase 1 SA attribute classes."""

    ENCRYPTION_ALGORITHM = 1
    HASH_ALGORITHM = 2
    AUTHENTICATION_METHOD = 3
    GROUP_DESCRIPTION = 4
    GROUP_TYPE = 5
    GROUP_PRIME = 6
    GROUP_GENERATOR_ONE = 7
    GROUP_GENERATOR_TWO = 8
    GROUP_CURVE_A = 9
    GROUP_CURVE_B = 10
    LIFE_TYPE = 11
    LIFE_DURATION = 12
    PRF = 13
    KEY_LENGTH = 14
    FIELD_SIZE = 15
    GROUP_ORDER = 16


class IkeEncr(IntEnum):
    """RFC 2409 appendix A Encryption Algorithm; RFC 3602 (AES_CBC = 7)."""

    DES_CBC = 1
    IDEA_CBC = 2
    BLOWFISH_CBC = 3
    RC5_CBC = 4
    TRIPLE_DES_CBC = 5
    CAST_CBC = 6
    AES_CBC = 7


class IkeHash(IntEnum):
    """RFC 2409 appendix A Hash Algorithm; RFC 4868 (SHA2)."""

    MD5 = 1
    SHA = 2
    TIGER = 3
    SHA2_256 = 4
    SHA2_384 = 5
    SHA2_512 = 6


class AuthMethod(IntEnum):
    """RFC 2409 appendix A Authentication Method; XAUTH-06 / hybrid-auth private values."""

    PSK = 1
    DSS_SIG = 2
    RSA_SIG = 3
    RSA_ENC = 4
    RSA_REV_ENC = 5
    HYBRID_INIT_RSA = 64221
    HYBRID_RESP_RSA = 64222
    HYBRID_INIT_DSS = 64223
    HYBRID_RESP_DSS = 64224
    XAUTH_INIT_PSK = 65001
    XAUTH_RESP_PSK = 65002
    XAUTH_INIT_DSS = 65003
    XAUTH_RESP_DSS = 65004
    XAUTH_INIT_RSA = 65005
    XAUTH_RESP_RSA = 65006
    XAUTH_INIT_RSA_ENC = 65007
    XAUTH_RESP_RSA_ENC = 65008
    XAUTH_INIT_RSA_REV_ENC = 65009
    XAUTH_RESP_RSA_REV_ENC = 65010


class GroupDescription(IntEnum):
    """RFC 2409 appendix A Group Description; RFC 3526, RFC 5903, RFC 5114 (IANA registry)."""

    MODP_768 = 1
    MODP_1024 = 2
    EC2N_155 = 3
    EC2N_185 = 4
    MODP_1536 = 5
    MODP_2048 = 14
    MODP_3072 = 15
    MODP_4096 = 16
    MODP_6144 = 17
    MODP_8192 = 18
    ECP_256 = 19
    ECP_384 = 20
    ECP_521 = 21
    MODP_1024_160 = 22
    MODP_2048_224 = 23
    MODP_2048_256 = 24
    ECP_192 = 25
    ECP_224 = 26


class GroupType(IntEnum):
    """RFC 2409 appendix A Group Type."""

    MODP = 1
    ECP = 2
    EC2N = 3


class LifeType(IntEnum):
    """RFC 2409 appendix A Life Type (also RFC 2407 4.5 SA Life Type)."""

    SECONDS = 1
    KILOBYTES = 2


class IPsecAttr(IntEnum):
    """RFC 2407 4.5 IPsec Security Association Attributes."""

    SA_LIFE_TYPE = 1
    SA_LIFE_DURATION = 2
    GROUP_DESCRIPTION = 3
    ENCAPSULATION_MODE = 4
    AUTHENTICATION_ALGORITHM = 5
    KEY_LENGTH = 6
    KEY_ROUNDS = 7


class EspTransform(IntEnum):
    """RFC 2407 4.4.4 IPsec ESP Transform Identifiers; RFC 3602, RFC 4106."""

    DES = 2
    TRIPLE_DES = 3
    NULL = 11
    AES_CBC = 12
    AES_GCM_8 = 18
    AES_GCM_12 = 19
    AES_GCM_16 = 20


class AhTransform(IntEnum):
    """RFC 2407 4.4.3 IPsec AH Transform Identifiers; RFC 4868."""

    MD5 = 2
    SHA = 3
    DES = 4
    SHA2_256 = 5
    SHA2_384 = 6
    SHA2_512 = 7


class IPCompTransform(IntEnum):
    """RFC 2407 4.4.5 IPCOMP Transform Identifiers."""

    OUI = 1
    DEFLATE = 2
    LZS = 3


class IPsecAuth(IntEnum):
    """RFC 2407 4.5 Authentication Algorithm; RFC 4868."""

    HMAC_MD5 = 1
    HMAC_SHA = 2
    DES_MAC = 3
    KPDK = 4
    HMAC_SHA2_256 = 5
    HMAC_SHA2_384 = 6
    HMAC_SHA2_512 = 7


class EncapsulationMode(IntEnum):
    """RFC 2407 4.5 Encapsulation Mode; RFC 3947 5.1 and the drafts' private values."""

    TUNNEL = 1
    TRANSPORT = 2
    UDP_TUNNEL = 3
    UDP_TRANSPORT = 4
    UDP_TUNNEL_DRAFT = 61443
    UDP_TRANSPORT_DRAFT = 61444


class CertEncoding(IntEnum):
    """RFC 2408 3.9 Certificate Encoding."""

    NONE = 0
    PKCS7 = 1
    PGP = 2
    DNS_SIGNED_KEY = 3
    X509_SIG = 4
    X509_KE = 5
    KERBEROS = 6
    CRL = 7
    ARL = 8
    SPKI = 9
    X509_ATTR = 10


class CfgType(IntEnum):
    """mode-cfg-05 3.2 Attribute Payload message types."""

    REQUEST = 1
    REPLY = 2
    SET = 3
    ACK = 4


class CfgAttr(IntEnum):
    """mode-cfg-05 3.2, XAUTH-06 6.1 and Cisco Unity (28672+) attribute types."""

    INTERNAL_IP4_ADDRESS = 1
    INTERNAL_IP4_NETMASK = 2
    INTERNAL_IP4_DNS = 3
    INTERNAL_IP4_NBNS = 4
    INTERNAL_ADDRESS_EXPIRY = 5
    INTERNAL_IP4_DHCP = 6
    APPLICATION_VERSION = 7
    INTERNAL_IP6_ADDRESS = 8
    INTERNAL_IP6_NETMASK = 9
    INTERNAL_IP6_DNS = 10
    INTERNAL_IP6_NBNS = 11
    INTERNAL_IP6_DHCP = 12
    INTERNAL_IP4_SUBNET = 13
    SUPPORTED_ATTRIBUTES = 14
    INTERNAL_IP6_SUBNET = 15
    XAUTH_TYPE = 16520
    XAUTH_USER_NAME = 16521
    XAUTH_USER_PASSWORD = 16522
    XAUTH_PASSCODE = 16523
    XAUTH_MESSAGE = 16524
    XAUTH_CHALLENGE = 16525
    XAUTH_DOMAIN = 16526
    XAUTH_STATUS = 16527
    XAUTH_NEXT_PIN = 16528
    XAUTH_ANSWER = 16529
    UNITY_BANNER = 28672
    UNITY_SAVE_PASSWD = 28673
    UNITY_DEF_DOMAIN = 28674
    UNITY_SPLIT_DNS = 28675
    UNITY_SPLIT_INCLUDE = 28676
    UNITY_NATT_PORT = 28677
    UNITY_LOCAL_LAN = 28678
    UNITY_PFS = 28679
    UNITY_FW_TYPE = 28680
    UNITY_BACKUP_SERVERS = 28681
    UNITY_DDNS_HOSTNAME = 28682


class XauthType(IntEnum):
    """XAUTH-06 6.2 XAUTH_TYPE values."""

    GENERIC = 0
    RADIUS_CHAP = 1
    OTP = 2
    S_KEY = 3


class XauthStatus(IntEnum):
    """XAUTH-06 6.1 XAUTH_STATUS values."""

    FAIL = 0
    OK = 1


def enum_name(enum_cls: type[IntEnum], value: int, prefix: str) -> str:
    """The member name for `value`, or `prefix` + the number for unknown values."""
    try:
        return enum_cls(value).name
    except ValueError:
        return f"{prefix}{value}"
