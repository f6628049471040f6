"""The manager's HTTP server (aiohttp): web console, JSON API, live event tail, /metrics.

Served by the concentrator's own process on [admin] listen (default
127.0.0.1:8443), HTTPS when [admin] tls_cert/tls_key are set. Every page,
API call and /metrics needs a login (auth.py); only the login form, the
login API and the two static files are public. docs/MANAGER.md describes
the pages, docs/openapi.yaml the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import re
import secrets
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from aiohttp import web

from vpnhub.eventlog import EventFilter, Record
from vpnhub.manager import (
    clusterroutes,
    eventroutes,
    export,
    metrics,
    openapi,
    pages,
    paging,
    statushistory,
    statuspage,
)
from vpnhub.manager.auth import (
    IDLE_TIMEOUT,
    LOGIN_COOKIE,
    SESSION_COOKIE,
    AdminAuth,
    Identity,
    parse_basic,
    parse_bearer,
    same_token,
)
from vpnhub.manager.eventfilter import BadRequest, parse_filter
from vpnhub.manager.throttle import LoginThrottle
from vpnhub.manager.view import (
    HISTORY_EVERY,
    SAMPLE_EVERY,
    ConcentratorLike,
    ManagerView,
    Pinger,
    system_ping,
)
from vpnhub.session.model import SessionView

API = "/api/v1"
STATIC = Path(__file__).parent / "static"
TICK = 1.0
# Seconds `stop` waits for the periodic task after cancelling it (it ends at its next
# tick anyway, `_stopping`): never the reason a SIGTERM does not end
STOP_WAIT = 2.0 * TICK
STREAM_BACKLOG = 200
STREAM_QUEUE = 1000
# Sessions a page of the API scans per turn of the event loop (~2 ms of work), issue 13
PAGE_STEP = 1000
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
_PUBLIC = frozenset({("GET", "/login"), ("HEAD", "/login"), ("POST", "/login"),
                     ("POST", f"{API}/login")})
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self';"
                               " script-src 'self'; frame-ancestors 'none'; form-action 'self';"
                               " base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # no-referrer would make Chromium send Origin: null
}
HSTS = "max-age=31536000"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Manager:
    """The manager of one concentrator: its event log store, HTTP server and counters."""

    def __init__(self, conc: ConcentratorLike, *, pinger: Pinger = system_ping,
                 lockout: LoginThrottle | None = None,
                 cluster: clusterroutes.ClusterControl | None = None) -> None:
        self.conc = conc
        # the service's ClusterMember when [cluster] is set (issue 17): the Cluster page;
        # by default the one the core holds (its banners and /metrics read it there)
        self.cluster: clusterroutes.ClusterControl | None = \
            cluster if cluster is not None else getattr(conc, "cluster", None)
        self.log = conc.log
        problem = self.log.configure(conc.config)
        if problem:
            self.log.add("CONFIG", 2, problem)
        self.view = ManagerView(conc, pinger=pinger)
        self.auth = AdminAuth(conc.config.admin.users, lockout=lockout)
        self.view.management_sessions = lambda: sum(
            1 for s in self.auth.sessions.values() if s.via == "cookie")
        self.tls = conc.config.admin.tls_cert is not None
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._stopping = False  # `stop` began: the periodic task ends at its next tick
        self._streams: set[asyncio.Queue[Record | None]] = set()
        self.status = statushistory.StatusRing()  # the Status page's hour (issue 15)
        # per manager session token: the result of its last Logout, shown once on the
        # Sessions page it is sent back to (POST, redirect, GET)
        self.notices: dict[str, tuple[bool, str]] = {}

    # ------------------------------------------------------------------ life cycle
    async def start(self, host: str | None = None, port: int | None = None) -> bool:
        """Listen on [admin] listen (or host/port); False (and an ADMIN event) if it cannot."""
        admin = self.conc.config.admin
        host = host or str(admin.listen_address)
        port = admin.listen_port if port is None else port
        ctx: ssl.SSLContext | None = None
        try:
            if admin.tls_cert is not None and admin.tls_key is not None:
                ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                ctx.load_cert_chain(admin.tls_cert, admin.tls_key)
            runner = web.AppRunner(build_app(self), access_log=None, handle_signals=False,
                                   shutdown_timeout=1.0)
            await runner.setup()
            site = web.TCPSite(runner, host, port, ssl_context=ctx, reuse_address=True)
            await site.start()
        except (OSError, ssl.SSLError) as e:
            self.log.add("ADMIN", 2, f"manager cannot listen on {host}:{port}: {e}"
                         " (web console, API and /metrics unavailable)")
            return False
        self._runner = runner
        bound = runner.addresses[0] if runner.addresses else (host, port)
        shown = f"[{bound[0]}]" if ":" in str(bound[0]) else str(bound[0])
        self.url = f"{'https' if ctx else 'http'}://{shown}:{bound[1]}"
        self.log.add("ADMIN", 4, f"manager (web console, API, /metrics) on {self.url}")
        if not ctx and not ipaddress.ip_address(host).is_loopback:
            self.log.add("ADMIN", 2, f"manager listens on {host} in plain HTTP: passwords and"
                         " session cookies cross the network in clear; set [admin] tls_cert"
                         " and tls_key, or listen on 127.0.0.1 behind a TLS reverse proxy")
        if not admin.users:
            self.log.add("ADMIN", 3, "no [[admin.user]] configured: nobody can log in to the"
                         " manager")
        self._ticker = asyncio.create_task(self._tick())
        return True

    async def stop(self) -> None:
        self._stopping = True
        if self._ticker is not None:
            # A cancel can be lost: Python 3.11's asyncio.wait_for returns (or raises) the
            # awaited future's outcome when that is set in the same turn as the cancel
            # (CPython gh-86296), e.g. a worker's stats question failed by the shutdown's
            # pool close while the tick samples; the task then went on forever and SIGTERM
            # with 10,000 sessions never ended (issue 13). So the task also checks
            # `_stopping`, and it is waited for a bounded time only.
            self._ticker.cancel()
            await asyncio.wait({self._ticker}, timeout=STOP_WAIT)
            if not self._ticker.done():
                self.log.add("ADMIN", 3, "manager: its periodic task did not stop in"
                             f" {STOP_WAIT:g} s; left behind")
        for q in list(self._streams):
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(None)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.auth.shutdown()
        self.view.close()
        self.log.close()

    async def _tick(self) -> None:
        last_sample = last_history = last_status = 0.0
        while True:
            await asyncio.sleep(TICK)
            if self._stopping:  # a cancel `stop` sent may have been lost on the way
                return
            try:
                self.log.flush_soon()  # the store's writer thread commits
                now = time.monotonic()
                if now - last_sample >= SAMPLE_EVERY:
                    last_sample = now
                    if now - last_history >= HISTORY_EVERY:
                        last_history = now
                        await self.view.sample()
                    else:  # the totals only: the per-session walk is 5x rarer
                        await self.view.sample_totals()
                    self.auth.prune()
                if now - last_status >= statushistory.STATUS_EVERY:
                    last_status = now
                    self.status.add(time.time(), statushistory.read(self.view))
            except Exception as e:  # the manager must never take the concentrator down
                self.log.add("ADMIN", 1, f"manager internal error: {e!r}")

    # ------------------------------------------------------------------ hooks
    def on_ike_event(self, sa: Any, e: Any) -> None:
        """The concentrator calls this for every IKE engine event (metrics)."""
        # try/except, not contextlib.suppress: ~17 events per login, and a suppress
        # object per call cost ~1 us each (issue 13)
        try:  # noqa: SIM105
            self.view.on_ike_event(sa, e)
        except Exception:  # the metrics must never stop a login
            pass

    # ------------------------------------------------------------------ identity
    async def identify(self, request: web.Request) -> Identity | None:
        header = request.headers.get("Authorization", "")
        if header:
            token = parse_bearer(header)
            if token is not None:
                s = self.auth.session(token)
                return Identity(s.user, "bearer", s) if s is not None and s.via == "bearer" \
                    else None
            cred = parse_basic(header)
            if cred is None:
                return None
            if self.auth.cached_basic(*cred):
                return Identity(cred[0], "basic")
            if await self.login_attempt(cred[0], cred[1], _source(request), "HTTP Basic"):
                self.auth.remember_basic(*cred)
                return Identity(cred[0], "basic")
            return None
        s = self.auth.session(request.cookies.get(SESSION_COOKIE))
        return Identity(s.user, "cookie", s) if s is not None and s.via == "cookie" else None

    async def login_attempt(self, user: str, password: str, source: str, how: str) -> bool:
        """Check a password; log the result; on failure wait the slow-down delay first."""
        shown = repr(user[:64])
        result = await self.auth.check(user, password, source)
        if result.ok:
            self.log.add("AUTH", 5, f"manager login of {shown} from {source} ({how})")
            return True
        why = {"unknown_user": "unknown user", "bad_password": "wrong password",
               "locked_out": "locked out after too many failures"}.get(str(result.reason),
                                                                        str(result.reason))
        self.log.add("AUTH", 3, f"manager login FAILED for {shown} from {source} ({how}): {why};"
                     f" answered after {result.delay:g} s")
        await asyncio.sleep(result.delay)
        return False


MANAGER_KEY = web.AppKey("manager", Manager)


def _source(request: web.Request) -> str:
    return request.remote or "unknown"


def _mgr(request: web.Request) -> Manager:
    return request.app[MANAGER_KEY]


IDENTITY_KEY = web.RequestKey("identity", Identity)


def _ident(request: web.Request) -> Identity:
    return request[IDENTITY_KEY]


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


# ---------------------------------------------------------------------------- middleware
@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authentication on everything but the login and static files; CSRF on cookie writes."""
    m = _mgr(request)
    path = request.path
    if (request.method, path) in _PUBLIC or (request.method in _SAFE
                                             and path.startswith("/static/")):
        return await handler(request)
    api = path.startswith("/api/") or path == "/metrics"
    ident = await m.identify(request)
    if ident is None:
        if api:
            return _error(401, "authentication required: log in (POST /api/v1/login) and send"
                          " the token as Authorization: Bearer, or use HTTP Basic",
                          {"WWW-Authenticate": 'Bearer realm="vpnhub manager"'})
        target = path if request.method == "GET" and path.startswith("/") else "/sessions"
        raise web.HTTPSeeOther(f"/login?next={quote(target, safe='/')}")
    if request.method not in _SAFE and ident.via == "cookie":
        assert ident.session is not None
        given = request.headers.get("X-CSRF-Token")
        if given is None and request.content_type in ("application/x-www-form-urlencoded",
                                                      "multipart/form-data"):
            form = await request.post()
            value = form.get("csrf")
            given = value if isinstance(value, str) else None
        origin = request.headers.get("Origin")
        if not same_token(given, ident.session.csrf) or (
                origin is not None and origin.split("://", 1)[-1] != request.host):
            m.log.add("ADMIN", 3, f"refused {request.method} {path} from {_source(request)}:"
                      " missing or wrong CSRF token", user=ident.user)
            if api:
                return _error(403, "missing or wrong CSRF token (X-CSRF-Token header)")
            return web.Response(status=403, content_type="text/html", text=pages.layout(
                "Forbidden", "<h1>Forbidden</h1><p>The form was stale or came from another"
                " site. Reload the page and try again.</p>"))
    if request.method not in _SAFE and not m.auth.is_admin(ident.user) \
            and not _monitor_may(path):
        m.log.add("ADMIN", 3, f"refused {request.method} {path} to {ident.user!r} from"
                  f" {_source(request)}: the monitor role only reads", user=ident.user)
        if api:
            return _error(403, "this needs the admin role; this account is a monitor")
        return web.Response(status=403, content_type="text/html", text=pages.layout(
            "Forbidden", "<h1>Forbidden</h1><p>This account (role monitor) may only look."
            "</p>"))
    request[IDENTITY_KEY] = ident
    return await handler(request)


_MONITOR_PING = re.compile(rf"^(?:{re.escape(API)})?/sessions/[^/]+/ping$")


def _monitor_may(path: str) -> bool:
    """The changes a monitor ([[admin.user]] role, issue 15) may make: log itself out,
    ping a client (a session's ping route exactly, nothing else that ends in /ping)."""
    return path in ("/logout", f"{API}/logout") or _MONITOR_PING.match(path) is not None


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for k, v in _HEADERS.items():
        response.headers.setdefault(k, v)
    if _mgr(request).tls:
        # RFC 6797: browsers then refuse plain HTTP to this host for a year (OWASP's HTTP
        # Headers Cheat Sheet value); no includeSubDomains: the manager may sit on a name
        # whose other subdomains are not ours to force onto TLS
        response.headers.setdefault("Strict-Transport-Security", HSTS)
    if not request.path.startswith("/static/"):
        response.headers.setdefault("Cache-Control", "no-store")


def build_app(m: Manager) -> web.Application:
    app = web.Application(middlewares=[guard], client_max_size=64 * 1024)
    app[MANAGER_KEY] = m
    app[export.SLOTS] = export.Slots()
    app.on_response_prepare.append(_security_headers)
    r = app.router
    r.add_get("/", home)
    r.add_get("/login", login_form)
    r.add_post("/login", login_submit)
    r.add_post("/logout", logout_page)
    r.add_get("/sessions", sessions_page)
    r.add_get("/sessions/{sid}", session_page)
    r.add_post("/sessions/{sid}/logout", session_logout_page)
    r.add_post("/sessions/{sid}/ping", session_ping_page)
    r.add_get("/events", events_page)
    r.add_get("/settings/nat-transparency", natt_page)
    r.add_post("/settings/nat-transparency", natt_submit)
    r.add_get("/metrics", metrics_endpoint)
    r.add_get("/status", status_page)
    r.add_static("/static", STATIC, append_version=False)
    r.add_post(f"{API}/login", api_login)
    r.add_post(f"{API}/logout", api_logout)
    r.add_get(f"{API}/summary", api_summary)
    r.add_get(f"{API}/sessions", api_sessions)
    r.add_get(f"{API}/sessions/export", api_sessions_export)  # before {sid} would take it
    r.add_get(f"{API}/sessions/{{sid}}", api_session)
    r.add_post(f"{API}/sessions/{{sid}}/logout", api_session_logout)
    r.add_post(f"{API}/sessions/{{sid}}/ping", api_session_ping)
    r.add_get(f"{API}/events", api_events)
    r.add_get(f"{API}/events/stream", api_events_stream)
    r.add_get(f"{API}/nat-transparency", api_natt)
    r.add_put(f"{API}/nat-transparency", api_natt_put)
    r.add_get(f"{API}/warnings", api_warnings)
    r.add_get(f"{API}/status/history", api_status_history)
    r.add_get(f"{API}/openapi.json", api_openapi)
    app[eventroutes.HOOKS] = eventroutes.Hooks(_mgr, _ident, _page, _csrf, _error, _source,
                                               _json_body)
    eventroutes.add_routes(r)
    clusterroutes.add_routes(r)
    return app


async def home(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther("/sessions")


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html")


def _page(request: web.Request, title: str, body: str, active: str, status: int = 200,
          warnings: bool = True) -> web.Response:
    m = _mgr(request)
    ident = _ident(request)
    csrf = ident.session.csrf if ident.session is not None else ""
    return _html(pages.layout(title, body, user=ident.user, csrf=csrf,
                              public=str(m.conc.config.concentrator.public_address),
                              warnings=m.view.warnings() if warnings else (), active=active,
                              cluster=m.cluster is not None),
                 status)


def _csrf(request: web.Request) -> str:
    s = _ident(request).session
    return s.csrf if s is not None else ""


# ---------------------------------------------------------------------------- login
async def login_form(request: web.Request) -> web.Response:
    m = _mgr(request)
    if m.auth.session(request.cookies.get(SESSION_COOKIE)) is not None:
        raise web.HTTPSeeOther("/sessions")
    return _login(m, request, _next(request.query.get("next")))


def _login(m: Manager, request: web.Request, next_url: str, message: str = "",
           status: int = 200) -> web.Response:
    # one token per browser (not per rendering): several tabs, or a favicon fetch
    # answered with this page, must not invalidate the form shown first
    token = request.cookies.get(LOGIN_COOKIE, "")
    if not (len(token) == 32 and token.replace("-", "").replace("_", "").isalnum()):
        token = secrets.token_urlsafe(24)
    resp = _html(pages.login_page(token, message, next_url, no_accounts=not m.auth.names),
                 status)
    resp.set_cookie(LOGIN_COOKIE, token, path="/login", httponly=True, samesite="Strict",
                    secure=m.tls)
    return resp


def _next(value: str | None) -> str:
    """Where to go after the login: a path of this site only, else the home page.

    Browsers strip tabs and newlines from URLs and read a backslash as a slash
    (WHATWG URL Standard), so `/%09/host/` or `/\\host` would become `//host/`,
    another site (an open redirect, OWASP's "Unvalidated Redirects"). Refused:
    anything not starting with exactly one "/", any backslash, control or
    whitespace character, also after percent-decoding, and any scheme or host."""
    if not value:
        return "/sessions"
    decoded = unquote(value)
    ok = (value.startswith("/") and not decoded.startswith(("//", "/\\"))
          and "\\" not in decoded
          and all(ch.isprintable() and not ch.isspace() for ch in decoded)
          and not urlsplit(decoded).scheme and not urlsplit(decoded).netloc)
    return value if ok else "/sessions"


async def login_submit(request: web.Request) -> web.Response:
    m = _mgr(request)
    form = await request.post()
    token, user, password = (str(form.get(k, "")) for k in ("login_token", "username",
                                                            "password"))
    next_url = _next(str(form.get("next", "")))
    if not same_token(request.cookies.get(LOGIN_COOKIE), token) or not token:
        return _login(m, request, next_url, "The login form expired; please log in again.", 400)
    if not user or not await m.login_attempt(user, password, _source(request), "web console"):
        return _login(m, request, next_url, "Login failed.", 401)
    s = m.auth.open(user, _source(request), "cookie")
    resp = web.HTTPSeeOther(next_url)
    resp.set_cookie(SESSION_COOKIE, s.token, path="/", httponly=True, samesite="Strict",
                    secure=m.tls)
    resp.del_cookie(LOGIN_COOKIE, path="/login")
    raise resp


async def logout_page(request: web.Request) -> web.Response:
    m = _mgr(request)
    ident = _ident(request)
    if ident.session is not None:
        m.auth.close(ident.session.token)
    m.log.add("ADMIN", 5, f"manager logout of {ident.user!r} from {_source(request)}")
    resp = web.HTTPSeeOther("/login")
    resp.del_cookie(SESSION_COOKIE, path="/")
    raise resp


# ---------------------------------------------------------------------------- pages
async def _sessions_live(request: web.Request, query: dict[str, str],
                         q: paging.SessionQuery) -> str:
    """One page of the Remote Access Sessions, as the API pages them (paging.py), in
    steps as the API does: the page and its Previous link were two scans of every
    session in one turn of the loop (with 10,000 sessions each open Sessions tab held
    IKE 20-60 ms every 3 s, issue 13)."""
    m = _mgr(request)
    v = m.view
    page = await _select_in_steps(v, q)
    back = paging.backwards(q, page)
    previous = None if back is None else paging.previous_of(
        q, await _select_in_steps(v, back))
    nav = pages.pager(query, len(page.sessions), page.total, page.next_cursor, previous)
    listed = [v.session_json(s) for s in page.sessions]
    sites = [v.session_json(s) for s in v.sites()]
    mgmt = [(s.user, s.source, "HTTPS" if m.tls else "HTTP", s.wall_created)
            for s in m.auth.sessions.values() if s.via == "cookie"]
    summary = v.summary()
    return pages.sessions_live(
        summary, listed, sites, mgmt, _csrf(request), v.warnings(), nav,
        empty_remote=pages.empty_remote(query, summary["active_remote_access"],
                                        "cursor" in query),
        empty_sites=pages.empty_sites(len(m.conc.config.lan_to_lan)))


async def sessions_page(request: web.Request) -> web.Response:
    # the form sends its empty fields: an empty one is not set
    given = [(k, v) for k, v in request.query.items() if k != "partial" and v != ""]
    query = dict(given)
    filters = pages.sessions_filters(query, paging.SORTS, paging.PROTOCOLS)
    try:
        q = paging.parse_query(query, [k for k, _ in given])
    except paging.BadQuery as e:
        if request.query.get("partial"):
            return _html(f"<p>{pages.h(str(e))}</p>", 400)
        return _page(request, "Sessions", pages.sessions_page("", {}, filters, str(e)),
                     "sessions", 400, warnings=False)
    live = await _sessions_live(request, query, q)
    if request.query.get("partial"):
        return _html(live)
    notice = _notice(request)
    return _page(request, "Sessions", pages.sessions_page(live, query, filters, notice=notice),
                 "sessions", warnings=False)


def _notice(request: web.Request) -> tuple[bool, str] | None:
    """The result of this manager session's last Logout, once (then forgotten)."""
    s = _ident(request).session
    return _mgr(request).notices.pop(s.token, None) if s is not None else None


async def session_page(request: web.Request) -> web.Response:
    m = _mgr(request)
    sid = request.match_info["sid"]
    s = m.view.find(sid)
    if s is None:
        if request.query.get("partial"):
            return _html("", 404)
        return _page(request, "Session not found", pages.gone_page(sid), "sessions", 404)
    d = m.view.session_json(s)
    live = pages.detail_live(d, pages.throughput_svg(m.view.throughput(sid)))
    if request.query.get("partial"):
        return _html(live)
    return _page(request, f"Session of {s.user or s.lan_to_lan}",
                 pages.detail_page(d, live, _csrf(request)),
                 "sessions")


async def session_logout_page(request: web.Request) -> web.Response:
    """Logout from the console: asked first (the script's confirm() sends confirm=1; a
    form without it gets a confirmation page), then the result shown on the Sessions
    page (issue 15)."""
    m = _mgr(request)
    sid = request.match_info["sid"]
    s = m.view.find(sid)
    form = await request.post()
    if form.get("confirm") != "1":
        if s is None:
            return _page(request, "Session not found", pages.gone_page(sid), "sessions", 404)
        return _page(request, "Log out?", pages.logout_confirm_page(
            m.view.session_json(s), _csrf(request)), "sessions")
    ident = _ident(request)
    name = (s.user or s.lan_to_lan) if s is not None else ""
    if s is not None and m.view.logout(s, ident.user):
        result = (True, f"{name} logged out: the client was sent a DELETE and its"
                  " tunnel is closed.")
    else:
        result = (False, f"Logout failed: no session {sid} (it ended already).")
    if ident.session is not None:
        m.notices[ident.session.token] = result
    raise web.HTTPSeeOther("/sessions")


async def session_ping_page(request: web.Request) -> web.Response:
    m = _mgr(request)
    s = m.view.find(request.match_info["sid"])
    if s is None:
        return _page(request, "Session not found", pages.gone_page(request.match_info["sid"]),
                     "sessions", 404)
    r = await m.view.ping(s, _ident(request).user)
    return _page(request, "Ping", pages.ping_page(s.user, r), "sessions")


async def events_page(request: web.Request) -> web.Response:
    m = _mgr(request)
    query = {k: request.query.getall(k) if k == "class" else request.query[k]
             for k in request.query}
    error = ""
    try:
        f = parse_filter(request.query, lenient=True)
    except BadRequest as e:
        f, error = EventFilter(), str(e)
    records = m.log.query(f)
    nav = eventroutes.navigation(m, f, records, query, m.auth.is_admin(_ident(request).user))
    body = pages.events_page(f, records, query, error, nav)
    return _page(request, "Filterable Event Log", body, "events", 400 if error else 200)


async def natt_page(request: web.Request) -> web.Response:
    m = _mgr(request)
    message = "Saved: applies to new IKE SAs." if request.query.get("saved") else ""
    return _page(request, "NAT Transparency", pages.natt_page(m.view.natt_json(),
                                                                _csrf(request), message), "natt")


async def natt_submit(request: web.Request) -> web.Response:
    m = _mgr(request)
    form = await request.post()
    m.view.set_natt(form.get("ipsec_over_natt") == "on", _ident(request).user)
    raise web.HTTPSeeOther("/settings/nat-transparency?saved=1")


async def status_page(request: web.Request) -> web.Response:
    m = _mgr(request)
    reading = statushistory.read(m.view)
    if request.query.get("partial"):
        return _html(statuspage.current_table(reading, m.status.taken))
    return _page(request, "Status", statuspage.status_page(reading, m.status.taken), "status")


async def metrics_endpoint(request: web.Request) -> web.Response:
    m = _mgr(request)
    text = metrics.render(m.view, m.auth.logins_ok, m.auth.logins_failed)
    return web.Response(body=text.encode(), headers={"Content-Type": metrics.CONTENT_TYPE})


# ---------------------------------------------------------------------------- API
async def _json_body(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise BadRequest("send a JSON body (Content-Type: application/json)")
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(f"body is not JSON: {e}") from None
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    return body


async def api_login(request: web.Request) -> web.Response:
    m = _mgr(request)
    cred = parse_basic(request.headers.get("Authorization", ""))
    if cred is None or request.body_exists:  # a body is always checked, and wins
        try:
            body = await _json_body(request)
        except BadRequest as e:
            return _error(400, str(e))
        user, password = body.get("username"), body.get("password")
        if not isinstance(user, str) or not isinstance(password, str) or not user:
            return _error(400, "username and password (strings) are required")
        cred = (user, password)
    if not await m.login_attempt(cred[0], cred[1], _source(request), "API"):
        return _error(401, "login failed", {"WWW-Authenticate": 'Bearer realm="vpnhub manager"'})
    s = m.auth.open(cred[0], _source(request), "bearer")
    return web.json_response({"token": s.token, "token_type": "Bearer", "user": s.user,
                              "idle_timeout": int(IDLE_TIMEOUT)})


async def api_logout(request: web.Request) -> web.Response:
    m = _mgr(request)
    ident = _ident(request)
    if ident.session is not None:
        m.auth.close(ident.session.token)
        m.log.add("ADMIN", 5, f"manager logout of {ident.user!r} from {_source(request)}")
    return web.json_response({"logged_out": ident.session is not None})


async def api_summary(request: web.Request) -> web.Response:
    return web.json_response(_mgr(request).view.summary())


async def api_sessions(request: web.Request) -> web.Response:
    """One page of the Remote Access Sessions (paging.py: only the page becomes dicts);
    the LAN-to-LAN ones in full (one per configured tunnel at most)."""
    v = _mgr(request).view
    try:
        q = paging.parse_query(request.query, [k for k, _ in request.query.items()])
    except paging.BadQuery as e:
        return _error(400, str(e))
    page = await _select_in_steps(v, q)
    return web.json_response({"summary": v.summary(),
                              **paging.page_json(page, q, [v.session_json(s)
                                                           for s in page.sessions]),
                              "lan_to_lan": [v.session_json(s) for s in v.sites()]})


async def _select_in_steps(v: ManagerView, q: paging.SessionQuery) -> paging.Page:
    """`paging.select` of the Remote Access Sessions, PAGE_STEP sessions per turn of the
    event loop: with 10,000 the whole scan held IKE ~20-30 ms per page (issue 13)."""
    part = paging.Selection(q)
    for i, sessions in enumerate(v.remote_access_parts(PAGE_STEP)):
        if i:
            await asyncio.sleep(0)  # IKE, the timers and the other requests in between
        part.add(sessions)
    return part.page()


async def api_sessions_export(request: web.Request) -> web.StreamResponse:
    """Every matching Remote Access Session, streamed in chunks (export.py)."""
    m = _mgr(request)
    v = m.view
    try:
        q = export.parse_query(request.query, [k for k, _ in request.query.items()])
    except paging.BadQuery as e:
        return _error(400, str(e))
    slots = request.app[export.SLOTS]
    try:
        slots.take()
    except export.Busy as e:
        return _error(429, str(e), {"Retry-After": "10"})
    resp = export.response(q, time.time())
    try:
        keys = export.ordered_keys(v.remote_access(), q.sessions)
        n = await export.stream(request, resp, q, keys, lambda k: _remote_access(m, k),
                                v.session_json)
        m.log.add("ADMIN", 5, f"sessions export ({q.format}) of {n} sessions to"
                  f" {_source(request)}", user=_ident(request).user)
    except (TimeoutError, ConnectionError) as e:
        m.log.add("ADMIN", 4, f"sessions export to {_source(request)} abandoned: the client"
                  f" {'stopped reading' if isinstance(e, TimeoutError) else 'went away'}",
                  user=_ident(request).user)
        if request.transport is not None:
            request.transport.abort()  # close() would first send what is buffered
    finally:
        slots.give()
    return resp


def _remote_access(m: Manager, key: tuple[bytes, bytes]) -> SessionView | None:
    """The session of `key` if it is still a Remote Access one (None: it ended)."""
    s = m.conc.sessions.get(key)
    return s if s is not None and s.user and not s.lan_to_lan else None


async def api_session(request: web.Request) -> web.Response:
    v = _mgr(request).view
    s = v.find(request.match_info["sid"])
    if s is None:
        return _error(404, "no such session")
    return web.json_response(v.session_json(s))


async def api_session_logout(request: web.Request) -> web.Response:
    v = _mgr(request).view
    s = v.find(request.match_info["sid"])
    if s is None or not v.logout(s, _ident(request).user):
        return _error(404, "no such session")
    return web.json_response({"logged_out": True, "user": s.user})


async def api_session_ping(request: web.Request) -> web.Response:
    v = _mgr(request).view
    s = v.find(request.match_info["sid"])
    if s is None:
        return _error(404, "no such session")
    r = await v.ping(s, _ident(request).user)
    if r is None:
        return _error(409, "the session has no assigned address yet")
    return web.json_response(r.to_json())


async def api_events(request: web.Request) -> web.Response:
    m = _mgr(request)
    try:
        f = parse_filter(request.query)
    except BadRequest as e:
        return _error(400, str(e))
    records = m.log.query(f)
    return web.json_response({"count": len(records), "events": [r.to_json() for r in records],
                              "cursors": eventroutes.cursors(m, f, records)})


async def api_events_stream(request: web.Request) -> web.StreamResponse:
    """Server-sent events: the matching backlog after `after_seq` (or Last-Event-ID), then
    every new or repeated record as it is logged; a comment every 15 s keeps it open."""
    m = _mgr(request)
    try:
        f = parse_filter(request.query)
        last_id = request.headers.get("Last-Event-ID", "")
        if last_id.isdigit():
            f = EventFilter(**{**f.__dict__, "after_seq": int(last_id)})
    except BadRequest as e:
        return _error(400, str(e))
    loop = asyncio.get_running_loop()
    q: asyncio.Queue[Record | None] = asyncio.Queue(STREAM_QUEUE)

    def put(r: Record | None) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            q.put_nowait(r)

    def notify(r: Record) -> None:
        loop.call_soon_threadsafe(put, r)

    unsubscribe = m.log.subscribe(notify)
    m._streams.add(q)
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                       "X-Accel-Buffering": "no"})
    live = EventFilter(**{**f.__dict__, "after_seq": 0, "before_seq": None})
    try:
        await resp.prepare(request)
        backlog = m.log.query(EventFilter(**{**f.__dict__, "limit": min(f.limit,
                                                                        STREAM_BACKLOG)}))
        for r in backlog:
            await resp.write(_sse(r))
        while True:
            try:
                item: Record | None = await asyncio.wait_for(q.get(), 15.0)
            except TimeoutError:
                await resp.write(b": keep-alive\n\n")
                continue
            if item is None:
                break
            if live.matches(item) and m.log.is_kept(item):
                await resp.write(_sse(item))
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        unsubscribe()
        m._streams.discard(q)
    return resp


def _sse(r: Record) -> bytes:
    return f"id: {r.seq}\nevent: record\ndata: {json.dumps(r.to_json())}\n\n".encode()


async def api_natt(request: web.Request) -> web.Response:
    return web.json_response(_mgr(request).view.natt_json())


async def api_natt_put(request: web.Request) -> web.Response:
    m = _mgr(request)
    try:
        body = await _json_body(request)
    except BadRequest as e:
        return _error(400, str(e))
    unknown = sorted(set(body) - {"ipsec_over_natt"})
    if unknown:  # the OpenAPI body has additionalProperties: false
        return _error(400, f"unknown field(s): {', '.join(map(repr, unknown))[:200]}")
    value = body.get("ipsec_over_natt")
    if not isinstance(value, bool):
        return _error(400, "ipsec_over_natt (true or false) is required")
    changed = m.view.set_natt(value, _ident(request).user)
    return web.json_response({**m.view.natt_json(), "changed": changed})


async def api_warnings(request: web.Request) -> web.Response:
    return web.json_response({"warnings": [w.to_json() for w in _mgr(request).view.warnings()]})


async def api_status_history(request: web.Request) -> web.Response:
    """The Status page's hour; ETag = samples taken, so a poll between two samples is
    answered 304 without a body (RFC 9110 section 13.1.2)."""
    ring = _mgr(request).status
    etag = f'"{ring.taken}"'
    if etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers={"ETag": etag})
    return web.Response(body=ring.history_json(), content_type="application/json",
                        headers={"ETag": etag})


async def api_openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi.spec())
