"""RFC 4303 3.4.3 / RFC 6479 anti-replay window."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vpnhub.esp.replay import ReplayWindow


def accept(w: ReplayWindow, seq: int) -> bool:
    return w.check_and_update(seq)


def test_in_order_then_duplicates() -> None:
    w = ReplayWindow(1024)
    for seq in range(1, 3000):
        assert accept(w, seq)
    for seq in (2999, 2500, 1976):
        assert not accept(w, seq)
    assert w.top == 2999


def test_zero_never_accepted() -> None:
    w = ReplayWindow()
    assert not w.check(0)
    assert accept(w, 5)
    assert not w.check(0)


def test_out_of_order_within_window() -> None:
    w = ReplayWindow(64)
    assert accept(w, 100)
    assert accept(w, 37)  # 100 - 37 = 63 < 64: inside
    assert not accept(w, 36)  # exactly one window back: too old
    assert not accept(w, 37)
    assert accept(w, 99)


def test_window_edge_exact() -> None:
    w = ReplayWindow(1024)
    assert accept(w, 5000)
    assert w.check(5000 - 1023)
    assert not w.check(5000 - 1024)


def test_jump_far_clears_old_bits() -> None:
    w = ReplayWindow(128)
    for seq in range(1, 200):
        accept(w, seq)
    # Jump by more than the whole ring; stale bits must not reject new numbers.
    assert accept(w, 10_000)
    for seq in range(10_000 - 127, 10_000):
        assert w.check(seq), seq
    assert not w.check(10_000)


def test_jump_by_blocks_keeps_window_bits() -> None:
    w = ReplayWindow(128)
    accept(w, 60)
    accept(w, 130)  # crosses two block boundaries, 60 still inside (130-60 < 128)
    assert not w.check(60)
    assert w.check(61)


def test_update_ignores_too_old() -> None:
    w = ReplayWindow(64)
    accept(w, 1000)
    w.update(10)  # must not corrupt the ring (would alias block of 10 + k*64)
    assert w.check(1000 - 54)


def test_max_seq() -> None:
    w = ReplayWindow()
    assert accept(w, 0xFFFFFFFF)
    assert not w.check(0xFFFFFFFF)


@pytest.mark.parametrize("size", [0, 63, 100, -64])
def test_bad_size(size: int) -> None:
    with pytest.raises(ValueError):
        ReplayWindow(size)


@settings(max_examples=300, deadline=None)
@given(
    size=st.sampled_from([64, 128, 1024]),
    seqs=st.lists(
        st.one_of(st.integers(0, 400), st.integers(0, 5000), st.integers(0, 0xFFFFFFFF)),
        max_size=300,
    ),
)
def test_matches_reference_model(size: int, seqs: list[int]) -> None:
    """Against the obvious set-based model of RFC 4303 3.4.3."""
    w = ReplayWindow(size)
    seen: set[int] = set()
    top = 0
    for seq in seqs:
        expected = seq != 0 and (seq > top or (top - seq < size and seq not in seen))
        assert w.check(seq) == expected, (seq, top)
        if expected:
            w.update(seq)
            seen.add(seq)
            top = max(top, seq)
