"""Whole-forwarder benchmark: iperf3 TCP through two vpnhub data planes (needs root).

    sudo .venv/bin/python bench/esp_forward.py [--seconds 5] [--suites aes128-sha1,gcm128]
                                               [--encap udp|esp]

Topology (namespaces named after this process id, removed at the end):

    [vhfwd-a-PID] iperf3 -c 10.99.2.1       [vhfwd-b-PID] iperf3 -s
     10.99.1.1 TUN -- data plane A (process)   data plane B (process) -- TUN 10.99.2.1
     198.51.100.1 veth ===== ESP-in-UDP 4500 / raw ESP ===== veth 198.51.100.2

A encrypts and B decrypts (TCP upload, like DATAPLANE.md's anchor).  Each
data plane is its own process (no GIL sharing); the report gives throughput
and each process's CPU time (user / system, from ``wait4`` rusage) per packet
handled (data one way plus ACKs the other way) and per GB of payload.  System
time includes the TCP/IP stack work the kernel does while the data plane
reads or writes the TUN.
On 2 vCPUs the two data planes, iperf3 and the kernel share the cores.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import time
from multiprocessing.connection import Connection

from vpnhub.esp import (
    ESP_3DES,
    ESP_AES_CBC,
    ESP_AES_GCM_16,
    HMAC_MD5_96,
    HMAC_SHA1_96,
    HMAC_SHA2_256_128,
    SaParams,
    key_lengths,
)
from vpnhub.net.dataplane import Dataplane, open_esp_socket, open_udp_socket
from vpnhub.net.messages import AddInbound, AddOutbound
from vpnhub.net.tun import TunDevice, enter_netns, ip

SUITES = {
    "aes128-sha1": (ESP_AES_CBC, 128, HMAC_SHA1_96),
    "aes256-sha256": (ESP_AES_CBC, 256, HMAC_SHA2_256_128),
    "gcm128": (ESP_AES_GCM_16, 128, None),
    "3des-md5": (ESP_3DES, None, HMAC_MD5_96),
}
OUTER_A, OUTER_B = "198.51.100.1", "198.51.100.2"
INNER_A, INNER_B = "10.99.1.1", "10.99.2.1"


def _worker(tun: TunDevice, sock: socket.socket, udp: bool, commands: list[object],
            conn: Connection) -> None:
    dp = Dataplane(tun, udp=sock if udp else None, esp=None if udp else sock)
    for command in commands:
        dp.call(command)  # type: ignore[arg-type]
    signal.signal(signal.SIGTERM, lambda *_: dp.stop())
    conn.send("ready")
    dp.run()
    stats = dp.stats_now()
    conn.send({"tun_rx": stats.tun_rx, "udp_rx": stats.udp_rx, "esp_rx": stats.esp_rx,
               "drops": dict(stats.drops_total)})


def _params(spi: int, suite: tuple[int, int | None, int | None]) -> SaParams:
    enc_len, integ_len = key_lengths(*suite)
    return SaParams.from_keymat(spi, *suite, os.urandom(enc_len + integ_len))


def run_one(name: str, udp: bool, seconds: int) -> dict[str, object]:
    suite = SUITES[name]
    pid = os.getpid()
    ns_a, ns_b = f"vhfwd-a-{pid}", f"vhfwd-b-{pid}"
    created: list[str] = []
    procs: list[mp.process.BaseProcess] = []
    server = None
    try:
        for ns in (ns_a, ns_b):
            ip("netns", "add", ns)
            created.append(ns)
            subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw",
                            "net.ipv6.conf.default.disable_ipv6=1"], check=True)
            ip("link", "set", "lo", "up", netns=ns)
        ip("link", "add", f"vhfa{pid}", "netns", ns_a, "type", "veth",
           "peer", "name", f"vhfb{pid}", "netns", ns_b)
        for ns, dev, addr in ((ns_a, f"vhfa{pid}", OUTER_A), (ns_b, f"vhfb{pid}", OUTER_B)):
            ip("addr", "add", f"{addr}/24", "dev", dev, netns=ns)
            ip("link", "set", dev, "up", netns=ns)
        tun_a, tun_b = TunDevice("vhtun0", netns=ns_a), TunDevice("vhtun0", netns=ns_b)
        tun_a.configure(f"{INNER_A}/32", mtu=1400, routes=["10.99.2.0/24"])
        tun_b.configure(f"{INNER_B}/32", mtu=1400, routes=["10.99.1.0/24"])
        socks = []
        for ns, addr in ((ns_a, OUTER_A), (ns_b, OUTER_B)):
            with enter_netns(ns):
                socks.append(open_udp_socket(addr, 4500) if udp else open_esp_socket(addr))
        port = 4500 if udp else 0
        ab, ba = _params(0xA0000001, suite), _params(0xB0000001, suite)
        cmds_a = [AddOutbound(ab, (OUTER_B, port), udp_encap=udp),
                  AddInbound(ba, (OUTER_B, port), udp_encap=udp)]
        cmds_b = [AddInbound(ab, (OUTER_A, port), udp_encap=udp, allowed_src=INNER_A),
                  AddOutbound(ba, (OUTER_A, port), udp_encap=udp, dst=INNER_A)]
        ctx = mp.get_context("fork")
        conns = []
        for tun, sock, cmds in ((tun_a, socks[0], cmds_a), (tun_b, socks[1], cmds_b)):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(tun, sock, udp, cmds, child))
            proc.start()
            procs.append(proc)
            conns.append(parent)
            assert parent.recv() == "ready"
        for obj in (*socks, tun_a, tun_b):
            obj.close()  # the workers hold their own copies
        server = subprocess.Popen(["ip", "netns", "exec", ns_b, "iperf3", "-s", "-1",
                                   "-B", INNER_B], stdout=subprocess.DEVNULL)
        time.sleep(0.5)
        out = subprocess.run(["ip", "netns", "exec", ns_a, "iperf3", "-c", INNER_B,
                              "-B", INNER_A, "-t", str(seconds), "-J"],
                             capture_output=True, text=True, check=True, timeout=seconds + 30)
        report = json.loads(out.stdout)
        bps = report["end"]["sum_received"]["bits_per_second"]
        result: dict[str, object] = {"suite": name, "encap": "udp" if udp else "esp",
                                     "mbit_s": round(bps / 1e6)}
        for role, proc, conn in (("enc", procs[0], conns[0]), ("dec", procs[1], conns[1])):
            assert proc.pid is not None
            os.kill(proc.pid, signal.SIGTERM)
            _, _, usage = os.wait4(proc.pid, 0)
            stats = conn.recv()
            # Every packet handled: data one way plus the TCP ACKs the other way.
            packets = max(stats["tun_rx"] + stats["udp_rx"] + stats["esp_rx"], 1)
            cpu = usage.ru_utime + usage.ru_stime
            gbytes = report["end"]["sum_received"]["bytes"] / 1e9
            result[f"{role}_packets"] = packets
            result[f"{role}_us_per_pkt_user"] = round(usage.ru_utime / packets * 1e6, 1)
            result[f"{role}_us_per_pkt_sys"] = round(usage.ru_stime / packets * 1e6, 1)
            result[f"{role}_cpu_s_per_gb"] = round(cpu / gbytes, 1)
            if stats["drops"]:
                result[f"{role}_drops"] = stats["drops"]
        procs.clear()
        return result
    finally:
        if server is not None:
            server.kill()
            server.wait()
        for proc in procs:
            if proc.is_alive():
                proc.kill()
            proc.join(5)
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--suites", default="aes128-sha1,gcm128,3des-md5")
    ap.add_argument("--encap", choices=["udp", "esp"], default="udp")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (namespaces, TUN)")
    for name in args.suites.split(","):
        print(json.dumps(run_one(name, args.encap == "udp", args.seconds)), flush=True)


if __name__ == "__main__":
    main()
