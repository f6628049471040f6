"""Remote access sessions and the Session Summary, as the VPN 3000 Manager shows them."""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass, field
from typing import Any

from vpnhub.crypto.suites import DH_GROUP_NAMES, esp_suite_name


@dataclass
class ChildInfo:
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
    """One remote access client: one IKE SA and its IPsec SAs."""

    key: tuple[bytes, bytes]
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
            "drops": self.drops,
            "nat_keepalives_rx": self.keepalives_rx,
            "nat_keepalives_tx": self.keepalives_tx,
            "peer_behind_nat": self.peer_behind_nat,
            "diagnosis": self.diagnosis,
            "ike": self.ike,
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


class SessionTable:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.sessions: dict[tuple[bytes, bytes], Session] = {}
        self.peak = 0
        self.cumulative = 0

    def add(self, s: Session) -> None:
        self.sessions[s.key] = s

    def logged_in(self, s: Session) -> None:
        """Counted once XAUTH succeeded (a session is a logged-in user)."""
        self.cumulative += 1
        self.peak = max(self.peak, self.active())

    def active(self) -> int:
        return sum(1 for s in self.sessions.values() if s.user and s.children)

    def logins_of(self, user: str, *, besides: Session) -> list[Session]:
        """The sessions `user` is logged in with (XAUTH accepted), `besides` left out."""
        return [s for s in self.sessions.values()
                if s.authenticated and s.user == user and s is not besides]

    def active_l2l(self) -> int:
        return sum(1 for s in self.sessions.values() if s.lan_to_lan and s.children)

    def update_peak(self) -> None:
        self.peak = max(self.peak, self.active())

    def summary(self) -> dict[str, int]:
        active = self.active()
        self.peak = max(self.peak, active)
        l2l = self.active_l2l()
        ra = active - l2l
        return {"active_remote_access": ra, "active_lan_to_lan": l2l,
                "active_management": 0, "active": ra, "total_active": active,
                "peak": self.peak, "concurrent_limit": self.limit,
                "cumulative": self.cumulative}

    def to_json(self, now: float) -> dict[str, Any]:
        listed = [s.as_dict(now) for s in self.sessions.values()
                  if s.user and not s.lan_to_lan]
        sites = [s.as_dict(now) for s in self.sessions.values() if s.lan_to_lan]
        return {"summary": self.summary(), "sessions": listed, "lan_to_lan": sites}
