"""Probe for the time to the first packet through a tunnel (run inside a client namespace).

    python bench/firstpacket.py DST [--interval 0.001] [--timeout 30]

Sends an ICMP echo request to DST every ``--interval`` seconds from a raw
socket (root), ignoring "network unreachable" while the VPN client has not
installed its route yet, and prints one JSON line when the first echo reply
arrives: ``{"first_reply": T, "sent": N}`` with T on CLOCK_MONOTONIC (the same
clock in every namespace, so the caller can subtract the time it started the
client). Before it starts probing it prints ``{"ready": T}``. One process for
the whole wait: a 1 ms resolution, where a ping process per try costs a fork
and an exec each time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import socket
import struct
import sys
import time


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo(ident: int, seq: int) -> bytes:
    body = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"vpnhub-firstpacket"
    return body[:2] + struct.pack("!H", checksum(body)) + body[4:]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dst")
    ap.add_argument("--interval", type=float, default=0.001)
    ap.add_argument("--timeout", type=float, default=30.0)
    args = ap.parse_args(argv)
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.setblocking(False)
    ident = os.getpid() & 0xFFFF
    print(json.dumps({"ready": time.monotonic()}), flush=True)
    end = time.monotonic() + args.timeout
    seq = 0
    next_send = 0.0
    while (now := time.monotonic()) < end:
        if now >= next_send:
            seq = (seq + 1) & 0xFFFF
            # no route yet (ENETUNREACH) or a full buffer: try again
            with contextlib.suppress(OSError):
                sock.sendto(echo(ident, seq), (args.dst, 0))
            next_send = now + args.interval
        r, _, _ = select.select([sock], [], [], max(0.0, next_send - time.monotonic()))
        if not r:
            continue
        try:
            data, addr = sock.recvfrom(2048)
        except BlockingIOError:
            continue
        ihl = (data[0] & 0x0F) * 4
        if addr[0] == args.dst and len(data) >= ihl + 8 and data[ihl] == 0 and \
                struct.unpack_from("!H", data, ihl + 4)[0] == ident:
            print(json.dumps({"first_reply": time.monotonic(), "sent": seq}), flush=True)
            return 0
    print(json.dumps({"timeout": args.timeout, "sent": seq}), flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
