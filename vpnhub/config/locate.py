"""Reading the TOML file, and finding the line a key or a syntax error is on.

`tomllib` gives no positions, so `Locator` scans the text once and maps every
key path (`("group", 1, "address_pool")`) to the line it is written on; a
syntax error's line comes from tomllib's message, or, for a value left open
to the end of the file, from the longest prefix of lines that parses. Every
failure is a `ConfigError` naming the file and, when known, the line.
"""

from __future__ import annotations

import bisect
import contextlib
import re
import tomllib
from pathlib import Path
from typing import Any

from vpnhub.config.errors import BARE_KEY, ConfigError, KeyPath

__all__ = ["Locator", "read_file", "read_toml"]

_SYNTAX_POSITION = re.compile(
    r"\s*\(at line (\d+), column (\d+)\)\s*$|\s*\(at end of document\)\s*$"
)


# --------------------------------------------------------------------------- reading


def read_file(path: str | Path) -> str:
    """The text of a configuration file, or a ConfigError (unreadable, not UTF-8)."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"cannot read file: {reason}", source=source) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError("file is not valid UTF-8", source=source, line=line) from None


def read_toml(text: str, source: str) -> dict[str, Any]:
    """`tomllib.loads(text)`, its errors turned into a ConfigError with a line."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _syntax_error(exc, text, source) from None
    except ValueError:  # an integer longer than sys.get_int_max_str_digits()
        m = re.search(r"[0-9_]{1000,}", text)
        line = text.count("\n", 0, m.start()) + 1 if m else None
        raise ConfigError("TOML syntax error: number too long", source=source, line=line) from None
    except RecursionError:
        raise ConfigError("TOML syntax error: nested too deeply", source=source) from None


def _syntax_error(exc: tomllib.TOMLDecodeError, text: str, source: str) -> ConfigError:
    message = str(exc)
    m = _SYNTAX_POSITION.search(message)
    line: int | None = None
    if m is not None:
        message = message[: m.start()]
        if m.group(1):
            line = int(m.group(1))
            message += f" (column {m.group(2)})"
        else:
            line = _unclosed_line(text)
            message += " (at end of file: what starts on this line is never closed)"
    return ConfigError(f"TOML syntax error: {message}", source=source, line=line)


_UNCLOSED_SEARCH_MAX_LINES = 2000


def _unclosed_line(text: str) -> int:
    """The line where a value that runs to the end of the file starts.

    tomllib reports an unterminated string or array "at end of document". The
    longest prefix of whole lines that parses ends just before the culprit.
    """
    lines = text.splitlines(keepends=True)
    if len(lines) > _UNCLOSED_SEARCH_MAX_LINES:
        return max(len(lines), 1)
    for k in range(len(lines) - 1, -1, -1):
        try:
            tomllib.loads("".join(lines[:k]))
        except tomllib.TOMLDecodeError:
            continue
        for j in range(k, len(lines)):  # skip blank and comment lines
            if lines[j].strip() and not lines[j].lstrip().startswith("#"):
                return j + 1
        return k + 1
    return 1


# --------------------------------------------------------------------------- key lines


class Locator:
    """Maps key paths to the 1-based line where they are written.

    A small TOML scanner, run only on text tomllib already accepted. It knows
    strings (so a `[` inside a multi-line banner is not a table header),
    comments, nested arrays and inline tables, dotted keys and arrays of
    tables (each `[[group]]` header gets the next index). Paths:
    `("group",)` is the first `[[group]]` header, `("group", 1)` the second,
    `("group", 1, "dns", 0)` the first element of that group's `dns` array.
    """

    def __init__(self, text: str) -> None:
        self._s = text
        self._n = len(text)
        self._i = 0
        self._newlines = [m.start() for m in re.finditer("\n", text)]
        self._lines: dict[KeyPath, int] = {}
        self._aot_count: dict[KeyPath, int] = {}
        # Whatever was mapped before a surprise is still right; the rest falls back.
        with contextlib.suppress(IndexError, ValueError, RecursionError):
            self._document()

    def line_of(self, path: KeyPath) -> int:
        """The line of `path`, else of its nearest written ancestor, else 1."""
        for end in range(len(path), 0, -1):
            line = self._lines.get(path[:end])
            if line is not None:
                return line
        return 1

    def exact_line(self, path: KeyPath) -> int | None:
        return self._lines.get(path)

    # -- scanning helpers
    def _line_at(self, pos: int) -> int:
        return bisect.bisect_left(self._newlines, pos) + 1

    def _record(self, path: KeyPath, pos: int) -> None:
        self._lines.setdefault(path, self._line_at(pos))

    def _peek(self, k: int = 0) -> str:
        j = self._i + k
        return self._s[j] if j < self._n else ""

    def _skip_blank(self, newlines: bool) -> None:
        """Skip spaces, tabs, comments and, if `newlines`, line breaks."""
        while self._i < self._n:
            c = self._s[self._i]
            if c in " \t\r" or (newlines and c == "\n"):
                self._i += 1
            elif c == "#":
                end = self._s.find("\n", self._i)
                self._i = self._n if end < 0 else end
            else:
                return

    # -- grammar
    def _document(self) -> None:
        table: KeyPath = ()
        while True:
            self._skip_blank(newlines=True)
            if self._i >= self._n:
                return
            start = self._i
            if self._peek() == "[":
                table = self._header()
            else:
                keys = self._key()
                self._expect_equals()
                self._keyval(table, keys, start)
            if self._i == start:  # never loop on something unexpected
                self._i += 1

    def _header(self) -> KeyPath:
        start = self._i
        is_array = self._peek(1) == "["
        self._i += 2 if is_array else 1
        keys = self._key()
        self._i += 2 if is_array else 1
        resolved: KeyPath = ()
        for name in keys[:-1]:
            resolved += (name,)
            if resolved in self._aot_count:  # [group.x] means the latest [[group]]
                resolved += (self._aot_count[resolved] - 1,)
        resolved += (keys[-1],)
        self._record(resolved, start)
        if is_array:
            index = self._aot_count.get(resolved, 0)
            self._aot_count[resolved] = index + 1
            resolved += (index,)
            self._record(resolved, start)
        return resolved

    def _key(self) -> list[str]:
        parts: list[str] = []
        while True:
            self._skip_blank(newlines=False)
            c = self._peek()
            if c in "\"'":
                parts.append(self._quoted_key(c))
            else:
                m = BARE_KEY.match(self._s, self._i)
                if m is None:
                    raise ValueError("not a key")
                parts.append(m.group())
                self._i = m.end()
            self._skip_blank(newlines=False)
            if self._peek() != ".":
                return parts
            self._i += 1

    def _quoted_key(self, quote: str) -> str:
        end = self._string_end(self._i)
        literal = self._s[self._i : end]
        self._i = end
        if quote == "'":
            return literal[1:-1]
        value = tomllib.loads(f"k = {literal}")["k"]
        return value if isinstance(value, str) else literal

    def _expect_equals(self) -> None:
        self._skip_blank(newlines=False)
        if self._peek() != "=":
            raise ValueError("expected '='")
        self._i += 1
        self._skip_blank(newlines=False)

    def _keyval(self, table: KeyPath, keys: list[str], start: int) -> None:
        path = table
        for name in keys:
            path += (name,)
            self._record(path, start)
        self._value(path)

    def _value(self, path: KeyPath) -> None:
        c = self._peek()
        if c in "\"'":
            self._i = self._string_end(self._i)
        elif c == "[":
            self._array(path)
        elif c == "{":
            self._inline_table(path)
        else:  # number, boolean, date/time: runs to a delimiter
            while self._i < self._n and self._s[self._i] not in ",]}\n#":
                self._i += 1

    def _array(self, path: KeyPath) -> None:
        self._i += 1
        index = 0
        while self._i < self._n:
            self._skip_blank(newlines=True)
            if self._peek() == "]":
                self._i += 1
                return
            self._record((*path, index), self._i)
            before = self._i
            self._value((*path, index))
            index += 1
            self._skip_blank(newlines=True)
            if self._peek() == "," or self._i == before:
                self._i += 1

    def _inline_table(self, path: KeyPath) -> None:
        self._i += 1
        while self._i < self._n:
            self._skip_blank(newlines=True)
            if self._peek() == "}":
                self._i += 1
                return
            if self._peek() == ",":
                self._i += 1
                continue
            start = self._i
            keys = self._key()
            self._expect_equals()
            self._keyval(path, keys, start)

    def _string_end(self, pos: int) -> int:
        """Index just past the string literal starting at `pos`."""
        s = self._s
        quote = s[pos]
        if s.startswith(quote * 3, pos):
            j = pos + 3
            while True:
                k = s.find(quote * 3, j)
                if k < 0:
                    raise ValueError("unterminated string")
                if quote == '"' and _escaped(s, k, pos + 3):
                    j = k + 1
                    continue
                end = k + 3
                # """a"""" is legal: up to two quotes may close the content.
                while end < len(s) and s[end] == quote and end - k < 5:
                    end += 1
                return end
        j = pos + 1
        while j < len(s):
            c = s[j]
            if c == "\\" and quote == '"':
                j += 2
                continue
            if c == quote:
                return j + 1
            if c == "\n":
                break
            j += 1
        raise ValueError("unterminated string")


def _escaped(s: str, k: int, floor: int) -> bool:
    """True when s[k] is preceded by an odd run of backslashes."""
    count = 0
    while k - 1 - count >= floor and s[k - 1 - count] == "\\":
        count += 1
    return count % 2 == 1
