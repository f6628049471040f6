"""Data attributes (RFC 2408 3.3) and the Mode Config / Unity value helpers.

A data attribute is either TV (AF bit set, 16-bit value in the header) or TLV
(AF bit clear, 16-bit length then the value). Decoding keeps the form, so
`encode_attributes(decode_attributes(x)) == x`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from vpnhub.wire.constants import CfgAttr, XauthStatus, XauthType, enum_name
from vpnhub.wire.errors import Reason, WireError

_ATTR_HEADER = struct.Struct("!HH")  # RFC 2408 3.3: AF|type, length-or-value
_AF_TV = 0x8000
_SPLIT_ENTRY = struct.Struct("!4s4sHHH")  # Unity split include: addr, mask, proto, sport, dport

SPLIT_ENTRY_LEN = _SPLIT_ENTRY.size  # 14

# XAUTH-06 6.1: values that are secrets; never printed, never in repr().
SECRET_CFG_ATTRS: frozenset[int] = frozenset(
    {
        CfgAttr.XAUTH_USER_PASSWORD,
        CfgAttr.XAUTH_PASSCODE,
        CfgAttr.XAUTH_NEXT_PIN,
        CfgAttr.XAUTH_ANSWER,
    }
)


@dataclass(frozen=True, slots=True)
class DataAttribute:
    """One data attribute: int value => TV form, bytes value => TLV form."""

    type: int
    value: int | bytes

    def __repr__(self) -> str:
        shown = "<hidden>" if self.type in SECRET_CFG_ATTRS else repr(self.value)
        return f"DataAttribute(type={self.type}, value={shown})"

    @property
    def is_tv(self) -> bool:
        return isinstance(self.value, int)

    def as_int(self) -> int:
        """The TV value, or the TLV bytes as a big-endian integer."""
        if isinstance(self.value, int):
            return self.value
        return int.from_bytes(self.value, "big")

    def as_bytes(self) -> bytes:
        """The TLV bytes, or the TV value as two big-endian bytes."""
        if isinstance(self.value, int):
            return self.value.to_bytes(2, "big")
        return self.value

    def as_text(self) -> str:
        """The value as text (UTF-8; undecodable bytes replaced, never raises)."""
        return self.as_bytes().decode("utf-8", "replace")

    def as_ipv4(self) -> IPv4Address:
        """A 4-byte value as an IPv4 address (mode-cfg-05 INTERNAL_IP4_*)."""
        data = self.as_bytes()
        if len(data) != 4:
            raise WireError(Reason.BAD_ATTRIBUTE, detail=f"attribute {self.type}: not 4 bytes")
        return IPv4Address(data)

    def as_ipv4_network(self) -> IPv4Network:
        """An 8-byte address+mask value (mode-cfg-05 INTERNAL_IP4_SUBNET)."""
        data = self.as_bytes()
        if len(data) != 8:
            raise WireError(Reason.BAD_ATTRIBUTE, detail=f"attribute {self.type}: not 8 bytes")
        return _network(data[:4], data[4:])

    @classmethod
    def number(cls, type: int, value: int) -> DataAttribute:
        """TV when the value fits 16 bits, else TLV of at least 4 bytes (RFC 2408 3.3)."""
        if 0 <= value <= 0xFFFF:
            return cls(type, value)
        size = max(4, (value.bit_length() + 7) // 8)
        return cls(type, value.to_bytes(size, "big"))

    @classmethod
    def ipv4(cls, type: int, address: IPv4Address | str) -> DataAttribute:
        return cls(type, IPv4Address(address).packed)

    @classmethod
    def text(cls, type: int, value: str) -> DataAttribute:
        return cls(type, value.encode("utf-8"))


def decode_attributes(data: bytes) -> list[DataAttribute]:
    """Decode a run of data attributes filling `data` exactly (RFC 2408 3.3)."""
    attributes: list[DataAttribute] = []
    offset, end = 0, len(data)
    while offset < end:
        if end - offset < 4:
            raise WireError(Reason.BAD_ATTRIBUTE, detail="truncated attribute header")
        af_type, word = _ATTR_HEADER.unpack_from(data, offset)
        offset += 4
        if af_type & _AF_TV:
            attributes.append(DataAttribute(af_type & 0x7FFF, word))
            continue
        if word > end - offset:
            raise WireError(Reason.BAD_ATTRIBUTE, detail=f"attribute {af_type} overruns")
        attributes.append(DataAttribute(af_type, data[offset : offset + word]))
        offset += word
    return attributes


def encode_attributes(attributes: Iterable[DataAttribute]) -> bytes:
    """Encode data attributes, TV for int values and TLV for bytes values."""
    # One loop, no call per attribute: every SA and Transaction payload sent goes here.
    parts: list[bytes] = []
    pack = _ATTR_HEADER.pack
    for attribute in attributes:
        kind, value = attribute.type, attribute.value
        if not 0 <= kind <= 0x7FFF:
            raise WireError(Reason.ENCODE_ERROR, None, f"attribute type {kind} out of range")
        if isinstance(value, int):
            if not 0 <= value <= 0xFFFF:
                raise WireError(Reason.ENCODE_ERROR, None, f"TV value {value} out of range")
            parts.append(pack(kind | _AF_TV, value))
            continue
        if len(value) > 0xFFFF:
            raise WireError(Reason.ENCODE_ERROR, None, f"TLV attribute {kind} too long")
        parts.append(pack(kind, len(value)))
        parts.append(value)
    return b"".join(parts)


def get_attribute(attributes: Iterable[DataAttribute], type: int) -> DataAttribute | None:
    """The first attribute of the given type, if any."""
    return next((a for a in attributes if a.type == type), None)


# --- Cisco Unity split tunnel lists (UNITY_SPLIT_INCLUDE, UNITY_LOCAL_LAN) ---


@dataclass(frozen=True, slots=True)
class SplitNetwork:
    """One Unity split-tunnel entry: network, IP protocol and ports (0 = any)."""

    network: IPv4Network
    protocol: int = 0
    sport: int = 0
    dport: int = 0


def encode_split_networks(entries: Iterable[SplitNetwork]) -> bytes:
    """14 bytes per entry: addr(4) mask(4) protocol(2) sport(2) dport(2)."""
    try:
        return b"".join(
            _SPLIT_ENTRY.pack(
                e.network.network_address.packed,
                e.network.netmask.packed,
                e.protocol,
                e.sport,
                e.dport,
            )
            for e in entries
        )
    except struct.error as exc:
        raise WireError(Reason.ENCODE_ERROR, None, f"split entry: {exc}") from exc


def decode_split_networks(data: bytes) -> list[SplitNetwork]:
    """Decode a Unity split-include / local-LAN list (14-byte entries)."""
    if len(data) % SPLIT_ENTRY_LEN:
        raise WireError(Reason.BAD_ATTRIBUTE, detail="split list not a multiple of 14 bytes")
    return [
        SplitNetwork(_network(addr, mask), protocol, sport, dport)
        for addr, mask, protocol, sport, dport in _SPLIT_ENTRY.iter_unpack(data)
    ]


def network_from_mask(address: bytes, mask: bytes) -> IPv4Network | IPv6Network:
    """A 4- or 16-byte address and a contiguous netmask of the same size as a network.

    Host bits beyond the mask are cleared; a non-contiguous mask is a WireError.
    """
    bits = len(mask) * 8
    if len(address) != len(mask) or bits not in (32, 128):
        raise WireError(Reason.BAD_ATTRIBUTE, detail="address/mask size mismatch")
    inverted = ~int.from_bytes(mask, "big") & ((1 << bits) - 1)
    if inverted & (inverted + 1):
        raise WireError(Reason.BAD_ATTRIBUTE, detail=f"non-contiguous netmask {mask.hex()}")
    prefix = bits - inverted.bit_length()
    family = IPv4Network if bits == 32 else IPv6Network
    return family((int.from_bytes(address, "big"), prefix), strict=False)


def _network(address: bytes, mask: bytes) -> IPv4Network:
    network = network_from_mask(address, mask)
    assert isinstance(network, IPv4Network)  # 4-byte inputs by construction
    return network


# --- one-line descriptions of Mode Config / XAUTH attributes ---

_IPV4_VALUES = frozenset(
    {
        CfgAttr.INTERNAL_IP4_ADDRESS,
        CfgAttr.INTERNAL_IP4_NETMASK,
        CfgAttr.INTERNAL_IP4_DNS,
        CfgAttr.INTERNAL_IP4_NBNS,
        CfgAttr.INTERNAL_IP4_DHCP,
    }
)
_IPV6_VALUES = frozenset(
    {
        CfgAttr.INTERNAL_IP6_ADDRESS,
        CfgAttr.INTERNAL_IP6_NETMASK,
        CfgAttr.INTERNAL_IP6_DNS,
        CfgAttr.INTERNAL_IP6_NBNS,
        CfgAttr.INTERNAL_IP6_DHCP,
    }
)
_INT_VALUES = frozenset(
    {
        CfgAttr.INTERNAL_ADDRESS_EXPIRY,
        CfgAttr.XAUTH_TYPE,
        CfgAttr.XAUTH_STATUS,
        CfgAttr.UNITY_SAVE_PASSWD,
        CfgAttr.UNITY_PFS,
        CfgAttr.UNITY_NATT_PORT,
    }
)
_TEXT_VALUES = frozenset(
    {
        CfgAttr.APPLICATION_VERSION,
        CfgAttr.XAUTH_USER_NAME,
        CfgAttr.XAUTH_MESSAGE,
        CfgAttr.XAUTH_CHALLENGE,
        CfgAttr.XAUTH_DOMAIN,
        CfgAttr.UNITY_BANNER,
        CfgAttr.UNITY_DEF_DOMAIN,
        CfgAttr.UNITY_SPLIT_DNS,
        CfgAttr.UNITY_BACKUP_SERVERS,
        CfgAttr.UNITY_DDNS_HOSTNAME,
    }
)
_SPLIT_VALUES = frozenset({CfgAttr.UNITY_SPLIT_INCLUDE, CfgAttr.UNITY_LOCAL_LAN})


def describe_config_attribute(attribute: DataAttribute) -> str:
    """`NAME=value` for logs; secrets print as <hidden>, empty (requested) ones as NAME."""
    name = enum_name(CfgAttr, attribute.type, "CFG_ATTR_")
    if attribute.value == b"":
        return name
    if attribute.type in SECRET_CFG_ATTRS:
        return f"{name}=<hidden>"
    try:
        return f"{name}={_config_value(attribute)}"
    except WireError:
        return f"{name}={_hex(attribute.as_bytes())}"


def _config_value(attribute: DataAttribute) -> str:
    kind = attribute.type
    if kind in _IPV4_VALUES:
        return str(attribute.as_ipv4())
    if kind == CfgAttr.INTERNAL_IP4_SUBNET:
        return str(attribute.as_ipv4_network())
    if kind in _SPLIT_VALUES:
        return ",".join(_describe_split(e) for e in decode_split_networks(attribute.as_bytes()))
    if kind in _TEXT_VALUES:
        return printable(attribute.as_bytes())
    if kind in _INT_VALUES or attribute.is_tv:
        return _int_value(kind, attribute.as_int())
    if kind in _IPV6_VALUES and len(attribute.as_bytes()) == 16:
        return str(IPv6Address(attribute.as_bytes()))
    if kind == CfgAttr.SUPPORTED_ATTRIBUTES:
        return _supported(attribute.as_bytes())
    return _hex(attribute.as_bytes())


def _int_value(kind: int, value: int) -> str:
    if kind == CfgAttr.XAUTH_TYPE:
        return enum_name(XauthType, value, "")
    if kind == CfgAttr.XAUTH_STATUS:
        return enum_name(XauthStatus, value, "")
    return str(value)


def _describe_split(entry: SplitNetwork) -> str:
    text = str(entry.network)
    if entry.protocol or entry.sport or entry.dport:
        text += f"(proto={entry.protocol} sport={entry.sport} dport={entry.dport})"
    return text


def _supported(data: bytes) -> str:
    if len(data) % 2:
        return _hex(data)
    kinds = struct.unpack(f"!{len(data) // 2}H", data)
    return "[" + " ".join(enum_name(CfgAttr, k & 0x7FFF, "CFG_ATTR_") for k in kinds) + "]"


def printable(data: bytes, limit: int = 80) -> str:
    """Quoted, escaped, truncated text: stays on one log line whatever the bytes."""
    text = data.decode("utf-8", "replace")
    if len(text) > limit:
        return repr(text[:limit]) + "..."
    return repr(text)


def _hex(data: bytes, limit: int = 32) -> str:
    if len(data) > limit:
        return f"{data[:limit].hex()}...({len(data)} bytes)"
    return data.hex() or "''"


def describe_config_attributes(attributes: Sequence[DataAttribute]) -> str:
    return ", ".join(describe_config_attribute(a) for a in attributes)
