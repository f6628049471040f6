"""vpnhub.text: peer strings made printable (issue 11, point 4)."""

from __future__ import annotations

import pytest

from vpnhub.text import MAX_LEN, defuse, has_control, printable


@pytest.mark.parametrize(("raw", "shown"), [
    ("vpnuser1", "vpnuser1"),
    ("a\nb", "a\\nb"),
    ("a\r\n1 2026-12-03 SESSION forged", "a\\r\\n1 2026-12-03 SESSION forged"),
    ("\x1b[2J\x1b[31mred", "\\x1b[2J\\x1b[31mred"),
    ("tab\there", "tab\\there"),
    ("nul\x00del\x7f", "nul\\x00del\\x7f"),
    ("c1\x9bcsi", "c1\\x9bcsi"),  # the one-byte CSI of 8-bit terminals
    ("\u202eevil\u2066x\u2069", "\\u202eevil\\u2066x\\u2069"),  # bidi override / isolate
    ("line\u2028sep", "line\\u2028sep"),
    ("DOMAIN\\user", "DOMAIN\\user"),  # a backslash stays: such names must still match
    ("Grüße 日本", "Grüße 日本"),  # printable non-ASCII is left alone
])
def test_printable_escapes_controls_and_bidi(raw: str, shown: str) -> None:
    assert printable(raw) == shown
    assert printable(raw.encode()) == shown
    assert not has_control(printable(raw))
    assert defuse(raw) == shown


def test_invalid_utf8_bytes_are_shown_as_hex() -> None:
    assert printable(b"ab\xff\xfe\x1bc") == "ab\\xff\\xfe\\x1bc"


def test_length_is_bounded() -> None:
    out = printable("x" * 10_000)
    assert len(out) == MAX_LEN and out.endswith("...")
    assert len(printable("\n" * 10_000)) == MAX_LEN
    assert printable("abcdef", limit=5) == "ab..."


def test_defuse_leaves_clean_text_alone() -> None:
    text = "user 'vpnuser1' authenticated \\x1b (typed, not a control)"
    assert defuse(text) is text
