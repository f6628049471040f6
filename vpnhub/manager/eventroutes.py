"""The event log's Save and Clear, and the event classes: handlers and routes (issue 15).

app.build_app adds these with `add_routes`. Clear Log and class changes are
for the "admin" role only ([[admin.user]] role, docs/CONFIG.md): a "monitor"
is refused with 403 and the refusal is logged. docs/MANAGER.md describes the
pages, docs/openapi.yaml the API.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from aiohttp import web

from vpnhub.eventlog import CLASSES, MAX_SEVERITY, EventFilter, EventLog, Record, class_levels
from vpnhub.manager import eventpages, logsave
from vpnhub.manager.auth import AdminAuth, Identity
from vpnhub.manager.eventfilter import BadRequest, parse_filter
from vpnhub.manager.export import SLOTS, Busy

API = "/api/v1"


class Host(Protocol):
    """What these handlers use of app.Manager."""

    log: EventLog
    auth: AdminAuth


@dataclass(frozen=True)
class Hooks:
    """app.py's request helpers, handed over in the app (app.py imports this module, so
    this one cannot import it)."""

    manager: Callable[[web.Request], Host]
    ident: Callable[[web.Request], Identity]
    page: Callable[..., web.Response]
    csrf: Callable[[web.Request], str]
    error: Callable[..., web.Response]
    source: Callable[[web.Request], str]
    json_body: Callable[[web.Request], Awaitable[dict[str, Any]]]


HOOKS = web.AppKey("event-hooks", Hooks)


def _h(request: web.Request) -> Hooks:
    return request.app[HOOKS]


def _mgr(request: web.Request) -> Host:
    return _h(request).manager(request)


def _ident(request: web.Request) -> Identity:
    return _h(request).ident(request)


def _page(request: web.Request, title: str, body: str, active: str,
          status: int = 200) -> web.Response:
    return _h(request).page(request, title, body, active, status)


def _csrf(request: web.Request) -> str:
    return _h(request).csrf(request)


def _error(request: web.Request, status: int, message: str,
           headers: Mapping[str, str] | None = None) -> web.Response:
    return _h(request).error(status, message, headers)


def _source(request: web.Request) -> str:
    return _h(request).source(request)


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get("/events/clear", clear_form)
    r.add_post("/events/clear", clear_submit)
    r.add_get("/config/events/classes", classes_form)
    r.add_post("/config/events/classes", classes_submit)
    r.add_get(f"{API}/events/save", api_events_save)
    r.add_post(f"{API}/events/clear", api_events_clear)
    r.add_get(f"{API}/events/classes", api_classes)
    r.add_put(f"{API}/events/classes/{{name}}", api_class_put)


# ---------------------------------------------------------------------------- paging
def navigation(m: Host, f: EventFilter, records: list[Record],
               query: Mapping[str, str | list[str]], admin: bool) -> str:
    """The pager and the Save / Clear links under the Filterable Event Log."""
    older, newer = navigation_flags(m, f, records)
    return eventpages.pager(query, records, older, newer) + eventpages.tools(query, admin)


def cursors(m: Host, f: EventFilter, records: list[Record]) -> dict[str, Any]:
    """The API's cursors: the query parameters of the previous and next pages (null when
    there is none), to add to the same filter."""
    nav = navigation_flags(m, f, records)
    prev = {"before_seq": records[0].seq} if nav[0] else None
    nxt = {"after_seq": records[-1].seq, "order": "oldest"} if nav[1] else None
    return {"previous": prev, "next": nxt}


def navigation_flags(m: Host, f: EventFilter, records: list[Record]) -> tuple[bool, bool]:
    """Whether records older and newer than this page match the filter (two indexed
    existence queries; no count of the whole range)."""
    if not records:
        return False, False
    return (m.log.exists(replace(f, after_seq=0, before_seq=records[0].seq, limit=1)),
            m.log.exists(replace(f, after_seq=records[-1].seq, before_seq=None, limit=1)))


# ---------------------------------------------------------------------------- save
async def api_events_save(request: web.Request) -> web.StreamResponse:
    """Save Log: every record of the filtered range, streamed (logsave.py)."""
    m = _mgr(request)
    fmt = request.query.get("format", logsave.DEFAULT_FORMAT)
    try:
        if len(request.query.getall("format", [])) > 1:
            raise BadRequest("parameter(s) given more than once: format")
        if fmt not in logsave.FORMATS:
            raise BadRequest(f"format must be one of {', '.join(logsave.FORMATS)}")
        paged = sorted({"limit", "order"} & set(request.query))
        if paged:
            raise BadRequest(f"{', '.join(paged)} cannot be used with Save Log (it is every"
                             " matching record)")
        f = parse_filter(request.query, extra=("format",))
    except BadRequest as e:
        return _error(request, 400, str(e))
    slots = request.app[SLOTS]  # shared with the sessions export: at most two at once
    try:
        slots.take()
    except Busy as e:
        return _error(request, 429, str(e), {"Retry-After": "10"})
    user = _ident(request).user
    resp = logsave.response(fmt, time.time())
    try:
        m.log.flush()
        n = await logsave.stream(request, resp, fmt, logsave.bounded(f, m.log.seq),
                                 m.log.query)
        m.log.add("ADMIN", 5, f"event log saved ({fmt}, {n} records) to {_source(request)}",
                  user=user)
    except (TimeoutError, ConnectionError) as e:
        m.log.add("ADMIN", 4, f"event log save to {_source(request)} abandoned: the client"
                  f" {'stopped reading' if isinstance(e, TimeoutError) else 'went away'}",
                  user=user)
        if request.transport is not None:
            request.transport.abort()
    finally:
        slots.give()
    return resp


# ---------------------------------------------------------------------------- clear
def _refused(request: web.Request, what: str, api: bool) -> web.Response | None:
    """None for an administrator; else the 403 answer (and the refusal is logged)."""
    m, ident = _mgr(request), _ident(request)
    if m.auth.is_admin(ident.user):
        return None
    m.log.add("ADMIN", 3, f"refused {what} to {ident.user!r} from {_source(request)}: the"
              " monitor role only reads", user=ident.user)
    message = f"{what} needs the admin role; {ident.user!r} is a monitor"
    if api:
        return _error(request, 403, message)
    return _page(request, "Forbidden", f"<h1>Forbidden</h1><p>{message}.</p>", "events", 403)


def _clear(request: web.Request) -> Record:
    m, ident = _mgr(request), _ident(request)
    source = _source(request)
    return m.log.clear(lambda n: f"event log cleared by {ident.user} from {source}:"
                       f" {n} record(s) removed", ident.user)


async def clear_form(request: web.Request) -> web.Response:
    refused = _refused(request, "Clear Log", api=False)
    if refused is not None:
        return refused
    m = _mgr(request)
    count = "empty" if not m.log.exists(EventFilter(limit=1)) else "every kept record"
    return _page(request, "Clear Log", eventpages.clear_page(_csrf(request), count), "events")


async def clear_submit(request: web.Request) -> web.Response:
    refused = _refused(request, "Clear Log", api=False)
    if refused is not None:
        return refused
    form = await request.post()
    if form.get("confirm") != "yes":
        return _page(request, "Clear Log", eventpages.clear_page(_csrf(request), "not yet"),
                     "events", 400)
    _clear(request)
    raise web.HTTPSeeOther("/events")


async def api_events_clear(request: web.Request) -> web.Response:
    refused = _refused(request, "Clear Log", api=True)
    if refused is not None:
        return refused
    try:
        body = await _h(request).json_body(request)
    except BadRequest as e:
        return _error(request, 400, str(e))
    unknown = sorted(set(body) - {"confirm"})
    if unknown:
        return _error(request, 400, f"unknown field(s): {', '.join(map(repr, unknown))[:200]}")
    if body.get("confirm") is not True:
        return _error(request, 400, 'Clear Log deletes every record: send {"confirm": true}')
    rec = _clear(request)
    return web.json_response({"cleared": True, "record": rec.to_json()})


# ---------------------------------------------------------------------------- classes
def _classes_json(m: Host) -> list[dict[str, Any]]:
    return [{"class": name, "console_severity": console, "keep_severity": keep,
             "set_at_run_time": name in m.log.overrides, "covers": CLASSES.get(name, "")}
            for name, (console, keep) in class_levels(m.log).items()]


def _change(request: web.Request, cls: str, console: int, keep: int) -> bool:
    """Apply one class's levels; log who changed what (old -> new). False: no change."""
    m, ident = _mgr(request), _ident(request)
    old = m.log.levels(cls)
    if old == (console, keep):
        return False
    m.log.set_levels(cls, console, keep)
    r = eventpages.severity_range
    m.log.add("ADMIN", 4, f"event class {cls} changed by {ident.user} from {_source(request)}:"
              f" kept {r(old[1])} -> {r(keep)}, console {r(old[0])} -> {r(console)}",
              user=ident.user)
    return True


async def classes_form(request: web.Request) -> web.Response:
    m = _mgr(request)
    changed = request.query.get("changed", "")
    message = f"Applied: {changed} class(es) changed." if changed.isdigit() else ""
    admin = m.auth.is_admin(_ident(request).user)
    body = eventpages.classes_page(class_levels(m.log), m.log.overrides, _csrf(request),
                                   admin, message)
    return _page(request, "Event Classes", body, "classes")


async def classes_submit(request: web.Request) -> web.Response:
    refused = _refused(request, "changing event classes", api=False)
    if refused is not None:
        return refused
    m = _mgr(request)
    form = await request.post()
    changes = []
    try:
        for name in class_levels(m.log):
            console = _level(form.get(f"console.{name}"), f"console.{name}")
            keep = _level(form.get(f"keep.{name}"), f"keep.{name}")
            if console is not None and keep is not None:
                changes.append((name, console, keep))
    except BadRequest as e:
        body = f"<h1>Event Classes</h1><p class=\"error\" role=\"alert\">{e}</p>"
        return _page(request, "Event Classes", body, "classes", 400)
    n = sum(_change(request, *c) for c in changes)
    raise web.HTTPSeeOther(f"/config/events/classes?changed={n}")


def _level(value: object, key: str) -> int | None:
    if value is None:
        return None
    text = str(value)
    if not (text.isascii() and text.isdigit() and 0 <= int(text) <= MAX_SEVERITY):
        raise BadRequest(f"{key} must be a severity from 0 (none) to {MAX_SEVERITY}")
    return int(text)


async def api_classes(request: web.Request) -> web.Response:
    return web.json_response({"classes": _classes_json(_mgr(request))})


async def api_class_put(request: web.Request) -> web.Response:
    refused = _refused(request, "changing event classes", api=True)
    if refused is not None:
        return refused
    name = request.match_info["name"].upper()
    if name not in CLASSES:
        return _error(request, 404, "no such event class")
    try:
        body = await _h(request).json_body(request)
        unknown = sorted(set(body) - {"console_severity", "keep_severity"})
        if unknown:
            raise BadRequest(f"unknown field(s): {', '.join(map(repr, unknown))[:200]}")
        console, keep = (body.get(k) for k in ("console_severity", "keep_severity"))
        for key, v in (("console_severity", console), ("keep_severity", keep)):
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= MAX_SEVERITY:
                raise BadRequest(f"{key} (0 to {MAX_SEVERITY}) is required")
    except BadRequest as e:
        return _error(request, 400, str(e))
    assert isinstance(console, int) and isinstance(keep, int)
    changed = _change(request, name, console, keep)
    [entry] = [c for c in _classes_json(_mgr(request)) if c["class"] == name]
    return web.json_response({**entry, "changed": changed})

