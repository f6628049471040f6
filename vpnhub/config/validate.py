"""Validating the configuration: TOML text in, a typed, frozen `Config` out.

Every problem with a file (TOML syntax, unknown key, wrong type, overlapping
address pools, missing PSK, ...) becomes one `ConfigError` whose message names
the file, the line, and the key path, for example::

    concentrator.toml, line 17: group[1].address_pool: 10.40.1.0/25 overlaps
    group[0].address_pool 10.40.1.0/24 (line 9)

Reading the file and finding lines is vpnhub/config/locate.py; the result's
types are vpnhub/config/schema.py. No error message quotes the value of a
secret key (PSKs, passwords, password hashes).
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import NoReturn

from vpnhub.config.errors import ConfigError, KeyPath, format_key_path
from vpnhub.config.eventclasses import CLASSES
from vpnhub.config.locate import Locator, read_file, read_toml
from vpnhub.config.passwordhash import PasswordHashError, parse_password_hash
from vpnhub.config.schema import (
    AdminConfig,
    AdminUserConfig,
    ClusterConfig,
    ConcentratorConfig,
    Config,
    CryptoProposal,
    DataplaneConfig,
    GroupConfig,
    IPv4Addresses,
    IPv4Networks,
    LanToLanConfig,
    LimitsConfig,
    LogClassConfig,
    LogConfig,
    NatTransparencyConfig,
    PkiConfig,
    RadiusConfig,
    RadiusDaeClientConfig,
    RadiusServerConfig,
    UserConfig,
)
from vpnhub.secret import Secret

__all__ = ["SIMULTANEOUS_LOGINS_MAX", "load_config", "parse_config", "parse_proposal"]


# --------------------------------------------------------------------------- entry points


def load_config(path: str | Path) -> Config:
    """Read and validate a configuration file. Raises ConfigError, nothing else."""
    text = read_file(path)
    return parse_config(text, str(path), base_dir=Path(path).resolve().parent)


def parse_config(text: str, source: str = "<string>", *, base_dir: Path | None = None) -> Config:
    """Validate configuration text. Relative paths (psk_file, sockets) are taken
    from `base_dir`, by default the current directory."""
    data = read_toml(text, source)
    ctx = _Context(source, Locator(text), base_dir or Path.cwd())
    return _build(ctx, _Table(ctx, data, (), _TOP_KEYS))


# --------------------------------------------------------------------------- validation


class _Missing:
    pass


_MISSING = _Missing()


class _Context:
    def __init__(self, source: str, locator: Locator, base_dir: Path) -> None:
        self.source = source
        self.locator = locator
        self.base_dir = base_dir

    def fail(self, path: KeyPath, reason: str) -> NoReturn:
        raise ConfigError(
            reason, source=self.source, line=self.locator.line_of(path), key=format_key_path(path)
        )

    def line(self, path: KeyPath) -> int:
        return self.locator.line_of(path)


def _show(text: str, limit: int = 60) -> str:
    """Quote user text for a one-line message: escaped, and cut if long."""
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _type_name(value: object) -> str:
    names = (
        (bool, "a boolean"),
        (int, "an integer"),
        (float, "a float"),
        (str, "a string"),
        (list, "an array"),
        (dict, "a table"),
    )
    for cls, name in names:
        if isinstance(value, cls):
            return name
    return "a date/time"


class _Table:
    """One TOML table being read: typed getters, and unknown keys rejected up front."""

    def __init__(
        self, ctx: _Context, data: Mapping[str, object], path: KeyPath, allowed: frozenset[str]
    ) -> None:
        self.ctx = ctx
        self.data = data
        self.path = path
        self.allowed = allowed
        unknown = [k for k in data if k not in allowed]
        if unknown:
            first = min(unknown, key=lambda k: ctx.line((*path, k)))
            hint = difflib.get_close_matches(first, sorted(allowed), n=1)
            extra = f" (did you mean '{hint[0]}'?)" if hint else ""
            ctx.fail((*path, first), f"unknown key {_show(first)}{extra}")

    def has(self, key: str) -> bool:
        return key in self.data

    def at(self, key: str | int, *more: str | int) -> KeyPath:
        return (*self.path, key, *more)

    def fail(self, key: str, reason: str, *more: str | int) -> NoReturn:
        self.ctx.fail(self.at(key, *more), reason)

    def _get(self, key: str, default: object) -> object:
        assert key in self.allowed, key
        if key in self.data:
            return self.data[key]
        if default is _MISSING:
            self.fail(key, "missing required key")
        return default

    def _typed(self, key: str, value: object, kind: type | tuple[type, ...], what: str) -> None:
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            self.fail(key, f"expected {what}, got a boolean")
        if not isinstance(value, kind):
            self.fail(key, f"expected {what}, got {_type_name(value)}")

    def string(self, key: str, default: str | _Missing = _MISSING, *, max_len: int = 255) -> str:
        value = self._get(key, default)
        self._typed(key, value, str, "a string")
        assert isinstance(value, str)
        if len(value) > max_len:
            self.fail(key, f"longer than {max_len} characters")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key, default)
        self._typed(key, value, bool, "a boolean (true or false)")
        assert isinstance(value, bool)
        return value

    def integer(self, key: str, default: int | _Missing, lo: int, hi: int) -> int:
        value = self._get(key, default)
        self._typed(key, value, int, "an integer")
        assert isinstance(value, int)
        if not lo <= value <= hi:
            self.fail(key, f"{value} is out of range ({lo}..{hi})")
        return value

    def seconds(self, key: str, default: float, lo: float, hi: float) -> float:
        value = self._get(key, default)
        self._typed(key, value, (int, float), "a number of seconds")
        assert isinstance(value, int | float)
        if not (math.isfinite(value) and lo <= value <= hi):
            self.fail(key, f"{value} is out of range ({lo:g}..{hi:g} seconds)")
        return float(value)

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.string(key, default)
        if value not in choices:
            self.fail(key, f"{_show(value)} is not one of: {', '.join(choices)}")
        return value

    def array(self, key: str, default: object = _MISSING) -> list[object] | None:
        value = self._get(key, default)
        if value is None:
            return None
        self._typed(key, value, list, "an array")
        assert isinstance(value, list)
        return value

    def string_list(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        items = self.array(key, None)
        if items is None:
            return default
        for i, item in enumerate(items):
            if not isinstance(item, str):
                self.fail(key, f"expected a string, got {_type_name(item)}", i)
        return tuple(str(item) for item in items)

    def address(self, key: str, default: object = _MISSING) -> ipaddress.IPv4Address:
        value = self._get(key, default)
        if isinstance(value, ipaddress.IPv4Address):
            return value
        return _parse_address(self.ctx, self.at(key), value)

    def address_list(self, key: str, default: IPv4Addresses) -> IPv4Addresses:
        items = self.array(key, None)
        if items is None:
            return default
        return tuple(_parse_address(self.ctx, self.at(key, i), v) for i, v in enumerate(items))

    def network(self, key: str) -> ipaddress.IPv4Network:
        return _parse_network(self.ctx, self.at(key), self._get(key, _MISSING))

    def network_list(self, key: str, default: object = _MISSING) -> IPv4Networks | None:
        items = self.array(key, default)
        if items is None:
            return None
        return tuple(_parse_network(self.ctx, self.at(key, i), v) for i, v in enumerate(items))

    def path_value(self, key: str, default: Path | None) -> Path | None:
        value = self._get(key, default)
        if value is None or isinstance(value, Path):
            return value
        self._typed(key, value, str, "a string (a file path)")
        assert isinstance(value, str)
        if not value:
            return None
        return self.ctx.base_dir / value

    def sub(self, key: str, allowed: frozenset[str]) -> _Table:
        value = self._get(key, {})
        self._typed(key, value, dict, "a table")
        assert isinstance(value, dict)
        return _Table(self.ctx, value, self.at(key), allowed)

    def sub_array(self, key: str, allowed: frozenset[str]) -> list[_Table]:
        value = self._get(key, [])
        what = f"an array of tables ([[{format_key_path(self.at(key))}]])"
        self._typed(key, value, list, what)
        assert isinstance(value, list)
        tables = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                self.fail(key, f"expected a table, got {_type_name(item)}", i)
            tables.append(_Table(self.ctx, item, self.at(key, i), allowed))
        return tables


def _parse_address(ctx: _Context, path: KeyPath, value: object) -> ipaddress.IPv4Address:
    if not isinstance(value, str):
        ctx.fail(path, f"expected an IPv4 address string, got {_type_name(value)}")
    try:
        return ipaddress.IPv4Address(value)
    except ValueError:
        ctx.fail(path, f"{_show(value)} is not a valid IPv4 address")


def _parse_network(ctx: _Context, path: KeyPath, value: object) -> ipaddress.IPv4Network:
    if not isinstance(value, str):
        ctx.fail(
            path, f"expected an IPv4 network string like '10.0.0.0/24', got {_type_name(value)}"
        )
    try:
        return ipaddress.IPv4Network(value)
    except ValueError as exc:
        if "has host bits set" in str(exc):
            fixed = ipaddress.IPv4Network(value, strict=False)
            ctx.fail(path, f"{_show(value)} has host bits set (did you mean '{fixed}'?)")
        ctx.fail(path, f"{_show(value)} is not a valid IPv4 network")


def _check_name(table: _Table, key: str) -> str:
    name = table.string(key, max_len=64)
    if not name or name != name.strip() or any(ord(c) < 32 or ord(c) == 127 for c in name):
        table.fail(key, "must be 1 to 64 printable characters without leading/trailing spaces")
    return name


MAX_WORKERS = 1024
_DATAPLANE_KEYS = frozenset({"workers", "tun_offload", "moderation_us"})
MAX_MODERATION_US = 1000  # [dataplane] moderation_us: a wait above 1 ms is a delay, not a batch


def _workers(t: _Table, default: int | str = 1) -> int | str:
    """`workers`: an integer 1..1024 or "auto" (one per core, resolved at start)."""
    value = t._get("workers", default)
    if value == "auto":
        return "auto"
    if isinstance(value, str):
        t.fail("workers", f"{_show(value)} is neither an integer nor \"auto\"")
    return t.integer("workers", default if isinstance(default, int) else 1, 1, MAX_WORKERS)


# [dataplane] workers when neither it nor [concentrator] workers is given
DEFAULT_WORKERS: int | str = "auto"


def _dataplane(t: _Table, legacy: int | str | None) -> DataplaneConfig:
    """[dataplane]; `[concentrator] workers` (the older spelling) is its default."""
    return DataplaneConfig(workers=_workers(t, DEFAULT_WORKERS if legacy is None else legacy),
                           tun_offload=t.boolean("tun_offload", True),
                           moderation_us=t.integer("moderation_us", 200, 0, MAX_MODERATION_US))


def _check_domain(table: _Table, key: str, value: str) -> str:
    labels = value.rstrip(".").split(".")
    ok = all(re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?", lab) for lab in labels)
    if value and not ok:
        table.fail(key, f"{_show(value)} is not a valid DNS domain name")
    return value


# -- proposal strings

_CIPHERS: dict[str, tuple[str, int | None]] = {
    "aes": ("aes", 128),
    "aes128": ("aes", 128),
    "aes192": ("aes", 192),
    "aes256": ("aes", 256),
    "3des": ("3des", None),
}
_INTEGRITY = {"md5": "md5", "sha": "sha1", "sha1": "sha1", "sha256": "sha256",
              "sha384": "sha384", "sha512": "sha512"}  # fmt: skip
_DH_GROUPS = {"modp1024": 2, "modp1536": 5, "modp2048": 14, "modp3072": 15,
              "modp4096": 16, "ecp256": 19, "ecp384": 20}  # fmt: skip


def parse_proposal(text: str, kind: str) -> CryptoProposal:
    """Parse "aes256-sha1-modp2048" (kind "ike": DH group required) or
    "aes256-sha1[-modp2048]" (kind "esp": the group is the PFS group). ValueError if bad."""
    tokens = text.lower().split("-")
    sizes = (3,) if kind == "ike" else (2, 3)
    if len(tokens) not in sizes:
        form = "cipher-hash-dhgroup" if kind == "ike" else "cipher-integrity[-dhgroup]"
        raise ValueError(f"{_show(text)} is not of the form {form} (e.g. 'aes256-sha1-modp2048')")
    cipher = _CIPHERS.get(tokens[0])
    if cipher is None:
        raise ValueError(f"unknown cipher '{tokens[0]}' (known: {', '.join(_CIPHERS)})")
    integrity = _INTEGRITY.get(tokens[1])
    if integrity is None:
        raise ValueError(f"unknown hash '{tokens[1]}' (known: {', '.join(_INTEGRITY)})")
    group: int | None = None
    if len(tokens) == 3:
        group = _DH_GROUPS.get(tokens[2])
        if group is None:
            raise ValueError(f"unknown DH group '{tokens[2]}' (known: {', '.join(_DH_GROUPS)})")
    return CryptoProposal(text, cipher[0], cipher[1], integrity, group)


# -- sections

_TOP_KEYS = frozenset(
    {"concentrator", "nat_transparency", "admin", "limits", "log", "group", "user",
     "lan_to_lan", "radius", "dataplane"}
)
_CONCENTRATOR_KEYS = frozenset({
    "public_address", "private_networks", "tunnel_interface", "allow_legacy_crypto",
    "ike_port", "natt_port", "ike_lifetime", "ipsec_lifetime", "dpd_interval", "dpd_retries",
    "natt_keepalive", "fragmentation", "workers", "banner", "default_domain", "dns", "nbns",
    "xauth_timeout",
})  # fmt: skip
_NATT_KEYS = frozenset({"ipsec_over_natt", "ipsec_over_udp", "ipsec_over_udp_port",
                        "ipsec_over_tcp", "ipsec_over_tcp_ports"})  # fmt: skip
_ADMIN_KEYS = frozenset({"socket", "listen", "user", "tls_cert", "tls_key"})
_ADMIN_USER_KEYS = frozenset({"name", "password_hash", "role"})
ADMIN_ROLES = ("admin", "monitor")
_LIMITS_KEYS = frozenset({
    "max_half_open_per_source", "max_half_open_total", "max_half_open_verified_per_source",
    "max_sessions", "xauth_max_failures",
    "xauth_max_failures_per_source", "xauth_lockout_seconds", "xauth_retry_delay",
    "xauth_max_retry_delay", "xauth_tracked_entries", "lost_address_hold", "dh_pool_size",
})  # fmt: skip
_LOG_KEYS = frozenset({"console_severity", "keep_severity", "store", "buffer_events",
                       "store_max_events", "classes"})
_LOG_CLASS_KEYS = frozenset({"console_severity", "keep_severity"})
SIMULTANEOUS_LOGINS_MAX = 2_147_483_647  # the VPN 3000's and the ASA's upper bound
_GROUP_KEYS = frozenset({
    "name", "psk", "psk_file", "address_pool", "reserve_first_address", "dns", "nbns",
    "split_include", "split_dns", "default_domain", "banner", "pfs", "save_password",
    "ike_proposals", "esp_proposals", "simultaneous_logins",
    "xauth",
})  # fmt: skip
_USER_KEYS = frozenset({"name", "password", "password_hash", "group"})
_L2L_KEYS = frozenset({"name", "peer", "peer_id", "psk", "psk_file", "local_networks",
                       "remote_networks", "ipsec_over_natt", "ike_proposals",
                       "esp_proposals"})  # fmt: skip
# issue 14: certificates ([pki]) and the phase 1 methods of a group (`auth`)
_TOP_KEYS = _TOP_KEYS | {"pki"}
_GROUP_KEYS = _GROUP_KEYS | {"auth"}
# issue 14: a group's own RADIUS servers, [[group.radius_server]]
_GROUP_KEYS = _GROUP_KEYS | {"radius_server"}
_PKI_KEYS = frozenset({"ca", "certificate", "key", "crls"})
AUTH_MODES = ("psk", "hybrid", "rsa")
_FRAGMENTATION = ("none", "before-encryption", "clear-df")
_BANNER_MAX = 4000
_DAY = 86400


def _build(ctx: _Context, top: _Table) -> Config:
    if not top.has("concentrator"):
        ctx.fail((), "missing required table [concentrator]")
    conc_table = top.sub("concentrator", _CONCENTRATOR_KEYS)
    conc = _concentrator(conc_table)
    natt = _nat_transparency(top.sub("nat_transparency", _NATT_KEYS), conc)
    admin = _admin(top.sub("admin", _ADMIN_KEYS))
    limits = _limits(top.sub("limits", _LIMITS_KEYS))
    log = _log(top.sub("log", _LOG_KEYS))
    groups = _groups(ctx, top.sub_array("group", _GROUP_KEYS), conc)
    users = _users(ctx, top.sub_array("user", _USER_KEYS), groups)
    l2l = _lan_to_lans(top.sub_array("lan_to_lan", _L2L_KEYS), conc, groups)
    radius = _radius(top.sub("radius", _RADIUS_KEYS), groups)
    pki = _pki(top.sub("pki", _PKI_KEYS)) if top.has("pki") else None
    _check_groups_have_pki(ctx, groups, pki)
    dataplane = _dataplane(top.sub("dataplane", _DATAPLANE_KEYS),
                           conc.workers if conc_table.has("workers") else None)
    cluster = _cluster(top.sub("cluster", _CLUSTER_KEYS), conc) if top.has("cluster") else None
    return Config(conc, natt, admin, limits, log, groups, users, ctx.source, l2l, radius, pki,
                  dataplane, cluster)


# issue 17: a member of a load-balancing cluster
_TOP_KEYS = _TOP_KEYS | {"cluster"}
_CLUSTER_KEYS = frozenset({"dsn", "member", "virtual_address", "public_address",
                           "load_balancing", "heartbeat", "member_timeout", "pool_block"})


def _cluster(t: _Table, conc: ConcentratorConfig) -> ClusterConfig:
    """[cluster]: the DSN (a libpq connection string or URI; it may hold a password,
    so it is a Secret), the member's name, the virtual address and the timers."""
    dsn = t.string("dsn", max_len=1000)
    if not dsn.strip():
        t.fail("dsn", "set the PostgreSQL connection string (for example"
                      " 'host=192.168.5.10 dbname=vpnhub user=vpnhub')")
    member = t.string("member", max_len=32)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}", member):
        t.fail("member", f"{_show(member)}: a member name is 1 to 32 letters, digits, '_', '.'"
                         " or '-', starting with a letter or digit")
    vip = t.address("virtual_address")
    public = t.address("public_address", conc.public_address)
    if vip == public:
        t.fail("virtual_address", f"the virtual address {vip} must differ from this member's"
                                  " own public address")
    heartbeat = t.seconds("heartbeat", 2.0, 0.2, 60.0)
    timeout = t.seconds("member_timeout", max(10.0, 3 * heartbeat), 0.6, 600.0)
    if timeout < 3 * heartbeat:
        t.fail("member_timeout", f"{timeout:g} s is less than three heartbeats"
                                 f" ({3 * heartbeat:g} s): a busy member would be declared dead")
    return ClusterConfig(
        dsn=Secret(dsn), member=member, virtual_address=vip, public_address=public,
        load_balancing=t.boolean("load_balancing", True), heartbeat=heartbeat,
        member_timeout=timeout, pool_block=t.integer("pool_block", 26, 16, 30),
    )


def _lan_to_lans(tables: list[_Table], conc: ConcentratorConfig,
                 groups: tuple[GroupConfig, ...]) -> tuple[LanToLanConfig, ...]:
    out: list[LanToLanConfig] = []
    for t in tables:
        name = _check_name(t, "name")
        if any(o.name == name for o in out):
            t.fail("name", f"duplicate lan_to_lan name '{name}'")
        peer = t.address("peer", None) if t.has("peer") else None
        peer_id = t.string("peer_id", "", max_len=255)
        if peer is None and not peer_id:
            t.fail("peer", "set the peer's address, or peer_id for a peer with a dynamic"
                           " address (Aggressive Mode)")
        if peer is not None and any(o.peer == peer for o in out):
            t.fail("peer", f"{peer} is already the peer of another lan_to_lan")
        local = t.network_list("local_networks")
        remote = t.network_list("remote_networks")
        assert local is not None and remote is not None
        if not local or not remote:
            t.fail("local_networks" if not local else "remote_networks",
                   "list at least one network")
        for net in remote:
            for g in groups:
                if net.overlaps(g.address_pool):
                    t.fail("remote_networks", f"{net} overlaps group {g.name}'s address_pool")
        out.append(LanToLanConfig(
            name=name, psk=_group_psk(t), local_networks=local, remote_networks=remote,
            peer=peer, peer_id=peer_id, ipsec_over_natt=t.boolean("ipsec_over_natt", True),
            ike_proposals=_proposals(t, "ike_proposals", "ike", conc),
            esp_proposals=_proposals(t, "esp_proposals", "esp", conc)))
    return tuple(out)


def _concentrator(t: _Table) -> ConcentratorConfig:
    public = t.address("public_address")
    if public.is_unspecified or public.is_multicast or public == ipaddress.IPv4Address(2**32 - 1):
        t.fail("public_address", f"{public} cannot be a concentrator's public address")
    private = t.network_list("private_networks")
    assert private is not None
    if not private:
        t.fail("private_networks", "list at least one network clients may reach")
    ifname = t.string("tunnel_interface", "vpnhub0", max_len=15)
    if not ifname or ifname in (".", "..") or re.search(r"[\s/:]", ifname):
        t.fail("tunnel_interface", f"{_show(ifname)} is not a valid interface name")
    ike_port = t.integer("ike_port", 500, 1, 65535)
    natt_port = t.integer("natt_port", 4500, 1, 65535)
    if ike_port == natt_port:
        t.fail("natt_port", f"must differ from ike_port ({ike_port})")
    ike_lifetime = t.integer("ike_lifetime", 86400, 10, 30 * _DAY)
    ipsec_lifetime = t.integer("ipsec_lifetime", 28800, 10, 30 * _DAY)
    banner = t.string("banner", "", max_len=_BANNER_MAX)
    return ConcentratorConfig(
        public_address=public,
        private_networks=private,
        tunnel_interface=ifname,
        allow_legacy_crypto=t.boolean("allow_legacy_crypto", False),
        ike_port=ike_port,
        natt_port=natt_port,
        ike_lifetime=ike_lifetime,
        ipsec_lifetime=ipsec_lifetime,
        dpd_interval=t.integer("dpd_interval", 30, 0, 3600),
        dpd_retries=t.integer("dpd_retries", 5, 1, 100),
        xauth_timeout=t.integer("xauth_timeout", 60, 5, 600),
        natt_keepalive=t.integer("natt_keepalive", 20, 0, 3600),
        fragmentation=t.choice("fragmentation", "before-encryption", _FRAGMENTATION),
        workers=_workers(t),
        banner=banner,
        default_domain=_check_domain(t, "default_domain", t.string("default_domain", "")),
        dns=t.address_list("dns", ()),
        nbns=t.address_list("nbns", ()),
    )


def _nat_transparency(t: _Table, conc: ConcentratorConfig) -> NatTransparencyConfig:
    udp_port = t.integer("ipsec_over_udp_port", 10000, 1, 65535)
    if udp_port in (conc.ike_port, conc.natt_port):
        # The document's step 2: move IPsec over UDP off the NAT-T port.
        t.fail("ipsec_over_udp_port", f"{udp_port} is used by IKE or NAT-T; choose another port")
    ports_raw = t.array("ipsec_over_tcp_ports", [10000])
    assert ports_raw is not None
    if not 1 <= len(ports_raw) <= 10:
        t.fail("ipsec_over_tcp_ports", "list 1 to 10 TCP ports")
    ports: list[int] = []
    for i, port in enumerate(ports_raw):
        if isinstance(port, bool) or not isinstance(port, int):
            t.fail("ipsec_over_tcp_ports", f"expected an integer, got {_type_name(port)}", i)
        if not 1 <= port <= 65535:
            t.fail("ipsec_over_tcp_ports", f"{port} is out of range (1..65535)", i)
        if port in ports:
            t.fail("ipsec_over_tcp_ports", f"port {port} is listed twice", i)
        ports.append(port)
    return NatTransparencyConfig(
        ipsec_over_natt=t.boolean("ipsec_over_natt", False),
        ipsec_over_udp=t.boolean("ipsec_over_udp", False),
        ipsec_over_udp_port=udp_port,
        ipsec_over_tcp=t.boolean("ipsec_over_tcp", False),
        ipsec_over_tcp_ports=tuple(ports),
    )


def _parse_listen(t: _Table) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    text = t.string("listen", "127.0.0.1:8443")
    m = re.fullmatch(
        r"\[([^\]]+)\](?::(\d{1,5}))?|([^:\[\]]+)(?::(\d{1,5}))?|([0-9A-Fa-f:]+)", text
    )
    if m is None:
        t.fail("listen", f"{_show(text)} is not 'address', 'address:port' or '[ipv6]:port'")
    host = m.group(1) or m.group(3) or m.group(5)
    port_text = m.group(2) or m.group(4)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        t.fail("listen", f"{_show(host)} is not an IP address")
    port = int(port_text) if port_text else 8443
    if not 1 <= port <= 65535:
        t.fail("listen", f"port {port} is out of range (1..65535)")
    return address, port


def _admin(t: _Table) -> AdminConfig:
    address, port = _parse_listen(t)
    users: list[AdminUserConfig] = []
    for u in t.sub_array("user", _ADMIN_USER_KEYS):
        name = _check_name(u, "name")
        if any(existing.name == name for existing in users):
            u.fail("name", f"duplicate admin user name {_show(name)}")
        users.append(AdminUserConfig(name, _password_hash(u),
                                     u.choice("role", "admin", ADMIN_ROLES)))
    socket = t.path_value("socket", AdminConfig.socket)
    if socket is None:
        t.fail("socket", "must not be empty")
    cert = t.path_value("tls_cert", None)
    key = t.path_value("tls_key", None)
    if (cert is None) != (key is None):
        t.fail("tls_key" if key is None else "tls_cert",
               "set both tls_cert and tls_key (HTTPS), or neither (plain HTTP)")
    for name, path in (("tls_cert", cert), ("tls_key", key)):
        if path is not None and not path.is_file():
            t.fail(name, f"no such file: {_show(str(path))}")
    return AdminConfig(socket, address, port, tuple(users), cert, key)


def _limits(t: _Table) -> LimitsConfig:
    per_source = t.integer("max_half_open_per_source", 32, 1, 1_000_000)
    total = t.integer("max_half_open_total", 4096, 1, 1_000_000)
    if per_source > total:
        t.fail("max_half_open_per_source", f"{per_source} exceeds max_half_open_total ({total})")
    delay = t.seconds("xauth_retry_delay", 1.0, 0.0, 60.0)
    max_delay = t.seconds("xauth_max_retry_delay", 30.0, 0.0, 600.0)
    if max_delay < delay:
        t.fail("xauth_max_retry_delay", f"must be at least xauth_retry_delay ({delay:g})")
    return LimitsConfig(
        max_half_open_per_source=per_source,
        max_half_open_total=total,
        max_half_open_verified_per_source=t.integer("max_half_open_verified_per_source", 64,
                                                    1, 1_000_000),
        max_sessions=t.integer("max_sessions", 10000, 1, 1_000_000),
        xauth_max_failures=t.integer("xauth_max_failures", 5, 1, 1000),
        xauth_max_failures_per_source=t.integer("xauth_max_failures_per_source", 25, 0, 100_000),
        xauth_lockout_seconds=t.integer("xauth_lockout_seconds", 300, 0, _DAY),
        xauth_retry_delay=delay,
        xauth_max_retry_delay=max_delay,
        xauth_tracked_entries=t.integer("xauth_tracked_entries", 4096, 16, 10_000_000),
        lost_address_hold=t.integer("lost_address_hold", 600, 0, _DAY),
        dh_pool_size=(t.integer("dh_pool_size", 0, 0, 65536) if t.has("dh_pool_size")
                      else None),
    )


def _log(t: _Table) -> LogConfig:
    classes = t.sub("classes", frozenset(CLASSES))
    per_class = []
    for name in sorted(classes.data):
        c = classes.sub(name, _LOG_CLASS_KEYS)
        console = c.integer("console_severity", 0, 0, 13) if c.has("console_severity") else None
        keep = c.integer("keep_severity", 0, 0, 13) if c.has("keep_severity") else None
        per_class.append(LogClassConfig(name, console, keep))
    return LogConfig(
        console_severity=t.integer("console_severity", 3, 1, 13),
        keep_severity=t.integer("keep_severity", 5, 1, 13),
        store=t.path_value("store", LogConfig.store),
        buffer_events=t.integer("buffer_events", 2048, 16, 10_000_000),
        store_max_events=t.integer("store_max_events", 100_000, 100, 100_000_000),
        classes=tuple(per_class),
    )


def _password_hash(t: _Table) -> Secret:
    encoded = t.string("password_hash", max_len=1024)
    try:
        parse_password_hash(encoded)
    except PasswordHashError as exc:
        t.fail("password_hash", str(exc))  # messages never quote the hash
    return Secret(encoded)


def _group_psk(t: _Table, why: str = "every group needs a pre-shared key") -> Secret:
    if t.has("psk") and t.has("psk_file"):
        t.fail("psk_file", "set either psk or psk_file, not both")
    if t.has("psk_file"):
        path = t.path_value("psk_file", None)
        if path is None:
            t.fail("psk_file", "must not be empty")
        try:
            psk = path.read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, ValueError) as exc:  # ValueError: not UTF-8, or a NUL in the path
            detail = "not UTF-8 text or a bad path"
            if isinstance(exc, OSError):
                detail = exc.strerror or str(exc)
            t.fail("psk_file", f"cannot read {_show(str(path))}: {detail}")
        key = "psk_file"
    elif t.has("psk"):
        psk = t.string("psk", max_len=1024)
        key = "psk"
    else:
        t.fail("psk", f"missing 'psk' (or 'psk_file'): {why}")
    if not psk:
        t.fail(key, "the pre-shared key is empty")
    return Secret(psk)


def _proposals(
    t: _Table, key: str, kind: str, conc: ConcentratorConfig
) -> tuple[CryptoProposal, ...] | None:
    texts = t.string_list(key, ())
    if not t.has(key):
        return None
    if not texts:
        t.fail(key, "empty list; leave the key out to use the default proposals")
    out: list[CryptoProposal] = []
    for i, text in enumerate(texts):
        try:
            proposal = parse_proposal(text, kind)
        except ValueError as exc:
            t.fail(key, str(exc), i)
        if proposal.legacy and not conc.allow_legacy_crypto:
            t.fail(key, f"{_show(text)} uses legacy crypto (3DES, MD5 or DH group 2 or 5); "
                        "set concentrator.allow_legacy_crypto = true to allow it", i)  # fmt: skip
        if any(proposal.same_algorithms(earlier) for earlier in out):
            t.fail(key, f"{_show(text)} is listed twice", i)
        out.append(proposal)
    return tuple(out)


def _group(t: _Table, conc: ConcentratorConfig) -> GroupConfig:
    name = _check_name(t, "name")
    auth = _group_auth(t)
    psk = _optional_group_psk(t, auth)
    xauth = t.choice("xauth", "local", _XAUTH_BACKENDS)
    pool = t.network("address_pool")
    if pool.prefixlen > 30:
        t.fail("address_pool", f"{pool} is too small; use a /30 or larger")
    split = t.network_list("split_include", None)
    if split is not None and not split:
        t.fail("split_include", "empty list; leave the key out to tunnel all traffic")
    split_dns = t.string_list("split_dns", ())
    for i, domain in enumerate(split_dns):
        if not domain:
            t.fail("split_dns", "empty domain name", i)
        _check_domain(t, "split_dns", domain)
    default_domain = t.string("default_domain", conc.default_domain)
    return GroupConfig(
        name=name,
        psk=psk,
        address_pool=pool,
        reserve_first_address=t.boolean("reserve_first_address", False),
        dns=t.address_list("dns", conc.dns),
        nbns=t.address_list("nbns", conc.nbns),
        split_include=split,
        split_dns=split_dns,
        default_domain=_check_domain(t, "default_domain", default_domain),
        banner=t.string("banner", conc.banner, max_len=_BANNER_MAX),
        pfs=t.boolean("pfs", False),
        save_password=t.boolean("save_password", False),
        ike_proposals=_proposals(t, "ike_proposals", "ike", conc),
        esp_proposals=_proposals(t, "esp_proposals", "esp", conc),
        simultaneous_logins=t.integer("simultaneous_logins", 3, 0, SIMULTANEOUS_LOGINS_MAX),
        xauth=xauth,
        auth=auth,
        radius_servers=_group_radius_servers(t, xauth),
    )


def _optional_group_psk(t: _Table, auth: tuple[str, ...]) -> Secret | None:
    """A group that allows only "rsa" / "hybrid" has no use for a key (issue 14): the
    signature SKEYID takes no PSK (RFC 2409 5) and vpnc's hybrid PRESHARED_KEY_HASH
    notify is not checked. A key it does have is kept (a migration adds "psk" back)."""
    if "psk" in auth:
        return _group_psk(t, 'auth allows "psk" (the default): set the group\'s'
                             ' pre-shared key')
    if t.has("psk") or t.has("psk_file"):
        return _group_psk(t)
    return None


# --------------------------------------------------------------- certificates (issue 14)
def _group_auth(t: _Table) -> tuple[str, ...]:
    modes = t.string_list("auth", ("psk",))
    if not modes:
        t.fail("auth", f"empty list; allow at least one of {', '.join(AUTH_MODES)}")
    for i, mode in enumerate(modes):
        if mode not in AUTH_MODES:
            t.fail("auth", f"unknown method {_show(mode)}; one of {', '.join(AUTH_MODES)}", i)
        if mode in modes[:i]:
            t.fail("auth", f"{_show(mode)} is listed twice", i)
    return modes


def _pki(t: _Table) -> PkiConfig:
    if not t.has("ca"):
        t.fail("ca", "missing 'ca': the PEM bundle of the CAs that sign clients' certificates")
    ca = _readable(t, "ca")
    certificate = _readable(t, "certificate") if t.has("certificate") else None
    key = _readable(t, "key") if t.has("key") else None
    if (certificate is None) != (key is None):
        missing = "key" if key is None else "certificate"
        t.fail(missing, f"missing '{missing}': the certificate and its key go together")
    crls: list[Path] = []
    for i in range(len(t.string_list("crls", ()))):
        crls.append(_readable(t, "crls", i))
    return PkiConfig(ca=ca, certificate=certificate, key=key, crls=tuple(crls))


def _readable(t: _Table, key: str, index: int | None = None) -> Path:
    """A file the concentrator can read; X.509 parsing is vpnhub.pki's (a leaf package)."""
    if index is None:
        path = t.path_value(key, None)
        where: tuple[int, ...] = ()
    else:
        raw = t.string_list(key, ())[index]
        path = t.ctx.base_dir / raw if raw else None
        where = (index,)
    if path is None:
        t.fail(key, "must not be empty", *where)
    try:
        with path.open("rb") as f:
            f.read(1)
    except (OSError, ValueError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else "bad path"
        t.fail(key, f"cannot read {_show(str(path))}: {detail}", *where)
    return path


def _check_groups_have_pki(ctx: _Context, groups: tuple[GroupConfig, ...],
                           pki: PkiConfig | None) -> None:
    for i, g in enumerate(groups):
        signed = [m for m in g.auth if m != "psk"]
        if signed and (pki is None or pki.certificate is None):
            ctx.fail(("group", i, "auth"), f"{_show(signed[0])} needs the concentrator's"
                     " certificate: set [pki] ca, certificate and key")


def _groups(
    ctx: _Context, tables: list[_Table], conc: ConcentratorConfig
) -> tuple[GroupConfig, ...]:
    groups: list[GroupConfig] = []
    for t in tables:
        group = _group(t, conc)
        _check_group_against(ctx, t, group, groups, conc)
        groups.append(group)
    return tuple(groups)


def _check_group_against(
    ctx: _Context,
    t: _Table,
    group: GroupConfig,
    earlier: list[GroupConfig],
    conc: ConcentratorConfig,
) -> None:
    pool = group.address_pool
    for j, other in enumerate(earlier):
        if other.name == group.name:
            line = ctx.line(("group", j))
            t.fail("name", f"duplicate group name '{group.name}' (first defined at line {line})")
        if pool.overlaps(other.address_pool):
            line = ctx.line(("group", j, "address_pool"))
            t.fail("address_pool", f"{pool} overlaps group[{j}].address_pool "
                                   f"{other.address_pool} (line {line})")  # fmt: skip
    for i, net in enumerate(conc.private_networks):
        # A /0 "private network" means full tunnelling to everything; pools are
        # more specific routes then, so only real networks count as overlaps.
        if net.prefixlen > 0 and pool.overlaps(net):
            line = ctx.line(("concentrator", "private_networks", i))
            t.fail("address_pool", f"{pool} overlaps concentrator.private_networks[{i}] "
                                   f"{net} (line {line})")  # fmt: skip
    if conc.public_address in pool:
        line = ctx.line(("concentrator", "public_address"))
        t.fail("address_pool", f"{pool} contains concentrator.public_address "
                               f"{conc.public_address} (line {line})")  # fmt: skip


def _users(
    ctx: _Context, tables: list[_Table], groups: tuple[GroupConfig, ...]
) -> tuple[UserConfig, ...]:
    users: list[UserConfig] = []
    first_line: dict[str, int] = {}
    for i, t in enumerate(tables):
        name = _check_name(t, "name")
        if name in first_line:
            t.fail(
                "name",
                f"duplicate user name {_show(name)} (first defined at line {first_line[name]})",
            )
        first_line[name] = ctx.line(("user", i))
        group = t.string("group", max_len=64)
        if not any(g.name == group for g in groups):
            known = ", ".join(g.name for g in groups) or "none defined"
            t.fail("group", f"no [[group]] named {_show(group)} (groups: {known})")
        if t.has("password") == t.has("password_hash"):
            t.fail(
                "password", f"user {_show(name)} needs exactly one of 'password' or 'password_hash'"
            )
        password: Secret | None = None
        hashed: Secret | None = None
        if t.has("password"):
            password = Secret(t.string("password", max_len=1024))
            if not password:
                t.fail("password", "the password is empty")
        else:
            hashed = _password_hash(t)
        users.append(UserConfig(name=name, group=group, password=password, password_hash=hashed))
    return tuple(users)


# -- RADIUS (issue 14)

_XAUTH_BACKENDS = ("local", "radius")
_RADIUS_KEYS = frozenset({"server", "nas_identifier", "nas_ip_address", "accounting",
                          "interim_interval", "dae_port", "dae_client"})  # fmt: skip
_RADIUS_SERVER_KEYS = frozenset({"address", "secret", "auth_port", "acct_port", "timeout",
                                 "retries", "require_message_authenticator"})  # fmt: skip
_RADIUS_DAE_KEYS = frozenset({"address", "secret"})


def _radius_secret(t: _Table) -> Secret:
    secret = t.string("secret", max_len=128)
    if not secret:
        t.fail("secret", "the shared secret is empty (RFC 2865 3: it must not be)")
    return Secret(secret)


def _radius_server(t: _Table) -> RadiusServerConfig:
    return RadiusServerConfig(
        address=t.address("address"), secret=_radius_secret(t),
        auth_port=t.integer("auth_port", 1812, 1, 65535),
        acct_port=t.integer("acct_port", 1813, 1, 65535),
        timeout=t.seconds("timeout", 3.0, 0.1, 60.0),
        retries=t.integer("retries", 2, 0, 10),
        require_message_authenticator=t.boolean("require_message_authenticator", True))


def _group_radius_servers(t: _Table, xauth: str) -> tuple[RadiusServerConfig, ...]:
    """[[group.radius_server]]: the same keys as [[radius.server]]; only for a group
    whose users RADIUS checks (anything else is a mistake worth saying)."""
    servers = tuple(_radius_server(s) for s in t.sub_array("radius_server",
                                                           _RADIUS_SERVER_KEYS))
    if servers and xauth != "radius":
        t.fail("radius_server", "this group's users are checked locally (xauth ="
                                f" {_show(xauth)}): set xauth = \"radius\" or remove it")
    return servers


def _radius(t: _Table, groups: tuple[GroupConfig, ...]) -> RadiusConfig:
    servers = tuple(_radius_server(s) for s in t.sub_array("server", _RADIUS_SERVER_KEYS))
    users = [g.name for g in groups if g.xauth == "radius" and not g.radius_servers]
    if users and not servers:
        t.fail("server", f"group(s) {', '.join(users)} use xauth = \"radius\" without"
                         " servers of their own ([[group.radius_server]]): add at least"
                         " one [[radius.server]]")
    dae = tuple(RadiusDaeClientConfig(d.address("address"), _radius_secret(d))
                for d in t.sub_array("dae_client", _RADIUS_DAE_KEYS))
    nas_ip = t.address("nas_ip_address", None) if t.has("nas_ip_address") else None
    return RadiusConfig(
        servers=servers, nas_identifier=t.string("nas_identifier", "vpnhub", max_len=253),
        nas_ip_address=nas_ip, accounting=t.boolean("accounting", True),
        interim_interval=t.integer("interim_interval", 600, 0, _DAY),
        dae_port=t.integer("dae_port", 3799, 1, 65535), dae_clients=dae)
