"""Save Log (GET /api/v1/events/save): the filtered event log as a download, streamed.

The range is every record the filter matches (classes, severities, peer,
user, group, text, time range, and the `after_seq`/`before_seq` bounds if
given), up to the newest record at the moment the download starts: records
logged while it runs are not in it, so a download is exactly one range. It is
read CHUNK records at a time by keyset on the sequence number (a chunk is one
indexed query of a few milliseconds), written, and the loop is yielded before
the next: the whole log is never in memory and IKE never waits long for it.

Formats (docs/MANAGER.md):
- `text`: the VPN 3000 Concentrator's event log lines. A head line
  `SEQ MM/DD/YYYY HH:MM:SS.mmm SEV=n CLASS/number RPT=n [peer address]`, then
  `Group [g] User [u]` when the event names either, then the text. vpnhub has
  no per-class event numbers: the number is always 0.
- `csv`: COLUMNS, one header line, quoted by the csv module and safe to open in
  a spreadsheet (export.csv_cell).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from aiohttp import web

from vpnhub.eventlog import EventFilter, Record

# the sessions export's CSV writer and its write with a timeout (a client that stops
# reading must not hold a download forever)
from vpnhub.manager.export import WRITE_TIMEOUT, csv_cell
from vpnhub.manager.export import _csv_rows as csv_rows
from vpnhub.manager.export import _write as write

CHUNK = 500  # records per query and write: a few ms of SQLite and formatting
FORMATS = {"text": ("text/plain", "txt"), "csv": ("text/csv", "csv")}
DEFAULT_FORMAT = "text"
COLUMNS = ("seq", "time", "last", "class", "severity", "repeat", "peer_address", "peer_port",
           "group", "user", "authenticated", "text")


def text_lines(r: Record) -> str:
    """One record as the VPN 3000 writes it to its log (head line, who, text)."""
    stamp = time.localtime(r.time)
    millis = int(r.time * 1000) % 1000
    head = (f"{r.seq} {time.strftime('%m/%d/%Y %H:%M:%S', stamp)}.{millis:03d}"
            f" SEV={r.severity} {r.cls}/0 RPT={r.repeat}")
    head += f" {r.peer_address}" if r.peer_address else ""
    lines = [head]
    if r.group or r.user:
        lines.append(f"Group [{r.group}] User [{r.user}]")
    lines.append(r.text if r.authenticated else f"[unauthenticated] {r.text}")
    return "\n".join(lines) + "\n"


def text_chunk(records: list[Record]) -> bytes:
    return "".join(text_lines(r) for r in records).encode()


def csv_header() -> bytes:
    return csv_rows([list(COLUMNS)])


def csv_chunk(records: list[Record]) -> bytes:
    rows = []
    for r in records:
        d = r.to_json()
        rows.append([csv_cell(d[c]) for c in COLUMNS])
    return csv_rows(rows)


def filename(fmt: str, now: float) -> str:
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"vpnhub-events-{stamp}.{FORMATS[fmt][1]}"


def response(fmt: str, now: float) -> web.StreamResponse:
    return web.StreamResponse(headers={
        "Content-Type": FORMATS[fmt][0] + "; charset=utf-8",
        "Content-Disposition": f'attachment; filename="{filename(fmt, now)}"'})


def bounded(f: EventFilter, newest: int) -> EventFilter:
    """`f` as the download's range: every match (no page limit) up to `newest`."""
    upper = newest + 1 if f.before_seq is None else min(f.before_seq, newest + 1)
    return replace(f, before_seq=upper, oldest_first=True, limit=CHUNK)


async def stream(request: web.Request, resp: web.StreamResponse, fmt: str, f: EventFilter,
                 query: Callable[[EventFilter], list[Record]]) -> int:
    """Write every record of the range `f` (see `bounded`), chunk by chunk; the number
    written. TimeoutError if the client stalls a write."""
    await resp.prepare(request)
    if fmt == "csv":
        await write(resp, csv_header())
    make = csv_chunk if fmt == "csv" else text_chunk
    written = 0
    while True:
        chunk = query(f)
        if chunk:
            await write(resp, make(chunk))
            written += len(chunk)
        if len(chunk) < f.limit:
            break
        f = replace(f, after_seq=chunk[-1].seq)
        await asyncio.sleep(0)  # a write that did not fill the buffer did not yield
    await asyncio.wait_for(resp.write_eof(), WRITE_TIMEOUT)
    return written
