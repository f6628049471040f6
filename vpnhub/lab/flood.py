"""A spoofed flood of IKE first messages, for the lab's fault tests and bench/flood.py.

    ip netns exec NS python -m vpnhub.lab.flood --dst 203.0.113.50 --count 5000 \\
        --seconds 10 --net 198.51.100.0/24 --net 203.0.113.0/24 [--src 203.0.113.78]

Each packet is a valid-looking Aggressive Mode message 1 (SA with the
client's proposals, KE of DH group 14, nonce, the group name as ID_KEY_ID,
vendor IDs), built once by vpnhub's own initiator, with a fresh initiator
cookie per packet, sent from a raw socket with a spoofed source address
(random host of the --net ranges, or --src) and a random source port: the
concentrator does the whole DH work for each and its answers go nowhere.

Also the lab plumbing around it: ``prepare_internet`` makes the "internet"
namespace a router (so the concentrator's answers to spoofed sources leave
and are dropped there), ``start_flood`` spawns the sender in a namespace, and
``RssSampler`` watches a process's resident memory.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vpnhub.lab.procs import Proc
    from vpnhub.lab.topology import Host, Topology

INTERNET_ROUTER = "203.0.113.1"  # the "internet" namespace's address on its bridge
# Spoofed sources: another network, and the upper half of the lab's "internet"
# (the concentrator, the PAT and the direct clients live in the lower half).
SPOOF_NETS = ("198.51.100.0/24", "203.0.113.128/25")


# ------------------------------------------------------------------ packets
def first_message(group: str, dh_group: int = 14) -> bytes:
    """An Aggressive Mode message 1 as a vpnc-like client sends it."""
    from vpnhub.ike.policy import Policy
    from vpnhub.ike.sa import IkeConfig, IkeSA
    from vpnhub.ike.transitions import Role
    from vpnhub.secret import Secret

    cfg = IkeConfig(local_address="10.10.10.2", policy=Policy(dh_group=dh_group),
                    group_name=group, psk=Secret(b"unknown"))
    sa = IkeSA(cfg, Role.INITIATOR, ("203.0.113.50", 500), 0.0)
    sa.initiate(0.0)
    return sa.datagrams_to_send()[0].data


def ip_udp(src: str, sport: int, dst: str, dport: int, payload: bytes) -> bytes:
    """IPv4 + UDP headers (IP_HDRINCL: the kernel fills in the IP checksum; a zero
    UDP checksum means "none" in IPv4, RFC 768)."""
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, socket.IPPROTO_UDP,
                     0, socket.inet_aton(src), socket.inet_aton(dst))
    return ip + udp


def sources(nets: list[str], fixed: str | None, rnd: random.Random) -> tuple[str, int]:
    port = rnd.randrange(1024, 65536)
    if fixed:
        return fixed, port
    net = ipaddress.IPv4Network(rnd.choice(nets))
    return str(net.network_address + rnd.randrange(1, net.num_addresses - 1)), port


def send_flood(dst: str, count: int, seconds: float, nets: list[str], fixed: str | None,
               group: str, seed: int) -> dict[str, float]:
    """Send `count` spoofed first messages evenly over `seconds`."""
    rnd = random.Random(seed)
    template = first_message(group)
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    start = time.monotonic()
    sent = errors = 0
    for i in range(count):
        due = start + seconds * i / count
        if (ahead := due - time.monotonic()) > 0:
            time.sleep(ahead)
        src, sport = sources(nets, fixed, rnd)
        msg = rnd.randbytes(8) + template[8:]
        try:
            s.sendto(ip_udp(src, sport, dst, 500, msg), (dst, 0))
            sent += 1
        except OSError:
            errors += 1
    s.close()
    return {"sent": sent, "errors": errors, "seconds": time.monotonic() - start}


# ------------------------------------------------------------------ the lab
def prepare_internet(topo: Topology) -> None:
    """Make the "internet" namespace a router the concentrator sends spoofed
    sources' answers to, where they die (no forwarding, no such hosts)."""
    inet = topo.inet
    topo.exec(inet, ["ip", "addr", "add", f"{INTERNET_ROUTER}/24", "dev", inet.ifname],
              check=True)
    topo.exec(topo.conc, ["ip", "route", "replace", "default", "via", INTERNET_ROUTER],
              check=True)
    # not on the concentrator's link: else each spoofed neighbour's unanswered ARP
    # queues our answers and fills the socket buffer (EAGAIN), unlike on the Internet
    topo.exec(topo.conc, ["ip", "route", "replace", SPOOF_NETS[1], "via", INTERNET_ROUTER],
              check=True)


def start_flood(topo: Topology, host: Host | str, *, count: int, seconds: float,
                nets: tuple[str, ...] = SPOOF_NETS, src: str | None = None,
                group: str = "vpngroup", seed: int = 1, name: str = "flood") -> Proc:
    argv = [sys.executable, "-m", "vpnhub.lab.flood", "--dst", _conc_public(),
            "--count", str(count), "--seconds", str(seconds), "--group", group,
            "--seed", str(seed)]
    argv += ["--src", src] if src else [a for n in nets for a in ("--net", n)]
    return topo.spawn(host, argv, f"{name}.log", name=name)


def _conc_public() -> str:
    from vpnhub.lab.topology import CONC_PUBLIC

    return CONC_PUBLIC


def flood_result(proc: Proc, timeout: float) -> dict[str, float]:
    proc.popen.wait(timeout)
    text = proc.log_text().strip().splitlines()
    try:
        out = json.loads(text[-1]) if text else {}
    except ValueError:
        out = {}
    return out if isinstance(out, dict) else {}


def rss_kb(pid: int) -> int:
    """Resident memory of a process (VmRSS), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class RssSampler:
    """Samples a process's RSS every `interval` s in a thread; `peak` is the highest."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, rss_kb(self.pid))
            except OSError:
                return
            self._stop.wait(self.interval)


def admin(sock: Path, cmd: str) -> dict[str, Any]:
    """One command on the concentrator's admin socket (e.g. "stats")."""
    from vpnhub.admin import request  # the admin protocol's client

    return request(str(sock), {"cmd": cmd})


def count_ike_sent(topo: Topology, host: Host | str) -> Callable[[], int]:
    """An nft counter of UDP packets to port 500 sent from `host` (vpnc's message 1)."""
    table = f"{topo.prefix}cnt"
    # add + flush first: a second call (a second flood) starts its count at 0
    ruleset = (f"add table inet {table}\nflush table inet {table}\n"
               f"table inet {table} {{\n  chain out {{\n"
               "    type filter hook output priority 0; policy accept;\n"
               "    udp dport 500 counter\n  }\n}\n")
    topo.exec(host, ["nft", "-f", "-"], input=ruleset, check=True)

    def read() -> int:
        out = topo.exec(host, ["nft", "-j", "list", "table", "inet", table], check=True).stdout
        for item in json.loads(out)["nftables"]:
            for expr in item.get("rule", {}).get("expr", []):
                if "counter" in expr:
                    return int(expr["counter"]["packets"])
        return -1

    return read


@dataclass
class FloodRun:
    """What one flood with a vpnc logging in during it measured."""

    count: int
    seconds: float
    sent: int = 0
    pat_sent: int = 0
    vpnc_message1_sends: int = 0  # 1: answered within vpnc's first window (1 s)
    vpnc_connected_s: float = 0.0  # vpnc start -> tunnel configured
    ping_ok: bool = False
    rss_before_kb: int = 0
    rss_peak_kb: int = 0
    rss_after_kb: int = 0
    rss_after_logout_kb: int = 0  # once vpnc, logged in during the flood, has left
    drain_s: float = 0.0  # flood end -> no half-open SA left
    stats_at_peak: dict[str, Any] = field(default_factory=dict)
    stats_after: dict[str, Any] = field(default_factory=dict)


def run_flood(topo: Topology, server_pid: int, admin_socket: Path, *, count: int,
              seconds: float, pat_spoofed: int = 32, drain_timeout: float = 60.0,
              group: str = "vpngroup", prepare: bool = True) -> FloodRun:
    """The issue's scenario: `count` spoofed first messages over `seconds` from the
    "internet", `pat_spoofed` carrying the PAT's address from the PAT, and vpnc in
    the first client logging in a third of the way in; then wait until every
    half-open SA has timed out and read the concentrator's memory again.
    `prepare=False` for a second flood in the same lab (the routes are there)."""
    from vpnhub.lab.peers import start_vpnc
    from vpnhub.lab.topology import LAN_HOST, PAT_OUTSIDE, wait_until

    run = FloodRun(count, seconds)
    if prepare:
        prepare_internet(topo)
    c1 = topo.clients[0]
    # The baseline is a concentrator in service: one login and logout first, so
    # that what the first session loads once (modules, threads, data plane
    # tables) is not counted as memory the flood kept.
    warm = start_vpnc(topo, c1, dh="dh14")
    warm.wait_usable(timeout=20)
    warm.stop()
    sent_500 = count_ike_sent(topo, c1)
    time.sleep(2.0)
    run.rss_before_kb = rss_kb(server_pid)
    with RssSampler(server_pid) as rss:
        pat = start_flood(topo, topo.pat, count=pat_spoofed, seconds=0.2, src=PAT_OUTSIDE,
                          group=group, name="flood-pat")
        flood = start_flood(topo, topo.inet, count=count, seconds=seconds, group=group)
        time.sleep(seconds / 3)
        t0 = time.monotonic()
        vpnc = start_vpnc(topo, c1, dh="dh14")
        try:
            vpnc.wait_connected(timeout=20)
            run.vpnc_connected_s = time.monotonic() - t0
            vpnc.wait_usable(timeout=10)
            run.ping_ok = topo.ping(c1, LAN_HOST, count=3, interface=c1.tun)
        finally:
            run.vpnc_message1_sends = sent_500()
            run.sent = int(flood_result(flood, seconds + 30).get("sent", 0))
            run.pat_sent = int(flood_result(pat, 10).get("sent", 0))
            run.stats_at_peak = admin(admin_socket, "stats")
    run.rss_peak_kb = rss.peak
    end = time.monotonic()

    def drained() -> dict[str, Any] | None:
        st = admin(admin_socket, "stats")
        return st if st.get("half_open") == 0 else None

    run.stats_after = wait_until(drained, drain_timeout, interval=0.5,
                                 what="every half-open SA to time out")
    run.drain_s = time.monotonic() - end
    time.sleep(2.0)  # a few ticks of the timer loop after the last one went
    run.rss_after_kb = rss_kb(server_pid)
    vpnc.stop()
    time.sleep(2.0)
    run.rss_after_logout_kb = rss_kb(server_pid)
    return run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vpnhub.lab.flood", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dst", required=True)
    p.add_argument("--count", type=int, default=5000)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--net", action="append", default=[])
    p.add_argument("--src", default=None, help="one spoofed source address (random ports)")
    p.add_argument("--group", default="vpngroup")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args(argv)
    nets = a.net or list(SPOOF_NETS)
    print(json.dumps(send_flood(a.dst, a.count, a.seconds, nets, a.src, a.group, a.seed)),
          flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
