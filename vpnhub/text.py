"""Make peer-supplied strings safe to log and to show on a terminal.

Everything a peer sends (XAUTH user names, group names and IDs, the Unity
application version, DDNS host names, Mode Config strings) is attacker-chosen.
Written raw, a newline forges a complete extra line in the text log, and
terminal escape sequences (ESC/CSI, as in CVE-2003-0020 and its successors)
clear or recolour an operator's screen when the log or `vpnhub sessions` is
read on a terminal. Bidirectional overrides (Unicode TR 9; "Trojan Source",
CVE-2021-42574) make a line read differently from what it stores.

`printable()` is the one place where such strings are made printable, at
the boundary where they are decoded: C0 controls, DEL, C1 controls and bidi
controls become visible escapes (\\n, \\r, \\t, \\xNN, \\uNNNN) and the
result is bounded in length. A backslash is left as it is, so that
DOMAIN\\user and configured names containing one still match (OpenSSH's
vis(3) doubles it; we prefer that names keep working): a peer can type a
text that looks like an escape, but never a control character.
`defuse()` is the same without the length bound, for whole log lines: the
event log applies it to every field as the last line of defence.
"""

from __future__ import annotations

import re

MAX_LEN = 256  # a user name or version string longer than this is abuse, not data

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# C0, DEL, C1; the bidi marks, embeddings, overrides and isolates (TR 9); the line and
# paragraph separators (they end a line in some viewers); BOM / zero-width no-break;
# and invalid UTF-8 bytes (decoded with surrogateescape).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e"
                      "\u2066-\u2069\ufeff\udc80-\udcff]")


def _escape(m: re.Match[str]) -> str:
    c = m.group()
    named = _NAMED.get(c)
    if named is not None:
        return named
    n = ord(c)
    if 0xDC80 <= n <= 0xDCFF:  # an invalid UTF-8 byte
        return f"\\x{n - 0xDC00:02x}"
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}"


def defuse(value: str) -> str:
    """`value` with every control and bidi character escaped (no length bound)."""
    return _CONTROL.sub(_escape, value) if _CONTROL.search(value) else value


def printable(value: str | bytes, limit: int = MAX_LEN) -> str:
    """`value` made printable (see `defuse`), at most `limit` characters (then ending
    in "..."). Bytes are decoded as UTF-8, invalid bytes shown as \\xNN."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "surrogateescape")
    text = defuse(value)
    if len(text) > limit:
        text = text[:max(0, limit - 3)] + "..."
    return text


def has_control(value: str) -> bool:
    """True if `value` holds a character that `defuse` escapes."""
    return _CONTROL.search(value) is not None
