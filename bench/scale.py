"""Scale: 10,000 concurrent sessions held, polled by open Sessions tabs, then SIGTERM.

    sudo .venv/bin/python bench/scale.py [--sessions 10000] [--history-wait 300]
        [--window 60] [--traffic-sessions 1000] [--traffic-hold 60] [--poll 120]
        [--tabs 5] [--workers N] [--dh-pool-size N] [--json out.json]
        [--profile-dir DIR] [--smoke]

The load generator (``python -m vpnhub.tools.loadgen``) in client namespace c1
brings up ``--sessions`` remote-access tunnels through the PAT to
``vpnhub serve`` (all of them one public address, many ports), then:

1. holds them idle: every client sends a NAT keepalive every 20 s and DPD
   R-U-THERE after 30 s of silence, the concentrator runs its own DPD (30 s)
   and timers. After ``--history-wait`` seconds (default 300: the manager's
   per-session history, 150 samples every 2 s, is full; the output says
   ``history_full`` false when it was shorter) a ``--window`` of seconds
   measures the concentrator's CPU (utime+stime, in % of one core) and its
   memory per session (RSS minus RSS before the set-up, divided by the
   sessions): issue 13's steady state. Then ``vpnhub sessions --json`` and the
   admin socket request are timed;
2. then ``--traffic-hold`` seconds during which ``--traffic-sessions`` of
   them each send one ICMP echo per second through their ESP SA to the LAN
   host (and decrypt the replies): the concentrator's CPU again, and the
   echo replies that came back;
3. ``--poll`` seconds of ``--tabs`` open Sessions tabs (``bench/pollers.py``:
   each logs in and asks for a page of 100 and the summary every 3 s) plus
   one full export (JSON lines; "not available" if the build has none):
   page latency p50/p99/max, and the IKE loop's worst delay meanwhile (the
   admin socket's ``status``, ``LoopWatch``); then the sessions the load
   generator lost since the set-up (``sessions_lost``);
4. SIGTERM to the concentrator: the seconds until it exited and the DELETEs
   the load generator received (``deletes_received``, goal: one per session).

A py-spy profile of the concentrator is taken in the idle hold (after the
CPU window, so it does not disturb it). The JSON goes to ``--json``, a text
summary of the issue's "Done when" figures to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    PYTHON,
    REPO,
    CpuMeter,
    environment,
    lab_prefix,
    log,
    median,
    one_round,
    rss_bytes,
    run_dir_for,
    start_vpnhub_concentrator,
    vpnhub_config,
    write_json,
)
from handshake import N_USERS, POOL, loadgen_argv, wait_event

from vpnhub.admin import request
from vpnhub.lab.topology import Topology

WEB_ADMIN = ("benchadmin", "bench-admin-password")


def web_manager_listening(topo: Topology) -> bool:
    """Whether the concentrator's web manager answers on its default 127.0.0.1:8443."""
    return 8443 in topo.listening(topo.conc)


def listing(topo: Topology, sock: Path, *, cli: bool, web: bool, repeat: int,
            web_timeout: float = 300.0, web_page: bool = False) -> dict[str, Any]:
    argv = [PYTHON, str(REPO / "bench" / "listing.py"), "--socket", str(sock),
            "--repeat", str(repeat), "--web-timeout", f"{web_timeout:g}"]
    if web_page:
        argv.append("--web-page")
    if not cli:
        argv.append("--no-cli")
    if web:
        pwf = topo.run_dir / "web-admin.pw"
        pwf.write_text(WEB_ADMIN[1] + "\n")
        argv += ["--web", "http://127.0.0.1:8443", "--user", WEB_ADMIN[0],
                 "--password-file", str(pwf)]
    cp = topo.exec(topo.conc, argv, timeout=4 * web_timeout + 600)
    try:
        raw = json.loads(cp.stdout)
    except ValueError:
        return {"error": f"listing exit {cp.returncode}: {cp.stderr.strip()[-400:]}"}
    out: dict[str, Any] = {"raw": raw}
    for k in ("cli", "admin_socket", "web_api", "web_page"):
        runs = raw.get(k)
        if isinstance(runs, list) and runs:
            out[f"{k}_s"] = median([r["s"] for r in runs])
            if any(r.get("timeout") for r in runs):
                out[f"{k}_timeout"] = True
            n = runs[0].get("sessions", runs[0].get("status"))
            if n is not None:
                out[f"{k}_sessions"] = n
    if "error" in raw:
        out["web_error"] = raw["error"]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=10000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--dh", type=int, default=19, help="DH group of the set-up")
    ap.add_argument("--history-wait", type=float, default=300.0,
                    help="seconds from the set-up to the CPU/RSS window (300: the manager's"
                         " per-session history is full)")
    ap.add_argument("--window", type=float, default=60.0,
                    help="seconds of the idle CPU/RSS window")
    ap.add_argument("--poll", type=float, default=120.0,
                    help="seconds the Sessions tabs poll the manager")
    ap.add_argument("--tabs", type=int, default=5, help="open Sessions tabs")
    ap.add_argument("--traffic-sessions", type=int, default=1000)
    ap.add_argument("--traffic-hold", type=float, default=60.0,
                    help="the last seconds of the hold, with traffic")
    ap.add_argument("--dpd", type=float, default=30.0)
    ap.add_argument("--keepalive", type=float, default=20.0)
    ap.add_argument("--clients-nice", type=int, default=10,
                    help="niceness of the load generator (after the set-up) and of the"
                         " pollers: they stand for 10,000 PCs and the operators' browsers,"
                         " which are other machines; on 2 shared cores at equal priority"
                         " they take the CPU from the concentrator's loop and its delay"
                         " measures the scheduler (0: equal priority, as before)")
    ap.add_argument("--workers", default=None,
                    help="[dataplane] workers of the concentrator (default: vpnhub's, one per"
                         " core; 1: the data plane a thread of the concentrator)")
    ap.add_argument("--dh-pool-size", type=int, default=None,
                    help="[limits] dh_pool_size (default: vpnhub's, sized per DH group)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--profile-dir", type=Path)
    ap.add_argument("--prefix")
    ap.add_argument("--smoke", action="store_true",
                    help="50 sessions, 2 s history wait, 3 s window, 10 with traffic for 3 s,"
                         " 6 s of polling, fast DPD/keepalives")
    args = ap.parse_args(argv)
    if args.smoke:
        args.sessions, args.traffic_sessions, args.traffic_hold = 50, 10, 3.0
        args.history_wait, args.window, args.poll = 2.0, 3.0, 6.0
        args.dpd, args.keepalive, args.concurrency = 2.0, 1.0, 16
    n = args.sessions
    traffic_hold = args.traffic_hold if args.traffic_sessions else 0.0
    # the idle part: history wait, CPU window, profile, CLI listing (last: it costs CPU)
    settle = args.history_wait
    list_reserve = 2.0 if args.smoke else min(40.0, 5.0 + n / 500)
    prof_s = 0.0 if (args.smoke or args.profile_dir is None) else 15.0
    window = args.window
    idle_hold = settle + window + list_reserve + prof_s
    hold = idle_hold + traffic_hold
    prefix = args.prefix or lab_prefix("s")
    doc: dict[str, Any] = {"bench": "scale", "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                           "smoke": args.smoke, "sessions": n, "hold_s": hold,
                           "history_wait_s": settle, "history_full": settle >= 300.0,
                           "traffic_sessions": args.traffic_sessions,
                           "traffic_hold_s": traffic_hold, "dpd_s": args.dpd,
                           "keepalive_s": args.keepalive, "environment": environment()}
    t0 = time.monotonic()
    with Topology(prefix, clients=1, run_dir=run_dir_for(prefix)) as topo:
        topo.start_lan_services(iperf_ports=[5201])
        run = topo.run_dir
        cfg = vpnhub_config(run, pool=POOL, n_users=N_USERS, max_sessions=max(20000, 2 * n),
                            half_open_per_source=1_000_000, half_open_total=1_000_000,
                            dpd_interval=max(1, round(args.dpd)),
                            natt_keepalive=max(1, round(args.keepalive)), web_admin=WEB_ADMIN,
                            workers=_workers(args.workers), dh_pool_size=args.dh_pool_size)
        doc["workers"], doc["dh_pool_size"] = args.workers, args.dh_pool_size
        conc = start_vpnhub_concentrator(topo, cfg, timeout=60)
        time.sleep(0.5 if args.smoke else 2.0)
        web = web_manager_listening(topo)
        doc["web_manager"] = web
        base = CpuMeter({"conc": [conc.pid]}).start()
        time.sleep(1.0 if args.smoke else 10.0)
        base.stop()
        rss0 = rss_bytes(conc.pid)
        doc["baseline"] = {"rss_mib": rss0 / 2**20,
                           "idle_core_pct": 100 * base.seconds["conc"] / base.wall}
        log(f"baseline: RSS {rss0 / 2**20:.1f} MiB, idle {doc['baseline']['idle_core_pct']:.2f}%"
            f" of a core; web manager {'running' if web else 'absent'}")
        out = run / "loadgen-scale.json"
        out.unlink(missing_ok=True)
        logf = run / "loadgen-scale.log"
        extra = ["--hold", f"{idle_hold:g}", "--traffic-sessions", str(args.traffic_sessions),
                 "--traffic-hold", f"{traffic_hold:g}", "--dpd", f"{args.dpd:g}",
                 "--keepalive", f"{args.keepalive:g}", "--setup-timeout", "60",
                 "--linger", f"{args.poll + 900:g}", "--teardown"]
        lg_argv = loadgen_argv(run, tunnels=n, concurrency=args.concurrency, dh=args.dh,
                               out=out, extra=extra)
        setup_meter = CpuMeter({"conc": [conc.pid]}).start()
        lg = topo.spawn(topo.clients[0], lg_argv, logf, name="loadgen-scale")

        def stop_loadgen() -> None:
            if lg.alive():
                lg.stop(10.0)

        def stop_conc() -> None:
            t = time.monotonic()
            assert conc.proc is not None
            rc = conc.proc.stop(10.0)  # at once if SIGTERM already ended it
            doc["shutdown_s"] = doc.get("sigterm", {}).get("exit_s", time.monotonic() - t)
            doc["shutdown_killed"] = rc == -signal.SIGKILL

        with one_round(doc, "scale", stop_client=stop_loadgen, stop_conc=stop_conc):
            ev = wait_event(logf, "setup_done", lg, timeout=n / 20 + 120)
            setup_meter.stop()
            if ev is None:
                raise RuntimeError(f"load generator: no set-up: {lg.log_text()[-800:]}")
            rss1 = rss_bytes(conc.pid)
            est = int(ev["established"])
            doc["setup"] = {"established": est, "failed": ev["failed"],
                            "seconds": setup_meter.wall,
                            "conc_cpu_ms_per_tunnel": setup_meter.seconds["conc"] / max(1, est)
                            * 1e3,
                            "rss_mib": rss1 / 2**20,
                            "kib_per_session": (rss1 - rss0) / 1024 / max(1, est)}
            log(f"set-up: {est} sessions ({ev['failed']} failed) in {setup_meter.wall:.0f} s,"
                f" RSS {rss1 / 2**20:.0f} MiB = {doc['setup']['kib_per_session']:.1f} KiB"
                " per session")
            wait_event(logf, "hold_start", lg, timeout=30)
            renice(lg.pid, args.clients_nice)
            doc["clients_nice"] = args.clients_nice
            time.sleep(settle)
            idle = CpuMeter({"conc": [conc.pid], "loadgen": [lg.pid]}).start()
            rss_series = [(0.0, rss_bytes(conc.pid))]  # memory over the hold (leaks?)
            t_idle = time.monotonic()
            idle_delay: list[float] = []  # the loop's worst delay, nobody polling
            while (left := window - (time.monotonic() - t_idle)) > 0:
                time.sleep(min(10.0, left))
                rss_series.append((time.monotonic() - t_idle, rss_bytes(conc.pid)))
                st0 = admin_status(conc.admin_socket or run / "admin.sock")
                if isinstance(st0.get("loop_delay_recent_max_ms"), int | float):
                    idle_delay.append(float(st0["loop_delay_recent_max_ms"]))
            idle.stop()
            doc["idle"] = {"window_s": idle.wall, "conc_cpu_s": idle.seconds["conc"],
                           "conc_core_pct": 100 * idle.seconds["conc"] / idle.wall,
                           "conc_sys_share": (idle.system["conc"] / idle.seconds["conc"]
                                              if idle.seconds["conc"] else None),
                           "loadgen_core_pct": 100 * idle.seconds["loadgen"] / idle.wall,
                           "rss_mib": rss_bytes(conc.pid) / 2**20,
                           "loop_delay_recent_max_ms": max(idle_delay, default=None),
                           "kib_per_session": (rss_series[-1][1] - rss0) / 1024 / max(1, est),
                           "rss_series_mib": [(round(t, 1), round(b / 2**20, 1))
                                              for t, b in rss_series]}
            if len(rss_series) >= 3 and rss_series[-1][0] > 0:
                # growth over the second half of the window (after the first DPD rounds)
                half = rss_series[len(rss_series) // 2]
                dt = rss_series[-1][0] - half[0]
                if dt > 0:
                    doc["idle"]["growth_kib_per_session_per_hour"] = (
                        (rss_series[-1][1] - half[1]) / 1024 / max(1, est) * 3600 / dt)
            log(f"idle hold: concentrator {doc['idle']['conc_core_pct']:.1f}% of a core over"
                f" {idle.wall:.0f} s (load generator {doc['idle']['loadgen_core_pct']:.1f}%)")
            if prof_s and args.profile_dir is not None:
                from pyspy import profile

                text, summary = profile(conc.pid, prof_s, args.profile_dir, "scale-idle",
                                        f"vpnhub concentrator holding {est} idle sessions")
                doc["idle"]["profile"] = {"file": "scale-idle.txt", "text": text,
                                          "summary": summary}
            lst = listing(topo, conc.admin_socket or run / "admin.sock", cli=True, web=False,
                          repeat=1 if n >= 5000 and not args.smoke else 3)
            doc["listing"] = lst
            log("listing (CLI): " + ", ".join(f"{k} {v:.2f} s" for k, v in lst.items()
                                              if k.endswith("_s") and isinstance(v, float)))
            if traffic_hold:
                tev = wait_event(logf, "traffic_start", lg, timeout=idle_hold + 60)
                if tev is not None:
                    late = time.monotonic() - float(tev["t"])  # both CLOCK_MONOTONIC
                    t_settle = min(5.0, traffic_hold * 0.2)
                    time.sleep(max(0.0, t_settle - late))
                    busy = CpuMeter({"conc": [conc.pid], "loadgen": [lg.pid]}).start()
                    time.sleep(max(1.0, traffic_hold - max(t_settle, late) - 1.0))
                    busy.stop()
                    rss_end = rss_bytes(conc.pid)
                    doc["traffic"] = {"sessions": tev.get("sessions"), "window_s": busy.wall,
                                      "conc_core_pct": 100 * busy.seconds["conc"] / busy.wall,
                                      "loadgen_core_pct":
                                          100 * busy.seconds["loadgen"] / busy.wall,
                                      "rss_mib": rss_end / 2**20}
                    # the end of the hold: every session is at least `hold` s old, so
                    # per-session histories (the manager's 5-minute samples) are full
                    doc["memory_end_of_hold_kib_per_session"] = (rss_end - rss0) / 1024 / max(
                        1, est)
                    if late > 1.0:
                        doc["traffic"]["note"] = f"measurement started {late:.0f} s late"
                    log(f"traffic: concentrator {doc['traffic']['conc_core_pct']:.1f}% of a"
                        f" core with {tev.get('sessions')} sessions pinging")
            lev = wait_event(logf, "linger_start", lg, timeout=traffic_hold + 60)
            doc["alive_before_web"] = lev.get("alive") if lev else None
            sock = conc.admin_socket or run / "admin.sock"
            if web:
                doc["polling"] = pollers(topo, sock, args.tabs, args.poll, args.clients_nice)
            else:
                doc["polling"] = {"error": "no web manager in this build"}
            doc["loop"] = admin_status(sock)
            st = loadgen_status(lg, logf, 1)
            doc["sessions_lost"] = st.get("sessions_lost")
            doc["alive_before_sigterm"] = st.get("alive")
            doc["sigterm"] = sigterm(conc, lg, logf)
            log(f"SIGTERM: exit in {_f(doc['sigterm']['exit_s'])} s, DELETEs received"
                f" {doc['sigterm']['deletes_received']} for {doc['alive_before_sigterm']}"
                " sessions")
            if lg.alive():
                os.kill(lg.pid, signal.SIGUSR1)  # end the linger: tear down and exit
            done = wait_event(logf, "done", lg, timeout=hold + 600)
            rc = lg.popen.wait(timeout=300)
            if done is None or not out.exists():
                raise RuntimeError(f"load generator exit {rc}: {lg.log_text()[-800:]}")
            res = json.loads(out.read_text())
            c = res["counters"]
            doc["loadgen"] = {k: res[k] for k in ("established", "failed", "tunnels_per_s",
                                                  "setup_p50_ms", "setup_p99_ms", "rtt_p50_ms",
                                                  "rtt_p99_ms", "alive_at_end", "cpu_s",
                                                  "deletes_received", "sessions_lost")}
            doc["loadgen"]["counters"] = c
            if "traffic" in doc:
                doc["traffic"].update({"pings_tx": c["pings_tx"], "pings_rx": c["pings_rx"],
                                       "rtt_p50_ms": res["rtt_p50_ms"],
                                       "rtt_p99_ms": res["rtt_p99_ms"]})
            doc["alive_at_end"] = res["alive_at_end"]
            doc["dpd_acks"] = c["dpd_acks"]
            doc["keepalives_tx"] = c["keepalives_tx"]
            log(f"end: {doc['alive_before_web']} sessions alive before the web listing,"
                f" {res['alive_at_end']}/{est} after; {c['dpd_acks']} DPD acks,"
                f" {c['keepalives_tx']} keepalives, pings {c['pings_rx']}/{c['pings_tx']}")
    doc["elapsed_s"] = time.monotonic() - t0
    write_json(args.json, doc)
    print(json.dumps({k: v for k, v in doc.items() if k not in ("environment",)}, indent=1,
                     default=str)[:3000])
    print(summary_text(doc))
    return 1 if "error" in doc else 0


def _workers(value: str | None) -> int | str | None:
    """``--workers``: a count, "auto", or None (vpnhub's default)."""
    if value is None:
        return None
    return int(value) if value.isdigit() else value


def renice(pid: int, niceness: int) -> None:
    """Every thread of `pid` at `niceness` (setpriority on a pid names one thread)."""
    if niceness == 0:
        return
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError, PermissionError):  # thread gone
            os.setpriority(os.PRIO_PROCESS, int(task.name), niceness)


def pollers(topo: Topology, sock: Path, tabs: int, seconds: float,
            niceness: int = 0) -> dict[str, Any]:
    """`tabs` open Sessions tabs for `seconds`, plus one export (bench/pollers.py)."""
    pwf = topo.run_dir / "web-admin.pw"
    pwf.write_text(WEB_ADMIN[1] + "\n")
    argv = ["nice", "-n", str(niceness)] if niceness else []
    argv += [PYTHON, str(REPO / "bench" / "pollers.py"), "--socket", str(sock),
            "--web", "http://127.0.0.1:8443", "--user", WEB_ADMIN[0], "--password-file",
            str(pwf), "--tabs", str(tabs), "--seconds", f"{seconds:g}", "--export"]
    cp = topo.exec(topo.conc, argv, timeout=seconds + 900)
    try:
        out: dict[str, Any] = json.loads(cp.stdout)
    except ValueError:
        return {"error": f"pollers exit {cp.returncode}: {cp.stderr.strip()[-400:]}"}
    log(f"polling: {tabs} tabs for {seconds:g} s: page p50 {out['page']['p50_ms']} ms,"
        f" p99 {out['page']['p99_ms']} ms, max {out['page']['max_ms']} ms;"
        f" export {out.get('export')}; loop worst {out['loop_delay_recent_max_ms']} ms")
    return out


def admin_status(sock: Path) -> dict[str, Any]:
    """The concentrator's `status` (LoopWatch: the loop's worst delay since start)."""
    try:
        return dict(request(str(sock), {"cmd": "status"}, timeout=30))
    except (OSError, ValueError) as e:
        return {"error": str(e)}


def loadgen_status(lg: Any, logf: Path, nth: int, timeout: float = 30.0) -> dict[str, Any]:
    """SIGUSR2 to the load generator; its `nth` status event (alive, lost, DELETEs)."""
    if lg.alive():
        os.kill(lg.pid, signal.SIGUSR2)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = [json.loads(line) for line in logf.read_text(errors="replace").splitlines()
                if line.startswith("{") and '"event": "status"' in line]
        if len(seen) >= nth:
            return dict(seen[nth - 1])
        time.sleep(0.1)
    return {}


def sigterm(conc: Any, lg: Any, logf: Path) -> dict[str, Any]:
    """SIGTERM with the sessions up: seconds to exit, DELETEs the clients received."""
    assert conc.proc is not None
    t = time.monotonic()
    conc.proc.popen.send_signal(signal.SIGTERM)
    try:
        conc.proc.popen.wait(30.0)
        exit_s: float | None = time.monotonic() - t
    except Exception:  # still running after 30 s: the finally block kills it
        exit_s = None
    time.sleep(2.0)  # the last DELETEs in flight reach the load generator
    st = loadgen_status(lg, logf, 2)
    return {"exit_s": exit_s, "deletes_received": st.get("deletes_received"),
            "alive_after": st.get("alive")}


def summary_text(doc: dict[str, Any]) -> str:
    """The issue's "Done when" figures, one line each."""
    idle, pol, sig = doc.get("idle", {}), doc.get("polling", {}), doc.get("sigterm", {})
    page = pol.get("page", {})
    hist = ("after the history was full" if doc.get("history_full") else
            f"NOT after the history was full: {doc.get('history_wait_s')} s after the set-up")
    export = pol.get("export", {})
    exp = ("not available" if export.get("result") == "not available" else
           f"{export.get('s', 0):.1f} s, {export.get('lines')} lines" if "s" in export
           else str(export))
    lines = [
        f"scale: {doc.get('setup', {}).get('established')}/{doc['sessions']} sessions held",
        f"  idle CPU {_f(idle.get('conc_core_pct'))} % of a core, {_f(idle.get('kib_per_session'))}"
        f" KiB per session ({hist}; window {_f(idle.get('window_s'))} s)",
        f"  {pol.get('tabs')} tabs for {pol.get('seconds')} s: page of 100 p50"
        f" {page.get('p50_ms')} ms, p99 {page.get('p99_ms')} ms, max {page.get('max_ms')} ms;"
        f" {pol.get('error_count')} errors; export: {exp}",
        f"  loop worst delay: {idle.get('loop_delay_recent_max_ms')} ms idle (nobody polling),"
        f" {pol.get('loop_delay_recent_max_ms')} ms while polled,"
        f" {doc.get('loop', {}).get('loop_delay_max_ms')} ms since start"
        f" (load generator and pollers at nice {doc.get('clients_nice')})",
        f"  sessions lost: {doc.get('sessions_lost')}",
        f"  SIGTERM: exit in {_f(sig.get('exit_s'))} s, deletes_received"
        f" {sig.get('deletes_received')} of {doc.get('alive_before_sigterm')} sessions",
    ]
    for stall in doc.get("loop", {}).get("loop_stalls") or []:  # StallWatch: what held it
        where = stall.get("where") or ["?"]
        lines.append(f"  loop stall >= {stall.get('late_ms')} ms in {' < '.join(where[:4])}")
    return "\n".join(lines)


def _f(x: object) -> str:
    return f"{x:.2f}" if isinstance(x, int | float) else str(x)


if __name__ == "__main__":
    sys.exit(main())
