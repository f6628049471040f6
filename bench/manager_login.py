"""The manager's login throttle, measured: scrypt work and delays of known and unknown
names, and the real administrator's login while an attacker hammers the form.

    .venv/bin/python bench/manager_login.py [--attempts N]

Runs `vpnhub.manager.auth.AdminAuth` as the manager does (default throttle, a
default-cost scrypt hash: ln=15, r=8, p=1), with a simulated clock for the
delays (which the manager sleeps before answering; they are reported, not
slept) and the real clock for the CPU work. Prints:

- the median wall time of one check (the scrypt work) for a known and an
  unknown name, each attempt from a fresh address (nothing locked);
- the delay schedule of 8 failures from one address and from 8 addresses,
  for a known and an unknown name;
- after N failures of `admin` from one address: that address's verdict with
  the right password, and another address's (the administrator's).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from vpnhub.auth.users import hash_password
from vpnhub.config import AdminUserConfig, Secret
from vpnhub.manager.auth import AdminAuth, default_lockout

PASSWORD = "bench-Admin-pw-1"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fresh(clock: Clock) -> AdminAuth:
    users = [AdminUserConfig("admin", Secret(HASH))]
    return AdminAuth(users, lockout=default_lockout(), clock=clock)


async def work(n: int) -> dict[str, float]:
    """Median ms of one failed check, known and unknown names interleaved (so that the
    load of a shared machine weighs on both alike)."""
    clock = Clock()
    auth = fresh(clock)
    times: dict[str, list[float]] = {"admin": [], "no-such-admin": []}
    for i in range(n):
        for name, spent in times.items():
            t0 = time.perf_counter()
            await auth.check(name, "wrong", f"198.51.100.{i + 1}")
            spent.append(time.perf_counter() - t0)
        clock.now += 400  # past the window: each attempt a first failure
    auth.shutdown()
    return {name: statistics.median(t) * 1000 for name, t in times.items()}


async def delays(name: str, spread: bool) -> list[float]:
    clock = Clock()
    auth = fresh(clock)
    out = []
    for i in range(8):
        r = await auth.check(name, "wrong", f"203.0.113.{i + 1 if spread else 1}")
        out.append(r.delay)
        clock.now += 1
    auth.shutdown()
    return out


async def attack(n: int) -> tuple[str, str, float]:
    clock = Clock()
    auth = fresh(clock)
    for _ in range(n):
        await auth.check("admin", "guess", "203.0.113.66")
        clock.now += 1
    attacker = await auth.check("admin", PASSWORD, "203.0.113.66")
    t0 = time.perf_counter()
    admin = await auth.check("admin", PASSWORD, "192.0.2.10")
    took = (time.perf_counter() - t0) * 1000
    auth.shutdown()
    return str(attacker.reason), str(admin.reason), took


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attempts", type=int, default=20)
    args = parser.parse_args()
    ms = await work(args.attempts)
    for name, label in (("admin", "known"), ("no-such-admin", "unknown")):
        print(f"{label:>7} name: one check {ms[name]:.1f} ms (median of {args.attempts});"
              f" delays, one address: {await delays(name, False)};"
              f" 8 addresses: {await delays(name, True)}")
    attacker, admin, took = await attack(args.attempts)
    print(f"after {args.attempts} failures from 203.0.113.66: that address with the right"
          f" password: {attacker}; the administrator from 192.0.2.10: {admin} in {took:.1f} ms")


HASH = hash_password(PASSWORD)

if __name__ == "__main__":
    asyncio.run(main())
