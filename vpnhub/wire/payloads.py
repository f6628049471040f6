"""ISAKMP payloads (RFC 2408 3.2-3.16, RFC 2407 4.6, RFC 3947, mode-cfg-05, Cisco).

Each payload is a dataclass whose `raw` holds the bytes as received, generic
header included (the engine hashes them). `encode_body()` gives the body,
`describe()` one log line. `decode_payloads` walks a payload chain strictly:
anything malformed is a `WireError`, never another exception.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
    ip_network,
)
from itertools import pairwise
from typing import ClassVar, TypeAlias

from vpnhub.wire.attributes import (
    DataAttribute,
    decode_attributes,
    describe_config_attributes,
    encode_attributes,
    get_attribute,
    network_from_mask,
    printable,
)
from vpnhub.wire.constants import (
    AhTransform,
    AuthMethod,
    CertEncoding,
    CfgType,
    Doi,
    EncapsulationMode,
    EspTransform,
    GroupDescription,
    IdType,
    IkeEncr,
    IkeHash,
    IPCompTransform,
    IPsecAttr,
    IPsecAuth,
    LifeType,
    NotifyType,
    P1Attr,
    PayloadType,
    ProtocolId,
    Situation,
    enum_name,
)
from vpnhub.wire.errors import Reason, WireError
from vpnhub.wire.vendor import identify

GENERIC_HEADER_LEN = 4
# The IKEv1 chain is linear and every payload is >= 4 bytes, so it always ends;
# this caps the work a hostile 64 KiB datagram can cause (and SA proposal lists).
MAX_PAYLOADS = 256
CRITICAL = 0x80  # generic header RESERVED bit, honoured IKEv2-style for unknown types

_GENERIC = struct.Struct("!BBH")  # RFC 2408 3.2: next payload, RESERVED, length
_SA = struct.Struct("!II")  # RFC 2407 4.6.1: DOI, situation
_PROPOSAL = struct.Struct("!BBHBBBB")  # RFC 2408 3.5
_TRANSFORM = struct.Struct("!BBHBBH")  # RFC 2408 3.6
_PROPOSAL_HEAD = struct.Struct("!BBBB")  # RFC 2408 3.5 after the generic header
_TRANSFORM_HEAD = struct.Struct("!BBH")  # RFC 2408 3.6 after the generic header
# Plain ints: struct packs them faster than IntEnum members (measured, issue 13).
_PROPOSAL_TYPE = int(PayloadType.PROPOSAL)
_TRANSFORM_TYPE = int(PayloadType.TRANSFORM)
_ID = struct.Struct("!BBH")  # RFC 2407 4.6.2: ID type, protocol ID, port
_NOTIFY = struct.Struct("!IBBH")  # RFC 2408 3.14: DOI, protocol, SPI size, type
_DELETE = struct.Struct("!IBBH")  # RFC 2408 3.15: DOI, protocol, SPI size, # of SPIs
_CFG = struct.Struct("!BBH")  # mode-cfg-05 3.2: type, RESERVED, identifier
_NAT_OA = struct.Struct("!B3x")  # RFC 3947 5.2: ID type, RESERVED
_FRAGMENT = struct.Struct("!HBB")  # Cisco: fragment ID, number, flags
_LAST_FRAGMENT = 0x01


def _too_short(kind: str, size: int) -> WireError:
    return WireError(Reason.PAYLOAD_TOO_SHORT, detail=f"{kind} body of {size} bytes")


def _proposal_error(detail: str) -> WireError:
    return WireError(Reason.BAD_PROPOSAL_SYNTAX, NotifyType.BAD_PROPOSAL_SYNTAX, detail)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# --------------------------------------------------------------------------
# Transforms, proposals and the SA payload (RFC 2408 3.4-3.6, RFC 2407 4.6.1)
# --------------------------------------------------------------------------

# Display names in the style of the Cisco/vpnc logs ("AES_CBC-256/SHA/MODP_1024").
_IKE_ENCR_NAMES: dict[int, str] = {IkeEncr.TRIPLE_DES_CBC: "3DES_CBC"}
_ESP_NAMES: dict[int, str] = {EspTransform.TRIPLE_DES: "3DES"}
_AUTH_NAMES: dict[int, str] = {
    AuthMethod.PSK: "PreShared",
    AuthMethod.DSS_SIG: "DSS",
    AuthMethod.RSA_SIG: "RSA_SIG",
    AuthMethod.RSA_ENC: "RSA_ENC",
    AuthMethod.RSA_REV_ENC: "RSA_REV_ENC",
    AuthMethod.XAUTH_INIT_PSK: "XAUTHInitPreShared",
    AuthMethod.XAUTH_RESP_PSK: "XAUTHRespPreShared",
    AuthMethod.XAUTH_INIT_RSA: "XAUTHInitRSA",
    AuthMethod.XAUTH_RESP_RSA: "XAUTHRespRSA",
    AuthMethod.HYBRID_INIT_RSA: "HybridInitRSA",
    AuthMethod.HYBRID_RESP_RSA: "HybridRespRSA",
}


def _display(names: dict[int, str], enum_cls: type[IntEnum], value: int, prefix: str) -> str:
    return names.get(value) or enum_name(enum_cls, value, prefix)


def _attr_value(attribute: DataAttribute) -> str:
    if attribute.is_tv or len(attribute.as_bytes()) <= 8:
        return str(attribute.as_int())
    return f"<{len(attribute.as_bytes())} bytes>"


def _life(life_type: int, seconds_or_kb: int) -> str:
    units: dict[int, str] = {LifeType.SECONDS: "s", LifeType.KILOBYTES: "KB"}
    unit = units.get(life_type, f"?{life_type}")
    return f"life {seconds_or_kb}{unit}"


def _describe_ike_transform(t: Transform) -> str:
    """RFC 2409 appendix A attributes: "AES_CBC-128/SHA/MODP_1024/PreShared, life 86400s"."""
    slots: dict[int, str] = {}
    extras: list[str] = []
    life_type: int = LifeType.SECONDS
    for a in t.attributes:
        kind, value = a.type, a.as_int()
        if kind == P1Attr.ENCRYPTION_ALGORITHM:
            slots[kind] = _display(_IKE_ENCR_NAMES, IkeEncr, value, "ENCR_")
        elif kind == P1Attr.HASH_ALGORITHM:
            slots[kind] = enum_name(IkeHash, value, "HASH_")
        elif kind == P1Attr.GROUP_DESCRIPTION:
            slots[kind] = enum_name(GroupDescription, value, "GROUP_")
        elif kind == P1Attr.AUTHENTICATION_METHOD:
            slots[kind] = _display(_AUTH_NAMES, AuthMethod, value, "AUTH_")
        elif kind == P1Attr.KEY_LENGTH:
            slots[kind] = str(value)
        elif kind == P1Attr.LIFE_TYPE:
            life_type = value
        elif kind == P1Attr.LIFE_DURATION:
            extras.append(_life(life_type, value))
        else:
            extras.append(f"{enum_name(P1Attr, kind, 'ATTR_')}={_attr_value(a)}")
    encr = slots.pop(P1Attr.ENCRYPTION_ALGORITHM, "")
    if P1Attr.KEY_LENGTH in slots:
        encr = f"{encr}-{slots.pop(P1Attr.KEY_LENGTH)}"
    order = (P1Attr.HASH_ALGORITHM, P1Attr.GROUP_DESCRIPTION, P1Attr.AUTHENTICATION_METHOD)
    parts = [p for p in (encr, *(slots.get(k, "") for k in order)) if p]
    return ", ".join(["/".join(parts) or "no attributes", *extras])


def _ipsec_transform_name(protocol_id: int, transform_id: int) -> str:
    if protocol_id == ProtocolId.IPSEC_ESP:
        return _display(_ESP_NAMES, EspTransform, transform_id, "ESP_")
    if protocol_id == ProtocolId.IPSEC_AH:
        return "AH_" + enum_name(AhTransform, transform_id, "")
    if protocol_id == ProtocolId.IPCOMP:
        return "IPCOMP_" + enum_name(IPCompTransform, transform_id, "")
    return f"TRANSFORM_{transform_id}"


def _describe_ipsec_transform(t: Transform, protocol_id: int) -> str:
    """RFC 2407 4.5 attributes: "AES_CBC-128/HMAC_SHA/UDP_TUNNEL, life 28800s"."""
    slots: dict[int, str] = {}
    extras: list[str] = []
    life_type: int = LifeType.SECONDS
    for a in t.attributes:
        kind, value = a.type, a.as_int()
        if kind == IPsecAttr.KEY_LENGTH:
            slots[kind] = f"-{value}"
        elif kind == IPsecAttr.AUTHENTICATION_ALGORITHM:
            slots[kind] = enum_name(IPsecAuth, value, "AUTH_")
        elif kind == IPsecAttr.ENCAPSULATION_MODE:
            slots[kind] = enum_name(EncapsulationMode, value, "ENCAP_")
        elif kind == IPsecAttr.GROUP_DESCRIPTION:
            slots[kind] = "PFS " + enum_name(GroupDescription, value, "GROUP_")
        elif kind == IPsecAttr.SA_LIFE_TYPE:
            life_type = value
        elif kind == IPsecAttr.SA_LIFE_DURATION:
            extras.append(_life(life_type, value))
        else:
            extras.append(f"{enum_name(IPsecAttr, kind, 'ATTR_')}={_attr_value(a)}")
    name = _ipsec_transform_name(protocol_id, t.transform_id)
    parts = [name + slots.pop(IPsecAttr.KEY_LENGTH, "")]
    order = (
        IPsecAttr.AUTHENTICATION_ALGORITHM,
        IPsecAttr.ENCAPSULATION_MODE,
        IPsecAttr.GROUP_DESCRIPTION,
    )
    parts += [slots[k] for k in order if k in slots]
    return ", ".join(["/".join(parts), *extras])


def _protocol_name(protocol_id: int) -> str:
    """ISAKMP, AH, ESP, IPCOMP (RFC 2407 4.4.1 without the IPSEC_ prefix)."""
    return enum_name(ProtocolId, protocol_id, "PROTO_").removeprefix("IPSEC_")


@dataclass(slots=True)
class Transform:
    """RFC 2408 3.6 Transform payload (a substructure of a proposal)."""

    payload_type: ClassVar[int] = PayloadType.TRANSFORM

    number: int
    transform_id: int
    attributes: list[DataAttribute] = field(default_factory=list)
    raw: bytes = field(default=b"", compare=False, repr=False)

    def get(self, attr_type: int) -> DataAttribute | None:
        return get_attribute(self.attributes, attr_type)

    def value(self, attr_type: int) -> int | None:
        """The attribute's value as an int, or None when absent."""
        attribute = self.get(attr_type)
        return None if attribute is None else attribute.as_int()

    def encode_body(self) -> bytes:
        head = _TRANSFORM_HEAD.pack(self.number, self.transform_id, 0)
        return head + encode_attributes(self.attributes)

    def describe(self, protocol_id: int = ProtocolId.ISAKMP) -> str:
        if protocol_id == ProtocolId.ISAKMP:
            return _describe_ike_transform(self)
        return _describe_ipsec_transform(self, protocol_id)


@dataclass(slots=True)
class Proposal:
    """RFC 2408 3.5 Proposal payload; proposals sharing a number are ANDed (4.2)."""

    payload_type: ClassVar[int] = PayloadType.PROPOSAL

    number: int
    protocol_id: int
    spi: bytes = b""
    transforms: list[Transform] = field(default_factory=list)
    raw: bytes = field(default=b"", compare=False, repr=False)

    def encode_body(self) -> bytes:
        head = _PROPOSAL_HEAD.pack(
            self.number, self.protocol_id, len(self.spi), len(self.transforms)
        )
        bodies = [t.encode_body() for t in self.transforms]
        return head + self.spi + _encode_chain(bodies, _TRANSFORM_TYPE)

    def describe(self) -> str:
        protocol = _protocol_name(self.protocol_id)
        spi = f" spi={self.spi.hex()}" if self.spi else ""
        transforms = " | ".join(t.describe(self.protocol_id) for t in self.transforms)
        count = _plural(len(self.transforms), "transform")
        return f"#{self.number} {protocol}{spi} {count}: {transforms}"


def _encode_chain(bodies: Sequence[bytes], more: int) -> bytes:
    """Substructure chain: next payload is `more` except 0 on the last (RFC 2408 3.5)."""
    parts: list[bytes] = []
    last = len(bodies) - 1
    for index, body in enumerate(bodies):
        parts.append(_GENERIC.pack(more if index < last else 0, 0, GENERIC_HEADER_LEN + len(body)))
        parts.append(body)
    return b"".join(parts)


@dataclass(slots=True)
class SAPayload:
    """RFC 2408 3.4 Security Association payload with the IPsec DOI situation."""

    payload_type: ClassVar[int] = PayloadType.SA

    proposals: list[Proposal]
    doi: int = Doi.IPSEC
    situation: int = Situation.IDENTITY_ONLY
    raw: bytes = field(default=b"", compare=False, repr=False)

    def encode_body(self) -> bytes:
        head = _SA.pack(self.doi, self.situation)
        return head + _encode_chain([p.encode_body() for p in self.proposals], _PROPOSAL_TYPE)

    def describe(self) -> str:
        doi = enum_name(Doi, self.doi, "DOI_")
        proposals = "; ".join(p.describe() for p in self.proposals)
        return f"SA(doi={doi}, {_plural(len(self.proposals), 'proposal')}: {proposals})"


def _decode_sa(ptype: int, body: bytes, raw: bytes) -> SAPayload:
    if len(body) < _SA.size:
        raise _too_short("SA", len(body))
    doi, situation = _SA.unpack_from(body)
    if doi != Doi.IPSEC:
        raise WireError(Reason.DOI_NOT_SUPPORTED, NotifyType.DOI_NOT_SUPPORTED, f"DOI {doi}")
    if situation != Situation.IDENTITY_ONLY:
        # Secrecy/integrity situations add labelled-domain fields (RFC 2407 4.6.1).
        raise WireError(
            Reason.SITUATION_NOT_SUPPORTED, NotifyType.SITUATION_NOT_SUPPORTED, f"{situation}"
        )
    proposals = _decode_proposals(body, _SA.size)
    return SAPayload(proposals, doi, situation, raw=raw)


def _walk_chain(data: bytes, offset: int, expected: int, what: str) -> list[int]:
    """Where each proposal or transform of a chain filling data[offset:] starts, then
    the end: item i is data[bounds[i]:bounds[i + 1]].

    The chain holds at least one item, each next-payload field is `expected` or
    NONE on the last (RFC 2408 3.5, 3.6), and it ends exactly at the end. The
    whole chain is checked before any item is decoded.
    """
    bounds = [offset]
    end, next_type = len(data), expected
    while next_type:  # PayloadType.NONE is 0
        if next_type != expected:
            raise _proposal_error(f"{what} chain names payload type {next_type}")
        if len(bounds) > MAX_PAYLOADS:
            raise WireError(Reason.PAYLOAD_LOOP, detail=f"more than {MAX_PAYLOADS} {what}s")
        if end - offset < 8:
            raise _proposal_error(f"truncated {what}")
        next_type, _, length = _GENERIC.unpack_from(data, offset)
        if length < 8 or length > end - offset:
            raise _proposal_error(f"{what} length {length}")
        offset += length
        bounds.append(offset)
    if offset != end:
        raise _proposal_error(f"{end - offset} bytes after the last {what}")
    return bounds


def _decode_proposals(data: bytes, offset: int) -> list[Proposal]:
    proposals = []
    bounds = _walk_chain(data, offset, PayloadType.PROPOSAL, "proposal")
    for start, stop in pairwise(bounds):
        _, _, _, number, protocol_id, spi_size, count = _PROPOSAL.unpack_from(data, start)
        transforms_at = 8 + spi_size
        if start + transforms_at > stop:
            raise _proposal_error(f"SPI size {spi_size} overruns the proposal")
        chunk = data[start:stop]
        transforms = _decode_transforms(chunk, transforms_at)
        if len(transforms) != count:
            raise _proposal_error(f"{count} transforms announced, {len(transforms)} present")
        proposals.append(Proposal(number, protocol_id, chunk[8:transforms_at], transforms, chunk))
    return proposals


# A client offers the same transforms in every handshake (its policy, RFC 2409 5), so
# most transform chains received were seen before: their decoded fields are kept,
# keyed by the chain's bytes. Transforms hold no secret (they are policy; Aggressive
# and Main Mode send them in clear); DataAttribute is frozen and each Transform gets
# its own list.
# Bounded in entries and in bytes per entry: a peer sending ever new transforms only
# empties the table now and then, and a long chain is decoded without being kept.
_TransformFields: TypeAlias = tuple[int, int, tuple[DataAttribute, ...], bytes]
_TRANSFORM_MEMO: dict[bytes, tuple[_TransformFields, ...]] = {}
TRANSFORM_MEMO_SIZE = 512
TRANSFORM_MEMO_MAX_CHAIN = 1024  # bytes; a phase 1 offer of 16 transforms is ~640


def _decode_transforms(data: bytes, offset: int) -> list[Transform]:
    chain = data[offset:]
    known = _TRANSFORM_MEMO.get(chain)
    if known is None:
        known = _decode_transform_chain(chain)
    return [Transform(n, t, list(attributes), raw) for n, t, attributes, raw in known]


def _decode_transform_chain(chain: bytes) -> tuple[_TransformFields, ...]:
    """Number, transform ID, attributes and bytes of each transform (RFC 2408 3.6)."""
    fields = []
    for start, stop in pairwise(_walk_chain(chain, 0, PayloadType.TRANSFORM, "transform")):
        _, _, _, number, transform_id, _ = _TRANSFORM.unpack_from(chain, start)
        attributes = tuple(decode_attributes(chain[start + 8 : stop]))
        fields.append((number, transform_id, attributes, chain[start:stop]))
    known = tuple(fields)
    if len(chain) <= TRANSFORM_MEMO_MAX_CHAIN:
        if len(_TRANSFORM_MEMO) >= TRANSFORM_MEMO_SIZE:
            _TRANSFORM_MEMO.clear()
        _TRANSFORM_MEMO[chain] = known
    return known


# --------------------------------------------------------------------------
# Payloads that are opaque bytes: KE, HASH, SIG, NONCE, VID (RFC 2408 3.7-3.12, 3.16)
# --------------------------------------------------------------------------


@dataclass(slots=True)
class _Opaque:
    data: bytes
    raw: bytes = field(default=b"", compare=False, repr=False)

    label: ClassVar[str] = ""

    def encode_body(self) -> bytes:
        return self.data

    def describe(self) -> str:
        return f"{self.label}({len(self.data)} bytes)"


@dataclass(slots=True)
class KEPayload(_Opaque):
    """RFC 2408 3.7 Key Exchange payload: the DH public value."""

    payload_type: ClassVar[int] = PayloadType.KE
    label: ClassVar[str] = "KE"


@dataclass(slots=True)
class HashPayload(_Opaque):
    """RFC 2408 3.11 Hash payload."""

    payload_type: ClassVar[int] = PayloadType.HASH
    label: ClassVar[str] = "HASH"


@dataclass(slots=True)
class SigPayload(_Opaque):
    """RFC 2408 3.12 Signature payload."""

    payload_type: ClassVar[int] = PayloadType.SIG
    label: ClassVar[str] = "SIG"


@dataclass(slots=True)
class NoncePayload(_Opaque):
    """RFC 2408 3.13 Nonce payload."""

    payload_type: ClassVar[int] = PayloadType.NONCE
    label: ClassVar[str] = "NONCE"


@dataclass(slots=True)
class VendorIDPayload(_Opaque):
    """RFC 2408 3.16 Vendor ID payload; named through vendor.identify()."""

    payload_type: ClassVar[int] = PayloadType.VENDOR_ID
    label: ClassVar[str] = "VID"

    @property
    def name(self) -> str | None:
        return identify(self.data)

    def describe(self) -> str:
        return f"VID({self.name or self.data.hex()})"


_OpaqueClass: TypeAlias = (
    type[KEPayload]
    | type[HashPayload]
    | type[SigPayload]
    | type[NoncePayload]
    | type[VendorIDPayload]
)


# --------------------------------------------------------------------------
# Identification (RFC 2408 3.8, RFC 2407 4.6.2) and NAT-OA (RFC 3947 5.2)
# --------------------------------------------------------------------------

_ADDRESS_TYPES: dict[int, int] = {IdType.IPV4_ADDR: 4, IdType.IPV6_ADDR: 16}
_SUBNET_TYPES: dict[int, int] = {IdType.IPV4_ADDR_SUBNET: 4, IdType.IPV6_ADDR_SUBNET: 16}
_RANGE_TYPES: dict[int, int] = {IdType.IPV4_ADDR_RANGE: 4, IdType.IPV6_ADDR_RANGE: 16}
_TEXT_TYPES = frozenset({IdType.FQDN, IdType.USER_FQDN, IdType.KEY_ID})

IPAddress: TypeAlias = IPv4Address | IPv6Address
IPNetwork: TypeAlias = IPv4Network | IPv6Network


def _bad_id(detail: str) -> WireError:
    return WireError(Reason.BAD_ID, NotifyType.INVALID_ID_INFORMATION, detail)


def _id_address(id_type: int, data: bytes) -> IPAddress:
    size = _ADDRESS_TYPES.get(id_type)
    if size is None or len(data) != size:
        raise _bad_id(f"ID type {id_type} with {len(data)} bytes is not an address")
    return ip_address(data)


def _id_network(id_type: int, data: bytes) -> IPNetwork:
    if id_type in _ADDRESS_TYPES:
        return ip_network(_id_address(id_type, data))
    size = _SUBNET_TYPES.get(id_type)
    if size is None or len(data) != 2 * size:
        raise _bad_id(f"ID type {id_type} with {len(data)} bytes is not a subnet")
    try:
        return network_from_mask(data[:size], data[size:])
    except WireError as exc:
        raise _bad_id(exc.detail) from exc


def _id_range(id_type: int, data: bytes) -> tuple[IPAddress, IPAddress]:
    size = _RANGE_TYPES.get(id_type)
    if size is None or len(data) != 2 * size:
        raise _bad_id(f"ID type {id_type} with {len(data)} bytes is not a range")
    return ip_address(data[:size]), ip_address(data[size:])


def _describe_id_value(id_type: int, data: bytes) -> str:
    try:
        if id_type in _ADDRESS_TYPES or id_type in _SUBNET_TYPES:
            network = _id_network(id_type, data)
            return str(network.network_address if id_type in _ADDRESS_TYPES else network)
        if id_type in _RANGE_TYPES:
            first, last = _id_range(id_type, data)
            return f"{first}-{last}"
    except WireError:
        return data.hex()
    if id_type in _TEXT_TYPES:
        return printable(data)
    return f"<{len(data)} bytes>"


@dataclass(slots=True)
class IDPayload:
    """RFC 2408 3.8 Identification payload with RFC 2407 4.6.2 protocol and port."""

    payload_type: ClassVar[int] = PayloadType.ID

    id_type: int
    data: bytes
    protocol_id: int = 0
    port: int = 0
    raw: bytes = field(default=b"", compare=False, repr=False)

    @classmethod
    def ipv4(cls, address: IPv4Address | str, protocol_id: int = 0, port: int = 0) -> IDPayload:
        return cls(IdType.IPV4_ADDR, IPv4Address(address).packed, protocol_id, port)

    @classmethod
    def ipv6(cls, address: IPv6Address | str, protocol_id: int = 0, port: int = 0) -> IDPayload:
        return cls(IdType.IPV6_ADDR, IPv6Address(address).packed, protocol_id, port)

    @classmethod
    def ipv4_subnet(
        cls, network: IPv4Network | str, protocol_id: int = 0, port: int = 0
    ) -> IDPayload:
        net = IPv4Network(network)
        data = net.network_address.packed + net.netmask.packed
        return cls(IdType.IPV4_ADDR_SUBNET, data, protocol_id, port)

    @classmethod
    def ipv6_subnet(
        cls, network: IPv6Network | str, protocol_id: int = 0, port: int = 0
    ) -> IDPayload:
        net = IPv6Network(network)
        data = net.network_address.packed + net.netmask.packed
        return cls(IdType.IPV6_ADDR_SUBNET, data, protocol_id, port)

    @classmethod
    def ipv4_range(
        cls,
        first: IPv4Address | str,
        last: IPv4Address | str,
        protocol_id: int = 0,
        port: int = 0,
    ) -> IDPayload:
        data = IPv4Address(first).packed + IPv4Address(last).packed
        return cls(IdType.IPV4_ADDR_RANGE, data, protocol_id, port)

    @classmethod
    def fqdn(cls, name: str, protocol_id: int = 0, port: int = 0) -> IDPayload:
        return cls(IdType.FQDN, name.encode("utf-8"), protocol_id, port)

    @classmethod
    def user_fqdn(cls, name: str, protocol_id: int = 0, port: int = 0) -> IDPayload:
        return cls(IdType.USER_FQDN, name.encode("utf-8"), protocol_id, port)

    @classmethod
    def key_id(cls, key_id: str | bytes, protocol_id: int = 0, port: int = 0) -> IDPayload:
        data = key_id.encode("utf-8") if isinstance(key_id, str) else key_id
        return cls(IdType.KEY_ID, data, protocol_id, port)

    def address(self) -> IPAddress:
        """The address of an IPV4_ADDR / IPV6_ADDR identity."""
        return _id_address(self.id_type, self.data)

    def network(self) -> IPNetwork:
        """An address (as a host network) or subnet identity as a network."""
        return _id_network(self.id_type, self.data)

    def address_range(self) -> tuple[IPAddress, IPAddress]:
        """First and last address of an IPV4_ADDR_RANGE / IPV6_ADDR_RANGE identity."""
        return _id_range(self.id_type, self.data)

    def text(self) -> str:
        """FQDN, USER_FQDN or KEY_ID as text (undecodable bytes replaced)."""
        if self.id_type not in _TEXT_TYPES:
            raise _bad_id(f"ID type {self.id_type} is not textual")
        return self.data.decode("utf-8", "replace")

    def encode_body(self) -> bytes:
        return _ID.pack(self.id_type, self.protocol_id, self.port) + self.data

    def describe(self) -> str:
        kind = enum_name(IdType, self.id_type, "ID_")
        text = f"ID({kind} {_describe_id_value(self.id_type, self.data)}"
        if self.protocol_id or self.port:
            text += f", proto={self.protocol_id} port={self.port}"
        return text + ")"


def _decode_id(ptype: int, body: bytes, raw: bytes) -> IDPayload:
    if len(body) < _ID.size:
        raise _too_short("ID", len(body))
    id_type, protocol_id, port = _ID.unpack_from(body)
    return IDPayload(id_type, body[_ID.size :], protocol_id, port, raw=raw)


@dataclass(slots=True)
class NatOAPayload:
    """RFC 3947 5.2 NAT Original Address (21; the drafts' 131 has the same layout)."""

    id_type: int
    data: bytes
    payload_type: int = PayloadType.NAT_OA
    raw: bytes = field(default=b"", compare=False, repr=False)

    @classmethod
    def ipv4(
        cls, address: IPv4Address | str, payload_type: int = PayloadType.NAT_OA
    ) -> NatOAPayload:
        return cls(IdType.IPV4_ADDR, IPv4Address(address).packed, payload_type)

    def address(self) -> IPAddress:
        return _id_address(self.id_type, self.data)

    def encode_body(self) -> bytes:
        return _NAT_OA.pack(self.id_type) + self.data

    def describe(self) -> str:
        kind = enum_name(IdType, self.id_type, "ID_")
        draft = "" if self.payload_type == PayloadType.NAT_OA else f", type {self.payload_type}"
        return f"NAT_OA({kind} {_describe_id_value(self.id_type, self.data)}{draft})"


def _decode_nat_oa(ptype: int, body: bytes, raw: bytes) -> NatOAPayload:
    if len(body) < _NAT_OA.size:
        raise _too_short("NAT-OA", len(body))
    (id_type,) = _NAT_OA.unpack_from(body)
    return NatOAPayload(id_type, body[_NAT_OA.size :], ptype, raw=raw)


@dataclass(slots=True)
class NatDPayload:
    """RFC 3947 3.2 NAT Discovery: HASH(CKY-I | CKY-R | IP | Port); 130 in the drafts."""

    data: bytes
    payload_type: int = PayloadType.NAT_D
    raw: bytes = field(default=b"", compare=False, repr=False)

    def encode_body(self) -> bytes:
        return self.data

    def describe(self) -> str:
        draft = "" if self.payload_type == PayloadType.NAT_D else f", type {self.payload_type}"
        return f"NAT_D({self.data.hex()}{draft})"


def _decode_nat_d(ptype: int, body: bytes, raw: bytes) -> NatDPayload:
    return NatDPayload(body, ptype, raw=raw)


# --------------------------------------------------------------------------
# Notification (RFC 2408 3.14) and Delete (RFC 2408 3.15)
# --------------------------------------------------------------------------


@dataclass(slots=True)
class NotifyPayload:
    """RFC 2408 3.14 Notification payload."""

    payload_type: ClassVar[int] = PayloadType.NOTIFY

    notify_type: int
    protocol_id: int = ProtocolId.ISAKMP
    spi: bytes = b""
    data: bytes = b""
    doi: int = Doi.IPSEC
    raw: bytes = field(default=b"", compare=False, repr=False)

    def data_attributes(self) -> list[DataAttribute]:
        """Notification data as attributes (RESPONDER_LIFETIME, RFC 2407 4.6.3.1)."""
        return decode_attributes(self.data)

    @property
    def dpd_sequence(self) -> int | None:
        """R-U-THERE / R-U-THERE-ACK sequence number (RFC 3706 5.1), if well formed."""
        if len(self.data) != 4:
            return None
        return int.from_bytes(self.data, "big")

    def encode_body(self) -> bytes:
        head = _NOTIFY.pack(self.doi, self.protocol_id, len(self.spi), self.notify_type)
        return head + self.spi + self.data

    def describe(self) -> str:
        parts = [enum_name(NotifyType, self.notify_type, "NOTIFY_")]
        parts.append(f"proto={_protocol_name(self.protocol_id)}")
        if self.spi:
            parts.append(f"spi={self.spi.hex()}")
        if self.data:
            parts.append(self._describe_data())
        return f"NOTIFY({', '.join(parts)})"

    def _describe_data(self) -> str:
        dpd = (NotifyType.R_U_THERE, NotifyType.R_U_THERE_ACK)
        if self.notify_type in dpd and self.dpd_sequence is not None:
            return f"seq={self.dpd_sequence}"
        if self.notify_type == NotifyType.RESPONDER_LIFETIME:
            try:
                return _describe_lifetimes(self.data_attributes())
            except WireError:
                pass
        if len(self.data) > 32:
            return f"data={self.data[:32].hex()}...({len(self.data)} bytes)"
        return f"data={self.data.hex()}"


def _describe_lifetimes(attributes: list[DataAttribute]) -> str:
    """SA life type/duration pairs; phase 1 and IPsec share the numbers 11/12 vs 1/2."""
    lives: list[str] = []
    life_type: int = LifeType.SECONDS
    for a in attributes:
        if a.type in (P1Attr.LIFE_TYPE, IPsecAttr.SA_LIFE_TYPE):
            life_type = a.as_int()
        elif a.type in (P1Attr.LIFE_DURATION, IPsecAttr.SA_LIFE_DURATION):
            lives.append(_life(life_type, a.as_int()))
    return ", ".join(lives) or "no lifetime"


def _decode_notify(ptype: int, body: bytes, raw: bytes) -> NotifyPayload:
    if len(body) < _NOTIFY.size:
        raise _too_short("NOTIFY", len(body))
    doi, protocol_id, spi_size, notify_type = _NOTIFY.unpack_from(body)
    spi_end = _NOTIFY.size + spi_size
    if spi_end > len(body):
        raise WireError(Reason.BAD_SPI_SIZE, detail=f"notify SPI size {spi_size} overruns")
    spi, data = body[_NOTIFY.size : spi_end], body[spi_end:]
    return NotifyPayload(notify_type, protocol_id, spi, data, doi, raw=raw)


@dataclass(slots=True)
class DeletePayload:
    """RFC 2408 3.15 Delete payload; every SPI has the same size."""

    payload_type: ClassVar[int] = PayloadType.DELETE

    protocol_id: int
    spis: list[bytes]
    doi: int = Doi.IPSEC
    raw: bytes = field(default=b"", compare=False, repr=False)

    def encode_body(self) -> bytes:
        size = len(self.spis[0]) if self.spis else 0
        if any(len(spi) != size for spi in self.spis):
            raise WireError(Reason.ENCODE_ERROR, None, "delete SPIs differ in size")
        head = _DELETE.pack(self.doi, self.protocol_id, size, len(self.spis))
        return head + b"".join(self.spis)

    def describe(self) -> str:
        protocol = _protocol_name(self.protocol_id)
        spis = ", ".join(spi.hex() for spi in self.spis[:8])
        more = ", ..." if len(self.spis) > 8 else ""
        return f"DELETE({protocol}, {_plural(len(self.spis), 'SPI')}: {spis}{more})"


def _decode_delete(ptype: int, body: bytes, raw: bytes) -> DeletePayload:
    if len(body) < _DELETE.size:
        raise _too_short("DELETE", len(body))
    doi, protocol_id, spi_size, count = _DELETE.unpack_from(body)
    spi_bytes = body[_DELETE.size :]
    if count == 0 or spi_size == 0 or spi_size * count != len(spi_bytes):
        detail = f"{count} SPIs of {spi_size} bytes in {len(spi_bytes)} bytes"
        raise WireError(Reason.BAD_SPI_SIZE, detail=detail)
    spis = [spi_bytes[i : i + spi_size] for i in range(0, len(spi_bytes), spi_size)]
    return DeletePayload(protocol_id, spis, doi, raw=raw)


# --------------------------------------------------------------------------
# CERT / CR (RFC 2408 3.9, 3.10), kept with their encoding byte
# --------------------------------------------------------------------------


@dataclass(slots=True)
class _Cert:
    encoding: int
    data: bytes
    raw: bytes = field(default=b"", compare=False, repr=False)

    label: ClassVar[str] = ""

    def encode_body(self) -> bytes:
        return bytes((self.encoding,)) + self.data

    def describe(self) -> str:
        encoding = enum_name(CertEncoding, self.encoding, "ENCODING_")
        return f"{self.label}({encoding}, {len(self.data)} bytes)"


@dataclass(slots=True)
class CertPayload(_Cert):
    """RFC 2408 3.9 Certificate payload (encoding + certificate data)."""

    payload_type: ClassVar[int] = PayloadType.CERT
    label: ClassVar[str] = "CERT"


@dataclass(slots=True)
class CertRequestPayload(_Cert):
    """RFC 2408 3.10 Certificate Request payload (certificate type + authority)."""

    payload_type: ClassVar[int] = PayloadType.CR
    label: ClassVar[str] = "CR"


def _cert_decoder(
    cls: type[CertPayload] | type[CertRequestPayload],
) -> Callable[[int, bytes, bytes], Payload]:
    def decode(ptype: int, body: bytes, raw: bytes) -> Payload:
        if not body:
            raise _too_short(cls.label, 0)
        return cls(body[0], body[1:], raw=raw)

    return decode


# --------------------------------------------------------------------------
# Attribute payload (mode-cfg-05 3.2) for XAUTH and Mode Config
# --------------------------------------------------------------------------


@dataclass(slots=True)
class AttributePayload:
    """mode-cfg-05 3.2 Attribute payload of the Transaction exchange."""

    payload_type: ClassVar[int] = PayloadType.ATTRIBUTE

    cfg_type: int
    identifier: int
    attributes: list[DataAttribute] = field(default_factory=list)
    raw: bytes = field(default=b"", compare=False, repr=False)

    def get(self, attr_type: int) -> DataAttribute | None:
        return get_attribute(self.attributes, attr_type)

    def get_all(self, attr_type: int) -> list[DataAttribute]:
        return [a for a in self.attributes if a.type == attr_type]

    def encode_body(self) -> bytes:
        return _CFG.pack(self.cfg_type, 0, self.identifier) + encode_attributes(self.attributes)

    def describe(self) -> str:
        kind = "CFG_" + enum_name(CfgType, self.cfg_type, "")
        attributes = describe_config_attributes(self.attributes)
        return f"ATTR({kind} id={self.identifier}: {attributes})"


def _decode_attribute_payload(ptype: int, body: bytes, raw: bytes) -> AttributePayload:
    if len(body) < _CFG.size:
        raise _too_short("ATTRIBUTE", len(body))
    cfg_type, _, identifier = _CFG.unpack_from(body)
    attributes = decode_attributes(body[_CFG.size :])
    return AttributePayload(cfg_type, identifier, attributes, raw=raw)


# --------------------------------------------------------------------------
# Cisco IKE fragmentation (payload 132) and unknown payloads
# --------------------------------------------------------------------------


@dataclass(slots=True)
class FragmentPayload:
    """Cisco IKE fragment: fragment ID, number (from 1), last-fragment flag, data."""

    payload_type: ClassVar[int] = PayloadType.FRAGMENT

    fragment_id: int
    number: int
    last: bool
    data: bytes
    raw: bytes = field(default=b"", compare=False, repr=False)

    def encode_body(self) -> bytes:
        flags = _LAST_FRAGMENT if self.last else 0
        return _FRAGMENT.pack(self.fragment_id, self.number, flags) + self.data

    def describe(self) -> str:
        last = " last" if self.last else ""
        return f"FRAG(id={self.fragment_id} #{self.number}{last}, {len(self.data)} bytes)"


def _decode_fragment(ptype: int, body: bytes, raw: bytes) -> FragmentPayload:
    if len(body) < _FRAGMENT.size:
        raise _too_short("FRAGMENT", len(body))
    fragment_id, number, flags = _FRAGMENT.unpack_from(body)
    if number == 0:
        raise WireError(Reason.BAD_FRAGMENT, detail="fragment number 0")
    data = body[_FRAGMENT.size :]
    return FragmentPayload(fragment_id, number, bool(flags & _LAST_FRAGMENT), data, raw=raw)


@dataclass(slots=True)
class UnknownPayload:
    """A payload type we do not know and that is not marked critical: kept raw."""

    payload_type: int
    data: bytes
    raw: bytes = field(default=b"", compare=False, repr=False)

    def encode_body(self) -> bytes:
        return self.data

    def describe(self) -> str:
        return f"PAYLOAD_{self.payload_type}({len(self.data)} bytes)"


Payload: TypeAlias = (
    SAPayload
    | KEPayload
    | IDPayload
    | CertPayload
    | CertRequestPayload
    | HashPayload
    | SigPayload
    | NoncePayload
    | NotifyPayload
    | DeletePayload
    | VendorIDPayload
    | AttributePayload
    | NatDPayload
    | NatOAPayload
    | FragmentPayload
    | UnknownPayload
)

_Decoder: TypeAlias = Callable[[int, bytes, bytes], Payload]

_DECODERS: dict[int, _Decoder] = {
    PayloadType.SA: _decode_sa,
    PayloadType.ID: _decode_id,
    PayloadType.CERT: _cert_decoder(CertPayload),
    PayloadType.CR: _cert_decoder(CertRequestPayload),
    PayloadType.NOTIFY: _decode_notify,
    PayloadType.DELETE: _decode_delete,
    PayloadType.ATTRIBUTE: _decode_attribute_payload,
    PayloadType.NAT_D: _decode_nat_d,
    PayloadType.NAT_OA: _decode_nat_oa,
    PayloadType.NAT_D_DRAFT: _decode_nat_d,
    PayloadType.NAT_OA_DRAFT: _decode_nat_oa,
    PayloadType.FRAGMENT: _decode_fragment,
}

# Payloads whose body is their only field (KE, HASH, SIG, NONCE, VID: most of a
# handshake's payloads), built by decode_payloads without a decoder call.
_OPAQUE_CLASSES: dict[int, _OpaqueClass] = {
    PayloadType.KE: KEPayload,
    PayloadType.HASH: HashPayload,
    PayloadType.SIG: SigPayload,
    PayloadType.NONCE: NoncePayload,
    PayloadType.VENDOR_ID: VendorIDPayload,
}

# Short names: describe() style and the Cisco log style ("SA, KE, NON, ID, VID").
_LABELS: dict[int, tuple[str, str]] = {
    PayloadType.SA: ("SA", "SA"),
    PayloadType.KE: ("KE", "KE"),
    PayloadType.ID: ("ID", "ID"),
    PayloadType.CERT: ("CERT", "CERT"),
    PayloadType.CR: ("CR", "CERT_REQ"),
    PayloadType.HASH: ("HASH", "HASH"),
    PayloadType.SIG: ("SIG", "SIG"),
    PayloadType.NONCE: ("NONCE", "NON"),
    PayloadType.NOTIFY: ("NOTIFY", "NOTIFY"),
    PayloadType.DELETE: ("DELETE", "DEL"),
    PayloadType.VENDOR_ID: ("VID", "VID"),
    PayloadType.ATTRIBUTE: ("ATTR", "ATTR"),
    PayloadType.NAT_D: ("NAT_D", "NAT-D"),
    PayloadType.NAT_OA: ("NAT_OA", "NAT-OA"),
    PayloadType.NAT_D_DRAFT: ("NAT_D", "NAT-D"),
    PayloadType.NAT_OA_DRAFT: ("NAT_OA", "NAT-OA"),
    PayloadType.FRAGMENT: ("FRAG", "FRAG"),
}


def payload_label(p: Payload) -> str:
    """Short name used by Message.describe(): SA KE NONCE ID VID NAT_D ..."""
    labels = _LABELS.get(p.payload_type)
    return labels[0] if labels else f"PAYLOAD_{p.payload_type}"


def cisco_label(p: Payload) -> str:
    """Cisco client log name: SA KE NON ID VID NAT-D HASH NOTIFY ATTR ..."""
    labels = _LABELS.get(p.payload_type)
    return labels[1] if labels else f"PAYLOAD({p.payload_type})"


# --------------------------------------------------------------------------
# The payload chain (RFC 2408 3.2, 5.2)
# --------------------------------------------------------------------------


def _decode_other(ptype: int, reserved: int, body: bytes, raw: bytes) -> Payload:
    """A payload type without a decoder: refused, or kept raw (RFC 2408 5.2)."""
    if ptype in (PayloadType.PROPOSAL, PayloadType.TRANSFORM):
        # RFC 2408 3.5/3.6: these only live inside an SA payload.
        raise WireError(
            Reason.INVALID_PAYLOAD_TYPE, NotifyType.INVALID_PAYLOAD_TYPE, f"type {ptype}"
        )
    if reserved & CRITICAL:
        raise WireError(
            Reason.UNSUPPORTED_CRITICAL_PAYLOAD,
            NotifyType.INVALID_PAYLOAD_TYPE,
            f"critical payload type {ptype}",
        )
    return UnknownPayload(ptype, body, raw=raw)


def decode_payloads(first_type: int, data: bytes, *, trailing_ok: bool = False) -> list[Payload]:
    """Walk the payload chain starting with `first_type` over `data`.

    With trailing_ok (decrypted bodies: RFC 2409 5.3 padding) bytes after the
    last payload are ignored; otherwise they are a WireError. Each payload is
    decoded as soon as its header is checked, so the first fault in the chain
    is the one reported.
    """
    payloads: list[Payload] = []
    # Bound once: this loop runs for every payload of every message received.
    unpack, decoders, opaque_classes = _GENERIC.unpack_from, _DECODERS, _OPAQUE_CLASSES
    offset, end, ptype = 0, len(data), first_type
    while ptype:  # PayloadType.NONE is 0
        if len(payloads) >= MAX_PAYLOADS:
            raise WireError(Reason.PAYLOAD_LOOP, detail=f"more than {MAX_PAYLOADS} payloads")
        if end - offset < GENERIC_HEADER_LEN:
            raise WireError(Reason.PAYLOAD_OVERRUN, detail=f"payload {ptype} header missing")
        next_type, reserved, length = unpack(data, offset)
        if length < GENERIC_HEADER_LEN:
            raise WireError(Reason.ZERO_LENGTH_PAYLOAD, detail=f"payload {ptype} length {length}")
        if length > end - offset:
            detail = f"payload {ptype} length {length}, {end - offset} bytes left"
            raise WireError(Reason.PAYLOAD_OVERRUN, detail=detail)
        raw = data[offset : offset + length]
        opaque = opaque_classes.get(ptype)
        if opaque is not None:  # most payloads of a handshake: no decoder call
            payloads.append(opaque(raw[GENERIC_HEADER_LEN:], raw))
        elif (decoder := decoders.get(ptype)) is not None:
            payloads.append(decoder(ptype, raw[GENERIC_HEADER_LEN:], raw))
        else:
            payloads.append(_decode_other(ptype, reserved, raw[GENERIC_HEADER_LEN:], raw))
        offset += length
        ptype = next_type
    if offset != end and not trailing_ok:
        raise WireError(Reason.TRAILING_DATA, detail=f"{end - offset} bytes after last payload")
    return payloads


def _encode_error(p: Payload, exc: struct.error) -> WireError:
    return WireError(Reason.ENCODE_ERROR, None, f"{type(p).__name__}: {exc}")


def encode_payload(p: Payload, next_type: int = PayloadType.NONE) -> bytes:
    """One payload with its generic header."""
    try:
        body = p.encode_body()
        return _GENERIC.pack(next_type, 0, GENERIC_HEADER_LEN + len(body)) + body
    except struct.error as exc:
        raise _encode_error(p, exc) from exc


def encode_payloads(payloads: Sequence[Payload]) -> bytes:
    """Chain payloads; each next-payload field lives in the previous payload's header,
    so the encoding of payloads[1:] never depends on payloads[0]."""
    # Headers and bodies are joined once (no per-payload concatenation).
    parts: list[bytes] = []
    pack = _GENERIC.pack
    count = len(payloads)
    for index, p in enumerate(payloads):
        following = payloads[index + 1].payload_type if index + 1 < count else 0
        try:
            body = p.encode_body()
            parts.append(pack(following, 0, GENERIC_HEADER_LEN + len(body)))
        except struct.error as exc:
            raise _encode_error(p, exc) from exc
        parts.append(body)
    return b"".join(parts)


def encode_hashed(hash_payload: Payload, rest: Sequence[Payload], rest_encoded: bytes) -> bytes:
    """HASH then `rest`, reusing `rest_encoded` (= encode_payloads(rest)): the HASH of
    RFC 2409 5.5 / draft-dukes-ike-mode-cfg 3.2 covers exactly those bytes, so they
    are encoded once, for the hash and the message alike."""
    first = rest[0].payload_type if rest else PayloadType.NONE
    return encode_payload(hash_payload, first) + rest_encoded


def encode_before(first: Payload, first_body: bytes, rest: Sequence[Payload]) -> bytes:
    """`first`, whose body is already encoded (`first_body`), chained before `rest`: the
    same as encode_payloads([first, *rest]) when first_body == first.encode_body(). An
    initiator offers the same SA payload in every exchange, so it is encoded once
    (ike.phase1 our_sa; the load generator's thousands of clients, issue 13)."""
    following = rest[0].payload_type if rest else PayloadType.NONE
    return (_GENERIC.pack(following, 0, GENERIC_HEADER_LEN + len(first_body)) + first_body
            + encode_payloads(rest))


def payload_body(p: Payload) -> bytes:
    """The body without the generic header: as received if decoded, else encoded.
    (SAi_b and IDii_b of RFC 2409 5 are such bodies.)"""
    if p.raw:
        return p.raw[GENERIC_HEADER_LEN:]
    try:
        return p.encode_body()
    except struct.error as exc:
        raise WireError(Reason.ENCODE_ERROR, None, f"{type(p).__name__}: {exc}") from exc
