"""The admin socket's `sessions` answer, one page at a time (issue 13).

Building every session's dict at once held the event loop for the whole
table (hundreds of ms at 10,000 sessions, while IKE and ESP waited). A
request now names at most `MAX_LIMIT` sessions (`"limit"`, default and
maximum 1000) and goes on from a `"cursor"`; the answer carries
`"next_cursor"` (null on the last page). The order and the cursor are the web
API's (vpnhub.manager.paging: keyset paging by login time then session id,
so a session that logs in or out between two pages shifts no other), and the
page's dicts are built SESSIONS_PER_STEP at a time with the loop's turn
between. `vpnhub sessions` walks the pages (vpnhub.admin.request_sessions),
so what it prints does not change.

The first page (no cursor) also carries the LAN-to-LAN list; every page the
Session Summary (counters kept by the store, no scan).
"""

from __future__ import annotations

import asyncio
from typing import Any

from vpnhub.manager.paging import BadQuery, SessionQuery, decode_cursor, select
from vpnhub.session.store import SessionStore

MAX_LIMIT = 1000  # sessions per page, default and maximum
SESSIONS_PER_STEP = 100  # dicts built between two turns of the event loop
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
    page = select((s for s in store.all() if s.user and not s.lan_to_lan), q)
    dicts: list[dict[str, Any]] = []
    for start in range(0, len(page.sessions), SESSIONS_PER_STEP):
        if start:
            await asyncio.sleep(0)
        dicts += [s.as_dict(now) for s in page.sessions[start:start + SESSIONS_PER_STEP]]
    reply: dict[str, Any] = {"summary": store.summary(), "sessions": dicts}
    if q.after is None:
        reply["lan_to_lan"] = [s.as_dict(now) for s in store.all() if s.lan_to_lan]
    reply["next_cursor"] = page.next_cursor
    return reply
