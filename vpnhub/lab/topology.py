"""The network of the Cisco document, rebuilt in Linux network namespaces.

One topology code for the tests and for ``vpnhub lab``::

  {p}-c1 10.10.10.2 --+                                     {p}-d1 203.0.113.20
                      +-- {p}br [{p}-pat] 10.10.10.1 | 203.0.113.78  |  (no NAT, optional)
  {p}-c2 10.10.10.3 --+    nft "masquerade random" on {p}po         |
                                              |                      |
                              [{p}-inet] bridge {p}ib: the "internet" 203.0.113.0/24
                                              |
                      203.0.113.50 [{p}-conc] 192.168.2.251   the concentrator (charon or vpnhub)
                                                     |
                                     [{p}-lan] 192.168.2.10   iperf3 -s, HTTP
  tunnel pool 10.40.1.0/24, private LAN 192.168.2.0/24

With ``concentrators=N`` (N > 1) the concentrator is a cluster (issue 17)::

                      [{p}-inet] bridge {p}ib 203.0.113.0/24
          |                     |                     |
  203.0.113.51 [{p}-m1]  203.0.113.52 [{p}-m2]  203.0.113.53 [{p}-m3]  + the virtual
  192.168.2.251          192.168.2.252          192.168.2.253            address
          |                     |                     |              203.0.113.50 (VRRP)
                  [{p}-lan] bridge {p}lb 192.168.2.10 --- [{p}-db] 192.168.2.5 PostgreSQL

The members' names are ``m1`` .. ``mN``; ``conc`` is then ``m1``. The virtual
address is the single concentrator's address, so the clients are unchanged;
keepalived moves it (``cluster``). Return routing: the LAN host has the pool
on-link and each member answers ARP for the addresses it routes to its TUN
(proxy ARP), i.e. for its own address blocks only: no member has a default
route, so no member answers for another's clients (docs/CLUSTER.md).

``{p}`` is the prefix (``vhl`` for the lab, ``vht<hex>`` in tests), so a test
and a running lab never collide. Every namespace is called ``{p}-<role>`` and
every interface starts with ``{p}``; interfaces are created directly inside
their namespaces, so deleting the namespaces removes the links, bridges and
nft tables with them. IPv6 is disabled everywhere (TUN devices would otherwise
tunnel router solicitations). The PAT routes the private LAN to a blackhole, so
that a ping from a client can only be answered through a tunnel: a silent drop
rather than an ICMP error, so probes wait instead of failing at once.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from vpnhub.lab import procs
from vpnhub.lab.procs import Proc

# Addresses of the document, mapped to documentation / private ranges.
CLIENT_LAN = "10.10.10.0/24"
PAT_INSIDE = "10.10.10.1"
PAT_OUTSIDE = "203.0.113.78"
INTERNET = "203.0.113.0/24"
CONC_PUBLIC = "203.0.113.50"
CONC_PRIVATE = "192.168.2.251"
PRIVATE_LAN = "192.168.2.0/24"
LAN_HOST = "192.168.2.10"
POOL = "10.40.1.0/24"
DIRECT_CLIENT_FIRST = "203.0.113.20"
# the cluster (concentrators > 1): the virtual address is CONC_PUBLIC
VIRTUAL_ADDRESS = CONC_PUBLIC
MEMBER_PUBLIC_FIRST = "203.0.113.51"
MEMBER_PRIVATE_FIRST = "192.168.2.251"
DB_ADDRESS = "192.168.2.5"
MAX_CONCENTRATORS = 4  # private addresses .251 .. .254

PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{1,8}$")  # + up to 5 chars <= IFNAMSIZ-1 (15)
DEFAULT_PREFIX = "vhl"

T = TypeVar("T")


class LabError(RuntimeError):
    """A lab command failed or something did not happen in time."""


def wait_until(
    predicate: Callable[[], T | None],
    timeout: float,
    *,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Poll predicate until it returns a truthy value, which is returned.

    Raises TimeoutError naming `what` after `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def run(argv: Sequence[str], *, check: bool = True, timeout: float = 30.0,
        input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command on the machine itself (not in a lab host); LabError on failure."""
    cp = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                        input=input, check=False)
    if check and cp.returncode != 0:
        raise LabError(f"{' '.join(argv)}: exit {cp.returncode}: {cp.stderr.strip()}")
    return cp


@dataclass(frozen=True)
class Host:
    """One namespace of the lab: a PC, the PAT device, the concentrator, ..."""

    role: str  # "c1".."cN" (behind the PAT), "d1".. (direct), "pat", "inet", "conc", "lan",
    #            cluster: "m1".."mN" (members), "db"
    netns: str
    addr: str  # its main IPv4 address ("" for the internet switch)
    ifname: str  # interface carrying addr
    tun: str = ""  # clients: name for the TUN device a VPN client creates
    behind_nat: bool = False
    private: str = ""  # members: the address on the private LAN
    private_if: str = ""  # ... and its interface


@dataclass(frozen=True)
class NatEntry:
    """One PAT translation (our ``show xlate``) from the PAT's conntrack table."""

    proto: str
    inside: tuple[str, int]  # client address and port before translation
    outside: tuple[str, int]  # the PAT's public address and the port it chose
    remote: tuple[str, int]  # the peer on the internet
    assured: bool = False


def parse_conntrack(text: str) -> list[NatEntry]:
    """Parse ``conntrack -L`` lines (orig tuple first, reply tuple second).

    The outside address/port is the reply's destination: what the remote
    peer sends to. ICMP entries use the echo id in place of ports.
    """
    entries = []
    for line in text.splitlines():
        tokens = line.split()
        if len(tokens) < 2 or not any(t.startswith("src=") for t in tokens):
            continue
        orig: dict[str, str] = {}
        reply: dict[str, str] = {}
        side = orig
        for tok in tokens:
            key, sep, value = tok.partition("=")
            if not sep:
                continue
            if key == "src" and "src" in orig:
                side = reply  # the second src= starts the reply tuple
            if key in ("src", "dst", "sport", "dport", "id") and key not in side:
                side[key] = value
        if "dst" not in reply:
            continue

        def port(d: dict[str, str], k: str) -> int:
            return int(d.get(k, d.get("id", "0")))

        entries.append(
            NatEntry(
                proto=tokens[0],
                inside=(orig["src"], port(orig, "sport")),
                outside=(reply["dst"], port(reply, "dport")),
                remote=(orig["dst"], port(orig, "dport")),
                assured="[ASSURED]" in tokens,
            )
        )
    return entries


@dataclass(frozen=True)
class LanServices:
    """Services on the private LAN host 192.168.2.10."""

    addr: str
    iperf_ports: tuple[int, ...]
    http_port: int
    procs: tuple[Proc, ...]

    @property
    def http_url(self) -> str:
        return f"http://{self.addr}:{self.http_port}/"


def _lab_names(prefix: str) -> tuple[re.Pattern[str], re.Pattern[str]]:
    p = re.escape(prefix)
    links = r"(c\d+e|p\d+|br|po|ci|cp|lh|i\d+|ib|d\d+e|tun|m\d+[ip]|im\d+|lb|l\d+|dbe)"
    return re.compile(rf"^{p}-[a-z0-9]+$"), re.compile(rf"^{p}{links}$")


def list_netns() -> list[str]:
    out = run(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def root_links() -> list[str]:
    out = run(["ip", "-o", "link", "show"], check=False).stdout
    names = []
    for line in out.splitlines():
        parts = line.split(":", 2)
        if len(parts) >= 2:
            names.append(parts[1].strip().split("@", 1)[0])
    return names


NETNS_RECORD = "netns"  # in procs.state_dir(prefix): the namespaces the lab created


def record_netns(prefix: str, name: str) -> None:
    """Write down a namespace BEFORE creating it: a crash in between leaves a
    record of a namespace that may not exist (harmless), never the reverse."""
    d = procs.state_dir(prefix)
    d.mkdir(parents=True, exist_ok=True)
    if not procs.owner_alive(prefix):
        # Whoever records a namespace owns the lab: without a live owner, a test
        # session starting beside this one (reap_orphaned_labs) took it for a
        # crashed run's and SIGTERMed the vpnhub serve running inside it.
        procs.write_owner(prefix)
    with (d / NETNS_RECORD).open("a") as f:
        f.write(name + "\n")


def recorded_netns(prefix: str) -> set[str]:
    try:
        text = (procs.state_dir(prefix) / NETNS_RECORD).read_text()
    except OSError:
        return set()
    return {line.strip() for line in text.splitlines() if line.strip()}


def foreign(prefix: str) -> list[str]:
    """Namespaces and root links named like lab `prefix`'s that it did not create.

    `ip netns add P-x` by hand (or another tool using the same prefix) must not
    be deleted by `lab down --prefix P`: they are reported and left alone."""
    ns_re, link_re = _lab_names(prefix)
    mine = recorded_netns(prefix)
    found = [f"netns {n}" for n in list_netns() if ns_re.match(n) and n not in mine]
    # the lab creates its links inside its namespaces, never in the root one
    found += [f"link {n}" for n in root_links() if link_re.match(n)]
    return found


def leftovers(prefix: str) -> list[str]:
    """Everything of lab `prefix` still present: its namespaces, live processes."""
    mine = recorded_netns(prefix)
    found = [f"netns {n}" for n in list_netns() if n in mine]
    found += [
        f"process {r.pid} ({r.name})"
        for _, r in procs.records(prefix)
        if procs.is_running(r.pid, r.starttime)
    ]
    return found


def cleanup(prefix: str) -> list[str]:
    """Remove what lab `prefix` left behind (also after a crash). Returns what was removed.

    Only processes we recorded (PID + start time), or that still run inside one
    of this lab's namespaces (nothing else can have been started there), are
    signalled.
    """
    if not PREFIX_RE.match(prefix):
        raise ValueError(f"bad lab prefix {prefix!r}")
    removed = [f"process {r.pid} ({r.name})" for r in procs.kill_recorded(prefix)]
    ns_re, _ = _lab_names(prefix)
    recorded = recorded_netns(prefix)
    mine = [n for n in list_netns() if n in recorded and ns_re.match(n)]
    for ns in mine:
        out = run(["ip", "netns", "pids", ns], check=False).stdout
        for pid in (int(x) for x in out.split() if x.isdigit()):
            removed.append(f"process {pid} ({procs.proc_comm(pid)}) in {ns}")
            procs.terminate_pid(pid, procs.proc_starttime(pid), 3.0)
    for ns in mine:
        run(["ip", "netns", "del", ns], check=False)
        removed.append(f"netns {ns}")
    if set(mine) & set(list_netns()):  # keep the record of what could not be deleted
        return removed
    with contextlib.suppress(OSError):
        shutil.rmtree(procs.state_dir(prefix))
    return removed


def reap_orphaned_labs(base: str) -> list[str]:
    """Clean up every lab whose prefix is `base` + hex digits (e.g. test labs
    ``vht1a2b3``) and whose owning process is gone (killed test runs). Labs of
    live processes, e.g. another test session running right now, are kept."""
    pattern = re.compile(rf"^({re.escape(base)}[0-9a-f]+)(-[a-z0-9]+)?$")
    names = list_netns()
    if procs.STATE_ROOT.is_dir():
        names += [d.name for d in procs.STATE_ROOT.iterdir()]
    prefixes = {m.group(1) for n in names if (m := pattern.match(n))}
    removed = []
    for prefix in sorted(prefixes):
        if PREFIX_RE.match(prefix) and not procs.owner_alive(prefix):
            removed += cleanup(prefix)
    return removed


class Topology:
    """Build (``up``) and remove (``down``) the lab network; run things in its hosts.

    Use as a context manager::

        with Topology("vht1a2b", clients=2, run_dir=tmp_path) as topo:
            topo.exec(topo.clients[0], ["ping", "-c1", CONC_PUBLIC])
    """

    def __init__(
        self,
        prefix: str = DEFAULT_PREFIX,
        *,
        clients: int = 2,
        direct_clients: int = 0,
        run_dir: Path | str | None = None,
        pat_random: bool = True,
        concentrators: int = 1,
    ) -> None:
        if not PREFIX_RE.match(prefix):
            raise ValueError(f"lab prefix must match {PREFIX_RE.pattern}: {prefix!r}")
        if not 0 <= clients <= 200 or not 0 <= direct_clients <= 20:
            raise ValueError("clients 0..200, direct_clients 0..20")
        if not 1 <= concentrators <= MAX_CONCENTRATORS:
            raise ValueError(f"concentrators 1..{MAX_CONCENTRATORS}")
        self.prefix = prefix
        self.run_dir = Path(run_dir) if run_dir else Path("/tmp/vpnhub-lab") / prefix
        self.pat_random = pat_random
        p = prefix
        lan_base = ipaddress.IPv4Address(PAT_INSIDE)
        direct_base = ipaddress.IPv4Address(DIRECT_CLIENT_FIRST)
        self.clients = [
            Host(f"c{i}", f"{p}-c{i}", str(lan_base + i), f"{p}c{i}e", f"{p}tun", True)
            for i in range(1, clients + 1)
        ]
        self.direct = [
            Host(f"d{j}", f"{p}-d{j}", str(direct_base + j - 1), f"{p}d{j}e", f"{p}tun")
            for j in range(1, direct_clients + 1)
        ]
        self.pat = Host("pat", f"{p}-pat", PAT_OUTSIDE, f"{p}po")
        self.inet = Host("inet", f"{p}-inet", "", f"{p}ib")
        pub = ipaddress.IPv4Address(MEMBER_PUBLIC_FIRST)
        priv = ipaddress.IPv4Address(MEMBER_PRIVATE_FIRST)
        self.members = [
            Host(f"m{i}", f"{p}-m{i}", str(pub + i - 1), f"{p}m{i}i",
                 private=str(priv + i - 1), private_if=f"{p}m{i}p")
            for i in range(1, concentrators + 1)
        ] if concentrators > 1 else []
        self.db: Host | None = None
        if self.members:  # conc is the first member: what needs one concentrator uses it
            self.conc = self.members[0]
            self.lan = Host("lan", f"{p}-lan", LAN_HOST, f"{p}lb")
            self.db = Host("db", f"{p}-db", DB_ADDRESS, f"{p}dbe")
        else:
            self.conc = Host("conc", f"{p}-conc", CONC_PUBLIC, f"{p}ci",
                             private=CONC_PRIVATE, private_if=f"{p}cp")
            self.lan = Host("lan", f"{p}-lan", LAN_HOST, f"{p}lh")
        servers = self.members or [self.conc]
        self.hosts: dict[str, Host] = {
            h.role: h
            for h in [*self.clients, *self.direct, self.pat, self.inet, *servers, self.lan,
                      *([self.db] if self.db else [])]
        }
        self._procs: list[Proc] = []
        self._is_up = False

    # ------------------------------------------------------------------ life cycle
    @property
    def is_up(self) -> bool:
        return self._is_up

    def __enter__(self) -> Topology:
        return self.up()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.down()

    def up(self) -> Topology:
        """Remove leftovers of an earlier run with this prefix, then build everything."""
        cleanup(self.prefix)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # owner first, namespaces after: a namespace without a live owner is an orphan
        procs.write_owner(self.prefix)
        self._is_up = True
        try:
            self._build()
        except BaseException:
            self.down()
            raise
        return self

    def down(self) -> list[str]:
        """Stop our processes (last started first), remove namespaces, links, records."""
        for proc in reversed(self._procs):
            if not proc.stopped:
                proc.stop(timeout=5.0)
        self._procs.clear()
        self._is_up = False
        return cleanup(self.prefix)

    def _build(self) -> None:
        for h in self.hosts.values():
            record_netns(self.prefix, h.netns)
            run(["ip", "netns", "add", h.netns])
            forward = h in (self.pat, self.conc, *self.members)
            self._sysctls(h, forward)
            self._ip(h, "link", "set", "lo", "up")
        self._build_internet()
        self._build_client_lan()
        self._build_private_lan()
        self._setup_pat()

    def _sysctls(self, h: Host, forward: bool) -> None:
        # /proc/sys/net belongs to the namespace of the process that opens it
        writes = [
            "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6",
            "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6",
        ]
        if not Path("/proc/sys/net/ipv6").is_dir():
            writes = []
        if forward:
            writes.append("echo 1 > /proc/sys/net/ipv4/ip_forward")
        if writes:
            self.exec(h, ["sh", "-c", " && ".join(writes)], check=True)

    def _ip(self, h: Host, *args: str) -> None:
        run(["ip", "-n", h.netns, *args])

    def _veth(self, a: Host, a_if: str, b: Host, b_if: str) -> None:
        run(["ip", "link", "add", a_if, "netns", a.netns, "type", "veth",
             "peer", "name", b_if, "netns", b.netns])

    def _bridge_port(self, bridge_host: Host, bridge: str, port: str) -> None:
        self._ip(bridge_host, "link", "set", port, "master", bridge)
        self._ip(bridge_host, "link", "set", port, "up")

    def _build_internet(self) -> None:
        p, inet = self.prefix, self.inet
        self._ip(inet, "link", "add", inet.ifname, "type", "bridge")
        self._ip(inet, "link", "set", inet.ifname, "up")
        if self.members:
            attached = [(m, f"{p}im{m.role[1:]}") for m in self.members]
        else:
            attached = [(self.conc, f"{p}i0")]
        attached += [(self.pat, f"{p}i1")]
        attached += [(d, f"{p}i{j + 2}") for j, d in enumerate(self.direct)]
        for host, port in attached:
            self._veth(host, host.ifname, inet, port)
            self._bridge_port(inet, inet.ifname, port)
            self._ip(host, "addr", "add", f"{host.addr}/24", "dev", host.ifname)
            self._ip(host, "link", "set", host.ifname, "up")
        for d in self.direct:
            self._ip(d, "route", "add", "blackhole", PRIVATE_LAN)

    def _build_client_lan(self) -> None:
        p, pat = self.prefix, self.pat
        bridge = f"{p}br"
        self._ip(pat, "link", "add", bridge, "type", "bridge")
        self._ip(pat, "addr", "add", f"{PAT_INSIDE}/24", "dev", bridge)
        self._ip(pat, "link", "set", bridge, "up")
        for i, c in enumerate(self.clients, start=1):
            self._veth(c, c.ifname, pat, f"{p}p{i}")
            self._bridge_port(pat, bridge, f"{p}p{i}")
            self._ip(c, "addr", "add", f"{c.addr}/24", "dev", c.ifname)
            self._ip(c, "link", "set", c.ifname, "up")
            self._ip(c, "route", "add", "default", "via", PAT_INSIDE)

    def _build_private_lan(self) -> None:
        if self.members:
            self._build_cluster_lan()
            return
        p, conc, lan = self.prefix, self.conc, self.lan
        self._veth(conc, f"{p}cp", lan, lan.ifname)
        self._ip(conc, "addr", "add", f"{CONC_PRIVATE}/24", "dev", f"{p}cp")
        self._ip(conc, "link", "set", f"{p}cp", "up")
        self._ip(lan, "addr", "add", f"{LAN_HOST}/24", "dev", lan.ifname)
        self._ip(lan, "link", "set", lan.ifname, "up")
        self._ip(lan, "route", "add", "default", "via", CONC_PRIVATE)

    def _build_cluster_lan(self) -> None:
        """The private LAN of a cluster: a bridge in the LAN host, every member and
        the database on it; the pool on-link, answered by the members' proxy ARP."""
        p, lan = self.prefix, self.lan
        self._ip(lan, "link", "add", lan.ifname, "type", "bridge")
        self._ip(lan, "addr", "add", f"{LAN_HOST}/24", "dev", lan.ifname)
        self._ip(lan, "link", "set", lan.ifname, "up")
        assert self.db is not None
        ports = [(m, m.private_if, m.private, f"{p}l{m.role[1:]}") for m in self.members]
        ports.append((self.db, self.db.ifname, self.db.addr, f"{p}l0"))
        for host, ifname, addr, port in ports:
            self._veth(host, ifname, lan, port)
            self._bridge_port(lan, lan.ifname, port)
            self._ip(host, "addr", "add", f"{addr}/24", "dev", ifname)
            self._ip(host, "link", "set", ifname, "up")
        for m in self.members:
            # proxy ARP: a member answers for the pool addresses it routes to its TUN
            # (its own blocks), at once (proxy_delay 0, not the default random 0.8 s)
            self.exec(m, ["sh", "-c",
                          f"echo 1 > /proc/sys/net/ipv4/conf/{m.private_if}/proxy_arp && "
                          f"echo 0 > /proc/sys/net/ipv4/neigh/{m.private_if}/proxy_delay"],
                      check=True)
        # the pool on-link: the LAN host asks by ARP who has a client's address.
        # A member that died leaves a stale neighbour entry: re-resolve quickly
        self._ip(lan, "route", "add", POOL, "dev", lan.ifname)
        self.exec(lan, ["sh", "-c",
                        f"echo 1 > /proc/sys/net/ipv4/neigh/{lan.ifname}/delay_first_probe_time"
                        f" && echo 1 > /proc/sys/net/ipv4/neigh/{lan.ifname}/ucast_solicit"],
                  check=True)

    def holders(self, address: str = VIRTUAL_ADDRESS) -> list[str]:
        """The members whose public interface holds `address` (the VRRP master's)."""
        found = []
        for m in self.members:
            out = self.exec(m, ["ip", "-4", "-o", "addr", "show", "dev", m.ifname]).stdout
            if re.search(rf"\binet {re.escape(address)}/", out):
                found.append(m.role)
        return found

    def _setup_pat(self) -> None:
        masq = "masquerade random" if self.pat_random else "masquerade"
        ruleset = (
            f"table ip {self.prefix}pat {{\n"
            "  chain postrouting {\n"
            "    type nat hook postrouting priority srcnat; policy accept;\n"
            f'    oifname "{self.pat.ifname}" {masq}\n'
            "  }\n"
            "}\n"
        )
        self.exec(self.pat, ["nft", "-f", "-"], input=ruleset, check=True)
        self._ip(self.pat, "route", "add", "blackhole", PRIVATE_LAN)

    def route_private_lan(self, routed: bool) -> None:
        """True: the PAT (and direct clients) route 192.168.2.0/24 to the concentrator
        in clear (raw baseline). False (default): blackhole, only tunnels reach it."""
        for h in (self.pat, *self.direct):
            if routed:
                self._ip(h, "route", "replace", PRIVATE_LAN, "via", CONC_PUBLIC)
            else:
                self._ip(h, "route", "replace", "blackhole", PRIVATE_LAN)

    # ------------------------------------------------------------------ running things
    def host(self, host: Host | str) -> Host:
        return host if isinstance(host, Host) else self.hosts[host]

    def exec(
        self,
        host: Host | str,
        argv: Sequence[str],
        *,
        check: bool = False,
        timeout: float = 30.0,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run argv in host and wait; text output captured. check=True: LabError on failure."""
        h = self.host(host)
        full_env = {**os.environ, **env} if env else None
        cmd = ["ip", "netns", "exec", h.netns, *argv]
        cp = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                            input=input, env=full_env, check=False)
        if check and cp.returncode != 0:
            raise LabError(f"[{h.role}] {' '.join(argv)}: exit {cp.returncode}: "
                           f"{cp.stderr.strip()}")
        return cp

    def spawn(
        self,
        host: Host | str,
        argv: Sequence[str],
        log: Path | str,
        *,
        env: Mapping[str, str] | None = None,
        name: str | None = None,
    ) -> Proc:
        """Start argv in host in the background, stdout+stderr to log (relative: in run_dir).

        env adds variables to the current environment. The process is recorded
        and stopped by ``down()`` (or ``proc.stop()``).
        """
        h = self.host(host)
        log_path = Path(log)
        if not log_path.is_absolute():
            log_path = self.run_dir / log_path
        label = name or f"{h.role}-{Path(argv[0]).name}"
        proc = procs.start(self.prefix, label, h.netns, argv, log_path, env)
        self._procs.append(proc)
        return proc

    def processes(self) -> list[Proc]:
        return list(self._procs)

    # ------------------------------------------------------------------ PAT table
    def pat_conntrack(self, proto: str | None = "udp") -> list[NatEntry]:
        """The PAT's translations (``show xlate``), optionally for one protocol only."""
        argv = ["conntrack", "-L", "-f", "ipv4"]
        if proto:
            argv += ["-p", proto]
        return parse_conntrack(self.exec(self.pat, argv, check=True).stdout)

    def flush_pat_conntrack(self) -> None:
        self.exec(self.pat, ["conntrack", "-F"], check=True)

    # ------------------------------------------------------------------ LAN services
    def listening(self, host: Host | str, proto: str = "tcp") -> set[int]:
        flag = "-Hltn" if proto == "tcp" else "-Hlun"
        out = self.exec(host, ["ss", flag], check=True).stdout
        ports = set()
        for line in out.splitlines():
            cols = line.split()
            if len(cols) >= 4:
                ports.add(int(cols[3].rsplit(":", 1)[1]))
        return ports

    def start_lan_services(
        self, iperf_ports: Sequence[int] | None = None, http_port: int = 80
    ) -> LanServices:
        """iperf3 -s (one port per client: a server runs one test at a time) and
        a tiny HTTP server on 192.168.2.10; returns once they all listen."""
        if iperf_ports is None:
            n = max(2, len(self.clients) + len(self.direct))
            iperf_ports = [5201 + i for i in range(n)]
        www = self.run_dir / "www"
        www.mkdir(parents=True, exist_ok=True)
        (www / "index.html").write_text("vpnhub lab: private LAN host 192.168.2.10\n")
        started = [
            self.spawn(self.lan, ["iperf3", "-s", "-B", LAN_HOST, "-p", str(port)],
                       f"iperf3-s-{port}.log", name=f"iperf3-s-{port}")
            for port in iperf_ports
        ]
        started.append(
            self.spawn(
                self.lan,
                [sys.executable, "-m", "http.server", str(http_port), "--bind", LAN_HOST,
                 "--directory", str(www)],
                "http-server.log",
                name="http-server",
            )
        )
        wanted = {*iperf_ports, http_port}

        def ready() -> bool:
            if not all(p.alive() for p in started):
                dead = [p for p in started if not p.alive()]
                raise LabError(f"LAN service died: {dead[0].name}: {dead[0].log_text()[-500:]}")
            return wanted <= self.listening(self.lan)

        wait_until(ready, 10.0, what="iperf3/HTTP listening on the LAN host")
        return LanServices(LAN_HOST, tuple(iperf_ports), http_port, tuple(started))

    # ------------------------------------------------------------------ ping
    def ping(
        self,
        host: Host | str,
        dst: str,
        *,
        count: int = 1,
        timeout: float = 1.0,
        interface: str | None = None,
        interval: float = 0.2,
    ) -> bool:
        """True if all `count` echo requests get a reply within `timeout` seconds each."""
        argv = ["ping", "-n", "-q", "-c", str(count), "-i", f"{interval:g}",
                "-W", f"{timeout:g}"]
        if interface:
            argv += ["-I", interface]
        cp = self.exec(host, [*argv, dst], timeout=count * (timeout + interval) + 5)
        return cp.returncode == 0

    def wait_ping(
        self,
        host: Host | str,
        dst: str,
        *,
        interface: str | None = None,
        timeout: float = 20.0,
        abort: Callable[[], str | None] | None = None,
    ) -> float:
        """Probe every 5 ms until dst answers; returns the seconds it took.

        Raises TimeoutError, or LabError as soon as abort() returns a reason
        (e.g. the VPN client exited).
        """
        start = time.monotonic()
        deadline = start + timeout
        while True:
            if abort is not None and (reason := abort()):
                raise LabError(f"gave up pinging {dst} from {self.host(host).role}: {reason}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no reply from {dst} to {self.host(host).role} "
                                   f"({interface or 'any interface'}) within {timeout:g} s")
            # one ping process per second at most; it stops at the first reply
            argv = ["ping", "-n", "-q", "-c", "1", "-i", "0.005", "-w", "1"]
            if interface:
                argv += ["-I", interface]
            cp = self.exec(host, [*argv, dst], timeout=10)
            if cp.returncode == 0:
                return time.monotonic() - start
            if cp.returncode != 1:  # 2: error (e.g. the TUN does not exist yet)
                time.sleep(0.02)
