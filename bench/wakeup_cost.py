"""What one wake-up of the data-plane loop costs, fixed part and per packet (issue 16).

    PYTHONPATH=$PWD .venv/bin/python bench/wakeup_cost.py [--rounds 3000] [--json out.json]
        [--smoke]

In process, no namespace: a ``Dataplane`` on a ``FakeTun`` with the virtio_net_hdr
(so the TUN offloads' path: decrypted packets coalesced, written at the end of the
wake-up) and a UDP socket on 127.0.0.1, one inbound and one outbound AES-128/SHA1
SA as a vpnc tunnel has. Before each timed wake-up (untimed) a "client" socket sends
``k`` ESP datagrams of one TCP upload's consecutive segments and, with ``--ack``,
one TCP ACK is queued on the TUN (what the LAN host answers). The timed part is one
turn of the moderated loop (``Dataplane._moderated_turn``: the epoll, the handlers,
the coalesced TUN write, the moderation's decision), wall time in this one thread,
system calls included (loopback and a socketpair, not a real TUN: the kernel's share
differs from the lab's). ``k`` = 1, 2, 4, 8, 16, 32: the least-squares line over
the medians gives the fixed cost of a wake-up and the cost per packet.

This is where the 2-worker figure of bench/throughput.py loses: each of two workers
sees half the packets, so each wake-up's fixed cost is shared by fewer
(bench/results/2026-12-04-night-quiet.md).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from netfast_micro import tcp_segment

from vpnhub.esp import ESP_AES_CBC, HMAC_SHA1_96, SaParams, key_lengths
from vpnhub.net.dataplane import Dataplane
from vpnhub.net.messages import AddInbound, AddOutbound
from vpnhub.net.tun import FakeTun

CLIENT_INNER = "10.40.1.2"  # netfast_micro.SRC
LAN = "192.168.50.10"  # netfast_micro.DST
SUITE = (ESP_AES_CBC, 128, HMAC_SHA1_96)
KS = (1, 2, 4, 8, 16, 32)


def _params(spi: int) -> SaParams:
    enc_len, integ_len = key_lengths(*SUITE)
    return SaParams.from_keymat(spi, *SUITE, os.urandom(enc_len + integ_len))


def _ack(seq: int) -> bytes:
    """The LAN host's ACK (192.168.50.10 -> the client), with a zero virtio_net_hdr."""
    import struct

    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 1, 0x4000, 64, 6, 0,
                     socket.inet_aton(LAN), socket.inet_aton(CLIENT_INNER))
    tcp = struct.pack("!HHIIBBHHH", 5201, 40000, 7, seq, 5 << 4, 0x10, 502, 0, 0)
    return bytes(10) + ip + tcp


def measure(rounds: int, ack: bool) -> dict[str, object]:
    tun = FakeTun()
    tun.vnet_hdr = True  # type: ignore[attr-defined]  # the offloads' path (Dataplane reads it)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.setblocking(False)
    udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    client.setblocking(False)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    peer = client.getsockname()
    dp = Dataplane(tun, udp=udp, moderation=0.0002)
    up, down = _params(0xC0000001), _params(0xC0000002)
    dp.call(AddInbound(up, peer, allowed_src=CLIENT_INNER))
    dp.call(AddOutbound(down, peer, dst=CLIENT_INNER))
    sender = up.build()  # the client's outbound SA: same keys as our inbound
    dp.tick(time.monotonic())  # timers due now: none in the timed turns
    addr = udp.getsockname()
    seq = 1000
    turn = getattr(dp, "_moderated_turn", None) or _old_turn(dp)
    out: dict[str, object] = {}
    medians: dict[int, float] = {}
    try:
        for k in KS:
            times = []
            for _ in range(rounds):
                for _ in range(k):
                    client.sendto(sender.encapsulate(tcp_segment(seq, bytes(1448))), addr)
                    seq += 1448
                if ack:
                    tun.inject(_ack(seq))
                dp._next_tick = time.monotonic() + 60  # no timers inside the timed turn
                start = time.perf_counter()
                turn()
                times.append((time.perf_counter() - start) * 1e6)
                tun.sent()
                _drain(client)
            medians[k] = statistics.median(times)
            out[f"k{k}_us"] = round(medians[k], 2)
    finally:
        dp.close()
        for s in (udp, client):
            s.close()
    xs, ys = list(medians), list(medians.values())
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    slope = (sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
             / sum((x - mx) ** 2 for x in xs))
    out["fixed_us_per_wakeup"] = round(my - slope * mx, 2)
    out["us_per_packet"] = round(slope, 2)
    out["drops"] = dict(dp.drops)
    return out


def _old_turn(dp: Dataplane) -> Callable[[], bool]:
    """One turn of ``_run_moderated`` as it was before ``_moderated_turn`` (main at
    36dfb6a), to measure that code with this script."""
    from vpnhub.net.dataplane import Moderation

    decide = Moderation().after

    def turn() -> bool:
        before = dp._packets()
        start = dp.clock()
        dp.poll(dp._timeout())
        return decide(dp._packets() - before, dp._woke - start)
    return turn


def _drain(sock: socket.socket) -> None:
    while True:
        try:
            sock.recv(65536)
        except BlockingIOError:
            return


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3000, help="timed wake-ups per k")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--smoke", action="store_true", help="20 rounds: the numbers exist")
    ap.add_argument("--prefix", help="unused (no lab); taken as every benchmark takes it")
    args = ap.parse_args()
    rounds = 20 if args.smoke else args.rounds
    doc = {"inbound_only": measure(rounds, ack=False),
           "with_an_ack": measure(rounds, ack=True)}
    print(json.dumps(doc, indent=1))
    if args.json:
        args.json.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
