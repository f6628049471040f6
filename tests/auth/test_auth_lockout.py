"""vpnhub.auth.lockout: sans-I/O failure counting, lockout and slow-down."""

from __future__ import annotations

import pytest

from vpnhub.auth.lockout import LockoutPolicy
from vpnhub.config import parse_config

SRC = "198.51.100.7"


def policy(**kw: float) -> LockoutPolicy:
    args: dict[str, float] = {
        "max_failures": 3,
        "lockout_seconds": 60,
        "retry_delay": 1,
        "max_retry_delay": 8,
        "max_failures_per_source": 10,
    }
    args.update(kw)
    return LockoutPolicy(**args)  # type: ignore[arg-type]


def test_delay_grows_and_user_locks_after_n_failures() -> None:
    p = policy()
    first = p.record_failure("alice", SRC, now=0)
    assert (first.delay, first.locked_until, first.user_failures) == (1, None, 1)
    assert p.record_failure("alice", SRC, now=1).delay == 2
    third = p.record_failure("alice", SRC, now=2)
    assert third.delay == 4 and third.locked_until == 62
    assert p.locked_until("alice", SRC, now=30) == 62
    assert p.locked_until("alice", "192.0.2.1", now=30) == 62  # the user, from anywhere
    assert p.locked_until("bob", "192.0.2.1", now=30) is None
    assert p.current_delay("alice", SRC, now=30) == 4


def test_lock_expires_and_the_count_starts_afresh() -> None:
    p = policy()
    for t in range(3):
        p.record_failure("alice", SRC, now=t)
    assert p.locked_until("alice", SRC, now=61.9) == 62
    assert p.locked_until("alice", SRC, now=62) is None
    assert p.failures("alice", None, now=62) == 0
    assert p.record_failure("alice", "192.0.2.9", now=63).user_failures == 1


def test_delay_is_capped() -> None:
    p = policy(max_failures=100, max_failures_per_source=0)
    delays = [p.record_failure("u", SRC, now=t).delay for t in range(50)]
    assert delays[:5] == [1, 2, 4, 8, 8] and max(delays) == 8


def test_success_resets() -> None:
    p = policy()
    p.record_failure("alice", SRC, now=0)
    p.record_failure("alice", SRC, now=1)
    p.record_success("alice", SRC, now=2)
    assert p.failures("alice", SRC, now=2) == 0
    assert p.record_failure("alice", SRC, now=3).delay == 1


def test_failures_are_forgotten_after_the_window() -> None:
    p = policy()
    p.record_failure("alice", SRC, now=0)
    p.record_failure("alice", SRC, now=10)
    assert p.failures("alice", SRC, now=69) == 2
    assert p.failures("alice", SRC, now=70) == 0  # 60 s after the last failure
    assert p.record_failure("alice", SRC, now=70).user_failures == 1


def test_source_counts_across_users_and_locks() -> None:
    p = policy(max_failures_per_source=4)
    outcomes = [p.record_failure(f"user{i}", SRC, now=i) for i in range(4)]
    assert [o.source_failures for o in outcomes] == [1, 2, 3, 4]
    assert [o.delay for o in outcomes] == [1, 2, 4, 8]  # spraying slows down too
    assert outcomes[-1].locked_until == 63
    assert p.locked_until("someone-else", SRC, now=10) == 63
    assert p.locked_until("someone-else", "192.0.2.1", now=10) is None


def test_unknown_user_counts_against_the_source_only() -> None:
    p = policy()
    out = p.record_failure(None, SRC, now=0)
    assert out.user_failures == 0 and out.source_failures == 1
    assert p.tracked_users == 0 and p.tracked_sources == 1


def test_lockout_zero_means_delay_only() -> None:
    p = policy(lockout_seconds=0)
    for t in range(10):
        assert p.record_failure("alice", SRC, now=t).locked_until is None
    assert p.locked_until("alice", SRC, now=10) is None
    assert p.current_delay("alice", SRC, now=10) == 8


def test_memory_is_bounded_oldest_dropped() -> None:
    p = policy(max_tracked=100)
    for i in range(1000):
        p.record_failure(f"user{i}", f"10.0.{i // 256}.{i % 256}", now=i * 0.001)
    assert p.tracked_users == 100 and p.tracked_sources == 100
    assert p.failures("user0", None, now=1) == 0
    assert p.failures("user999", None, now=1) == 1


def test_touching_keeps_a_record_young() -> None:
    p = policy(max_tracked=2, max_failures=100)
    p.record_failure("a", SRC, now=0)
    p.record_failure("b", SRC, now=1)
    p.record_failure("a", SRC, now=2)  # a is now the most recent
    p.record_failure("c", SRC, now=3)  # drops b
    assert p.failures("a", None, now=3) == 2 and p.failures("b", None, now=3) == 0


def test_prune() -> None:
    p = policy()
    p.record_failure("a", "s1", now=0)
    for t in range(3):
        p.record_failure("b", "s2", now=t)  # b locked until 62
    assert p.prune(now=61) == 2  # a and s1 idle for 60 s
    assert p.tracked_users == 1 and p.tracked_sources == 1
    assert p.prune(now=62) == 2


def test_from_limits() -> None:
    cfg = parse_config(
        '[concentrator]\npublic_address = "203.0.113.50"\nprivate_networks = ["192.168.2.0/24"]\n'
        "[limits]\nxauth_max_failures = 2\nxauth_lockout_seconds = 10\nxauth_retry_delay = 0.5\n"
    )
    p = LockoutPolicy.from_limits(cfg.limits)
    assert p.record_failure("u", SRC, now=0).delay == 0.5
    assert p.record_failure("u", SRC, now=0).locked_until == 10


@pytest.mark.parametrize(
    "kw", [{"max_failures": 0}, {"max_tracked": 0}, {"retry_delay": 5, "max_retry_delay": 1}]
)
def test_bad_parameters(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        policy(**kw)
