"""Scenarios of the document, run in a lab: a description first, PASS or FAIL last.

``vpnhub lab scenario NAME`` prints the scenario's paragraph, then one line
per check (``ok``, ``FAIL``, or ``WARN`` for what is worth knowing but not a
failure) and the evidence the checks looked at: ``vpnhub sessions``, the PAT's
``show xlate``, ping and iperf3 summaries, lines of the concentrator's event
log and of the clients' logs. The last line is ``PASS NAME`` or ``FAIL NAME``
and the exit status is 0 or 1.

A scenario runs in the running lab when it can do so without disturbing it
(``two-clients`` on a lab with two working clients); otherwise it builds its
own lab under a prefix of its own (``vhs`` + hex digits, so it never meets the
running lab), with the settings it needs (NAT-T off, a wrong PSK, short
lifetimes), and removes it at the end, whatever happened. Labs of scenario
runs that were killed are removed by the next scenario run.

Like strongSwan's ``testing/tests``: each scenario has a description, a
topology (the lab), steps, and checks of the hosts' output.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vpnhub.admintext import format_sessions
from vpnhub.lab import cluster, labctl
from vpnhub.lab.labctl import TUNNEL_INTERFACE, Lab, LabSpec, LabState, run_dir_for
from vpnhub.lab.topology import (
    LAN_HOST,
    PAT_OUTSIDE,
    VIRTUAL_ADDRESS,
    LabError,
    NatEntry,
    Topology,
    reap_orphaned_labs,
    wait_until,
)
from vpnhub.lab.xlate import format_xlate, natt_mappings, translations

SCENARIO_PREFIX_BASE = "vhs"  # labs built by scenarios: vhs + 5 hex digits
PING_RE = re.compile(r"(\d+) packets transmitted, (\d+) (?:packets )?received")
RTT_RE = re.compile(r"= [\d.]+/([\d.]+)/")


# ------------------------------------------------------------------------------ helpers
@dataclass(frozen=True)
class PingResult:
    sent: int
    received: int
    rtt_avg_ms: float | None
    summary: str

    @property
    def lost(self) -> int:
        return self.sent - self.received

    def __str__(self) -> str:
        if not self.sent:
            return f"no probe sent: {self.summary}"
        rtt = f", rtt avg {self.rtt_avg_ms:.2f} ms" if self.rtt_avg_ms is not None else ""
        return f"{self.received}/{self.sent} replies, {self.lost} lost{rtt}"


def parse_ping(text: str) -> PingResult:
    m = PING_RE.search(text)
    sent, received = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
    r = RTT_RE.search(text)
    summary = m.group(0) if m else " | ".join(text.strip().splitlines()[-2:])
    return PingResult(sent, received, float(r.group(1)) if r else None, summary)


def ping_argv(tun: str, count: int, interval: float, dst: str = LAN_HOST) -> list[str]:
    # -W 2: the last probe may take a moment; -c: a count, not a deadline, so that
    # no probe is cut off by the deadline and counted as lost
    return ["ping", "-n", "-q", "-c", str(count), "-i", f"{interval:g}", "-W", "2",
            "-I", tun, dst]


@dataclass
class BackgroundPing:
    """A continuous ping running in a client while the scenario does something else."""

    role: str
    popen: subprocess.Popen[str]

    def result(self, timeout: float) -> PingResult:
        try:
            out, _ = self.popen.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            out, _ = self.popen.communicate()
        return parse_ping(out)


@dataclass
class Check:
    verdict: str  # "ok" | "FAIL" | "WARN"
    what: str
    detail: str = ""


@dataclass
class Run:
    """One run of a scenario: the lab it uses, its checks and evidence."""

    scenario: Scenario
    view: LabState
    lab: Lab | None = None  # set when the scenario built the lab itself
    checks: list[Check] = field(default_factory=list)

    # -- output
    def check(self, ok: bool, what: str, detail: str = "") -> bool:
        c = Check("ok" if ok else "FAIL", what, detail)
        self.checks.append(c)
        _print_check(c)
        return ok

    def warn(self, what: str, detail: str = "") -> None:
        c = Check("WARN", what, detail)
        self.checks.append(c)
        _print_check(c)

    def evidence(self, title: str, text: str) -> None:
        print(f"  --- {title}")
        print(textwrap.indent(text.rstrip() or "(nothing)", "      "), flush=True)

    @property
    def failed(self) -> bool:
        return any(c.verdict == "FAIL" for c in self.checks)

    # -- the lab
    @property
    def state(self) -> LabState:
        return self.lab.view() if self.lab is not None else self.view

    @property
    def topo(self) -> Topology:
        return self.lab.topo if self.lab is not None else self.view.topology()

    def client(self, role: str) -> dict[str, Any]:
        return self.state.clients.get(role, {})

    def tun(self, role: str) -> str:
        return str(self.client(role).get("tun") or self.topo.host(role).tun)

    def sessions(self) -> dict[str, Any]:
        data = self.state.sessions()
        if data is None:
            raise LabError("the concentrator's admin socket does not answer")
        return data

    def session(self, user: str, data: dict[str, Any] | None = None) -> dict[str, Any] | None:
        data = data if data is not None else self.sessions()
        return next((s for s in data.get("sessions", []) if s.get("user") == user), None)

    def sessions_text(self, data: dict[str, Any] | None = None) -> str:
            return format_sessions(data if data is not None else self.sessions())

    def xlate(self) -> list[NatEntry]:
        return self.topo.pat_conntrack(proto=None)

    def conc_log(self) -> list[str]:
        try:
            return self.state.conc_log.read_text(errors="replace").splitlines()
        except OSError:
            return []

    def conc_lines(self, *needles: str, start: int = 0) -> list[str]:
        """Event log lines (from line `start` on) containing every needle."""
        return [line for line in self.conc_log()[start:] if all(n in line for n in needles)]

    def client_log(self, role: str) -> list[str]:
        path = self.client(role).get("log")
        try:
            return Path(str(path)).read_text(errors="replace").splitlines() if path else []
        except OSError:
            return []

    def ping(self, role: str, count: int = 5, interval: float = 0.2) -> PingResult:
        argv = ping_argv(self.tun(role), count, interval)
        cp = self.topo.exec(role, argv, timeout=count * interval + 10)
        return parse_ping(cp.stdout + cp.stderr)

    def start_ping(self, role: str, count: int, interval: float) -> BackgroundPing:
        argv = ["ip", "netns", "exec", self.topo.host(role).netns,
                *ping_argv(self.tun(role), count, interval)]
        return BackgroundPing(role, subprocess.Popen(argv, stdout=subprocess.PIPE,
                                                     stderr=subprocess.STDOUT, text=True))

    def roles(self) -> list[str]:
        return sorted(self.state.clients, key=lambda r: int(r[1:]))


def _print_check(c: Check) -> None:
    detail = f": {c.detail}" if c.detail else ""
    print(f"  {c.verdict:<4}  {c.what}{detail}", flush=True)


def _users(run: Run, roles: Sequence[str]) -> dict[str, str]:
    return {r: str(run.client(r).get("user", f"vpnuser{r[1:]}")) for r in roles}


# ------------------------------------------------------------------------------ scenarios
@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    description: str
    body: Callable[[Run], None]
    clients: int = 2
    natt: bool = True
    ipsec_lifetime: int = 28800
    wrong_psk: tuple[str, ...] = ()
    connect: bool = True  # the lab connects every client before the body runs
    reuse: Callable[[LabState], bool] | None = None  # may it run in the running lab?
    concentrators: int = 1
    spare_clients: int = 0

    def spec(self, prefix: str, client: str) -> LabSpec:
        return LabSpec(prefix=prefix, clients=self.clients, client=client, natt=self.natt,
                       ipsec_lifetime=self.ipsec_lifetime, wrong_psk=self.wrong_psk,
                       connect=self.connect, concentrators=self.concentrators,
                       spare_clients=self.spare_clients)


def _two_working_clients(state: LabState) -> bool:
    c = state.clients
    return (state.spec.natt and all(c.get(r, {}).get("state") == "usable" for r in ("c1", "c2")))


# -- two-clients
def two_clients(run: Run) -> None:
    roles = run.roles()[:2]
    users = _users(run, roles)
    addrs = {r: str(run.client(r).get("assigned") or "") for r in roles}
    both = all(addrs.values()) and len(set(addrs.values())) == 2
    run.check(both, "both tunnels are up, each with its own pool address",
              ", ".join(f"{r} {users[r]} {addrs[r] or '-'} on {run.tun(r)}" for r in roles))
    for r in roles:
        p = run.ping(r, count=5)
        run.check(p.received == p.sent > 0, f"{r} pings {LAN_HOST} through its tunnel", str(p))
    page = run.topo.exec(roles[0], [sys.executable, "-c",
                                    "import sys, urllib.request; print(urllib.request.urlopen("
                                    "sys.argv[1], timeout=5).read().decode().strip())",
                                    f"http://{LAN_HOST}/"], timeout=15)
    run.check(page.returncode == 0 and "192.168.2.10" in page.stdout,
              f"{roles[0]} fetches the LAN host's web page through the tunnel",
              page.stdout.strip() or page.stderr.strip()[-200:])
    data = run.sessions()
    run.evidence("vpnhub sessions", run.sessions_text(data))
    ss = {r: run.session(users[r], data) for r in roles}
    ports = {r: int(s["public_port"]) for r, s in ss.items() if s}
    run.check(all(s and s["public_ip"] == PAT_OUTSIDE for s in ss.values()),
              f"the concentrator sees both users at the PAT's one address {PAT_OUTSIDE}",
              ", ".join(f"{users[r]} {s['public_ip']}:{s['public_port']}" if s else
                        f"{users[r]} NO SESSION" for r, s in ss.items()))
    run.check(len(ports) == 2 and len(set(ports.values())) == 2,
              "... told apart only by the UDP port",
              " and ".join(str(p) for p in ports.values()))
    run.check(all(s and s.get("protocol") == "IPsec/NAT-T" and s.get("bytes_rx", 0) > 0
                  for s in ss.values()),
              "both sessions are IPsec/NAT-T and carry data",
              ", ".join(f"{users[r]} {s.get('protocol')} rx {s.get('bytes_rx')} bytes"
                        for r, s in ss.items() if s))
    entries = run.xlate()
    run.evidence("vpnhub lab xlate (the PIX's show xlate)", format_xlate(entries))
    natt = natt_mappings(entries)
    inside = {r: run.topo.host(r).addr for r in roles}
    run.check(all(inside[r] in natt for r in roles) and len(set(natt.values())) >= 2,
              "the PAT translates both clients' UDP 4500 to one address, two ports",
              ", ".join(f"{inside[r]}:4500 -> {PAT_OUTSIDE}:{natt.get(inside[r], '-')}"
                        for r in roles))
    run.check(all(natt.get(inside[r]) == ports.get(r) for r in roles),
              "each session's public port is its client's PAT translation",
              ", ".join(f"{users[r]} {ports.get(r)} = xlate {natt.get(inside[r])}"
                        for r in roles))
    _iperf_both(run, roles)


def _iperf_both(run: Run, roles: Sequence[str], seconds: int = 3) -> None:
    iperf_ports = run.state.data.get("lan", {}).get("iperf_ports") or [5201, 5202]
    procs = {}
    for i, r in enumerate(roles):
        argv = ["ip", "netns", "exec", run.topo.host(r).netns, "iperf3", "-c", LAN_HOST,
                "-p", str(iperf_ports[i % len(iperf_ports)]), "-t", str(seconds), "-J",
                "--connect-timeout", "5000"]
        procs[r] = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True)
    rates = {}
    for r, p in procs.items():
        try:
            out, _ = p.communicate(timeout=seconds + 20)
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
        rates[r] = _iperf_rate(out)
    run.check(all(v is not None and v > 0 for v in rates.values()),
              f"iperf3 through both tunnels at once ({seconds} s, TCP)",
              ", ".join(f"{r} {v / 1e6:.1f} Mbit/s" if v else f"{r} FAILED"
                        for r, v in rates.items()))


def _iperf_rate(out: str) -> float | None:
    try:
        data = json.loads(out)
        return float(data["end"]["sum_received"]["bits_per_second"])
    except (ValueError, KeyError, TypeError):
        return None


# -- nat-t-off
def _esp_dropped_at_pat(run: Run) -> int:
    out = run.topo.exec("pat", ["nft", "list", "table", "ip", f"{run.state.prefix}noesp"]).stdout
    m = re.search(r"counter packets (\d+)", out)
    return int(m.group(1)) if m else -1


def natt_off(run: Run) -> None:
    roles = run.roles()
    kind = str(run.client(roles[0]).get("kind"))
    if kind == "vpnc":
        _natt_off_tunnel_without_data(run, roles)
    else:
        _natt_off_refused_by_client(run, roles, kind)
    for r in roles:
        p = run.ping(r, count=3)
        run.check(p.received == 0, f"no data passes: {r} pings {LAN_HOST}", str(p))
    if kind == "vpnc":
        dropped = _esp_dropped_at_pat(run)
        run.check(dropped > 0, "the clients' ESP reached the PAT, which cannot translate it",
                  f"{dropped} ESP packets dropped by the PAT (nft counter)")
    said = run.conc_lines("SEV=3", "ipsec_over_natt")
    run.check(bool(said), "the concentrator's event log says why (severity 3)",
              said[0] if said else "no such line")
    entries = run.xlate()
    run.evidence("vpnhub lab xlate", format_xlate(entries))
    natt = [e for e in translations(entries) if e.inside[1] == 4500]
    run.check(not natt, "the PAT has no UDP 4500 translation: the tunnel port is 0",
              f"{len(natt)} UDP 4500 translations")


def _natt_off_tunnel_without_data(run: Run, roles: Sequence[str]) -> None:
    """vpnc: the document's symptom, the tunnel comes up and carries nothing."""
    users = _users(run, roles)
    run.check(all(run.client(r).get("assigned") for r in roles),
              "the tunnels come up (IKE on UDP 500 crosses the PAT; addresses assigned)",
              ", ".join(f"{r} {run.client(r).get('assigned') or 'NONE'}"
                        f" ({run.client(r).get('state')})" for r in roles))
    for r in roles:
        said = [ln for ln in run.client_log(r) if "NAT" in ln]
        run.check(any("no NAT-T VID" in ln for ln in said),
                  f"{r}'s vpnc: the concentrator offered no NAT-T", " | ".join(said))
    data = run.sessions()
    run.evidence("vpnhub sessions", run.sessions_text(data))
    for r in roles:
        s = run.session(users[r], data)
        run.check(s is not None and s.get("protocol") == "IPsec" and s.get("bytes_rx") == 0,
                  f"the concentrator decrypted nothing from {users[r]} (protocol IPsec, not"
                  " IPsec/NAT-T)",
                  f"protocol {s.get('protocol')}, bytes rx {s.get('bytes_rx')}" if s
                  else "NO SESSION")
        diag = str(s.get("diagnosis", "")) if s else ""
        run.check("ipsec_over_natt" in diag, f"`vpnhub sessions` says why for {users[r]}",
                  diag)


def _natt_off_refused_by_client(run: Run, roles: Sequence[str], kind: str) -> None:
    """Clients that know better: vpnhub stops at negotiation time and says why;
    the lab's strongSwan (kernel-libipsec: ESP in UDP only) cannot install plain ESP."""
    expect = {"vpnhub": "did not offer NAT-T",
              "strongswan": "only UDP encapsulation is supported"}.get(kind, "NAT")
    for r in roles:
        c = run.client(r)
        said = [ln for ln in run.client_log(r) if expect in ln]
        run.check(c.get("state") == "failed" and bool(said),
                  f"{r}'s {kind} client does not bring the tunnel up, and says why",
                  (said[-1] if said else str(c.get("detail")))[-300:])


# -- wrong-psk
def wrong_psk(run: Run) -> None:
    lab = run.lab
    assert lab is not None
    good = lab.start_client("c2")
    lab.connect(good)
    lab.check_usable(good)
    run.check(good.state == "usable", "c2 (right group key) connects and reaches the LAN",
              f"{good.user} {good.assigned} on {good.tun}: {good.detail}")
    t0 = time.monotonic()
    bad = lab.start_client("c1")  # the spec gives c1 a wrong key
    try:
        lab.connect(bad, timeout=20.0)
        refused = False
    except LabError:
        refused = True
    gave_up = time.monotonic() - t0
    why = (bad.exited() or bad.detail or "").replace("\n", " | ")
    run.check(refused and bool(why), f"c1 (wrong group key) is refused ({gave_up:.1f} s)",
              why[-300:])
    auth = [ln for ln in run.client_log("c1") if re.search(
        r"hash|group password|authenticat|AUTHENTICATION", ln, re.IGNORECASE)]
    run.check(bool(auth), "c1's client names the cause", " | ".join(auth[-3:]))
    addr = labctl.tunnel_address(run.topo, "c1", bad.tun)
    run.check(not addr, "c1 has no tunnel", f"{bad.tun}: {addr or 'no address'}")
    data = run.sessions()
    run.evidence("vpnhub sessions", run.sessions_text(data))
    run.check(run.session("vpnuser1", data) is None and run.session("vpnuser2", data)
              is not None, "the concentrator lists vpnuser2 only")
    entries = run.xlate()
    port = next((e.outside[1] for e in translations(entries)
                 if e.inside == (run.topo.host("c1").addr, 500)), None)
    stats = labctl.admin_request(run.state.admin_socket, {"cmd": "stats"}) or {}
    held = int(stats.get("half_open", 0))
    run.evidence("concentrator stats right after", json.dumps(stats) + (
        "\nc1's Aggressive Mode is half-open: message 3 never came" if held else
        "\nno half-open SA: the client ended the negotiation"))
    t1 = time.monotonic()
    with contextlib.suppress(TimeoutError):
        wait_until(lambda: int((labctl.admin_request(run.state.admin_socket, {"cmd": "stats"})
                                or {}).get("half_open", 1)) == 0, 45.0, interval=0.5,
                   what="the half-open SA to expire")
    stats = labctl.admin_request(run.state.admin_socket, {"cmd": "stats"}) or {}
    run.check(int(stats.get("half_open", 1)) == 0,
              "the concentrator keeps nothing of c1's negotiation (phase 1 timeout)",
              f"after {time.monotonic() - t1 + gave_up:.0f} s; drops {stats.get('endpoint_drops')}")
    said = run.conc_lines(f"peer={PAT_OUTSIDE}:{port} ") if port else []
    if said:
        run.check(True, "the concentrator's event log names c1's failed negotiation",
                  " | ".join(said[-3:]))
    else:
        run.warn("the concentrator's event log (severity <= 5) says nothing about c1's failed"
                 " negotiation", f"no line for peer {PAT_OUTSIDE}:{port}: an administrator"
                 " cannot see why the client failed")


# -- rekey
def rekey(run: Run) -> None:
    role = "c1"
    user = _users(run, [role])[role]
    lifetime = run.state.spec.ipsec_lifetime
    before = run.session(user) or {}
    spis_before = {c["spi_in"] for c in before.get("ipsec", [])}
    run.check(bool(spis_before), f"{user}'s tunnel is up with IPsec lifetime {lifetime} s",
              f"inbound SPIs {', '.join(sorted(spis_before))}")
    port_before = before.get("public_port")
    established = time.monotonic()
    mark = len(run.conc_log())
    interval = 0.2
    duration = lifetime + 10  # past the rekey (92 %) and the old SA's expiry
    count = int(duration / interval)
    print(f"  ...   pinging {LAN_HOST} from {role} every {interval:g} s for {duration} s"
          " (over one IPsec lifetime)", flush=True)
    p = run.start_ping(role, count, interval).result(timeout=duration * 2 + 30)
    run.check(p.sent > 0 and p.lost <= 2,
              "a continuous ping across the rekey loses nothing or almost nothing", str(p))
    after = run.session(user) or {}
    spis_after = {c["spi_in"] for c in after.get("ipsec", [])}
    log = run.conc_log()[mark:]
    rekeyed = [ln for ln in log if "rekeyed:" in ln]
    expired = [ln for ln in log if "lifetime expired" in ln]
    run.evidence("concentrator event log during the ping (IPSEC)",
                 "\n".join(ln for ln in log if " IPSEC " in ln or " IKE " in ln))
    run.check(bool(rekeyed), "the concentrator rekeyed the IPsec SA for vpnc",
              rekeyed[0] if rekeyed else f"no 'rekeyed' line; {len(expired)} SA(s) expired")
    if rekeyed and expired:
        first_rekey, first_expiry = log.index(rekeyed[0]), log.index(expired[0])
        run.check(first_rekey < first_expiry, "... before the old SA expired")
    run.check(bool(spis_after) and not spis_after & spis_before,
              f"{user}'s session has new SPIs",
              f"{', '.join(sorted(spis_before))} -> {', '.join(sorted(spis_after)) or 'none'}")
    run.check(bool(spis_after) and after.get("bytes_rx", 0) > 0
              and after.get("decrypt_failures", 0) == 0,
              "the new SA carries the traffic (no decrypt failures)",
              f"bytes rx {after.get('bytes_rx')}, decrypt failures"
              f" {after.get('decrypt_failures')}, drops {after.get('drops')}")
    # the document: "later rekeys use the same source and destination ports"
    natt = natt_mappings(run.xlate())
    run.check(after.get("public_port") == port_before == natt.get(run.topo.host(role).addr),
              "the rekey used the same UDP ports (the PAT's mapping did not change)",
              f"{PAT_OUTSIDE}:{after.get('public_port')} -> 4500 before and after")
    vpnc_alive = run.client(role).get("state") in ("usable", "connected") and \
        run.lab is not None and run.lab.clients[role].exited() is None
    run.check(vpnc_alive and after.get("login_time") == before.get("login_time"),
              "the same session and client process throughout",
              f"login {after.get('login_time')}, {time.monotonic() - established:.0f} s")
    run.evidence("vpnhub sessions", run.sessions_text())


# -- client-moves
def client_moves(run: Run) -> None:
    roles = run.roles()[:2]
    users = _users(run, roles)
    inside = {r: run.topo.host(r).addr for r in roles}
    interval, count = 0.1, 100
    pings = [run.start_ping(r, count, interval) for r in roles]
    time.sleep(2.0)
    before_x = natt_mappings(run.xlate())
    before = run.sessions()
    old = {r: (run.session(users[r], before) or {}).get("public_port") for r in roles}
    run.evidence("before: vpnhub lab xlate", format_xlate(run.xlate()))
    run.check(all(old[r] == before_x.get(inside[r]) for r in roles),
              "before: each session's port is its client's translation",
              ", ".join(f"{users[r]} {old[r]}" for r in roles))
    mark = len(run.conc_log())
    run.topo.flush_pat_conntrack()
    print("  ...   flushed the PAT's conntrack table (conntrack -F): every mapping is gone",
          flush=True)
    time.sleep(3.0)
    after_x = natt_mappings(run.xlate())
    after = run.sessions()
    new = {r: (run.session(users[r], after) or {}).get("public_port") for r in roles}
    run.evidence("after: vpnhub lab xlate", format_xlate(run.xlate()))
    run.check(all(after_x.get(inside[r]) not in (None, before_x.get(inside[r]))
                  for r in roles), "the PAT picked new ports",
              ", ".join(f"{inside[r]}:4500 {before_x.get(inside[r])} -> {after_x.get(inside[r])}"
                        for r in roles))
    run.check(all(new[r] == after_x.get(inside[r]) and new[r] != old[r] for r in roles),
              "each session followed its own client to the new port (sessions --json)",
              ", ".join(f"{users[r]} public_port {old[r]} -> {new[r]}" for r in roles))
    said = [ln for ln in run.conc_log()[mark:] if "new NAT mapping" in ln or "moved" in ln]
    run.check(all(any(f"user={users[r]} " in ln for ln in said) for r in roles),
              "the concentrator logs that it followed", " | ".join(said[:2]))
    for r, bp in zip(roles, pings, strict=True):
        p = bp.result(timeout=count * interval + 30)
        run.check(p.sent > 0 and p.lost <= 3, f"{r}'s continuous ping keeps flowing", str(p))
    run.evidence("vpnhub sessions", run.sessions_text())


# -- cluster
RECOVERY_TIMEOUT = 150.0  # vpnc notices a dead member after 10 s idle + 6 DPD tries 5 s apart


def cluster_sessions(run: Run) -> list[dict[str, Any]]:
    """`vpnhub sessions --cluster --json`'s sessions (every member's, with `member`)."""
    data, who = run.state.cluster_sessions()
    if data is None:
        raise LabError(f"vpnhub sessions --cluster --json: {who}")
    return [x for x in data.get("sessions", []) if isinstance(x, dict)]


def cluster_table(sessions: Sequence[dict[str, Any]]) -> str:
    rows = sorted(sessions, key=lambda x: (str(x.get("member")), str(x.get("user"))))
    return "\n".join(f"{x.get('member', '?'):<4} {x.get('user', '?'):<10}"
                     f" {x.get('assigned_ip') or '-':<12}"
                     f" {x.get('public_ip', '?')}:{x.get('public_port', '?')}" for x in rows)


def _spread_text(by_member: dict[str, list[str]], members: Sequence[str]) -> str:
    return ", ".join(f"{m} {len(by_member.get(m, []))} ({' '.join(sorted(by_member.get(m, [])))})"
                     for m in members)


def check_spread(run: Run, roles: Sequence[str], members: Sequence[str]) -> None:
    """Every client in the cluster-wide list with its member, spread by the ASA rule;
    each passes traffic; every address unique cluster-wide and routed by its member."""
    users = _users(run, roles)
    sessions = cluster_sessions(run)
    run.evidence("vpnhub sessions --cluster --json (member, user, address, public)",
                 cluster_table(sessions))
    listed = {str(x.get("user")): x for x in sessions}
    run.check(all(u in listed and listed[u].get("member") for u in users.values()),
              f"the cluster-wide session list shows all {len(roles)} clients with their"
              " member", f"{len(sessions)} sessions")
    by_member: dict[str, list[str]] = {}
    for x in sessions:
        by_member.setdefault(str(x.get("member")), []).append(str(x.get("user")))
    counts = [len(by_member.get(m, [])) for m in members]
    run.check(min(counts) >= 1 and max(counts) - min(counts) <= 1,
              f"the clients are spread over the {len(members)} members (least loaded first,"
              " kept until another is 1 point lower)", _spread_text(by_member, members))
    for r in roles:
        p = run.ping(r, count=3)
        run.check(p.received == p.sent > 0, f"{r} ({users[r]}) pings {LAN_HOST} through its"
                  f" tunnel", str(p))
    check_unique(run, sessions)
    check_block_routes(run, sessions, members)


def check_unique(run: Run, sessions: Sequence[dict[str, Any]]) -> None:
    addrs = [str(x.get("assigned_ip") or "") for x in sessions]
    dup = sorted(a for a, n in Counter(addrs).items() if n > 1 or not a)
    run.check(not dup and bool(addrs), "every client's address is unique cluster-wide",
              f"{len(addrs)} addresses, {len(set(addrs))} distinct"
              + (f"; twice or empty: {', '.join(dup)}" if dup else ""))


def check_block_routes(run: Run, sessions: Sequence[dict[str, Any]],
                       members: Sequence[str]) -> None:
    """A member routes (and answers ARP for) its own clients' addresses only."""
    wrong = []
    for x in sessions:
        addr, owner = str(x.get("assigned_ip") or ""), str(x.get("member"))
        for m in members:
            if m in run.state.cluster.get("members", {}) and _member_dead(run, m):
                continue
            out = run.topo.exec(m, ["ip", "-4", "route", "get", addr]).stdout
            on_tun = f"dev {TUNNEL_INTERFACE}" in out
            if on_tun != (m == owner):
                wrong.append(f"{m}: {addr} of {owner}: {out.strip() or 'no route'}")
    routes = "\n".join(
        f"{m}: " + " ".join(run.topo.exec(m, ["ip", "-4", "route", "show", "dev",
                                              TUNNEL_INTERFACE]).stdout.split())
        for m in members if not _member_dead(run, m))
    run.evidence("the members' routes to their TUN (their own address blocks)", routes)
    run.check(not wrong, "each client's address is routed to its own member's TUN only"
              " (the LAN host reaches it by proxy ARP)", "; ".join(wrong[:3]))


def _member_dead(run: Run, member: str) -> bool:
    return bool(run.state.cluster.get("members", {}).get(member, {}).get("killed"))


def wait_all_usable(run: Run, roles: Sequence[str], since: float,
                    timeout: float = RECOVERY_TIMEOUT,
                    first: dict[str, Callable[[], bool]] | None = None,
                    ) -> dict[str, float | None]:
    """Seconds after `since` (monotonic) at which each client's ping through its
    tunnel was answered (None: not within timeout); the clients are probed at once.

    `first[role]`: wait until it is true before probing `role` (its client has
    connected again). vpnc runs DPD only when its loop has been idle: probes into
    a dead tunnel (and the ICMP errors they draw) would keep it from ever
    noticing the dead peer."""
    done: dict[str, float | None] = {}
    first = first or {}

    def probe(role: str) -> None:
        try:
            if role in first:
                wait_until(first[role], max(1.0, since + timeout - time.monotonic()),
                           interval=0.1, what=f"{role}'s client to connect again")
            run.topo.wait_ping(role, LAN_HOST, interface=run.tun(role),
                               timeout=max(1.0, since + timeout - time.monotonic()))
            done[role] = time.monotonic() - since
        except (TimeoutError, LabError):
            done[role] = None

    threads = [threading.Thread(target=probe, args=(r,), daemon=True) for r in roles]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 30)
    return {r: done.get(r) for r in roles}


def check_master_failure(run: Run, roles: Sequence[str], members: Sequence[str],
                         spare: str | None) -> dict[str, float]:
    """SIGKILL the VRRP master's vpnhub; the address moves, a new client connects, every
    client comes back and passes traffic; nothing of the dead member is left.
    Returns the figures measured (seconds)."""
    lab = run.lab
    assert lab is not None
    users = _users(run, roles)
    master = lab.master()
    run.check(master is not None, f"one member holds the virtual address {VIRTUAL_ADDRESS}",
              f"{master}")
    if master is None:
        return {}
    before = cluster_sessions(run)
    victims = sorted(str(x.get("user")) for x in before if x.get("member") == master)
    print(f"  ...   SIGKILL of {master}'s vpnhub (pid {lab.members[master].pid}), the VRRP"
          f" master; its clients: {', '.join(victims) or 'none'}", flush=True)
    t0 = lab.kill_member(master)
    figures: dict[str, float] = {}
    try:
        new = cluster.wait_master(run.topo, 30.0, exclude=(master,))
        figures["vip_moved"] = time.monotonic() - t0
        run.check(True, f"the virtual address moved from {master} to {new}",
                  f"{figures['vip_moved']:.1f} s after the kill")
    except TimeoutError as e:
        run.check(False, "the virtual address moved to another member", str(e))
    run.evidence(f"keepalived on {master} and the others (VRRP states)", "\n".join(
        f"{k}: " + ", ".join(f"{st} at {t - lab.killed.get(master, t):+.1f} s"
                             for t, st in ka.transitions()[-3:])
        for k, ka in lab.vrrp.items()))
    if spare is not None:
        c = lab.start_client(spare)
        try:
            lab.connect(c, timeout=60.0)
            ok = lab.check_usable(c, timeout=20.0)
        except LabError as e:
            ok, c.detail = False, str(e)
        figures["new_client"] = time.monotonic() - t0
        run.check(ok, f"a new client ({spare}, {c.user}) connects through the virtual address"
                  " meanwhile and passes traffic",
                  f"{c.assigned or '-'} after {figures['new_client']:.1f} s: {c.detail}")
        roles = [*roles, spare]
        users[spare] = c.user
    victim_roles = [r for r in roles if users[r] in victims]
    back = wait_all_usable(run, roles, t0, first={
        r: _reconnected(lab, r, lab.killed[master]) for r in victim_roles})
    late = [r for r, t in back.items() if t is None]
    if not late:
        figures["full_recovery"] = max(t for t in back.values() if t is not None)
    run.check(not late, "every client passes traffic again (the dead member's clients"
              " reconnect through the virtual address: vpnc DPD, then its restart loop)",
              (f"full recovery {figures['full_recovery']:.1f} s after the kill; " if not late
               else f"NOT back within {RECOVERY_TIMEOUT:g} s: {', '.join(late)}; ")
              + ", ".join(f"{r}{'*' if r in victim_roles else ''} {t:.1f} s" if t is not None
                          else f"{r}* never" for r, t in back.items()) + " (* on the dead"
              " member)")
    lab.save_state()
    check_after_failure(run, roles, members, master)
    return figures


def _reconnected(lab: Lab, role: str, since: float) -> Callable[[], bool]:
    """True once `role`'s vpnc has configured its tunnel again after `since` (wall
    time): the lab's vpnc-script rewrites vpnc-env-<role>-connect.txt each time."""
    c = lab.clients[role]
    path = c.vpnc.env_dir / f"vpnc-env-{role}-connect.txt" if c.vpnc else None

    def again() -> bool:
        try:
            return path is not None and path.stat().st_mtime > since
        except OSError:
            return False

    return again


def check_after_failure(run: Run, roles: Sequence[str], members: Sequence[str],
                        dead: str) -> None:
    """The directory after the failure: every client once, none on the dead member,
    every address unique, no lease of the dead member left."""
    users = set(_users(run, roles).values())
    alive = [m for m in members if m != dead]
    lab = run.lab

    def settled() -> list[dict[str, Any]] | None:
        x = cluster_sessions(run)
        listed = [str(s.get("user")) for s in x]
        on_dead = [s for s in x if s.get("member") == dead]
        return x if set(listed) == users and not on_dead and lab_leases_clean(lab, dead) \
            else None

    with contextlib.suppress(TimeoutError, LabError):
        wait_until(settled, 30.0, interval=1.0, what="the directory to settle")
    sessions = cluster_sessions(run)
    run.evidence("after: vpnhub sessions --cluster --json", cluster_table(sessions))
    listed = Counter(str(x.get("user")) for x in sessions)
    run.check(set(listed) == users and all(n == 1 for n in listed.values()),
              f"the cluster-wide list shows every client once ({len(users)})",
              ", ".join(f"{u} x{n}" for u, n in sorted(listed.items()) if n != 1)
              or f"{len(sessions)} sessions")
    on_dead = [str(x.get("user")) for x in sessions if x.get("member") == dead]
    run.check(not on_dead, f"no session is left on the dead member {dead}",
              ", ".join(on_dead) or _spread_text(
                  {m: [str(x.get("user")) for x in sessions if x.get("member") == m]
                   for m in alive}, alive))
    check_unique(run, sessions)
    leases = lab_leases(lab)
    if leases is not None:
        mine = [a for a, m in leases if m == dead]
        dup = [a for a, n in Counter(a for a, _ in leases).items() if n > 1]
        run.evidence("the directory's leases (address, member)",
                     " ".join(f"{a}@{m}" for a, m in sorted(leases)))
        run.check(not mine and not dup, f"no lease of {dead} is left, none twice",
                  f"{len(leases)} leases" + (f"; {dead}'s: {', '.join(mine)}" if mine else "")
                  + (f"; twice: {', '.join(dup)}" if dup else ""))
    check_block_routes(run, sessions, alive)
    run.evidence("vpnhub lab xlate (the PAT's translations, to the members and the"
                 " virtual address)", format_xlate(run.xlate()))


def lab_leases(lab: Lab | None) -> list[tuple[str, str]] | None:
    """(address, member) of every lease in the cluster's directory (None: unknown)."""
    if lab is None or lab.pg is None or not lab.pg.running():
        return None
    try:
        return cluster.leases(lab.pg)
    except LabError:
        return None


def lab_leases_clean(lab: Lab | None, dead: str) -> bool:
    leases = lab_leases(lab)
    return leases is None or not any(m == dead for _, m in leases)


def cluster_story(run: Run) -> None:
    state = run.state
    members = sorted(state.cluster.get("members", {}))
    roles = run.roles()
    spare = next((h.role for h in run.topo.clients if h.role not in roles), None)
    run.check(len(members) > 1, f"a cluster of {len(members)} members behind"
              f" {VIRTUAL_ADDRESS}", ", ".join(
                  f"{m} {state.cluster['members'][m]['public']}" for m in members))
    check_spread(run, roles, members)
    run.evidence("vpnhub lab xlate (the PAT's show xlate)", format_xlate(run.xlate()))
    figures = check_master_failure(run, roles, members, spare)
    if figures:
        run.evidence("figures", ", ".join(f"{k.replace('_', ' ')} {v:.1f} s"
                                          for k, v in figures.items()))


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario(
        "two-clients", "the document's main story: two clients behind one PAT, both tunnelling",
        "The document's main story. Two PCs, 10.10.10.2 and 10.10.10.3, sit behind one PAT"
        " device that rewrites both to the one public address 203.0.113.78; only the UDP"
        " source port tells them apart. Both run a Cisco-compatible client with transparent"
        " tunneling, negotiate NAT-T (RFC 3947) with the concentrator at 203.0.113.50 and"
        " tunnel at the same time to the private LAN 192.168.2.0/24. Checked: both tunnels up"
        " with their own pool addresses; pings and the LAN host's web page through each; the"
        " Remote Access Sessions show both users at 203.0.113.78 with two ports and"
        " IPsec/NAT-T; the PAT's show xlate holds two UDP 4500 translations whose ports are"
        " the sessions' ports; iperf3 through both tunnels at once.",
        two_clients, reuse=_two_working_clients),
    Scenario(
        "nat-t-off", "the failure the document warns about: NAT-T off, tunnel up, no data",
        "The failure the document warns about. The clients tunnel transparently, but the"
        " concentrator has NAT-T disabled (ipsec_over_natt = false, the VPN 3000's default)."
        " IKE on UDP 500 crosses the PAT, so the tunnel comes up and the clients get their"
        " addresses; ESP then travels bare (IP protocol 50), which a PAT cannot translate, so"
        " no data passes: the tunnel port is 0, the concentrator decrypts nothing, bytes rx"
        " stay 0. Checked (vpnc): tunnels up; no ping reaches 192.168.2.10; the PAT has no"
        " UDP 4500 translation and dropped the clients' ESP; and the concentrator says why,"
        " in plain words, in its event log and in `vpnhub sessions`. The vpnhub client"
        " detects it at negotiation time and refuses the tunnel, saying why.",
        natt_off, natt=False),
    Scenario(
        "wrong-psk", "a client with the wrong group key is refused, the other is not disturbed",
        "A client configured with the wrong group password (pre-shared key), next to one with"
        " the right key behind the same PAT. In Aggressive Mode the concentrator"
        " authenticates first (HASH_R in message 2, computed with its key), so the client is"
        " the one that sees the mismatch and gives up. Checked: c2 (right key) connects and"
        " reaches 192.168.2.10; c1 (wrong key) is refused, its client names the cause, it has"
        " no tunnel; the concentrator lists vpnuser2 only, holds c1's negotiation half-open"
        " and drops it when phase 1 times out; and what its event log says about it.",
        wrong_psk, wrong_psk=("c1",), connect=False),
    Scenario(
        "rekey", "IPsec SAs are rekeyed while traffic flows (for vpnc, by the concentrator)",
        "IPsec SAs expire; the generated configuration sets ipsec_lifetime = 30 s. vpnc never"
        " starts a rekey itself, so the concentrator must start a Quick Mode before the SA"
        " expires (at 92 % of the lifetime) and move both directions to the new SA while"
        " traffic flows, then delete the old one. Checked: a continuous ping from c1 through"
        " its tunnel over more than one lifetime loses nothing or almost nothing; the"
        " concentrator logs the rekey before the old SA expires; the session has new SPIs, the"
        " new SA carries the traffic without decrypt failures, and it is the same session"
        " and client process.",
        rekey, clients=1, ipsec_lifetime=30),
    Scenario(
        "client-moves", "the PAT loses its mappings mid-session: the sessions follow the ports",
        "The PAT forgets its translations in the middle of a session (a PAT reboot or an"
        " expired mapping: the scenario flushes the PAT's conntrack table) while both clients"
        " send. Their next packets leave with new random public ports. The concentrator must"
        " follow each authenticated peer to its new port (RFC 3947 section 5, RFC 3948 2.2),"
        " keyed on address AND port, without mixing up the two clients behind the one"
        " address. Checked: the PAT's translations change; each session's public port in"
        " `vpnhub sessions --json` becomes its own client's new port; the concentrator logs"
        " that it followed; continuous pings from both clients lose almost nothing.",
        client_moves),
    Scenario(
        "cluster", "a cluster of three behind one virtual address: spread, failure, recovery",
        "Three concentrators m1, m2, m3 (203.0.113.51 .. 53) share the virtual address"
        " 203.0.113.50, which keepalived (VRRP) gives to one of them; their directory,"
        " address blocks and leases live in PostgreSQL (192.168.2.5). Six vpnc clients"
        " behind the one PAT connect to the virtual address; the member holding it sends"
        " each to the least-loaded member (Cisco load-balance notify 40501). Checked: the"
        " cluster-wide session list (`vpnhub sessions --cluster --json`) shows all six with"
        " their member, spread 2/2/2; each pings 192.168.2.10; every address is unique and"
        " routed by its own member only. Then the VRRP master's vpnhub is killed (SIGKILL):"
        " the virtual address moves (time measured), a seventh client connects meanwhile,"
        " the dead member's clients notice by DPD, reconnect through the virtual address and"
        " pass traffic again (time to full recovery measured); no address is given twice and"
        " no lease of the dead member is left.",
        cluster_story, clients=6, concentrators=3, spare_clients=1),
)}


def list_text() -> str:
    width = max(len(n) for n in SCENARIOS)
    lines = ["scenarios (vpnhub lab scenario NAME):"]
    lines += [f"  {s.name:<{width}}  {s.title}" for s in SCENARIOS.values()]
    return "\n".join(lines)


# ------------------------------------------------------------------------------ running
def _unique_prefix() -> str:
    return f"{SCENARIO_PREFIX_BASE}{secrets.token_hex(3)[:5]}"


def _term_to_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_scenario(name: str, *, running_prefix: str, client: str = "vpnc", fresh: bool = False,
                 own_prefix: str | None = None, save_logs: Path | None = None) -> int:
    """Run scenario `name`; prints everything; returns 0 (PASS) or 1 (FAIL)."""
    sc = SCENARIOS[name]
    t0 = time.monotonic()
    print(f"== scenario {sc.name}: {sc.title}\n")
    print(textwrap.fill(sc.description, 78) + "\n", flush=True)
    state = LabState.load(running_prefix)
    if (not fresh and sc.reuse is not None and state is not None and state.phase == "up"
            and state.running() and state.spec.client == client and sc.reuse(state)):
        print(f"lab: the running lab {state.prefix} ({state.spec.describe()})\n", flush=True)
        run = Run(sc, state)
        _body(run)
    else:
        run = _in_own_lab(sc, own_prefix or _unique_prefix(), client, save_logs)
    return _verdict(run, time.monotonic() - t0)


def _body(run: Run) -> None:
    try:
        run.scenario.body(run)
    except (LabError, TimeoutError, OSError, subprocess.SubprocessError) as e:
        run.check(False, "the scenario ran to its end", f"{type(e).__name__}: {e}")


def _in_own_lab(sc: Scenario, prefix: str, client: str, save_logs: Path | None) -> Run:
    reap_orphaned_labs(SCENARIO_PREFIX_BASE)  # scenario labs of killed runs
    spec = sc.spec(prefix, client)
    old = signal.signal(signal.SIGTERM, _term_to_interrupt)

    def progress(text: str) -> None:
        if not text.endswith("..."):
            print("  " + text.removeprefix("[lab] "), flush=True)

    lab = Lab(spec, progress=progress, owner="scenario")
    run = Run(sc, lab.view(), lab)
    print(f"lab: building {prefix} for this scenario ({spec.describe()})", flush=True)
    try:
        try:
            lab.build()
            if spec.connect:
                lab.connect_all()
            lab.phase, lab.ready_at = "up", time.time()
            lab.save_state()
        except (LabError, TimeoutError, OSError) as e:
            run.check(False, f"lab {prefix} is built", f"{type(e).__name__}: {e}")
        print(flush=True)
        if not run.failed:
            _body(run)
        if run.failed:
            _show_logs(run)
        if save_logs is not None:
            copy_logs(lab, save_logs)
    finally:
        t = time.monotonic()
        lab.down()
        shutil.rmtree(run_dir_for(prefix), ignore_errors=True)
        with contextlib.suppress(OSError):
            labctl.RUN_ROOT.rmdir()  # only if empty
        print(f"\nlab {prefix} removed ({time.monotonic() - t:.1f} s)")
        signal.signal(signal.SIGTERM, old)
    return run


def _show_logs(run: Run) -> None:
    logs = [("concentrator", run.state.conc_log)]
    logs += [(f"{r} ({c.get('kind')})", Path(str(c.get("log")))) for r, c in
             sorted(run.state.clients.items())]
    for title, path in logs:
        run.evidence(f"{title} log, last lines: {path}",
                     "\n".join(labctl.collapse_esp_lines(_lines(path))[-25:]))


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()
    except OSError:
        return ["(no log)"]


def copy_logs(lab: Lab, dest: Path) -> None:
    """Copy the lab's logs (not its configuration files: they hold the secrets)."""
    dest.mkdir(parents=True, exist_ok=True)
    for f in lab.run_dir.rglob("*.log"):
        target = dest / f.relative_to(lab.run_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            shutil.copyfile(f, target)


def _verdict(run: Run, elapsed: float) -> int:
    ok = sum(c.verdict == "ok" for c in run.checks)
    failed = [c for c in run.checks if c.verdict == "FAIL"]
    warned = sum(c.verdict == "WARN" for c in run.checks)
    verdict = "FAIL" if failed or not ok else "PASS"
    extra = f", {warned} warning{'s' if warned != 1 else ''}" if warned else ""
    print(f"\n{verdict} {run.scenario.name}: {ok}/{ok + len(failed)} checks passed{extra}"
          f" ({elapsed:.1f} s)")
    for c in failed:
        print(f"  failed: {c.what}" + (f": {c.detail}" if c.detail else ""))
    return 1 if verdict == "FAIL" else 0
