"""Micro-benchmark of IKE Diffie-Hellman: microseconds per key generation + shared secret.

    .venv/bin/python bench/dh_cost.py [--rounds N] [--repeat R] [--groups 2,14,19]

For every supported group (and, for MODP, every available backend: "pow" and,
if installed, "gmpy2") prints the median over R runs of N iterations of
`generate()` followed by `shared_secret(peer)`, which is one side's CPU cost
of one exchange. docs/DATAPLANE-COSTS.md lists reference numbers for
this kind of machine: group 2 pow 1785 us, gmpy2 262 us; group 14 pow 6400 us,
gmpy2 602 us (256-bit exponent); group 19 82 us.
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="iterations per run")
    parser.add_argument("--repeat", type=int, default=5, help="runs; the median is printed")
    parser.add_argument("--groups", default="", help="comma-separated group numbers")
    args = parser.parse_args()
    groups = [int(g) for g in args.groups.split(",") if g] or list(SUPPORTED_GROUPS)

    row = "{:>5}  {:<10} {:<12} {:>8} {:>17}"
    print(row.format("group", "name", "backend", "exp bits", "keygen+shared us"))
    for gid in groups:
        group = dh_group(gid)
        if isinstance(group, ModpGroup):
            for backend in available_backends():
                us = measure(gid, backend, args.rounds, args.repeat)
                print(row.format(gid, group.name, backend, group.exponent_bits, f"{us:.0f}"))
        else:
            us = measure(gid, None, args.rounds, args.repeat)
            print(row.format(gid, group.name, "cryptography", "-", f"{us:.0f}"))


if __name__ == "__main__":
    main()
