"""Run the vpnhub concentrator in a lab topology, and read what it and the peers say.

The interop tests of ``test_vpnhub_interop.py`` swap vpnhub in for charon in
the reference lab (``tests/lab/test_reference_peers.py``): same namespaces,
same PAT ("masquerade random"), same vpnc and strongSwan clients.

- ``render_config`` / ``start_vpnhub``: a TOML configuration (docs/CONFIG.md)
  for the lab, and ``python -m vpnhub serve --config FILE`` in the concentrator
  namespace, ready once UDP 500 (and 4500 with NAT-T) is bound and the admin
  socket exists.
- ``VpnhubServer``: its log, ``vpnhub sessions --json``, ``vpnhub logout``,
  SIGTERM.
- ``start_iperf`` / ``iperf_result``: iperf3 clients through the tunnels.
- ``WireCounters``: nft counters on the "internet" bridge (plain ESP vs UDP 4500).
- ``log_tail`` / ``explain``: the tails of the logs, for assertion messages.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vpnhub.lab.peers import GROUP_ID, GROUP_PSK, USERS, VpncClient
from vpnhub.lab.procs import Proc
from vpnhub.lab.topology import (
    CONC_PUBLIC,
    LAN_HOST,
    POOL,
    PRIVATE_LAN,
    Host,
    LabError,
    Topology,
    wait_until,
)

VPNHUB = (sys.executable, "-m", "vpnhub")
TUNNEL_IF = "vpnhub0"
SERVER_LOG = "vpnhub-serve.log"
TAIL_LINES = 30


# ---------------------------------------------------------------------------- logs
def log_tail(path: Path | str, lines: int = TAIL_LINES, text: str | None = None) -> str:
    """The last `lines` lines of a log file (or of `text`), headed by its name."""
    p = Path(path)
    if text is None:
        try:
            text = p.read_text(errors="replace")
        except OSError as e:
            return f"--- {p}: unreadable ({e.strerror})"
    body = _collapse(text.splitlines())[-lines:]
    return f"--- {p} (last {len(body)} lines)\n" + "\n".join(body)


def _collapse(raw: list[str]) -> list[str]:
    """Drop blank lines; fold runs of lines differing only in numbers (vpnc's
    "Accepting expected ESP packet with seq N") into the last one and a count."""
    out: list[str] = []
    shape = ""
    run = 0
    for line in raw:
        if not line.strip():
            continue
        s = re.sub(r"\d+", "#", line)
        if s == shape and out:
            run += 1
            out[-1] = f"{line}   [x{run}]"
            continue
        shape, run = s, 1
        out.append(line)
    return out


def explain(what: str, *logs: Path | str | tuple[str, str] | None,
            lines: int = TAIL_LINES) -> str:
    """An assertion message: `what`, then the tail of each log.

    A log is a path, or (label, text) for a log whose file was overwritten
    since (a restarted vpnc), or None (skipped).
    """
    parts = [what]
    for log in logs:
        if log is None:
            continue
        if isinstance(log, tuple):
            parts.append(log_tail(log[0], lines, text=log[1]))
        else:
            parts.append(log_tail(log, lines))
    return "\n".join(parts)


# ---------------------------------------------------------------------------- vpnhub availability
@functools.cache
def vpnhub_serve_problem() -> str | None:
    """Why ``python -m vpnhub serve`` cannot run here, or None."""
    try:
        cp = subprocess.run([*VPNHUB, "serve", "--help"], capture_output=True, text=True,
                            timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{' '.join(VPNHUB)} serve --help: {e}"
    if cp.returncode != 0:
        out = (cp.stderr or cp.stdout).strip().splitlines()[-3:]
        return (f"`python -m vpnhub serve --help` exits {cp.returncode}: "
                f"{' | '.join(out)} (the concentrator process has not landed yet?)")
    return None


# ---------------------------------------------------------------------------- config
def _toml(value: object) -> str:
    """A TOML value: JSON's strings, lists and numbers are valid TOML basic values."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)


@dataclass
class ServerOptions:
    """What a test changes in the lab configuration of vpnhub."""

    natt: bool = True  # [nat_transparency] ipsec_over_natt
    legacy: bool = False  # [concentrator] allow_legacy_crypto
    pool: str = POOL
    reserve_first_address: bool = False
    ike_proposals: Sequence[str] | None = None  # group's; None: the engine's defaults
    esp_proposals: Sequence[str] | None = None
    users: int = 8  # vpnuser1..N / userpass1..N (as start_vpnc logs in)
    xauth_retry_delay: float = 0.2  # a wrong password is answered after this
    dpd_interval: int = 30
    console_severity: int = 5  # milestones (NAT-T, negotiation complete) on stdout
    extra: dict[str, dict[str, object]] = field(default_factory=dict)  # table -> key -> value
    lan_to_lan: list[dict[str, object]] = field(default_factory=list)  # [[lan_to_lan]] tables
    group_extra: dict[str, object] = field(default_factory=dict)  # more keys of the [[group]]
    # (a key whose value is None is left out, e.g. "psk" for a certificate-only group)
    extra_text: str = ""  # TOML appended as it is (more groups, [radius] and its arrays)


def render_config(run_dir: Path, opts: ServerOptions) -> str:
    """The concentrator of the Cisco note on the lab's addresses (docs/CONFIG.md)."""
    tables: dict[str, dict[str, object]] = {
        "concentrator": {
            "public_address": CONC_PUBLIC,
            "private_networks": [PRIVATE_LAN],
            "tunnel_interface": TUNNEL_IF,
            "allow_legacy_crypto": opts.legacy,
            "dpd_interval": opts.dpd_interval,
        },
        "nat_transparency": {"ipsec_over_natt": opts.natt},
        # the web manager listens on the loopback of the concentrator's namespace
        "admin": {"socket": str(run_dir / "admin.sock"), "listen": "127.0.0.1:8443"},
        "limits": {"xauth_retry_delay": opts.xauth_retry_delay},
        "log": {
            "console_severity": opts.console_severity,
            "keep_severity": max(5, opts.console_severity),
            "store": str(run_dir / "vpnhub-events.log"),
        },
    }
    for table, keys in opts.extra.items():
        tables.setdefault(table, {}).update(keys)
    group: dict[str, object] = {
        "name": GROUP_ID,
        "psk": GROUP_PSK,
        "address_pool": opts.pool,
        "dns": [LAN_HOST],
        "split_include": [PRIVATE_LAN],
    }
    if opts.reserve_first_address:
        group["reserve_first_address"] = True
    if opts.ike_proposals is not None:
        group["ike_proposals"] = list(opts.ike_proposals)
    if opts.esp_proposals is not None:
        group["esp_proposals"] = list(opts.esp_proposals)
    group.update(opts.group_extra)
    group = {k: v for k, v in group.items() if v is not None}  # None: leave the key out

    out = ["# vpnhub concentrator for an interop test (tests/concentrator)"]
    for name, keys in tables.items():
        out.append(f"\n[{name}]")
        out += [f"{k} = {_toml(v)}" for k, v in keys.items()]
    out.append("\n[[group]]")
    out += [f"{k} = {_toml(v)}" for k, v in group.items()]
    for site in opts.lan_to_lan:
        out.append("\n[[lan_to_lan]]")
        out += [f"{k} = {_toml(v)}" for k, v in site.items()]
    for n in range(1, opts.users + 1):
        user = f"vpnuser{n}"
        out += ["\n[[user]]", f"name = {_toml(user)}", f"password = {_toml(USERS[user])}",
                f"group = {_toml(GROUP_ID)}"]
    if opts.extra_text:
        out.append(opts.extra_text)
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------- the server
@dataclass
class VpnhubServer:
    """``vpnhub serve`` running in the concentrator namespace of `topo`."""

    topo: Topology
    proc: Proc
    config: Path
    admin_socket: Path
    opts: ServerOptions

    @property
    def log(self) -> Path:
        return self.proc.log

    def log_text(self) -> str:
        return self.proc.log_text()

    def tail(self, lines: int = TAIL_LINES) -> str:
        return log_tail(self.log, lines)

    def explain(self, what: str, *logs: Path | str | tuple[str, str] | VpncClient | None,
                lines: int = TAIL_LINES) -> str:
        """Assertion message: `what`, the concentrator's log tail, then the other logs."""
        paths = [lg.log if isinstance(lg, VpncClient) else lg for lg in logs]
        return explain(what, self.log, *paths, lines=lines)

    def lines(self, *needles: str) -> list[str]:
        """Log lines containing every needle (case-insensitive)."""
        wanted = [n.lower() for n in needles]
        return [line for line in self.log_text().splitlines()
                if all(n in line.lower() for n in wanted)]

    def wait_log(self, *needles: str, count: int = 1, timeout: float = 10.0,
                 logs: Sequence[Path | VpncClient] = ()) -> list[str]:
        """Wait until `count` log lines contain every needle; returns them."""

        def found() -> list[str] | None:
            hits = self.lines(*needles)
            if len(hits) >= count:
                return hits
            if not self.proc.alive():
                raise LabError(self.explain(
                    f"vpnhub exited ({self.proc.returncode}) before logging {needles!r}", *logs))
            return None

        try:
            return wait_until(found, timeout, interval=0.05,
                              what=f"{count} vpnhub log line(s) with {needles!r}")
        except TimeoutError as e:
            raise AssertionError(self.explain(str(e), *logs)) from None

    def cli(self, *args: str, check: bool = True,
            timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
        """``python -m vpnhub ARGS --socket ADMIN`` in the concentrator namespace."""
        cp = self.topo.exec(self.topo.conc,
                            [*VPNHUB, *args, "--socket", str(self.admin_socket)],
                            timeout=timeout)
        if check and cp.returncode != 0:
            raise AssertionError(self.explain(
                f"vpnhub {' '.join(args)}: exit {cp.returncode}\nstdout: {cp.stdout[-1500:]}"
                f"\nstderr: {cp.stderr[-1500:]}"))
        return cp

    def sessions(self) -> dict[str, Any]:
        """``vpnhub sessions --json``: {"summary": {...}, "sessions": [...]}."""
        cp = self.cli("sessions", "--json")
        try:
            data = json.loads(cp.stdout)
        except ValueError as e:
            raise AssertionError(self.explain(
                f"vpnhub sessions --json printed no JSON ({e}): {cp.stdout[:1500]!r}")) from None
        assert isinstance(data, dict) and "summary" in data and "sessions" in data, (
            self.explain(f"vpnhub sessions --json: unexpected shape: {cp.stdout[:1500]}"))
        return data

    def wait_sessions(self, predicate: Callable[[dict[str, Any]], bool], what: str,
                      timeout: float = 10.0,
                      logs: Sequence[Path | VpncClient] = ()) -> dict[str, Any]:
        """Poll ``sessions --json`` until predicate(data) holds; returns that data."""
        last: dict[str, Any] = {}

        def check() -> dict[str, Any] | None:
            nonlocal last
            last = self.sessions()
            return last if predicate(last) else None

        try:
            return wait_until(check, timeout, interval=0.2, what=what)
        except TimeoutError as e:
            raise AssertionError(self.explain(
                f"{e}\nlast sessions --json: {json.dumps(last, indent=1)[:3000]}",
                *logs)) from None

    def logout(self, user: str) -> subprocess.CompletedProcess[str]:
        return self.cli("logout", user)

    def terminate(self, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait (SIGKILL after `timeout`); the exit status."""
        return self.proc.stop(timeout)


def session_of(data: dict[str, Any], user: str) -> dict[str, Any] | None:
    found = [s for s in data["sessions"] if s.get("user") == user]
    return found[0] if len(found) == 1 else None


def active_users(data: dict[str, Any]) -> list[str]:
    return sorted(str(s.get("user")) for s in data["sessions"])


def start_vpnhub(topo: Topology, opts: ServerOptions | None = None,
                 timeout: float = 20.0) -> VpnhubServer:
    """Write the configuration, start ``vpnhub serve``, wait until it serves."""
    from vpnhub.config import load_config  # a typo in our own config fails here, clearly

    opts = opts or ServerOptions()
    problem = vpnhub_serve_problem()
    if problem:
        raise AssertionError(problem)
    run_dir = topo.run_dir
    sock = run_dir / "admin.sock"
    if len(str(sock)) > 100:  # sun_path is 108 bytes
        raise LabError(f"run directory too long for the admin socket: {sock}")
    config = run_dir / "vpnhub.toml"
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # PSK, passwords
    with os.fdopen(fd, "w") as f:
        f.write(render_config(run_dir, opts))
    load_config(config)
    proc = topo.spawn(topo.conc, [*VPNHUB, "serve", "--config", str(config)], SERVER_LOG,
                      env={"PYTHONUNBUFFERED": "1"}, name="vpnhub-serve")
    server = VpnhubServer(topo, proc, config, sock, opts)
    ports = {500, 4500} if opts.natt else {500}

    def ready() -> bool:
        if not proc.alive():
            raise AssertionError(server.explain(
                f"vpnhub serve exited with {proc.returncode} while starting"))
        return ports <= topo.listening(topo.conc, "udp") and sock.is_socket()

    try:
        wait_until(ready, timeout, interval=0.05,
                   what=f"vpnhub serve to bind UDP {sorted(ports)} and {sock}")
    except TimeoutError as e:
        raise AssertionError(server.explain(str(e))) from None
    return server


# ---------------------------------------------------------------------------- iperf3
@dataclass(frozen=True)
class IperfResult:
    returncode: int | None
    sent_bytes: int
    received_bytes: int
    interval_bytes: tuple[int, ...]
    error: str
    raw: str


def start_iperf(topo: Topology, host: Host | str, port: int, seconds: int,
                reverse: bool = False) -> Proc:
    """iperf3 TCP client in `host` to the LAN host (through the tunnel's route), JSON out.

    reverse: the LAN host sends (iperf3 -R), full-size segments towards the client."""
    h = topo.host(host)
    argv = ["iperf3", "-c", LAN_HOST, "-p", str(port), "-t", str(seconds), "-J",
            "--connect-timeout", "5000", *(["-R"] if reverse else [])]
    return topo.spawn(h, argv, f"iperf3-{h.role}-{port}.json", name=f"iperf3-{h.role}")


def iperf_running(topo: Topology, port: int) -> bool:
    """The LAN host's iperf3 server on `port` has its data connection (control + data)."""
    out = topo.exec(topo.lan, ["ss", "-Htn", "state", "established", f"( sport = :{port} )"],
                    check=True).stdout
    return len(out.strip().splitlines()) >= 2


def iperf_result(proc: Proc, timeout: float) -> IperfResult:
    """Wait for an iperf3 client to end; parse its JSON."""
    try:
        proc.popen.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.stop(2.0)
    raw = proc.log_text()
    start = raw.find("{")
    try:
        data = json.loads(raw[start:]) if start >= 0 else {}
    except ValueError:
        data = {}
    end = data.get("end", {})
    intervals = tuple(int(i.get("sum", {}).get("bytes", 0)) for i in data.get("intervals", []))
    return IperfResult(
        returncode=proc.returncode,
        sent_bytes=int(end.get("sum_sent", {}).get("bytes", 0)),
        received_bytes=int(end.get("sum_received", {}).get("bytes", 0)),
        interval_bytes=intervals,
        error=str(data.get("error", "")),
        raw=raw,
    )


# ---------------------------------------------------------------------------- wire counters
WIRE_COUNTERS = {
    "esp": "ip protocol esp",
    "udp4500": "udp dport 4500",
    "udp4500_reply": "udp sport 4500",
    "udp500": "udp dport 500",
}


class WireCounters:
    """nft counters on the "internet" bridge: which protocol carries the tunnels."""

    def __init__(self, topo: Topology) -> None:
        self.topo = topo
        self.table = f"{topo.prefix}wire"
        rules = "\n".join(f"    {match} counter comment {json.dumps(name)}"
                          for name, match in WIRE_COUNTERS.items())
        ruleset = (
            f"table bridge {self.table} {{\n"
            "  chain bridged {\n"
            "    type filter hook forward priority 0; policy accept;\n"
            f"{rules}\n"
            "  }\n"
            "}\n"
        )
        topo.exec(topo.inet, ["nft", "-f", "-"], input=ruleset, check=True)

    def packets(self) -> dict[str, int]:
        out = self.topo.exec(self.topo.inet, ["nft", "list", "table", "bridge", self.table],
                             check=True).stdout
        counts = {}
        for m in re.finditer(r'counter packets (\d+) bytes \d+ comment "(\w+)"', out):
            counts[m.group(2)] = int(m.group(1))
        return counts


def drop_esp_at_pat(topo: Topology) -> None:
    """Make the PAT drop ESP/AH like the document's PIX: a port translator has no
    port to translate in ESP. (Linux masquerade maps ESP 1:1 by address, so one
    client's plain ESP would otherwise cross it.)"""
    ruleset = (
        f"table ip {topo.prefix}noesp {{\n"
        "  chain filter_fw {\n"
        "    type filter hook forward priority 0; policy accept;\n"
        "    ip protocol { esp, ah } counter drop\n"
        "  }\n"
        "}\n"
    )
    topo.exec(topo.pat, ["nft", "-f", "-"], input=ruleset, check=True)


def norm(text: object) -> str:
    """'AES-256' -> 'aes256', 'HMAC-SHA1' -> 'hmacsha1': for lenient field checks."""
    return re.sub(r"[^a-z0-9]", "", str(text).lower())
