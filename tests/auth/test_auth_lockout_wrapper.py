"""vpnhub.auth.lockout.Lockout: lock-out and slow-down around any backend (here a
scripted fake), the delay waited before the answer, attempts ordered per user
and per source."""

from __future__ import annotations

import asyncio
import time

import pytest
from auth_fakes import SRC, FakeBackend, FakeTime, alice_pw, request

from vpnhub.auth import AuthReason, AuthRequest, AuthResult, Lockout, LockoutPolicy


def wrapped(backend: FakeBackend, **limits: float) -> tuple[Lockout, FakeTime]:
    fake = FakeTime()
    args: dict[str, float] = {"max_failures": 3, "lockout_seconds": 60, "retry_delay": 1,
                              "max_retry_delay": 8, "max_failures_per_source": 10}
    args.update(limits)
    policy = LockoutPolicy(**args)  # type: ignore[arg-type]
    return Lockout(backend, policy, fake.clock, sleep=fake.sleep), fake


def attempt(auth: Lockout, fake: FakeTime, req: AuthRequest, now: float) -> AuthResult:
    fake.now = now
    return asyncio.run(auth.authenticate(req))


def test_any_backend_gets_lockout_and_slow_down() -> None:
    backend = FakeBackend(alice_pw)
    auth, fake = wrapped(backend)
    results = [attempt(auth, fake, request("alice", "guess"), t) for t in range(3)]
    assert [r.reason for r in results] == [AuthReason.BAD_PASSWORD] * 3
    assert [r.delay for r in results] == fake.slept == [1, 2, 4]
    assert results[-1].locked_until == 62
    locked = attempt(auth, fake, request("alice", "pw", source="192.0.2.1"), 10)
    assert (locked.reason, locked.delay, locked.locked_until) == (AuthReason.LOCKED_OUT, 4, 62)
    assert backend.calls == ["alice"] * 3  # not asked while locked
    assert attempt(auth, fake, request("alice", "pw"), 62).ok
    assert fake.slept == [1, 2, 4, 4]  # the success was not held back


def test_unknown_users_count_against_the_source_only() -> None:
    auth, fake = wrapped(FakeBackend(alice_pw), max_failures_per_source=2)
    for i in range(2):
        r = attempt(auth, fake, request(f"guess{i}", "x"), i)
        assert r.reason == AuthReason.UNKNOWN_USER
    assert auth.policy.tracked_users == 0
    assert attempt(auth, fake, request("alice", "pw"), 3).reason == AuthReason.LOCKED_OUT
    assert attempt(auth, fake, request("alice", "pw", source="192.0.2.1"), 3).ok


def test_a_backend_exception_is_not_a_failure() -> None:
    def broken(req: AuthRequest) -> AuthReason:
        raise ConnectionError("server unreachable")

    auth, fake = wrapped(FakeBackend(broken))
    for t in range(5):
        with pytest.raises(ConnectionError):
            attempt(auth, fake, request("alice", "pw"), t)
    assert auth.policy.failures("alice", SRC, 5) == 0 and fake.slept == []
    auth.inner = FakeBackend(alice_pw)  # the backend is back: nothing was locked
    assert attempt(auth, fake, request("alice", "pw"), 6).ok
    assert len(auth._serial) == 0  # no per-key lock left behind


def test_the_answer_waits_for_the_delay() -> None:
    released = asyncio.Event()
    waited: list[float] = []

    async def held_sleep(seconds: float) -> None:
        waited.append(seconds)
        await released.wait()

    policy = LockoutPolicy(retry_delay=2, max_retry_delay=8)
    auth = Lockout(FakeBackend(alice_pw), policy, lambda: 0.0, sleep=held_sleep)

    async def scenario() -> AuthResult:
        task = asyncio.create_task(auth.authenticate(request("alice", "bad")))
        for _ in range(5):
            await asyncio.sleep(0)
        assert waited == [2] and not task.done()  # held back, not answered
        released.set()
        return await task

    result = asyncio.run(scenario())
    assert result.reason == AuthReason.BAD_PASSWORD and result.delay == 2


def test_the_default_sleep_really_waits() -> None:
    policy = LockoutPolicy(retry_delay=0.05, max_retry_delay=0.05)
    auth = Lockout(FakeBackend(alice_pw), policy)
    start = time.monotonic()
    result = asyncio.run(auth.authenticate(request("alice", "bad")))
    assert result.delay == 0.05 and time.monotonic() - start >= 0.04


def test_parallel_guesses_at_one_user_stop_at_the_lock() -> None:
    """Five guesses sent at once: the lock check of each sees the failures of the
    ones before it, so only max_failures passwords are checked."""
    backend = FakeBackend(alice_pw)
    auth, _ = wrapped(backend)

    async def burst() -> list[AuthResult]:
        sources = [f"192.0.2.{i}" for i in range(5)]
        return await asyncio.gather(
            *(auth.authenticate(request("alice", "guess", source=s)) for s in sources))

    results = asyncio.run(burst())
    assert len(backend.calls) == 3
    assert [r.reason for r in results].count(AuthReason.LOCKED_OUT) == 2
    assert len(auth._serial) == 0


def test_unrelated_attempts_are_not_serialised() -> None:
    """Different users from different sources reach the backend together (a slow
    RADIUS server must not queue everybody behind one answer)."""
    backend = FakeBackend(alice_pw)
    backend.pause = asyncio.Event()
    auth, _ = wrapped(backend)

    async def scenario() -> list[AuthResult]:
        a = asyncio.create_task(auth.authenticate(request("alice", "pw")))
        b = asyncio.create_task(auth.authenticate(request("bob", "x", source="192.0.2.1")))
        for _ in range(10):
            await asyncio.sleep(0)
        assert backend.calls == ["alice", "bob"]  # both inside the backend at once
        assert backend.pause is not None
        backend.pause.set()
        return [await a, await b]

    ok, unknown = asyncio.run(scenario())
    assert ok.ok and unknown.reason == AuthReason.UNKNOWN_USER


def test_a_cancelled_attempt_counts_nothing_and_frees_its_keys() -> None:
    backend = FakeBackend(alice_pw)
    backend.pause = asyncio.Event()
    auth, _ = wrapped(backend)

    async def scenario() -> None:
        task = asyncio.create_task(auth.authenticate(request("alice", "bad")))
        for _ in range(5):
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert auth.policy.failures("alice", SRC, 0) == 0 and len(auth._serial) == 0


def test_close_is_forwarded_only_to_backends_that_have_it() -> None:
    auth, _ = wrapped(FakeBackend(alice_pw))
    auth.close()  # the fake holds nothing: no error
    asyncio.run(auth.aclose())

    class Holding(FakeBackend):
        closed = 0

        def close(self) -> None:
            self.closed += 1

        async def aclose(self) -> None:
            self.closed += 10

    holding = Holding(alice_pw)
    auth, _ = wrapped(holding)
    auth.close()
    asyncio.run(auth.aclose())
    assert holding.closed == 11
