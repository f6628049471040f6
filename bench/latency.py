"""Latency: ping RTT through the tunnel vs the direct path, and the time to the first packet.

    sudo .venv/bin/python bench/latency.py [--count 500] [--interval 0.01] [--connects 5]
        [--pairs vpnc:strongswan,vpnc:vpnhub,strongswan:strongswan,vpnhub:vpnhub]
        [--json out.json] [--smoke]
    sudo .venv/bin/python bench/latency.py --under-load --rounds 3 \
        --configs 1:200,2:200,2:400 [--tunnels 1,2] [--count 300] [--upload-s 6]
        [--json out.json]

In the lab (client c1 behind the PAT, LAN host 192.168.2.10 behind the
concentrator): ``ping -c COUNT -i INTERVAL`` from the client to the LAN
host, once in clear (the PAT routes the private LAN to the concentrator's
namespace, which forwards it; no VPN process involved) and once through each
client:concentrator pair (AES-128/SHA1). Median and p99 of the per-packet
RTTs; a lost echo counts in ``loss``.

Time to the first packet: from starting the client to the first echo reply
from the LAN host through the tunnel, over ``--connects`` connects; median.
The probe (``bench/firstpacket.py``) is one process started before the
client, sending an echo every millisecond from a raw socket. For vpnc this
is the issue's "vpnc start to first packet" figure (vpnc runs its connect
script, ~30 ms, in that time).

``--under-load`` (issue 16, the cost of interrupt moderation): vpnc -> vpnhub
only. Each ``--configs`` entry ``WORKERS:MODERATION_US`` is a vpnhub
concentrator, each ``--tunnels`` entry a number of vpnc tunnels (1 or 2, in
c1 and c2, as ``throughput.py --tunnels 2``); per round each (configuration,
tunnels) in turn (alternated, a fresh concentrator and vpnc clients each
time): ``--count`` pings from c1 through its tunnel with every tunnel up and
idle, then ``--count`` pings while an ``iperf3`` upload of ``--upload-s`` s
in EVERY tunnel saturates them (the pings start 1 s into it; with 2 tunnels
and 2 workers the second tunnel's load can land on the pinged tunnel's
worker or the other). Reported per round: the pings' p50/p99 idle and under
the upload, the uploads' total (and per tunnel) Mbit/s and the concentrator's
CPU s per GB (its data-plane workers included); then per (configuration,
tunnels) the median and range over the rounds.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    PYTHON,
    REPO,
    SUITES,
    BenchSuite,
    Client,
    CpuMeter,
    child_pids,
    environment,
    lab_prefix,
    log,
    median,
    one_round,
    percentile,
    run_dir_for,
    start_client,
    wait_usable,
    write_json,
)
from throughput import IPERF_PORTS, start_conc, upload_mbit_s

from vpnhub.lab.topology import LAN_HOST, Topology

DEFAULT_PAIRS = ["vpnc:strongswan", "vpnc:vpnhub", "strongswan:strongswan", "vpnhub:vpnhub"]
_TIME = re.compile(r"time=([0-9.]+) ms")


def ping_rtts(topo: Topology, count: int, interval: float, iface: str | None
              ) -> dict[str, Any]:
    argv = ["ping", "-n", "-c", str(count), "-i", f"{interval:g}", "-W", "1"]
    if iface:
        argv += ["-I", iface]
    cp = topo.exec(topo.clients[0], [*argv, LAN_HOST], timeout=count * interval + 30)
    rtts = [float(m.group(1)) for m in _TIME.finditer(cp.stdout)]
    return {"sent": count, "received": len(rtts), "loss": count - len(rtts),
            "rtt_p50_ms": median(rtts), "rtt_p99_ms": percentile(rtts, 99),
            "rtt_min_ms": min(rtts) if rtts else None}


def start_probe(topo: Topology) -> subprocess.Popen[str]:
    """bench/firstpacket.py in the client namespace, ready to time the first reply."""
    p = subprocess.Popen(["ip", "netns", "exec", topo.clients[0].netns, PYTHON,
                          str(REPO / "bench" / "firstpacket.py"), LAN_HOST, "--timeout", "30"],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    p.stdout.readline()  # {"ready": ...}
    return p


def probe_result(p: subprocess.Popen[str]) -> float | None:
    """CLOCK_MONOTONIC time of the first echo reply through the tunnel (None: timeout)."""
    assert p.stdout is not None
    try:
        line = p.stdout.readline()
        p.wait(timeout=5)
        return float(json.loads(line)["first_reply"])
    except (ValueError, KeyError, subprocess.TimeoutExpired):
        p.kill()
        return None


def ping_under_upload(topo: Topology, clients: list[Client], conc_pid: int, count: int,
                      interval: float, upload_s: float) -> dict[str, Any]:
    """``count`` pings through the first client's tunnel while an iperf3 upload
    saturates every client's tunnel (one LAN-host iperf3 server port each)."""
    meter = CpuMeter({"conc": [conc_pid, *child_pids(conc_pid)]}).start()
    ups = [subprocess.Popen(["ip", "netns", "exec", c.host.netns, "iperf3", "-c", LAN_HOST,
                             "-p", str(port), "-t", f"{upload_s:g}", "-J"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for c, port in zip(clients, IPERF_PORTS, strict=False)]
    try:
        time.sleep(1.0)  # past TCP's slow start: the tunnels are full
        res = ping_rtts(topo, count, interval, clients[0].tun)
        outs = [up.communicate(timeout=upload_s + 60)[0] for up in ups]
    finally:
        for up in ups:
            if up.poll() is None:
                up.kill()
                up.wait()
    meter.stop()
    figures = [upload_mbit_s(out) for out in outs]
    nbytes = sum(n for _, n in figures)
    res["mbit_s"] = sum(m for m, _ in figures)
    res["mbit_s_per_tunnel"] = [m for m, _ in figures]
    res["conc_cpu_s_per_gb"] = meter.seconds["conc"] / (nbytes / 1e9) if nbytes else None
    return res


def stop_all(clients: list[Client]) -> None:
    for c in reversed(clients):
        c.stop()


def spread(values: list[float]) -> dict[str, float | None]:
    return {"median": median(values), "min": min(values, default=None),
            "max": max(values, default=None)}


def under_load(topo: Topology, suite: BenchSuite, configs: list[tuple[int, int]], rounds: int,
               count: int, interval: float, upload_s: float, tunnels: list[int] | None = None
               ) -> list[dict[str, Any]]:
    """Rounds of every (configuration, tunnel count) in turn; one dict per (round,
    configuration, tunnels)."""
    tunnels = tunnels or [1]
    topo.start_lan_services(iperf_ports=list(IPERF_PORTS))
    out: list[dict[str, Any]] = []
    for r in range(rounds):
        for (workers, mod_us), n in ((c, n) for c in configs for n in tunnels):
            res: dict[str, Any] = {"round": r, "workers": workers, "moderation_us": mod_us,
                                   "tunnels": n, "started": time.strftime("%H:%M:%S"),
                                   "load_avg": Path("/proc/loadavg").read_text().split()[0]}
            label = f"round {r + 1} workers {workers} moderation {mod_us} us, {n} tunnel(s)"
            conc = start_conc(topo, "vpnhub", suite, workers=workers, moderation_us=mod_us)
            with one_round(res, label, stop_conc=conc.stop, pause=0.5) as rnd:
                clients: list[Client] = []
                rnd.stop_client = lambda cs=clients: stop_all(cs)
                for i in range(n):
                    clients.append(start_client(topo, "vpnc", topo.clients[i], suite,
                                                user_no=i + 1))
                for c in clients:
                    wait_usable(topo, c, 30.0)
                time.sleep(0.5)
                res["idle"] = ping_rtts(topo, count, interval, clients[0].tun)
                res["under_upload"] = ping_under_upload(topo, clients, conc.pid, count,
                                                        interval, upload_s)
                u = res["under_upload"]
                log(f"{label}: idle p50 {res['idle']['rtt_p50_ms']} ms, p99"
                    f" {res['idle']['rtt_p99_ms']} ms; under upload p50 {u['rtt_p50_ms']} ms,"
                    f" p99 {u['rtt_p99_ms']} ms, loss {u['loss']}, {u['mbit_s']:.0f} Mbit/s"
                    f" {[round(m) for m in u['mbit_s_per_tunnel']]},"
                    f" conc {u['conc_cpu_s_per_gb'] or 0:.1f} CPU s/GB")
            out.append(res)
    return out


def summarise_load(results: list[dict[str, Any]], configs: list[tuple[int, int]],
                   tunnels: list[int] | None = None) -> list[dict[str, Any]]:
    summary = []
    for (workers, mod_us), n in ((c, n) for c in configs for n in tunnels or [1]):
        mine = [r for r in results if r["workers"] == workers and r["moderation_us"] == mod_us
                and r.get("tunnels", 1) == n and "error" not in r]
        u = [r["under_upload"] for r in mine]
        one = {"workers": workers, "moderation_us": mod_us, "tunnels": n, "rounds": len(mine),
               "idle_p50_ms": spread([r["idle"]["rtt_p50_ms"] for r in mine]),
               "idle_p99_ms": spread([r["idle"]["rtt_p99_ms"] for r in mine]),
               "load_p50_ms": spread([x["rtt_p50_ms"] for x in u]),
               "load_p99_ms": spread([x["rtt_p99_ms"] for x in u]),
               "load_loss": sum(x["loss"] for x in u),
               "mbit_s": spread([x["mbit_s"] for x in u]),
               "conc_cpu_s_per_gb": spread([x["conc_cpu_s_per_gb"] for x in u
                                            if x["conc_cpu_s_per_gb"] is not None])}
        log(f"workers {workers} moderation {mod_us} us, {n} tunnel(s) ({len(mine)} rounds):"
            f" under upload p50 {one['load_p50_ms']}, p99 {one['load_p99_ms']}; idle p50"
            f" {one['idle_p50_ms']}, p99 {one['idle_p99_ms']};"
            f" {one['mbit_s']} Mbit/s; {one['conc_cpu_s_per_gb']} CPU s/GB")
        summary.append(one)
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=500)
    ap.add_argument("--interval", type=float, default=0.01)
    ap.add_argument("--connects", type=int, default=5)
    ap.add_argument("--pairs", default=",".join(DEFAULT_PAIRS))
    ap.add_argument("--suite", default="aes128-sha1")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--prefix")
    ap.add_argument("--smoke", action="store_true", help="50 pings, 1 connect, vpnhub:vpnhub")
    ap.add_argument("--under-load", action="store_true",
                    help="pings idle and during an upload in the same tunnel (vpnc -> vpnhub)")
    ap.add_argument("--configs", default="1:200,2:200,2:400",
                    help="--under-load: WORKERS:MODERATION_US,... alternated per round")
    ap.add_argument("--tunnels", default="1",
                    help="--under-load: vpnc tunnels loaded at once, 1 or 2, e.g. 1,2")
    ap.add_argument("--rounds", type=int, default=3, help="--under-load: rounds")
    ap.add_argument("--upload-s", type=float, default=6.0, help="--under-load: iperf3 -t")
    args = ap.parse_args(argv)
    if args.under_load:
        if args.smoke:  # the figures exist: 1 round, 2 workers, a short upload
            args.count, args.rounds, args.upload_s, args.configs = 50, 1, 2.0, "2:200"
        return main_under_load(args)
    if args.smoke:
        args.count, args.connects, args.pairs = 50, 1, "vpnhub:vpnhub"
    suite = SUITES[args.suite]
    pairs = [tuple(p.split(":")) for p in args.pairs.split(",") if p]
    prefix = args.prefix or lab_prefix("l")
    doc: dict[str, Any] = {"bench": "latency", "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                           "count": args.count, "interval_s": args.interval,
                           "suite": suite.name, "smoke": args.smoke,
                           "environment": environment(), "results": []}
    t0 = time.monotonic()
    with Topology(prefix, clients=1, run_dir=run_dir_for(prefix)) as topo:
        topo.route_private_lan(True)
        try:
            direct = ping_rtts(topo, args.count, args.interval, None)
        finally:
            topo.route_private_lan(False)
        doc["direct"] = direct
        log(f"direct: p50 {direct['rtt_p50_ms']} ms, p99 {direct['rtt_p99_ms']} ms")
        for conc_kind in ("strongswan", "vpnhub"):
            todo = [c for c, k in pairs if k == conc_kind]
            if not todo:
                continue
            conc = start_conc(topo, conc_kind, suite)
            try:
                for client_kind in todo:
                    res: dict[str, Any] = {"client": client_kind, "concentrator": conc_kind}
                    connects: list[float] = []
                    with one_round(res, f"{client_kind}->{conc_kind}", pause=0.3) as rnd:
                        for i in range(args.connects):
                            probe = start_probe(topo)
                            t = time.monotonic()
                            c = start_client(topo, client_kind, topo.clients[0], suite,
                                             user_no=1)
                            rnd.stop_client = c.stop
                            first = probe_result(probe)
                            wait_usable(topo, c, 30.0)
                            connects.append((first if first is not None else time.monotonic())
                                            - t)
                            if i < args.connects - 1:
                                c.stop()
                                rnd.stop_client = None
                                time.sleep(0.5)
                        res["connect_s"] = connects
                        res["connect_p50_ms"] = (median(connects) or 0) * 1e3
                        iface = None if client_kind == "strongswan" else c.tun
                        res.update(ping_rtts(topo, args.count, args.interval, iface))
                        log(f"{client_kind}->{conc_kind}: p50 {res['rtt_p50_ms']} ms, p99"
                            f" {res['rtt_p99_ms']} ms, loss {res['loss']}, first packet"
                            f" {res['connect_p50_ms']:.0f} ms")
                    doc["results"].append(res)
            finally:
                conc.stop()
                time.sleep(0.5)
    doc["elapsed_s"] = time.monotonic() - t0
    write_json(args.json, doc)
    return 0 if all("error" not in r for r in doc["results"]) else 1


def main_under_load(args: argparse.Namespace) -> int:
    suite = SUITES[args.suite]
    configs = [(int(w), int(m)) for w, m in (c.split(":") for c in args.configs.split(",") if c)]
    tunnels = [int(t) for t in args.tunnels.split(",") if t]
    if not tunnels or not all(1 <= t <= len(IPERF_PORTS) for t in tunnels):
        raise SystemExit(f"--tunnels: 1 to {len(IPERF_PORTS)} (one iperf3 server port each)")
    prefix = args.prefix or lab_prefix("l")
    doc: dict[str, Any] = {"bench": "latency-under-load",
                           "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                           "count": args.count, "interval_s": args.interval,
                           "upload_s": args.upload_s, "suite": suite.name,
                           "tunnels": tunnels, "environment": environment()}
    t0 = time.monotonic()
    with Topology(prefix, clients=max(tunnels), run_dir=run_dir_for(prefix)) as topo:
        doc["results"] = under_load(topo, suite, configs, args.rounds, args.count,
                                    args.interval, args.upload_s, tunnels)
    doc["summary"] = summarise_load(doc["results"], configs, tunnels)
    doc["elapsed_s"] = time.monotonic() - t0
    write_json(args.json, doc)
    return 0 if all("error" not in r for r in doc["results"]) else 1


if __name__ == "__main__":
    sys.exit(main())
