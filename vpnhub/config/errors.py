"""`ConfigError` and the key paths its messages name ("group[1].address_pool")."""

from __future__ import annotations

import re

__all__ = ["BARE_KEY", "ConfigError", "KeyPath", "format_key_path"]

# A key path as tomllib's nested dicts and lists are walked: ("group", 1, "dns", 0).
KeyPath = tuple[str | int, ...]
# A TOML bare key (TOML 1.0, "Keys"): written without quotes in a key path.
BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


class ConfigError(ValueError):
    """A configuration file cannot be used. `str()` is the message for the operator.

    Attributes: `source` (file name or "<string>"), `line` (1-based, None when
    the file could not be read at all), `key` (e.g. "group[1].address_pool",
    "" for file-level problems) and `reason` (the message without the prefix).
    """

    def __init__(self, reason: str, *, source: str, line: int | None = None, key: str = "") -> None:
        self.reason = reason
        self.source = source
        self.line = line
        self.key = key
        where = source if line is None else f"{source}, line {line}"
        super().__init__(f"{where}: {key}: {reason}" if key else f"{where}: {reason}")


def format_key_path(path: KeyPath) -> str:
    """("group", 1, "dns", 0) -> "group[1].dns[0]"; odd keys are quoted."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        text = part if BARE_KEY.fullmatch(part) else '"' + part.replace('"', '\\"') + '"'
        out += f".{text}" if out else text
    return out
