"""Events the IKE engine hands to its driver (aioquic-style `next_event()`).

Events are small frozen dataclasses. The driver (concentrator, client, tests)
reacts to them: checks XAUTH credentials, answers Mode Config, installs child
SAs in the data plane, logs. None of them carries a PSK or a password except
`XauthCredentials`, whose password field is a `Secret` that never prints.

`Event` is the union of every event class, so a consumer dispatches with
`match` and ends with `case _: assert_never(e)`: the type checker then proves
each event is handled or explicitly ignored, and a new event class added to
the union shows every consumer that must learn it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import TypeAlias

from vpnhub.secret import Secret

Address = tuple[str, int]


@dataclass(frozen=True)
class EventBase:
    """Common base of the event classes; consumers annotate with `Event` (the union)."""


@dataclass(frozen=True)
class LogLine(EventBase):
    """A line for the event log: `cls` is IKE, IKEDBG, IKEDECODE, NATT, XAUTH, ...

    `source` is set when the line was caused by input that did not authenticate
    (a message before its HASH was checked, one that failed to decrypt or
    verify, or a phase 1 that never completed): it is the packet's source
    address, which is all the driver may attribute the line to. Anyone can copy
    an SA's cookies (RFC 2408 2.5.3 makes them public), so only authenticated
    input may be logged in the name of the SA's user. `reason` names a
    per-packet failure (the drop counter key), which the driver rate-limits.
    """

    cls: str
    severity: int
    text: str
    source: Address | None = None
    reason: str = ""


@dataclass(frozen=True)
class NatDetected(EventBase):
    """RFC 3947 section 3.2 result, once the NAT-D payloads were compared."""

    local_behind_nat: bool
    remote_behind_nat: bool
    natt_in_use: bool
    variant: str  # "RFC 3947", "draft-02", ... or "none"


@dataclass(frozen=True)
class NatTraversalRefused(EventBase):
    """The peer sits behind a NAT but NAT-T was not negotiated.

    This is the failure of the source document: the tunnel comes up, the
    client encrypts, the concentrator decrypts nothing. The driver must
    log it plainly at severity 3 and show it on the session.
    """

    reason: str


@dataclass(frozen=True)
class Phase1Established(EventBase):
    encryption: str
    hash: str
    group: str
    auth_method: str
    mode: str  # "Aggressive" or "Main"
    lifetime: int
    peer_id: str
    peer_vendor_ids: tuple[str, ...]
    # issue 14: "psk", "rsa" or "hybrid"; for a certificate, its subject and the group
    # its OU selected (else "")
    auth_mode: str = "psk"
    cert_subject: str = ""
    cert_group: str = ""


@dataclass(frozen=True)
class XauthRequested(EventBase):
    """Initiator side: the server asks for a login (fields it wants)."""

    fields: tuple[str, ...]
    message: str = ""


@dataclass(frozen=True)
class XauthCredentials(EventBase):
    """Responder side: the client answered; call `xauth_result()`."""

    user: str
    password: Secret


@dataclass(frozen=True)
class XauthCompleted(EventBase):
    ok: bool
    user: str = ""
    message: str = ""


@dataclass(frozen=True)
class ModeConfigRequested(EventBase):
    """Responder side: the client pulls its attributes; call `modecfg_reply()`."""

    requested: tuple[int, ...]
    application_version: str = ""


@dataclass(frozen=True)
class ModeConfigReceived(EventBase):
    """Initiator side: the attributes the server gave us."""

    config: ModeConfig


@dataclass(frozen=True)
class ChildSAEstablished(EventBase):
    """A Quick Mode finished: keys, SPIs and selectors for the data plane.

    `spi_in` is the SPI we chose (the peer sends with it); `keys_in` decrypt
    what the peer sends. Key material is bytes; never log it.
    """

    message_id: int
    spi_in: int
    spi_out: int
    transform: int  # EspTransform
    key_length: int  # bits, 0 when the transform has a fixed size
    auth: int  # IPsecAuth, 0 for AEAD
    enc_key_in: bytes = field(repr=False)
    auth_key_in: bytes = field(repr=False)
    enc_key_out: bytes = field(repr=False)
    auth_key_out: bytes = field(repr=False)
    encapsulation: int  # EncapsulationMode
    local_ts: ipaddress.IPv4Network
    remote_ts: ipaddress.IPv4Network
    lifetime: int
    pfs_group: int
    rekey_of: int | None = None  # spi_in of the SA this one replaces
    # responder: the inbound half was announced at message 2 (ChildSAInboundReady). A
    # driver that installed it then adds only the outbound SA now; one that ignores
    # ChildSAInboundReady installs both here, as for the initiator
    inbound_early: bool = False
    # we initiated this Quick Mode: the event comes with message 3 among the SA's
    # datagrams, which the driver sends AFTER dispatching the events. A peer that keeps
    # one SA pair (vpnc) answers ESP on an SA it has not seen message 3 for with
    # "unknown spi", so the outbound SA waits until message 3 left
    # (`IkeDriver.after_sent`); the inbound one can go in at once
    we_initiated: bool = False


@dataclass(frozen=True)
class ChildSAInboundReady(EventBase):
    """Responder of a Quick Mode, as it sends message 2: install the inbound SA now.

    RFC 2409 5.5 lets the initiator use the new SA as soon as it sent message 3,
    and a packet right behind message 3 can reach the data plane before message 3
    has been checked, so the responder installs its inbound SA before message 2
    leaves (strongSwan and libreswan do so too): its keys are known then, KEYMAT
    needs only the nonces of messages 1 and 2. The driver dispatches events before
    it sends the SA's datagrams, so the inbound SA is handed over first. The
    outbound SA waits for message 3 (`ChildSAEstablished` with `inbound_early`):
    we must not send on an SA the initiator has not confirmed. If message 3 never
    checks out, `ChildSAAbandoned` follows instead. Key material: never log it.
    """

    message_id: int
    spi_in: int
    transform: int  # EspTransform
    key_length: int  # bits, 0 when the transform has a fixed size
    auth: int  # IPsecAuth, 0 for AEAD
    enc_key_in: bytes = field(repr=False)
    auth_key_in: bytes = field(repr=False)
    encapsulation: int  # EncapsulationMode
    local_ts: ipaddress.IPv4Network
    remote_ts: ipaddress.IPv4Network


@dataclass(frozen=True)
class ChildSAAbandoned(EventBase):
    """A Quick Mode announced by `ChildSAInboundReady` ended without a valid message 3
    (a wrong HASH(3), no answer to our retransmissions, the IKE SA gone): remove its
    inbound SA. `reason` is a stable name (the drop counter key)."""

    message_id: int
    spi_in: int
    reason: str


@dataclass(frozen=True)
class ChildSADeleted(EventBase):
    spi_in: int
    spi_out: int
    by_peer: bool


@dataclass(frozen=True)
class PeerEndpointChanged(EventBase):
    """RFC 3947 section 5: an authenticated message came from a new address/port."""

    old: Address
    new: Address


@dataclass(frozen=True)
class DpdAck(EventBase):
    sequence: int


@dataclass(frozen=True)
class KeepaliveReceived(EventBase):
    kind: str  # "dpd-r-u-there", "cisco-40500", ...


@dataclass(frozen=True)
class DeadPeer(EventBase):
    """No answer to DPD or retransmissions: the SA is gone."""

    reason: str


@dataclass(frozen=True)
class SADeleted(EventBase):
    """The IKE SA ended (by us, by the peer, by failure). Always the last event."""

    reason: str
    by_peer: bool


@dataclass(frozen=True)
class NegotiationFailed(EventBase):
    """Phase 1 or 2 failed: `error` is a stable name also used as counter key."""

    error: str
    detail: str
    notify: int | None = None


@dataclass(frozen=True)
class Phase1RekeyDue(EventBase):
    """Initiator: the IKE SA nears its lifetime; call `rekey_phase1()` (RFC 2409 has
    no phase 1 rekey: a new phase 1 replaces the old one, children carry over)."""

    lifetime_left: float


@dataclass(frozen=True)
class Redirected(EventBase):
    """Responder (issue 17): instead of XAUTH the client was sent to `target`, another
    cluster member, with the Cisco load-balance notify (40501). The SA stays a few
    seconds to repeat it (informational.REDIRECT_LINGER), then ends silently
    (SADeleted): the client never logs in here."""

    target: ipaddress.IPv4Address


@dataclass(frozen=True)
class RedirectRequested(EventBase):
    """Initiator (issue 17): the concentrator sent us to `target` with the Cisco
    load-balance notify (40501) instead of XAUTH, in an Informational protected by
    the phase 1 SA (HASH(1) verified, RFC 2409 5.7). The engine has already ended
    this SA without a DELETE (vpnc sends none; the master forgets it by itself); the
    driver starts Aggressive Mode, XAUTH and Mode Config again at `target`, UDP 500,
    as vpnc does (vpnc.c do_phase2_notice_check)."""

    target: ipaddress.IPv4Address


@dataclass(frozen=True)
class RedirectRefused(EventBase):
    """Initiator (issue 17): a load-balance notify (40501) that is not followed: its
    data is not an IPv4 unicast address of 4 bytes, it came unencrypted or with a
    wrong HASH, or not while we wait for XAUTH. Dropped and counted (`reason`, the
    drop counter key); the SA goes on as if it had not come."""

    reason: str
    detail: str


# Every event the engine emits. Consumers annotate with this and `match` on it
# (with `assert_never` in the last case); add a new event class here too.
Event: TypeAlias = (
    LogLine | NatDetected | NatTraversalRefused | Phase1Established | XauthRequested |
    XauthCredentials | XauthCompleted | ModeConfigRequested | ModeConfigReceived |
    ChildSAEstablished | ChildSAInboundReady | ChildSAAbandoned | ChildSADeleted |
    PeerEndpointChanged | DpdAck | KeepaliveReceived | DeadPeer | SADeleted |
    NegotiationFailed | Phase1RekeyDue | Redirected | RedirectRequested | RedirectRefused
)


@dataclass
class ModeConfig:
    """Mode Config / Cisco Unity attributes (mode-cfg-05, Unity)."""

    address: ipaddress.IPv4Address | None = None
    netmask: ipaddress.IPv4Address | None = None
    dns: list[ipaddress.IPv4Address] = field(default_factory=list)
    nbns: list[ipaddress.IPv4Address] = field(default_factory=list)
    banner: str = ""
    default_domain: str = ""
    split_include: list[ipaddress.IPv4Network] = field(default_factory=list)
    split_dns: list[str] = field(default_factory=list)
    save_password: bool | None = None
    pfs: bool | None = None
    natt_port: int | None = None
    local_lan: list[ipaddress.IPv4Network] = field(default_factory=list)
    backup_servers: list[str] = field(default_factory=list)
    application_version: str = ""
    ddns_hostname: str = ""
    firewall_type: bytes | None = None
