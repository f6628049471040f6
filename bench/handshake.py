"""Handshake rate: full remote-access tunnels per second from behind one PAT.

    sudo .venv/bin/python bench/handshake.py [--tunnels 600] [--concurrency 64] [--runs 3]
        [--groups 2,14,19] [--concentrators vpnhub,strongswan] [--json out.json]
        [--profile-dir DIR] [--cprofile-dir DIR] [--smoke]

The load generator (``python -m vpnhub.tools.loadgen``, our sans-I/O initiator
core) runs in the lab's client namespace c1 and brings up ``--tunnels``
tunnels (Aggressive Mode + XAUTH + Mode Config + Quick Mode), each from a UDP
socket of its own, through the ``masquerade random`` PAT: to the
concentrator they are that many clients behind one public address, told
apart by port only. The concentrator is ``vpnhub serve`` or strongSwan
charon (kernel-libipsec), configured the same way: one group, 64 XAUTH
users, a /16 pool, and no per-source half-open limit in the way (vpnhub
``max_half_open_per_source``, charon ``block_threshold``, both raised).
Between runs the load generator deletes its tunnels (informational DELETE),
half a second after its set-up: neither the CPU meter nor the py-spy profile
(``--profile-dir``, stopped when the set-up ends) counts the teardown.
The runs go in rounds (each round: vpnhub, then strongSwan, every group), so
both concentrators see the same drift of a shared machine.

Reported per concentrator and DH group (medians over ``--runs``): tunnels/s
(completed / (last completion - first start)), p50/p99 set-up time seen by
the clients, and the concentrator's CPU milliseconds per tunnel during the
set-up phase, all its threads, and apart the loop's (``loop ms``, its main
thread: the rest is mostly the DH thread's g^xy, ~0.4-0.6 ms for group 14).
A third of py-spy's samples of the loop's thread sit in ``sendto``/``send``,
but its system time, every system call included, was 0.15 ms per tunnel of its
1.6 ms (3,000 tunnels, issue 13): the receiver each send wakes (the load
generator, a worker) likely takes the core while the sender waits runnable.
The load generator shares the 2 cores: its own CPU per tunnel is reported
too, and the concentrator's *capacity* (tunnels/s one core could sustain,
1000 / CPU ms per tunnel) is what a bigger machine with the load generated
elsewhere would see. Per run, and summed over the runs, the
kernel's UDP counters in the concentrator's and the load generator's
namespaces (``/proc/net/snmp``, from the load generator's start to its exit):
datagrams received, and those lost to a full receive buffer (RcvbufErrors,
also counted in InErrors) or refused for a full send buffer (SndbufErrors).
A lost IKE message costs its tunnel a retransmission timeout (1 s and more),
which p99 shows and tunnels/s hides.

The DH pool (issue 13, docs/CONFIG.md "DH pool sizing"): before the clock
starts, each run waits until vpnhub's pool of Diffie-Hellman key pairs is full
(admin `stats`, `dh_pool.full`; at most POOL_WAIT s), as a real concentrator
has idle time before a login storm, and reports the pool's level before and
after the run (ready pairs, taken, missed). A run of ``--tunnels`` no larger
than the pool measures a *storm* (every first message finds a pair ready); a
run longer than the pool (``--tunnels 3000`` for group 14's 2048 pairs)
measures how the rate holds once it ran out: ``after pool`` is the rate of the
tunnels completed after the first (ready pairs of the group + ``--concurrency``)
ones (the pairs the run found ready, and the tunnels in flight when they ran
out), up to the last ``--concurrency`` ones (they complete while no tunnel
starts any more, faster than a steady stream): the *sustained* rate. The DH
thread refills a group between its jobs meanwhile once fewer than a quarter of
its pairs are left (ike.dhpool LOW_WATER), so `missed` (SAs that found no pair
ready) says whether the pool actually ran dry. ``--no-pool-wait``: start at once
(the storm hits a concentrator still filling its pool). The loop's worst
lateness (admin `status`, `loop_delay_recent_max_ms`: the last 10 s) is read
after the pool is full and after the run: the pool is filled on the DH worker
thread, so it must not delay the loop.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    GROUP,
    PSK,
    PYTHON,
    SUITES,
    Concentrator,
    CpuMeter,
    environment,
    lab_prefix,
    log,
    median,
    netns_read,
    run_dir_for,
    start_charon_concentrator,
    start_vpnhub_concentrator,
    vpnhub_config,
    write_json,
)

from vpnhub.lab.topology import CONC_PUBLIC, Host, Topology

N_USERS = 64
POOL = "10.40.0.0/16"
SWAN_TUNE = {"block_threshold": "1000000", "init_limit_half_open": "0"}
# every group the runs use, in one charon configuration
SWAN_IKE_ALL = "aes128-sha1-modp1024-modp2048-ecp256"
# The kernel's UDP counters (per network namespace; RFC 4113's udp group): a
# datagram dropped for a full receive buffer counts in RcvbufErrors and InErrors
# (net/ipv4/udp.c, __udp_queue_rcv_skb), a send refused for a full send buffer
# in SndbufErrors (udp_sendmsg).
UDP_COUNTERS = ("InDatagrams", "RcvbufErrors", "SndbufErrors", "InErrors")
UdpCounters = dict[str, dict[str, int]]  # side ("conc", "loadgen") -> counter -> value
# Seconds the load generator waits after its set-up before it deletes its tunnels
# (--linger): the CPU meter stops when the bench reads setup_done (polled every 20 ms)
# and must not count the teardown's DELETEs (two RemoveSA per tunnel on vpnhub).
TEARDOWN_AFTER = 0.5
# At most this long for vpnhub's DH pool to fill before a run (group 14's 2048 pairs
# take ~0.8 s of the DH thread alone; MODP 16's 512 ~1 s; a shared machine, more).
POOL_WAIT = 30.0


def parse_udp_snmp(text: str) -> dict[str, int]:
    """UDP_COUNTERS from /proc/net/snmp: a "Udp:" line of names, then one of values."""
    rows = [line.split()[1:] for line in text.splitlines() if line.startswith("Udp:")]
    if len(rows) < 2 or len(rows[0]) != len(rows[1]):
        raise ValueError("no Udp: counters in /proc/net/snmp")
    table = dict(zip(rows[0], rows[1], strict=True))
    return {name: int(table[name]) for name in UDP_COUNTERS}


def udp_counters(topo: Topology, hosts: dict[str, Host]) -> UdpCounters:
    return {side: parse_udp_snmp(netns_read(topo, host, "/proc/net/snmp"))
            for side, host in hosts.items()}


def udp_delta(before: UdpCounters, after: UdpCounters) -> UdpCounters:
    return {side: {k: after[side][k] - before[side][k] for k in UDP_COUNTERS}
            for side in before}


def udp_sum(deltas: list[UdpCounters]) -> UdpCounters:
    sides = {side for d in deltas for side in d}
    return {side: {k: sum(d[side][k] for d in deltas if side in d) for k in UDP_COUNTERS}
            for side in sorted(sides)}


def udp_text(d: UdpCounters) -> str:
    """ "conc in 1234 rcvbuf 0 sndbuf 0 err 0; loadgen ..." for the log."""
    return "; ".join(f"{side} in {c['InDatagrams']} rcvbuf {c['RcvbufErrors']}"
                     f" sndbuf {c['SndbufErrors']} err {c['InErrors']}"
                     for side, c in d.items())


# The PAT's conntrack counters (/proc/net/stat/nf_conntrack, one hex row per CPU): a
# datagram whose new flow could not be inserted (a clash, a full table) is dropped there.
CONNTRACK_COUNTERS = ("insert_failed", "drop", "early_drop", "invalid")


def parse_conntrack_stat(text: str) -> dict[str, int]:
    lines = text.split("\n")
    names = lines[0].split()
    out = dict.fromkeys(CONNTRACK_COUNTERS, 0)
    for row in lines[1:]:
        values = row.split()
        if len(values) != len(names):
            continue
        for name, v in zip(names, values, strict=True):
            if name in out:
                out[name] += int(v, 16)
    return out


def conntrack_counters(topo: Topology) -> dict[str, int] | None:
    try:
        return parse_conntrack_stat(netns_read(topo, topo.pat, "/proc/net/stat/nf_conntrack"))
    except Exception:  # no conntrack statistics in this kernel: not reported
        return None


def conc_stats(topo: Topology, conc: Concentrator) -> dict[str, Any] | None:
    """vpnhub's admin `stats` (the endpoint's drops, the IKE send queue, ...)."""
    if conc.kind != "vpnhub" or conc.admin_socket is None:
        return None
    cp = topo.exec(topo.conc, [PYTHON, "-c", (
        "import sys, json; from vpnhub.admin import request;"
        " print(json.dumps(request(sys.argv[1], {'cmd': 'stats'}, 60)))"),
        str(conc.admin_socket)], timeout=90)
    try:
        return dict(json.loads(cp.stdout))
    except ValueError:
        return None


def conc_status(topo: Topology, conc: Concentrator) -> dict[str, Any] | None:
    """vpnhub's admin `status` (the loop's lateness, its stalls)."""
    if conc.kind != "vpnhub" or conc.admin_socket is None:
        return None
    cp = topo.exec(topo.conc, [PYTHON, "-c", (
        "import sys, json; from vpnhub.admin import request;"
        " print(json.dumps(request(sys.argv[1], {'cmd': 'status'}, 60)))"),
        str(conc.admin_socket)], timeout=90)
    try:
        return dict(json.loads(cp.stdout))
    except ValueError:
        return None


def wait_pool_full(topo: Topology, conc: Concentrator,
                   timeout: float = POOL_WAIT) -> tuple[dict[str, Any] | None, float]:
    """vpnhub's `stats` once its DH pool is full (or has none, or `timeout` passed),
    and the seconds waited: a real concentrator has idle time before a storm."""
    t0 = time.monotonic()
    stats = conc_stats(topo, conc)
    while stats is not None and (stats.get("dh_pool") or {}).get("full") is False \
            and time.monotonic() - t0 < timeout:
        time.sleep(0.25)
        stats = conc_stats(topo, conc)
    return stats, time.monotonic() - t0


def pool_level(stats: dict[str, Any] | None) -> dict[str, Any] | None:
    """The DH pool's level in a `stats` answer: ready / size, taken, missed."""
    pool = (stats or {}).get("dh_pool")
    if not pool:
        return None
    return {k: pool.get(k) for k in ("ready", "size", "taken", "missed", "groups")}


def rate_after(done_times: list[float], skip: int, drain: int) -> float | None:
    """Tunnels per second over the completions after the first `skip`, up to the last
    `drain` (None: too few). The last `drain` (= --concurrency) complete while no new
    tunnel starts, faster than a steady stream: they are left out. The tunnels in
    flight start and end in waves, so a window shorter than 3 of them says nothing."""
    last = len(done_times) - 1 - drain
    if skip < 0 or last - skip < max(3 * drain, 100):
        return None
    span = done_times[last] - done_times[skip]
    return (last - skip) / span if span > 0 else None


def _numbers_delta(before: Any, after: Any) -> Any:
    """after - before for the numbers of two nested dicts (what moved during a run)."""
    if isinstance(after, dict):
        b = before if isinstance(before, dict) else {}
        out = {k: _numbers_delta(b.get(k), v) for k, v in after.items()}
        return {k: v for k, v in out.items() if v not in (None, 0, {})}
    if isinstance(after, (int, float)) and not isinstance(after, bool):
        return after - (before if isinstance(before, (int, float)) else 0)
    return None


def conc_drops(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any]:
    """What the concentrator dropped or queued during a run, from its `stats`."""
    if before is None or after is None:
        return {}
    def pick(stats: dict[str, Any]) -> dict[str, Any]:
        return {"endpoint_drops": stats.get("endpoint_drops"), "ike_send": stats.get("ike_send"),
                "ike_4500_drops": (stats.get("ike_4500") or {}).get("drops"),
                "half_open_over_source_cap": stats.get("half_open_over_source_cap")}

    moved = _numbers_delta(pick(before), pick(after))
    return dict(moved) if isinstance(moved, dict) else {}


def cprofile_argv(cprofile_dir: Path | None, name: str) -> list[str]:
    """``-m cProfile -o DIR/NAME.prof`` to put before ``-m module`` (empty: no profile)."""
    if cprofile_dir is None:
        return []
    cprofile_dir.mkdir(parents=True, exist_ok=True)
    return ["-m", "cProfile", "-o", str(cprofile_dir.resolve() / f"{name}.prof")]


def _workers(value: str | None) -> int | str | None:
    """--workers as [dataplane] workers takes it: a number, "auto", or vpnhub's default."""
    return int(value) if value is not None and value.isdigit() else value


def start_conc(topo: Topology, kind: str, max_sessions: int = 20000,
               cprofile: list[str] | None = None,
               default_half_open: bool = False,
               workers: int | str | None = None,
               dh_pool_size: int | None = None) -> Concentrator:
    if kind == "vpnhub":
        # default_half_open: vpnhub's own half-open limits, as an operator runs it
        # (32 unverified per source, 4,096 in all) instead of raised out of the way
        raised = {} if default_half_open else {"half_open_per_source": 1_000_000,
                                               "half_open_total": 1_000_000}
        cfg = vpnhub_config(topo.run_dir, pool=POOL, n_users=N_USERS,
                            max_sessions=max_sessions, workers=workers,
                            dh_pool_size=dh_pool_size, **raised)
        return start_vpnhub_concentrator(topo, cfg, python_args=cprofile)
    from dataclasses import replace

    from vpnhub.lab import peers

    suite = SUITES["aes128-sha1"]
    conc = start_charon_concentrator(topo, suite, pool=POOL, n_users=N_USERS, tune=SWAN_TUNE,
                                     quiet_log=True)
    # every DH group in one configuration: reload with the wider proposal
    assert conc.charon is not None
    key = f"bench-{suite.name}"
    peers.SUITES[key] = replace(peers.SUITES[key], ike=SWAN_IKE_ALL)
    conf = conc.charon.swanctl_conf
    text = conf.read_text()
    import re

    conf.write_text(re.sub(r"proposals = \S+", f"proposals = {SWAN_IKE_ALL}", text, count=1))
    conc.charon.load()
    return conc


def active_sessions(topo: Topology, conc: Concentrator) -> int:
    if conc.kind == "vpnhub":
        assert conc.admin_socket is not None
        cp = topo.exec(topo.conc, [PYTHON, "-c", (
            "import sys, json; from vpnhub.admin import request;"
            " print(json.dumps(request(sys.argv[1], {'cmd': 'stats'}, 60)))"),
            str(conc.admin_socket)], timeout=90)
        try:
            return int(json.loads(cp.stdout)["sas"])
        except (ValueError, KeyError):
            return -1
    assert conc.charon is not None
    return conc.charon.established()


def loadgen_argv(run: Path, *, tunnels: int, concurrency: int, dh: int, out: Path,
                 extra: list[str] | None = None, cprofile: list[str] | None = None,
                 server: str = CONC_PUBLIC) -> list[str]:
    psk = run / "group.psk"
    psk.write_text(PSK + "\n")
    return [PYTHON, *(cprofile or []), "-m", "vpnhub.tools.loadgen", "--server", server,
            "--group", GROUP, "--psk-file", str(psk), "--users", "vpnuser{n}:userpass{n}",
            "--user-count", str(N_USERS), "--tunnels", str(tunnels),
            "--concurrency", str(concurrency), "--dh", str(dh), "--json", str(out),
            *(extra or [])]


def wait_event(log_path: Path, event: str, proc: Any, timeout: float) -> dict[str, Any] | None:
    """Poll the load generator's stdout log for a JSON line with this event."""
    deadline = time.monotonic() + timeout
    seen = 0
    while time.monotonic() < deadline:
        try:
            text = log_path.read_text(errors="replace")
        except OSError:
            text = ""
        lines = text.splitlines()
        for line in lines[seen:]:
            if line.startswith("{") and f'"event": "{event}"' in line:
                try:
                    return dict(json.loads(line))
                except ValueError:
                    pass
        seen = max(0, len(lines) - 1)
        if not proc.alive():
            return None
        time.sleep(0.02)
    return None


def one_run(topo: Topology, conc: Concentrator, dh: int, tunnels: int, concurrency: int,
            tag: str, profile_dir: Path | None = None,
            cprofile_dir: Path | None = None, pool_wait: bool = True) -> dict[str, Any]:
    run = topo.run_dir
    out = run / f"loadgen-{tag}.json"
    out.unlink(missing_ok=True)
    logf = run / f"loadgen-{tag}.log"
    argv = loadgen_argv(run, tunnels=tunnels, concurrency=concurrency, dh=dh, out=out,
                        extra=["--teardown", "--setup-timeout", "30",
                               "--linger", str(TEARDOWN_AFTER)],
                        cprofile=cprofile_argv(cprofile_dir, f"loadgen-{tag}"))
    prof: dict[str, Any] = {}
    th = None
    set_up = threading.Event()  # the profile ends with the set-up, not the teardown
    if profile_dir is not None:
        from pyspy import profile

        def go() -> None:
            prof["text"], prof["summary"] = profile(
                conc.pid, tunnels / 5 + 60, profile_dir, f"handshake-{tag}",
                f"{conc.kind} concentrator during {tunnels} handshakes, DH group {dh}",
                stop=set_up)

        th = threading.Thread(target=go)
    udp_hosts = {"conc": topo.conc, "loadgen": topo.clients[0]}
    udp_before = udp_counters(topo, udp_hosts)
    stats_before, pool_waited = (wait_pool_full(topo, conc) if pool_wait
                                 else (conc_stats(topo, conc), 0.0))
    status_before = conc_status(topo, conc)
    ct_before = conntrack_counters(topo)
    # the loop's thread apart (its main thread): the DH worker thread's g^xy and
    # the other threads are the rest of "conc"
    meter = CpuMeter({"conc": [conc.pid], "conc_loop": [(conc.pid, conc.pid)]}).start()
    proc = topo.spawn(topo.clients[0], argv, logf, name=f"loadgen-{tag}")
    if th is not None:
        th.start()
    done = wait_event(logf, "setup_done", proc, timeout=tunnels / 5 + 60)
    meter.stop()
    status_done = conc_status(topo, conc)  # the collector's pauses up to here (set-up)
    set_up.set()
    if th is not None:
        th.join()
    rc = proc.popen.wait(timeout=120)
    udp = udp_delta(udp_before, udp_counters(topo, udp_hosts))
    ct_after, stats_after = conntrack_counters(topo), conc_stats(topo, conc)
    status_after = conc_status(topo, conc)
    if done is None or not out.exists():
        return {"error": f"load generator exit {rc}: {proc.log_text()[-800:]}"}
    res = json.loads(out.read_text())
    est = res["established"]
    lg_cpu = res["cpu_s"].get("setup", 0.0)
    doc = {
        "tunnels": tunnels, "established": est, "failed": res["failed"],
        "tunnels_per_s": res["tunnels_per_s"],
        "setup_p50_ms": res["setup_p50_ms"], "setup_p99_ms": res["setup_p99_ms"],
        "conc_cpu_ms_per_tunnel": meter.seconds["conc"] / est * 1e3 if est else None,
        "conc_sys_ms_per_tunnel": meter.system["conc"] / est * 1e3 if est else None,
        "conc_loop_cpu_ms_per_tunnel": meter.seconds["conc_loop"] / est * 1e3 if est else None,
        "loadgen_cpu_ms_per_tunnel": lg_cpu / est * 1e3 if est else None,
        "loadgen_sys_ms_per_tunnel": (res["cpu_s"]["setup_system"] / est * 1e3
                                      if est and "setup_system" in res["cpu_s"] else None),
        "conc_capacity_per_core": (est / meter.seconds["conc"]) if meter.seconds["conc"] else None,
        "machine_busy": meter.machine_busy,
        "ike_tx": res["counters"].get("ike_tx"), "errors": res["counters"].get("errors"),
        # load-balancing redirects the clients followed (a cluster's virtual address)
        "redirects": res.get("redirects", 0),
        "udp": udp,
        # where messages were lost: our clients' retransmissions (set-up), their send
        # errors, the PAT's conntrack drops, the concentrator's own drops and queueing
        "loadgen_retransmissions": res["counters"].get("retransmissions_setup"),
        "loadgen_send_errors": res["counters"].get("send_errors"),
        "pat_conntrack": ({k: ct_after[k] - ct_before[k] for k in CONNTRACK_COUNTERS}
                          if ct_before is not None and ct_after is not None else None),
        "conc_drops": conc_drops(stats_before, stats_after),
        # vpnhub's DH pool (issue 13): its level when the clock started and at the end
        "dh_pool_before": pool_level(stats_before), "dh_pool_after": pool_level(stats_after),
        "dh_pool_waited_s": round(pool_waited, 2),
        "loop_delay_before_ms": (status_before or {}).get("loop_delay_recent_max_ms"),
        "loop_delay_after_ms": (status_after or {}).get("loop_delay_recent_max_ms"),
        # vpnhub's garbage collector during the set-up (admin `status` gc, GcWatch): a
        # collection that walks the storm's new objects is milliseconds of the loop's
        # thread ("loop ms") and a stall of every peer (issue 13)
        "conc_gc_ms": gc_pauses(status_before, status_done),
    }
    doc["tunnels_per_s_after_pool"] = rate_after(
        res.get("done_times") or [], _pool_ready(doc["dh_pool_before"], dh) + concurrency,
        concurrency)
    before, after = doc["dh_pool_before"], doc["dh_pool_after"]
    if before and after:
        doc["dh_pool_taken"] = after["taken"] - before["taken"]
        doc["dh_pool_missed"] = after["missed"] - before["missed"]
    if prof:
        doc["profile"] = {"file": f"handshake-{tag}.txt", "text": prof.get("text", ""),
                          "summary": prof.get("summary")}
    return doc


def gc_pauses(before: dict[str, Any] | None, after: dict[str, Any] | None
              ) -> dict[str, float] | None:
    """Milliseconds of collector pauses between two admin `status` answers, by
    generation, with their count (``gen1_count``); None for strongSwan."""
    if not before or not after or "gc" not in before or "gc" not in after:
        return None
    out: dict[str, float] = {}
    for gen, now in after["gc"].items():
        then = before["gc"].get(gen, {})
        out[gen] = round(now["total_ms"] - then.get("total_ms", 0.0), 1)
        out[f"{gen}_count"] = now["count"] - then.get("count", 0)
    return out


def gc_text(one: dict[str, Any]) -> str:
    """The collector's part of a run's log line: its pauses during the set-up."""
    g = one.get("conc_gc_ms")
    if not g:
        return ""
    parts = [f"{gen} {g[gen]:g} ms ({g[f'{gen}_count']})" for gen in ("gen0", "gen1", "gen2")
             if g.get(f"{gen}_count")]
    return "; GC in the set-up: " + (", ".join(parts) if parts else "none")


def _pool_ready(level: dict[str, Any] | None, group: int) -> int:
    """Pairs of `group` ready when the clock started (0 for strongSwan, or a group vpnhub
    does not pool: the rate after the tunnels first in flight)."""
    return int(((level or {}).get("groups") or {}).get(str(group), {}).get("ready", 0))


def pool_text(one: dict[str, Any]) -> str:
    """The DH pool's part of a run's log line."""
    before, after = one.get("dh_pool_before"), one.get("dh_pool_after")
    if not before or not after:
        return ""
    rate = one.get("tunnels_per_s_after_pool")
    after_pool = (f"after the pool {rate:.0f} tunnels/s" if rate
                  else "the pool outlasted the run")
    return (f"; DH pool {before['ready']}/{before['size']} ready at the start (all groups)"
            f" (waited {one['dh_pool_waited_s']} s), {after['ready']} at the end,"
            f" taken {one.get('dh_pool_taken')}, missed {one.get('dh_pool_missed')};"
            f" {after_pool}; loop late at most {one.get('loop_delay_before_ms')} ms"
            f" before, {one.get('loop_delay_after_ms')} ms after (last 10 s)")


def wait_gone(topo: Topology, conc: Concentrator, timeout: float = 20.0) -> None:
    """After a run's teardown: wait until the concentrator holds no SA any more."""
    deadline = time.monotonic() + timeout
    left = active_sessions(topo, conc)
    while left > 0 and time.monotonic() < deadline:
        time.sleep(0.3)
        left = active_sessions(topo, conc)
    if left:
        log(f"  {left} SAs still up after the teardown")


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    good = [r for r in runs if "error" not in r and r.get("established")]
    out: dict[str, Any] = {"runs_ok": len(good), "runs": len(runs)}
    for k in ("tunnels_per_s", "tunnels_per_s_after_pool", "setup_p50_ms", "setup_p99_ms",
              "conc_cpu_ms_per_tunnel", "conc_loop_cpu_ms_per_tunnel",
              "conc_sys_ms_per_tunnel", "loadgen_cpu_ms_per_tunnel", "loadgen_sys_ms_per_tunnel",
              "conc_capacity_per_core",
              "machine_busy"):
        out[k] = median([r[k] for r in good if r.get(k) is not None])
    out["failed"] = sum(r.get("failed", 0) for r in good)
    out["dh_pool_missed"] = sum(r.get("dh_pool_missed") or 0 for r in good)
    out["redirects"] = sum(r.get("redirects", 0) for r in good)
    out["udp"] = udp_sum([r["udp"] for r in good if "udp" in r])  # summed, not a median
    out["loadgen_retransmissions"] = sum(r.get("loadgen_retransmissions") or 0 for r in good)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tunnels", type=int, default=600)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--groups", default="2,14,19")
    ap.add_argument("--concentrators", default="vpnhub,strongswan")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--profile-dir", type=Path, help="py-spy the vpnhub concentrator (extra run)")
    ap.add_argument("--profile-group", type=int, default=14)
    ap.add_argument("--cprofile-dir", type=Path,
                    help="run the load generator and vpnhub serve under cProfile: DIR/*.prof"
                         " (CPU figures of such runs are inflated)")
    ap.add_argument("--default-half-open", action="store_true",
                    help="vpnhub with its default half-open limits (32 unverified per"
                         " source) instead of raised out of the way; strongSwan keeps its"
                         " raised block_threshold (its default, 5, refuses the run)")
    ap.add_argument("--workers",
                    help="vpnhub's [dataplane] workers (a number or auto; default: its own"
                         " default, auto): each tunnel's SAs go to a worker process")
    ap.add_argument("--dh-pool-size", type=int,
                    help="vpnhub's [limits] dh_pool_size (default: its own, sized per DH"
                         " group: 2048 pairs for group 14; 0: no pool)")
    ap.add_argument("--no-pool-wait", action="store_true",
                    help="start each run at once, not after vpnhub's DH pool is full")
    ap.add_argument("--prefix")
    ap.add_argument("--smoke", action="store_true", help="20 tunnels, group 19, 1 run")
    args = ap.parse_args(argv)
    if args.smoke:
        args.tunnels, args.runs, args.groups, args.concurrency = 20, 1, "19", 8
    groups = [int(g) for g in args.groups.split(",") if g]
    concs = [c for c in args.concentrators.split(",") if c]
    prefix = args.prefix or lab_prefix("h")
    doc: dict[str, Any] = {"bench": "handshake", "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                           "tunnels": args.tunnels, "concurrency": args.concurrency,
                           "runs": args.runs, "smoke": args.smoke,
                           "default_half_open": args.default_half_open,
                           "pool_wait": not args.no_pool_wait,
                           "workers": args.workers, "dh_pool_size": args.dh_pool_size,
                           "environment": environment(), "results": []}
    t0 = time.monotonic()
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {(k, g): [] for k in concs for g in groups}
    broken: dict[str, str] = {}
    profiled: dict[str, Any] | None = None
    with Topology(prefix, clients=1, run_dir=run_dir_for(prefix)) as topo:
        # rounds: every concentrator once per round, so both see the same machine noise
        for r in range(args.runs):
            for kind in concs:
                if kind in broken:
                    continue
                log(f"round {r + 1}/{args.runs}: {kind} concentrator")
                try:
                    conc = start_conc(topo, kind, cprofile=cprofile_argv(
                        args.cprofile_dir, f"{kind}-serve-r{r}") if kind == "vpnhub" else None,
                        default_half_open=args.default_half_open,
                        workers=_workers(args.workers), dh_pool_size=args.dh_pool_size)
                except Exception as e:
                    broken[kind] = f"concentrator: {e}"
                    log(f"  cannot start: {e}")
                    continue
                try:
                    for g in groups:
                        one = one_run(topo, conc, g, args.tunnels, args.concurrency,
                                      f"{kind}-g{g}-r{r}", cprofile_dir=args.cprofile_dir,
                                      pool_wait=not args.no_pool_wait)
                        runs[(kind, g)].append(one)
                        log(f"  group {g}: " + (
                            f"{one['tunnels_per_s']:.0f} tunnels/s, p50"
                            f" {one['setup_p50_ms']:.0f} ms, p99 {one['setup_p99_ms']:.0f} ms,"
                            f" conc {one['conc_cpu_ms_per_tunnel']:.2f} CPU ms/tunnel"
                            f" ({one['conc_sys_ms_per_tunnel']:.2f} system,"
                            f" {one['conc_loop_cpu_ms_per_tunnel']:.2f} the loop's thread),"
                            f" failed {one['failed']}; UDP {udp_text(one['udp'])};"
                            f" retransmitted {one['loadgen_retransmissions']},"
                            f" PAT {one['pat_conntrack']}, conc {one['conc_drops']}"
                            + pool_text(one) + gc_text(one)
                            if "error" not in one and one.get("tunnels_per_s")
                            else f"ERROR {one.get('error', one)}"))
                        wait_gone(topo, conc)
                    if args.profile_dir is not None and kind == "vpnhub" and \
                            r == args.runs - 1 and args.profile_group in groups:
                        p = one_run(topo, conc, args.profile_group, args.tunnels,
                                    args.concurrency, f"{kind}-g{args.profile_group}-profile",
                                    args.profile_dir)
                        profiled = p.get("profile")
                        wait_gone(topo, conc)
                finally:
                    conc.stop()
                    time.sleep(0.5)
    for kind in concs:
        for g in groups:
            if kind in broken:
                doc["results"].append({"concentrator": kind, "dh_group": g,
                                       "error": broken[kind]})
                continue
            res = {"concentrator": kind, "dh_group": g, "runs_detail": runs[(kind, g)],
                   **summarise(runs[(kind, g)])}
            if kind == "vpnhub" and g == args.profile_group and profiled:
                res["profile"] = profiled
            doc["results"].append(res)
    doc["elapsed_s"] = time.monotonic() - t0
    write_json(args.json, doc)
    print(format_table(doc))
    ok = all("error" not in r and r.get("runs_ok") for r in doc["results"])
    return 0 if ok else 1


def format_table(doc: dict[str, Any]) -> str:
    lines = [f"{'concentrator':12} {'DH':>3} {'tunnels/s':>9} {'after pool':>10}"
             f" {'p50 ms':>7} {'p99 ms':>7} "
             f"{'conc ms/tun':>11} {'loop ms':>7} {'cap/core':>8} {'lg ms/tun':>9} runs"]
    for r in doc["results"]:
        if "error" in r:
            lines.append(f"{r['concentrator']:12} {r['dh_group']:>3} ERROR {r['error'][:70]}")
            continue

        def f(x: float | None, w: int, p: int = 0) -> str:
            return f"{x:{w}.{p}f}" if x is not None else " " * (w - 1) + "-"

        lines.append(f"{r['concentrator']:12} {r['dh_group']:>3} {f(r['tunnels_per_s'], 9)} "
                     f"{f(r.get('tunnels_per_s_after_pool'), 10)} "
                     f"{f(r['setup_p50_ms'], 7)} {f(r['setup_p99_ms'], 7)} "
                     f"{f(r['conc_cpu_ms_per_tunnel'], 11, 2)} "
                     f"{f(r.get('conc_loop_cpu_ms_per_tunnel'), 7, 2)} "
                     f"{f(r['conc_capacity_per_core'], 8)} "
                     f"{f(r['loadgen_cpu_ms_per_tunnel'], 9, 2)} {r['runs_ok']}/{r['runs']}"
                     + (f"  ({r['redirects']} redirects followed)" if r.get("redirects") else ""))
    lines += ["", "UDP counters (/proc/net/snmp), summed over the runs:",
              f"{'concentrator':12} {'DH':>3} {'namespace':12} {'InDatagrams':>11}"
              f" {'RcvbufErrors':>12} {'SndbufErrors':>12} {'InErrors':>8}"]
    for r in doc["results"]:
        for side, c in r.get("udp", {}).items():
            name = "concentrator" if side == "conc" else "load gen"
            lines.append(f"{r['concentrator']:12} {r['dh_group']:>3} {name:12}"
                         f" {c['InDatagrams']:>11} {c['RcvbufErrors']:>12}"
                         f" {c['SndbufErrors']:>12} {c['InErrors']:>8}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
