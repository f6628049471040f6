"""One page of the Remote Access Sessions: filter, sort, cursor (GET /api/v1/sessions).

With 10,000 sessions the cost of a listing is in the dicts, not in the table:
`session_json` of every session took tens of seconds on the event loop. So a
page filters and orders the store's read-only views by cheap keys (an
attribute or two per session, no dict), keeps the `limit` first with a heap
(O(n log limit), not a sort of all), and only the page's sessions become
dicts (ManagerView.session_json, by the caller).

The cursor is keyset paging, not an offset: it names the last session shown
by its sort key and session id (the IKE cookies, unique), and the next page is
what sorts after it. A session that logs in or out between two calls does not
shift the others by one as an offset would (one shown twice, or one never);
docs/MANAGER.md has the why. It is opaque to clients (base64url of JSON), and
checked like any input: a cursor is hostile until it decodes to the expected
shape, and one made for another sort is refused.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import heapq
import ipaddress
import json
import math
import re
import socket
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from vpnhub.session.model import SessionKey, SessionView

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_CURSOR = 400  # characters: a key of a 64-character name and an id fit well within
PROTOCOLS = ("IPsec", "IPsec/NAT-T", "IPsec/UDP", "IPsec/TCP")
ORDERS = ("asc", "desc")
_TEXT_MAX = 64
_SID = re.compile(r"[0-9a-f]{32}")

SortKey = str | int | float


def _public_key(s: SessionView) -> str:
    """Address then port, in numeric order: the packed address in hex sorts as the
    number does (and a port padded to five digits)."""
    try:
        packed = socket.inet_aton(s.public_ip).hex()
    except OSError:  # not dotted IPv4 (never from the endpoint): after every address
        packed = "~" + s.public_ip
    return f"{packed}:{s.public_port:05d}"


# The sort keys: cheap reads of the live view. Duration is now - login_time, so its
# key is -login_time: stable between two calls (a cursor stays valid) and the
# same order as the duration at any instant. Bytes change while a client talks:
# a page sorted by bytes is the order of that moment (docs/MANAGER.md).
SORTS: dict[str, Callable[[SessionView], SortKey]] = {
    "login_time": lambda s: s.login_time,
    "user": lambda s: s.user,
    "group": lambda s: s.group,
    "public_ip": _public_key,
    "bytes": lambda s: s.bytes_tx + s.bytes_rx,
    "duration": lambda s: -s.login_time,
}
_KEY_TYPES: dict[str, tuple[type, ...]] = {
    "login_time": (int, float), "user": (str,), "group": (str,), "public_ip": (str,),
    "bytes": (int,), "duration": (int, float)}
PARAMETERS = frozenset({"limit", "cursor", "sort", "order", "user", "group", "public_ip",
                        "protocol", "has_diagnosis"})


class BadQuery(ValueError):
    """A parameter the listing cannot take (the API answers 400 with the message)."""


@dataclass(frozen=True)
class SessionQuery:
    limit: int = DEFAULT_LIMIT
    sort: str = "login_time"
    order: str = "asc"
    after: tuple[SortKey, SessionKey] | None = None  # from the cursor
    user: str | None = None
    group: str | None = None
    public_ip: str | None = None
    protocol: str | None = None
    has_diagnosis: bool | None = None

    def tests(self) -> list[Callable[[SessionView], bool]]:
        """One test per filter given (none given: no call per session at all)."""
        out: list[Callable[[SessionView], bool]] = []
        if self.user is not None:
            out.append(lambda s: s.user == self.user)
        if self.group is not None:
            out.append(lambda s: s.group == self.group)
        if self.public_ip is not None:
            out.append(lambda s: s.public_ip == self.public_ip)
        if self.protocol is not None:
            out.append(lambda s: s.protocol == self.protocol)
        if self.has_diagnosis is not None:
            out.append(lambda s: bool(s.diagnosis) == self.has_diagnosis)
        return out


@dataclass(frozen=True)
class Page:
    sessions: list[SessionView]
    total: int  # sessions matching the filter, on every page
    next_cursor: str | None  # None: this is the last page


def select(sessions: Iterable[SessionView], q: SessionQuery) -> Page:
    """The page of `sessions` (the Remote Access ones) that `q` asks for."""
    part = Selection(q)
    part.add(sessions)
    return part.page()


class Selection:
    """A page chosen from sessions handed over in parts (issue 13: the API adds the
    store in steps and yields to the event loop between them, so a page of 10,000
    never holds IKE for the whole scan). The `limit` + 1 first of all the parts are
    the `limit` + 1 first of each part's own first ones, so the page is the one
    `select` of the whole gives."""

    def __init__(self, q: SessionQuery) -> None:
        self.q = q
        self._key = SORTS[q.sort]
        self._tests = q.tests()
        self._pick = heapq.nlargest if q.order == "desc" else heapq.nsmallest
        self.matching = 0
        # (sort key, session key, view): unique on the first two, the view never compared
        self._best: list[tuple[SortKey, SessionKey, SessionView]] = []

    def add(self, sessions: Iterable[SessionView]) -> None:
        q, key, tests = self.q, self._key, self._tests
        matching = [s for s in sessions if all(t(s) for t in tests)] if tests else list(sessions)
        self.matching += len(matching)
        rows = [(key(s), s.key, s) for s in matching]
        if q.after is not None:  # what was shown on the earlier pages goes
            seen, desc = q.after, q.order == "desc"
            rows = [r for r in rows if ((r[0], r[1]) < seen if desc else (r[0], r[1]) > seen)]
        self._best = self._pick(q.limit + 1, self._best + rows)

    def page(self) -> Page:
        q, top = self.q, self._best
        shown = top[:q.limit]
        last = shown[-1] if len(top) > q.limit else None  # more follow: a cursor after it
        return Page([t[2] for t in shown], self.matching,
                    encode_cursor(q.sort, q.order, last[0], last[1]) if last else None)


def previous_cursor(sessions: Iterable[SessionView], q: SessionQuery,
                    page: Page) -> str | None:
    """The cursor of the page before `page` ("" for the first page; None: `page` is
    the first). The same select in the opposite order, from the page's first
    session: the limit sessions before it are the previous page, and the one
    before those is where that page's cursor points (the web page's Previous)."""
    back_q = backwards(q, page)
    if back_q is None:
        return None
    return previous_of(q, select(sessions, back_q))


def backwards(q: SessionQuery, page: Page) -> SessionQuery | None:
    """The query `previous_cursor` selects with (None: `page` is the first): the same
    in the opposite order, from the page's first session, one more than a page."""
    if q.after is None:
        return None
    start = ((SORTS[q.sort](page.sessions[0]), page.sessions[0].key) if page.sessions
             else q.after)  # an empty page (its sessions went): back from the cursor
    return dataclasses.replace(q, order="asc" if q.order == "desc" else "desc",
                               limit=q.limit + 1, after=start)


def previous_of(q: SessionQuery, back: Page) -> str:
    """`previous_cursor` from the page of its `backwards` query."""
    if len(back.sessions) <= q.limit:
        return ""
    s = back.sessions[-1]
    return encode_cursor(q.sort, q.order, SORTS[q.sort](s), s.key)


# ---------------------------------------------------------------------------- the cursor
def encode_cursor(sort: str, order: str, key: SortKey, skey: SessionKey) -> str:
    raw = json.dumps([sort, order, key, skey[0].hex() + skey[1].hex()],
                     separators=(",", ":"), ensure_ascii=True)
    return base64.urlsafe_b64encode(raw.encode("ascii")).decode("ascii").rstrip("=")


def decode_cursor(text: str, sort: str, order: str) -> tuple[SortKey, SessionKey]:
    """The (sort key, session key) a cursor names; BadQuery unless it is one of ours,
    made for this very sort and order."""
    bad = BadQuery("cursor is not valid (use next_cursor of the previous page, with the"
                   " same sort and order)")
    if len(text) > MAX_CURSOR or not re.fullmatch(r"[A-Za-z0-9_-]+", text):
        raise bad
    try:
        value = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError):
        raise bad from None
    if not (isinstance(value, list) and len(value) == 4 and value[:2] == [sort, order]):
        raise bad
    key, sid = value[2], value[3]
    if (isinstance(key, bool) or not isinstance(key, _KEY_TYPES[sort])
            or (isinstance(key, float) and not math.isfinite(key))
            or not isinstance(sid, str) or not _SID.fullmatch(sid)):
        raise bad
    assert isinstance(key, str | int | float)  # for mypy: checked just above
    return key, (bytes.fromhex(sid[:16]), bytes.fromhex(sid[16:]))


# ---------------------------------------------------------------------------- parsing
def check_names(keys: Iterable[str], known: frozenset[str]) -> None:
    """BadQuery for a parameter a listing does not know or that is given twice
    (`keys`: every name as given): refused, not ignored (a typo must not list
    everything). The cluster's listing (clusterroutes.py) checks its own the same way."""
    names = list(keys)
    unknown = sorted(set(names) - known)
    if unknown:
        raise BadQuery(f"unknown parameter(s): {', '.join(map(repr, unknown))[:200]} (known:"
                       f" {', '.join(sorted(known))})")
    repeated = sorted(n for n, c in Counter(names).items() if c > 1)
    if repeated:
        raise BadQuery(f"parameter(s) given more than once: {', '.join(repeated)}")


def parse_query(q: Mapping[str, str], keys: Iterable[str]) -> SessionQuery:
    """The listing's parameters (`keys`: every name as given, to refuse repeats);
    unknown ones are refused, not ignored (a typo must not list everything)."""
    check_names(keys, PARAMETERS)
    sort = _choice(q, "sort", tuple(SORTS)) or "login_time"
    order = _choice(q, "order", ORDERS) or "asc"
    cursor = q.get("cursor")
    return SessionQuery(
        limit=_limit(q.get("limit")), sort=sort, order=order,
        after=decode_cursor(cursor, sort, order) if cursor is not None else None,
        user=_text(q, "user"), group=_text(q, "group"), public_ip=_address(q.get("public_ip")),
        protocol=_choice(q, "protocol", PROTOCOLS),
        has_diagnosis=_flag(q.get("has_diagnosis")))


def _limit(text: str | None) -> int:
    if text is None:
        return DEFAULT_LIMIT
    text = text.strip()
    if not text.isascii() or not text.lstrip("+").isdigit():
        raise BadQuery("limit must be an integer")
    n = int(text)
    if not 1 <= n <= MAX_LIMIT:
        raise BadQuery(f"limit must be between 1 and {MAX_LIMIT}")
    return n


def _choice(q: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str | None:
    value = q.get(name)
    if value is None:
        return None
    if value not in allowed:
        raise BadQuery(f"{name} must be one of {', '.join(allowed)}")
    return value


def _text(q: Mapping[str, str], name: str) -> str | None:
    value = q.get(name)
    if value is None:
        return None
    if len(value) > _TEXT_MAX:
        raise BadQuery(f"{name} is longer than {_TEXT_MAX} characters")
    if any(ord(c) < 32 for c in value):
        raise BadQuery(f"{name} has control characters")
    return value


def _address(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        return str(ipaddress.IPv4Address(text.strip()))
    except ValueError:
        raise BadQuery("public_ip must be an IPv4 address, e.g. 203.0.113.7") from None


def _flag(text: str | None) -> bool | None:
    if text is None:
        return None
    if text not in ("true", "false"):
        raise BadQuery("has_diagnosis must be true or false")
    return text == "true"


def page_json(page: Page, q: SessionQuery, dicts: list[dict[str, Any]]) -> dict[str, Any]:
    """The paging part of the answer (the caller adds the summary and LAN-to-LAN list)."""
    return {"sessions": dicts, "total": page.total, "limit": q.limit, "sort": q.sort,
            "order": q.order, "next_cursor": page.next_cursor}
