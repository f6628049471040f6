"""GcWatch: collections and their longest pause per generation, and when (issue 13)."""

from __future__ import annotations

from vpnhub.net.loopwatch import GcWatch


def test_counts_passes_and_places_the_longest() -> None:
    now = [100.0]
    w = GcWatch(clock=lambda: now[0])
    w.start()
    try:
        for at, took in ((5.0, 0.010), (60.0, 0.150), (90.0, 0.020)):
            now[0] = 100.0 + at
            w._callback("start", {"generation": 1})
            now[0] += took
            w._callback("stop", {"generation": 1})
    finally:
        w.stop()
    gen1 = w.to_json()["gen1"]
    assert gen1["count"] == 3 and gen1["max_ms"] == 150.0 and gen1["max_at_s"] == 60.0
    assert w.to_json()["gen0"] == {"count": 0, "total_ms": 0.0, "max_ms": 0.0, "max_at_s": 0.0}
