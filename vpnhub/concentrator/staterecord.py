"""The concentrator's state record: what a `kill -9` must not make it forget.

A small JSON file next to the event store (``events.db`` ->
``events.state.json``) holding this run (pid, start, last heartbeat, clean
or not), the Session Summary's peak and cumulative counters, the active
sessions (user, group, public address and port, pool address, login time)
and the pool addresses still held for the clients of an earlier crash.

Why on disk at all: the VPN 3000, the ASA and strongSwan keep no session
state across a crash (their clients notice by DPD and log in again), but a
DHCP server, and Windows RRAS handing out addresses from it, keeps its
leases on disk precisely so that an address a client still uses is not
given to another after a restart (RFC 2131 section 4.3.1/4.4.5: a server
must not reuse an address whose lease may still be valid). vpnhub does the
same for its pools, and also records what was lost.

Cheap: written on a session change at most every MIN_INTERVAL seconds and
otherwise every HEARTBEAT seconds (never per packet); atomic: a temporary
file is written, flushed to disk, then renamed over the old one, so a
reader sees the old record or the new one, never half of one.

Off the event loop (issue 13): with 10,000 sessions one write cost ~0.1 s,
all of it on the IKE loop. Now the loop only snapshots the sessions as
`SessionRecord` named tuples (plain tuples: ~1 us each, where the frozen
dataclass cost ~5 us), and the concentrator's `StateKeeper` serialises and
writes on a thread of its own (`start_background`). The JSON is built one
session at a time (`encode_state`), so the thread gives the GIL back between
rows and never holds the loop for one long `json.dumps` call.

The snapshot itself still cost the loop 18-36 ms every heartbeat at 10,000
sessions (a named tuple and a `str(IPv4Address)` per session: the latter alone
~10 ms), the largest single stall of an idle loop. So the loop now takes only
`RawSession` tuples (one `operator.attrgetter` call per session, in C: ~6 ms
for 10,000) and the writer's thread makes the `SessionRecord`s from them
(`session_records`); the values are the same immutable objects, so the record
is the same as when the loop built it (`StateKeeper.write(..., raw=...)`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import math
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple, TypeAlias

__all__ = ["HEARTBEAT", "MIN_INTERVAL", "HeldAddress", "RawSession", "RunRecord",
           "SessionRecord", "StateError", "StateKeeper", "encode_state", "read_state",
           "session_records", "session_rows", "state_path", "write_state"]

VERSION = 1
HEARTBEAT = 10.0  # the "last seen" time of a crashed run is this accurate
MIN_INTERVAL = 2.0  # session changes are coalesced: a login storm costs one write per 2 s
MAX_BYTES = 64 * 1024 * 1024  # a state record bigger than this is not ours


class StateError(Exception):
    """The state record exists but cannot be used (corrupt, partial, foreign)."""


class SessionRecord(NamedTuple):
    """One active session (a named tuple: the loop builds 10,000 of them per write)."""

    user: str
    group: str
    public_ip: str
    public_port: int
    assigned_ip: str | None
    login_time: float


# A session as the loop snapshots it: SessionRecord's fields, the address still an
# ipaddress object (its text is made on the writer's thread, `session_records`).
RawSession: TypeAlias = tuple[str, str, str, int, object, float]


@dataclass(frozen=True)
class HeldAddress:
    """A pool address kept from new logins until `until` (wall clock), except for `user`."""

    group: str
    address: str
    user: str
    until: float


@dataclass(frozen=True)
class RunRecord:
    pid: int
    started: float
    heartbeat: float
    clean: bool
    peak: int = 0
    cumulative: int = 0
    sessions: tuple[SessionRecord, ...] = ()
    held: tuple[HeldAddress, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        # by hand: dataclasses.asdict deep-copies, 5x slower with 10,000 sessions
        return {"version": VERSION, "pid": self.pid, "started": self.started,
                "heartbeat": self.heartbeat, "clean": self.clean, "peak": self.peak,
                "cumulative": self.cumulative,
                "sessions": [s._asdict() for s in self.sessions],
                "held": [h.__dict__ for h in self.held]}

    @classmethod
    def from_json(cls, data: object) -> RunRecord:
        """Validate every field: the file is read after a crash, trust nothing in it."""
        if not isinstance(data, dict):
            raise StateError("not a JSON object")
        if data.get("version") != VERSION:
            raise StateError(f"unknown version {data.get('version')!r} (expected {VERSION})")
        try:
            sessions = tuple(SessionRecord(
                user=_str(s, "user"), group=_str(s, "group"), public_ip=_ip(s, "public_ip"),
                public_port=_int(s, "public_port"),
                assigned_ip=None if s.get("assigned_ip") is None else _ip(s, "assigned_ip"),
                login_time=_num(s, "login_time")) for s in _list(data, "sessions"))
            held = tuple(HeldAddress(group=_str(h, "group"), address=_ip(h, "address"),
                                     user=_str(h, "user"), until=_num(h, "until"))
                         for h in _list(data, "held"))
            return cls(pid=_int(data, "pid"), started=_num(data, "started"),
                       heartbeat=_num(data, "heartbeat"), clean=_bool(data, "clean"),
                       peak=_int(data, "peak"), cumulative=_int(data, "cumulative"),
                       sessions=sessions, held=held)
        except (AttributeError, TypeError) as e:
            raise StateError(f"malformed entry: {e}") from None


def _field(d: object, key: str) -> object:
    if not isinstance(d, dict) or key not in d:
        raise StateError(f"missing field {key!r}")
    return d[key]


def _str(d: object, key: str) -> str:
    v = _field(d, key)
    if not isinstance(v, str):
        raise StateError(f"field {key!r} is not a string")
    return v


def _ip(d: object, key: str) -> str:
    v = _str(d, key)
    try:
        return str(ipaddress.IPv4Address(v))
    except ValueError:
        raise StateError(f"field {key!r} is not an IPv4 address") from None


def _int(d: object, key: str) -> int:
    v = _field(d, key)
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise StateError(f"field {key!r} is not a non-negative integer")
    return v


def _num(d: object, key: str) -> float:
    v = _field(d, key)
    if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
        raise StateError(f"field {key!r} is not a number")
    return float(v)


def _bool(d: object, key: str) -> bool:
    v = _field(d, key)
    if not isinstance(v, bool):
        raise StateError(f"field {key!r} is not true/false")
    return v


def _list(d: object, key: str) -> list[Any]:
    v = _field(d, key)
    if not isinstance(v, list):
        raise StateError(f"field {key!r} is not a list")
    return v


def state_path(store: Path) -> Path:
    """The state record of the event store `store`: ``events.db`` -> ``events.state.json``."""
    return store.with_name(store.stem + ".state.json")


def read_state(path: Path) -> RunRecord | None:
    """The record at `path`; None if there is none (first start). Raises StateError."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise StateError(f"cannot read: {e.strerror or e}") from None
    if not raw:
        raise StateError("empty file")
    if len(raw) > MAX_BYTES:
        raise StateError(f"larger than {MAX_BYTES} bytes")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise StateError(f"not valid JSON (truncated?): {e}") from None
    return RunRecord.from_json(data)


def session_records(raw: list[RawSession]) -> tuple[SessionRecord, ...]:
    """The records of `raw` sessions, exactly as the loop built them before (an address
    that is None or empty is recorded as None)."""
    return tuple([SessionRecord(user, group, ip, port, str(addr) if addr else None, login)
                  for user, group, ip, port, addr, login in raw])


def session_rows(sessions: tuple[SessionRecord, ...]) -> str:
    """The sessions' JSON objects, comma-separated, built one session at a time: many
    short C calls, not one that holds the GIL (and so the event loop) for the list."""
    return ",".join([json.dumps(s._asdict(), separators=(",", ":")) for s in sessions])


def encode_state(record: RunRecord, rows: str | None = None) -> bytes:
    """The record as compact JSON, the same document as `json.dumps(record.to_json())`;
    `rows`: `session_rows(record.sessions)` if the caller has it already."""
    head = record.to_json()
    head["sessions"] = []
    text = json.dumps(head, separators=(",", ":"))
    if rows is None:
        rows = session_rows(record.sessions)
    # the key is in the text exactly once: a string value cannot hold an unescaped '"'
    return text.replace('"sessions":[]', '"sessions":[' + rows + "]", 1).encode()


def write_state(path: Path, record: RunRecord, rows: str | None = None) -> None:
    """Atomically replace the record: temp file, fsync, rename (POSIX rename is atomic)."""
    tmp = path.with_name(path.name + ".tmp")
    data = encode_state(record, rows)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # user names, addresses
    try:
        os.write(fd, data)
        os.fsync(fd)  # else a power cut after the rename may leave an empty file
    finally:
        os.close(fd)
    os.replace(tmp, path)


class StateKeeper:
    """When to write the record; remembers the last write error so it is logged once."""

    def __init__(self, path: Path, pid: int, started: float) -> None:
        self.path = path
        self.pid = pid
        self.started = started
        self.dirty = True
        self.changes = 0
        self._last = -math.inf
        self.error = ""  # the last write error ("" when the last write worked)
        self._writer: ThreadPoolExecutor | None = None  # start_background()
        self._running: Future[str] | None = None  # the background write under way
        # the sessions of the last write and their JSON: a heartbeat of an idle run
        # writes the same rows again (with 10,000 sessions encoding them cost ~60 ms
        # every HEARTBEAT s; comparing the tuples ~0.3 ms), issue 13
        self._rows: tuple[tuple[SessionRecord, ...], str] | None = None
        # the same for a write given `raw` sessions: those, their records, their JSON
        self._raw: tuple[list[RawSession], tuple[SessionRecord, ...], str] | None = None

    def changed(self) -> None:
        self.dirty = True
        self.changes += 1  # a write taken in steps asks whether one came meanwhile

    def due(self, now: float) -> bool:
        """`now` is monotonic. A change waits at most MIN_INTERVAL, a quiet run HEARTBEAT."""
        since = now - self._last
        return since >= HEARTBEAT or (self.dirty and since >= MIN_INTERVAL)

    def start_background(self) -> None:
        """From now on serialise and write on a thread of its own (the concentrator's
        event loop must not stall for ~0.1 s per write at 10,000 sessions)."""
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="state-record")

    def stop_background(self) -> str | None:
        """Wait for the write under way and write on the caller's thread again (the
        clean shutdown's record must be the last one on disk). Returns its error."""
        if self._writer is None:
            return None
        self._writer.shutdown(wait=True)
        self._writer = None
        return self._collect()

    def write(self, record: RunRecord, now: float,
              raw: list[RawSession] | None = None) -> str | None:
        """Write; returns a new error message to log (None if fine or already logged).
        `raw`: the sessions, in place of `record.sessions` (made into records on the
        writer's thread: `session_records`).

        In the background: an error of an earlier write is returned by a later call;
        while a write is still under way this record is skipped and the next `due`
        tries again (at most MIN_INTERVAL later) with a fresher snapshot."""
        self._last = now
        self.dirty = False
        if self._writer is None:
            return self._report(self._write_now(record, raw))
        msg = self._collect()
        if self._running is not None:
            self.dirty = True
            return msg
        self._running = self._writer.submit(self._write_now, record, raw)
        return msg

    def _collect(self) -> str | None:
        """The result of a finished background write, reported once."""
        fut = self._running
        if fut is None or not fut.done():
            return None
        self._running = None
        return self._report(fut.result())

    def _write_now(self, record: RunRecord, raw: list[RawSession] | None = None) -> str:
        if raw is not None:
            record, rows = self._from_raw(record, raw)
        else:
            last = self._rows
            if last is not None and last[0] == record.sessions:
                rows = last[1]
            else:
                rows = session_rows(record.sessions)
                self._rows = (record.sessions, rows)
        try:
            write_state(self.path, record, rows)
        except OSError as e:
            with contextlib.suppress(OSError):
                self.path.with_name(self.path.name + ".tmp").unlink()
            return f"cannot write the state record {self.path}: {e.strerror or e}"
        return ""

    def _from_raw(self, record: RunRecord, raw: list[RawSession]) -> tuple[RunRecord, str]:
        """`record` with the sessions `raw`, and their JSON rows (those of the last
        write again if the sessions are the same: an idle run's heartbeat)."""
        last = self._raw
        if last is not None and last[0] == raw:
            return replace(record, sessions=last[1]), last[2]
        sessions = session_records(raw)
        rows = session_rows(sessions)
        self._raw = (raw, sessions, rows)
        return replace(record, sessions=sessions), rows

    def _report(self, msg: str) -> str | None:
        if not msg:
            self.error = ""
            return None
        if msg == self.error:
            return None
        self.error = msg
        return msg
