"""ThroughputHistory: fixed arrays, shared times, samples visible at commit (issue 13)."""

from __future__ import annotations

import tracemalloc

from vpnhub.manager.history import ThroughputHistory


def take(h: ThroughputHistory, now: float, values: dict[str, tuple[int, int]]) -> None:
    h.begin(now)
    for key, (tx, rx) in values.items():
        h.put(key, tx, rx)
    h.commit()


def test_rates_between_consecutive_samples() -> None:
    h = ThroughputHistory(150)
    take(h, 100.0, {"a": (0, 0)})
    take(h, 102.0, {"a": (2000, 1000)})
    take(h, 104.0, {"a": (2000, 3000)})
    assert h.points("a") == [(100.0, 0, 0), (102.0, 2000, 1000), (104.0, 2000, 3000)]
    assert h.rates("a") == [(102.0, 1000.0, 500.0), (104.0, 0.0, 1000.0)]


def test_a_counter_that_goes_down_is_a_rate_of_zero() -> None:
    h = ThroughputHistory(10)
    take(h, 1.0, {"a": (500, 500)})
    take(h, 3.0, {"a": (100, 700)})  # a rekey's new SA starts at 0
    assert h.rates("a") == [(3.0, 0.0, 100.0)]


def test_only_the_last_keep_samples() -> None:
    h = ThroughputHistory(3)
    for i in range(10):
        take(h, float(i), {"a": (i * 10, i)})
    assert h.points("a") == [(7.0, 70, 7), (8.0, 80, 8), (9.0, 90, 9)]


def test_a_new_key_starts_at_its_first_sample() -> None:
    h = ThroughputHistory(5)
    take(h, 1.0, {"a": (1, 1)})
    take(h, 2.0, {"a": (2, 2), "b": (50, 60)})
    take(h, 3.0, {"a": (3, 3), "b": (70, 80)})
    assert h.points("b") == [(2.0, 50, 60), (3.0, 70, 80)]
    assert len(h.points("a")) == 3


def test_a_sample_in_progress_is_not_seen() -> None:
    h = ThroughputHistory(2)
    take(h, 1.0, {"a": (10, 10)})
    take(h, 2.0, {"a": (20, 20)})
    h.begin(3.0)
    h.put("a", 999, 999)  # the sampler yielded to the loop here: a reader comes
    assert h.points("a") == [(1.0, 10, 10), (2.0, 20, 20)]
    assert h.points("new") == []
    h.commit()
    assert h.points("a") == [(2.0, 20, 20), (3.0, 999, 999)]


def test_dropped_and_unknown_keys_have_no_history() -> None:
    h = ThroughputHistory(5)
    take(h, 1.0, {"a": (1, 1), "b": (2, 2)})
    h.drop("a")
    h.drop("never")
    assert h.points("a") == [] and h.rates("a") == [] and len(h) == 1 and "b" in h


def test_a_full_history_costs_under_3_kib_per_key() -> None:
    """150 samples of two counters: one array of 2 x 151 + 1 eight-byte slots per key
    (the deque of tuples it replaces took ~11 KiB)."""
    n = 200
    keys = [(i.to_bytes(8, "big"), b"\0" * 8) for i in range(n)]  # as session keys
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        h = ThroughputHistory(150)
        for t in range(151):
            take(h, float(t), {k: (t * 1_000_000_000, t) for k in keys})
        per_key = (tracemalloc.get_traced_memory()[0] - before) / n
    finally:
        tracemalloc.stop()
    assert len(h.points(keys[0])) == 150
    assert per_key < 3 * 1024, per_key
