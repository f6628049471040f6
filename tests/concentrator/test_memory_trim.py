"""malloc_trim once the half-open table has drained after a burst (issue 11, point 1)."""

from __future__ import annotations

from vpnhub.concentrator.memory import BurstTrimmer


def test_trims_once_after_a_burst_has_drained() -> None:
    calls: list[int] = []
    t = BurstTrimmer(burst=256, trim=lambda: calls.append(1))
    for n in (0, 10, 300, 4096, 1200, 3, 0, 0, 5, 0):
        t.tick(n)
    assert calls == [1]  # after 4096 came back to 0, once; the small 5 is no burst


def test_no_trim_for_a_few_logins() -> None:
    calls: list[int] = []
    t = BurstTrimmer(burst=256, trim=lambda: calls.append(1))
    for n in (0, 3, 12, 0, 7, 0):
        t.tick(n)
    assert calls == []


def test_what_the_burst_made_and_can_be_made_again_goes_before_the_trim() -> None:
    """The DH pool's pairs refilled during a burst lie between its SAs
    (docs/reliability/ike-dos.md): dropped first, then the trim."""
    calls: list[str] = []
    t = BurstTrimmer(burst=256, trim=lambda: calls.append("trim"),
                     before_trim=lambda: calls.append("drop"))
    for n in (0, 2000, 0, 0):
        t.tick(n)
    assert calls == ["drop", "trim"]
