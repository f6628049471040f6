"""GET /api/v1/sessions: pages, the keyset cursor, sorting, filters, refusals (issue 13).

Against a Manager around the fake concentrator (manager_fakes.py); no timing
here (bench/sessions_page.py measures a page with 10,000 sessions).
"""

from __future__ import annotations

import base64
import html
import json
import re
from typing import Any
from urllib.parse import urlencode

import pytest
from manager_fakes import ADMIN, ADMIN_PASSWORD, ManagerServer

from vpnhub.manager import paging

N = 37  # sessions: pages of 10 leave a short last one


def _sid(s: Any) -> str:
    return str(s.key[0].hex() + s.key[1].hex())


@pytest.fixture
def many(server: ManagerServer) -> ManagerServer:
    """N sessions with login times, addresses, ports, groups, protocols and
    diagnoses that differ (and some equal, so that ties are broken by id)."""
    def add() -> None:
        for n in range(N):
            s = server.conc.add_session(f"user{n % 13:02d}", 2000 + (n * 7) % N,
                                        nat_t=n % 3 != 0, diagnosis="no NAT-T" if n % 5 == 0
                                        else "", login_time=1_700_000_000.0 + (n * 11) % 17)
            server.conc.sessions.update(s.key, public_ip=f"198.51.100.{n % 9 + 1}",
                                        group="sales" if n % 4 == 0 else "vpngroup",
                                        bytes_tx=(n * 31) % 23, bytes_rx=0)
    server.run(add)
    return server


def get(server: ManagerServer, **params: Any) -> tuple[int, Any]:
    auth = {"Authorization": f"Bearer {server.token()}"}
    r = server.request("GET", "/api/v1/sessions?" + urlencode(params), headers=auth)
    return r.status, r.json()


def walk(server: ManagerServer, between: Any = None, **params: Any) -> list[str]:
    """Every page's session ids in order, following next_cursor to the end."""
    seen: list[str] = []
    cursor = None
    while True:
        status, data = get(server, **params, **({"cursor": cursor} if cursor else {}))
        assert status == 200, data
        assert len(data["sessions"]) <= data["limit"]
        seen += [s["id"] for s in data["sessions"]]
        cursor = data["next_cursor"]
        if cursor is None:
            return seen
        if between is not None:
            server.run(between)


def test_default_page_and_totals(many: ManagerServer) -> None:
    status, data = get(many)
    assert status == 200
    assert data["limit"] == paging.DEFAULT_LIMIT and len(data["sessions"]) == N
    assert data["total"] == N and data["next_cursor"] is None
    assert (data["sort"], data["order"]) == ("login_time", "asc")
    # the Session Summary comes from the store's counters, not from the page
    assert data["summary"]["active_remote_access"] == N
    status, small = get(many, limit=5)
    assert len(small["sessions"]) == 5 and small["total"] == N
    assert small["summary"] == data["summary"] and small["next_cursor"]


def test_paging_walks_every_session_exactly_once(many: ManagerServer) -> None:
    everyone = sorted(_sid(s) for s in many.conc.sessions.all())
    for sort in paging.SORTS:
        for order in paging.ORDERS:
            seen = walk(many, limit=10, sort=sort, order=order)
            assert sorted(seen) == everyone, (sort, order)
            assert len(seen) == len(set(seen)) == N


def test_cursor_is_stable_while_sessions_come_and_go(many: ManagerServer) -> None:
    """A login or logout between two pages shifts nobody (an offset would)."""
    before = {_sid(s) for s in many.conc.sessions.all()}
    gone: list[str] = []

    def churn() -> None:
        oldest = min(many.conc.sessions.all(), key=lambda s: (s.login_time, s.key))
        gone.append(_sid(oldest))
        many.conc.sessions.end(oldest.key, "test")  # already shown: sorts first
        many.conc.add_session("latecomer", 3999, login_time=1_800_000_000.0)

    seen = walk(many, between=churn, limit=6)
    assert len(seen) == len(set(seen))
    assert before <= set(seen)  # everyone present at the start, once, none skipped
    assert set(gone) <= set(seen)


def _sorted_by(many: ManagerServer, key: Any, **params: Any) -> None:
    status, data = get(many, limit=1000, **params)
    assert status == 200, data
    ids = [s["id"] for s in data["sessions"]]
    views = {_sid(s): s for s in many.conc.sessions.all()}
    expected = sorted(views, key=lambda i: (key(views[i]), views[i].key),
                      reverse=params.get("order") == "desc")
    assert ids == expected, params


@pytest.mark.parametrize("order", paging.ORDERS)
def test_sorting(many: ManagerServer, order: str) -> None:
    _sorted_by(many, lambda s: s.login_time, sort="login_time", order=order)
    _sorted_by(many, lambda s: s.user, sort="user", order=order)
    _sorted_by(many, lambda s: s.group, sort="group", order=order)
    _sorted_by(many, lambda s: (tuple(int(p) for p in s.public_ip.split(".")), s.public_port),
               sort="public_ip", order=order)
    _sorted_by(many, lambda s: s.bytes_tx + s.bytes_rx, sort="bytes", order=order)
    # the longest session is the one that logged in first
    _sorted_by(many, lambda s: -s.login_time, sort="duration", order=order)
    status, data = get(many, sort="duration", order=order, limit=1000)
    assert status == 200
    durations = [s["duration"] for s in data["sessions"]]
    assert durations == sorted(durations, reverse=order == "desc")


@pytest.mark.parametrize(("params", "keep"), [
    ({"user": "user03"}, lambda s: s.user == "user03"),
    ({"group": "sales"}, lambda s: s.group == "sales"),
    ({"public_ip": "198.51.100.4"}, lambda s: s.public_ip == "198.51.100.4"),
    ({"protocol": "IPsec"}, lambda s: s.protocol == "IPsec"),
    ({"protocol": "IPsec/NAT-T"}, lambda s: s.protocol == "IPsec/NAT-T"),
    ({"has_diagnosis": "true"}, lambda s: bool(s.diagnosis)),
    ({"has_diagnosis": "false"}, lambda s: not s.diagnosis),
    ({"group": "vpngroup", "protocol": "IPsec", "has_diagnosis": "false"},
     lambda s: s.group == "vpngroup" and s.protocol == "IPsec" and not s.diagnosis),
    ({"user": "nobody"}, lambda s: False),
])
def test_filters(many: ManagerServer, params: dict[str, str], keep: Any) -> None:
    expected = {_sid(s) for s in many.conc.sessions.all() if keep(s)}
    seen = walk(many, limit=4, **params)
    assert sorted(seen) == sorted(expected), params
    status, data = get(many, limit=4, **params)
    assert status == 200 and data["total"] == len(expected)
    assert all(s["user"] for s in data["sessions"])


def _forged(*value: Any) -> str:
    raw = json.dumps(list(value)).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(("params", "message"), [
    ({"limit": "0"}, "limit must be between 1 and 1000"),
    ({"limit": "1001"}, "limit must be between 1 and 1000"),
    ({"limit": "-5"}, "limit must be an integer"),
    ({"limit": "ten"}, "limit must be an integer"),
    ({"cursor": "not a cursor!"}, "cursor is not valid"),
    ({"cursor": "e30"}, "cursor is not valid"),  # {} in base64url
    ({"cursor": _forged("user", "asc", 5, "0" * 32)}, "cursor is not valid"),  # key type
    ({"cursor": _forged("user", "asc", "a", "zz")}, "cursor is not valid"),  # id
    ({"cursor": _forged("login_time", "asc", 1.0, "0" * 32), "sort": "user"},
     "cursor is not valid"),  # made for another sort
    ({"cursor": _forged("login_time", "asc", 1.0, "0" * 32), "order": "desc"},
     "cursor is not valid"),
    ({"cursor": "A" * 401}, "cursor is not valid"),
    ({"sort": "password"}, "sort must be one of"),
    ({"order": "up"}, "order must be one of"),
    ({"protocol": "GRE"}, "protocol must be one of"),
    ({"has_diagnosis": "yes"}, "has_diagnosis must be true or false"),
    ({"public_ip": "198.51.100"}, "public_ip must be an IPv4 address"),
    ({"user": "a" * 65}, "user is longer than 64"),
    ({"group": "a\x01"}, "group has control characters"),
    ({"offset": "10"}, "unknown parameter(s): 'offset'"),
    ({"limt": "10"}, "unknown parameter(s): 'limt'"),
])
def test_bad_parameters_are_refused(many: ManagerServer, params: dict[str, str],
                                    message: str) -> None:
    status, data = get(many, **params)
    assert status == 400 and message in data["error"], (params, data)


def test_a_repeated_parameter_is_refused(many: ManagerServer) -> None:
    auth = {"Authorization": f"Bearer {many.token()}"}
    r = many.request("GET", "/api/v1/sessions?limit=5&limit=6", headers=auth)
    assert r.status == 400 and "more than once: limit" in r.json()["error"]


def test_a_good_cursor_with_another_filter_still_pages(many: ManagerServer) -> None:
    """The cursor is a position in the order, not in one result: a filter changed
    between pages goes on from the same point."""
    status, first = get(many, limit=10)
    assert status == 200
    status, rest = get(many, limit=1000, cursor=first["next_cursor"], group="sales")
    assert status == 200
    shown = {s["id"] for s in first["sessions"]}
    assert all(s["group"] == "sales" and s["id"] not in shown for s in rest["sessions"])


def _page_ids(server: ManagerServer, url: str) -> tuple[list[str], dict[str, str]]:
    r = server.request("GET", url, basic=(ADMIN, ADMIN_PASSWORD))
    assert r.status == 200, r.text
    body = r.text.split('id="remote-access-table"', 1)[1].split("</table>", 1)[0]
    links = {rel: html.unescape(href) for href, rel in
             re.findall(r'<a href="([^"]+)" rel="(prev|next)"', r.text)}
    return re.findall(r'<tr data-session="([0-9a-f]{32})"', body), links


def test_the_sessions_page_pages_forward_and_back(many: ManagerServer) -> None:
    """The web page shows one page (its live region refreshes that page), with Next and
    Previous that keep the sort and filters."""
    expected = walk(many, limit=10, sort="user", order="desc")
    pages: list[list[str]] = []
    url: str | None = "/sessions?limit=10&sort=user&order=desc&group=&user="  # form's blanks
    links: dict[str, str] = {}
    while url is not None:
        ids, links = _page_ids(many, url)
        assert ("prev" in links) == bool(pages)
        pages.append(ids)
        if "next" in links:
            assert "sort=user" in links["next"] and "order=desc" in links["next"]
        url = links.get("next")
    assert [i for p in pages for i in p] == expected and len(pages) == 4
    # from the last page, Previous after Previous: the same pages, back to the first
    back: list[list[str]] = []
    while "prev" in links:
        ids, links = _page_ids(many, links["prev"])
        back.append(ids)
    assert back == pages[-2::-1]
    page = many.request("GET", "/sessions?limit=10&user=user03", basic=(ADMIN, ADMIN_PASSWORD))
    assert 'data-live="/sessions?partial=1&amp;limit=10&amp;user=user03"' in page.text


def test_the_sessions_page_refuses_a_bad_parameter(many: ManagerServer) -> None:
    r = many.request("GET", "/sessions?limit=5000", basic=(ADMIN, ADMIN_PASSWORD))
    assert r.status == 400 and "limit must be between 1 and 1000" in r.text
    r = many.request("GET", "/sessions?partial=1&sort=nope", basic=(ADMIN, ADMIN_PASSWORD))
    assert r.status == 400 and "sort must be one of" in r.text


def test_the_event_log_refuses_repeats_too(server: ManagerServer) -> None:
    """/events: a repeated parameter was last-wins, so a bad first value passed, and
    str.strip() turned "\\x859" (NEL, then 9) into 9 (found by schemathesis)."""
    auth = {"Authorization": f"Bearer {server.token()}"}
    for query in ("before_seq=x&before_seq=5", "before_seq=%C2%859",
                  "limit=5&limit=5"):
        r = server.request("GET", "/api/v1/events?" + query, headers=auth)
        assert r.status == 400, (query, r.text)
    ok = server.request("GET", "/api/v1/events?class=ADMIN&class=AUTH&limit=%205", headers=auth)
    assert ok.status == 200, ok.text


def _html_walk(many: ManagerServer) -> list[tuple[list[str], dict[str, str]]]:
    """The web page's pages forward (ids and Next/Previous links), then back."""
    out = []
    url: str | None = "/sessions?limit=10&sort=bytes&order=desc"
    links: dict[str, str] = {}
    while url is not None:
        ids, links = _page_ids(many, url)
        out.append((ids, links))
        url = links.get("next")
    while "prev" in links:
        ids, links = _page_ids(many, links["prev"])
        out.append((ids, links))
    return out


def test_the_web_page_scanned_in_steps_is_the_page_of_the_whole(
        many: ManagerServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The web page (and its Previous link) scans the store in steps too: it used to
    scan 10,000 sessions twice in one turn of the loop per refresh (issue 13)."""
    from vpnhub.manager import app
    from vpnhub.manager.view import ManagerView

    whole = _html_walk(many)
    assert len(whole) == 7  # 4 pages forward, 3 back
    monkeypatch.setattr(app, "PAGE_STEP", 4)
    scans: list[str] = []
    parts = ManagerView.remote_access_parts
    monkeypatch.setattr(ManagerView, "remote_access_parts",
                        lambda self, step: scans.append("steps") or parts(self, step))
    monkeypatch.setattr(ManagerView, "remote_access",
                        lambda self: scans.append("whole") or [])
    assert _html_walk(many) == whole
    # a page after the first scans twice (its Previous link): 1 + 3 * 2 forward, 2 + 2 + 1 back
    assert set(scans) == {"steps"} and len(scans) == 12


@pytest.mark.parametrize("sort", sorted(paging.SORTS))
def test_a_page_scanned_in_steps_is_the_page_of_the_whole(
        many: ManagerServer, sort: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The API scans the store PAGE_STEP sessions per turn of the loop (issue 13): parts
    of 4 give the pages, totals and cursors one scan of everything gives."""
    from vpnhub.manager import app

    whole = {order: walk(many, sort=sort, order=order, limit=10) for order in ("asc", "desc")}
    first = get(many, sort=sort, limit=10)[1]
    monkeypatch.setattr(app, "PAGE_STEP", 4)
    for order in ("asc", "desc"):
        assert walk(many, sort=sort, order=order, limit=10) == whole[order]
    stepped = get(many, sort=sort, limit=10)[1]
    assert (stepped["total"], stepped["next_cursor"]) == (first["total"], first["next_cursor"])
