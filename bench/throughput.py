"""Throughput through the lab's PAT: iperf3 TCP through one tunnel and through two at once.

    sudo .venv/bin/python bench/throughput.py [--runs 5] [--seconds 10]
        [--suites aes128-sha1,aes256-sha256,aes256gcm16,3des-md5]
        [--pairs vpnc:strongswan,vpnc:vpnhub,strongswan:strongswan,vpnhub:vpnhub]
        [--tunnels 1,2] [--json out.json] [--profile-dir DIR] [--smoke]

One topology (two clients behind the ``masquerade random`` PAT, the
concentrator, the LAN host running ``iperf3 -s``) serves every measurement:
for each suite, the strongSwan concentrator (charon + kernel-libipsec) and
the vpnhub concentrator (``vpnhub serve``) take turns in the concentrator
namespace, and each client kind (vpnc, the vpnhub client, the strongSwan
IKEv1 client) uploads to the LAN host (``iperf3 -c`` in the client, like the
anchor in docs/DATAPLANE-COSTS.md). Per configuration, ``--runs`` runs of
``--seconds`` each; the median is reported.

Per run: Mbit/s (iperf3 receiver), packets/s through the concentrator's
tunnel interface (both directions: data and ACKs; with vpnhub's TUN offloads
the data plane's count of IP packets, since the link counts a super-packet
once), and CPU seconds per GB of
payload of the concentrator process and of the client process(es)
(utime+stime of all their threads from /proc/PID/stat over the run).
Before the first run of a configuration the benchmark waits (``settle``, at
most 20 s, ``settle_s`` in the JSON) until the vpnhub concentrator's process
tree uses less than a tenth of a core: what it does once after the tunnels
come up (filling its DH pool) is not forwarding and stays out of the runs.

System calls per packet (issue 16), vpnhub concentrator only, from the admin
``stats`` counters (``udp_io``) read before and after each run:
``udp_rx_calls_per_dgram`` and ``udp_tx_calls_per_dgram`` (receives per UDP
datagram in, ESP sends per datagram out: below 1 where GRO and GSO batch),
``tun_rx_calls_per_pkt`` and ``tun_tx_calls_per_pkt`` (TUN reads per packet
read, TUN writes per packet written: below 1 where the TUN offloads split
super-packets and coalesce writes; ``--tun-offload on|off`` sets them),
``syscalls_per_pkt`` (UDP receives and sends, TUN reads and writes, over the
packets the data plane took in: datagrams received plus TUN packets read) and
``conc_cpu_us_per_pkt`` over the same packets. Only calls that moved a packet
are counted: the ``EAGAIN`` that ends each batch and ``epoll_wait`` are not.

Pairs are ``client:concentrator``. Suites a client cannot negotiate are
skipped (vpnc: no SHA2, no GCM), and so is GCM on strongSwan (its lab
configuration loads no GCM plugin for kernel-libipsec... if it works it is measured).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    PYTHON,
    SUITES,
    BenchSuite,
    Client,
    Concentrator,
    CpuMeter,
    child_pids,
    cpu_seconds,
    environment,
    lab_prefix,
    link_packets,
    log,
    median,
    run_dir_for,
    start_charon_concentrator,
    start_client,
    start_vpnhub_concentrator,
    vpnhub_config,
    wait_usable,
    write_json,
)

from vpnhub.admin import request
from vpnhub.lab.topology import LAN_HOST, Topology

DEFAULT_PAIRS = ["vpnc:strongswan", "vpnc:vpnhub", "strongswan:strongswan", "vpnhub:vpnhub"]
IPERF_PORTS = (5201, 5202)


def supported(suite: BenchSuite, client: str, conc: str) -> str | None:
    """None if the pair can negotiate the suite, else why not."""
    if client == "vpnc" and not suite.vpnc:
        return "vpnc offers no SHA2 and no GCM"
    return None


def negotiated(topo: Topology, conc: Concentrator) -> list[str]:
    """The ESP suites the concentrator reports for its tunnels (proof of the suite)."""
    if conc.kind == "vpnhub":
        assert conc.admin_socket is not None
        cp = topo.exec(topo.conc, [PYTHON, "-m", "vpnhub", "sessions", "--json", "--socket",
                                   str(conc.admin_socket)], timeout=60)
        try:
            return sorted({s.get("encryption", "?") for s in json.loads(cp.stdout)["sessions"]})
        except (ValueError, KeyError):
            return [f"? ({cp.stderr.strip()[-200:]})"]
    assert conc.charon is not None
    import re

    return sorted(set(re.findall(r"ESP:(\S+)", conc.charon.list_sas()))) or ["?"]


IO_COUNTS = ("rx_calls", "rx_datagrams", "tx_calls", "tx_datagrams", "tun_rx", "tun_tx",
             "tun_rx_calls", "tun_tx_calls", "tun_rx_super", "tun_tx_super",
             "gso_fallbacks", "esp_via_ike_socket")


def conc_stats(conc: Concentrator) -> dict[str, Any]:
    """The vpnhub concentrator's admin ``stats`` ({} for strongSwan or on error)."""
    if conc.kind != "vpnhub" or conc.admin_socket is None:
        return {}
    try:
        reply = request(str(conc.admin_socket), {"cmd": "stats"})
    except (OSError, ValueError):
        return {}
    return reply if isinstance(reply, dict) else {}


def conc_io(stats: dict[str, Any]) -> dict[str, Any] | None:
    """The UDP and TUN call counters in admin ``stats`` (issue 16)."""
    io = stats.get("udp_io")
    return io if isinstance(io, dict) else None


MIN_PACKETS = 1000  # per worker and run, for a CPU-per-packet figure


def worker_figures(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    """Each data-plane worker's packets and CPU over one run ([dataplane] workers > 1;
    issue 16): CPU from /proc/PID/stat before and after, packets from admin stats."""
    out = []
    w0 = {w["index"]: w for w in before.get("workers") or []}
    for w in after.get("workers") or []:
        b = w0.get(w["index"])
        if b is None or b["pid"] != w["pid"]:  # restarted during the run: no figure
            continue
        cpu = w["_cpu1"] - b["_cpu0"]
        packets = int(w["packets"]) - int(b["packets"])
        out.append({"index": w["index"], "cpu_s": cpu, "packets": packets,
                    # an idle worker's few packets give no per-packet figure worth printing
                    "cpu_us_per_pkt": cpu * 1e6 / packets if packets >= MIN_PACKETS else None})
    return out


def _stamp_cpu(stats: dict[str, Any], key: str) -> dict[str, Any]:
    for w in stats.get("workers") or []:
        w[key] = cpu_seconds(int(w["pid"]))
    return stats


def syscall_figures(before: dict[str, Any] | None, after: dict[str, Any] | None,
                    conc_cpu_s: float) -> dict[str, Any]:
    """System calls per packet over one run (the module doc says which calls)."""
    if before is None or after is None:
        return {}
    d = {k: int(after.get(k, 0)) - int(before.get(k, 0)) for k in IO_COUNTS}

    def per(a: float, b: int) -> float | None:
        return a / b if b else None

    if "tun_rx_calls" not in after:  # before issue 16's TUN offloads: one call a packet
        d["tun_rx_calls"], d["tun_tx_calls"] = d["tun_rx"], d["tun_tx"]
    packets = d["rx_datagrams"] + d["tun_rx"]
    calls = d["rx_calls"] + d["tx_calls"] + d["tun_rx_calls"] + d["tun_tx_calls"]
    return {"udp_rx_calls_per_dgram": per(d["rx_calls"], d["rx_datagrams"]),
            "udp_tx_calls_per_dgram": per(d["tx_calls"], d["tx_datagrams"]),
            "tun_rx_calls_per_pkt": per(d["tun_rx_calls"], d["tun_rx"]),
            "tun_tx_calls_per_pkt": per(d["tun_tx_calls"], d["tun_tx"]),
            "tun_offload": bool(after.get("tun_offload")),
            "syscalls_per_pkt": per(calls, packets),
            "conc_cpu_us_per_pkt": per(conc_cpu_s * 1e6, packets),
            "udp_gro": bool(after.get("gro")), "udp_gso": bool(after.get("gso")),
            "io": d}


def upload_mbit_s(out: str) -> tuple[float, int]:
    """Mbit/s and bytes received, from ``iperf3 -c ... -J`` output ((0, 0) if none)."""
    try:
        recv = json.loads(out)["end"]["sum_received"]
        return float(recv["bits_per_second"]) / 1e6, int(recv["bytes"])
    except (ValueError, KeyError):
        return 0.0, 0


def iperf_once(topo: Topology, conc: Concentrator, clients: list[Client], seconds: float
               ) -> dict[str, Any]:
    """One measurement: every client uploads to the LAN host at the same time."""
    st0 = _stamp_cpu(conc_stats(conc), "_cpu0")
    # vpnhub's data-plane workers are its child processes: their CPU is the concentrator's
    meter = CpuMeter({"conc": [conc.pid, *child_pids(conc.pid)],
                      "client": [c.pid for c in clients]})
    pk0 = link_packets(topo, topo.conc, conc.tun)
    meter.start()
    procs = []
    for c, port in zip(clients, IPERF_PORTS, strict=False):
        argv = ["ip", "netns", "exec", c.host.netns, "iperf3", "-c", LAN_HOST, "-p", str(port),
                "-t", f"{seconds:g}", "-J"]
        procs.append(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    outs = [p.communicate(timeout=seconds + 60) for p in procs]
    meter.stop()
    pk1 = link_packets(topo, topo.conc, conc.tun)
    st1 = _stamp_cpu(conc_stats(conc), "_cpu1")
    total_bytes = 0
    total_bps = 0.0
    errors = []
    for (out, err), p in zip(outs, procs, strict=True):
        try:
            doc = json.loads(out)
            if "error" in doc:
                errors.append(doc["error"])
                continue
            recv = doc["end"]["sum_received"]
            total_bytes += int(recv["bytes"])
            total_bps += float(recv["bits_per_second"])
        except (ValueError, KeyError) as e:
            errors.append(f"iperf3 exit {p.returncode}: {e}: {err.strip()[-200:]}")
    if errors or total_bytes == 0:
        return {"error": "; ".join(errors) or "no bytes"}
    gb = total_bytes / 1e9
    io = syscall_figures(conc_io(st0), conc_io(st1), meter.seconds["conc"])
    tun_packets = pk1 - pk0
    if io.get("tun_offload"):  # the link counts a super-packet once: the data plane's count
        tun_packets = io["io"]["tun_rx"] + io["io"]["tun_tx"]
    return {
        "mbit_s": total_bps / 1e6,
        "bytes": total_bytes,
        "pkt_s": tun_packets / meter.wall if meter.wall else 0.0,
        "conc_cpu_s": meter.seconds["conc"],
        "client_cpu_s": meter.seconds["client"],
        "conc_cpu_s_per_gb": meter.seconds["conc"] / gb,
        "client_cpu_s_per_gb": meter.seconds["client"] / gb,
        "conc_sys_share": (meter.system["conc"] / meter.seconds["conc"]
                           if meter.seconds["conc"] else None),
        "client_sys_share": (meter.system["client"] / meter.seconds["client"]
                             if meter.seconds["client"] else None),
        "conc_core_share": meter.seconds["conc"] / meter.wall,
        "machine_busy": meter.machine_busy,
        "wall_s": meter.wall,
        **io,
        "workers": worker_figures(st0, st1),
    }


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    good = [r for r in runs if "error" not in r]
    out: dict[str, Any] = {"runs_ok": len(good), "runs": len(runs)}
    for k in ("mbit_s", "pkt_s", "conc_cpu_s_per_gb", "client_cpu_s_per_gb", "conc_core_share",
              "conc_sys_share", "client_sys_share", "machine_busy"):
        out[k] = median([r[k] for r in good])
    for k in ("udp_rx_calls_per_dgram", "udp_tx_calls_per_dgram", "tun_rx_calls_per_pkt",
              "tun_tx_calls_per_pkt", "syscalls_per_pkt",
              "conc_cpu_us_per_pkt"):  # vpnhub concentrator only (issue 16)
        values = [r[k] for r in good if r.get(k) is not None]
        if values:
            out[k] = median(values)
    per_worker: dict[int, list[dict[str, Any]]] = {}
    for r in good:
        for w in r.get("workers") or []:
            per_worker.setdefault(int(w["index"]), []).append(w)
    out["workers"] = [  # median of the runs, per worker (issue 16)
        {"index": k, "cpu_s": median([w["cpu_s"] for w in ws]),
         "packets": median([w["packets"] for w in ws]),
         "cpu_us_per_pkt": median([w["cpu_us_per_pkt"] for w in ws
                                   if w["cpu_us_per_pkt"] is not None])}
        for k, ws in sorted(per_worker.items())]
    return out


def start_conc(topo: Topology, kind: str, suite: BenchSuite,
               workers: int | str | None = None, tun_offload: bool | None = None,
               moderation_us: int | None = None) -> Concentrator:
    if kind == "vpnhub":
        cfg = vpnhub_config(topo.run_dir, esp_proposal=suite.esp_vpnhub, workers=workers,
                            tun_offload=tun_offload, moderation_us=moderation_us)
        return start_vpnhub_concentrator(topo, cfg)
    return start_charon_concentrator(topo, suite)


def measure_config(topo: Topology, conc: Concentrator, suite: BenchSuite, client_kind: str,
                   n_tunnels: int, runs: int, seconds: float,
                   profile_dir: Path | None, tun_offload: bool | None = None
                   ) -> dict[str, Any]:
    res: dict[str, Any] = {"suite": suite.name, "suite_label": suite.label,
                           "client": client_kind, "concentrator": conc.kind,
                           "tunnels": n_tunnels}
    clients: list[Client] = []
    try:
        for i in range(n_tunnels):
            clients.append(start_client(topo, client_kind, topo.clients[i], suite,
                                        user_no=i + 1, tun_offload=tun_offload))
        res["setup_s"] = [round(wait_usable(topo, c, 30.0), 3) for c in clients]
        res["negotiated"] = negotiated(topo, conc)
        time.sleep(0.3)
        if conc.kind == "vpnhub":
            res["settle_s"] = settle(conc)
        results = []
        for r in range(runs):
            one = iperf_once(topo, conc, clients, seconds)
            log(f"  {client_kind}->{conc.kind} {suite.name} x{n_tunnels} run {r + 1}/{runs}: "
                + (f"{one['mbit_s']:.0f} Mbit/s, conc {one['conc_cpu_s_per_gb']:.1f} CPU s/GB,"
                   f" client {one['client_cpu_s_per_gb']:.1f} CPU s/GB"
                   if "error" not in one else f"ERROR {one['error']}"))
            results.append(one)
        res["runs_detail"] = results
        res.update(summarise(results))
        if profile_dir is not None and conc.kind == "vpnhub":
            res["profile"] = profile_run(topo, conc, clients, seconds, profile_dir,
                                         f"throughput-{client_kind}-{suite.name}-x{n_tunnels}")
    except Exception as e:  # one broken configuration must not lose the others
        res["error"] = f"{type(e).__name__}: {e}"
        log(f"  {client_kind}->{conc.kind} {suite.name} x{n_tunnels}: ERROR {res['error']}")
    finally:
        for c in clients:
            try:
                c.stop()
            except Exception as e:
                log(f"  stopping {c.kind}: {e}")
        time.sleep(0.3)
    return res


SETTLE_WINDOW = 0.5  # s: how often the concentrator's CPU is sampled before run 1
SETTLE_CPU = 0.1  # share of a core below which it counts as idle
SETTLE_MAX = 20.0  # s at most: a concentrator that never settles is measured anyway


def settle(conc: Concentrator) -> float:
    """Wait until vpnhub's process tree is idle (below SETTLE_CPU of a core over
    SETTLE_WINDOW), at most SETTLE_MAX s; returns how long it took.

    The runs count all of the concentrator's CPU as the forwarding's: work it does
    once after the tunnels come up (the DH pool filled in idle time, 2,048 pairs of
    group 14 by default since issue 13's sizing, about 0.4 CPU s) must not land in
    run 1. It did: run 1 of each command came out ~2 us per packet above runs 2-3
    with that CPU in the parent, not in the data plane.
    """
    start = time.monotonic()
    pids = [conc.pid, *child_pids(conc.pid)]
    before = sum(cpu_seconds(p) for p in pids)
    while time.monotonic() - start < SETTLE_MAX:
        time.sleep(SETTLE_WINDOW)
        now = sum(cpu_seconds(p) for p in pids)
        busy, before = now - before, now
        if busy < SETTLE_CPU * SETTLE_WINDOW:
            break
    waited = time.monotonic() - start
    if waited >= SETTLE_MAX:
        log(f"  vpnhub concentrator still busy after {SETTLE_MAX:.0f} s: measuring anyway")
    return round(waited, 2)


def profile_run(topo: Topology, conc: Concentrator, clients: list[Client], seconds: float,
                out_dir: Path, name: str) -> dict[str, Any]:
    """An extra (uncounted) run with py-spy sampling the concentrator."""
    import threading

    from pyspy import profile

    box: dict[str, Any] = {}

    def go() -> None:
        box["text"], box["summary"] = profile(conc.pid, seconds, out_dir, name,
                                              f"vpnhub concentrator during {name}")

    t = threading.Thread(target=go)
    t.start()
    time.sleep(0.5)
    one = iperf_once(topo, conc, clients, seconds)
    t.join()
    return {"file": f"{name}.txt", "text": box.get("text", ""), "summary": box.get("summary"),
            "run_under_profiler": one}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="iperf3 runs per configuration (median)")
    ap.add_argument("--seconds", type=float, default=10.0, help="iperf3 -t")
    ap.add_argument("--suites", default=",".join(SUITES))
    ap.add_argument("--pairs", default=",".join(DEFAULT_PAIRS), help="client:concentrator,...")
    ap.add_argument("--tunnels", default="1,2", help="tunnels at once: 1, 2 or 1,2")
    ap.add_argument("--headline", default="",
                    help="this suite gets --runs/--tunnels/--pairs; the others get --other-*")
    ap.add_argument("--headline-pairs", default="",
                    help="only these client:concentrator pairs (1 tunnel) of the headline"
                         " suite get --runs; every other configuration gets --other-runs")
    ap.add_argument("--other-runs", type=int, help="runs of the non-headline configurations")
    ap.add_argument("--other-tunnels", help="tunnel counts for the non-headline suites")
    ap.add_argument("--lean-others", action="store_true",
                    help="non-headline suites: only vpnc pairs when vpnc can negotiate the"
                         " suite, else only the native pairs")
    ap.add_argument("--two-tunnel-pairs", default="",
                    help="restrict the 2-tunnel runs to these client:concentrator pairs")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--profile-dir", type=Path, help="py-spy the vpnhub concentrator (extra run)")
    ap.add_argument("--profile-only", default="aes128-sha1",
                    help="suites to profile (comma-separated)")
    ap.add_argument("--profile-pairs", default="vpnc:vpnhub",
                    help="client:concentrator pairs to profile")
    ap.add_argument("--prefix", help="lab prefix (default: a fresh vhbt....)")
    ap.add_argument("--workers", default=None,
                    help="the vpnhub concentrator's [dataplane] workers (a number or auto;"
                         " default: its own default, auto)")
    ap.add_argument("--tun-offload", choices=("on", "off"), default=None,
                    help="vpnhub's TUN offloads ([dataplane] tun_offload, the client's"
                         " --no-tun-offload; issue 16); default: vpnhub's default")
    ap.add_argument("--moderation-us", type=int, default=None,
                    help="the vpnhub concentrator's [dataplane] moderation_us (0: off;"
                         " default: its own default)")
    ap.add_argument("--smoke", action="store_true",
                    help="seconds-long check: 1 run of 2 s, aes128-sha1, vpnhub:vpnhub, 1 tunnel")
    args = ap.parse_args(argv)
    if args.workers is not None and args.workers != "auto":
        args.workers = int(args.workers)
    args.tun_offload = None if args.tun_offload is None else args.tun_offload == "on"
    if args.smoke:
        args.runs, args.seconds, args.suites = 1, 2.0, "aes128-sha1"
        args.pairs, args.tunnels = "vpnhub:vpnhub", "1"
    suites = [SUITES[s] for s in args.suites.split(",") if s]
    pairs = [tuple(p.split(":")) for p in args.pairs.split(",") if p]
    tunnel_counts = [int(t) for t in args.tunnels.split(",") if t]
    other_tunnels = ([int(t) for t in args.other_tunnels.split(",") if t]
                     if args.other_tunnels else tunnel_counts)
    two_pairs = {tuple(p.split(":")) for p in args.two_tunnel_pairs.split(",") if p}

    head_pairs = {tuple(p.split(":")) for p in args.headline_pairs.split(",") if p}

    def plan(suite: BenchSuite) -> list[int]:
        if args.headline and suite.name != args.headline:
            return other_tunnels
        return tunnel_counts

    def runs_for(suite: BenchSuite, client: str, conc: str, n: int) -> int:
        """--runs for the headline configurations, --other-runs for the rest."""
        if not args.headline:
            return int(args.runs)
        head = suite.name == args.headline and n == 1 and (
            not head_pairs or (client, conc) in head_pairs)
        return int(args.runs) if head else int(args.other_runs or args.runs)
    prefix = args.prefix or lab_prefix("t")
    run = run_dir_for(prefix)
    doc: dict[str, Any] = {"bench": "throughput", "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                           "runs": args.runs, "seconds": args.seconds, "smoke": args.smoke,
                           "workers": args.workers, "tun_offload": args.tun_offload,
                           "moderation_us": args.moderation_us,
                           "environment": environment(), "results": []}
    t0 = time.monotonic()
    most = max([*tunnel_counts, *other_tunnels])
    with Topology(prefix, clients=most, run_dir=run) as topo:
        topo.start_lan_services(iperf_ports=list(IPERF_PORTS[:max(2, most)]))
        for suite in suites:
            for conc_kind in ("strongswan", "vpnhub"):
                todo = [(c, k) for c, k in pairs if k == conc_kind]
                if args.lean_others and args.headline and suite.name != args.headline:
                    # vpnc where vpnc can negotiate the suite, else the native clients
                    todo = [(c, k) for c, k in todo if (c == "vpnc") == suite.vpnc]
                if not todo:
                    continue
                counts = plan(suite)
                wanted = [(c, n) for c, _ in todo for n in counts
                          if supported(suite, c, conc_kind) is None
                          and (n == 1 or not two_pairs or (c, conc_kind) in two_pairs)]
                if not wanted:
                    continue
                log(f"{suite.name}: {conc_kind} concentrator")
                try:
                    conc = start_conc(topo, conc_kind, suite, args.workers, args.tun_offload,
                                      args.moderation_us)
                except Exception as e:
                    for c, n in wanted:
                        doc["results"].append({"suite": suite.name, "suite_label": suite.label,
                                               "client": c, "concentrator": conc_kind,
                                               "tunnels": n, "error": f"concentrator: {e}"})
                    log(f"  cannot start the {conc_kind} concentrator: {e}")
                    continue
                try:
                    for client_kind, n in wanted:
                        pdir = args.profile_dir if (
                            suite.name in args.profile_only.split(",") and n == 1
                            and f"{client_kind}:{conc_kind}" in args.profile_pairs.split(",")
                        ) else None
                        res = measure_config(topo, conc, suite, client_kind, n,
                                             runs_for(suite, client_kind, conc_kind, n),
                                             args.seconds, pdir, args.tun_offload)
                        doc["results"].append(res)
                        write_json(args.json, doc)
                finally:
                    conc.stop()
                    time.sleep(0.5)
    doc["elapsed_s"] = time.monotonic() - t0
    add_ratios(doc)
    write_json(args.json, doc)
    print(format_table(doc))
    return 0 if all("error" not in r for r in doc["results"]) else 1


def add_ratios(doc: dict[str, Any]) -> None:
    """vpnhub / strongSwan for the same client kind (vpnhub client vs strongSwan client
    for the native pairs), suite and tunnel count."""
    def find(client: str, conc: str, suite: str, n: int) -> dict[str, Any] | None:
        for r in doc["results"]:
            if (r["client"], r["concentrator"], r["suite"], r["tunnels"]) == (
                    client, conc, suite, n) and "error" not in r:
                return r
        return None

    ratios = []
    for r in doc["results"]:
        if r["concentrator"] != "vpnhub" or "error" in r:
            continue
        ref_client = "strongswan" if r["client"] == "vpnhub" else r["client"]
        ref = find(ref_client, "strongswan", r["suite"], r["tunnels"])
        if ref is None:
            continue
        ratios.append({
            "suite": r["suite"], "tunnels": r["tunnels"],
            "pair": f"{r['client']}->vpnhub vs {ref_client}->strongswan",
            "mbit_ratio": r["mbit_s"] / ref["mbit_s"] if ref["mbit_s"] else None,
            "conc_cpu_per_gb_ratio": (r["conc_cpu_s_per_gb"] / ref["conc_cpu_s_per_gb"]
                                      if ref["conc_cpu_s_per_gb"] else None),
        })
    doc["ratios"] = ratios


def format_table(doc: dict[str, Any]) -> str:
    lines = [f"{'suite':14} {'client':10} {'conc':10} {'n':>1} {'Mbit/s':>7} {'pkt/s':>7} "
             f"{'conc s/GB':>9} {'cli s/GB':>8} {'runs':>5} {'rx c/dg':>7} {'tx c/dg':>7} "
             f"{'tunrx/p':>7} {'tuntx/p':>7} {'sc/pkt':>6} {'us/pkt':>6}"]
    for r in doc["results"]:
        if "error" in r and "mbit_s" not in r:
            lines.append(f"{r['suite']:14} {r['client']:10} {r['concentrator']:10} "
                         f"{r['tunnels']:>1} ERROR {r['error'][:60]}")
            continue

        def f(x: float | None, w: int, p: int = 0) -> str:
            return f"{x:{w}.{p}f}" if x is not None else " " * (w - 1) + "-"

        lines.append(f"{r['suite']:14} {r['client']:10} {r['concentrator']:10} {r['tunnels']:>1} "
                     f"{f(r['mbit_s'], 7)} {f(r['pkt_s'], 7)} {f(r['conc_cpu_s_per_gb'], 9, 1)} "
                     f"{f(r['client_cpu_s_per_gb'], 8, 1)} {r['runs_ok']}/{r['runs']:<3} "
                     f"{f(r.get('udp_rx_calls_per_dgram'), 7, 2)} "
                     f"{f(r.get('udp_tx_calls_per_dgram'), 7, 2)} "
                     f"{f(r.get('tun_rx_calls_per_pkt'), 7, 2)} "
                     f"{f(r.get('tun_tx_calls_per_pkt'), 7, 2)} "
                     f"{f(r.get('syscalls_per_pkt'), 6, 2)} "
                     f"{f(r.get('conc_cpu_us_per_pkt'), 6, 1)}")
        for w in r.get("workers") or []:  # [dataplane] workers > 1 (issue 16)
            lines.append(f"    worker {w['index']}: {w['packets']:.0f} packets,"
                         f" {w['cpu_s']:.2f} CPU s, {f(w['cpu_us_per_pkt'], 5, 1)} us/packet")
    if doc.get("workers") is not None:
        lines.append(f"vpnhub [dataplane] workers = {doc['workers']}")
    if doc.get("moderation_us") is not None:
        lines.append(f"vpnhub [dataplane] moderation_us = {doc['moderation_us']}")
    if doc.get("tun_offload") is not None:
        lines.append(f"vpnhub [dataplane] tun_offload = {str(doc['tun_offload']).lower()}")
    for q in doc.get("ratios", []):
        mr, cr = q["mbit_ratio"], q["conc_cpu_per_gb_ratio"]
        lines.append(f"ratio {q['suite']} x{q['tunnels']} {q['pair']}: "
                     f"Mbit/s {mr:.2f}x, conc CPU/GB {cr:.2f}x" if mr and cr else "")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
