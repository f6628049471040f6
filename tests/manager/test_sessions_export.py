"""GET /api/v1/sessions/export: both formats, filters, order, CSV safety, refusals,
the cap on exports at once and a client that stops reading (issue 13).

Against a Manager around the fake concentrator (manager_fakes.py), like
test_sessions_paging.py; bench/export.py measures the export of 10,000
sessions and the loop's longest step meanwhile.
"""

from __future__ import annotations

import csv
import io
import json
import re
import socket
import time
from typing import Any
from urllib.parse import urlencode

import pytest
from manager_fakes import ManagerServer, Reply
from test_sessions_paging import N, _sid, many, walk

from vpnhub.eventlog import EventFilter, Record
from vpnhub.manager import export
from vpnhub.manager.app import API

__all__ = ["many"]  # the fixture, imported for the tests below

_VOLATILE = ("duration", "idle_seconds")  # a second may tick between two requests


def fetch(server: ManagerServer, **params: Any) -> Reply:
    auth = {"Authorization": f"Bearer {server.token()}"}
    return server.request("GET", f"{API}/sessions/export?" + urlencode(params), headers=auth)


def lines(r: Reply) -> list[dict[str, Any]]:
    assert r.status == 200, r.text
    return [json.loads(line) for line in r.body.decode().splitlines()]


def rows(r: Reply) -> list[list[str]]:
    assert r.status == 200, r.text
    return list(csv.reader(io.StringIO(r.body.decode(), newline="")))


def _soon(check: Any, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _steady(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _steady(v) for k, v in d.items() if k not in _VOLATILE}
    if isinstance(d, list):
        return [_steady(v) for v in d]
    return d


def test_jsonl_is_the_default_and_each_line_is_a_listing_entry(many: ManagerServer) -> None:
    r = fetch(many)
    assert r.headers["Content-Type"] == "application/x-ndjson; charset=utf-8"
    assert re.fullmatch(r'attachment; filename="vpnhub-sessions-\d{8}T\d{6}Z\.jsonl"',
                        r.headers["Content-Disposition"])
    assert r.headers["Cache-Control"] == "no-store"
    got = lines(r)
    auth = {"Authorization": f"Bearer {many.token()}"}
    listed = many.request("GET", f"{API}/sessions?limit=1000", headers=auth).json()["sessions"]
    assert len(got) == N
    assert [_steady(d) for d in got] == [_steady(d) for d in listed]


def test_csv_has_the_documented_columns(many: ManagerServer) -> None:
    r = fetch(many, format="csv")
    assert r.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert r.headers["Content-Disposition"].endswith('.csv"')
    assert r.body.endswith(b"\r\n")  # RFC 4180 line ends
    table = rows(r)
    assert tuple(table[0]) == export.COLUMNS
    assert len(table) == N + 1
    by_id = {d["id"]: d for d in lines(fetch(many))}
    for row in table[1:]:
        d = by_id[row[0]]
        for column, cell in zip(export.COLUMNS, row, strict=True):
            if column not in _VOLATILE:
                assert cell == ("" if d[column] is None else str(d[column])), column


@pytest.mark.parametrize(("sort", "order"), [("login_time", "asc"), ("user", "desc"),
                                             ("public_ip", "asc"), ("bytes", "desc"),
                                             ("duration", "asc")])
def test_order_is_the_listing_order(many: ManagerServer, sort: str, order: str) -> None:
    """The export lists what walking every page lists, in the same order."""
    expected = walk(many, limit=7, sort=sort, order=order)
    assert [d["id"] for d in lines(fetch(many, sort=sort, order=order))] == expected
    table = rows(fetch(many, format="csv", sort=sort, order=order))
    assert [row[0] for row in table[1:]] == expected


@pytest.mark.parametrize("params", [
    {"user": "user03"}, {"group": "sales"}, {"has_diagnosis": "true"},
    {"has_diagnosis": "false", "protocol": "IPsec"}, {"public_ip": "198.51.100.4"},
    {"user": "nobody"},
])
def test_filters_are_the_listing_filters(many: ManagerServer, params: dict[str, str]) -> None:
    expected = walk(many, limit=1000, **params)
    assert [d["id"] for d in lines(fetch(many, **params))] == expected
    table = rows(fetch(many, format="csv", **params))
    assert [row[0] for row in table[1:]] == expected and len(table) == len(expected) + 1


def test_csv_quotes_and_defuses_formulas(server: ManagerServer) -> None:
    """Cells a spreadsheet would run (= + - @ tab CR first) start with an apostrophe;
    commas, quotes and line breaks are quoted (the csv module), not split."""
    nasty = {"=HYPERLINK(\"http://x\",\"y\")": "+SUM(1)", "-2+3": "@cmd",
             "\tstart": "a, \"quoted\"\r\nsecond line", "plain": "x-y=z"}

    def add() -> None:
        for n, (user, diagnosis) in enumerate(nasty.items()):
            server.conc.add_session(user, 4000 + n, diagnosis=diagnosis)
    server.run(add)
    table = rows(fetch(server, format="csv", sort="login_time"))
    col = {c: i for i, c in enumerate(table[0])}
    cells = {row[col["diagnosis"]]: row[col["user"]] for row in table[1:]}
    assert cells == {"'+SUM(1)": "'=HYPERLINK(\"http://x\",\"y\")", "'@cmd": "'-2+3",
                     "a, \"quoted\"\r\nsecond line": "'\tstart", "x-y=z": "plain"}
    assert len(table) == len(nasty) + 1
    # the JSON lines keep the values as they are (no spreadsheet reads them)
    assert {d["user"] for d in lines(fetch(server))} == set(nasty)


def test_a_login_is_required(many: ManagerServer) -> None:
    r = many.request("GET", f"{API}/sessions/export?format=csv")
    assert r.status == 401 and "authentication required" in r.json()["error"]
    assert b"user0" not in r.body
    r = many.request("GET", f"{API}/sessions/export", basic=("admin", "wrong-password"))
    assert r.status == 401


@pytest.mark.parametrize(("params", "message"), [
    ({"limit": "10"}, "limit cannot be used"),
    ({"cursor": "abc"}, "cursor cannot be used"),
    ({"format": "xml"}, "format must be one of jsonl, csv"),
    ({"format": ""}, "format must be one of"),
    ({"sort": "password"}, "sort must be one of"),
    ({"order": "up"}, "order must be one of"),
    ({"has_diagnosis": "yes"}, "has_diagnosis must be true or false"),
    ({"public_ip": "999.1.1.1"}, "public_ip must be an IPv4 address"),
    ({"user": "x" * 65}, "user is longer than 64"),
    ({"colour": "red"}, "unknown parameter(s): 'colour'"),
])
def test_bad_parameters_are_refused(many: ManagerServer, params: dict[str, str],
                                    message: str) -> None:
    r = fetch(many, **params)
    assert r.status == 400 and message in r.json()["error"], r.text
    assert r.headers["Content-Type"].startswith("application/json")


@pytest.mark.parametrize("query", ["format=csv&format=jsonl", "sort=user&sort=group",
                                   "user=a&user=b"])
def test_a_repeated_parameter_is_refused(many: ManagerServer, query: str) -> None:
    auth = {"Authorization": f"Bearer {many.token()}"}
    r = many.request("GET", f"{API}/sessions/export?{query}", headers=auth)
    assert r.status == 400 and "more than once" in r.json()["error"]


def test_at_most_two_exports_at_once(many: ManagerServer) -> None:
    """Beyond MAX_EXPORTS: 429 with Retry-After, and a slot given back serves again."""
    assert many.manager is not None
    slots = many.manager._runner.app[export.SLOTS]  # type: ignore[union-attr]
    assert slots.limit == export.MAX_EXPORTS == 2
    many.run(lambda: [slots.take() for _ in range(2)])
    try:
        r = fetch(many, format="csv")
        assert r.status == 429 and "2 exports are running already" in r.json()["error"]
        assert r.headers["Retry-After"] == "10"
    finally:
        many.run(lambda: [slots.give() for _ in range(2)])
    assert fetch(many).status == 200
    # the finished export gives its slot back (just after the body's end is sent)
    assert _soon(lambda: slots.running == 0)


def test_sessions_that_end_during_the_export_are_skipped(
        many: ManagerServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The keys are taken at the start; a session gone by its chunk is left out, one
    that logged in meanwhile is not in this export."""
    monkeypatch.setattr(export, "CHUNK", 5)
    order = walk(many, limit=1000)
    gone = set(order[10:20:2])
    first_chunk = export.jsonl_chunk

    def chunk(dicts: list[dict[str, Any]]) -> bytes:
        if not many.conc.sessions.get((bytes(8), bytes(8))):  # once: on the first chunk
            for s in list(many.conc.sessions.all()):
                if _sid(s) in gone:
                    many.conc.sessions.end(s.key, "test")
            many.conc.add_session("latecomer", 3999, login_time=1_600_000_000.0)
            many.conc.sessions.start((bytes(8), bytes(8)), "203.0.113.9", 1)  # the marker
        return first_chunk(dicts)

    monkeypatch.setattr(export, "jsonl_chunk", chunk)
    got = [d["id"] for d in lines(fetch(many))]
    assert got == [i for i in order if i not in gone]


def test_a_client_that_stops_reading_frees_its_slot(
        server: ManagerServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stalled download is dropped after WRITE_TIMEOUT: the slot comes back, the
    connection is dropped and the event log says why."""
    monkeypatch.setattr(export, "WRITE_TIMEOUT", 0.5)
    # 10 MB, more than the socket buffers and aiohttp's hold: the writes must wait
    server.run(lambda: [server.conc.add_session(f"user{i:05d}", 1024 + i,
                                                diagnosis="d" * 40_000) for i in range(250)])
    host, port = server.base.removeprefix("http://").split(":")
    token = server.token()
    sock = socket.create_connection((host, int(port)))
    try:
        sock.sendall(f"GET {API}/sessions/export HTTP/1.1\r\nHost: {host}\r\n"
                     f"Authorization: Bearer {token}\r\n\r\n".encode())
        assert server.manager is not None
        slots = server.manager._runner.app[export.SLOTS]  # type: ignore[union-attr]

        def abandoned() -> list[Record]:
            return [r for r in server.run(lambda: server.log.query(EventFilter()))
                    if "abandoned" in r.text]

        assert _soon(lambda: bool(abandoned()), 20)
        assert _soon(lambda: slots.running == 0)
        assert "stopped reading" in abandoned()[-1].text

    finally:
        sock.close()


def test_a_client_that_goes_away_frees_its_slot(server: ManagerServer) -> None:
    """A download closed half-way: the next write fails, the export stops there, the
    slot comes back and the event log says so."""
    server.run(lambda: [server.conc.add_session(f"user{i:05d}", 1024 + i,
                                                diagnosis="d" * 40_000) for i in range(250)])
    host, port = server.base.removeprefix("http://").split(":")
    token = server.token()
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(f"GET {API}/sessions/export HTTP/1.1\r\nHost: {host}\r\n"
                     f"Authorization: Bearer {token}\r\n\r\n".encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    assert server.manager is not None
    slots = server.manager._runner.app[export.SLOTS]  # type: ignore[union-attr]

    def gone() -> list[Record]:
        return [r for r in server.run(lambda: server.log.query(EventFilter()))
                if "abandoned" in r.text and "went away" in r.text]

    assert _soon(lambda: bool(gone()), 20)
    assert _soon(lambda: slots.running == 0)


def test_the_sessions_page_links_the_export_of_its_filter_and_sort(
        many: ManagerServer) -> None:
    """Export CSV / Export JSON lines carry the page's filters and sort, not its cursor
    or limit (the export is every matching session); the CSV link downloads them."""
    auth = ("admin", "manager-Pa55word")
    first = many.request("GET", f"{API}/sessions?limit=5&sort=user&group=vpngroup",
                         basic=auth).json()
    page = many.request("GET", "/sessions?" + urlencode({
        "limit": 5, "sort": "user", "group": "vpngroup", "cursor": first["next_cursor"],
        "user": ""}), basic=auth)
    links = dict(re.findall(r'<a href="([^"]+)" class="export-(\w+)" download>', page.text))
    assert first["next_cursor"] and set(links.values()) == {"csv", "jsonl"}
    for href, fmt in links.items():
        assert href == f"{API}/sessions/export?sort=user&amp;group=vpngroup&amp;format={fmt}"
    r = many.request("GET", f"{API}/sessions/export?sort=user&group=vpngroup&format=csv",
                     basic=auth)
    assert [row[0] for row in rows(r)[1:]] == walk(many, limit=1000, sort="user",
                                                   group="vpngroup")
