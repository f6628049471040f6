"""The manager's login throttle (issue 11 point 9): a lock-out per (name, address),
account- and address-wide slow-down only, and unknown names indistinguishable from
known ones by their delays and their scrypt work."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from manager_fakes import ADMIN, ADMIN_PASSWORD, config_text

from vpnhub.auth.users import AuthReason, PasswordHash
from vpnhub.config import parse_config
from vpnhub.manager.auth import AdminAuth, default_lockout
from vpnhub.manager.throttle import LoginThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def admin_auth(clock: Clock) -> AdminAuth:
    config = parse_config(config_text(None))
    return AdminAuth(config.admin.users, lockout=default_lockout(), clock=clock)


def attempts(auth: AdminAuth, clock: Clock, tries: list[tuple[str, str, str]]) -> list[Any]:
    async def run() -> list[Any]:
        out = []
        for user, password, source in tries:
            out.append(await auth.check(user, password, source))
            clock.now += 1.0
        return out
    # in a thread of its own: Playwright's sync API may hold a running loop in this one
    try:
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, run()).result()
    finally:
        auth.shutdown()


@pytest.mark.parametrize("spread", [True, False], ids=["many-addresses", "one-address"])
def test_unknown_names_get_the_same_delays_and_scrypt_work(
        spread: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    work: list[tuple[str, int, int, int, int]] = []
    real = PasswordHash.compute

    def compute(self: PasswordHash, password: bytes) -> bytes:
        work.append((self.scheme, self.log2_n, self.r, self.p, self.iterations))
        return real(self, password)

    monkeypatch.setattr(PasswordHash, "compute", compute)

    def series(name: str, net: str) -> tuple[list[float], list[Any]]:
        clock = Clock()
        work.clear()
        tries = [(name, "wrong", f"{net}.{i if spread else 1}") for i in range(1, 9)]
        results = attempts(admin_auth(clock), clock, tries)
        return [r.delay for r in results], list(work)

    known, known_work = series(ADMIN, "198.51.100")
    unknown, unknown_work = series("no-such-admin", "192.0.2")
    assert known == unknown, (known, unknown)
    assert known_work == unknown_work and known_work, (known_work, unknown_work)
    assert all(d >= 1.0 for d in known)


def test_a_lock_is_per_name_and_address() -> None:
    clock = Clock()
    auth = admin_auth(clock)
    tries = [(ADMIN, "guess", "198.51.100.9")] * 6 + [(ADMIN, ADMIN_PASSWORD, "198.51.100.9"),
                                                      (ADMIN, ADMIN_PASSWORD, "192.0.2.7")]
    r = attempts(auth, clock, tries)
    assert [x.reason for x in r[:5]] == [AuthReason.BAD_PASSWORD] * 5
    assert [x.delay for x in r[:5]] == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert r[5].reason is AuthReason.LOCKED_OUT and r[6].reason is AuthReason.LOCKED_OUT
    assert r[7].ok  # the administrator elsewhere is not locked out


def test_account_and_address_wide_counts_only_slow_down() -> None:
    t = LoginThrottle(max_failures=5, lockout_seconds=300, retry_delay=1.0,
                      max_retry_delay=16.0)
    delays = [t.record_failure("admin", f"203.0.113.{i}", 0.0)[0] for i in range(1, 31)]
    # doubles every 5 failures of the name, whatever the address; never locks
    assert delays[:5] == [1.0] * 5 and delays[5:10] == [2.0] * 5 and delays[-1] == 16.0
    assert all(t.locked_until("admin", f"203.0.113.{i}", 0.0) is None for i in range(1, 31))
    # a failure is forgotten after the window, a lock ends after lockout_seconds
    for _ in range(5):
        t.record_failure("admin", "192.0.2.1", 1.0)
    assert t.locked_until("admin", "192.0.2.1", 2.0) == 301.0
    assert t.locked_until("admin", "192.0.2.1", 302.0) is None
    assert t.current_delay("admin", "192.0.2.1", 700.0) == 0.0


def test_random_names_cost_bounded_memory() -> None:
    t = LoginThrottle(max_tracked=64)
    for i in range(10_000):
        t.record_failure(f"name{i}", f"10.{i % 250}.0.1", float(i))
    assert t.tracked <= 3 * 64
