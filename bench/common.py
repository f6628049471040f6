"""Shared helpers of the lab benchmarks (throughput, handshake, scale, latency).

Everything here runs as root and builds its own lab (``vpnhub.lab.topology``)
with a prefix of its own, so a benchmark never touches a running lab or a test.

- CPU accounting: ``cpu_seconds(pid)`` is utime+stime of every thread of a
  process, from ``/proc/PID/stat``; ``CpuMeter`` takes the difference over a
  measurement for several processes and for the whole machine.
- The two concentrators: ``start_vpnhub_concentrator`` (``vpnhub serve`` with
  a configuration written here) and ``start_charon_concentrator``
  (strongSwan charon + kernel-libipsec from the lab's templates, with optional
  extra ``charon { }`` settings for the load tests).
- The clients: vpnc (``vpnhub.lab.peers.start_vpnc``), the vpnhub client
  (``vpnhub connect`` with a TOML profile written here) and the strongSwan
  IKEv1 client.
- Suites: one name per cipher suite for all of them (``SUITES``).
- Rounds: ``one_round`` is one round of a benchmark (its error recorded, the
  client and the concentrator stopped, a pause), whatever happened in it.
- Results: every benchmark writes one JSON document (``write_json``) that
  ``bench/report.py`` turns into the Markdown table and the charts.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vpnhub.lab import peers
from vpnhub.lab.procs import Proc
from vpnhub.lab.topology import CONC_PUBLIC, LAN_HOST, PRIVATE_LAN, Host, LabError, Topology

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
GROUP = peers.GROUP_ID
PSK = peers.GROUP_PSK
VPNHUB_TUN = "vhbconc0"  # the vpnhub concentrator's tunnel interface
CLIENT_TUN = "vhbtun0"  # the vpnhub client's tunnel interface (in a client namespace)


# ----------------------------------------------------------------------------- suites
@dataclass(frozen=True)
class BenchSuite:
    """One cipher suite, spelt for each implementation.

    ``esp_vpnhub``: the concentrator's ``esp_proposals`` entry (None: the
    configuration cannot express it, e.g. GCM; the vpnhub client's first
    offer, AES-256-GCM, is then what gets negotiated).
    ``vpnc``: whether vpnc can negotiate it (vpnc knows no SHA2 and no GCM).
    """

    name: str
    label: str
    swan_esp: str
    esp_vpnhub: str | None
    vpnc: bool
    legacy: bool = False


SUITES: dict[str, BenchSuite] = {
    s.name: s
    for s in (
        BenchSuite("aes128-sha1", "AES-128/SHA1", "aes128-sha1", "aes128-sha1", vpnc=True),
        BenchSuite("aes256-sha256", "AES-256/SHA2-256", "aes256-sha256", "aes256-sha256",
                   vpnc=False),
        BenchSuite("aes256gcm16", "AES-256-GCM", "aes256gcm16", None, vpnc=False),
        BenchSuite("3des-md5", "3DES/MD5", "3des-md5", "3des-md5", vpnc=True, legacy=True),
    )
}
# Phase 1 does not carry data: one permissive proposal for every suite, so vpnc
# (DH group 2) and the vpnhub client (group 14) both get in.
SWAN_IKE = "aes256-aes128-3des-sha256-sha1-md5-modp2048-modp1024"


def register_swan_suite(s: BenchSuite) -> str:
    """Make `s` known to vpnhub.lab.peers (which renders the charon configurations)."""
    key = f"bench-{s.name}"
    if key not in peers.SUITES:
        peers.SUITES[key] = peers.Suite(key, SWAN_IKE, s.swan_esp, weak=s.legacy)
    return key


# ----------------------------------------------------------------------------- CPU
def cpu_times(pid: int | tuple[int, int]) -> tuple[float, float]:
    """(utime, stime) of all threads of `pid` in seconds, or of one thread for a
    (pid, tid) pair (its main thread: tid = pid); zeros if it is gone."""
    path = f"/proc/{pid[0]}/task/{pid[1]}/stat" if isinstance(pid, tuple) \
        else f"/proc/{pid}/stat"
    try:
        stat = Path(path).read_text()
    except OSError:
        return 0.0, 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def cpu_seconds(pid: int) -> float:
    """utime + stime of all threads of `pid` (seconds); 0.0 if it is gone."""
    u, s = cpu_times(pid)
    return u + s


def child_pids(pid: int) -> list[int]:
    """Every descendant of `pid` (vpnhub serve's data-plane workers, issue 16), from
    /proc/PID/task/TID/children; [] if it is gone."""
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            tasks = list(Path(f"/proc/{p}/task").iterdir())
        except OSError:
            continue
        for t in tasks:
            try:
                kids = [int(x) for x in (t / "children").read_text().split()]
            except (OSError, ValueError):
                continue
            out += kids
            todo += kids
    return out


def rss_bytes(pid: int) -> int:
    """Resident set size of `pid` in bytes (VmRSS), 0 if gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    parts = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    vals = [int(x) for x in parts[:8]]
    idle = vals[3] + vals[4]
    return float(sum(vals) - idle), float(sum(vals))


class CpuMeter:
    """CPU seconds used by some processes (and the machine's busy share) between
    ``start()`` and ``stop()``."""

    def __init__(self, pids: Mapping[str, Iterable[int | tuple[int, int]]]) -> None:
        self.pids = {k: list(v) for k, v in pids.items()}
        self._t0 = 0.0
        self._c0: dict[str, tuple[float, float]] = {}
        self.user: dict[str, float] = {}
        self.system: dict[str, float] = {}
        self._m0 = (0.0, 0.0)
        self.seconds: dict[str, float] = {}
        self.wall = 0.0
        self.machine_busy = 0.0  # share of all cores, 0..1

    def _now(self) -> dict[str, tuple[float, float]]:
        out = {}
        for k, v in self.pids.items():
            times = [cpu_times(p) for p in v]
            out[k] = (sum(t[0] for t in times), sum(t[1] for t in times))
        return out

    def start(self) -> CpuMeter:
        self._c0 = self._now()
        self._m0 = machine_cpu()
        self._t0 = time.monotonic()
        return self

    def stop(self) -> CpuMeter:
        self.wall = time.monotonic() - self._t0
        c1 = self._now()
        m1 = machine_cpu()
        self.user = {k: c1[k][0] - self._c0[k][0] for k in c1}
        self.system = {k: c1[k][1] - self._c0[k][1] for k in c1}
        self.seconds = {k: self.user[k] + self.system[k] for k in c1}
        total = m1[1] - self._m0[1]
        self.machine_busy = (m1[0] - self._m0[0]) / total if total else 0.0
        return self


# ----------------------------------------------------------------------------- stats
def median(values: Sequence[float]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def summary(values: Sequence[float]) -> dict[str, float]:
    """Median and range of several runs: what a results file reports."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100) of values; None if empty."""
    vals = sorted(values)
    if not vals:
        return None
    k = max(0, min(len(vals) - 1, math.ceil(p / 100.0 * len(vals)) - 1))
    return vals[k]


# ----------------------------------------------------------------------------- lab
def lab_prefix(kind: str) -> str:
    """A lab prefix of our own: vhb + kind letter + 4 hex digits (fits IFNAMSIZ)."""
    return f"vhb{kind[0]}{secrets.token_hex(2)}"


def run_dir_for(prefix: str, base: Path | None = None) -> Path:
    d = (base or Path("/tmp/vpnhub-bench")) / prefix
    d.mkdir(parents=True, exist_ok=True)
    return d


def netns_read(topo: Topology, host: Host, path: str) -> str:
    return topo.exec(host, ["cat", path], check=True).stdout


def link_packets(topo: Topology, host: Host, ifname: str) -> int:
    """rx + tx packets of an interface in a lab host (0 if it does not exist)."""
    cp = topo.exec(host, ["ip", "-s", "-j", "link", "show", "dev", ifname])
    if cp.returncode != 0:
        return 0
    try:
        st = json.loads(cp.stdout)[0]["stats64"]
        return int(st["rx"]["packets"]) + int(st["tx"]["packets"])
    except (ValueError, KeyError, IndexError):
        return 0


def users(n: int) -> dict[str, str]:
    """XAUTH users vpnuser1..vpnuserN (the lab's naming)."""
    return {f"vpnuser{i}": f"userpass{i}" for i in range(1, n + 1)}


# ----------------------------------------------------------------------------- vpnhub concentrator
def vpnhub_config(run: Path, *, pool: str = "10.40.1.0/24", esp_proposal: str | None = None,
                  n_users: int = 16, console_severity: int = 3, max_sessions: int = 10000,
                  half_open_per_source: int = 32, half_open_total: int = 4096,
                  dpd_interval: int = 30, natt_keepalive: int = 20,
                  extra_concentrator: str = "",
                  web_admin: tuple[str, str] | None = None,
                  workers: int | str | None = None,
                  tun_offload: bool | None = None,
                  moderation_us: int | None = None,
                  dh_pool_size: int | None = None,
                  public: str = CONC_PUBLIC, files: Path | None = None,
                  extra_sections: str = "") -> Path:
    """Write a concentrator configuration for the lab (group vpngroup, users vpnuserN).

    `web_admin`: (name, password) of a web manager account (``[[admin.user]]``).
    `workers`: ``[dataplane] workers`` (None: vpnhub's default, "auto");
    `tun_offload`: ``[dataplane] tun_offload``, `moderation_us`: ``[dataplane]
    moderation_us`` (None: the defaults); `dh_pool_size`: ``[limits] dh_pool_size``
    (None: vpnhub's default, sized per DH group).
    `public`: ``public_address``; `files`: the directory of the configuration, the
    admin socket and the event store (default `run`: a cluster member has its own);
    `extra_sections`: TOML appended (e.g. a member's ``[cluster]``)."""
    files = files or run
    esp = f'esp_proposals = ["{esp_proposal}"]\n' if esp_proposal else ""
    value = workers if isinstance(workers, int) else f'"{workers}"'
    keys = ("" if workers is None else f"workers = {value}\n") + (
        "" if tun_offload is None else f"tun_offload = {str(tun_offload).lower()}\n") + (
        "" if moderation_us is None else f"moderation_us = {moderation_us}\n")
    dataplane = f"\n[dataplane]\n{keys}" if keys else ""
    admin_users = ""
    if web_admin is not None:
        from vpnhub.auth.users import hash_password

        admin_users = (f'[[admin.user]]\nname = "{web_admin[0]}"\n'
                       f'password_hash = "{hash_password(web_admin[1])}"\n')
    users_toml = "".join(
        f'[[user]]\nname = "{u}"\npassword = "{p}"\ngroup = "{GROUP}"\n'
        for u, p in users(n_users).items())
    text = f"""# written by bench/common.py
[concentrator]
public_address = "{public}"
private_networks = ["{PRIVATE_LAN}"]
tunnel_interface = "{VPNHUB_TUN}"
allow_legacy_crypto = true
dpd_interval = {dpd_interval}
natt_keepalive = {natt_keepalive}
{extra_concentrator}
[nat_transparency]
ipsec_over_natt = true
{dataplane}
[admin]
socket = "{files / 'admin.sock'}"
{admin_users}
[limits]
max_sessions = {max_sessions}
max_half_open_per_source = {half_open_per_source}
max_half_open_total = {half_open_total}
{"" if dh_pool_size is None else f"dh_pool_size = {dh_pool_size}"}

[log]
console_severity = {console_severity}
store = "{files / 'events.db'}"

[[group]]
name = "{GROUP}"
psk = "{PSK}"
address_pool = "{pool}"
dns = ["{LAN_HOST}"]
split_include = ["{PRIVATE_LAN}"]
# the load generator and the scale run log in many devices per account (64 accounts,
# thousands of tunnels): the default of 3 simultaneous logins would refuse the rest
simultaneous_logins = 1000000
{esp}
{users_toml}{extra_sections}"""
    path = files / "vpnhub-concentrator.toml"
    path.write_text(text)
    os.chmod(path, 0o600)
    return path


@dataclass
class Concentrator:
    """Either concentrator, as the benchmarks see it."""

    kind: str  # "vpnhub" | "strongswan"
    pid: int
    tun: str
    proc: Proc | None = None
    charon: peers.Charon | None = None
    admin_socket: Path | None = None
    log: Path | None = None

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.alive()
        if self.charon is not None:
            return self.charon.proc.alive()
        return False

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(10.0)
        if self.charon is not None:
            self.charon.stop(10.0)


def start_vpnhub_concentrator(topo: Topology, config: Path, *, log_name: str = "vpnhub-serve.log",
                              timeout: float = 20.0,
                              python_args: list[str] | None = None) -> Concentrator:
    """``vpnhub serve --config`` in the concentrator namespace; returns once the
    admin socket answers. `python_args` go before ``-m vpnhub`` (e.g. cProfile)."""
    run = topo.run_dir
    sock = run / "admin.sock"
    sock.unlink(missing_ok=True)
    proc = topo.spawn(topo.conc, [PYTHON, *(python_args or []), "-m", "vpnhub", "serve",
                                      "--config", str(config)],
                      run / log_name, name="vpnhub-serve")

    def ready() -> bool:
        if not proc.alive():
            raise LabError(f"vpnhub serve exited {proc.returncode}: {proc.log_text()[-1500:]}")
        return sock.is_socket()

    from vpnhub.lab.topology import wait_until

    wait_until(ready, timeout, what="vpnhub serve admin socket")
    return Concentrator("vpnhub", proc.pid, VPNHUB_TUN, proc=proc, admin_socket=sock,
                        log=run / log_name)


def start_charon_concentrator(topo: Topology, suite: BenchSuite, *, pool: str = "10.40.1.0/24",
                              n_users: int = 16, tune: Mapping[str, str] | None = None,
                              quiet_log: bool = False) -> Concentrator:
    """strongSwan charon + kernel-libipsec as the lab concentrator (the lab's templates).

    `tune`: extra ``charon { key = value }`` settings (e.g. ``block_threshold``
    for the handshake load: its default of 5 half-open SAs per source address
    would refuse a PAT full of clients). `quiet_log`: IKE/CFG log level 1 like
    production instead of the lab's 2.
    """
    key = register_swan_suite(suite)
    if not tune and not quiet_log:
        ch = peers.start_strongswan_concentrator(topo, suite=key, pool=pool, users=users(n_users))
        return Concentrator("strongswan", ch.proc.pid, ch.tun, charon=ch, log=ch.log)
    s = peers.SUITES[key]
    secrets_text = "\n".join(
        f'    xauth-{i} {{\n        id = {name}\n        secret = "{pw}"\n    }}'
        for i, (name, pw) in enumerate(users(n_users).items(), start=1))
    run = topo.run_dir / f"charon-{topo.conc.role}"
    sw = peers.render("strongswan-concentrator.conf", {"RUN": str(run)})
    extra = "".join(f"    {k} = {v}\n" for k, v in (tune or {}).items())
    sw = sw.replace("charon {\n", "charon {\n" + extra, 1)
    if quiet_log:
        sw = re.sub(r"(\n\s*(ike|cfg) = )2", r"\g<1>1", sw)
    sc = peers.render("swanctl-concentrator.conf", {
        "LOCAL_ADDR": topo.conc.addr, "IKE": s.ike, "ESP": s.esp, "GROUP": GROUP, "PSK": PSK,
        "POOL": pool, "DNS": LAN_HOST, "SPLIT": PRIVATE_LAN, "XAUTH_SECRETS": secrets_text,
    })
    ch = peers._start_charon(topo, topo.conc, "concentrator", sw, sc)
    return Concentrator("strongswan", ch.proc.pid, ch.tun, charon=ch, log=ch.log)


# ----------------------------------------------------------------------------- clients
@dataclass
class Client:
    """One VPN client in one lab client namespace."""

    kind: str  # "vpnc" | "vpnhub" | "strongswan"
    host: Host
    pid: int
    tun: str
    stop: Callable[[], object]
    alive: Callable[[], bool]
    log: Path
    extra: dict[str, Any] = field(default_factory=dict)


def start_client(topo: Topology, kind: str, host: Host, suite: BenchSuite, *,
                 user_no: int, tun_offload: bool | None = None) -> Client:
    """`tun_offload` False: the vpnhub client with ``--no-tun-offload`` (issue 16)."""
    user, pw = f"vpnuser{user_no}", f"userpass{user_no}"
    if kind == "vpnc":
        v = peers.start_vpnc(topo, host, username=user, password=pw, dh="dh2",
                             weak=suite.legacy)
        return Client("vpnc", host, v.proc.pid, host.tun, v.stop, lambda: v.proc.alive(),
                      v.log, {"vpnc": v})
    if kind == "vpnhub":
        run = topo.run_dir / f"vpnhub-client-{host.role}"
        run.mkdir(parents=True, exist_ok=True)
        legacy = "true" if suite.legacy else "false"
        prof = run / "profile.toml"
        prof.write_text(
            f'host = "{CONC_PUBLIC}"\ngroup = "{GROUP}"\ngroup_password = "{PSK}"\n'
            f'username = "{user}"\ntransparent_tunneling = true\n'
            f"dh_group = {2 if suite.legacy else 14}\nallow_legacy = {legacy}\n"
            f'no_dns = true\ntunnel_interface = "{CLIENT_TUN}"\n')
        pwf = run / "password"
        pwf.write_text(pw + "\n")
        for f in (prof, pwf):
            os.chmod(f, 0o600)
        sock = run / "status.sock"
        proc = topo.spawn(host, [PYTHON, "-m", "vpnhub", "connect", "--profile", str(prof),
                                 "--password-file", str(pwf), "--status-socket", str(sock),
                                 *(["--no-tun-offload"] if tun_offload is False else [])],
                          run / "client.log", name=f"vpnhub-client-{host.role}")
        return Client("vpnhub", host, proc.pid, CLIENT_TUN, lambda: proc.stop(10.0),
                      proc.alive, proc.log, {"proc": proc, "status_socket": sock})
    if kind == "strongswan":
        key = register_swan_suite(suite)
        ch = peers.start_strongswan_client(topo, host, username=user, password=pw, suite=key)
        ch.initiate(timeout=20)
        return Client("strongswan", host, ch.proc.pid, ch.tun, lambda: ch.stop(10.0),
                      ch.proc.alive, ch.log, {"charon": ch})
    raise ValueError(f"unknown client kind {kind!r}")


def wait_usable(topo: Topology, c: Client, timeout: float = 30.0) -> float:
    """Seconds until the LAN host answers a ping through the client's tunnel."""
    def gone() -> str | None:
        return None if c.alive() else f"{c.kind} client exited: " + _tail(c.log)

    # strongSwan routes through table 220 with its virtual IP as source: no -I
    iface = None if c.kind == "strongswan" else c.tun
    return topo.wait_ping(c.host, LAN_HOST, interface=iface, timeout=timeout, abort=gone)


def _tail(path: Path, n: int = 600) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


# ----------------------------------------------------------------------------- output
def environment() -> dict[str, Any]:
    """What the numbers were measured on."""
    def version(argv: Sequence[str]) -> str:
        try:
            cp = subprocess.run(list(argv), capture_output=True, text=True, timeout=10)
            return (cp.stdout or cp.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"

    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import cryptography

    return {
        "host": platform.node(), "kernel": platform.release(), "cpus": os.cpu_count(),
        "cpu_model": model, "python": platform.python_version(),
        "cryptography": cryptography.__version__,
        "iperf3": version(["iperf3", "--version"]),
        "vpnc": version(["vpnc", "--version"]),
        "strongswan": version(["dpkg-query", "-W", "-f=${Version}", "libstrongswan"]),
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        "git": version(["git", "-C", str(REPO), "describe", "--always", "--dirty"]),
    }


def write_json(path: Path | None, doc: Mapping[str, Any]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str))
    tmp.replace(path)


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S ") + msg, flush=True)


@dataclass
class Round:
    """What one round started, stopped at its end whatever happened: ``stop_client``
    first (set it once the client runs; back to None once stopped early), then
    ``stop_conc``."""

    res: dict[str, Any]
    stop_client: Callable[[], object] | None = None
    stop_conc: Callable[[], object] | None = None


@contextmanager
def one_round(res: dict[str, Any], label: str, *,
              stop_client: Callable[[], object] | None = None,
              stop_conc: Callable[[], object] | None = None,
              pause: float = 0.0) -> Iterator[Round]:
    """One round of a benchmark: an exception in it is its result (``res["error"]``,
    logged as ``LABEL: ERROR ...``) and the next round still runs; at the end, even
    after an error, the client and the concentrator stop and the lab rests `pause`
    seconds (sockets closed, the CPU quiet) before the next one."""
    rnd = Round(res, stop_client=stop_client, stop_conc=stop_conc)
    try:
        yield rnd
    except Exception as e:
        res["error"] = f"{type(e).__name__}: {e}"
        log(f"{label}: ERROR {res['error']}")
    finally:
        if rnd.stop_client is not None:
            rnd.stop_client()
        if rnd.stop_conc is not None:
            rnd.stop_conc()
        time.sleep(pause)
