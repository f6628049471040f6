"""Interrupt moderation (issue 16, vpnhub/net/moderation.py), sans-I/O: when the loop
waits (``Moderation``) and how long each data-plane worker waits
(``moderation_limit``, what ``WorkerPool`` gives its workers)."""

from __future__ import annotations

import pytest

from vpnhub.net.moderation import (
    MODERATION_BATCH,
    MODERATION_GAP,
    MODERATION_MAX,
    Moderation,
    moderation_limit,
)
from vpnhub.net.workers import WorkerFds, WorkerPool

US = 1e-6


def test_moderation_waits_only_in_a_sustained_stream_of_small_batches() -> None:
    """Lone packets and a ping's request and answer never wait; the 4th small batch
    in a row after short epolls does; a large batch, an empty wake-up or a long epoll
    ends the streak."""
    m = Moderation()
    assert [m.after(1, 1.0), m.after(1, 0.0001)] == [False, False]  # a ping
    assert [m.after(1, 0.5) for _ in range(10)] == [False] * 10  # one a 0.5 s: never
    m = Moderation()
    assert [m.after(3, 0.00005) for _ in range(6)] == [False] * 3 + [True] * 3
    assert not m.after(MODERATION_BATCH, 0.0)  # batches large enough already
    assert m.after(2, 0.0)  # the stream goes on
    assert not m.after(0, 0.0)  # nothing: the streak ends
    assert [m.after(3, 0.0) for _ in range(4)] == [False] * 3 + [True]
    assert not m.after(3, MODERATION_GAP * 2)  # the stream paused


def test_a_worker_waits_n_times_the_setting_up_to_1_ms() -> None:
    """``moderation_us`` is the wait of one loop that sees all the packets; each of N
    workers sees 1/N of them and waits N times as long for the same batch."""
    assert moderation_limit(0.0, 4) == 0.0  # moderation_us = 0: never
    assert moderation_limit(200 * US, 1) == pytest.approx(200 * US)  # as before
    assert moderation_limit(200 * US, 2) == pytest.approx(400 * US)
    assert moderation_limit(200 * US, 8) == pytest.approx(MODERATION_MAX)
    assert moderation_limit(1000 * US, 2) == pytest.approx(1000 * US)  # the config's max


def test_same_batch_per_wake_up_with_one_worker_or_two() -> None:
    """A stream of 60,000 packets/s: one loop waiting 200 us finds what each of two
    workers, at 30,000 each, finds with its limit; with 200 us each found half."""
    def batch(rate: float, wait: float, handling: float = 50 * US) -> float:
        return rate * (wait + handling)  # what arrives between two wake-ups

    one = batch(60_000, moderation_limit(200 * US, 1))
    two = batch(30_000, moderation_limit(200 * US, 2), handling=100 * US)
    assert two == pytest.approx(one, rel=0.05)
    assert batch(30_000, 200 * US, handling=100 * US) < 0.7 * one  # the fixed wait


def test_the_pool_gives_each_worker_the_scaled_wait() -> None:
    """What `[dataplane] moderation_us` becomes in each worker process's Dataplane."""
    assert WorkerPool([WorkerFds(tun=-1)] * 2, moderation=200 * US).moderation == \
        pytest.approx(400 * US)
    assert WorkerPool([WorkerFds(tun=-1)], moderation=200 * US).moderation == \
        pytest.approx(200 * US)
    assert WorkerPool([WorkerFds(tun=-1)] * 3, moderation=0.0).moderation == 0.0
