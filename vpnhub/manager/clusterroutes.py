"""The Cluster page and its API (issue 17): members, load, master, the cluster-wide
sessions and Logout of any member's session.

Only when the concentrator is a `[cluster]` member (docs/CLUSTER.md): app.py
hands the service's `ClusterMember` to the `Manager`, and without one every
route here answers 404 "not a cluster member" and the menu has no Cluster entry.

What the loop may do with the member: read `status()` (memory only, O(members)),
and ask its thread for what needs the database (`list_sessions`,
`send_logout` return a `concurrent.futures.Future` the thread completes). That
future is awaited through `asyncio.wrap_future` behind `asyncio.shield`, with a
time limit: a page whose database is slow answers "did not answer" instead of
hanging, and the future itself is never cancelled (the member's thread sets its
result whatever happens, and a cancelled future would refuse it).

docs/MANAGER.md "The Cluster page" describes the page, docs/openapi.yaml the API.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, cast

from aiohttp import web

from vpnhub.manager import clusterpages, eventroutes
from vpnhub.manager.pages import h
from vpnhub.manager.paging import BadQuery, check_names
from vpnhub.manager.view import ManagerView, rfc3339

API = "/api/v1"
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_CURSOR = 512
MEMBER_WAIT = 5.0  # seconds a request waits for the member's thread (the database)
NOT_A_MEMBER = "not a cluster member: [cluster] is not configured on this concentrator"
_CURSOR = re.compile(r"^[A-Za-z0-9_-]+$")
_SID = re.compile(r"^[0-9a-f]{32}$")
# a member name as [cluster] member allows it (vpnhub/config/validate.py)
MEMBER_NAME = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$"
_MEMBER = re.compile(MEMBER_NAME)
PARAMETERS = frozenset({"limit", "cursor"})


class ClusterControl(Protocol):
    """What the Cluster page uses of vpnhub.cluster.member.ClusterMember (the banners
    and /metrics read less: view.ClusterControl)."""

    name: str
    database_ok: bool

    def status(self) -> dict[str, Any]: ...

    def list_sessions(self, limit: int, cursor: str | None
                      ) -> concurrent.futures.Future[dict[str, Any]]: ...

    def send_logout(self, member: str, sid: str, by: str
                    ) -> concurrent.futures.Future[dict[str, Any]]: ...


class Host(Protocol):
    """What these handlers use of app.Manager."""

    cluster: ClusterControl | None
    view: ManagerView
    notices: dict[str, tuple[bool, str]]


@dataclass(frozen=True)
class Query:
    limit: int
    cursor: str | None


def parse_query(q: Mapping[str, str], keys: Iterable[str]) -> Query:
    """`limit` and `cursor` as the Sessions API takes them; anything else refused."""
    check_names(keys, PARAMETERS)
    limit = DEFAULT_LIMIT
    text = q.get("limit")
    if text is not None:
        text = text.strip()
        if not text.isascii() or not text.lstrip("+").isdigit():
            raise BadQuery("limit must be an integer")
        limit = int(text)
        if not 1 <= limit <= MAX_LIMIT:
            raise BadQuery(f"limit must be between 1 and {MAX_LIMIT}")
    cursor = q.get("cursor")
    if cursor is not None and (len(cursor) > MAX_CURSOR or not _CURSOR.match(cursor)):
        raise BadQuery("cursor is not valid: use next_cursor of the previous page")
    return Query(limit, cursor)


async def member_call(fut: concurrent.futures.Future[dict[str, Any]],
                      wait: float = MEMBER_WAIT) -> dict[str, Any]:
    """The member thread's answer, awaited without blocking the loop (and without
    cancelling the thread's future when the wait runs out)."""
    try:
        return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(fut)), wait)
    except TimeoutError:
        return {"error": f"the cluster database did not answer within {wait:g} s"}


def cluster_json(c: ClusterControl, now: float | None = None) -> dict[str, Any]:
    """The member's status, plus who the master is and since when the database is down."""
    st = c.status()
    masters = [m["name"] for m in st.get("members", []) if m.get("holds_virtual_address")]
    down = st.get("down_for")
    wall = time.time() if now is None else now
    return {**st, "master": masters[0] if masters else None,
            "down_since": rfc3339(wall - down) if down is not None and not st["database_ok"]
            else None}


def _sessions_error(reply: Mapping[str, Any]) -> tuple[int, str]:
    """The status and message for a member thread's error answer."""
    text = str(reply["error"])
    if text.startswith("bad cursor"):
        return 400, "cursor is not valid: use next_cursor of the previous page"
    if text.startswith("no session"):
        return 404, text
    return 503, text


# ---------------------------------------------------------------------------- helpers
def _hooks(request: web.Request) -> eventroutes.Hooks:
    return request.app[eventroutes.HOOKS]


def _mgr(request: web.Request) -> Host:
    return cast(Host, _hooks(request).manager(request))


def _user(request: web.Request) -> str:
    return _hooks(request).ident(request).user


def _error(request: web.Request, status: int, message: str) -> web.Response:
    return _hooks(request).error(status, message, None)


async def _sessions(c: ClusterControl, q: Query) -> dict[str, Any]:
    reply = await member_call(c.list_sessions(q.limit, q.cursor))
    if "error" not in reply:
        reply["limit"] = q.limit
    return reply


async def logout(m: Host, member: str, sid: str, user: str) -> tuple[int, dict[str, Any]]:
    """Log session `sid` of `member` out: this member's through the manager's own
    logout (as the Sessions page's), another's by a command through the database."""
    c = m.cluster
    assert c is not None
    if not _SID.match(sid) or not _MEMBER.match(member):
        return 404, {"error": "no such session"}
    if member == c.name:
        s = m.view.find(sid)
        if s is None or not m.view.logout(s, user):
            return 404, {"error": "no such session"}
        return 200, {"logged_out": True, "user": s.user, "member": member, "id": sid,
                     "delivered": "local"}
    reply = await member_call(c.send_logout(member, sid, user))
    if "error" in reply:
        status, text = _sessions_error(reply)
        return status, {"error": text}
    return 200, {"logged_out": True, "member": member, "id": sid, "delivered": "notify"}


# ---------------------------------------------------------------------------- API
async def api_cluster(request: web.Request) -> web.Response:
    c = _mgr(request).cluster
    if c is None:
        return _error(request, 404, NOT_A_MEMBER)
    if request.query:
        return _error(request, 400, f"unknown parameter(s): "
                      f"{', '.join(map(repr, sorted(request.query)))[:200]} (none are known)")
    return web.json_response(cluster_json(c))


async def api_cluster_sessions(request: web.Request) -> web.Response:
    c = _mgr(request).cluster
    if c is None:
        return _error(request, 404, NOT_A_MEMBER)
    try:
        q = parse_query(request.query, [k for k, _ in request.query.items()])
    except BadQuery as e:
        return _error(request, 400, str(e))
    reply = await _sessions(c, q)
    if "error" in reply:
        status, text = _sessions_error(reply)
        return _error(request, status, text)
    return web.json_response(reply)


async def api_cluster_logout(request: web.Request) -> web.Response:
    m = _mgr(request)
    if m.cluster is None:
        return _error(request, 404, NOT_A_MEMBER)
    status, body = await logout(m, request.match_info["member"], request.match_info["sid"],
                                _user(request))
    return web.json_response(body, status=status)


# ---------------------------------------------------------------------------- pages
async def cluster_page(request: web.Request) -> web.Response:
    hooks = _hooks(request)
    m = _mgr(request)
    c = m.cluster
    partial = bool(request.query.get("partial"))
    if c is None:
        if partial:
            return web.Response(text="", status=404, content_type="text/html")
        return hooks.page(request, "Not a cluster member",
                          f"<h1>Cluster</h1><p>{h(NOT_A_MEMBER)}.</p>",
                          "cluster", 404)
    given = [(k, v) for k, v in request.query.items() if k != "partial" and v != ""]
    query = dict(given)
    try:
        q = parse_query(query, [k for k, _ in given])
    except BadQuery as e:
        q, query, error = Query(DEFAULT_LIMIT, None), {}, str(e)
    else:
        error = ""
    live = clusterpages.cluster_live(cluster_json(c), await _sessions(c, q), query,
                                     hooks.csrf(request))
    if partial:
        return web.Response(text=live, content_type="text/html")
    s = hooks.ident(request).session
    notice = m.notices.pop(s.token, None) if s is not None else None
    return hooks.page(request, "Cluster", clusterpages.cluster_page(live, query, error, notice),
                      "cluster", 400 if error else 200)


async def cluster_logout_page(request: web.Request) -> web.Response:
    """Logout from the page without the script: asked first (confirm=1 is the answer),
    then the result shown once on the Cluster page."""
    hooks = _hooks(request)
    m = _mgr(request)
    if m.cluster is None:
        return hooks.page(request, "Not a cluster member",
                          f"<h1>Cluster</h1><p>{h(NOT_A_MEMBER)}.</p>",
                          "cluster", 404)
    member, sid = request.match_info["member"], request.match_info["sid"]
    form = await request.post()
    if form.get("confirm") != "1":
        return hooks.page(request, "Log out?", clusterpages.logout_confirm_page(
            member, sid, hooks.csrf(request)), "cluster")
    status, body = await logout(m, member, sid, _user(request))
    if status == 200:
        result = (True, clusterpages.logged_out_text(body))
    else:
        result = (False, f"Logout failed: {body['error']}.")
    s = hooks.ident(request).session
    if s is not None:
        m.notices[s.token] = result
    raise web.HTTPSeeOther("/cluster")


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get("/cluster", cluster_page)
    r.add_post("/cluster/sessions/{member}/{sid}/logout", cluster_logout_page)
    r.add_get(f"{API}/cluster", api_cluster)
    r.add_get(f"{API}/cluster/sessions", api_cluster_sessions)
    r.add_post(f"{API}/cluster/sessions/{{member}}/{{sid}}/logout", api_cluster_logout)
