"""The SA's window of recently used message IDs (ike/msgids.py, issue 13)."""

from __future__ import annotations

from vpnhub.ike.msgids import WINDOW, MessageIdWindow


def test_remembers_the_last_window_and_forgets_the_oldest() -> None:
    w = MessageIdWindow()
    for mid in range(1, WINDOW + 1):
        w.add(mid)
    assert len(w) == WINDOW and all(mid in w for mid in range(1, WINDOW + 1))
    w.add(0xFFFFFFFF)
    assert 1 not in w and 2 in w and 0xFFFFFFFF in w and len(w) == WINDOW


def test_an_id_already_in_the_window_takes_no_second_slot() -> None:
    w = MessageIdWindow(size=2)
    w.add(7)
    w.add(7)
    w.add(8)
    assert 7 in w and 8 in w and len(w) == 2


def test_zero_and_out_of_range_values_are_never_in_it() -> None:
    w = MessageIdWindow()
    assert 5 not in w  # empty: nothing allocated yet
    w.add(0)
    assert len(w) == 0 and 0 not in w
    w.add(5)
    assert 0 not in w and -5 not in w and (1 << 32) + 5 not in w and "5" not in w


def test_bytes_across_two_slots_are_no_match() -> None:
    w = MessageIdWindow()
    w.add(0x01020304)
    w.add(0x05060708)
    assert 0x03040506 not in w  # the tail of one ID and the head of the next
    assert 0x05060708 in w
