"""A remote access session, as the VPN 3000 Manager shows it.

`Session` is the store's own record (vpnhub.session.store): mutable, and edited
by the store alone. Everybody else sees a `SessionSnapshot`: frozen, its maps
read-only copies, so a reader or an event subscriber can never change the live
session behind the store's back (nor see it change under its feet).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from vpnhub.crypto.suites import DH_GROUP_NAMES, esp_suite_name

__all__ = ["ChildInfo", "Session", "SessionKey", "SessionSnapshot", "pfs_name"]

# The IKE SA's cookies (RFC 2408 3.1): the session's identity for its whole life.
SessionKey = tuple[bytes, bytes]

_ENCAPSULATION = {1: "Tunnel", 3: "UDP-Tunnel (NAT-T)", 61443: "UDP-Tunnel (NAT-T draft)"}


@dataclass(frozen=True)
class ChildInfo:
    """One IPsec SA pair of a session (never changed: a rekey adds a new one)."""

    spi_in: int
    spi_out: int
    transform: int
    key_length: int
    auth: int
    encapsulation: int
    local_ts: str
    remote_ts: str
    lifetime: int
    established: float
    pfs_group: int = 0  # Quick Mode's DH group (RFC 2409 5.5), 0 = no PFS


def pfs_name(group: int) -> str:
    """"none", or the DH group as the IKE SA's is shown ("MODP_2048 (group 14)")."""
    if not group:
        return "none"
    return f"{DH_GROUP_NAMES.get(group, 'DH')} (group {group})"


@dataclass
class Session:
    """One remote access client: one IKE SA and its IPsec SAs (the store's record)."""

    key: SessionKey
    public_ip: str
    public_port: int
    group: str = ""
    user: str = ""
    assigned_ip: ipaddress.IPv4Address | None = None
    login_time: float = field(default_factory=time.time)
    ike: dict[str, Any] = field(default_factory=dict)
    children: dict[int, ChildInfo] = field(default_factory=dict)
    nat_t: bool = False
    peer_behind_nat: bool = False
    diagnosis: str = ""
    client: str = ""
    vendor_ids: tuple[str, ...] = ()
    bytes_tx: int = 0
    bytes_rx: int = 0
    packets_tx: int = 0
    packets_rx: int = 0
    keepalives_rx: int = 0
    keepalives_tx: int = 0
    drops: dict[str, int] = field(default_factory=dict)  # decrypt failures, replays, ...
    lan_to_lan: str = ""  # the tunnel's name for a LAN-to-LAN session
    transport: str = ""  # "natt", "esp", "cisco-udp" or "ctcp"
    authenticated: bool = False  # XAUTH accepted: counts against simultaneous_logins
    # Cisco IPsec over UDP: the client's port (behind a PAT: the translated one) is
    # learnt from its first authentic ESP; 0 until then. public_port stays IKE's.
    udp_port: int = 0
    udp_server_port: int = 0

    def snapshot(self) -> SessionSnapshot:
        """A frozen copy: the maps are copied (the store replaces or edits its own)."""
        return SessionSnapshot(
            self.key, self.public_ip, self.public_port, self.group, self.user,
            self.assigned_ip, self.login_time, MappingProxyType(dict(self.ike)),
            MappingProxyType(dict(self.children)), self.nat_t, self.peer_behind_nat,
            self.diagnosis, self.client, self.vendor_ids, self.bytes_tx, self.bytes_rx,
            self.packets_tx, self.packets_rx, self.keepalives_rx, self.keepalives_tx,
            MappingProxyType(dict(self.drops)), self.lan_to_lan, self.transport,
            self.authenticated, self.udp_port, self.udp_server_port)

    @property
    def protocol(self) -> str:
        return self.snapshot().protocol

    def encryption(self) -> str:
        return self.snapshot().encryption()

    def as_dict(self, now: float) -> dict[str, Any]:
        return self.snapshot().as_dict(now)


@dataclass(frozen=True)
class SessionSnapshot:
    """A `Session` at one moment, read-only (the same fields, in the same order)."""

    key: SessionKey
    public_ip: str
    public_port: int
    group: str
    user: str
    assigned_ip: ipaddress.IPv4Address | None
    login_time: float
    ike: Mapping[str, Any]
    children: Mapping[int, ChildInfo]
    nat_t: bool
    peer_behind_nat: bool
    diagnosis: str
    client: str
    vendor_ids: tuple[str, ...]
    bytes_tx: int
    bytes_rx: int
    packets_tx: int
    packets_rx: int
    keepalives_rx: int
    keepalives_tx: int
    drops: Mapping[str, int]
    lan_to_lan: str
    transport: str
    authenticated: bool
    udp_port: int
    udp_server_port: int

    @property
    def protocol(self) -> str:
        """As the VPN 3000 Manager names them."""
        if self.transport == "ctcp":
            return "IPsec/TCP"
        if self.transport == "cisco-udp":
            return "IPsec/UDP"
        return "IPsec/NAT-T" if self.nat_t else "IPsec"

    def encryption(self) -> str:
        c = next(iter(self.children.values()), None)
        if c is None:
            return ""
        return esp_suite_name(c.transform, c.key_length or None, c.auth or None)

    def as_dict(self, now: float) -> dict[str, Any]:
        return {
            "user": self.user,
            "lan_to_lan": self.lan_to_lan,
            "group": self.group,
            "assigned_ip": str(self.assigned_ip) if self.assigned_ip else None,
            "public_ip": self.public_ip,
            "public_port": self.public_port,
            "protocol": self.protocol,
            "encryption": self.encryption(),
            "login_time": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.login_time)),
            "duration": int(now - self.login_time),
            "client": self.client,
            "bytes_tx": self.bytes_tx,
            "bytes_rx": self.bytes_rx,
            "packets_tx": self.packets_tx,
            "packets_rx": self.packets_rx,
            "nat_t": self.nat_t,
            "decrypt_failures": self.drops.get("auth_failed", 0),
            "replays": self.drops.get("replay", 0),
            "drops": dict(self.drops),
            "nat_keepalives_rx": self.keepalives_rx,
            "nat_keepalives_tx": self.keepalives_tx,
            "peer_behind_nat": self.peer_behind_nat,
            "diagnosis": self.diagnosis,
            "ike": dict(self.ike),
            "ipsec": [self._child_dict(c) for c in self.children.values()],
        }

    def _child_dict(self, c: ChildInfo) -> dict[str, Any]:
        udp_src, udp_dst = self._udp_ports()
        return {"spi_in": f"{c.spi_in:08x}", "spi_out": f"{c.spi_out:08x}",
                "encryption": esp_suite_name(c.transform, c.key_length or None, c.auth or None),
                "encapsulation": _ENCAPSULATION.get(c.encapsulation, str(c.encapsulation)),
                "local_network": c.local_ts, "remote_network": c.remote_ts,
                "udp_src_port": udp_src, "udp_dst_port": udp_dst,
                "pfs": pfs_name(c.pfs_group), "pfs_group": c.pfs_group,
                "rekey_interval": c.lifetime}

    def _udp_ports(self) -> tuple[int, int]:
        """(client, concentrator) UDP ports of the ESP: NAT-T's or IPsec over UDP's."""
        if self.transport == "cisco-udp":
            return self.udp_port, self.udp_server_port
        return (self.public_port, 4500) if self.nat_t else (0, 0)
