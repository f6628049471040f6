"""`vpnhub lab`: the document's network, live, from the command line.

    vpnhub lab up [--clients N] [--client vpnc|strongswan|vpnhub] [--suite legacy|modern]
                  [--nat-t on|off]
    vpnhub lab status | console | xlate | logs [HOST] | exec HOST -- CMD | scenario NAME | down

``up`` builds the namespaces of ``topology.Topology`` (prefix ``vhl``), writes
the concentrator's configuration, starts ``vpnhub serve``, the LAN host's
HTTP and iperf3 servers and the clients (``peers``), and returns to the shell
once every client is connected. What keeps running belongs to a small lab
daemon (``python -m vpnhub.lab.labctl --daemon SPEC``) started in its own
session: it is the parent of every lab process (so they are reaped, and
stopped in order: clients first, so that they send their DELETEs), and
``down`` stops it. Its state is ``lab.json`` in the run directory
``/tmp/vpnhub-lab/<prefix>``; the process records (PID + start time) are
``procs``' under ``/run/vpnhub-lab/<prefix>``, so ``down`` (or the next
``up`` after a crash) signals only processes the lab started.

Everything of a lab is named after its prefix: namespaces ``<prefix>-<host>``
with their links, routes and nft tables inside, the run directory and the
process records. Scenarios build their own labs under other prefixes
(``vhs`` + hex digits) or reuse the running one (``scenarios``).

The parser of ``vpnhub lab`` and its dispatch are in ``commands``, above both
this module and ``scenarios`` (which builds on this one).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vpnhub.admintext import format_sessions
from vpnhub.lab import cluster, peers, procs
from vpnhub.lab.cluster import Keepalived, Postgres
from vpnhub.lab.console import (
    ADMIN_NAME,
    ConsoleForwarder,
    ConsoleLogin,
    load_login,
    new_login,
    save_login,
)
from vpnhub.lab.peers import GROUP_ID, GROUP_PSK, Charon, VpncClient, _write_private
from vpnhub.lab.procs import Proc
from vpnhub.lab.topology import (
    CLIENT_LAN,
    CONC_PRIVATE,
    CONC_PUBLIC,
    DB_ADDRESS,
    DEFAULT_PREFIX,
    LAN_HOST,
    MAX_CONCENTRATORS,
    PAT_INSIDE,
    PAT_OUTSIDE,
    POOL,
    PREFIX_RE,
    PRIVATE_LAN,
    VIRTUAL_ADDRESS,
    Host,
    LabError,
    LanServices,
    NatEntry,
    Topology,
    cleanup,
    foreign,
    leftovers,
    list_netns,
    wait_until,
)
from vpnhub.lab.xlate import format_xlate

RUN_ROOT = Path(os.environ.get("VPNHUB_LAB_RUN", "/tmp/vpnhub-lab"))
STATE_FILE = "lab.json"
DAEMON_LOG = "labd.log"
CLIENT_KINDS = ("vpnc", "strongswan", "vpnhub")
SUITE_NAMES = ("legacy", "modern")
MAX_CLIENTS = peers.MAX_USERS
TUNNEL_INTERFACE = "vpnhub0"  # the concentrator's TUN, inside its namespace
UP_TIMEOUT = 120.0
CONNECT_TIMEOUT = 30.0
USABLE_TIMEOUT = 10.0
# a cluster lab (--concentrators N > 1): fast heartbeats, so that the master's view
# of the members' load is fresh when the next client comes; a session limit low
# enough that one session is more than the 1 % the balancing rule waits for
CLUSTER_HEARTBEAT = 0.5
CLUSTER_MEMBER_TIMEOUT = 3.0
CLUSTER_MAX_SESSIONS = 50
VPNC_DPD_IDLE = 10  # vpnc's minimum: a dead member is noticed after 10 s + 6 x 5 s


def run_dir_for(prefix: str) -> Path:
    return RUN_ROOT / prefix


# ------------------------------------------------------------------------------ the plan
@dataclass(frozen=True)
class LabSpec:
    """What a lab is built with (``up``'s options; scenarios set the rest)."""

    prefix: str = DEFAULT_PREFIX
    clients: int = 2
    concentrators: int = 1  # > 1: a cluster (members m1 .., PostgreSQL, keepalived)
    client: str = "vpnc"
    suite: str = "modern"
    natt: bool = True
    ike_lifetime: int = 86400
    ipsec_lifetime: int = 28800
    wrong_psk: tuple[str, ...] = ()  # roles whose client uses a wrong group PSK
    connect: bool = True  # False: start no client (the scenario starts them)
    spare_clients: int = 0  # hosts c<clients+1> ..: users, never connected by the lab

    def check(self) -> None:
        if not PREFIX_RE.match(self.prefix):
            raise ValueError(f"lab prefix must match {PREFIX_RE.pattern}: {self.prefix!r}")
        if not 1 <= self.clients + self.spare_clients <= MAX_CLIENTS:
            raise ValueError(f"--clients must be 1 .. {MAX_CLIENTS} (users vpnuser1 .. "
                             f"vpnuser{MAX_CLIENTS}), not {self.clients}")
        if self.client not in CLIENT_KINDS:
            raise ValueError(f"--client must be one of {', '.join(CLIENT_KINDS)}")
        if not 1 <= self.concentrators <= MAX_CONCENTRATORS:
            raise ValueError(f"--concentrators must be 1 .. {MAX_CONCENTRATORS}")
        if self.concentrators > 1 and self.client != "vpnc":
            raise ValueError("a cluster lab (--concentrators > 1) runs vpnc clients (DPD and"
                             " a reconnect loop bring them back after a member fails)")
        if self.suite not in SUITE_NAMES:
            raise ValueError(f"--suite must be one of {', '.join(SUITE_NAMES)}")
        if not 10 <= self.ipsec_lifetime <= 2592000:
            raise ValueError("--ipsec-lifetime must be 10 .. 2592000 seconds")

    @property
    def is_cluster(self) -> bool:
        return self.concentrators > 1

    def describe(self) -> str:
        n = self.clients
        text = (f"{n} {self.client} client{'s' if n != 1 else ''}, suite {self.suite},"
                f" NAT-T {'on' if self.natt else 'off'}")
        if self.is_cluster:
            text = f"a cluster of {self.concentrators} concentrators, " + text
        if self.ipsec_lifetime != 28800:
            text += f", IPsec lifetime {self.ipsec_lifetime} s"
        return text

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["wrong_psk"] = list(self.wrong_psk)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LabSpec:
        known = {f for f in cls.__dataclass_fields__}
        kw = {k: v for k, v in d.items() if k in known}
        kw["wrong_psk"] = tuple(kw.get("wrong_psk", ()))
        return cls(**kw)

    def same_lab(self, other: LabSpec) -> bool:
        """Would `other` build the same lab (what ``up`` compares with a running one)?"""
        keys = ("clients", "concentrators", "client", "suite", "natt", "ike_lifetime",
                "ipsec_lifetime")
        return all(getattr(self, k) == getattr(other, k) for k in keys)


@dataclass(frozen=True)
class ClientSuite:
    """How a suite name becomes concentrator and client settings for one client kind."""

    allow_legacy: bool
    note: str
    ike_proposals: tuple[str, ...] = ()  # the group's; () = the engine's defaults
    esp_proposals: tuple[str, ...] = ()
    dh_group: int = 14  # vpnc --dh / the vpnhub profile's dh_group
    strongswan: str = "aes256-sha1"  # peers.SUITES key


DOCUMENT_SUITE = ClientSuite(True, "3DES/MD5/DH group 2, the document's",
                             ("3des-md5-modp1024",), ("3des-md5",), 2, "3des-md5")
SUITE_PLANS: dict[tuple[str, str], ClientSuite] = {
    ("vpnc", "legacy"): DOCUMENT_SUITE,
    ("strongswan", "legacy"): DOCUMENT_SUITE,
    ("vpnhub", "legacy"): DOCUMENT_SUITE,
    ("vpnc", "modern"): ClientSuite(False, "vpnhub's defaults: AES, SHA, DH group 14"),
    ("vpnhub", "modern"): ClientSuite(False, "vpnhub's defaults: AES, SHA, DH group 14"),
    # the strongSwan lab suites (peers.SUITES) all use modp1024
    ("strongswan", "modern"): ClientSuite(
        True, "AES-256/SHA1 with DH group 2 (the strongSwan lab suites use modp1024)",
        ("aes256-sha1-modp1024",), ("aes256-sha1",), 2, "aes256-sha1"),
}


def suite_plan(spec: LabSpec) -> ClientSuite:
    return SUITE_PLANS[(spec.client, spec.suite)]


def _toml_list(items: Sequence[str]) -> str:
    return "[" + ", ".join(f'"{x}"' for x in items) + "]"


def concentrator_toml(spec: LabSpec, run_dir: Path, admin_hash: str | None = None,
                      member: Host | None = None, dsn: str = "") -> str:
    """The generated configuration of ``vpnhub serve`` (docs/CONFIG.md); `admin_hash`:
    the password hash of the manager account `admin` (console.py). `member`: a
    cluster member's, its files in run_dir/<member>, `[cluster]` with `dsn`."""
    plan = suite_plan(spec)
    files = run_dir / member.role if member is not None else run_dir
    public = member.addr if member is not None else CONC_PUBLIC
    clustered = ""
    if member is not None:
        clustered = textwrap.dedent(f"""
            [limits]
            max_sessions = {CLUSTER_MAX_SESSIONS}

            [cluster]
            # member {member.role} of {spec.concentrators}; keepalived moves the virtual address
            dsn = "{dsn}"
            member = "{member.role}"
            virtual_address = "{VIRTUAL_ADDRESS}"
            public_address = "{member.addr}"
            heartbeat = {CLUSTER_HEARTBEAT}
            member_timeout = {CLUSTER_MEMBER_TIMEOUT}
            """)
    admin = ""
    if admin_hash is not None:
        admin = (f"\n        [[admin.user]]  # the web console's; its password: vpnhub lab console"
                 f'\n        name = "{ADMIN_NAME}"\n        password_hash = "{admin_hash}"\n')
    users = "".join(
        f'\n[[user]]\nname = "vpnuser{n}"\npassword = "{peers.USERS[f"vpnuser{n}"]}"\n'
        f'group = "{GROUP_ID}"\n'
        for n in range(1, spec.clients + spec.spare_clients + 1)
    )
    proposals = ""
    if plan.ike_proposals:
        proposals = (f"ike_proposals = {_toml_list(plan.ike_proposals)}\n"
                     f"esp_proposals = {_toml_list(plan.esp_proposals)}\n")
    return textwrap.dedent(f"""\
        # Generated by `vpnhub lab up` for lab {spec.prefix}: {spec.describe()}.
        # The concentrator of the Cisco note, on documentation addresses.
        [concentrator]
        public_address = "{public}"
        private_networks = ["{PRIVATE_LAN}"]
        tunnel_interface = "{TUNNEL_INTERFACE}"
        allow_legacy_crypto = {str(plan.allow_legacy).lower()}
        ike_lifetime = {spec.ike_lifetime}
        ipsec_lifetime = {spec.ipsec_lifetime}
        dns = ["{LAN_HOST}"]

        [nat_transparency]
        ipsec_over_natt = {str(spec.natt).lower()}

        [admin]
        socket = "{files / 'admin.sock'}"
        {admin}
        [log]
        console_severity = 5
        store = "{files / 'events.log'}"

        [[group]]
        # suite {spec.suite}: {plan.note}
        name = "{GROUP_ID}"
        psk = "{GROUP_PSK}"
        address_pool = "{POOL}"
        dns = ["{LAN_HOST}"]
        split_include = ["{PRIVATE_LAN}"]
        """) + proposals + users + clustered


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def vpnhub_client_problem() -> str | None:
    """Why ``--client vpnhub`` cannot be used (None: ``vpnhub connect`` exists)."""
    cp = subprocess.run([sys.executable, "-m", "vpnhub", "connect", "--help"],
                        capture_output=True, text=True, timeout=30, check=False)
    if cp.returncode == 0:
        return None
    return ("the vpnhub client is not available yet: `python -m vpnhub connect --help`"
            " fails in this tree (it arrives with the client issue); use --client vpnc"
            " (the default) or --client strongswan")


def missing_tools(spec: LabSpec) -> list[str]:
    tools = ["ip", "nft", "conntrack", "iperf3", "ping"]
    if spec.client == "vpnc":
        tools.append("vpnc")
    elif spec.client == "strongswan":
        tools += ["swanctl", peers.CHARON]
    if spec.is_cluster:
        tools += [cluster.KEEPALIVED, "setpriv", "unshare", str(cluster.PG_BIN / "postgres"),
                  str(cluster.PG_BIN / "initdb")]
    missing = [t for t in tools
               if (not os.access(t, os.X_OK) if t.startswith("/") else shutil.which(t) is None)]
    if not Path("/dev/net/tun").exists():
        missing.append("/dev/net/tun")
    return missing


# ------------------------------------------------------------------------------ clients
@dataclass
class LabClient:
    """One VPN client of the lab (vpnc, strongSwan charon or vpnhub) and what we know of it."""

    role: str
    kind: str
    user: str
    tun: str
    log: Path
    proc: Proc
    vpnc: VpncClient | None = None
    charon: Charon | None = None
    status_socket: Path | None = None  # vpnhub connect's
    state: str = "starting"  # starting | connected | usable | failed | exited | stopped
    detail: str = ""
    assigned: str = ""

    def exited(self) -> str | None:
        """Why the client process is gone, or None while it runs."""
        if self.vpnc is not None:
            return self.vpnc.exited()
        rc = self.proc.returncode
        if rc is None:
            return None
        tail = " | ".join(self.proc.log_text().strip().splitlines()[-3:])
        return f"{self.kind} exited with {rc}: {tail}"

    def stop(self) -> None:
        if self.charon is not None:
            self.charon.terminate()
        self.proc.stop(5.0)
        if self.state not in ("failed", "exited"):
            self.state = "stopped"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "user": self.user, "tun": self.tun, "log": str(self.log),
                "state": self.state, "detail": self.detail, "assigned": self.assigned,
                "pid": self.proc.pid,
                "status_socket": str(self.status_socket) if self.status_socket else None}


def vpnhub_profile(plan: ClientSuite, tun: str, psk: str) -> str:
    """A vpnhub client profile (docs/CLIENT-PROFILES.md) for a lab client."""
    return textwrap.dedent(f"""\
        # Generated by `vpnhub lab`: the PC behind the PAT of the Cisco note.
        host = "{CONC_PUBLIC}"
        group = "{GROUP_ID}"
        group_password = "{psk}"
        transparent_tunneling = true
        dh_group = {plan.dh_group}
        allow_legacy = {str(plan.allow_legacy).lower()}
        tunnel_interface = "{tun}"
        no_dns = true
        """)


def client_status(sock: Path) -> dict[str, Any] | None:
    """`vpnhub status --json` of a vpnhub client (None: it does not answer)."""
    return admin_request(sock, {"cmd": "status"})


def _vpnhub_connected(c: LabClient) -> dict[str, Any] | None:
    if why := c.exited():
        raise LabError(f"[{c.role}] {why}")
    assert c.status_socket is not None
    st = client_status(c.status_socket)
    return st if st is not None and st.get("state") == "connected" else None


# ------------------------------------------------------------------------------ the lab
Progress = Callable[[str], None]


def _say(text: str) -> None:
    print(text, flush=True)


class Lab:
    """A lab built and owned by this process: the lab daemon, or a scenario."""

    def __init__(self, spec: LabSpec, *, progress: Progress = _say,
                 owner: str = "daemon") -> None:
        spec.check()
        self.spec = spec
        self.run_dir = run_dir_for(spec.prefix)
        self.topo = Topology(spec.prefix, clients=spec.clients + spec.spare_clients,
                             run_dir=self.run_dir, concentrators=spec.concentrators)
        self.progress = progress
        self.owner = owner
        self.clients: dict[str, LabClient] = {}
        self.conc: Proc | None = None
        self.lan: LanServices | None = None
        self.phase = "building"
        self.error = ""
        self.problems: list[str] = []
        self.created = time.time()
        self.ready_at: float | None = None
        self.login: ConsoleLogin | None = None
        self.console: ConsoleForwarder | None = None
        # a cluster: each member's vpnhub serve and keepalived, and the database
        self.members: dict[str, Proc] = {}
        self.vrrp: dict[str, Keepalived] = {}
        self.pg: Postgres | None = None
        self.killed: dict[str, float] = {}  # member -> when its vpnhub was killed

    # -- paths (a cluster: the first member's; member_paths for each)
    def member_files(self, role: str | None = None) -> Path:
        """Where a concentrator's files are: the run directory, a member's subdirectory."""
        if not self.spec.is_cluster:
            return self.run_dir
        return self.run_dir / (role or self.topo.members[0].role)

    @property
    def config_path(self) -> Path:
        return self.member_files() / "concentrator.toml"

    @property
    def admin_socket(self) -> Path:
        return self.member_files() / "admin.sock"

    @property
    def conc_log(self) -> Path:
        return self.member_files() / "conc.log"

    # -- building
    def _step(self, what: str, fn: Callable[[], str | None]) -> None:
        t0 = time.monotonic()
        self.progress(f"[lab] {what} ...")
        note = fn()
        self.progress(f"[lab] {what}: {note or 'done'} ({time.monotonic() - t0:.1f} s)")

    def build(self) -> None:
        """Namespaces, PAT, concentrator, LAN services (no client yet)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._step(f"namespaces of lab {self.spec.prefix}", self._build_network)
        self.save_state()
        if self.spec.is_cluster:
            self._step("PostgreSQL 15 (the cluster's directory)", self._start_database)
            self._step(f"{self.spec.concentrators} cluster members (vpnhub serve)",
                       self._start_members)
            self.save_state()
            self._step("keepalived (VRRP) on every member", self._start_vrrp)
        else:
            self._step("concentrator (vpnhub serve)", self._start_concentrator)
        if self.owner == "daemon":  # the lab people use (scenarios' labs need no browser)
            self._step("web console", self._start_console)
        self._step("LAN host services", self._start_lan)
        self.save_state()

    def _build_network(self) -> str:
        self.topo.up()
        self._pat_without_esp()
        return (f"{len(self.topo.hosts)} hosts: {', '.join(self.topo.hosts)};"
                f" PAT {PAT_INSIDE} -> {PAT_OUTSIDE} (masquerade random)")

    def _pat_without_esp(self) -> None:
        # Like the document's PIX, a PAT device translates ports; ESP (IP protocol 50)
        # has none, so it cannot be translated and is dropped (the counter proves it).
        # Linux alone would pass ESP of ONE client ("IPsec passthrough").
        ruleset = (
            f"table ip {self.spec.prefix}noesp {{\n"
            "  chain forward {\n"
            "    type filter hook forward priority filter; policy accept;\n"
            f'    meta l4proto esp counter drop comment "PAT: ESP has no ports to translate"\n'
            "  }\n"
            "}\n"
        )
        self.topo.exec(self.topo.pat, ["nft", "-f", "-"], input=ruleset, check=True)

    def _start_concentrator(self) -> str:
        self.login = new_login()
        _write_private(self.config_path, concentrator_toml(self.spec, self.run_dir,
                                                           self.login.password_hash))
        self.conc = self.topo.spawn(
            self.topo.conc, [sys.executable, "-m", "vpnhub", "serve", "--config",
                             str(self.config_path)], self.conc_log, name="vpnhub-serve")
        conc = self.conc

        def answering() -> bool:
            if not conc.alive():
                raise LabError(f"vpnhub serve exited with {conc.returncode}:"
                               f" {conc.log_text()[-800:]}")
            return admin_request(self.admin_socket, {"cmd": "sessions"}) is not None

        wait_until(answering, 20.0, interval=0.1, what="the concentrator's admin socket")
        return (f"pid {conc.pid}, {CONC_PUBLIC} UDP 500/4500, NAT-T"
                f" {'on' if self.spec.natt else 'OFF'}, config {self.config_path}")

    # -- a cluster
    def _start_database(self) -> str:
        self.pg = cluster.new_postgres(self.topo)
        self.pg.init()
        assert self.pg.proc is not None
        return (f"pid {self.pg.proc.pid} in {self.topo.db.netns if self.topo.db else '?'},"
                f" {self.pg.dsn_shown}; data {self.pg.data_dir}")

    def _start_members(self) -> str:
        assert self.pg is not None
        self.login = new_login()
        for m in self.topo.members:
            self.start_member(m.role)
        for m in self.topo.members:
            self._wait_member(m.role)
        return ", ".join(f"{m.role} {m.addr} pid {self.members[m.role].pid}"
                         for m in self.topo.members)

    def start_member(self, role: str) -> Proc:
        """Write member `role`'s configuration and start its vpnhub serve (not waiting)."""
        assert self.pg is not None and self.login is not None
        host = self.topo.host(role)
        files = self.member_files(role)
        conf = _write_private(files / "concentrator.toml", concentrator_toml(
            self.spec, self.run_dir, self.login.password_hash, member=host, dsn=self.pg.dsn))
        proc = self.topo.spawn(host, [sys.executable, "-m", "vpnhub", "serve", "--config",
                                      str(conf)], files / "conc.log", name=f"vpnhub-{role}")
        self.members[role] = proc
        self.killed.pop(role, None)
        if role in self.vrrp:
            cluster.write_tracked_pid(self.vrrp[role].pidfile, proc.pid)
        return proc

    def _wait_member(self, role: str, timeout: float = 30.0) -> None:
        proc, sock = self.members[role], self.member_files(role) / "admin.sock"

        def answering() -> bool:
            if not proc.alive():
                raise LabError(f"vpnhub serve of {role} exited with {proc.returncode}:"
                               f" {proc.log_text()[-800:]}")
            return admin_request(sock, {"cmd": "sessions"}) is not None

        wait_until(answering, timeout, interval=0.1, what=f"{role}'s admin socket")

    def _start_vrrp(self) -> str:
        for m in self.topo.members:
            ka = cluster.start_keepalived(self.topo, m)
            self.vrrp[m.role] = ka
            cluster.write_tracked_pid(ka.pidfile, self.members[m.role].pid)
        master = cluster.wait_master(self.topo, 20.0)
        return f"{VIRTUAL_ADDRESS} on {master} (VRRP master); priorities " + ", ".join(
            f"{m.role} {cluster.TOP_PRIORITY - 10 * i}" for i, m in enumerate(self.topo.members))

    def master(self) -> str | None:
        """The member holding the virtual address now (None: none, or more than one)."""
        held = self.topo.holders()
        return held[0] if len(held) == 1 else None

    def kill_member(self, role: str) -> float:
        """SIGKILL member `role`'s vpnhub (a crash: no goodbye to anyone); returns when."""
        proc = self.members[role]
        proc.popen.send_signal(signal.SIGKILL)
        at = time.monotonic()
        proc.popen.wait(10.0)
        self.killed[role] = time.time()
        self.save_state()
        return at

    def _start_console(self) -> str:
        assert self.login is not None
        self.console = ConsoleForwarder(self.topo.conc.netns)
        save_login(self.run_dir, self.login, self.console.url)
        return (f"{self.console.url} from this machine -> the manager in {self.topo.conc.netns};"
                f" user {self.login.user}, password in {self.run_dir}/console.json")

    def _start_lan(self) -> str:
        self.lan = self.topo.start_lan_services()
        ports = " ".join(f":{p}" for p in self.lan.iperf_ports)
        return f"{LAN_HOST}: HTTP :{self.lan.http_port}, iperf3 {ports}"

    # -- clients
    def start_client(self, role: str, *, psk: str | None = None,
                     supervise: bool | None = None) -> LabClient:
        """Start the client of `role` (vpnc and vpnhub negotiate at once, charon on connect).

        In a cluster vpnc runs with DPD in a loop that starts it again when it exits
        (`supervise`, default: in a cluster), so it comes back after a member fails."""
        host = self.topo.host(role)
        user = f"vpnuser{peers.client_number(self.topo, host)}"
        plan = suite_plan(self.spec)
        secret = psk if psk is not None else (
            "not-the-group-secret" if role in self.spec.wrong_psk else GROUP_PSK)
        c: LabClient
        if self.spec.client == "vpnc":
            again = self.spec.is_cluster if supervise is None else supervise
            v = peers.start_vpnc(self.topo, host, secret=secret, dh=f"dh{plan.dh_group}",
                                 weak=plan.allow_legacy, supervise=again,
                                 dpd_idle=VPNC_DPD_IDLE if self.spec.is_cluster else 300)
            c = LabClient(role, "vpnc", user, host.tun, v.log, v.proc, vpnc=v)
        elif self.spec.client == "strongswan":
            ch = peers.start_strongswan_client(self.topo, host, suite=plan.strongswan,
                                               psk=secret)
            c = LabClient(role, "strongswan", user, ch.tun, ch.log, ch.proc, charon=ch)
        else:
            c = self._start_vpnhub_client(role, user, plan, secret)
        self.clients[role] = c
        return c

    def _start_vpnhub_client(self, role: str, user: str, plan: ClientSuite,
                             psk: str) -> LabClient:
        host = self.topo.host(role)
        d = self.run_dir / f"vpnhub-{role}"
        profile = _write_private(d / "profile.toml", vpnhub_profile(plan, host.tun, psk))
        sock = d / "status.sock"
        log = d / "client.log"
        proc = self.topo.spawn(
            host, [sys.executable, "-m", "vpnhub", "connect", "--profile", str(profile),
                   "--user", user, "--status-socket", str(sock), "-v", "--no-dns"],
            log, env={"VPNHUB_PASSWORD": peers.USERS[user], "PYTHONUNBUFFERED": "1"},
            name=f"vpnhub-connect-{role}")
        return LabClient(role, "vpnhub", user, host.tun, log, proc, status_socket=sock)

    def connect(self, c: LabClient, timeout: float = CONNECT_TIMEOUT) -> None:
        """Wait until c's tunnel is configured; LabError (c.state failed) if it is not."""
        try:
            if c.vpnc is not None:
                env = c.vpnc.wait_connected(timeout)
                c.assigned = env.get("INTERNAL_IP4_ADDRESS", "")
            elif c.charon is not None:
                cp = c.charon.initiate(timeout=timeout)
                if cp.returncode != 0:
                    tail = " | ".join(cp.stdout.strip().splitlines()[-3:])
                    raise LabError(f"[{c.role}] swanctl --initiate failed: {tail}")
                c.assigned = tunnel_address(self.topo, c.role, c.tun)
            elif c.status_socket is not None:
                st = wait_until(lambda: _vpnhub_connected(c), timeout, interval=0.1,
                                what=f"vpnhub connect in {c.role} to connect")
                c.assigned = str(st.get("assigned_address", ""))
            c.state = "connected"
        except (LabError, TimeoutError) as e:
            c.state, c.detail = "failed", str(e)
            raise LabError(str(e)) from e

    def check_usable(self, c: LabClient, timeout: float = USABLE_TIMEOUT) -> bool:
        """Ping the LAN host through c's tunnel; records the result in c.state/c.detail."""
        try:
            t = self.topo.wait_ping(c.role, LAN_HOST, interface=c.tun, timeout=timeout,
                                    abort=c.exited)
        except (LabError, TimeoutError) as e:
            c.detail = f"no reply from {LAN_HOST} through {c.tun}: {e}"
            return False
        c.state, c.detail = "usable", f"{LAN_HOST} answered through {c.tun} after {t:.2f} s"
        return True

    def connect_all(self) -> None:
        """Start every client, wait for each tunnel, then check data passes (NAT-T on)."""
        roles = [h.role for h in self.topo.clients][:self.spec.clients]  # no spare
        # vpnc and vpnhub connect in parallel; in a cluster one after the other, so
        # that the master sees each member's load (heartbeats) before the next one
        if self.spec.client != "strongswan" and not self.spec.is_cluster:
            for role in roles:
                self.start_client(role)
        for role in roles:
            c = self.clients.get(role) or self.start_client(role)
            t0 = time.monotonic()
            try:
                self.connect(c)
            except LabError as e:
                self.progress(f"[lab] {role}: NOT connected: {e}")
                continue
            if self.spec.is_cluster:
                time.sleep(2 * CLUSTER_HEARTBEAT)
            if self.spec.natt:
                self.check_usable(c)
            elif not self.check_usable(c, timeout=2.0):
                c.detail = ("tunnel up, no data passes: NAT-T is off on the concentrator"
                            " (the failure the document warns about)")
            self.progress(f"[lab] {role}: {c.kind} {c.user} {c.state}, address"
                          f" {c.assigned or '-'} on {c.tun} ({time.monotonic() - t0:.1f} s);"
                          f" {c.detail}")
        self.save_state()

    def poll(self) -> None:
        """Notice clients or servers that exited (the daemon calls this every second)."""
        changed = False
        for c in self.clients.values():
            if c.state in ("connected", "usable", "starting") and (why := c.exited()):
                c.state, c.detail = "exited", why
                self.progress(f"[lab] {c.role}: {why}")
                changed = True
        servers = {"": self.conc} if self.conc is not None else {}
        servers.update({f"{r}'s ": p for r, p in self.members.items()})
        for who, proc in servers.items():
            if not proc.alive():
                msg = f"{who}vpnhub serve exited with {proc.returncode}"
                if msg not in self.problems:
                    self.problems.append(msg)
                    self.progress(f"[lab] {msg}")
                    changed = True
        if changed:
            self.save_state()

    # -- tearing down
    def down(self) -> list[str]:
        """Clients first (they send DELETEs), then everything else; nothing is left."""
        self.phase = "stopping"
        for c in self.clients.values():
            with contextlib.suppress(Exception):
                c.stop()
        removed = []
        if self.console is not None:
            self.console.close()
            removed.append(f"console {self.console.url}")
            self.console = None
        return removed + self.topo.down()

    # -- state for other processes
    def state(self) -> dict[str, Any]:
        me = os.getpid()
        lan = self.lan
        return {
            "version": 1,
            "prefix": self.spec.prefix,
            "run_dir": str(self.run_dir),
            "spec": self.spec.to_dict(),
            "owner": {"pid": me, "starttime": procs.proc_starttime(me), "kind": self.owner},
            "phase": self.phase,
            "error": self.error,
            "problems": self.problems,
            "created": self.created,
            "ready_at": self.ready_at,
            "config": str(self.config_path),
            "admin_socket": str(self.admin_socket),
            "conc_log": str(self.conc_log),
            "daemon_log": str(self.run_dir / DAEMON_LOG),
            "hosts": {h.role: {"netns": h.netns, "addr": h.addr, "ifname": h.ifname}
                      for h in self.topo.hosts.values()},
            "clients": {r: c.to_dict() for r, c in self.clients.items()},
            "lan": {"http_url": lan.http_url, "iperf_ports": list(lan.iperf_ports)}
            if lan else {},
            # never the password: lab.json is readable by all; console.json is 0600
            "console": {"url": self.console.url, "user": ADMIN_NAME} if self.console else {},
            "cluster": self._cluster_state(),
        }

    def _cluster_state(self) -> dict[str, Any]:
        if not self.spec.is_cluster:
            return {}
        members = {}
        for m in self.topo.members:
            files = self.member_files(m.role)
            proc = self.members.get(m.role)
            members[m.role] = {
                "public": m.addr, "private": m.private, "netns": m.netns,
                "admin_socket": str(files / "admin.sock"), "log": str(files / "conc.log"),
                "config": str(files / "concentrator.toml"),
                "pid": proc.pid if proc else None, "killed": self.killed.get(m.role),
                "keepalived_log": str(files / "keepalived.log"),
                "vrrp_states": str(files / "vrrp-states.log"),
            }
        pg = self.pg
        return {"virtual_address": VIRTUAL_ADDRESS, "members": members,
                "database": {"dsn": pg.dsn_shown, "socket_dir": str(pg.base),
                             "log": str(pg.log),
                             "pid": pg.proc.pid if pg.proc else None} if pg else {}}

    def save_state(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_json(self.run_dir / STATE_FILE, self.state())

    def view(self) -> LabState:
        return LabState(self.state())


@dataclass
class LabState:
    """A lab as seen from any process: its ``lab.json``."""

    data: dict[str, Any]

    @classmethod
    def load(cls, prefix: str) -> LabState | None:
        try:
            data = json.loads((run_dir_for(prefix) / STATE_FILE).read_text())
        except (OSError, ValueError):
            return None
        return cls(data) if isinstance(data, dict) else None

    @property
    def prefix(self) -> str:
        return str(self.data["prefix"])

    @property
    def run_dir(self) -> Path:
        return Path(self.data["run_dir"])

    @property
    def spec(self) -> LabSpec:
        return LabSpec.from_dict(self.data.get("spec", {}))

    @property
    def phase(self) -> str:
        return str(self.data.get("phase", ""))

    @property
    def admin_socket(self) -> Path:
        return Path(self.data["admin_socket"])

    @property
    def conc_log(self) -> Path:
        return Path(self.data["conc_log"])

    @property
    def clients(self) -> dict[str, dict[str, Any]]:
        c = self.data.get("clients", {})
        return c if isinstance(c, dict) else {}

    @property
    def owner_pid(self) -> int:
        return int(self.data.get("owner", {}).get("pid", 0))

    def owner_alive(self) -> bool:
        o = self.data.get("owner", {})
        st = o.get("starttime")
        return procs.is_running(int(o.get("pid", 0)), int(st) if st is not None else None)

    def running(self) -> bool:
        return self.owner_alive() and self.phase in ("building", "up")

    def topology(self) -> Topology:
        """The lab's Topology for exec/ping/conntrack (building nothing)."""
        return Topology(self.prefix, clients=self.spec.clients + self.spec.spare_clients,
                        run_dir=self.run_dir, concentrators=self.spec.concentrators)

    def sessions(self) -> dict[str, Any] | None:
        """Every page of the admin socket's `sessions`, joined (a cluster: the
        first member's own sessions; `cluster_sessions` for all of them)."""
        return member_sessions(self.admin_socket)

    @property
    def cluster(self) -> dict[str, Any]:
        c = self.data.get("cluster") or {}
        return c if isinstance(c, dict) else {}

    def member_sockets(self) -> dict[str, Path]:
        """Each cluster member's admin socket, by member name."""
        return {r: Path(m["admin_socket"]) for r, m in self.cluster.get("members", {}).items()}

    def cluster_sessions(self) -> tuple[dict[str, Any] | None, str]:
        """`vpnhub sessions --cluster --json` asked of the first member that answers,
        and that member (the directory's view: every member's sessions)."""
        why = "no member answers"
        for role, sock in self.member_sockets().items():
            if not sock.exists():
                continue
            cp = subprocess.run([sys.executable, "-m", "vpnhub", "sessions", "--cluster",
                                 "--json", "--socket", str(sock)], capture_output=True,
                                text=True, timeout=30, check=False)
            if cp.returncode == 0:
                try:
                    return json.loads(cp.stdout), role
                except ValueError:
                    why = f"{role}: not JSON: {cp.stdout[:200]}"
                    continue
            why = f"{role}: exit {cp.returncode}: {cp.stderr.strip()[-300:]}"
        return None, why


def member_sessions(sock: Path) -> dict[str, Any] | None:
    """Every page of one concentrator's admin `sessions`, joined; None: no answer."""
    from vpnhub.admin import request_sessions

    try:
        return request_sessions(str(sock), timeout=5.0)
    except (OSError, ValueError):
        return None


def admin_request(sock: Path, req: dict[str, Any]) -> dict[str, Any] | None:
    """One request to the concentrator's admin socket; None if it does not answer."""
    from vpnhub.admin import request

    try:
        return request(str(sock), req, timeout=5.0)
    except (OSError, ValueError):
        return None


def tunnel_address(topo: Topology, role: str, tun: str) -> str:
    """The inner (Mode Config) address on the client's tunnel interface, or ""."""
    out = topo.exec(role, ["ip", "-4", "-o", "addr", "show", "dev", tun]).stdout
    m = re.search(r"\binet (\d+\.\d+\.\d+\.\d+)", out)
    return m.group(1) if m else ""


# ------------------------------------------------------------------------------ the daemon
class _Stop(Exception):
    """SIGTERM/SIGINT/SIGHUP reached the lab daemon: take the lab down."""


def _raise_stop(signum: int, frame: object) -> None:
    raise _Stop(signal.Signals(signum).name)


def daemon_main(spec_json: str) -> int:
    """The lab daemon: build, connect, then keep the lab until a signal; always clean up."""
    spec = LabSpec.from_dict(json.loads(spec_json))
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _raise_stop)
    lab = Lab(spec)
    try:
        try:
            lab.build()
            if spec.connect:
                lab.connect_all()
        except _Stop:
            raise
        except Exception as e:
            lab.phase, lab.error = "failed", f"{type(e).__name__}: {e}"
            lab.progress(f"[lab] FAILED: {lab.error}")
            traceback.print_exc(file=sys.stdout)
            lab.down()
            lab.phase = "failed"
            lab.save_state()
            return 1
        lab.phase, lab.ready_at = "up", time.time()
        lab.save_state()
        lab.progress(f"[lab] up: {spec.describe()}")
        while True:
            time.sleep(1.0)
            lab.poll()
    except _Stop as e:
        lab.progress(f"[lab] {e}: taking the lab down")
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # finish the teardown first
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if lab.phase != "failed":
            lab.progress(f"[lab] down: removed {_summarise(lab.down())}")
    return 0


# ------------------------------------------------------------------------------ commands
def fail(msg: str, code: int) -> int:
    """Say what went wrong on stderr; returns `code`, the exit status."""
    print(f"vpnhub lab: {msg}", file=sys.stderr)
    return code


@contextlib.contextmanager
def _locked(prefix: str) -> Iterator[None]:
    """One up/down at a time per lab."""
    RUN_ROOT.mkdir(parents=True, exist_ok=True)
    with (RUN_ROOT / f".{prefix}.lock").open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _opt(prefix: str) -> str:
    return "" if prefix == DEFAULT_PREFIX else f" --prefix {prefix}"


# -- up
def cmd_up(args: argparse.Namespace) -> int:
    spec = LabSpec(prefix=args.prefix, clients=args.clients,
                   concentrators=args.concentrators, client=args.client,
                   suite=args.suite, natt=args.nat_t == "on", ipsec_lifetime=args.ipsec_lifetime)
    try:
        spec.check()
    except ValueError as e:
        return fail(str(e), 2)
    if spec.client == "vpnhub" and (why := vpnhub_client_problem()):
        return fail(why, 2)
    if missing := missing_tools(spec):
        return fail(f"missing {', '.join(missing)}: run scripts/setup as root", 2)
    with _locked(spec.prefix):
        state = LabState.load(spec.prefix)
        if state is not None and state.running():
            return _report_running(state, spec)
        removed = clean_lab(spec.prefix)
        if removed:
            print(f"cleaned what an earlier lab {spec.prefix} left behind: "
                  f"{_summarise(removed)}")
        print(f"building lab {spec.prefix}: {spec.describe()}")
        t0 = time.monotonic()
        try:
            state = _start_daemon(spec)
        except KeyboardInterrupt:
            print(f"\ninterrupted: the lab daemon goes on building lab {spec.prefix};"
                  f" `vpnhub lab status{_opt(spec.prefix)}` shows it,"
                  f" `vpnhub lab down{_opt(spec.prefix)}` removes it", file=sys.stderr)
            return 130
    if state is None or state.phase != "up":
        return 1
    print(f"\nlab {spec.prefix} is up ({time.monotonic() - t0:.1f} s)\n")
    print(report(state))
    print("\n" + console_text(state, with_password=True))
    unusable = [r for r, c in state.clients.items() if c.get("state") != "usable"]
    if spec.natt and unusable:
        print(f"\nNOT every client works ({', '.join(unusable)}): the lab stays up;"
              f" `vpnhub lab logs{_opt(spec.prefix)} {unusable[0]}`, `vpnhub lab logs"
              f"{_opt(spec.prefix)} conc`, `vpnhub lab down{_opt(spec.prefix)}`",
              file=sys.stderr)
        return 1
    return 0


def clean_lab(prefix: str) -> list[str]:
    """Remove a stopped, crashed or half-built lab `prefix`: processes, namespaces, files."""
    state = LabState.load(prefix)
    removed = []
    if state is not None and state.owner_alive():
        pid = state.owner_pid
        o = state.data.get("owner", {})
        if procs.terminate_pid(pid, o.get("starttime"), 30.0):
            removed.append(f"lab {o.get('kind', 'owner')} process {pid}")
    removed += cleanup(prefix)
    rd = run_dir_for(prefix)
    if rd.exists():
        shutil.rmtree(rd, ignore_errors=True)
        removed.append(f"run dir {rd}")
    return removed


def _summarise(removed: Sequence[str]) -> str:
    """"3 processes, 6 namespaces, the run directory" from cleanup()'s list."""
    names = {"process": "process", "netns": "namespace", "link": "link", "lab": "lab daemon",
             "run": "run directory"}
    kinds: dict[str, int] = {}
    for r in removed:
        k = names.get(r.split()[0], r.split()[0])
        kinds[k] = kinds.get(k, 0) + 1
    return ", ".join(f"{n} {k}{'es' if k.endswith('s') and n > 1 else 's' if n > 1 else ''}"
                     for k, n in kinds.items())


def _start_daemon(spec: LabSpec) -> LabState | None:
    """Start the lab daemon detached, echo its progress, wait until the lab is up."""
    rd = run_dir_for(spec.prefix)
    rd.mkdir(parents=True, exist_ok=True)
    log = rd / DAEMON_LOG
    with log.open("wb") as out:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "vpnhub.lab.labctl", "--daemon",
             json.dumps(spec.to_dict())],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd="/",
            start_new_session=True, close_fds=True)
    shown = 0
    deadline = time.monotonic() + UP_TIMEOUT
    while True:
        text = log.read_text(errors="replace")
        for line in text[shown:].splitlines(keepends=True):
            if not line.endswith("\n"):
                break
            shown += len(line)
            if line.startswith("[lab]") and not line.rstrip().endswith("..."):
                print("  " + line[6:].rstrip(), flush=True)
        state = LabState.load(spec.prefix)
        if state is not None and state.owner_pid == daemon.pid and state.phase in ("up",
                                                                                   "failed"):
            break
        if daemon.poll() is not None or time.monotonic() > deadline:
            state = None
            break
        time.sleep(0.1)
    if state is not None and state.phase == "up":
        return state
    why = (state.data.get("error") if state else None) or (
        f"the lab daemon exited with {daemon.returncode}" if daemon.poll() is not None
        else f"not up after {UP_TIMEOUT:g} s")
    print(f"\nlab {spec.prefix} did NOT come up: {why}", file=sys.stderr)
    print(textwrap.indent(_tail(log, 30), "  | "), file=sys.stderr)
    conc_log = rd / "conc.log"
    if conc_log.exists():
        print(f"concentrator log ({conc_log}):", file=sys.stderr)
        print(textwrap.indent(_tail(conc_log, 20), "  | "), file=sys.stderr)
    if daemon.poll() is None:
        procs.terminate_pid(daemon.pid, procs.proc_starttime(daemon.pid), 30.0)
    print(f"logs stay in {rd} until `vpnhub lab down{_opt(spec.prefix)}`", file=sys.stderr)
    return None


def _report_running(state: LabState, wanted: LabSpec) -> int:
    if state.phase == "building":
        print(f"lab {state.prefix} is being built by process {state.owner_pid}; waiting")
        wait_until(lambda: (s := LabState.load(state.prefix)) is None or s.phase != "building",
                   UP_TIMEOUT, interval=0.2, what=f"lab {state.prefix} to be built")
        state = LabState.load(state.prefix) or state
    since = time.strftime("%H:%M:%S", time.localtime(state.data.get("ready_at") or 0))
    print(f"lab {state.prefix} is already running (up since {since}, lab daemon pid"
          f" {state.owner_pid}): {state.spec.describe()}; not rebuilt.")
    if not state.spec.same_lab(wanted):
        print(f"  you asked for: {wanted.describe()} -- run `vpnhub lab down"
              f"{_opt(state.prefix)}` first to rebuild it that way.")
    print()
    print(report(state))
    print("\n" + console_text(state, with_password=False))
    return 0


# -- the console
def console_text(state: LabState, *, with_password: bool) -> str:
    """The web console block: the URL to open here, the user, the password or where it is."""
    opt = _opt(state.prefix)
    login = load_login(state.run_dir)
    if login is None:
        return (f"Web console: none (`vpnhub lab down{opt}` and `vpnhub lab up{opt}` make"
                " one)")
    lines = ["Web console (the manager), from this machine's browser:",
             f"  open      {login['url']}",
             f"  user      {login['user']}"]
    if with_password:
        lines.append(f"  password  {login['password']}")
        lines.append(f"  (again: vpnhub lab console{opt}; it lives until `vpnhub lab down{opt}`)")
    else:
        lines.append(f"  password  vpnhub lab console{opt}")
    return "\n".join(lines)


def cmd_console(args: argparse.Namespace) -> int:
    state = LabState.load(args.prefix)
    if state is None or not state.running():
        return fail(f"no lab {args.prefix} is running: `vpnhub lab up{_opt(args.prefix)}`"
                    " first", 1)
    if load_login(state.run_dir) is None:
        return fail(f"lab {args.prefix} has no web console (built by an older vpnhub?):"
                    f" `vpnhub lab down{_opt(args.prefix)}`, then `up` again", 1)
    print(console_text(state, with_password=True))
    return 0


# -- the report
def diagram(state: LabState) -> str:
    roles = sorted(state.clients, key=lambda r: int(r[1:])) or ["c1"]
    hosts = state.data.get("hosts", {})
    lines = []
    mid = len(roles) // 2
    for i, r in enumerate(roles):
        addr = hosts.get(r, {}).get("addr", "?")
        left = f"  {r} {addr:<11} --+"
        if i == mid and state.cluster:
            left += (f"-- [pat] {PAT_INSIDE} | {PAT_OUTSIDE} -- [inet] -- {VIRTUAL_ADDRESS}"
                     " (the virtual address, VRRP)")
        elif i == mid:
            left += (f"-- [pat] {PAT_INSIDE} | {PAT_OUTSIDE} -- [inet] -- {CONC_PUBLIC}"
                     f" [conc] {CONC_PRIVATE} -- {LAN_HOST} [lan]")
        lines.append(left)
    members = state.cluster.get("members", {})
    if members:
        lines.append("")
        for role, m in members.items():
            lines.append(f"  [inet] -- {m['public']:<13} [{role}] {m['private']:<14} -- [lan]"
                         f" {LAN_HOST}, [db] {DB_ADDRESS} PostgreSQL")
    lines.append(f"  clients {CLIENT_LAN}, PAT masquerade random, tunnel pool {POOL},"
                 f" private LAN {PRIVATE_LAN}")
    return "\n".join(lines)


def cluster_sessions_text(state: LabState) -> tuple[str, str]:
    """`vpnhub sessions --cluster` (the command, its table) from a member that answers."""
    for sock in state.member_sockets().values():
        cmd = f"vpnhub sessions --cluster --socket {sock}"
        cp = subprocess.run([sys.executable, "-m", "vpnhub", "sessions", "--cluster",
                             "--socket", str(sock)], capture_output=True, text=True,
                            timeout=30, check=False)
        if cp.returncode == 0:
            return cmd, cp.stdout.rstrip()
    return "vpnhub sessions --cluster", "  (no member answers)"


def report(state: LabState) -> str:
    """What ``up`` prints: the network, the tunnels, the sessions, xlate, how to go on."""
    opt = _opt(state.prefix)
    out = [diagram(state), "", "Tunnels"]
    for role, c in sorted(state.clients.items(), key=lambda kv: int(kv[0][1:])):
        out.append(f"  {role}  {c['kind']:<10} {c['user']:<9} {c.get('assigned') or '-':<11}"
                   f" on {c['tun']:<8} {c['state']}: {c.get('detail', '')}")
    if state.cluster:
        cmd, text = cluster_sessions_text(state)
        topo = state.topology()
        out += ["", f"$ {cmd}", text, "",
                f"virtual address {VIRTUAL_ADDRESS} on: {', '.join(topo.holders()) or 'NONE'}"]
    else:
        sessions = state.sessions()
        out += ["", f"$ vpnhub sessions --socket {state.admin_socket}"]
        out.append(format_sessions(sessions) if sessions is not None
                   else "  (the concentrator does not answer)")
    out += ["", f"$ vpnhub lab xlate{opt}", pat_xlate(state.topology())]
    first = min(state.clients, default="c1", key=lambda r: int(r[1:]))
    port = (state.data.get("lan", {}).get("iperf_ports") or [5201])[0]
    status = [(f"vpnhub status --socket {c['status_socket']}",
               f"{role}'s client status (tunnel port 4500 = NAT-T)")
              for role, c in sorted(state.clients.items()) if c.get("status_socket")][:1]
    out += ["", "Go on:", *(f"  {cmd:<58} {why}" for cmd, why in (
        *status,
        (f"vpnhub sessions{' --cluster' if state.cluster else ''} --socket"
         f" {state.admin_socket}", "sessions (--json: all fields)"),
        (f"vpnhub lab xlate{opt}", "the PAT's translations"),
        (f"vpnhub lab exec {first}{opt} -- ping {LAN_HOST}", "through the tunnel"),
        (f"vpnhub lab exec {first}{opt} -- curl -s http://{LAN_HOST}/", "the LAN's web page"),
        (f"vpnhub lab exec {first}{opt} -- iperf3 -c {LAN_HOST} -p {port}", "throughput"),
        (f"vpnhub lab exec {'m1' if state.cluster else 'conc'}{opt} -- bash",
         "a shell in a host (c1.. pat inet " + ('m1.. db' if state.cluster else 'conc')
         + " lan)"),
        (f"vpnhub lab status{opt}", "hosts, processes, tunnels"),
        (f"vpnhub lab console{opt}", "the web console's address, user and password"),
        (f"vpnhub lab logs{opt} [conc|c1|lan|lab]", "logs"),
        (f"vpnhub lab scenario{opt} [NAME]", "scenarios, PASS or FAIL"),
        (f"vpnhub lab down{opt}", "remove the lab"),
    ))]
    return "\n".join(out)


def pat_xlate(topo: Topology, *, detail: bool = False) -> str:
    try:
        entries: list[NatEntry] = topo.pat_conntrack(proto=None)
    except LabError as e:
        return f"  (cannot read the PAT's conntrack table: {e})"
    return format_xlate(entries, detail=detail)


# -- down
def cmd_down(args: argparse.Namespace) -> int:
    prefix = args.prefix
    with _locked(prefix):
        state = LabState.load(prefix)
        before = leftovers(prefix)
        rd = run_dir_for(prefix)
        others = foreign(prefix)
        if others:  # named like ours, not created by the lab: not ours to delete
            print(f"left alone (named like lab {prefix}'s, but the lab did not create them):"
                  f" {', '.join(others)}", file=sys.stderr)
        if state is None and not before and not rd.exists():
            print(f"no lab {prefix}: nothing to remove")
            _drop_lock(prefix)
            return 0
        t0 = time.monotonic()
        clean_lab(prefix)
        left = leftovers(prefix)
        _drop_lock(prefix)
    namespaces = [x for x in before if x.startswith("netns")]
    processes = [x for x in before if x.startswith("process")]
    print(f"lab {prefix} removed in {time.monotonic() - t0:.1f} s: {len(namespaces)}"
          f" namespaces (with their links, routes and nft tables), {len(processes)}"
          f" processes, the lab daemon, {rd}")
    if left:
        print(f"still present: {', '.join(left)}", file=sys.stderr)
        return 1
    return 0


def _drop_lock(prefix: str) -> None:
    with contextlib.suppress(OSError):
        (RUN_ROOT / f".{prefix}.lock").unlink()
    with contextlib.suppress(OSError):
        RUN_ROOT.rmdir()  # only if empty


# -- status
def cmd_status(args: argparse.Namespace) -> int:
    state = LabState.load(args.prefix)
    if state is None:
        left = leftovers(args.prefix)
        if left:
            print(f"no lab {args.prefix} is running, but pieces are left: {', '.join(left)}"
                  f"\n`vpnhub lab down{_opt(args.prefix)}` removes them")
            return 1
        print(f"no lab {args.prefix} (`vpnhub lab up{_opt(args.prefix)}` builds it)")
        return 3
    problems = status_problems(state)
    print(status_text(state))
    if problems:
        print("\nproblems:\n" + "\n".join(f"  - {p}" for p in problems))
        return 1
    print("\nno problems")
    return 0


def status_problems(state: LabState) -> list[str]:
    out = [str(p) for p in state.data.get("problems", [])]
    if not state.owner_alive():
        out.append(f"the lab's owner process {state.owner_pid} is gone (crashed?):"
                   f" `vpnhub lab down{_opt(state.prefix)}` cleans up")
    if state.phase != "up":
        out.append(f"phase {state.phase}" + (f": {state.data['error']}"
                                            if state.data.get("error") else ""))
    present = set(list_netns())
    for role, h in state.data.get("hosts", {}).items():
        if h["netns"] not in present:
            out.append(f"namespace {h['netns']} ({role}) is missing")
    for _, rec in procs.records(state.prefix):
        if not procs.is_running(rec.pid, rec.starttime):
            out.append(f"process {rec.name} (pid {rec.pid}) is not running")
    for role, c in state.clients.items():
        if c.get("state") not in ("usable", "connected"):
            out.append(f"client {role}: {c.get('state')} {c.get('detail', '')}".rstrip())
    return out


def cluster_status(state: LabState, topo: Topology) -> str:
    """Each member: its own sessions, whether it holds the virtual address."""
    present = set(list_netns())
    holders = topo.holders() if all(m.netns in present for m in topo.members) else []
    lines = [f"cluster: virtual address {VIRTUAL_ADDRESS} on {', '.join(holders) or 'NO member'}"]
    for role, sock in state.member_sockets().items():
        data = member_sessions(sock)
        n = len(data.get("sessions", [])) if data else None
        lines.append(f"  {role}: " + (f"{n} sessions" if n is not None
                                       else "vpnhub does not answer")
                     + (" (VRRP master)" if role in holders else ""))
    return "\n".join(lines)


def status_text(state: LabState) -> str:
    ready = state.data.get("ready_at")
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ready)) if ready else "-"
    lines = [f"lab {state.prefix}: {state.phase} since {since}; {state.spec.describe()}",
             f"  owner: {state.data.get('owner', {}).get('kind', '?')} pid {state.owner_pid}"
             f" ({'running' if state.owner_alive() else 'GONE'}); run dir {state.run_dir}",
             "", "hosts"]
    present = set(list_netns())
    by_ns: dict[str, list[str]] = {}
    for _, rec in procs.records(state.prefix):
        alive = procs.is_running(rec.pid, rec.starttime)
        by_ns.setdefault(rec.netns, []).append(f"{rec.name} pid {rec.pid}"
                                               f"{'' if alive else ' (DEAD)'}")
    topo = state.topology()
    for role, h in state.data.get("hosts", {}).items():
        ns = h["netns"]
        what = ", ".join(by_ns.get(ns, [])) or "-"
        extra = ""
        if role in state.clients:
            c = state.clients[role]
            addr = tunnel_address(topo, role, c["tun"]) if ns in present else ""
            extra = f"; tunnel {c['tun']} {addr or 'DOWN'}"
        lines.append(f"  {role:<5} {ns:<12} {h['addr'] or 'bridge':<14}"
                     f" {'ok' if ns in present else 'MISSING':<8} {what}{extra}")
    if state.cluster:
        lines += ["", cluster_status(state, topo)]
    sessions = state.sessions()
    if sessions is not None:
        s = sessions.get("summary", {})
        lines += ["", f"concentrator: {s.get('total_active', 0)} active sessions, peak"
                      f" {s.get('peak', 0)}, cumulative {s.get('cumulative', 0)}"]
        for x in sessions.get("sessions", []):
            lines.append(f"  {x['user']:<10} {x.get('assigned_ip') or '-':<11}"
                         f" {x['public_ip']}:{x['public_port']:<6} {x.get('protocol', '')}"
                         f"  rx {x.get('bytes_rx', 0)} tx {x.get('bytes_tx', 0)}"
                         + (f"  ! {x['diagnosis']}" if x.get("diagnosis") else ""))
    else:
        lines += ["", "concentrator: admin socket does not answer"]
    return "\n".join(lines)


# -- xlate
def cmd_xlate(args: argparse.Namespace) -> int:
    topo = Topology(args.prefix, clients=0)
    if topo.pat.netns not in list_netns():
        return fail(f"no lab {args.prefix} (no namespace {topo.pat.netns})", 3)
    print(pat_xlate(topo, detail=args.detail))
    return 0


# -- exec
def cmd_exec(args: argparse.Namespace) -> int:
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    ns = f"{args.prefix}-{args.host}"
    present = list_netns()
    if ns not in present:
        hosts = sorted(n.split("-", 1)[1] for n in present if n.startswith(args.prefix + "-"))
        if not hosts:
            return fail(f"no lab {args.prefix} (`vpnhub lab up{_opt(args.prefix)}`)", 3)
        return fail(f"no host {args.host!r} in lab {args.prefix}; hosts: {' '.join(hosts)}", 2)
    if not cmd:
        cmd = [os.environ.get("SHELL") or "/bin/bash"]
    env = {**os.environ, "VPNHUB_LAB_HOST": args.host, "VPNHUB_LAB": args.prefix}
    sys.stdout.flush()
    os.execvpe("ip", ["ip", "netns", "exec", ns, *cmd], env)
    return 127  # not reached


# -- logs
_ESP_LINE = re.compile(r"^vpnc: Accepting expected ESP packet with seq (\d+)$")


def collapse_esp_lines(lines: Sequence[str]) -> list[str]:
    """vpnc --debug 1 logs every ESP packet it accepts: one summary line per run of them."""
    out: list[str] = []
    run: list[int] = []

    def flush() -> None:
        if run:
            out.append(f"vpnc: Accepting expected ESP packet with seq {run[0]}"
                       + (f" .. {run[-1]} ({len(run)} packets)" if len(run) > 1 else ""))
            run.clear()

    for line in lines:
        m = _ESP_LINE.match(line.strip())
        if m:
            run.append(int(m.group(1)))
            continue
        if run and not line.strip():
            continue  # vpnc prints an empty line before each of them
        flush()
        out.append(line)
    flush()
    return out


def log_files(prefix: str, host: str) -> list[Path]:
    rd = run_dir_for(prefix)
    if re.fullmatch(r"m\d+", host):  # a cluster member: vpnhub, keepalived, VRRP states
        return [rd / host / "conc.log", rd / host / "keepalived.log",
                rd / host / "vrrp-states.log"]
    if host == "db":
        return [rd / "postgres.log"]
    if host == "conc":
        return [rd / "conc.log"] if (rd / "conc.log").exists() else [rd / "m1" / "conc.log"]
    if host == "lab":
        return [rd / DAEMON_LOG]
    if host == "lan":
        return [rd / "http-server.log", *sorted(rd.glob("iperf3-s-*.log"))]
    state = LabState.load(prefix)
    client = state.clients.get(host) if state is not None else None
    return [Path(str(client["log"]))] if client and client.get("log") else []


def cmd_logs(args: argparse.Namespace) -> int:
    host = args.host
    if host == "pat":
        print("the PAT runs no process; its state is its nft ruleset and translations:")
        topo = Topology(args.prefix, clients=0)
        print(topo.exec("pat", ["nft", "list", "ruleset"]).stdout)
        print(pat_xlate(topo, detail=True))
        return 0
    files = log_files(args.prefix, host)
    files = [f for f in files if f.exists()]
    if not files:
        return fail(f"no logs for {host!r} in lab {args.prefix} ({run_dir_for(args.prefix)});"
                    " hosts with logs: conc, c1 .. cN, lan, lab", 3)
    for f in files:
        if len(files) > 1:
            print(f"==> {f} <==")
        lines = collapse_esp_lines(f.read_text(errors="replace").splitlines())
        if args.lines:
            lines = lines[-args.lines:]
        print("\n".join(lines))
    if args.follow:
        _follow(files)
    return 0


def _follow(files: Sequence[Path]) -> None:
    sizes = {f: f.stat().st_size for f in files}
    while True:
        time.sleep(0.3)
        for f in files:
            try:
                size = f.stat().st_size
            except OSError:
                return  # the lab was taken down
            if size > sizes[f]:
                with f.open("rb") as fh:
                    fh.seek(sizes[f])
                    text = fh.read(size - sizes[f]).decode(errors="replace")
                sizes[f] = size
                print("\n".join(collapse_esp_lines(text.splitlines())), flush=True)


def _tail(path: Path, n: int) -> str:
    try:
        lines = collapse_esp_lines(path.read_text(errors="replace").splitlines())
    except OSError:
        return "(no log)"
    return "\n".join(lines[-n:])


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--daemon":
        raise SystemExit(daemon_main(sys.argv[2]))
    raise SystemExit("usage: python -m vpnhub.lab.labctl --daemon SPEC_JSON"
                     " (started by `vpnhub lab up`)")
