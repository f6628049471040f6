"""Micro-benchmark of the ESP codec: microseconds per 1400-byte packet.

    .venv/bin/python bench/esp_codec.py [--packets N] [--repeat R] [--size BYTES]

Prints, per suite, the median (or with --best the fastest) of R runs of encapsulate and decapsulate
(replay window and counters included), next to the "prepared" column of
docs/DATAPLANE-COSTS.md, measured on this kind of machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

from vpnhub.esp import (
    ESP_3DES,
    ESP_AES_CBC,
    ESP_AES_GCM_16,
    HMAC_MD5_96,
    HMAC_SHA1_96,
    HMAC_SHA2_256_128,
    EspSA,
    SaParams,
    key_lengths,
)

Agg = Callable[[list[float]], float]

# (transform, key bits, auth, docs/DATAPLANE-COSTS.md prepared encrypt us, decrypt us)
SUITES: list[tuple[int, int | None, int | None, float | None, float | None]] = [
    (ESP_AES_CBC, 128, HMAC_SHA1_96, 3.7, 2.3),
    (ESP_AES_CBC, 256, HMAC_SHA2_256_128, 4.2, 2.4),
    (ESP_3DES, None, HMAC_MD5_96, 55.0, 52.0),
    (ESP_AES_GCM_16, 128, None, 1.2, 1.4),
    (ESP_AES_GCM_16, 256, None, None, None),
]


def _pair(transform: int, bits: int | None, auth: int | None) -> tuple[EspSA, EspSA]:
    enc_len, integ_len = key_lengths(transform, bits, auth)
    params = SaParams.from_keymat(0x1000, transform, bits, auth, os.urandom(enc_len + integ_len))
    return params.build(), params.build()


def bench(transform: int, bits: int | None, auth: int | None, packets: int, repeat: int,
          size: int, agg: Agg) -> tuple[str, float, float]:
    out, inb = _pair(transform, bits, auth)
    inner = b"\x45" + os.urandom(size - 1)
    enc_runs, dec_runs = [], []
    for _ in range(repeat):
        encap = out.encapsulate
        t0 = time.perf_counter()
        esp = [encap(inner) for _ in range(packets)]
        t1 = time.perf_counter()
        decap = inb.decapsulate
        for pkt in esp:
            decap(pkt)
        t2 = time.perf_counter()
        enc_runs.append((t1 - t0) / packets * 1e6)
        dec_runs.append((t2 - t1) / packets * 1e6)
    return out.suite.name, agg(enc_runs), agg(dec_runs)


def primitives(packets: int, repeat: int, size: int, agg: Agg) -> tuple[float, float]:
    """The crypto alone, prepared style, same run: AES-128-CBC + HMAC-SHA1 over ``size``
    bytes (encrypt+MAC, MAC+decrypt).  Separates ESP framing cost from machine noise."""
    from cryptography.hazmat.primitives import hashes, hmac
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    key = os.urandom(16)
    enc = Cipher(algorithms.AES(key), modes.CBC(bytes(16))).encryptor()
    dec = Cipher(algorithms.AES(key), modes.CBC(bytes(16))).decryptor()
    mac = hmac.HMAC(os.urandom(20), hashes.SHA1())
    block = os.urandom(size + 24)
    enc_runs, dec_runs = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(packets):
            m = mac.copy()
            m.update(enc.update(block))
            m.finalize()
        t1 = time.perf_counter()
        for _ in range(packets):
            m = mac.copy()
            m.update(block)
            m.finalize()
            dec.update(block)
        t2 = time.perf_counter()
        enc_runs.append((t1 - t0) / packets * 1e6)
        dec_runs.append((t2 - t1) / packets * 1e6)
    return agg(enc_runs), agg(dec_runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--size", type=int, default=1400)
    ap.add_argument("--best", action="store_true", help="best run instead of the median "
                    "(steadier on a shared, noisy machine)")
    args = ap.parse_args()
    agg: Agg = min if args.best else statistics.median
    what = "best" if args.best else "median"
    print(f"{args.size}-byte inner packets, {args.packets} x {args.repeat} runs, {what} us/packet")
    print(f"{'suite':32} {'encap':>7} {'decap':>7}   {'DATAPLANE-COSTS prepared e/d':>30}")
    for transform, bits, auth, ref_enc, ref_dec in SUITES:
        packets = args.packets // 10 if transform == ESP_3DES else args.packets
        name, enc, dec = bench(transform, bits, auth, packets, args.repeat, args.size, agg)
        ref = f"{ref_enc} / {ref_dec}" if ref_enc is not None else "-"
        print(f"{name:32} {enc:7.2f} {dec:7.2f}   {ref:>30}")
    enc, dec = primitives(args.packets, args.repeat, args.size, agg)
    print(f"{'(AES-128-CBC+HMAC-SHA1 crypto only)':32} {enc:7.2f} {dec:7.2f}   "
          f"{'same machine, same run':>30}")


if __name__ == "__main__":
    main()
