"""Handshake rate of a cluster against one member, in one run (issue 17).

    sudo .venv/bin/python bench/cluster_handshake.py [--tunnels 600] [--concurrency 64]
        [--runs 3] [--members 3] [--setups single,member,cluster] [--json out.json]
        [--markdown out.md] [--smoke]

One lab with ``--members`` cluster members (``Topology(concentrators=N)``:
m1..mN, keepalived on each, PostgreSQL 15 in its own namespace) and one
client namespace behind the PAT where the load generator
(``python -m vpnhub.tools.loadgen``, as in bench/handshake.py: Aggressive Mode,
XAUTH, Mode Config, Quick Mode, DH group 14, one UDP socket per client) runs.
The setups take turns in every round, so all see the same drift of a shared
machine; each is started fresh for its run and stopped after it:

- ``single``: m1's ``vpnhub serve`` without ``[cluster]`` (no database), the
  load generator to m1's own address: what the database costs, by difference;
- ``member``: a cluster of one: m1 with ``[cluster]`` and PostgreSQL, the load
  generator to m1's own address (a phase 1 there is never redirected): the
  per-member rate;
- ``cluster``: all members with ``load_balancing = true``, the load generator to
  the virtual address, following the Cisco load-balance redirects (notify
  40501): each client does phase 1 on the master, is sent to the least-loaded
  member (the master included, at its own address) and does phase 1, XAUTH,
  Mode Config and Quick Mode again there;
- ``cluster-nolb``: all members with ``load_balancing = false``, the load
  generator to the virtual address: the master serves every client there
  (the directory's and the other members' heartbeats' cost, no redirect).

Per run: tunnels/s and p50/p99 set-up time (the load generator's), redirects
followed (the load generator's count, and the master's ``to_member`` /
``to_self`` counters), the sessions per member (the cluster directory, read
while the tunnels are up), CPU seconds per tunnel of every member process and
of PostgreSQL (each process tree: the process, its live descendants and the
children it reaped, from /proc) over the set-up, and PostgreSQL's writes
(commits, rows inserted/updated/deleted in the vpnhub database,
``pg_stat_database``) per tunnel, login and logout (the teardown) together,
heartbeats included. Median and range per setup, and the ratio of the
cluster's tunnels/s to the member's, per round.

On the 2-core test machine every member shares the same 2 cores with the
others and with the load generator: the ratio shows what the redirect costs
(phase 1 twice per client), not how a cluster scales. The results file turns
the measured per-member CPU into the projection for N members on N machines.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    PYTHON,
    Concentrator,
    environment,
    lab_prefix,
    log,
    run_dir_for,
    summary,
    vpnhub_config,
    write_json,
)
from handshake import N_USERS, POOL, loadgen_argv, udp_counters, udp_delta, wait_event

from vpnhub.lab import cluster
from vpnhub.lab.topology import VIRTUAL_ADDRESS, Host, LabError, Topology, wait_until

SETUPS = ("single", "member", "cluster", "cluster-nolb")
HEARTBEAT = 0.5  # the lab's: the master's view of the members' load stays fresh
MEMBER_TIMEOUT = 3.0
HOLD = 3.0  # seconds the load generator holds the tunnels: the spread is read then


# ----------------------------------------------------------------------------- CPU
def _stat(pid: int) -> tuple[int, float, float] | None:
    """(ppid, own utime+stime, reaped children's cutime+cstime) in seconds."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    f = text.rsplit(")", 1)[1].split()
    hz = os.sysconf("SC_CLK_TCK")
    return int(f[1]), (int(f[11]) + int(f[12])) / hz, (int(f[13]) + int(f[14])) / hz


def tree_cpu(roots: list[int]) -> float:
    """CPU seconds of each root's process tree: the processes, their live descendants
    and every child they reaped (cutime/cstime), so PostgreSQL's backends and a
    member's data-plane workers count, also those that came and went."""
    stats: dict[int, tuple[int, float, float]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and (st := _stat(int(d.name))) is not None:
            stats[int(d.name)] = st
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, [r for r in roots if r in stats]
    while todo:
        pid = todo.pop()
        total += stats[pid][1] + stats[pid][2]
        todo += children.get(pid, [])
    return total


def loadavg() -> list[str]:
    return Path("/proc/loadavg").read_text().split()[:3]


# ----------------------------------------------------------------------------- the lab
class Lab:
    """The members, their database and keepalived, started per setup."""

    def __init__(self, topo: Topology, tunnels: int) -> None:
        self.topo = topo
        self.pg = cluster.new_postgres(topo)
        self.pg.init()
        self.vrrp = {m.role: cluster.start_keepalived(topo, m) for m in topo.members}
        # one member must hold every tunnel (the cluster of one), and the master also
        # every client it redirected in the last 10 s (it keeps their SAs for a repeated
        # notify, informational.REDIRECT_LINGER, and they count against max_sessions: at
        # tunnels + 10 it refused first messages and the clients waited for their
        # retransmissions); the balancing rule waits for 1 % of it (~20 at 600 tunnels)
        self.max_sessions = max(3 * tunnels + 100, 40)
        self.running: dict[str, Concentrator] = {}
        self.master = topo.members[0].role  # the VRRP master of the running setup

    def config(self, m: Host, setup: str) -> Path:
        files = self.topo.run_dir / m.role
        files.mkdir(parents=True, exist_ok=True)
        extra = ""
        if setup != "single":
            extra = (f'\n[cluster]\ndsn = "{self.pg.dsn}"\nmember = "{m.role}"\n'
                     f'virtual_address = "{VIRTUAL_ADDRESS}"\npublic_address = "{m.addr}"\n'
                     f"heartbeat = {HEARTBEAT}\nmember_timeout = {MEMBER_TIMEOUT}\n"
                     f"load_balancing = {'false' if setup == 'cluster-nolb' else 'true'}\n")
        return vpnhub_config(self.topo.run_dir, pool=POOL, n_users=N_USERS,
                             half_open_per_source=1_000_000, half_open_total=1_000_000,
                             max_sessions=self.max_sessions, public=m.addr, files=files,
                             extra_sections=extra)

    def start(self, setup: str) -> str:
        """Start the setup's members; returns the address the load generator uses."""
        members = self.topo.members if setup.startswith("cluster") else self.topo.members[:1]
        for m in members:
            conf = self.config(m, setup)
            sock = conf.parent / "admin.sock"
            sock.unlink(missing_ok=True)
            proc = self.topo.spawn(m, [PYTHON, "-m", "vpnhub", "serve", "--config", str(conf)],
                                   conf.parent / f"serve-{setup}.log", name=f"vpnhub-{m.role}")
            self.running[m.role] = Concentrator("vpnhub", proc.pid, "vpnhub0", proc=proc,
                                                admin_socket=sock)
        for m in members:
            c = self.running[m.role]
            wait_until(_answering(c), 30.0, what=f"{m.role}'s admin socket")
            cluster.write_tracked_pid(self.vrrp[m.role].pidfile, c.pid)
        self.master = members[0].role
        if not setup.startswith("cluster"):
            return members[0].addr
        # keepalived preempts: the first member (highest priority) ends as the master;
        # a member that held the address for a moment before it must not be measured
        first = members[0].role
        wait_until(lambda: self.topo.holders() == [first], 20.0, interval=0.1,
                   what=f"{first} to hold the virtual address alone")
        self.master = first

        def all_up() -> bool:
            rows = self.pg.psql("SELECT count(*) FROM members WHERE state = 'up'")
            return int(rows.strip() or 0) >= len(members)

        wait_until(all_up, 20.0, interval=0.2, what="every member up in the directory")
        time.sleep(2 * HEARTBEAT)  # the master's snapshot has everyone
        return VIRTUAL_ADDRESS

    def stop(self) -> None:
        for c in self.running.values():
            c.stop()
        self.running = {}
        time.sleep(0.5)

    def pids(self) -> list[int]:
        return [c.pid for c in self.running.values()]

    def stats(self, role: str) -> dict[str, Any]:
        sock = self.running[role].admin_socket
        cp = self.topo.exec(self.topo.host(role), [PYTHON, "-c", (
            "import sys, json; from vpnhub.admin import request;"
            " print(json.dumps(request(sys.argv[1], {'cmd': 'stats'}, 60)))"), str(sock)],
            timeout=90)
        try:
            return dict(json.loads(cp.stdout))
        except ValueError:
            return {}

    def spread(self) -> dict[str, int]:
        """Sessions per member, as the cluster directory holds them."""
        rows = self.pg.psql("SELECT member, count(*) FROM sessions GROUP BY member")
        return {m: int(n) for m, n in (r.split("\t") for r in rows.splitlines() if "\t" in r)}

    def pg_writes(self) -> dict[str, int]:
        row = self.pg.psql("SELECT xact_commit, tup_inserted, tup_updated, tup_deleted"
                           " FROM pg_stat_database WHERE datname = 'vpnhub'")
        vals = [int(x) for x in row.split()]
        return dict(zip(("commits", "inserted", "updated", "deleted"), vals, strict=True))


def _answering(c: Concentrator) -> Callable[[], bool]:
    """True once the member's admin socket exists; LabError if its process died."""
    proc, sock = c.proc, c.admin_socket
    assert proc is not None and sock is not None

    def ready() -> bool:
        if not proc.alive():
            raise LabError(f"vpnhub serve exited {proc.returncode}: {proc.log_text()[-800:]}")
        return sock.is_socket()

    return ready


def follows_redirects() -> str | None:
    """The load generator's option that follows notify 40501, if it needs one ("" if it
    follows them by default; None if it does not follow them at all)."""
    cp = subprocess.run([PYTHON, "-m", "vpnhub.tools.loadgen", "--help"], capture_output=True,
                        text=True, timeout=60, check=False)
    for opt in ("--follow-redirects", "--follow-redirect"):
        if opt in cp.stdout:
            return opt
    from vpnhub.tools import loadgen

    source = Path(loadgen.__file__).read_text()
    return "" if "RedirectRequested" in source or "follow_redirects" in source else None


# ----------------------------------------------------------------------------- one run
def one_run(lab: Lab, setup: str, tunnels: int, concurrency: int, tag: str,
            follow: str | None) -> dict[str, Any]:
    server = lab.start(setup)
    try:
        return _measure(lab, setup, server, tunnels, concurrency, tag, follow)
    finally:
        lab.stop()


def _measure(lab: Lab, setup: str, server: str, tunnels: int, concurrency: int, tag: str,
             follow: str | None) -> dict[str, Any]:
    topo, run = lab.topo, lab.topo.run_dir
    out, logf = run / f"loadgen-{tag}.json", run / f"loadgen-{tag}.log"
    out.unlink(missing_ok=True)
    extra = ["--teardown", "--setup-timeout", "30", "--hold", str(HOLD)]
    if setup == "cluster" and follow:
        extra.append(follow)
    argv = loadgen_argv(run, tunnels=tunnels, concurrency=concurrency, dh=14, out=out,
                        extra=extra, server=server)
    clustered = setup != "single"
    master = lab.master
    stats0 = lab.stats(master) if clustered else {}
    pg0 = lab.pg_writes() if clustered else {}
    udp_hosts = {"loadgen": topo.clients[0]}
    udp0 = udp_counters(topo, udp_hosts)
    load = loadavg()
    roles = list(lab.running)
    cpu0 = {r: tree_cpu([lab.running[r].pid]) for r in roles}
    pgcpu0 = tree_cpu([lab.pg.proc.pid]) if lab.pg.proc else 0.0
    proc = topo.spawn(topo.clients[0], argv, logf, name=f"loadgen-{tag}")
    done = wait_event(logf, "setup_done", proc, timeout=tunnels / 3 + 90)
    cpu1 = {r: tree_cpu([lab.running[r].pid]) for r in roles}
    pgcpu1 = tree_cpu([lab.pg.proc.pid]) if lab.pg.proc else 0.0
    spread: dict[str, int] = {}
    if clustered and done is not None:
        time.sleep(min(1.5, HOLD / 2))  # the members' directory writes are queued
        spread = lab.spread()
    stats1 = lab.stats(master) if clustered else {}
    rc = proc.popen.wait(timeout=180)
    if clustered:
        time.sleep(1.5)  # PostgreSQL's backends report their counters when idle (1 s)
    pg1 = lab.pg_writes() if clustered else {}
    udp = udp_delta(udp0, udp_counters(topo, udp_hosts))
    if done is None or not out.exists():
        return {"error": f"load generator exit {rc}: {proc.log_text()[-800:]}", "setup": setup}
    res = json.loads(out.read_text())
    est = res["established"]
    member_cpu = {r: cpu1[r] - cpu0[r] for r in roles}
    pg_cpu = pgcpu1 - pgcpu0
    redirects = {k: stats1.get("redirects", {}).get(k, 0) - stats0.get("redirects", {}).get(k, 0)
                 for k in ("to_member", "to_self", "served_on_virtual")} if clustered else {}
    followed = {k: v for k, v in res["counters"].items() if "redirect" in k}
    if not followed and "redirects" in res:
        followed = {"redirects": res["redirects"]}
    per = (lambda x: x / est) if est else (lambda x: float("nan"))
    master_ms = None
    if setup == "cluster" and sum(redirects.values()):
        master_ms = member_cpu[master] / sum(redirects.values()) * 1e3
    return {
        "setup": setup, "server": server, "master": master if clustered else None,
        "master_cpu_ms_per_client": master_ms, "tunnels": tunnels, "established": est,
        "failed": res["failed"], "tunnels_per_s": res["tunnels_per_s"],
        "setup_p50_ms": res["setup_p50_ms"], "setup_p99_ms": res["setup_p99_ms"],
        "member_cpu_s": member_cpu, "postgres_cpu_s": pg_cpu,
        "cpu_ms_per_tunnel": per(sum(member_cpu.values()) + pg_cpu) * 1e3,
        "members_cpu_ms_per_tunnel": per(sum(member_cpu.values())) * 1e3,
        "postgres_cpu_ms_per_tunnel": per(pg_cpu) * 1e3,
        "loadgen_cpu_ms_per_tunnel": per(res["cpu_s"].get("setup", 0.0)) * 1e3,
        "redirects_master": redirects, "redirects_loadgen": followed,
        "spread": spread,
        "pg_writes": {k: pg1[k] - pg0[k] for k in pg1} if clustered else {},
        "pg_writes_per_tunnel": {k: per(pg1[k] - pg0[k]) for k in pg1} if clustered else {},
        "loadavg_before": load, "udp": udp, "loadgen_errors": res["counters"].get("errors"),
    }


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    good = [r for r in runs if "error" not in r and r.get("established")]
    out: dict[str, Any] = {"runs_ok": len(good), "runs": len(runs)}
    for k in ("tunnels_per_s", "setup_p50_ms", "setup_p99_ms", "cpu_ms_per_tunnel",
              "members_cpu_ms_per_tunnel", "postgres_cpu_ms_per_tunnel",
              "loadgen_cpu_ms_per_tunnel"):
        vals = [r[k] for r in good if r.get(k) is not None]
        if vals:
            out[k] = summary(vals)
    out["failed"] = sum(r.get("failed", 0) for r in good)
    return out


def projection(doc: dict[str, Any], members: tuple[int, ...] = (1, 2, 3, 4, 8)) -> dict[str, Any]:
    """Tunnels/s of N members on N machines (one core each), from the CPU measured here.

    b: a member's CPU per tunnel, alone (the `member` setup, its process tree). a: the
    master's CPU per client for the phase 1 on the virtual address and the notify. In a
    `cluster` run the master's CPU is a per client plus a full handshake per client it
    kept (to_self); the other members' CPU per session served, in the same run (the
    same crowded cores), stands for that full handshake: a/b of the run, times the
    member's b, is a. (Taking the member's b directly overstates a: in the cluster
    run three members share 2 cores and each handshake costs ~1.5x; `a_upper`.)
    PostgreSQL: its CPU per tunnel (the `member` setup). Every client comes to the
    virtual address and is redirected (the master's own to its own address), so the
    master spends a + b/N per client and each other member b/N:
    rate(N) = min(N / b, 1 / (a + b/N), 1 / pg), ms -> per second."""
    s = doc["summary"]
    b = s.get("member", {}).get("members_cpu_ms_per_tunnel", {}).get("median")
    pg = s.get("member", {}).get("postgres_cpu_ms_per_tunnel", {}).get("median")
    shares, uppers = [], []
    for r in doc["runs"]:
        rd = r.get("redirects_master") or {}
        if r.get("setup") != "cluster" or "error" in r or not b or not sum(rd.values()):
            continue
        master, total = r["master"], sum(rd.values())
        others = [(r["member_cpu_s"][m], n) for m, n in r["spread"].items() if m != master]
        if others and sum(n for _, n in others):
            b_run = sum(c for c, _ in others) / sum(n for _, n in others) * 1e3
            a_run = (r["member_cpu_s"][master] * 1e3 - b_run * rd["to_self"]) / total
            shares.append(a_run / b_run)
        uppers.append((r["member_cpu_s"][master] * 1e3 - b * rd["to_self"]) / total)
    if not b or not shares or not pg:
        return {}
    share = sorted(shares)[len(shares) // 2]
    a = share * b
    out: dict[str, Any] = {"member_ms_per_tunnel": b, "redirect_share_of_handshake": share,
                           "redirect_share_runs": shares, "master_ms_per_redirect": a,
                           "master_ms_per_redirect_upper": sorted(uppers)[len(uppers) // 2],
                           "postgres_ms_per_tunnel": pg}
    if a <= 0:  # too few tunnels for the CPU clock's 10 ms ticks (a smoke run)
        return {**out, "note": "too few tunnels to tell"}
    for key, cost in (("", a), ("_upper", out["master_ms_per_redirect_upper"])):
        out["tunnels_per_s" + key] = {n: min(n * 1000 / b, 1000 / (cost + b / n), 1000 / pg)
                                      for n in members}
        out["master_ceiling" + key] = 1000 / cost
    out["postgres_ceiling"] = 1000 / pg
    return out


def ratios(runs: dict[str, list[dict[str, Any]]], num: str, den: str) -> list[float]:
    """tunnels/s of `num` over `den`, per round (both measured in the same round)."""
    out = []
    for a, b in zip(runs.get(num, []), runs.get(den, []), strict=False):
        if "error" not in a and "error" not in b and b.get("tunnels_per_s"):
            out.append(a["tunnels_per_s"] / b["tunnels_per_s"])
    return out


def markdown(doc: dict[str, Any]) -> str:
    def rng(s: dict[str, float] | None, p: int = 0) -> str:
        if not s:
            return "-"
        return f"{s['median']:.{p}f} ({s['min']:.{p}f}..{s['max']:.{p}f})"

    lines = ["| setup | tunnels/s | p99 ms | CPU ms/tunnel (members + PostgreSQL) |"
             " PostgreSQL ms/tunnel | load gen ms/tunnel | runs ok | failed |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, s in doc["summary"].items():
        lines.append(f"| {name} | {rng(s.get('tunnels_per_s'))} | {rng(s.get('setup_p99_ms'))}"
                     f" | {rng(s.get('cpu_ms_per_tunnel'), 2)}"
                     f" | {rng(s.get('postgres_cpu_ms_per_tunnel'), 2)}"
                     f" | {rng(s.get('loadgen_cpu_ms_per_tunnel'), 2)}"
                     f" | {s['runs_ok']}/{s['runs']} | {s['failed']} |")
    lines += ["", "| run | setup | tunnels/s | redirects (master: to member / to self) |"
              " load gen redirect counters | sessions per member | PostgreSQL writes per tunnel"
              " (commits, ins, upd, del) | load avg |", "| --- | --- | --- | --- | --- | --- |"
              " --- | --- |"]
    for r in doc["runs"]:
        if "error" in r:
            lines.append(f"| {r['tag']} | {r['setup']} | ERROR {r['error'][:80]!r} |"
                         " | | | | |")
            continue
        rd = r["redirects_master"]
        w = r["pg_writes_per_tunnel"]
        lines.append(
            f"| {r['tag']} | {r['setup']} | {r['tunnels_per_s']:.0f} | "
            + (f"{rd['to_member']} / {rd['to_self']}" if rd else "-") + " | "
            + (", ".join(f"{k} {v}" for k, v in r["redirects_loadgen"].items()) or "-") + " | "
            + (", ".join(f"{m} {n}" for m, n in sorted(r["spread"].items())) or "-") + " | "
            + (", ".join(f"{w[k]:.1f}" for k in ("commits", "inserted", "updated", "deleted"))
               if w else "-")
            + f" | {' '.join(r['loadavg_before'])} |")
    if (p := doc.get("projection")) and "tunnels_per_s" in p:
        lines.append(
            f"\nProjection, one core per member: member {p['member_ms_per_tunnel']:.2f} ms/tunnel,"
            f" the master's redirect {p['redirect_share_of_handshake']:.2f} of a handshake ="
            f" {p['master_ms_per_redirect']:.2f} ms per client (upper bound"
            f" {p['master_ms_per_redirect_upper']:.2f}), PostgreSQL"
            f" {p['postgres_ms_per_tunnel']:.2f} ms/tunnel: " + ", ".join(
                f"N={n}: {v:.0f}/s" for n, v in p["tunnels_per_s"].items())
            + f"; the master's ceiling {p['master_ceiling']:.0f}/s (with the upper bound: "
            + ", ".join(f"N={n}: {v:.0f}/s" for n, v in p["tunnels_per_s_upper"].items())
            + f"; ceiling {p['master_ceiling_upper']:.0f}/s)")
    for name, vals in doc["ratios"].items():
        if vals:
            lines.append(f"\n{name}: " + ", ".join(f"{v:.2f}" for v in vals)
                         + f" (median {statistics.median(vals):.2f})")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tunnels", type=int, default=600)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--setups", default="single,member,cluster",
                    help=f"comma-separated, of {', '.join(SETUPS)}")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--markdown", type=Path, help="the tables, in Markdown")
    ap.add_argument("--prefix")
    ap.add_argument("--smoke", action="store_true",
                    help="2 members, 10 tunnels, 1 run, member and cluster")
    args = ap.parse_args(argv)
    if args.smoke:
        args.tunnels, args.runs, args.members, args.concurrency = 10, 1, 2, 8
        args.setups = "member,cluster"
    setups = [s for s in args.setups.split(",") if s]
    if bad := [s for s in setups if s not in SETUPS]:
        ap.error(f"unknown setups {bad}")
    follow = follows_redirects()
    if "cluster" in setups and follow is None:
        log("the load generator does not follow redirects: cluster-nolb instead of cluster")
        setups = [s if s != "cluster" else "cluster-nolb" for s in setups]
    prefix = args.prefix or lab_prefix("k")
    doc: dict[str, Any] = {"bench": "cluster_handshake",
                           "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                           "tunnels": args.tunnels, "concurrency": args.concurrency,
                           "runs_per_setup": args.runs, "members": args.members, "dh_group": 14,
                           "setups": setups, "smoke": args.smoke,
                           "loadgen_follows_redirects": follow is not None,
                           "environment": environment(), "runs": []}
    t0 = time.monotonic()
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in setups}
    # SIGTERM: leave through the finally blocks and Topology.__exit__ (nothing left)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with Topology(prefix, clients=1, concentrators=args.members,
                  run_dir=run_dir_for(prefix)) as topo:
        lab = Lab(topo, args.tunnels)
        try:
            for r in range(args.runs):
                for setup in setups:
                    tag = f"{setup}-r{r}"
                    log(f"round {r + 1}/{args.runs}: {setup}")
                    try:
                        one = one_run(lab, setup, args.tunnels, args.concurrency, tag, follow)
                    except (LabError, OSError, subprocess.SubprocessError) as e:
                        one = {"error": str(e), "setup": setup}
                    one["tag"] = tag
                    runs[setup].append(one)
                    doc["runs"].append(one)
                    log("  " + (f"{one['tunnels_per_s']:.0f} tunnels/s, p99"
                                f" {one['setup_p99_ms']:.0f} ms, {one['cpu_ms_per_tunnel']:.2f}"
                                f" CPU ms/tunnel (PostgreSQL"
                                f" {one['postgres_cpu_ms_per_tunnel']:.2f}), failed"
                                f" {one['failed']}, redirects {one['redirects_master']}"
                                f" {one['redirects_loadgen']}, spread {one['spread']}"
                                if "error" not in one else f"ERROR {one['error'][:300]}"))
        finally:
            lab.stop()
            lab.pg.stop()
    doc["summary"] = {s: summarise(v) for s, v in runs.items()}
    doc["ratios"] = {f"{a}/{b}": ratios(runs, a, b) for a in setups for b in setups
                     if a.startswith("cluster") and b in ("member", "single")}
    doc["ratios"].update({"member/single": ratios(runs, "member", "single")}
                         if "member" in setups and "single" in setups else {})
    doc["projection"] = projection(doc)
    doc["elapsed_s"] = time.monotonic() - t0
    write_json(args.json, doc)
    text = markdown(doc)
    if args.markdown is not None:
        args.markdown.write_text(text)
    print(text)
    return 0 if all(s["runs_ok"] for s in doc["summary"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
