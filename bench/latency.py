"""Latency: ping RTT through the tunnel vs the direct path, and the time to the first packet.

    sudo .venv/bin/python bench/latency.py [--count 500] [--interval 0.01] [--connects 5]
        [--pairs vpnc:strongswan,vpnc:vpnhub,strongswan:strongswan,vpnhub:vpnhub]
        [--json out.json] [--smoke]

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
    Client,
    environment,
    lab_prefix,
    log,
    median,
    percentile,
    run_dir_for,
    start_client,
    wait_usable,
    write_json,
)
from throughput import start_conc

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
    args = ap.parse_args(argv)
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
                    c: Client | None = None
                    try:
                        for i in range(args.connects):
                            probe = start_probe(topo)
                            t = time.monotonic()
                            c = start_client(topo, client_kind, topo.clients[0], suite,
                                             user_no=1)
                            first = probe_result(probe)
                            wait_usable(topo, c, 30.0)
                            connects.append((first if first is not None else time.monotonic())
                                            - t)
                            if i < args.connects - 1:
                                c.stop()
                                c = None
                                time.sleep(0.5)
                        assert c is not None
                        res["connect_s"] = connects
                        res["connect_p50_ms"] = (median(connects) or 0) * 1e3
                        iface = None if client_kind == "strongswan" else c.tun
                        res.update(ping_rtts(topo, args.count, args.interval, iface))
                        log(f"{client_kind}->{conc_kind}: p50 {res['rtt_p50_ms']} ms, p99"
                            f" {res['rtt_p99_ms']} ms, loss {res['loss']}, first packet"
                            f" {res['connect_p50_ms']:.0f} ms")
                    except Exception as e:
                        res["error"] = f"{type(e).__name__}: {e}"
                        log(f"{client_kind}->{conc_kind}: ERROR {res['error']}")
                    finally:
                        if c is not None:
                            c.stop()
                        time.sleep(0.3)
                    doc["results"].append(res)
            finally:
                conc.stop()
                time.sleep(0.5)
    doc["elapsed_s"] = time.monotonic() - t0
    write_json(args.json, doc)
    return 0 if all("error" not in r for r in doc["results"]) else 1


if __name__ == "__main__":
    sys.exit(main())
