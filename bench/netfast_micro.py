"""In-process cost of the per-packet work _netfast.c takes over (issue 16), C against Python.

    PYTHONPATH=$PWD .venv/bin/python bench/netfast_micro.py [--repeat 7] [--json out.json]

- ``ones_sum``: the one's-complement sum of one 1,400-byte segment
  (vpnhub/net/tunoffload.py ``ones_sum_py`` against the C ``ones_sum``).
- ``coalesce``: ``tunoffload.coalesce`` of a batch of 32 consecutive 1,448-byte
  TCP segments of one flow (what one wake-up decrypts from an iperf3 upload),
  per segment: the checksum check of each segment is most of it.
- ``split``: ``tunoffload.from_kernel`` of a 64 KiB TCP super-packet with a
  partial checksum, per segment made.
- ``udp_rx``: draining 64 datagrams of 1,400 bytes queued on a loopback UDP
  socket, per datagram: one ``recvfrom`` each (the pure-Python path) against
  ``udpgso.BatchReader`` (``recvmmsg``, up to 64 per call).

Each figure is the minimum over ``--repeat`` rounds (the machine is shared: the
minimum is the least disturbed), in microseconds.
"""

from __future__ import annotations

import argparse
import json
import socket
import struct
import time
from collections.abc import Callable

from vpnhub.net import tunoffload as t
from vpnhub.net.accel import NETFAST

SRC, DST = bytes([10, 40, 1, 2]), bytes([192, 168, 50, 10])


def tcp_segment(seq: int, payload: bytes, flags: int = 0x10) -> bytes:
    """An IPv4/TCP segment with right checksums (no options)."""
    total = 40 + len(payload)
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 1, 0x4000, 63, 6, 0,
                               SRC, DST))
    struct.pack_into("!H", ip, 10, t.ip_checksum(ip))
    tcp = bytearray(struct.pack("!HHIIBBHHH", 40000, 5201, seq, 7, 5 << 4, flags, 502, 0, 0))
    total_sum = t.ones_sum_py(bytes(tcp) + payload, t.pseudo_sum(ip, 6, 20 + len(payload)))
    struct.pack_into("!H", tcp, 16, 0xFFFF - total_sum)
    return bytes(ip + tcp) + payload


def best(fn: Callable[[], object], n: int, repeat: int) -> float:
    """Microseconds per call of `fn`, the minimum over `repeat` rounds of `n` calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        times.append((time.perf_counter() - start) / n * 1e6)
    return min(times)


def with_sum(summer: t._OnesSum, fn: Callable[[], object]) -> Callable[[], object]:
    def run() -> object:
        saved, t.ones_sum = t.ones_sum, summer
        try:
            return fn()
        finally:
            t.ones_sum = saved
    return run


def checksum_figures(repeat: int) -> dict[str, dict[str, float]]:
    seg = bytes(range(256)) * 5 + bytes(120)
    batch = [tcp_segment(1000 + i * 1448, bytes([i]) * 1448) for i in range(32)]
    assert len(t.coalesce(batch)) == 1
    big = bytearray(tcp_segment(1000, bytes(range(256)) * 255))
    struct.pack_into("!H", big, 36, t.pseudo_sum(big, 6, len(big) - 20))
    frame = struct.pack("<BBHHHH", t.F_NEEDS_CSUM, t.GSO_TCPV4, 40, 1448, 20, 16) + big
    nsegs = len(t.from_kernel(frame))
    summers: dict[str, t._OnesSum] = {"python": t.ones_sum_py}
    if NETFAST is not None:
        summers["c"] = NETFAST.ones_sum
    out: dict[str, dict[str, float]] = {}
    for name, summer in summers.items():
        out[name] = {
            "ones_sum_1400B_us": best(lambda s=summer: s(seg), 20000, repeat),
            "coalesce_us_per_segment": best(with_sum(summer, lambda: t.coalesce(batch)),
                                            300, repeat) / len(batch),
            "split_us_per_segment": best(with_sum(summer, lambda: t.from_kernel(frame)),
                                         300, repeat) / nsegs,
        }
    return out


def udp_figures(repeat: int, count: int = 64) -> dict[str, dict[str, float]]:
    from vpnhub.net.udpgso import BatchReader

    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    rx.bind(("127.0.0.1", 0))
    rx.setblocking(False)
    addr = rx.getsockname()
    payload = bytes(1400)

    def fill() -> None:
        for _ in range(count):
            tx.sendto(payload, addr)

    def plain() -> int:
        got = 0
        while True:
            try:
                rx.recvfrom(65535)
            except BlockingIOError:
                return got
            got += 1

    def batched(reader: BatchReader) -> int:
        got = 0
        while True:
            try:
                got += len(reader.read())
            except BlockingIOError:
                return got

    ways: dict[str, Callable[[], int]] = {"python": plain}
    if NETFAST is not None:
        reader = BatchReader(rx)
        ways["c"] = lambda: batched(reader)
    out: dict[str, dict[str, float]] = {}
    try:
        for name, drain in ways.items():
            rounds = []
            for _ in range(repeat * 20):
                fill()
                start = time.perf_counter()
                got = drain()
                rounds.append((time.perf_counter() - start) / max(got, 1) * 1e6)
                assert got == count, got
            out[name] = {"udp_rx_us_per_datagram": min(rounds)}
    finally:
        rx.close()
        tx.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", help="write the figures here too")
    parser.add_argument("--no-udp", action="store_true", help="checksums only")
    args = parser.parse_args()
    figures = checksum_figures(args.repeat)
    if not args.no_udp:
        for name, more in udp_figures(args.repeat).items():
            figures.setdefault(name, {}).update(more)
    for name, values in figures.items():
        print(name, " ".join(f"{k}={v:.2f}" for k, v in values.items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
