"""XAUTH against the configured users: `Lockout(LocalUsers(...))`, the
concentrator's authenticator (`build_authenticator`)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
from auth_fakes import SRC, FakeTime, config, request

from vpnhub.auth import (
    AuthReason,
    AuthResult,
    LocalUsers,
    Lockout,
    LockoutPolicy,
    build_authenticator,
)
from vpnhub.config import Secret


class Harness:
    """`Lockout(LocalUsers(config().users), policy)` on a fake clock and sleep."""

    def __init__(self, policy: LockoutPolicy) -> None:
        self.time = FakeTime()
        self.users = LocalUsers(config().users)
        self.auth = Lockout(self.users, policy, self.time.clock, sleep=self.time.sleep)

    def attempt(
        self, user: str, password: str | bytes | Secret, *, group: str = "ciscovpn",
        source: str = SRC, now: float = 0,
    ) -> AuthResult:
        self.time.now = now
        req = request(user, password, group=group, source=source)
        return asyncio.run(self.auth.authenticate(req))


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = Harness(LockoutPolicy.from_limits(config().limits))
    yield h
    h.auth.close()


# --------------------------------------------------------------------------- answers


def test_success_plain_and_hashed(harness: Harness) -> None:
    ok = harness.attempt("vpnclient1", "userpass1")
    assert ok.ok and ok.reason == "ok" and ok.delay == 0 and ok.group == "ciscovpn"
    assert harness.attempt("hashed", b"hashedpass").ok
    assert harness.attempt("vpnclient1", Secret("userpass1")).ok
    assert harness.time.slept == []  # a success is never held back


@pytest.mark.parametrize(
    ("user", "password", "group", "reason"),
    [
        ("nobody", "userpass1", "ciscovpn", AuthReason.UNKNOWN_USER),
        ("vpnclient1", "wrong", "ciscovpn", AuthReason.BAD_PASSWORD),
        ("vpnclient1", "userpass1x", "ciscovpn", AuthReason.BAD_PASSWORD),
        ("vpnclient1", "", "ciscovpn", AuthReason.BAD_PASSWORD),
        ("hashed", "wrong", "ciscovpn", AuthReason.BAD_PASSWORD),
        ("vpnclient1", "userpass1", "other", AuthReason.WRONG_GROUP),
        ("vpnclient1", "wrong", "other", AuthReason.BAD_PASSWORD),
    ],
)
def test_failure_reasons(
    harness: Harness, user: str, password: str, group: str, reason: AuthReason
) -> None:
    result = harness.attempt(user, password, group=group)
    assert not result.ok and result.reason == reason and result.reason.value == str(reason)
    assert result.delay == 1.0
    assert harness.time.slept == [1.0]  # waited before the answer came back


def test_lockout_after_n_failures_even_with_the_right_password(harness: Harness) -> None:
    delays = [harness.attempt("vpnclient1", "bad", now=t).delay for t in range(3)]
    assert delays == [1, 2, 4]
    locked = harness.attempt("vpnclient1", "userpass1", source="192.0.2.1", now=10)
    assert locked.reason == "locked_out" and locked.locked_until == 302 and locked.delay == 4
    assert harness.time.slept == [1, 2, 4, 4]
    later = harness.attempt("vpnclient1", "userpass1", now=302)
    assert later.ok


def test_a_locked_users_password_is_not_checked(harness: Harness) -> None:
    for t in range(3):
        harness.attempt("vpnclient1", "bad", now=t)
    checked: list[str] = []
    real = harness.users.table.check

    def counting(user: str, password: bytes, group: str) -> AuthResult:
        checked.append(user)
        return real(user, password, group)

    harness.users.table.check = counting  # type: ignore[method-assign]
    assert harness.attempt("vpnclient1", "userpass1", now=10).reason == AuthReason.LOCKED_OUT
    assert checked == []


def test_success_resets_the_count(harness: Harness) -> None:
    for t in range(2):
        harness.attempt("vpnclient1", "bad", now=t)
    assert harness.attempt("vpnclient1", "userpass1", now=2).ok
    again = harness.attempt("vpnclient1", "bad", now=3)
    assert again.delay == 1 and again.locked_until is None


def test_unknown_names_do_not_fill_the_user_table() -> None:
    h = Harness(LockoutPolicy(max_failures_per_source=0))
    for i in range(200):
        h.attempt(f"guess{i}", "x", source=f"10.0.0.{i}", now=i)
    assert h.auth.policy.tracked_users == 0
    assert h.users.knows("vpnclient1") and not h.users.knows("guess1")
    h.auth.close()


def test_spraying_from_one_source_gets_locked() -> None:
    h = Harness(LockoutPolicy(max_failures=100, max_failures_per_source=4))
    for i in range(4):
        h.attempt(f"guess{i}", "x", now=i)
    result = h.attempt("vpnclient1", "userpass1", now=5)
    assert result.reason == AuthReason.LOCKED_OUT
    elsewhere = h.attempt("vpnclient1", "userpass1", source="192.0.2.1", now=5)
    assert elsewhere.ok
    h.auth.close()


def test_unknown_user_costs_a_dummy_hash(harness: Harness) -> None:
    """With hashed users configured, an unknown name runs the KDF too (timing)."""
    calls: list[int] = []
    table = harness.users.table
    real = table._check

    def counting(cred, given):  # type: ignore[no-untyped-def]
        calls.append(1 if cred.hashed is not None else 0)
        return real(cred, given)

    table._check = counting  # type: ignore[method-assign]
    harness.attempt("nobody", "x")
    assert calls == [1]


def test_result_repr_has_no_password(harness: Harness) -> None:
    result = harness.attempt("vpnclient1", "s3cretguess")
    assert "s3cretguess" not in repr(result)


# --------------------------------------------------------------------------- the backend


def test_the_event_loop_runs_during_a_password_check() -> None:
    """The hash runs in the backend's thread: another coroutine gets the loop
    meanwhile (here it is what lets the check finish)."""
    users = LocalUsers(config().users)
    release = threading.Event()
    real = users.table.check

    def held(user: str, password: bytes, group: str) -> AuthResult:
        if not release.wait(timeout=10):  # never released: the loop was blocked
            raise AssertionError("the event loop did not run during the check")
        return real(user, password, group)

    users.table.check = held  # type: ignore[method-assign]

    async def scenario() -> AuthResult:
        check = asyncio.create_task(users.authenticate(request("hashed", "hashedpass")))
        await asyncio.sleep(0.01)
        assert not check.done()
        release.set()  # runs on the loop while the check waits in its thread
        return await check

    assert asyncio.run(scenario()).ok
    users.close()


def test_a_real_scrypt_check_leaves_the_loop_free() -> None:
    """ln=15 (the default cost, about 0.1 s): the loop ticks while it runs."""
    from vpnhub.auth.users import hash_password

    slow = hash_password("pw", log2_n=15)
    cfg = config(f'[[user]]\nname = "slow"\npassword_hash = "{slow}"\ngroup = "ciscovpn"\n')
    users = LocalUsers(cfg.users)

    async def scenario() -> tuple[AuthResult, int]:
        ticks = 0
        check = asyncio.create_task(users.authenticate(request("slow", "pw")))
        while not check.done():
            ticks += 1
            await asyncio.sleep(0.001)
        return check.result(), ticks

    result, ticks = asyncio.run(scenario())
    assert result.ok and ticks >= 3
    users.close()


def test_close_and_aclose_stop_the_worker() -> None:
    auth = build_authenticator(config())
    assert asyncio.run(auth.authenticate(request("vpnclient1", "userpass1"))).ok
    auth.close()
    with pytest.raises(RuntimeError):  # a closed backend fails; it is not a failed login
        asyncio.run(auth.authenticate(request("vpnclient1", "userpass1")))
    assert auth.policy.failures("vpnclient1", SRC, 0) == 0
    other = build_authenticator(config())
    asyncio.run(other.aclose())
    assert isinstance(other.inner, LocalUsers)
    with pytest.raises(RuntimeError):
        asyncio.run(other.inner.authenticate(request("vpnclient1", "userpass1")))


def test_build_authenticator_uses_the_configured_limits() -> None:
    auth = build_authenticator(config())
    assert isinstance(auth, Lockout) and isinstance(auth.inner, LocalUsers)
    assert auth.policy.max_failures == 3 and auth.policy.lockout_seconds == 300
    auth.close()


def test_a_table_without_hashes_checks_on_the_loop() -> None:
    """No hash configured: every check (unknown names too) is a constant-time
    compare, run on the loop, not in the worker thread (issue 13: CPU per login)."""
    from vpnhub.config import UserConfig

    plain = [u for u in config().users if u.password_hash is None]
    assert plain and all(isinstance(u, UserConfig) for u in plain)
    users = LocalUsers(plain)
    assert users.table.plain_only and not LocalUsers(config().users).table.plain_only
    seen: list[threading.Thread] = []
    real = users.table.check

    def spy(user: str, password: bytes, group: str) -> AuthResult:
        seen.append(threading.current_thread())
        return real(user, password, group)

    users.table.check = spy  # type: ignore[method-assign]

    async def scenario() -> list[AuthResult]:
        return [await users.authenticate(request(u, p)) for u, p in
                (("vpnclient1", "userpass1"), ("vpnclient1", "wrong"), ("nobody", "x"))]

    ok, bad, unknown = asyncio.run(scenario())
    assert ok.ok and bad.reason is AuthReason.BAD_PASSWORD
    assert unknown.reason is AuthReason.UNKNOWN_USER
    assert seen == [threading.main_thread()] * 3
    users.close()
