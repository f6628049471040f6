"""The configuration's typed result: frozen dataclasses, one per TOML section.

What `load_config` returns (vpnhub/config/validate.py builds it); docs/CONFIG.md
documents every key. PSKs, passwords and password hashes are held in `Secret`
(vpnhub/secret.py), which never prints its value, so a `Config` in a log line
or a traceback shows none of them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

# The one vpnhub module the configuration imports (docs/ARCHITECTURE.md says why).
from vpnhub.secret import Secret

__all__ = [
    "AdminConfig",
    "AdminUserConfig",
    "ConcentratorConfig",
    "Config",
    "CryptoProposal",
    "GroupConfig",
    "IPv4Addresses",
    "IPv4Networks",
    "LanToLanConfig",
    "LimitsConfig",
    "LogClassConfig",
    "LogConfig",
    "NatTransparencyConfig",
    "RadiusConfig",
    "RadiusDaeClientConfig",
    "RadiusServerConfig",
    "UserConfig",
]

IPv4Addresses = tuple[ipaddress.IPv4Address, ...]
IPv4Networks = tuple[ipaddress.IPv4Network, ...]


@dataclass(frozen=True)
class CryptoProposal:
    """One proposal string such as "aes256-sha1-modp2048".

    `cipher` is "aes" or "3des", `key_bits` the AES key size (None for 3DES),
    `integrity` "md5" | "sha1" | "sha256" | "sha384" | "sha512", `dh_group`
    the IANA/RFC 2409 group number (for ESP proposals: the PFS group, or None).
    """

    text: str
    cipher: str
    key_bits: int | None
    integrity: str
    dh_group: int | None

    def same_algorithms(self, other: CryptoProposal) -> bool:
        return (self.cipher, self.key_bits, self.integrity, self.dh_group) == (
            other.cipher, other.key_bits, other.integrity, other.dh_group,
        )  # fmt: skip

    @property
    def legacy(self) -> bool:
        return self.cipher == "3des" or self.integrity == "md5" or self.dh_group in (2, 5)


@dataclass(frozen=True)
class ConcentratorConfig:
    public_address: ipaddress.IPv4Address
    private_networks: IPv4Networks
    tunnel_interface: str = "vpnhub0"
    allow_legacy_crypto: bool = False
    ike_port: int = 500
    natt_port: int = 4500
    ike_lifetime: int = 86400
    ipsec_lifetime: int = 28800
    dpd_interval: int = 30
    dpd_retries: int = 5
    xauth_timeout: int = 60
    natt_keepalive: int = 20
    fragmentation: str = "before-encryption"
    workers: int | str = 1  # the legacy spelling of [dataplane] workers
    banner: str = ""
    default_domain: str = ""
    dns: IPv4Addresses = ()
    nbns: IPv4Addresses = ()


@dataclass(frozen=True)
class DataplaneConfig:
    """``[dataplane]``: ``workers`` = N data-plane worker processes, or "auto" (one per
    core, ``os.cpu_count()``); 1 keeps the data plane a thread of the concentrator.
    ``tun_offload``: TUN super-packets split on the way out and coalesced on the way in.
    ``moderation_us``: the data plane's wait after a small batch under load (0: none)."""

    workers: int | str = "auto"
    # IFF_VNET_HDR and TUNSETOFFLOAD on the TUN (issue 16, vpnhub/net/tunoffload.py)
    tun_offload: bool = True
    # interrupt moderation (issue 16, vpnhub/net/dataplane.py "Dataplane._run_moderated")
    moderation_us: int = 200

    def worker_count(self, cpus: int | None = None) -> int:
        """The number of workers to run ("auto": the cores, ``cpus`` or os.cpu_count())."""
        if isinstance(self.workers, int):
            return self.workers
        if cpus is None:
            import os

            cpus = os.cpu_count() or 1
        return max(1, cpus)


@dataclass(frozen=True)
class NatTransparencyConfig:
    ipsec_over_natt: bool = False
    ipsec_over_udp: bool = False
    ipsec_over_udp_port: int = 10000
    ipsec_over_tcp: bool = False
    ipsec_over_tcp_ports: tuple[int, ...] = (10000,)

    def enabled_transports(self) -> tuple[str, ...]:
        """Enabled methods in the order the VPN 3000 tries them: TCP, NAT-T, UDP."""
        order = (
            ("ipsec_over_tcp", self.ipsec_over_tcp),
            ("ipsec_over_natt", self.ipsec_over_natt),
            ("ipsec_over_udp", self.ipsec_over_udp),
        )
        return tuple(name for name, enabled in order if enabled)


_LOCALHOST = ipaddress.IPv4Address("127.0.0.1")


@dataclass(frozen=True)
class AdminUserConfig:
    name: str
    password_hash: Secret
    # "admin": everything; "monitor": reads pages and the API, pings, logs itself out;
    # refused every other change (Clear Log, event classes, logouts, settings), issue 15
    role: str = "admin"


@dataclass(frozen=True)
class AdminConfig:
    socket: Path = Path("/run/vpnhub/admin.sock")
    listen_address: ipaddress.IPv4Address | ipaddress.IPv6Address = _LOCALHOST
    listen_port: int = 8443
    users: tuple[AdminUserConfig, ...] = ()
    tls_cert: Path | None = None  # both or neither: the web manager speaks HTTPS
    tls_key: Path | None = None


@dataclass(frozen=True)
class LimitsConfig:
    max_half_open_per_source: int = 32
    max_half_open_total: int = 4096
    max_half_open_verified_per_source: int = 64
    max_sessions: int = 10000
    xauth_max_failures: int = 5
    xauth_max_failures_per_source: int = 25
    xauth_lockout_seconds: int = 300
    xauth_retry_delay: float = 1.0
    xauth_max_retry_delay: float = 30.0
    xauth_tracked_entries: int = 4096
    # After a crash, the pool addresses of the lost sessions are kept from other users
    # this long after the crashed run was last seen (their clients notice by DPD).
    lost_address_hold: int = 600
    # Diffie-Hellman key pairs computed in idle time, per pooled group (0: none; None:
    # sized per group for a login storm, ike.dhpool.default_size)
    dh_pool_size: int | None = None


@dataclass(frozen=True)
class LogClassConfig:
    """[log.classes.NAME]: severities of one event class; None: the [log] default."""

    name: str
    console_severity: int | None = None
    keep_severity: int | None = None


@dataclass(frozen=True)
class LogConfig:
    console_severity: int = 3
    keep_severity: int = 5
    store: Path | None = Path("/var/lib/vpnhub/events.db")
    buffer_events: int = 2048
    store_max_events: int = 100_000
    classes: tuple[LogClassConfig, ...] = ()


@dataclass(frozen=True)
class GroupConfig:
    """A remote-access group. Unset banner/default_domain/dns/nbns inherit [concentrator]."""

    name: str
    # None only when `auth` has no "psk" (issue 14): a certificate or hybrid group
    psk: Secret | None
    address_pool: ipaddress.IPv4Network
    reserve_first_address: bool = False
    dns: IPv4Addresses = ()
    nbns: IPv4Addresses = ()
    split_include: IPv4Networks | None = None  # None: tunnel everything
    split_dns: tuple[str, ...] = ()
    default_domain: str = ""
    banner: str = ""
    pfs: bool = False
    save_password: bool = False
    ike_proposals: tuple[CryptoProposal, ...] | None = None  # None: the engine's defaults
    esp_proposals: tuple[CryptoProposal, ...] | None = None
    # The VPN 3000's "Simultaneous Logins": sessions one user may have at once; the
    # next login is refused at XAUTH. 0: nobody of this group may log in.
    simultaneous_logins: int = 3
    # XAUTH backend of this group (issue 14): "local" ([[user]]) or "radius"
    xauth: str = "local"
    # issue 14: the phase 1 methods this group allows: "psk" (XAUTHInitPreShared),
    # "hybrid" (HybridInitRSA: only the concentrator signs), "rsa" (XAUTHInitRSA)
    auth: tuple[str, ...] = ("psk",)
    # issue 14: [[group.radius_server]], this group's own RADIUS servers (XAUTH and
    # accounting), tried in order; empty: the global [[radius.server]]s
    radius_servers: tuple[RadiusServerConfig, ...] = ()


@dataclass(frozen=True)
class UserConfig:
    """An XAUTH user. Exactly one of `password` / `password_hash` is set."""

    name: str
    group: str
    password: Secret | None = None
    password_hash: Secret | None = None


@dataclass(frozen=True)
class LanToLanConfig:
    """A site-to-site tunnel (Main Mode with PSK; Aggressive Mode for a dynamic peer)."""

    name: str
    psk: Secret
    local_networks: IPv4Networks
    remote_networks: IPv4Networks
    peer: ipaddress.IPv4Address | None = None  # None: dynamic, told apart by peer_id
    peer_id: str = ""  # FQDN or KEY_ID the peer sends in Aggressive Mode
    ipsec_over_natt: bool = True  # this tunnel's own NAT-T switch
    ike_proposals: tuple[CryptoProposal, ...] | None = None
    esp_proposals: tuple[CryptoProposal, ...] | None = None


# -- RADIUS (issue 14): [radius], [[radius.server]], [[radius.dae_client]]


@dataclass(frozen=True)
class RadiusServerConfig:
    """One RADIUS server, tried in the order of the file (RFC 2865, RFC 2866).
    `timeout`: seconds to wait for each try; `retries`: tries after the first."""

    address: ipaddress.IPv4Address
    secret: Secret
    auth_port: int = 1812
    acct_port: int = 1813
    timeout: float = 3.0
    retries: int = 2
    # Access-Accept/Reject without a Message-Authenticator refused (RFC 3579 3.2)
    require_message_authenticator: bool = True


@dataclass(frozen=True)
class RadiusDaeClientConfig:
    """A Dynamic Authorization client allowed to send Disconnect / CoA (RFC 5176)."""

    address: ipaddress.IPv4Address
    secret: Secret


@dataclass(frozen=True)
class RadiusConfig:
    """`nas_ip_address` None: the concentrator's public_address. `interim_interval`:
    seconds between Interim-Updates (0: none). DAE listens on `dae_port` of the
    public address when `dae_clients` is not empty."""

    servers: tuple[RadiusServerConfig, ...] = ()
    nas_identifier: str = "vpnhub"
    nas_ip_address: ipaddress.IPv4Address | None = None
    accounting: bool = True
    interim_interval: int = 600
    dae_port: int = 3799
    dae_clients: tuple[RadiusDaeClientConfig, ...] = ()


@dataclass(frozen=True)
class PkiConfig:
    """[pki] (issue 14): the trusted CAs, the concentrator's certificate and key, CRLs.

    Only the paths are checked here (the package imports no X.509 code); vpnhub.pki
    loads them and says which file is wrong."""

    ca: Path
    certificate: Path | None = None
    key: Path | None = None
    crls: tuple[Path, ...] = ()


@dataclass(frozen=True)
class ClusterConfig:
    """[cluster] (issue 17): this concentrator as a member of a load-balancing cluster.

    The shared state (members and their load, the session directory, address
    blocks and leases, commands to another member) lives in PostgreSQL at
    ``dsn``; the virtual cluster address moves between members with VRRP
    (keepalived). ``public_address`` is where a redirected client goes (the
    member's own address; by default ``[concentrator] public_address``). Each
    member draws blocks of ``pool_block`` prefix length from every group's
    pool, so an address is never given twice and the private network routes
    a block to its member (docs/CLUSTER.md)."""

    dsn: Secret
    member: str
    virtual_address: ipaddress.IPv4Address
    public_address: ipaddress.IPv4Address
    load_balancing: bool = True
    heartbeat: float = 2.0
    member_timeout: float = 10.0
    pool_block: int = 26


@dataclass(frozen=True)
class Config:
    concentrator: ConcentratorConfig
    nat_transparency: NatTransparencyConfig
    admin: AdminConfig
    limits: LimitsConfig
    log: LogConfig
    groups: tuple[GroupConfig, ...]
    users: tuple[UserConfig, ...]
    source: str = "<string>"
    lan_to_lan: tuple[LanToLanConfig, ...] = ()
    radius: RadiusConfig = RadiusConfig()
    pki: PkiConfig | None = None
    dataplane: DataplaneConfig = DataplaneConfig()
    cluster: ClusterConfig | None = None  # None: a single concentrator, no database

    def group(self, name: str) -> GroupConfig | None:
        return next((g for g in self.groups if g.name == name), None)

    def user(self, name: str) -> UserConfig | None:
        return next((u for u in self.users if u.name == name), None)
