"""The event log: numbered records with class, severity, repeat count, peer, group, user, text.

As on the VPN 3000 Concentrator: every event has a class (IKE, NATT, ...)
and a severity from 1 (fault) to 13 (most detailed). Events up to the
console severity are printed (default 1-3), events up to the keep severity
are kept (default 1-5); both can be set per class ([log.classes] in the
configuration, docs/CONFIG.md). Identical consecutive events collapse into
one record whose repeat count grows (a flood of the same line is one
record). Kept records go to a bounded in-memory ring for the live views and,
with a store, to SQLite: bounded to `store_max_events` records (the oldest
are dropped first) and still there after a restart. Known secrets (group
PSKs, plain-text user passwords) are replaced by <hidden> in every text,
should any code ever put one there. docs/MANAGER.md documents the classes
and severities.

Under attack (issue 11): a record caused by a message that did not
authenticate is marked unauthenticated (it names the packet's source, never a
user); such records have their own share of the ring and of the store
(`UNAUTH_SHARE`), so junk can never push out logins, logouts and
administrators' actions. Per-packet lines are rate-limited
(vpnhub/eventlimit.py) and what was suppressed is summarised and counted
(`suppressed`). Control characters in any field are escaped (vpnhub/text.py)
as the last line of defence against forged lines and terminal escapes.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

# Defined in vpnhub/config/eventclasses.py (config needs them too); re-exported.
from vpnhub.config.eventclasses import CLASSES as CLASSES
from vpnhub.config.eventclasses import MAX_SEVERITY as MAX_SEVERITY
from vpnhub.config.eventclasses import MIN_SEVERITY as MIN_SEVERITY
from vpnhub.config.eventclasses import SEVERITY_MEANING as SEVERITY_MEANING
from vpnhub.eventlimit import EventLimiter, Summary
from vpnhub.text import defuse, has_control

if TYPE_CHECKING:
    from vpnhub.config import Config, LogConfig

# Unauthenticated records may fill at most this share of the ring and the store.
UNAUTH_SHARE = 0.1
_HIDDEN = "<hidden>"
_MIN_SECRET = 4  # shorter strings would mangle ordinary words
_TRIE_MAX = 200  # longest secret searched for by the trie (`_trie_pattern`)


@dataclass(frozen=True)
class Record:
    """One event. `time` is the first occurrence, `last` the latest repeat."""

    seq: int
    time: float
    cls: str
    severity: int
    text: str
    peer: str = ""  # "address:port" of the IKE peer, if any
    group: str = ""
    user: str = ""
    repeat: int = 1
    last: float = 0.0
    authenticated: bool = True  # False: caused by a message that did not authenticate

    @property
    def peer_address(self) -> str:
        return self.peer.rsplit(":", 1)[0] if ":" in self.peer else self.peer

    @property
    def peer_port(self) -> int | None:
        _, _, port = self.peer.rpartition(":")
        return int(port) if port.isdigit() else None

    @classmethod
    def make(cls, seq: int, time: float, event_class: str, severity: int, text: str,
             peer: str, group: str, user: str, repeat: int, last: float,
             authenticated: bool) -> Record:
        """The record `Record(...)` builds, all fields given: a frozen dataclass's
        __init__ sets each of its 11 fields by object.__setattr__ (~1.7 us a record,
        ~0.5 us this way); the event log makes one per event and per repeat, the
        store one per row read (issue 13). Equal, hashed and frozen as any other."""
        rec = object.__new__(cls)
        rec.__dict__.update(seq=seq, time=time, cls=event_class, severity=severity, text=text,
                            peer=peer, group=group, user=user, repeat=repeat, last=last,
                            authenticated=authenticated)
        return rec

    def same_fields(self, cls: str, severity: int, text: str, peer: str, group: str,
                    user: str, authenticated: bool) -> bool:
        """Whether an event with these fields repeats this one (all but time and seq).
        The text first: it tells most lines apart (no tuples built per event)."""
        return (self.text == text and self.cls == cls and self.severity == severity
                and self.peer == peer and self.group == group and self.user == user
                and self.authenticated == authenticated)

    def format(self) -> str:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.time))
        who = f" peer={self.peer}" if self.peer else ""
        who += f" group={self.group}" if self.group else ""
        who += f" user={self.user}" if self.user else ""
        rpt = f" RPT={self.repeat}" if self.repeat > 1 else ""
        rpt += "" if self.authenticated else " UNAUTHENTICATED"
        return f"{self.seq} {stamp} SEV={self.severity} {self.cls}{rpt}{who} {self.text}"

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq, "time": _iso(self.time), "last": _iso(self.last or self.time),
            "class": self.cls, "severity": self.severity, "repeat": self.repeat,
            "peer_address": self.peer_address or None, "peer_port": self.peer_port,
            "group": self.group, "user": self.user, "text": self.text,
            "authenticated": self.authenticated,
        }


def _iso(t: float) -> str:
    """RFC 3339 with the local offset, milliseconds."""
    return datetime.fromtimestamp(t).astimezone().isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class EventFilter:
    """What the Filterable Event Log asks for. Empty fields match everything.

    `peer` is an address ("203.0.113.78") or address and port; `text` a
    case-insensitive substring; `since`/`until` are UNIX times. The result is
    the newest `limit` matches, oldest first; `before_seq` pages back. With
    `oldest_first` it is the oldest `limit` matches instead (the first page, and
    `after_seq` paging forward: keyset paging on the sequence number, issue 15).
    """

    classes: frozenset[str] = frozenset()
    severity_min: int = MIN_SEVERITY
    severity_max: int = MAX_SEVERITY
    peer: str = ""
    user: str = ""
    group: str = ""
    since: float | None = None
    until: float | None = None
    text: str = ""
    after_seq: int = 0
    before_seq: int | None = None
    limit: int = 500
    oldest_first: bool = False

    def matches(self, r: Record) -> bool:
        return (
            (not self.classes or r.cls in self.classes)
            and self.severity_min <= r.severity <= self.severity_max
            and (not self.peer or self.peer in (r.peer, r.peer_address))
            and (not self.user or r.user == self.user)
            and (not self.group or r.group == self.group)
            and (self.since is None or (r.last or r.time) >= self.since)
            and (self.until is None or r.time <= self.until)
            and (not self.text or self.text.lower() in r.text.lower())
            and r.seq > self.after_seq
            and (self.before_seq is None or r.seq < self.before_seq)
        )


# ----------------------------------------------------------------------------- store
_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY, time REAL NOT NULL, last REAL NOT NULL, cls TEXT NOT NULL,
    severity INTEGER NOT NULL, repeat INTEGER NOT NULL, peer TEXT NOT NULL,
    peer_address TEXT NOT NULL, grp TEXT NOT NULL, user TEXT NOT NULL, text TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_time ON events (time);
CREATE INDEX IF NOT EXISTS events_cls ON events (cls, seq);
CREATE TABLE IF NOT EXISTS class_levels (
    cls TEXT PRIMARY KEY, console INTEGER NOT NULL, keep INTEGER NOT NULL);
"""
# class_levels (issue 15): severities changed on the Classes page; they sit on top of
# the configuration's [log.classes], which stay the defaults
# added by issue 11; a store written before it gets the column (all records authenticated)
_AUTH_COLUMN = "ALTER TABLE events ADD COLUMN auth INTEGER NOT NULL DEFAULT 1"
_COLUMNS = "seq, time, last, cls, severity, repeat, peer, peer_address, grp, user, text, auth"
_VALUES = " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_INSERT = f"INSERT INTO events ({_COLUMNS}){_VALUES}"
_REPLACE = f"INSERT OR REPLACE INTO events ({_COLUMNS}){_VALUES}"


class EventStore:
    """SQLite file of kept records, at most `max_events` of them (oldest dropped first).

    Writes are batched: `put()` queues, `flush()` commits (at most every
    `flush_interval` seconds or `batch` records from `put`, and before every
    query). WAL journal: a crash loses no committed record.

    With `start_writer()` (the service's store, issue 13) the commits run on a
    thread of their own: `put()` only queues (a dict store under a lock held
    for that alone) and wakes the writer, so the event loop that logs never
    waits for SQLite (6 us a row, 5-7 rows a login: 2.5 % of the loop's
    samples in a handshake storm; `sqlite3` lets go of the GIL while SQLite
    works, so most of it moves to the other core). Order and completeness are
    unchanged: every flush takes the whole queue under the store's lock, so
    batches are written in the order they were queued, a query still flushes
    first (it reads every record put before it), and `close()` stops the
    writer and writes what is left. Should the writer fall behind (or be gone)
    by `BACKLOG` batches, `put()` writes itself, so the queue stays bounded.
    """

    BACKLOG: Final = 4

    def __init__(self, path: Path, max_events: int, *, batch: int = 256,
                 flush_interval: float = 0.5, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        if max_events < 1:
            raise ValueError("max_events must be at least 1")
        self.path = path
        self.max_events = max_events
        self.batch = batch
        self.flush_interval = flush_interval
        self.clock = clock
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)  # user names, addresses
        os.close(fd)
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(_SCHEMA)
            columns = {r[1] for r in self.db.execute("PRAGMA table_info(events)")}
            if "auth" not in columns:
                self.db.execute(_AUTH_COLUMN)
            self._unauth_index()
            row = self.db.execute("SELECT COUNT(*), COALESCE(MAX(seq), 0),"
                                  " COALESCE(SUM(auth = 0), 0) FROM events").fetchone()
        except sqlite3.DatabaseError:
            self.db.close()
            raise
        self.count, self.max_seq, self.unauth_count = int(row[0]), int(row[1]), int(row[2])
        # junk gets its own share: it can only push out older junk (issue 11)
        self.unauth_max = max(1, int(max_events * UNAUTH_SHARE))
        self._pending: dict[int, Record] = {}
        self._last_flush = clock()
        self._lock = threading.RLock()  # the database, and the order of flushes
        self._queue_lock = threading.Lock()  # `_pending` alone: never held across SQLite
        self._wake = threading.Event()
        self._writer: threading.Thread | None = None
        self._stopping = False
        self.write_errors = 0  # flushes the writer thread lost to an SQLite error
        self.dropped = 0  # records deleted to stay within max_events

    def _unauth_index(self) -> None:
        """The unauthenticated rows by number, for trimming their share (issue 11): a
        partial index of those rows only, so that a login's records (all
        authenticated) do not pay for it (~1 us a row, issue 13). A store made with
        the earlier full (auth, seq) index gets the partial one instead."""
        row = self.db.execute("SELECT sql FROM sqlite_master WHERE type = 'index'"
                              " AND name = 'events_unauth'").fetchone()
        if row is not None and "WHERE" not in str(row[0]).upper():
            self.db.execute("DROP INDEX events_unauth")
        self.db.execute("CREATE INDEX IF NOT EXISTS events_unauth ON events (seq)"
                        " WHERE auth = 0")

    def start_writer(self) -> None:
        """Commit on a thread of our own from now on (see the class)."""
        with self._lock:
            if self._writer is not None or self._stopping:
                return
            self._writer = threading.Thread(target=self._write_loop, name="event-store",
                                            daemon=True)
            self._writer.start()

    def put(self, r: Record) -> None:
        """Queue a new record, or a newer version (repeat) of a queued or stored one."""
        with self._queue_lock:
            self._pending[r.seq] = r
            n = len(self._pending)
            due = n >= self.batch or self.clock() - self._last_flush >= self.flush_interval
        if not due:
            return
        if self._writer is None or n >= self.batch * self.BACKLOG:
            self.flush()
        elif not self._wake.is_set():  # set() takes a lock: once per batch, not per put
            self._wake.set()

    def flush_soon(self) -> None:
        """Have the queue written soon: by the writer thread if there is one, else now."""
        if self._writer is None:
            self.flush()
        else:
            self._wake.set()

    def _write_loop(self) -> None:
        while not self._stopping:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            try:
                self.flush()
            except (sqlite3.Error, ValueError):  # ValueError: closed meanwhile
                self.write_errors += 1

    def flush(self) -> None:
        with self._lock:
            with self._queue_lock:  # the whole queue, in one swap: batches stay in order
                self._last_flush = self.clock()
                pending, self._pending = self._pending, {}
            if not pending:
                return
            # records numbered after the newest stored one are new rows: a plain
            # INSERT (~1 us a row less than INSERT OR REPLACE, issue 13); a repeat of
            # a stored record replaces its row
            fresh = [r for seq, r in pending.items() if seq > self.max_seq]
            again = [_row(r) for seq, r in pending.items() if seq <= self.max_seq]
            new = len(fresh)
            new_unauth = sum(1 for r in fresh if not r.authenticated)
            self.max_seq = max(self.max_seq, *pending)
            with self._transaction():
                if fresh:
                    self._insert_fresh([_row(r) for r in fresh])
                if again:
                    self.db.executemany(_REPLACE, again)
                self.count += new
                self.unauth_count += new_unauth
                self._trim_unauth()
                excess = self.count - self.max_events
                if excess > 0:
                    gone = self.db.execute(
                        "SELECT COALESCE(SUM(auth = 0), 0) FROM (SELECT auth FROM events"
                        " ORDER BY seq LIMIT ?)", (excess,)).fetchone()[0]
                    self.db.execute("DELETE FROM events WHERE seq IN"
                                    " (SELECT seq FROM events ORDER BY seq LIMIT ?)", (excess,))
                    self.count -= excess
                    self.unauth_count -= int(gone)
                    self.dropped += excess

    def _insert_fresh(self, rows: list[tuple[object, ...]]) -> None:
        """New rows; should one exist already (a store another process wrote to
        meanwhile), the batch is written as replacements, never lost."""
        self.db.execute("SAVEPOINT fresh")
        try:
            self.db.executemany(_INSERT, rows)
        except sqlite3.IntegrityError:
            self.db.execute("ROLLBACK TO fresh")
            self.db.executemany(_REPLACE, rows)
        self.db.execute("RELEASE fresh")

    def _trim_unauth(self) -> None:
        excess = self.unauth_count - self.unauth_max
        if excess > 0:
            self.db.execute("DELETE FROM events WHERE seq IN (SELECT seq FROM events"
                            " WHERE auth = 0 ORDER BY seq LIMIT ?)", (excess,))
            self.count -= excess
            self.unauth_count -= excess
            self.dropped += excess

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def query(self, f: EventFilter) -> list[Record]:
        where, args = _where(f)
        # keyset on the primary key: a page costs its own rows, never an OFFSET scan
        order = "ASC" if f.oldest_first else "DESC"
        sql = (f"SELECT {_COLUMNS} FROM events {where} ORDER BY seq {order} LIMIT ?")
        with self._lock:
            self.flush()
            rows = self.db.execute(sql, (*args, max(0, f.limit))).fetchall()
        records = [_record(row) for row in rows]
        return records if f.oldest_first else records[::-1]

    def exists(self, f: EventFilter) -> bool:
        """Whether any record matches `f` (is there a page before or after this one)."""
        where, args = _where(f)
        with self._lock:
            self.flush()
            return self.db.execute(f"SELECT 1 FROM events {where} LIMIT 1",
                                   args).fetchone() is not None

    def clear(self) -> int:
        """Delete every record (Clear Log); how many there were."""
        with self._lock:
            self.flush()
            removed = self.count
            with self._transaction():
                self.db.execute("DELETE FROM events")
            self.count = self.unauth_count = 0
            return removed

    def class_levels(self) -> dict[str, tuple[int, int]]:
        """The (console, keep) severities set on the Classes page, by class."""
        with self._lock:
            rows = self.db.execute("SELECT cls, console, keep FROM class_levels").fetchall()
        return {str(c): (int(con), int(keep)) for c, con, keep in rows}

    def save_class_levels(self, cls: str, console: int, keep: int) -> None:
        with self._lock:
            self.db.execute("INSERT OR REPLACE INTO class_levels (cls, console, keep)"
                            " VALUES (?, ?, ?)", (cls, console, keep))

    def close(self) -> None:
        self._stopping = True
        writer, self._writer = self._writer, None
        if writer is not None:
            self._wake.set()
            writer.join()
        with self._lock:
            with contextlib.suppress(sqlite3.Error):
                self.flush()
            self.db.close()


def _row(r: Record) -> tuple[object, ...]:
    return (r.seq, r.time, r.last or r.time, r.cls, r.severity, r.repeat, r.peer,
            r.peer_address, r.group, r.user, r.text, int(r.authenticated))


def _record(row: tuple[Any, ...]) -> Record:
    seq, t, last, cls, sev, rpt, peer, _addr, grp, user, text, auth = row
    return Record.make(int(seq), float(t), str(cls), int(sev), str(text), str(peer), str(grp),
                       str(user), int(rpt), float(last), bool(auth))


def _where(f: EventFilter) -> tuple[str, list[object]]:
    cond: list[str] = ["severity BETWEEN ? AND ?", "seq > ?"]
    args: list[object] = [f.severity_min, f.severity_max, f.after_seq]
    if f.classes:
        cond.append(f"cls IN ({', '.join('?' * len(f.classes))})")
        args += sorted(f.classes)
    if f.peer:
        cond.append("(peer = ? OR peer_address = ?)")
        args += [f.peer, f.peer]
    if f.user:
        cond.append("user = ?")
        args.append(f.user)
    if f.group:
        cond.append("grp = ?")
        args.append(f.group)
    if f.since is not None:
        cond.append("last >= ?")
        args.append(f.since)
    if f.until is not None:
        cond.append("time <= ?")
        args.append(f.until)
    if f.text:
        escaped = f.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        cond.append("text LIKE ? ESCAPE '\\'")  # case-insensitive for ASCII
        args.append(f"%{escaped}%")
    if f.before_seq is not None:
        cond.append("seq < ?")
        args.append(f.before_seq)
    return "WHERE " + " AND ".join(cond), args


# ----------------------------------------------------------------------------- the log
@dataclass
class _Repeats:
    """Console lines held back while the same event repeats."""

    record: Record | None = None
    held: int = 0


class EventLog:
    """Prints what is at or below the console severity, keeps what is at or below the keep
    severity (per class when configured), in memory and in the optional store."""

    def __init__(self, *, console_severity: int = 3, keep_severity: int = 5, size: int = 2048,
                 out: TextIO | None = None, clock: Callable[[], float] = time.time,
                 store: EventStore | None = None,
                 classes: Mapping[str, tuple[int | None, int | None]] | None = None) -> None:
        self.console_severity = console_severity
        self.keep_severity = keep_severity
        self.size = size
        self.out = out
        self.clock = clock
        self.store = store
        self.classes: dict[str, tuple[int | None, int | None]] = dict(classes or {})
        self.records: deque[Record] = deque(maxlen=size)
        # unauthenticated records: their own share, so junk never pushes out the rest
        self.unauth_records: deque[Record] = deque(maxlen=_unauth_size(size))
        self.limiter = EventLimiter()
        self.seq = store.max_seq if store is not None else 0
        self.counts: Counter[str] = Counter()  # events by class, repeats included (metrics)
        self._last: Record | None = None
        self._repeats = _Repeats()
        self._subscribers: list[Callable[[Record], None]] = []
        # (finder, replacer): the same words, as a trie to search and as a longest-first
        # alternation to replace; one attribute, so that a reload swaps both at once
        self._secrets: tuple[re.Pattern[str], re.Pattern[str]] | None = None
        self._lock = threading.RLock()
        self._levels: dict[str, tuple[int, int]] = {}  # (console, keep) by class, resolved
        # (console, keep) set at run time (Classes page), over `classes` from the config
        self.overrides: dict[str, tuple[int, int]] = {}

    # -- configuration
    @classmethod
    def from_config(cls, config: Config, *, out: TextIO | None = None) -> EventLog:
        log = cls(out=out)
        log.configure(config)
        return log

    def configure(self, config: Config) -> str | None:
        """Apply [log] (levels, ring size, store) and learn the secrets to hide.

        Returns why the store could not be opened (the log then keeps events
        in memory only), or None."""
        c: LogConfig = config.log
        with self._lock:
            self.console_severity, self.keep_severity = c.console_severity, c.keep_severity
            self.classes = {k.name: (k.console_severity, k.keep_severity) for k in c.classes}
            self.classes.update(self.overrides)
            self._levels.clear()
            if c.buffer_events != self.size:
                self.size = c.buffer_events
                self.records = deque(self.records, maxlen=self.size)
                self.unauth_records = deque(self.unauth_records, maxlen=_unauth_size(self.size))
            secrets = [g.psk.reveal_str() for g in config.groups if g.psk is not None]
            secrets += [u.password.reveal_str() for u in config.users if u.password is not None]
            self.hide(secrets)
            if c.store is None or self.store is not None:
                return None
            try:
                store = EventStore(c.store, c.store_max_events)
            except (OSError, sqlite3.Error) as e:
                return f"event log store {c.store} unavailable ({e}): events kept in memory only"
            self.attach(store)
            store.start_writer()  # the loop that logs never waits for SQLite (issue 13)
        return None

    def attach(self, store: EventStore) -> None:
        """Use `store`; numbering goes on after its newest record. Records kept so far in
        memory are renumbered after it and written to it."""
        with self._lock:
            self.store = store
            base = store.max_seq
            old = sorted([*self.records, *self.unauth_records], key=lambda r: r.seq)
            self.records.clear()
            self.unauth_records.clear()
            for r in old:
                moved = replace(r, seq=base + r.seq)
                self._ring(moved).append(moved)
                store.put(moved)
            self.seq = base + self.seq
            self._last = None
            self.overrides.update(store.class_levels())
            self.classes.update(self.overrides)
            self._levels.clear()

    def set_levels(self, cls: str, console: int, keep: int) -> tuple[int, int]:
        """Change a class's (console, keep) severities from the next event on (the
        Classes page); kept in the store, so they outlive a restart. Returns the old
        pair. The caller logs the change (who, old -> new)."""
        with self._lock:
            old = self.levels(cls)
            self.overrides[cls] = (console, keep)
            self.classes[cls] = (console, keep)
            self._levels.clear()
            if self.store is not None:
                self.store.save_class_levels(cls, console, keep)
        return old

    def clear(self, text: Callable[[int], str], user: str) -> Record:
        """Clear Log: delete every kept record, then log `text(removed)` as the one
        record left (ADMIN, severity 3, kept whatever the ADMIN class keeps: a clear
        must never leave an empty log that hides who emptied it)."""
        with self._lock:
            self._flush_console()
            removed = len(self.records) + len(self.unauth_records)
            if self.store is not None:
                removed = self.store.clear()
            self.records.clear()
            self.unauth_records.clear()
            self._last = None
            console = self.levels("ADMIN")[0]
            return self._add("ADMIN", 3, text(removed), "", "", user, True, console,
                             MAX_SEVERITY)

    def hide(self, secrets: Iterable[str]) -> None:
        words = sorted({s for s in secrets if len(s) >= _MIN_SECRET}, key=len, reverse=True)
        if not words:
            self._secrets = None
            return
        replacer = re.compile("|".join(map(re.escape, words)))
        # the trie nests a group per branching letter: for a very long secret (a PSK
        # of hundreds of characters) the plain alternation finds it as well
        finder = re.compile(_trie_pattern(words)) if len(words[0]) <= _TRIE_MAX else replacer
        self._secrets = (finder, replacer)

    def max_severity(self) -> int:
        """The most detailed severity any class prints or keeps (nothing above matters)."""
        levels = [self.console_severity, self.keep_severity]
        for console, keep in self.classes.values():
            levels += [v for v in (console, keep) if v is not None]
        return max(levels)

    def levels(self, cls: str) -> tuple[int, int]:
        """(console, keep) severities of a class."""
        lv = self._levels.get(cls)
        if lv is None:
            console, keep = self.classes.get(cls, (None, None))
            lv = (self.console_severity if console is None else console,
                  self.keep_severity if keep is None else keep)
            self._levels[cls] = lv
        return lv

    # -- adding
    def add(self, cls: str, severity: int, text: str, *, peer: str = "", group: str = "",
            user: str = "", authenticated: bool = True, limit: str | None = None
            ) -> Record | None:
        """Log one event. `authenticated=False`: caused by a message that did not
        authenticate (`peer` is then the packet's source). `limit`: a per-packet line,
        rate-limited per (class, `limit` as the reason, source address); unauthenticated
        lines are always rate-limited. Returns None if not kept, printed or admitted."""
        console, keep = self.levels(cls)
        if severity > console and severity > keep:
            return None
        limited = limit is not None or not authenticated
        if limited and not self._admit(cls, severity, limit or "", peer, authenticated):
            return None
        return self._add(cls, severity, text, peer, group, user, authenticated, console, keep)

    def _add(self, cls: str, severity: int, text: str, peer: str, group: str, user: str,
             authenticated: bool, console: int, keep: int) -> Record:
        # the boundary escapes peer strings (vpnhub/text.py); this is the last defence.
        # One scan of the four fields together, and one for the secrets in text and
        # user, find nothing in a routine line (about seven per login, issue 13); only
        # a hit pays for the per-field work. A secret cannot hide across the joins: a
        # match in either field is a match in the joined string.
        if has_control(f"{text}{peer}{group}{user}"):
            text, peer, group, user = defuse(text), defuse(peer), defuse(group), defuse(user)
        secrets = self._secrets
        if secrets is not None and secrets[0].search(f"{text}\n{user}") is not None:
            replacer = secrets[1]
            text = replacer.sub(_HIDDEN, text)
            user = replacer.sub(_HIDDEN, user)
        with self._lock:
            now = self.clock()
            last = self._last
            self.counts[cls] += 1
            # compared field by field, and a new record built once with its seq
            # (Record.make): a login logs about seven lines, dataclasses.replace and
            # the frozen __init__ per line showed in the handshake profile (issue 13)
            if last is not None and last.same_fields(cls, severity, text, peer, group, user,
                                                     authenticated):
                rec = Record.make(last.seq, last.time, cls, severity, text, peer, group, user,
                                  last.repeat + 1, now, authenticated)
                self._repeated(rec, console, keep)
            else:
                self._flush_console()
                self.seq += 1
                rec = Record.make(self.seq, now, cls, severity, text, peer, group, user, 1, now,
                                  authenticated)
                self._new(rec, console, keep)
            self._last = rec
            # replaced, never changed in place (subscribe): this list is the one to call
            subscribers = self._subscribers
        for notify in subscribers:
            notify(rec)
        return rec

    def _admit(self, cls: str, severity: int, reason: str, peer: str,
               authenticated: bool) -> bool:
        source = peer.rsplit(":", 1)[0] if ":" in peer else peer
        with self._lock:
            ok, due = self.limiter.admit((cls, reason, source), severity, authenticated,
                                         self.clock())
        self._log_summaries(due)
        return ok

    def _log_summaries(self, due: list[Summary]) -> None:
        for s in due:  # already within the budgets: not limited again
            console, keep = self.levels(s.cls)
            self._add(s.cls, s.severity, s.text, s.peer, "", "", s.authenticated, console, keep)

    def tick(self) -> None:
        """Log the summaries of rate-limit windows that have ended (call every second
        or so; a flood that stopped gets its summary without a further event)."""
        with self._lock:
            due = self.limiter.tick(self.clock())
        self._log_summaries(due)

    @property
    def suppressed(self) -> Counter[str]:
        """Events suppressed by the rate limits, by class (for metrics)."""
        return self.limiter.suppressed

    def _ring(self, rec: Record) -> deque[Record]:
        return self.records if rec.authenticated else self.unauth_records

    def _new(self, rec: Record, console: int, keep: int) -> None:
        if rec.severity <= keep:
            self._ring(rec).append(rec)
            if self.store is not None:
                self.store.put(rec)
        if rec.severity <= console:
            self._print(rec.format())

    def _repeated(self, rec: Record, console: int, keep: int) -> None:
        if rec.severity <= keep:
            ring = self._ring(rec)
            if ring and ring[-1].seq == rec.seq:
                ring[-1] = rec
            if self.store is not None:
                self.store.put(rec)
        if rec.severity <= console:
            self._repeats.record = rec
            self._repeats.held += 1

    def _flush_console(self) -> None:
        r = self._repeats
        if r.record is None:
            return  # nothing held: no new holder per record (issue 13)
        if r.held:
            self._print(f"{r.record.seq} (repeated {r.held} more time(s), last at"
                        f" {time.strftime('%H:%M:%S', time.localtime(r.record.last))})")
        self._repeats = _Repeats()

    def _print(self, line: str) -> None:
        out = self.out if self.out is not None else sys.stdout
        with contextlib.suppress(OSError, ValueError):  # a closed console stops nothing
            print(line, file=out, flush=True)

    # -- reading
    def query(self, f: EventFilter) -> list[Record]:
        """Kept records matching `f` (the store if there is one, else memory)."""
        if self.store is not None:
            try:
                return self.store.query(f)
            except sqlite3.Error:
                pass
        with self._lock:
            found = [r for r in self.records if f.matches(r)]
            found += [r for r in self.unauth_records if f.matches(r)]
        found.sort(key=lambda r: r.seq)
        if f.limit <= 0:
            return []
        return found[:f.limit] if f.oldest_first else found[-f.limit:]

    def exists(self, f: EventFilter) -> bool:
        """Whether any kept record matches `f` (the pager's "is there more")."""
        if self.store is not None:
            try:
                return self.store.exists(f)
            except sqlite3.Error:
                pass
        with self._lock:
            return any(f.matches(r) for r in (*self.records, *self.unauth_records))

    def subscribe(self, notify: Callable[[Record], None]) -> Callable[[], None]:
        """Call `notify(record)` for every new or repeated record; returns the unsubscriber.
        `notify` runs in the thread that logs: it must be quick and must not log."""
        with self._lock:  # a new list: _add calls the one it read, without a copy
            self._subscribers = [*self._subscribers, notify]

        def unsubscribe() -> None:
            with self._lock, contextlib.suppress(ValueError):
                remaining = list(self._subscribers)
                remaining.remove(notify)
                self._subscribers = remaining
        return unsubscribe

    def is_kept(self, r: Record) -> bool:
        return r.severity <= self.levels(r.cls)[1]

    # -- life cycle
    def flush(self) -> None:
        with self._lock:
            self._flush_console()
            if self.store is not None:
                with contextlib.suppress(sqlite3.Error):
                    self.store.flush()

    def flush_soon(self) -> None:
        """As `flush`, but with a writer thread (`EventStore.start_writer`) the store's
        commit is only woken, not waited for: what a periodic tick on the event
        loop calls, so that it never runs SQLite there (issue 13)."""
        with self._lock:
            self._flush_console()
            if self.store is not None:
                with contextlib.suppress(sqlite3.Error):
                    self.store.flush_soon()

    def close(self) -> None:
        with self._lock:
            self._flush_console()
            if self.store is not None:
                self.store.close()
                self.store = None


def _trie_pattern(words: Iterable[str]) -> str:
    """A regular expression matching exactly `words`, as a trie: `re` tries a plain
    alternation word by word at every position of the text, so each line cost
    ~50 us with 1,000 users' plain-text passwords; the trie costs ~1 us whatever
    their number (issue 13). Used only to find whether a line holds a secret;
    the replacing is done by the plain longest-first alternation, as before."""
    trie: dict[str, dict[str, Any]] = {}
    for w in words:
        node = trie
        for ch in w:
            node = node.setdefault(ch, {})
        node[""] = {}  # a word ends here

    def build(node: dict[str, Any]) -> str:
        alts = [re.escape(ch) + build(sub) for ch, sub in sorted(node.items()) if ch]
        if not alts:
            return ""
        if len(alts) == 1 and "" not in node:
            return alts[0]
        return f"(?:{'|'.join(alts)})" + ("?" if "" in node else "")

    return build(trie)


def _unauth_size(size: int) -> int:
    return max(1, int(size * UNAUTH_SHARE))


def class_levels(log: EventLog) -> Mapping[str, tuple[int, int]]:
    """(console, keep) of every known class and of every class seen so far."""
    names = list(CLASSES) + sorted(set(log.counts) - set(CLASSES))
    return {name: log.levels(name) for name in names}
