"""Every Remote Access Session as a download (GET /api/v1/sessions/export), streamed.

With 10,000 sessions the whole export is seconds of `session_json` on the
concentrator's own event loop (bench/export.py): made at once it would stall
IKE, DPD and the data plane for all that time. So the export keeps only the
ordered list of session keys (a sort of cheap keys, as paging.py does), then
makes the rows in chunks of CHUNK sessions, writes each chunk and yields to
the loop before the next. A session that ended meanwhile is skipped (its key
no longer finds it); one that logged in meanwhile is not in this export.

A slow or stalled client must not hold an export forever: every write has
WRITE_TIMEOUT, and at most MAX_EXPORTS run at once (more answer 429).

Formats (docs/MANAGER.md): `jsonl` (the default) is one JSON object per line,
the very object a listing entry is; `csv` is the fixed COLUMNS, one header
line, quoted by the csv module and safe to open in a spreadsheet.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from vpnhub.manager import paging
from vpnhub.session.model import SessionKey, SessionView

CHUNK = 100  # sessions per write: about 10 ms of session_json (bench/export.py)
WRITE_TIMEOUT = 30.0  # seconds one chunk may wait for the client to take it
MAX_EXPORTS = 2  # at once: each one is a loop's worth of work while it runs
FORMATS = {"jsonl": "application/x-ndjson", "csv": "text/csv"}
DEFAULT_FORMAT = "jsonl"
# The CSV columns, in order: keys of the listing's session object (session_json).
COLUMNS = ("id", "user", "group", "public_ip", "public_port", "assigned_ip", "protocol",
           "login_time", "duration", "bytes_tx", "bytes_rx", "packets_tx", "packets_rx",
           "encryption", "client", "diagnosis", "auth")
# A cell starting with one of these is a formula to Excel, LibreOffice and Google
# Sheets (OWASP "CSV Injection"): a quote in front makes it text. Tab and CR too,
# which some of them strip before looking.
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


class Busy(Exception):
    """MAX_EXPORTS are running already."""


class Slots:
    """How many exports run now (one per manager, in its app)."""

    def __init__(self, limit: int = MAX_EXPORTS) -> None:
        self.limit, self.running = limit, 0

    def take(self) -> None:
        if self.running >= self.limit:
            raise Busy(f"{self.limit} exports are running already; try again when one"
                       " has finished")
        self.running += 1

    def give(self) -> None:
        self.running -= 1


SLOTS = web.AppKey("exports", Slots)


@dataclass(frozen=True)
class ExportQuery:
    format: str
    sessions: paging.SessionQuery


def parse_query(q: Mapping[str, str], keys: Iterable[str]) -> ExportQuery:
    """The listing's filter and sort parameters (paging.parse_query checks them, and
    refuses unknown and repeated ones) plus `format`; no limit and no cursor: an
    export is every matching session."""
    names = list(keys)
    paged = sorted({"limit", "cursor"} & set(names))
    if paged:
        raise paging.BadQuery(f"{', '.join(paged)} cannot be used with an export (it is"
                              " every matching session)")
    fmt = q.get("format", DEFAULT_FORMAT)
    if names.count("format") > 1:
        raise paging.BadQuery("parameter(s) given more than once: format")
    if fmt not in FORMATS:
        raise paging.BadQuery(f"format must be one of {', '.join(FORMATS)}")
    rest = {k: v for k, v in q.items() if k != "format"}
    return ExportQuery(fmt, paging.parse_query(rest, [n for n in names if n != "format"]))


def ordered_keys(sessions: Iterable[SessionView], q: paging.SessionQuery) -> list[SessionKey]:
    """The keys of the matching sessions in the listing's order: (sort key, session
    key), as paging.select orders a page, so an export lists what walking every page
    at that instant would."""
    key = paging.SORTS[q.sort]
    tests = q.tests()
    rows = [(key(s), s.key) for s in sessions if all(t(s) for t in tests)]
    rows.sort(reverse=q.order == "desc")
    return [k for _, k in rows]


def filename(fmt: str, now: float) -> str:
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"vpnhub-sessions-{stamp}.{fmt}"


def csv_cell(value: Any) -> str:
    """One CSV cell: None empty, text that a spreadsheet would run as a formula
    quoted with a leading apostrophe (the csv module does the CSV quoting)."""
    if value is None:
        return ""
    text = str(value)
    return "'" + text if text.startswith(_FORMULA) else text


def csv_header() -> bytes:
    return _csv_rows([list(COLUMNS)])


def csv_chunk(dicts: list[dict[str, Any]]) -> bytes:
    return _csv_rows([[csv_cell(d.get(c)) for c in COLUMNS] for d in dicts])


def _csv_rows(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)  # RFC 4180 ends lines CRLF
    return out.getvalue().encode()


def jsonl_chunk(dicts: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(d, separators=(",", ":")) + "\n" for d in dicts).encode()


def response(q: ExportQuery, now: float) -> web.StreamResponse:
    """The answer's head: a download named after the UTC time of the export."""
    return web.StreamResponse(headers={
        "Content-Type": FORMATS[q.format] + "; charset=utf-8",
        "Content-Disposition": f'attachment; filename="{filename(q.format, now)}"'})


async def stream(request: web.Request, resp: web.StreamResponse, q: ExportQuery,
                 keys: list[SessionKey], find: Callable[[SessionKey], SessionView | None],
                 as_json: Callable[[SessionView], dict[str, Any]]) -> int:
    """Write the export of `keys` (found again chunk by chunk) to the client; the
    number of sessions written. TimeoutError if the client stalls a write."""
    await resp.prepare(request)
    if q.format == "csv":
        await _write(resp, csv_header())
    make = csv_chunk if q.format == "csv" else jsonl_chunk
    written = 0
    for i in range(0, len(keys), CHUNK):
        found = [find(k) for k in keys[i:i + CHUNK]]
        dicts = [as_json(s) for s in found if s is not None]  # None: it ended meanwhile
        if dicts:
            await _write(resp, make(dicts))
            written += len(dicts)
        await asyncio.sleep(0)  # a write that did not fill the buffer did not yield
    await asyncio.wait_for(resp.write_eof(), WRITE_TIMEOUT)
    return written


async def _write(resp: web.StreamResponse, data: bytes) -> None:
    # write() waits for the transport's buffer to drain: a client that stops
    # reading would hold this export (and its slot) forever
    await asyncio.wait_for(resp.write(data), WRITE_TIMEOUT)
