"""The event log's filter from query parameters: the API's, the live tail's, Save Log's
and the Filterable Event Log page's form (issue 15 moved it here from app.py so that
eventroutes.py can use it without importing the app)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import datetime

from vpnhub.eventlog import CLASSES, MAX_SEVERITY, MIN_SEVERITY, EventFilter

MAX_LIMIT = 5000


class BadRequest(ValueError):
    """A query or body the API cannot take (answered 400 with the message)."""


FILTER_PARAMETERS = frozenset({
    "class", "severity_min", "severity_max", "peer", "user", "group", "since", "until",
    "text", "after_seq", "before_seq", "limit", "order"})
ORDERS = ("newest", "oldest")


def parse_filter(q: Mapping[str, str], *, lenient: bool = False,
                 extra: tuple[str, ...] = ()) -> EventFilter:
    """The event log filter from query parameters (the API's and the page's form).

    `lenient` (the HTML form): empty fields mean "not set". Unknown parameters are
    refused (a typo must not list everything); `extra` names the caller's own."""
    unknown = sorted(set(q) - FILTER_PARAMETERS - set(extra))
    if unknown:
        raise BadRequest(f"unknown parameter(s): {', '.join(map(repr, unknown))[:200]}"
                         f" (known: {', '.join(sorted(FILTER_PARAMETERS))})")
    getall = getattr(q, "getall", None)
    raw_classes: list[str] = list(getall("class", [])) if getall else (
        [q["class"]] if "class" in q else [])
    repeated = sorted(n for n, c in Counter(k for k, _ in q.items() if k != "class").items()
                      if c > 1)
    if repeated:  # else the last would win unseen, and a bad first one pass
        raise BadRequest(f"parameter(s) given more than once: {', '.join(repeated)[:200]}")
    values = {k: v for k, v in q.items()
              if k != "class" and k not in extra and not (lenient and v == "")}
    order = values.get("order", "newest")
    if order not in ORDERS:
        raise BadRequest(f"order must be one of {', '.join(ORDERS)}")
    classes: set[str] = set()
    for item in raw_classes:
        for name in item.split(","):
            name = name.strip().upper()
            if not name and lenient:
                continue
            if name not in CLASSES:
                raise BadRequest(f"unknown event class {name[:20]!r} (known: "
                                 f"{', '.join(CLASSES)})")
            classes.add(name)
    lo = _int(values, "severity_min", MIN_SEVERITY, MIN_SEVERITY, MAX_SEVERITY)
    hi = _int(values, "severity_max", MAX_SEVERITY, MIN_SEVERITY, MAX_SEVERITY)
    if lo > hi and lenient:  # the API answers such a range with no events
        raise BadRequest(f"severity_min {lo} is above severity_max {hi}")
    return EventFilter(
        classes=frozenset(classes), severity_min=lo, severity_max=hi,
        peer=_text(values, "peer", 64), user=_text(values, "user", 64),
        group=_text(values, "group", 64), since=_time(values, "since"),
        until=_time(values, "until"), text=_text(values, "text", 200),
        after_seq=_int(values, "after_seq", 0, 0, 2**62),
        before_seq=_int(values, "before_seq", 0, 0, 2**62) or None,
        limit=_int(values, "limit", 500, 1, MAX_LIMIT), oldest_first=order == "oldest")


def _int(values: Mapping[str, str], key: str, default: int, lo: int, hi: int) -> int:
    if key not in values:
        return default
    text = values[key].strip(" \t")  # str.strip() would also take U+0085 and the like
    if not text.isascii() or not text.lstrip("+").isdigit():
        raise BadRequest(f"{key} must be an integer")
    n = int(text)
    if not lo <= n <= hi:
        raise BadRequest(f"{key} must be between {lo} and {hi}")
    return n


def _text(values: Mapping[str, str], key: str, max_len: int) -> str:
    text = values.get(key, "")
    if len(text) > max_len:
        raise BadRequest(f"{key} is longer than {max_len} characters")
    if any(ord(c) < 32 for c in text):
        raise BadRequest(f"{key} has control characters")
    return text


def _time(values: Mapping[str, str], key: str) -> float | None:
    if key not in values:
        return None
    try:
        t = datetime.fromisoformat(values[key].strip())
        return (t if t.tzinfo else t.astimezone()).timestamp()
    except (ValueError, OverflowError, OSError):
        raise BadRequest(f"{key} must be an ISO 8601 date and time,"
                         " e.g. 2024-05-01T12:00:00+02:00") from None
