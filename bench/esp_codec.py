"""Micro-benchmark of the ESP codec: microseconds per 1400-byte packet.

    .venv/bin/python bench/esp_codec.py [--packets N] [--repeat R] [--size BYTES]

Prints, per suite, the median (or with --best the fastest) of R runs of encapsulate and decapsulate
(replay window and counters included) and the range of the R runs, next to the "prepared" column
of docs/DATAPLANE-COSTS.md, measured on this kind of machine.  Where the C codec
(vpnhub/esp/_espfast.c) is in use, each suite is measured twice in the same run, on the
pure-Python path ("py") and on the C one ("C"), the runs alternating; with VPNHUB_PURE_PYTHON=1
only the Python path.
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


Runs = dict[bool, tuple[list[float], list[float]]]  # accelerated -> (encap us, decap us)


def _pair(transform: int, bits: int | None, auth: int | None,
          accelerated: bool) -> tuple[EspSA, EspSA]:
    enc_len, integ_len = key_lengths(transform, bits, auth)
    p = SaParams.from_keymat(0x1000, transform, bits, auth, os.urandom(enc_len + integ_len))
    return tuple(EspSA(p.spi, p.transform, p.key_len_bits, p.auth, p.enc_key, p.integ_key,
                       accelerated=accelerated) for _ in range(2))  # type: ignore[return-value]


# Wall clock by default; --cpu: this process's CPU time, which a shared machine's other
# processes do not inflate by taking the core away (they still share caches).
CLOCK = {"clock": time.perf_counter}


def _one_run(out: EspSA, inb: EspSA, inner: bytes, packets: int) -> tuple[float, float]:
    clock = CLOCK["clock"]
    encap = out.encapsulate
    t0 = clock()
    esp = [encap(inner) for _ in range(packets)]
    t1 = clock()
    decap = inb.decapsulate
    for pkt in esp:
        decap(pkt)
    t2 = clock()
    return (t1 - t0) / packets * 1e6, (t2 - t1) / packets * 1e6


def bench(transform: int, bits: int | None, auth: int | None, packets: int, repeat: int,
          size: int) -> tuple[str, Runs]:
    """Runs of the Python path and, when it applies, the C path, alternating."""
    pairs = {acc: _pair(transform, bits, auth, acc) for acc in (False, True)}
    if not pairs[True][0].accelerated:
        del pairs[True]  # no C codec here (VPNHUB_PURE_PYTHON=1, not built, or 3DES)
    inner = b"\x45" + os.urandom(size - 1)
    runs: Runs = {acc: ([], []) for acc in pairs}
    for _ in range(repeat):
        for acc, (out, inb) in pairs.items():
            enc, dec = _one_run(out, inb, inner, packets)
            runs[acc][0].append(enc)
            runs[acc][1].append(dec)
    return pairs[False][0].suite.name, runs


def _fmt(values: list[float], agg: Agg) -> str:
    return f"{agg(values):6.2f} ({min(values):.2f}-{max(values):.2f})"


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
    clock = CLOCK["clock"]
    for _ in range(repeat):
        t0 = clock()
        for _ in range(packets):
            m = mac.copy()
            m.update(enc.update(block))
            m.finalize()
        t1 = clock()
        for _ in range(packets):
            m = mac.copy()
            m.update(block)
            m.finalize()
            dec.update(block)
        t2 = clock()
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
    ap.add_argument("--cpu", action="store_true", help="time with the process's CPU time "
                    "(time.process_time) instead of the wall clock: steadier on a loaded machine")
    args = ap.parse_args()
    if args.cpu:
        CLOCK["clock"] = time.process_time
    agg: Agg = min if args.best else statistics.median
    what = "best" if args.best else "median"
    clock = "CPU" if args.cpu else "wall"
    print(f"{args.size}-byte inner packets, {args.packets} x {args.repeat} runs, {what} {clock} "
          "us/packet "
          "(range of the runs); py: pure-Python codec, C: vpnhub/esp/_espfast.c")
    print(f"{'suite':36} {'encap':>20} {'decap':>20}   {'DATAPLANE-COSTS prepared e/d':>28}")
    for transform, bits, auth, ref_enc, ref_dec in SUITES:
        packets = args.packets // 10 if transform == ESP_3DES else args.packets
        name, runs = bench(transform, bits, auth, packets, args.repeat, args.size)
        ref = f"{ref_enc} / {ref_dec}" if ref_enc is not None else "-"
        for acc, (enc_runs, dec_runs) in runs.items():
            label = f"{name} [{'C' if acc else 'py'}]"
            print(f"{label:36} {_fmt(enc_runs, agg):>20} {_fmt(dec_runs, agg):>20}   {ref:>28}")
    enc, dec = primitives(args.packets, args.repeat, args.size, agg)
    print(f"{'(AES-128-CBC+HMAC-SHA1 crypto only)':36} {enc:20.2f} {dec:20.2f}   "
          f"{'same machine, same run':>28}")


if __name__ == "__main__":
    main()
