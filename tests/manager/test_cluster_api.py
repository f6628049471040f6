"""The Cluster API and page over HTTP (issue 17), against a real PostgreSQL 15.

Member a serves the manager (one session of its own), member b has two
sessions in the directory (cluster_rig.py). Checked: GET /api/v1/cluster (both
members, loads, a the master and "this member", the database up),
GET /api/v1/cluster/sessions (every member's sessions with `member`, paged by
cursor, bad parameters refused), Logout of b's session through a's manager
(delivered to b: its command callback fires, the row leaves the directory), of
a's own (the local logout), of a session that is not there (404), the login,
CSRF and role rules; and a concentrator without [cluster] answering 404.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_rig import ClusterRig, until
from manager_fakes import ManagerServer
from netns_util import unavailable
from pgserver import PgServer, pg_problem
from test_event_console import MONITOR, MONITOR_PASSWORD, MONITOR_USER
from test_manager_http import form_login


@pytest.fixture(scope="module")
def pg() -> Iterator[PgServer]:
    problem = pg_problem()
    if problem is not None:
        unavailable(problem)
    with PgServer() as server:
        yield server


@pytest.fixture
def rig(tmp_path: Path, pg: PgServer) -> Iterator[ClusterRig]:
    r = ClusterRig(tmp_path, pg, extra=MONITOR_USER).start()
    yield r
    r.stop()


def _get(srv: ManagerServer, path: str, token: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    r = srv.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    return r.status, r.json()


def _walk(srv: ManagerServer, token: str, limit: int) -> list[dict]:  # type: ignore[type-arg]
    """Every page of the cluster's sessions, by next_cursor."""
    out: list[dict] = []  # type: ignore[type-arg]
    cursor = None
    while True:
        path = f"/api/v1/cluster/sessions?limit={limit}" + (f"&cursor={cursor}" if cursor
                                                            else "")
        status, page = _get(srv, path, token)
        assert status == 200, page
        assert len(page["sessions"]) <= limit and page["limit"] == limit
        out += page["sessions"]
        cursor = page["next_cursor"]
        if cursor is None:
            return out


def test_cluster_api_members_sessions_and_logout_on_any_member(rig: ClusterRig) -> None:
    srv = rig.srv
    token = srv.token()
    mine = rig.login_a("alice", 1201)
    bobs = [rig.login_b("bob"), rig.login_b("carol")]

    # the members: both, their loads, a the master and this member
    def members() -> dict[str, dict]:  # type: ignore[type-arg]
        st = _get(srv, "/api/v1/cluster", token)[1]
        return {m["name"]: m for m in st["members"]}
    until(lambda: (lambda ms: ms.keys() == {"a", "b"} and ms["b"]["sessions"] == 2
                   and ms["a"]["sessions"] == 1)(members()), "both members and their loads")
    status, st = _get(srv, "/api/v1/cluster", token)
    assert status == 200 and st["member"] == "a" and st["master"] == "a"
    assert st["database_ok"] is True and st["down_since"] is None
    a, b = (next(m for m in st["members"] if m["name"] == n) for n in ("a", "b"))
    assert a["me"] and a["holds_virtual_address"] and a["alive"]
    assert not b["me"] and not b["holds_virtual_address"] and b["alive"]
    assert (b["max_sessions"], b["load"]) == (50, 0.04)
    assert b["public_address"] == "198.51.100.12"

    # the cluster-wide sessions, one per page and all at once
    until(lambda: len(_walk(srv, token, 100)) == 3, "the three sessions in the directory")
    one_by_one = _walk(srv, token, 1)
    assert sorted((e["member"], e["id"]) for e in one_by_one) == sorted(
        [("a", mine), *(("b", sid) for sid in bobs)])
    assert {e["user"] for e in one_by_one} == {"alice", "bob", "carol"}
    status, page = _get(srv, "/api/v1/cluster/sessions", token)
    assert page["summary"]["remote_access"] == 3 and page["limit"] == 100
    for bad in ("limit=0", "limit=1001", "limit=x", "offset=1", "cursor=%21%21",
                "cursor=bm90LW91cnM", "limit=1&limit=2"):
        status, body = _get(srv, f"/api/v1/cluster/sessions?{bad}", token)
        assert status == 400 and body["error"], (bad, body)
    assert _get(srv, "/api/v1/cluster?x=1", token)[0] == 400

    # Logout of b's session from a's manager: delivered to b, its callback fires
    r = srv.request("POST", f"/api/v1/cluster/sessions/b/{bobs[0]}/logout",
                    headers={"Authorization": f"Bearer {token}"})
    assert r.status == 200, r.text
    assert r.json() == {"logged_out": True, "member": "b", "id": bobs[0],
                        "delivered": "notify"}
    until(lambda: rig.b_asked, "b to be asked")
    (key, by), = rig.b_asked
    assert key[0].hex() + key[1].hex() == bobs[0] and by == "admin on member a"
    until(lambda: {e["id"] for e in _walk(srv, token, 100)} == {mine, bobs[1]},
          "bob's row to leave the directory")

    # the local member's session: the manager's own logout
    r = srv.request("POST", f"/api/v1/cluster/sessions/a/{mine}/logout",
                    headers={"Authorization": f"Bearer {token}"})
    assert r.status == 200 and r.json()["delivered"] == "local" and r.json()["user"] == "alice"
    assert srv.run(lambda: len(srv.conc.sessions)) == 0
    assert any("logout of alice by administrator admin" in x.text
               for x in srv.log.query(_all()))
    until(lambda: {e["id"] for e in _walk(srv, token, 100)} == {bobs[1]}, "alice's row to go")

    # a session that is not (or no longer) there
    for member, sid in (("b", bobs[0]), ("a", mine), ("nobody", bobs[1]), ("b", "zz")):
        r = srv.request("POST", f"/api/v1/cluster/sessions/{member}/{sid}/logout",
                        headers={"Authorization": f"Bearer {token}"})
        assert r.status == 404, (member, sid, r.text)

    # the same rules as the session logout: a login, the CSRF token, the admin role
    path = f"/api/v1/cluster/sessions/b/{bobs[1]}/logout"
    assert srv.request("POST", path).status == 401
    assert srv.request("POST", path, basic=(MONITOR, MONITOR_PASSWORD)).status == 403
    cookie, csrf = form_login(srv)
    assert srv.request("POST", path, headers={"Cookie": cookie}).status == 403
    page = srv.request("GET", "/cluster", headers={"Cookie": cookie})
    assert page.status == 200 and 'href="/cluster"' in page.text  # the menu entry
    assert f'data-session="{bobs[1]}"' in page.text and 'data-master="yes"' in page.text
    r = srv.request("POST", path, headers={"Cookie": cookie, "X-CSRF-Token": csrf})
    assert r.status == 200 and r.json()["delivered"] == "notify"
    until(lambda: len(rig.b_asked) == 2, "b to be asked again")
    assert rig.b_asked[1][1] == "admin on member a"
    assert srv.run(lambda: len(rig.b_store)) == 0

    # the page's form without the script: asked on a page, then the result shown once
    dave = rig.login_b("dave")
    until(lambda: dave in {e["id"] for e in _walk(srv, token, 100)}, "dave's row")
    form = {"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"}
    r = srv.request("POST", f"/cluster/sessions/b/{dave}/logout",
                    body=f"csrf={csrf}".encode(), headers=form)
    assert r.status == 200 and 'id="logout-question"' in r.text and not rig.b_asked[2:]
    r = srv.request("POST", f"/cluster/sessions/b/{dave}/logout",
                    body=f"csrf={csrf}&confirm=1".encode(), headers=form)
    assert r.status == 303 and r.headers["Location"] == "/cluster"
    page = srv.request("GET", "/cluster", headers={"Cookie": cookie})
    assert "Logout sent to member b" in page.text
    until(lambda: len(rig.b_asked) == 3, "b to be asked by the form")


def test_not_a_cluster_member_answers_404(server: ManagerServer) -> None:
    token = server.token()
    auth = {"Authorization": f"Bearer {token}"}
    for method, path in (("GET", "/api/v1/cluster"), ("GET", "/api/v1/cluster/sessions"),
                         ("POST", f"/api/v1/cluster/sessions/b/{'0' * 32}/logout")):
        r = server.request(method, path, headers=auth)
        assert r.status == 404, (path, r.text)
        assert json.loads(r.body)["error"].startswith("not a cluster member"), r.text
    cookie, _ = form_login(server)
    page = server.request("GET", "/sessions", headers={"Cookie": cookie})
    assert 'href="/cluster"' not in page.text  # no menu entry
    assert server.request("GET", "/cluster", headers={"Cookie": cookie}).status == 404


def _all() -> object:
    from vpnhub.eventlog import EventFilter

    return EventFilter(limit=1000)
