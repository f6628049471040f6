"""SA lifetimes: the life type/duration attributes and RESPONDER-LIFETIME.

One place for what phase 1 (Aggressive and Main Mode, RFC 2409 5) and
phase 2 (Quick Mode, RFC 2409 5.5) both need; it imports no exchange module,
only wire/.

- RFC 2407 4.5: SA Life Type (1 = seconds, 2 = kilobytes) and SA Life
  Duration come in pairs; phase 1 uses the ISAKMP table's Life Type /
  Life Duration (attributes 11/12, RFC 2409 Appendix A), phase 2 the IPsec
  DOI's SA_LIFE_TYPE / SA_LIFE_DURATION (1/2).
- RFC 2408 3.3: a duration fits the basic (TV) form up to 16 bits and takes
  the variable (TLV) form, here 4 bytes, beyond that.
- RFC 2407 4.6.3.1: a responder whose policy is shorter than the proposal
  says so with a RESPONDER-LIFETIME notify, whose data are those attributes;
  the initiator then uses the shorter value.
"""

from __future__ import annotations

from typing import Protocol

from vpnhub.wire.attributes import DataAttribute, decode_attributes, encode_attributes
from vpnhub.wire.constants import IPsecAttr, LifeType, NotifyType, P1Attr, ProtocolId
from vpnhub.wire.errors import WireError
from vpnhub.wire.payloads import NotifyPayload, Payload


class LifetimeHolder(Protocol):
    """What `read_responder_lifetime` touches on an IKE SA: a structural type, so that
    this module stays below the SA and imports no part of the engine."""

    lifetime: int

    def log(self, cls: str, severity: int, text: str) -> None: ...


def life_attr_types(protocol: int) -> tuple[int, int]:
    """(life type, life duration) attribute numbers for an SA of `protocol`."""
    if protocol == ProtocolId.ISAKMP:
        return P1Attr.LIFE_TYPE, P1Attr.LIFE_DURATION
    return IPsecAttr.SA_LIFE_TYPE, IPsecAttr.SA_LIFE_DURATION  # RFC 2407 4.5


def duration_value(seconds: int) -> int | bytes:
    """A life duration as an attribute value: TV when it fits 16 bits, else
    a 4-byte TLV (RFC 2408 3.3 lets either carry it)."""
    if seconds < 0x10000:
        return seconds
    return seconds.to_bytes(4, "big")


def shorter_lifetime(offered: int, ours: int) -> int:
    """The lifetime to use: the shorter one, `ours` when none was offered (0)."""
    return min(offered, ours) if offered else ours


def lifetime_from_notify(n: NotifyPayload) -> int:
    """Seconds from a RESPONDER-LIFETIME notify; 0 if it carries none.

    The attributes are those of the SA's DOI table: LIFE_TYPE/LIFE_DURATION
    (11/12) for ISAKMP, SA_LIFE_TYPE/SA_LIFE_DURATION (1/2) for ESP.
    """
    life_type, life_duration = life_attr_types(n.protocol_id)
    try:
        attrs = decode_attributes(n.data)
    except WireError:
        return 0
    seconds = True
    for a in attrs:
        if a.type == life_type:
            seconds = a.as_int() == LifeType.SECONDS
        elif a.type == life_duration and seconds:
            return a.as_int()
    return 0


def responder_lifetime(seconds: int, protocol: int, spi: bytes) -> NotifyPayload:
    """RESPONDER-LIFETIME (RFC 2407 4.6.3.1): our lifetime is shorter than proposed."""
    life_type, life_duration = life_attr_types(protocol)
    data = encode_attributes([DataAttribute(life_type, LifeType.SECONDS),
                              DataAttribute(life_duration, duration_value(seconds))])
    return NotifyPayload(NotifyType.RESPONDER_LIFETIME, protocol, spi, data)


def read_responder_lifetime(sa: LifetimeHolder, payloads: list[Payload]) -> None:
    """Phase 1 initiator: take the responder's shorter IKE SA lifetime."""
    for n in payloads:
        if isinstance(n, NotifyPayload) and n.notify_type == NotifyType.RESPONDER_LIFETIME:
            life = lifetime_from_notify(n)
            if life:
                sa.lifetime = shorter_lifetime(sa.lifetime, life)
                sa.log("IKE", 5, f"RESPONDER-LIFETIME notify has value of {life} seconds")
