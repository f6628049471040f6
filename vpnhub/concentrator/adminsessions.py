"""The admin socket's `sessions` answer, one page at a time (issue 13).

Building every session's dict at once held the event loop for the whole
table (hundreds of ms at 10,000 sessions, while IKE and ESP waited). A
request now names at most `MAX_LIMIT` sessions (`"limit"`, default and
maximum 1000) and goes on from a `"cursor"`; the answer carries
`"next_cursor"` (null on the last page). The order and the cursor are the web
API's (vpnhub.manager.paging: keyset paging by login time then session id,
so a session that logs in or out between two pages shifts no other).

Both halves of the work run in steps with the loop's turn between them: the
selection keeps the `limit` + 1 first with a heap, merged chunk by chunk of
SELECT_PER_STEP sessions (paging.select does it in one go over the whole
table: ~10 ms at 10,000 sessions, too long a step here), and the page's
dicts are built DICTS_PER_STEP at a time. `vpnhub sessions` walks the pages
(vpnhub.admin.request_sessions), so what it prints does not change.

The first page (no cursor) also carries the LAN-to-LAN list; every page the
Session Summary (counters kept by the store, no scan).
"""

from __future__ import annotations

import asyncio
import heapq
from typing import Any

from vpnhub.manager.paging import BadQuery, SessionQuery, decode_cursor, encode_cursor
from vpnhub.session.model import SessionKey, SessionView
from vpnhub.session.store import SessionStore

MAX_LIMIT = 1000  # sessions per page, default and maximum
# Between two turns of the event loop (each step ~2 ms at 10,000 sessions):
SELECT_PER_STEP = 1000  # sessions looked at by the selection
DICTS_PER_STEP = 50  # sessions of the page made dicts
_SORT, _ORDER = "login_time", "asc"


def parse(req: dict[str, Any]) -> SessionQuery:
    """The page a request asks for; BadQuery for a limit or cursor it cannot take
    (the request is the local admin's, but checked like any input)."""
    limit = req.get("limit", MAX_LIMIT)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise BadQuery(f"limit must be an integer between 1 and {MAX_LIMIT}")
    cursor = req.get("cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise BadQuery("cursor must be a string (next_cursor of the previous page)")
    after = decode_cursor(cursor, _SORT, _ORDER) if cursor is not None else None
    return SessionQuery(limit=limit, sort=_SORT, order=_ORDER, after=after)


async def sessions_page(store: SessionStore, req: dict[str, Any], now: float) -> dict[str, Any]:
    """One page of the remote access sessions as the admin socket answers it."""
    try:
        q = parse(req)
    except BadQuery as e:
        return {"error": str(e)}
    shown, next_cursor = await _select(store, q)
    dicts: list[dict[str, Any]] = []
    for start in range(0, len(shown), DICTS_PER_STEP):
        await asyncio.sleep(0)
        dicts += [s.as_dict(now) for s in shown[start:start + DICTS_PER_STEP]]
    reply: dict[str, Any] = {"summary": store.summary(), "sessions": dicts}
    if q.after is None:
        reply["lan_to_lan"] = [s.as_dict(now) for s in store.all() if s.lan_to_lan]
    reply["next_cursor"] = next_cursor
    return reply


async def _select(store: SessionStore, q: SessionQuery) -> tuple[list[SessionView], str | None]:
    """The page's remote access sessions in (login time, id) order after the cursor,
    and the cursor of the next page (None: no more)."""
    sessions = store.all()
    best: list[tuple[float, SessionKey, SessionView]] = []
    for start in range(0, len(sessions), SELECT_PER_STEP):
        if start:
            await asyncio.sleep(0)
        # (login time, session key) is unique: the view in the tuple is never compared
        rows = [(s.login_time, s.key, s) for s in sessions[start:start + SELECT_PER_STEP]
                if s.user and not s.lan_to_lan]
        if q.after is not None:  # what the earlier pages showed goes
            rows = [r for r in rows if (r[0], r[1]) > q.after]
        if len(best) > q.limit:  # full: only what sorts before the last kept can enter
            bound = best[-1][:2]
            rows = [r for r in rows if (r[0], r[1]) < bound]
        if rows:
            best = heapq.nsmallest(q.limit + 1, best + rows)
    shown = best[:q.limit]
    if len(best) <= q.limit:
        return [r[2] for r in shown], None
    last = shown[-1]
    return [r[2] for r in shown], encode_cursor(_SORT, _ORDER, last[0], last[1])
