"""The admin socket's `sessions` answers one page at a time (issue 13).

`"limit"` (default and maximum 1000) and `"cursor"` ask for a page; the answer
carries `"next_cursor"` (null on the last page). Walking the pages shows every
session once, even while sessions log in and out; `vpnhub sessions` walks
them (vpnhub.admin.request_sessions) and prints what one answer used to hold.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from core_harness import SHELL_CONFIG

from vpnhub.admin import request, request_sessions
from vpnhub.concentrator.adminsessions import MAX_LIMIT, sessions_page
from vpnhub.concentrator.service import Concentrator
from vpnhub.config import parse_config
from vpnhub.eventlog import EventLog
from vpnhub.session.model import SessionKey
from vpnhub.session.store import MemorySessionStore

NOW = 1_700_000_100.0


def key(i: int) -> SessionKey:
    return i.to_bytes(8, "big"), (i + 7).to_bytes(8, "big")


def fill(store: MemorySessionStore, n: int, *, first: int = 0) -> None:
    for i in range(first, first + n):
        # login times out of key order, with ties: the order is (login time, id)
        store.start(key(i), "198.51.100.9", 1024 + i, user=f"user{i}", group="g",
                    login_time=1_700_000_000.0 + (i * 37) % 50)
    store.start(key(10_000), "198.51.100.200", 500, lan_to_lan="branch", group="g",
                login_time=1_700_000_000.0)


def walk(store: MemorySessionStore, limit: int) -> list[dict[str, Any]]:
    pages = [asyncio.run(sessions_page(store, {"cmd": "sessions", "limit": limit}, NOW))]
    while pages[-1]["next_cursor"] is not None:
        pages.append(asyncio.run(sessions_page(
            store, {"cmd": "sessions", "limit": limit, "cursor": pages[-1]["next_cursor"]},
            NOW)))
    return pages


def test_walking_the_pages_shows_every_session_once() -> None:
    store = MemorySessionStore(100_000)
    fill(store, 103)
    pages = walk(store, 10)
    assert len(pages) == 11 and [len(p["sessions"]) for p in pages][-2:] == [10, 3]
    users = [s["user"] for p in pages for s in p["sessions"]]
    assert sorted(users) == sorted(f"user{i}" for i in range(103))
    logins = [s["login_time"] for p in pages for s in p["sessions"]]
    assert logins == sorted(logins)
    assert [s["lan_to_lan"] for s in pages[0]["lan_to_lan"]] == ["branch"]
    assert all("lan_to_lan" not in p for p in pages[1:])
    assert all(p["summary"] == store.summary() for p in pages)


def test_sessions_that_come_and_go_between_pages_shift_no_other() -> None:
    store = MemorySessionStore(100_000)
    fill(store, 30)
    first = asyncio.run(sessions_page(store, {"cmd": "sessions", "limit": 10}, NOW))
    shown = {s["user"] for s in first["sessions"]}
    store.end(key(int(next(iter(shown))[4:])), "logged out")  # one already shown goes
    rest = asyncio.run(sessions_page(
        store, {"cmd": "sessions", "limit": 1000, "cursor": first["next_cursor"]}, NOW))
    assert rest["next_cursor"] is None
    assert shown.isdisjoint(s["user"] for s in rest["sessions"])
    assert len(shown) + len(rest["sessions"]) == 30


def test_bad_limits_and_cursors_are_refused() -> None:
    store = MemorySessionStore(10)
    fill(store, 3)
    for req in ({"limit": 0}, {"limit": MAX_LIMIT + 1}, {"limit": "5"}, {"limit": True},
                {"cursor": 5}, {"cursor": "not-a-cursor"}, {"cursor": "eyJ4Ijp9"}):
        reply = asyncio.run(sessions_page(store, {"cmd": "sessions", **req}, NOW))
        assert set(reply) == {"error"}, (req, reply)
    reply = asyncio.run(sessions_page(store, {"cmd": "sessions"}, NOW))
    assert len(reply["sessions"]) == 3 and reply["next_cursor"] is None


def test_the_cli_walk_joins_every_page_through_the_socket(tmp_path: Path) -> None:
    sock = tmp_path / "admin.sock"
    conc = Concentrator(parse_config(SHELL_CONFIG.format(sock=sock)), EventLog())
    store = conc.core.sessions
    assert isinstance(store, MemorySessionStore)
    fill(store, MAX_LIMIT + 5)

    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        server = await conc._start_admin()
        assert server is not None
        try:
            first = await asyncio.to_thread(
                request, str(sock), {"cmd": "sessions"})
            return first, await asyncio.to_thread(request_sessions, str(sock))
        finally:
            server.close()
            await server.wait_closed()

    first, joined = asyncio.run(main())
    assert len(first["sessions"]) == MAX_LIMIT and first["next_cursor"] is not None
    assert set(joined) == {"summary", "sessions", "lan_to_lan"}  # as one answer was
    assert len(joined["sessions"]) == MAX_LIMIT + 5
    assert len({s["user"] for s in joined["sessions"]}) == MAX_LIMIT + 5
