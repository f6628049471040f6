"""Algorithm policy: what we propose and what we accept (phase 1 and phase 2).

Modern by default: AES with an SHA1 or SHA2 HMAC (SHA1 is still sound as an
HMAC and is all vpnc and many deployed IKEv1 clients offer), DH groups 14
and up and ECP 19/20. 3DES, DES, MD5 and DH groups 1, 2, 5 only when the
configuration allows legacy suites (the source document uses 3DES/MD5/group 2).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from vpnhub.ike.lifetime import duration_value
from vpnhub.wire.attributes import DataAttribute
from vpnhub.wire.constants import (
    AuthMethod,
    EncapsulationMode,
    EspTransform,
    IkeEncr,
    IkeHash,
    IPsecAttr,
    IPsecAuth,
    LifeType,
    P1Attr,
)
from vpnhub.wire.payloads import Transform

MODERN_GROUPS = (14, 15, 16, 19, 20)
LEGACY_GROUPS = (1, 2, 5)  # flagged as legacy wherever they are seen
# What allow_legacy_crypto accepts: the documented groups 2 and 5, never group 1.
# A 768-bit group falls to a precomputation on one prime (Logjam, Adrian et al.
# 2015, breaks 512-bit in minutes and puts 768 within academic reach); RFC 8247
# section 2.4 says MUST NOT for it.
ACCEPTED_LEGACY_GROUPS = (2, 5)
MODERN_IKE_HASHES = (IkeHash.SHA, IkeHash.SHA2_256, IkeHash.SHA2_384, IkeHash.SHA2_512)
LEGACY_IKE_HASHES = (IkeHash.MD5,)
MODERN_ESP_AUTH = (
    IPsecAuth.HMAC_SHA,
    IPsecAuth.HMAC_SHA2_256,
    IPsecAuth.HMAC_SHA2_384,
    IPsecAuth.HMAC_SHA2_512,
)
LEGACY_ESP_AUTH = (IPsecAuth.HMAC_MD5,)
AES_KEY_LENGTHS = (128, 192, 256)

# Key bytes each ESP algorithm draws from KEYMAT (RFC 2409 5.5: encryption key
# first, then the integrity key). AES-GCM takes a 4-byte salt (RFC 4106 8.1).
ESP_AUTH_KEY_LEN = {
    IPsecAuth.HMAC_MD5: 16,
    IPsecAuth.HMAC_SHA: 20,
    IPsecAuth.HMAC_SHA2_256: 32,
    IPsecAuth.HMAC_SHA2_384: 48,
    IPsecAuth.HMAC_SHA2_512: 64,
}
AEAD_TRANSFORMS = (EspTransform.AES_GCM_8, EspTransform.AES_GCM_12, EspTransform.AES_GCM_16)


@dataclass(frozen=True)
class P1Suite:
    """One phase 1 transform, decoded."""

    encr: int
    key_length: int  # bits; 0 when the cipher has a fixed key size
    hash: int
    group: int
    auth: int
    lifetime: int  # seconds, 0 = not given

    def is_legacy(self) -> bool:
        return (
            self.encr != IkeEncr.AES_CBC
            or self.hash in LEGACY_IKE_HASHES
            or self.group in LEGACY_GROUPS
        )


@dataclass(frozen=True)
class EspSuite:
    """One phase 2 (ESP) transform, decoded."""

    transform: int
    key_length: int
    auth: int  # 0 for AEAD
    encapsulation: int
    group: int  # PFS group, 0 = no PFS
    lifetime: int  # seconds, 0 = not given
    life_kb: int = 0

    def is_legacy(self) -> bool:
        return self.transform == EspTransform.TRIPLE_DES or self.auth in LEGACY_ESP_AUTH

    def key_lengths(self) -> tuple[int, int]:
        """(encryption key bytes, integrity key bytes) to draw from KEYMAT."""
        if self.transform == EspTransform.TRIPLE_DES:
            enc = 24
        elif self.transform == EspTransform.DES:
            enc = 8
        elif self.transform in AEAD_TRANSFORMS:
            enc = self.key_length // 8 + 4
        elif self.transform == EspTransform.NULL:
            enc = 0
        else:
            enc = self.key_length // 8
        return enc, ESP_AUTH_KEY_LEN.get(IPsecAuth(self.auth), 0) if self.auth else 0


def _attr_map(t: Transform) -> dict[int, int] | None:
    """Attributes of a transform as {type: int}; None if one is malformed."""
    out: dict[int, int] = {}
    for a in t.attributes:
        try:
            out[a.type] = a.as_int()
        except Exception:
            return None
    return out


def decode_p1(t: Transform) -> P1Suite | None:
    m = _attr_map(t)
    if m is None:
        return None
    lifetime = 0
    if m.get(P1Attr.LIFE_TYPE, LifeType.SECONDS) == LifeType.SECONDS:
        lifetime = m.get(P1Attr.LIFE_DURATION, 0)
    return P1Suite(
        encr=m.get(P1Attr.ENCRYPTION_ALGORITHM, 0),
        key_length=m.get(P1Attr.KEY_LENGTH, 0),
        hash=m.get(P1Attr.HASH_ALGORITHM, 0),
        group=m.get(P1Attr.GROUP_DESCRIPTION, 0),
        auth=m.get(P1Attr.AUTHENTICATION_METHOD, 0),
        lifetime=lifetime,
    )


def encode_p1(number: int, s: P1Suite) -> Transform:
    attrs = [DataAttribute(P1Attr.ENCRYPTION_ALGORITHM, s.encr)]
    if s.key_length:
        attrs.append(DataAttribute(P1Attr.KEY_LENGTH, s.key_length))
    attrs += [
        DataAttribute(P1Attr.HASH_ALGORITHM, s.hash),
        DataAttribute(P1Attr.GROUP_DESCRIPTION, s.group),
        DataAttribute(P1Attr.AUTHENTICATION_METHOD, s.auth),
    ]
    if s.lifetime:
        attrs += [
            DataAttribute(P1Attr.LIFE_TYPE, LifeType.SECONDS),
            DataAttribute(P1Attr.LIFE_DURATION, duration_value(s.lifetime)),
        ]
    return Transform(number=number, transform_id=1, attributes=attrs)  # KEY_IKE


def decode_esp(transform_id: int, t: Transform) -> EspSuite | None:
    m = _attr_map(t)
    if m is None:
        return None
    lifetime = life_kb = 0
    life_type = LifeType.SECONDS
    # SA_LIFE_TYPE / SA_LIFE_DURATION come in pairs (RFC 2407 4.5).
    for a in t.attributes:
        if a.type == IPsecAttr.SA_LIFE_TYPE:
            life_type = LifeType(a.as_int()) if a.as_int() in (1, 2) else LifeType.SECONDS
        elif a.type == IPsecAttr.SA_LIFE_DURATION:
            if life_type == LifeType.SECONDS:
                lifetime = a.as_int()
            else:
                life_kb = a.as_int()
    return EspSuite(
        transform=transform_id,
        key_length=m.get(IPsecAttr.KEY_LENGTH, 0),
        auth=m.get(IPsecAttr.AUTHENTICATION_ALGORITHM, 0),
        encapsulation=m.get(IPsecAttr.ENCAPSULATION_MODE, EncapsulationMode.TUNNEL),
        group=m.get(IPsecAttr.GROUP_DESCRIPTION, 0),
        lifetime=lifetime,
        life_kb=life_kb,
    )


def encode_esp(number: int, s: EspSuite) -> Transform:
    attrs: list[DataAttribute] = []
    if s.lifetime:
        attrs += [
            DataAttribute(IPsecAttr.SA_LIFE_TYPE, LifeType.SECONDS),
            DataAttribute(IPsecAttr.SA_LIFE_DURATION, duration_value(s.lifetime)),
        ]
    if s.group:
        attrs.append(DataAttribute(IPsecAttr.GROUP_DESCRIPTION, s.group))
    attrs.append(DataAttribute(IPsecAttr.ENCAPSULATION_MODE, s.encapsulation))
    if s.auth:
        attrs.append(DataAttribute(IPsecAttr.AUTHENTICATION_ALGORITHM, s.auth))
    if s.key_length:
        attrs.append(DataAttribute(IPsecAttr.KEY_LENGTH, s.key_length))
    return Transform(number=number, transform_id=s.transform, attributes=attrs)


@dataclass(frozen=True)
class Policy:
    """What this end proposes (as initiator) and accepts (as responder)."""

    allow_legacy: bool = False
    ike_lifetime: int = 86400
    ipsec_lifetime: int = 28800
    # Initiator: the DH group of Aggressive Mode (one KE for all proposals).
    dh_group: int = 14
    require_xauth: bool = True
    pfs_group: int = 0  # initiator: PFS group for Quick Mode, 0 = none
    ike_encryptions: tuple[tuple[int, int], ...] = (
        (IkeEncr.AES_CBC, 256),
        (IkeEncr.AES_CBC, 128),
    )
    ike_hashes: tuple[int, ...] = (IkeHash.SHA2_256, IkeHash.SHA)
    esp_ciphers: tuple[tuple[int, int], ...] = (
        (EspTransform.AES_GCM_16, 256),
        (EspTransform.AES_GCM_16, 128),
        (EspTransform.AES_CBC, 256),
        (EspTransform.AES_CBC, 128),
    )
    esp_auths: tuple[int, ...] = (IPsecAuth.HMAC_SHA2_256, IPsecAuth.HMAC_SHA)
    # Responder: when set, only these (a group's ike_proposals / esp_proposals).
    # IKE: (encr, key length, hash, group); ESP: (transform, key length, auth, PFS group
    # or -1 for "any").
    ike_only: tuple[tuple[int, int, int, int], ...] | None = None
    esp_only: tuple[tuple[int, int, int, int], ...] | None = None
    extra: dict[str, str] = field(default_factory=dict)

    # -- acceptance (responder) -------------------------------------------------
    def groups(self) -> tuple[int, ...]:
        return MODERN_GROUPS + (ACCEPTED_LEGACY_GROUPS if self.allow_legacy else ())

    def accept_p1(self, s: P1Suite, auth_methods: tuple[int, ...]) -> str | None:
        """None if acceptable, else a short reason (logged with the proposal)."""
        if s.encr == IkeEncr.AES_CBC:
            if s.key_length not in AES_KEY_LENGTHS:
                return f"AES key length {s.key_length}"
        elif s.encr == IkeEncr.TRIPLE_DES_CBC:
            if not self.allow_legacy:
                return "3DES needs allow_legacy_crypto"
        else:
            return f"cipher {s.encr}"
        if s.hash not in MODERN_IKE_HASHES + LEGACY_IKE_HASHES:
            return f"hash {s.hash}"
        if s.hash in LEGACY_IKE_HASHES and not self.allow_legacy:
            return "MD5 needs allow_legacy_crypto"
        if s.group not in self.groups():
            return f"DH group {s.group}" + (
                " needs allow_legacy_crypto" if s.group in ACCEPTED_LEGACY_GROUPS
                else " is never accepted (768-bit)" if s.group == 1 else ""
            )
        if s.auth not in auth_methods:
            return f"authentication method {s.auth}"
        if self.ike_only is not None and \
                (s.encr, s.key_length, s.hash, s.group) not in self.ike_only:
            return "not among the group's ike_proposals"
        return None

    def accept_esp(self, s: EspSuite) -> str | None:
        if s.transform == EspTransform.AES_CBC:
            if s.key_length not in AES_KEY_LENGTHS:
                return f"AES key length {s.key_length}"
            if not s.auth:
                return "AES-CBC without integrity"
        elif s.transform in AEAD_TRANSFORMS:
            if s.transform != EspTransform.AES_GCM_16 or s.key_length not in AES_KEY_LENGTHS:
                return "only AES-GCM-16 with 128/192/256-bit keys"
            if s.auth:
                return "AES-GCM with a separate integrity algorithm"
        elif s.transform == EspTransform.TRIPLE_DES:
            if not self.allow_legacy:
                return "3DES needs allow_legacy_crypto"
        else:
            return f"ESP transform {s.transform}"
        if s.auth and s.auth not in MODERN_ESP_AUTH + LEGACY_ESP_AUTH:
            return f"integrity {s.auth}"
        if s.auth in LEGACY_ESP_AUTH and not self.allow_legacy:
            return "HMAC-MD5 needs allow_legacy_crypto"
        if s.group and s.group not in self.groups():
            return f"PFS group {s.group}"
        if self.esp_only is not None and not any(
                (s.transform, s.key_length, s.auth) == (t, k, a) and g in (-1, s.group)
                for t, k, a, g in self.esp_only):
            return "not among the group's esp_proposals"
        return None

    # -- proposals (initiator) --------------------------------------------------
    def p1_offers(self, auth: int) -> list[P1Suite]:
        return list(_p1_offers(self.allow_legacy, self.ike_encryptions, self.ike_hashes,
                               self.dh_group, auth, self.ike_lifetime))

    def esp_offers(self, encapsulation: int) -> list[EspSuite]:
        return list(_esp_offers(self.allow_legacy, self.esp_ciphers, self.esp_auths,
                                encapsulation, self.pfs_group, self.ipsec_lifetime))


# An initiator offers the same suites in every exchange (a load generator: thousands of
# times a second, issue 13), so they are built once per distinct policy; the fields
# they depend on are all hashable (`Policy.extra` is not, hence not the Policy itself).
@functools.lru_cache(maxsize=64)
def _p1_offers(allow_legacy: bool, encryptions: tuple[tuple[int, int], ...],
               hashes: tuple[int, ...], group: int, auth: int,
               lifetime: int) -> tuple[P1Suite, ...]:
    encs = list(encryptions)
    hs = list(hashes)
    if allow_legacy:
        encs.append((IkeEncr.TRIPLE_DES_CBC, 0))
        hs.append(IkeHash.MD5)
    return tuple(P1Suite(e, k, h, group, auth, lifetime) for e, k in encs for h in hs)


@functools.lru_cache(maxsize=64)
def _esp_offers(allow_legacy: bool, esp_ciphers: tuple[tuple[int, int], ...],
                esp_auths: tuple[int, ...], encapsulation: int, pfs_group: int,
                lifetime: int) -> tuple[EspSuite, ...]:
    out: list[EspSuite] = []
    ciphers = list(esp_ciphers)
    auths = list(esp_auths)
    if allow_legacy:
        ciphers.append((EspTransform.TRIPLE_DES, 0))
        auths.append(IPsecAuth.HMAC_MD5)
    for t, k in ciphers:
        if t in AEAD_TRANSFORMS:
            out.append(EspSuite(t, k, 0, encapsulation, pfs_group, lifetime))
            continue
        for a in auths:
            out.append(EspSuite(t, k, a, encapsulation, pfs_group, lifetime))
    return tuple(out)


def legacy_policy(**kw: object) -> Policy:
    """The document's suite: 3DES/MD5 and group 2 allowed."""
    return Policy(allow_legacy=True, **kw)  # type: ignore[arg-type]


XAUTH_AUTH_METHODS = (AuthMethod.XAUTH_INIT_PSK,)
PSK_AUTH_METHODS = (AuthMethod.PSK,)
