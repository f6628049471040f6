"""This concentrator as a member of the cluster: the PostgreSQL side (docs/CLUSTER.md).

`ClusterMember` keeps the shared state of issue 17 in PostgreSQL from its own
threads; the asyncio IKE loop never waits on the database:

- a worker thread (`vpnhub-cluster`) owns one connection: it migrates the
  schema and registers at start, writes this member's load and heartbeat
  every `[cluster] heartbeat` seconds and reads every member's (the snapshot
  `redirect_target` answers from), mirrors the session store into the
  directory (events queued by the loop, written in batches), records address
  leases, claims address blocks, reclaims the blocks, leases and directory
  rows of dead members, and answers the admin's cluster-wide reads;
- a listener thread (`vpnhub-cluster-listen`) owns a second connection that
  LISTENs on this member's channel: a `logout` another member NOTIFYs runs on
  the loop (`loop.call_soon_threadsafe`) through the admin's logout.

Losing the database does not touch the tunnels: `database_ok` goes False, the
outage is logged once, new addresses are refused (vpnhub/cluster/pool.py), the
thread keeps its mirror of the directory and the leases up to date and retries
with backoff; when the database is back the member registers again, asserts
its blocks and rewrites its directory rows and leases from the mirror.

What the loop calls is O(1) and never blocks: the store's events, the pool's
`lease` / `unlease` / `want_block` go into a deque the thread drains.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import ipaddress
import json
import logging
import re
import subprocess
import threading
import time
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, Protocol

from vpnhub import __version__
from vpnhub.cluster.balance import MemberLoad, choose_member
from vpnhub.cluster.migrate import SchemaError
from vpnhub.cluster.pool import ClusterAddressPool, session_id
from vpnhub.session.events import SessionChanged, SessionEvent, SessionStarted
from vpnhub.text import printable

if TYPE_CHECKING:
    from vpnhub.cluster.db import ClusterDb, LeaseRow, MemberRow, SessionRow
    from vpnhub.config import ClusterConfig, GroupConfig
    from vpnhub.session.model import SessionKey, SessionView
    from vpnhub.session.store import SessionStore

__all__ = ["DIRECTORY_FIELDS", "ClusterMember", "address_is_local", "directory_row"]

log = logging.getLogger("vpnhub.cluster.member")

# A SessionChanged reaches the directory only if it changed one of these: the
# data-plane counters (every 10 s for every session) do not, so the directory's
# byte counts are as of a session's last real change.
DIRECTORY_FIELDS = frozenset({
    "user", "group", "assigned_ip", "public_ip", "public_port", "children", "nat_t",
    "peer_behind_nat", "diagnosis", "client", "lan_to_lan", "transport", "authenticated",
    "udp_port", "ike"})
START_WAIT = 10.0  # start() waits this long for the database before serving without it
BACKOFF_MIN, BACKOFF_MAX = 0.5, 5.0  # reconnection delays (doubling)
LISTEN_POLL = 0.5  # the listener looks at `stop` this often
NO_BLOCK_RETRY = 10.0  # a group whose pool had no free block is asked again after this
_HEX_ID = re.compile(r"^[0-9a-f]{32}$")


class LogSink(Protocol):
    """The event log's `add` (vpnhub.eventlog.EventLog)."""

    def add(self, cls: str, severity: int, text: str, *, peer: str = "", group: str = "",
            user: str = "", authenticated: bool = True, limit: str | None = None) -> Any: ...


class ClusterMember:
    """One member: threads, the in-memory snapshot, the pools' lease sink, a Balancer."""

    def __init__(self, config: ClusterConfig, store: SessionStore, *, max_sessions: int,
                 log: LogSink, version: str = __version__,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.name = config.member
        self.store = store
        self.max_sessions = max_sessions
        self.log = log
        self.version = version
        self.clock = clock
        self._dsn = config.dsn.reveal_str()  # never logged
        # -- read by the loop, written by the worker thread (whole objects replaced)
        self.database_ok = False
        self.last_error = ""
        self.outages = 0
        self.lease_conflicts = 0
        self.commands_received = 0
        self.commands_refused = 0
        self._rows: list[MemberRow] = []
        self._vip = False
        self._snapshot_gen = 0
        self._connected_at: float | None = None
        self._down_since: float | None = None
        # -- the loop's own
        self.pools: dict[str, ClusterAddressPool] = {}
        self._bonus: dict[str, int] = {}  # clients redirected since the last snapshot
        self._bonus_gen = 0
        # hooks set by the service, called on the loop
        self.on_block: Callable[[str, ipaddress.IPv4Network, bool], None] | None = None
        self.on_logout: Callable[[SessionKey, str], bool] | None = None
        self.on_disconnect: Callable[[SessionKey, str], bool] | None = None
        # -- between them
        self._jobs: collections.deque[tuple[Any, ...]] = collections.deque()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._fatal: SchemaError | None = None
        self._goodbye = True
        self._loop: asyncio.AbstractEventLoop | None = None
        self._threads: list[threading.Thread] = []
        self._unsubscribe: Callable[[], None] | None = None
        # -- the worker thread's own
        self._db: ClusterDb | None = None
        self._dir: dict[str, SessionRow] = {}  # our directory rows, by session id
        self._leases: dict[ipaddress.IPv4Address, LeaseRow] = {}
        self._blocks: dict[ipaddress.IPv4Network, str] = {}  # our blocks -> group
        self._no_block_until: dict[str, float] = {}
        self._next_beat = 0.0

    # ================================================================ the loop's side
    def pool_for_group(self, group: GroupConfig) -> ClusterAddressPool:
        """The group's pool, drawing from this member's blocks (create before start)."""
        pool = ClusterAddressPool(group, self, block_prefix=self.config.pool_block)
        self.pools[group.name] = pool
        return pool

    def start(self, loop: asyncio.AbstractEventLoop, wait: float = START_WAIT) -> bool:
        """Threads started; waits (blocking: call it off the loop, or before serving)
        until the database is joined or `wait` s passed; True if joined. SchemaError
        if the database's schema is newer than this vpnhub."""
        self._loop = loop
        self._unsubscribe = self.store.subscribe(self._on_session_event, fields=DIRECTORY_FIELDS)
        for target, name in ((self._work, "vpnhub-cluster"),
                             (self._listen, "vpnhub-cluster-listen")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        self._ready.wait(wait)
        if self._fatal is not None:
            raise self._fatal
        return self.database_ok

    def stop(self, timeout: float = 5.0, *, goodbye: bool = True) -> None:
        """Blocking (off the loop): the queue flushed, our directory rows and leases
        deleted, this member marked gone, the threads ended. `goodbye=False` leaves
        the database as a crash would (tests)."""
        self._goodbye = goodbye
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._stopping.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout)
        self._threads = []

    # -- what the pools call (ClusterAddressPool's LeaseSink)
    def lease(self, group: str, address: ipaddress.IPv4Address, key: Hashable,
              user: str) -> None:
        self._put(("lease", address, group, session_id(key), user))

    def unlease(self, group: str, address: ipaddress.IPv4Address) -> None:
        self._put(("lease", address, group, None, ""))

    def want_block(self, group: str) -> None:
        self._put(("block", group))

    def _put(self, job: tuple[Any, ...]) -> None:
        self._jobs.append(job)  # thread-safe; the thread collapses them per key
        self._wake.set()

    def _on_session_event(self, event: SessionEvent) -> None:
        """A store event (on the loop): queued as it is, converted in the thread."""
        self._put(("session", event))

    # -- Balancer (vpnhub/cluster/balance.py), on the loop, from memory
    def redirect_target(self) -> ipaddress.IPv4Address | None:
        """Where a new client on the virtual address should go, or None to keep it;
        a client sent somewhere counts there until the next snapshot (so a burst
        of clients between two heartbeats is not all sent to one member)."""
        if not self.config.load_balancing or not self.database_ok:
            return None
        target = choose_member(self.members(), self.name)
        if target is None:
            return None
        self._bonus[target.name] = self._bonus.get(target.name, 0) + 1
        return target.public_address

    def members(self) -> list[MemberLoad]:
        """Every member as the last snapshot saw it (this one with its live count)."""
        if self._bonus_gen != self._snapshot_gen:
            self._bonus.clear()
            self._bonus_gen = self._snapshot_gen
        timeout = self.config.member_timeout
        out = []
        for r in self._rows:
            if r.name == self.name:
                out.append(MemberLoad(r.name, r.public_address, self._load(), r.max_sessions,
                                      self.database_ok, self._vip))
            else:
                out.append(MemberLoad(r.name, r.public_address,
                                      r.sessions + self._bonus.get(r.name, 0), r.max_sessions,
                                      r.state == "up" and r.age < timeout, r.vip))
        return out

    def _load(self) -> int:
        return self.store.active()

    def holds_virtual_address(self) -> bool:
        """Whether this member holds the virtual cluster address (the VRRP master);
        as the thread last checked (every heartbeat)."""
        return self._vip

    def status(self) -> dict[str, Any]:
        """The admin `cluster` answer (from memory, O(members + blocks))."""
        timeout = self.config.member_timeout
        loads = {m.name: m for m in self.members()}
        members = []
        for r in self._rows:
            m = loads[r.name]
            members.append({"name": r.name, "public_address": str(r.public_address),
                            "sessions": m.sessions, "max_sessions": r.max_sessions,
                            "load": round(m.load, 4), "alive": m.alive, "state": r.state,
                            "heartbeat_age": round(r.age, 1), "started": r.started,
                            "version": r.version, "me": r.name == self.name,
                            "holds_virtual_address": (self._vip if r.name == self.name
                                                      else r.vip and m.alive),
                            "dead": r.name != self.name and r.age >= timeout})
        now = self.clock()
        return {
            "member": self.name, "database_ok": self.database_ok,
            "last_error": self.last_error, "virtual_address": str(self.config.virtual_address),
            "holds_virtual_address": self._vip, "load_balancing": self.config.load_balancing,
            "heartbeat": self.config.heartbeat, "member_timeout": timeout,
            "connected_for": None if self._connected_at is None
            else round(now - self._connected_at, 1),
            "down_for": None if self._down_since is None else round(now - self._down_since, 1),
            "outages": self.outages, "lease_conflicts": self.lease_conflicts,
            "commands_received": self.commands_received,
            "commands_refused": self.commands_refused, "queued": len(self._jobs),
            "members": members,
            "pools": {name: {"blocks": [str(b) for b in p.blocks], "size": p.size,
                             "in_use": p.in_use, "available": p.available}
                      for name, p in self.pools.items()},
        }

    # -- admin requests answered by the thread (the loop awaits the future)
    def list_sessions(self, limit: int, cursor: str | None
                      ) -> concurrent.futures.Future[dict[str, Any]]:
        """A page of the cluster-wide session directory (vpnhub sessions --cluster)."""
        def read(db: ClusterDb) -> dict[str, Any]:
            try:
                reply = db.list_sessions(limit, cursor)
            except ValueError as e:  # a cursor that is not ours
                return {"error": str(e)}
            reply["members"] = [m["name"] for m in self.status()["members"]]
            return reply
        return self._call(read)

    def send_logout(self, member: str, sid: str, by: str
                    ) -> concurrent.futures.Future[dict[str, Any]]:
        """Ask `member` to log session `sid` out (NOTIFY on its channel)."""
        def send(db: ClusterDb) -> dict[str, Any]:
            if not db.session_member(member, sid):
                return {"error": f"no session {sid} on member {member!r}"}
            db.notify(member, {"cmd": "logout", "id": sid, "by": by, "from": self.name})
            return {"logged_out": 1, "member": member, "id": sid, "delivered": "notify"}
        return self._call(send)

    def _call(self, fn: Callable[[ClusterDb], dict[str, Any]]
              ) -> concurrent.futures.Future[dict[str, Any]]:
        fut: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()
        self._put(("call", fn, fut))
        return fut

    # -- thread -> loop
    def _to_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(fn, *args)

    def _log(self, severity: int, text: str) -> None:
        self._to_loop(self.log.add, "CLUSTER", severity, text)

    def _block_added(self, group: str, block: ipaddress.IPv4Network) -> None:
        pool = self.pools.get(group)
        if pool is not None:
            pool.add_block(block)
        if self.on_block is not None:
            self.on_block(group, block, True)

    def _block_answer(self, group: str) -> None:
        pool = self.pools.get(group)
        if pool is not None:
            pool.block_answered()

    def _block_lost(self, group: str, block: ipaddress.IPv4Network, holder: str) -> None:
        """A block of ours was reclaimed and granted to `holder` during our outage:
        its sessions end (their addresses may be given by the other member now)."""
        pool = self.pools.get(group)
        keys = pool.remove_block(block) if pool is not None else []
        self.log.add("CLUSTER", 2, f"address block {block} of group {group} was reclaimed"
                     f" while this member could not reach the cluster database and is now"
                     f" {holder}'s: ending its {len(keys)} session(s) so that no address is"
                     " used twice")
        for key in keys:
            if self.on_disconnect is not None:
                self.on_disconnect(key, "address block reclaimed by the cluster")  # type: ignore[arg-type]
        if self.on_block is not None:
            self.on_block(group, block, False)

    def _run_logout(self, key: SessionKey, by: str) -> None:
        if self.on_logout is None or not self.on_logout(key, by):
            self.log.add("CLUSTER", 4, f"logout of session {session_id(key)} asked by {by}:"
                         " no such session here")

    # ============================================================ the worker thread
    def _work(self) -> None:
        backoff = BACKOFF_MIN
        next_vip = 0.0
        while not self._stopping.is_set():
            if self.clock() >= next_vip:  # with or without the database
                self._vip = address_is_local(self.config.virtual_address)
                next_vip = self.clock() + self.config.heartbeat
            if self._db is None:
                if not self._join():
                    self._drain_offline()
                    self._wake.wait(backoff)
                    self._wake.clear()
                    backoff = min(backoff * 2, BACKOFF_MAX)
                    continue
                backoff = BACKOFF_MIN
            try:
                self._turn()
            except Exception as e:  # a connection error, or anything the server refused
                self._lost(e)
        self._finish()

    def _join(self) -> bool:
        """Connect, migrate, register, assert our blocks, rewrite our rows (at start
        and after an outage). False if the database is not there (logged once)."""
        from vpnhub.cluster.db import ClusterDb, connect

        try:
            conn = connect(self._dsn)
        except Exception as e:
            self._failed(e)
            return False
        db = ClusterDb(conn, self.name)
        try:
            db.migrate()
            db.register(self.config.public_address, self._load(), self.max_sessions,
                        self.version, self._vip)
            self._drain_offline()  # what happened until now is in the mirror
            self._sync_blocks(db)
            db.resync_sessions(list(self._dir.values()))
            self._record_refused(db.resync_leases(list(self._leases.values())))
            self._snapshot(db)
            for group in self.pools:  # a claim cut by the outage may be asked again
                self._to_loop(self._block_answer, group)
        except SchemaError as e:
            self._fatal = e
            self._failed(e, severity=1)
            self._ready.set()
            with contextlib.suppress(Exception):
                conn.close()
            return False
        except Exception as e:
            self._failed(e)
            with contextlib.suppress(Exception):
                conn.close()
            return False
        self._db = db
        now = self.clock()
        self._connected_at = now
        self._next_beat = now + self.config.heartbeat
        if self._down_since is not None:
            self._log(3, f"cluster database reachable again after {now - self._down_since:.0f}"
                      f" s: registered, {len(self._dir)} session(s) and {len(self._leases)}"
                      " lease(s) written back; new logins accepted")
        else:
            blocks = ", ".join(str(b) for b in sorted(self._blocks)) or "none"
            self._log(4, f"cluster member {self.name} joined: {len(self._rows)} member(s),"
                      f" address blocks {blocks}")
        self._down_since = None
        self.database_ok = True
        self.last_error = ""
        self._ready.set()
        return True

    def _failed(self, e: BaseException, severity: int = 2) -> None:
        """The database could not be reached (or used): logged at the first failure."""
        self.last_error = self._error_text(e)
        self.database_ok = False
        if self._down_since is None:
            self._down_since = self.clock()
            self.outages += 1
            self._log(severity, f"cluster database unreachable ({self.last_error}):"
                      " established tunnels kept, new logins refused until it returns")

    @staticmethod
    def _error_text(e: BaseException) -> str:
        """The error for the log: libpq's complaint about a malformed DSN quotes words
        of it (a password among them), so that one is not repeated."""
        import psycopg

        if isinstance(e, psycopg.ProgrammingError) and "connection" in str(e):
            return "the [cluster] dsn is not a valid libpq connection string or URI"
        return _one_line(e)

    def _lost(self, e: BaseException) -> None:
        db, self._db = self._db, None
        self._connected_at = None
        if db is not None:
            with contextlib.suppress(Exception):
                db.conn.close()
        self._failed(e)

    def _turn(self) -> None:
        assert self._db is not None
        self._wake.wait(max(0.0, self._next_beat - self.clock()))
        self._wake.clear()
        self._drain(self._db)
        if self.clock() >= self._next_beat:
            self._beat(self._db)
            self._next_beat = self.clock() + self.config.heartbeat

    def _beat(self, db: ClusterDb) -> None:
        db.heartbeat(self.config.public_address, self._load(), self.max_sessions,
                     self.version, self._vip)
        connected = self._connected_at
        timeout = self.config.member_timeout
        # Only a member that watched the whole silence may call another dead: one
        # just back from its own outage saw nobody's heartbeat and would reclaim all.
        if connected is not None and self.clock() - connected > timeout:
            for r in db.reclaim_dead(timeout):
                self._log(3, f"cluster member {r.member} dead (no heartbeat for"
                          f" {timeout:g} s): reclaimed {r.blocks} address block(s),"
                          f" {r.leases} lease(s), {r.sessions} directory row(s)")
        self._snapshot(db)

    def _snapshot(self, db: ClusterDb) -> None:
        self._rows = db.members()
        self._snapshot_gen += 1

    # -- the queue
    def _take_jobs(self) -> tuple[dict[str, SessionRow | None],
                                  dict[ipaddress.IPv4Address, LeaseRow | None],
                                  set[str], list[tuple[Any, ...]]]:
        """Every queued job applied to the mirrors; what changed, collapsed per key."""
        from vpnhub.cluster.db import LeaseRow

        events: dict[str, SessionEvent] = {}  # the last event of each session
        leases: dict[ipaddress.IPv4Address, LeaseRow | None] = {}
        blocks: set[str] = set()
        calls: list[tuple[Any, ...]] = []
        while self._jobs:
            job = self._jobs.popleft()
            kind = job[0]
            if kind == "session":
                events[session_id(job[1].session.key)] = job[1]
            elif kind == "lease":
                _, address, group, sid, user = job
                if sid is None:
                    self._leases.pop(address, None)
                    leases[address] = None
                else:
                    lease = LeaseRow(address, group, sid, user)
                    self._leases[address] = lease
                    leases[address] = lease
            elif kind == "block":
                blocks.add(job[1])
            else:
                calls.append(job)
        sessions: dict[str, SessionRow | None] = {}
        for sid, event in events.items():  # a login's five events make one row
            self._session_job(sid, event, sessions)
        return sessions, leases, blocks, calls

    def _session_job(self, sid: str, event: SessionEvent,
                     out: dict[str, SessionRow | None]) -> None:
        s = event.session
        row = None
        if isinstance(event, SessionStarted | SessionChanged) and (s.user or s.lan_to_lan):
            row = directory_row(s)
        if row is None:
            if sid not in self._dir:
                return  # never listed (no user yet): nothing to delete
            del self._dir[sid]
        else:
            self._dir[sid] = row
        out[sid] = row

    def _drain(self, db: ClusterDb) -> None:
        sessions, leases, blocks, calls = self._take_jobs()
        try:
            self._write(db, sessions, leases, blocks)
        except Exception as e:  # the connection is lost: no request is left unanswered
            for _, _, fut in calls:
                fut.set_result({"error": f"cluster database: {_one_line(e)}"})
            for group in blocks:
                self._to_loop(self._block_answer, group)
            raise
        for _, fn, fut in calls:
            try:
                fut.set_result(fn(db))
            except Exception as e:
                fut.set_result({"error": f"cluster database: {_one_line(e)}"})
                raise

    def _write(self, db: ClusterDb, sessions: dict[str, SessionRow | None],
               leases: dict[ipaddress.IPv4Address, LeaseRow | None], blocks: set[str]) -> None:
        for group in blocks:  # first: logins may be waiting for the addresses
            self._claim(db, group)
        gone = [sid for sid, row in sessions.items() if row is None]
        if gone:
            db.drop_sessions(gone)
        db.put_sessions([row for row in sessions.values() if row is not None])
        freed = [a for a, lease in leases.items() if lease is None]
        if freed:
            db.drop_leases(freed)
        self._record_refused(db.put_leases([x for x in leases.values() if x is not None]))

    def _drain_offline(self) -> None:
        """Without the database: the mirrors follow; what needs it is refused."""
        _, _, blocks, calls = self._take_jobs()
        for group in blocks:
            self._to_loop(self._block_answer, group)
        for _, _, fut in calls:
            fut.set_result({"error": f"cluster database unreachable ({self.last_error})"})

    def _record_refused(self, refused: list[LeaseRow]) -> None:
        for lease in refused:
            self.lease_conflicts += 1
            self._log(2, f"lease of {lease.address} (group {lease.group}) for session"
                      f" {lease.session_id} refused by the cluster database: the address is"
                      " not in this member's blocks any more")

    # -- blocks
    def _pool_of(self, group: str) -> ClusterAddressPool | None:
        return self.pools.get(group)

    def _claim(self, db: ClusterDb, group: str) -> None:
        pool = self._pool_of(group)
        if pool is None or self.clock() < self._no_block_until.get(group, 0.0):
            self._to_loop(self._block_answer, group)
            return
        block = db.claim_block(group, pool.network, self.config.pool_block)
        if block is None:
            self._no_block_until[group] = self.clock() + NO_BLOCK_RETRY
            self._log(3, f"group {group}: no free address block left in {pool.network}"
                      f" (/{self.config.pool_block} blocks, every one granted to a member)")
            self._to_loop(self._block_answer, group)
            return
        self._blocks[block] = group
        self._to_loop(self._block_added, group, block)
        self._log(5, f"group {group}: address block {block} granted to this member")

    def _sync_blocks(self, db: ClusterDb) -> None:
        """Our blocks as the database has them: ours kept, lost ones given up, the
        database's adopted (a restart within member_timeout), one per group at least."""
        in_db = {b.block: b.group for b in db.blocks(self.name)}
        for block, group in list(self._blocks.items()):
            if block in in_db or db.assert_block(group, block):
                continue
            del self._blocks[block]
            holder = next((b.member for b in db.blocks() if b.block.overlaps(block)), "another")
            for address in [a for a in self._leases if a in block]:
                del self._leases[address]
            self._to_loop(self._block_lost, group, block, holder)
        for block, group in in_db.items():
            if block in self._blocks:
                continue
            if self._pool_of(group) is None or not block.subnet_of(self.pools[group].network):
                db.release_block(block)  # a group no longer configured here
                continue
            self._blocks[block] = group
            self._to_loop(self._block_added, group, block)
        for group in self.pools:
            if group not in self._blocks.values():
                self._claim(db, group)

    def _finish(self) -> None:
        db, self._db = self._db, None
        self.database_ok = False
        if db is None:
            return
        if not self._goodbye:
            db.conn.close()
            return
        try:
            self._drain(db)
            db.goodbye()
        except Exception as e:
            log.warning("cluster: leaving the database failed: %s", _one_line(e))
        finally:
            with contextlib.suppress(Exception):
                db.conn.close()

    # ============================================================ the listener thread
    def _listen(self) -> None:
        from psycopg import sql

        from vpnhub.cluster.db import channel_of, connect

        backoff = BACKOFF_MIN
        while not self._stopping.is_set():
            try:
                with connect(self._dsn) as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(
                        sql.Identifier(channel_of(self.name))))
                    backoff = BACKOFF_MIN
                    while not self._stopping.is_set():
                        for n in conn.notifies(timeout=LISTEN_POLL):
                            self._on_command(n.payload)
            except Exception:  # the worker thread logs the outage
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)

    def _on_command(self, payload: str) -> None:
        """A command NOTIFYed to this member: checked like any input (the channel's
        name is no secret), then run on the loop."""
        try:
            cmd = json.loads(payload)
            sid, by = cmd["id"], cmd.get("by", "?")
            ok = cmd.get("cmd") == "logout" and isinstance(sid, str) and \
                _HEX_ID.match(sid) is not None and isinstance(by, str)
        except (ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            self.commands_refused += 1
            self._log(3, "cluster command refused: not a well-formed logout")
            return
        self.commands_received += 1
        key = (bytes.fromhex(sid[:16]), bytes.fromhex(sid[16:]))
        origin = printable(str(cmd.get("from", "?")), 64)
        self._to_loop(self._run_logout, key, f"{printable(by, 64)} on member {origin}")


def directory_row(s: SessionView) -> SessionRow:
    """A session's row in the directory (built in the thread from a frozen snapshot)."""
    from vpnhub.cluster.db import SessionRow

    d = s.as_dict(time.time())
    d.pop("duration", None)  # computed when read
    return SessionRow(id=session_id(s.key), user=s.user, group=s.group, public_ip=s.public_ip,
                      public_port=s.public_port,
                      assigned_ip=str(s.assigned_ip) if s.assigned_ip else None,
                      protocol=s.protocol, transport=s.transport, lan_to_lan=s.lan_to_lan,
                      login_time=s.login_time, detail=json.dumps(d))


def address_is_local(address: ipaddress.IPv4Address) -> bool:
    """Whether an interface of this network namespace has `address` (`ip -o -4 addr`:
    a bind test would say yes to any address with net.ipv4.ip_nonlocal_bind, which
    VRRP set-ups often turn on)."""
    try:
        out = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True,
                             text=True, timeout=2, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    needle = f" inet {address}/"
    return needle in out


def _one_line(e: BaseException) -> str:
    """An error as one short line (psycopg's messages run over several)."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text[:300]

