"""A remote access session, as the VPN 3000 Manager shows it.

`Session` is the store's own record (vpnhub.session.store): mutable, and edited
by the store alone. Everybody else holds a `SessionView`, read-only to the type
checker: the store's reads hand out the live session that way (no copy: the
manager reads every session every 10 s), and its events carry a snapshot that
is frozen at run time as well (`Session.snapshot()`), so a subscriber that
keeps one sees it never change and can never edit the live session.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NoReturn, Protocol

from vpnhub.crypto.suites import DH_GROUP_NAMES, esp_suite_name

__all__ = ["ChildInfo", "Session", "SessionKey", "SessionView", "pfs_name"]

# The IKE SA's cookies (RFC 2408 3.1): the session's identity for its whole life.
SessionKey = tuple[bytes, bytes]

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


class SessionView(Protocol):
    """A session, read-only: the live one from a store's reads, or a snapshot."""

    @property
    def key(self) -> SessionKey: ...
    @property
    def public_ip(self) -> str: ...
    @property
    def public_port(self) -> int: ...
    @property
    def group(self) -> str: ...
    @property
    def user(self) -> str: ...
    @property
    def assigned_ip(self) -> ipaddress.IPv4Address | None: ...
    @property
    def login_time(self) -> float: ...
    @property
    def ike(self) -> Mapping[str, Any]: ...
    @property
    def children(self) -> Mapping[int, ChildInfo]: ...
    @property
    def nat_t(self) -> bool: ...
    @property
    def peer_behind_nat(self) -> bool: ...
    @property
    def diagnosis(self) -> str: ...
    @property
    def client(self) -> str: ...
    @property
    def vendor_ids(self) -> tuple[str, ...]: ...
    @property
    def bytes_tx(self) -> int: ...
    @property
    def bytes_rx(self) -> int: ...
    @property
    def packets_tx(self) -> int: ...
    @property
    def packets_rx(self) -> int: ...
    @property
    def keepalives_rx(self) -> int: ...
    @property
    def keepalives_tx(self) -> int: ...
    @property
    def drops(self) -> Mapping[str, int]: ...
    @property
    def lan_to_lan(self) -> str: ...
    @property
    def transport(self) -> str: ...
    @property
    def authenticated(self) -> bool: ...
    @property
    def udp_port(self) -> int: ...
    @property
    def udp_server_port(self) -> int: ...
    @property
    def protocol(self) -> str: ...
    def encryption(self) -> str: ...
    def as_dict(self, now: float) -> dict[str, Any]: ...


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

    def snapshot(self) -> SessionView:
        """A copy frozen at run time: its maps are read-only copies of the live ones."""
        snap = object.__new__(_FrozenSession)
        fields = snap.__dict__  # written directly: bypasses the __setattr__ that refuses
        fields.update(self.__dict__)
        fields["ike"] = MappingProxyType(dict(self.ike))
        fields["children"] = MappingProxyType(dict(self.children))
        fields["drops"] = MappingProxyType(dict(self.drops))
        return snap

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
            "auth": self.ike.get("auth_mode", "psk"),  # psk / rsa / hybrid (issue 14)
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
            "ipsec": [
                {"spi_in": f"{c.spi_in:08x}", "spi_out": f"{c.spi_out:08x}",
                 "encryption": esp_suite_name(c.transform, c.key_length or None, c.auth or None),
                 "encapsulation": {1: "Tunnel", 3: "UDP-Tunnel (NAT-T)",
                                   61443: "UDP-Tunnel (NAT-T draft)"}.get(c.encapsulation,
                                                                          str(c.encapsulation)),
                 "local_network": c.local_ts, "remote_network": c.remote_ts,
                 "udp_src_port": self._udp_ports()[0],
                 "udp_dst_port": self._udp_ports()[1],
                 "pfs": pfs_name(c.pfs_group), "pfs_group": c.pfs_group,
                 "rekey_interval": c.lifetime}
                for c in self.children.values()
            ],
        }

    def _udp_ports(self) -> tuple[int, int]:
        """(client, concentrator) UDP ports of the ESP: NAT-T's or IPsec over UDP's."""
        if self.transport == "cisco-udp":
            return self.udp_port, self.udp_server_port
        return (self.public_port, 4500) if self.nat_t else (0, 0)


class _FrozenSession(Session):
    """`Session.snapshot()`: the same reads, every write refused (as a frozen dataclass)."""

    def __setattr__(self, name: str, value: Any) -> NoReturn:
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> NoReturn:
        raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")
