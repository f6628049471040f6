"""Micro-benchmark of IKE Diffie-Hellman: microseconds per key generation + shared secret.

    .venv/bin/python bench/dh_cost.py [--rounds N] [--repeat R] [--groups 2,14,19]

For every supported group (and, for MODP, every available backend: "pow" and,
if installed, "gmpy2") prints the median over R runs of N iterations of
`generate()` followed by `shared_secret(peer)`, which is one side's CPU cost
of one exchange. For MODP it also prints our own g^x alone, computed both ways
in alternation within the same seconds: powmod (the way before the fixed-base
table) and the fixed-base comb `generate()` uses now (crypto.fixedbase), as
the median and range over the R runs, and the comb table's build time.
docs/DATAPLANE-COSTS.md lists reference numbers for this kind of machine:
group 2 pow 1785 us, gmpy2 262 us; group 14 pow 6400 us, gmpy2 602 us
(256-bit exponent, before the table); group 19 82 us.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import time

from vpnhub.crypto.dh import SUPPORTED_GROUPS, ModpGroup, available_backends, dh_group


def measure(group_id: int, backend: str | None, rounds: int, repeat: int) -> float:
    group = dh_group(group_id, backend=backend)
    peer = group.generate().public
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(rounds):
            group.generate().shared_secret(peer)
        runs.append((time.perf_counter() - start) / rounds * 1e6)
    return statistics.median(runs)


def measure_gx(group: ModpGroup, rounds: int, repeat: int) -> tuple[list[float], list[float]]:
    """Microseconds per g^x, powmod and comb, in alternating runs of `rounds` exponents
    (each of exactly exponent_bits bits, as generate() draws them)."""
    bits = group.exponent_bits
    powmod, comb = [], []
    for _ in range(repeat):
        xs = [secrets.randbits(bits) | (1 << (bits - 1)) for _ in range(rounds)]
        start = time.perf_counter()
        for x in xs:
            group.powmod(group.generator, x, group.prime)
        powmod.append((time.perf_counter() - start) / rounds * 1e6)
        start = time.perf_counter()
        for x in xs:
            group.generator_power(x)
        comb.append((time.perf_counter() - start) / rounds * 1e6)
    return powmod, comb


def spread(runs: list[float]) -> str:
    return f"{statistics.median(runs):.0f} ({min(runs):.0f}-{max(runs):.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="iterations per run")
    parser.add_argument("--repeat", type=int, default=5, help="runs; the median is printed")
    parser.add_argument("--groups", default="", help="comma-separated group numbers")
    args = parser.parse_args()
    groups = [int(g) for g in args.groups.split(",") if g] or list(SUPPORTED_GROUPS)

    row = "{:>5}  {:<10} {:<12} {:>8} {:>17} {:>20} {:>20} {:>9}"
    print(row.format("group", "name", "backend", "exp bits", "keygen+shared us",
                     "g^x powmod us", "g^x comb us", "table ms"))
    for gid in groups:
        group = dh_group(gid)
        if isinstance(group, ModpGroup):
            for backend in available_backends():
                modp = group.with_backend(backend)
                start = time.perf_counter()
                modp.generator_power(3)  # builds the table (once per group and backend)
                table_ms = (time.perf_counter() - start) * 1e3
                powmod, comb = measure_gx(modp, args.rounds, args.repeat)
                us = measure(gid, backend, args.rounds, args.repeat)
                print(row.format(gid, group.name, backend, group.exponent_bits, f"{us:.0f}",
                                 spread(powmod), spread(comb), f"{table_ms:.1f}"), flush=True)
        else:
            us = measure(gid, None, args.rounds, args.repeat)
            print(row.format(gid, group.name, "cryptography", "-", f"{us:.0f}", "-", "-", "-"),
                  flush=True)


if __name__ == "__main__":
    main()
