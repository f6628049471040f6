"""The cluster's SQL: one `ClusterDb` per connection, used by the member's thread only.

Synchronous psycopg 3 on an autocommit connection; every method is one
statement or one transaction. Nothing here runs on the IKE loop
(vpnhub/cluster/member.py owns the threads). Times that decide liveness are
the database's (`now()`): members' clocks need not agree.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from vpnhub.cluster.migrate import migrate

__all__ = ["BlockRow", "ClusterDb", "LeaseRow", "MemberRow", "SessionRow", "channel_of",
           "connect"]

CONNECT_TIMEOUT = 3  # seconds: an unreachable database is found out quickly
# Bounds on a statement and on unacknowledged TCP data: a database that vanishes
# without a reset (a cut cable) must not hang the member's thread for minutes.
STATEMENT_TIMEOUT_MS = 10_000
TCP_USER_TIMEOUT_MS = 8_000
# A crashed member's row stays (shown dead) this long after its blocks and leases
# are reclaimed; a member that stopped cleanly ('gone') goes at once.
DEAD_MEMBER_KEPT = 86_400.0


def connect(dsn: str) -> psycopg.Connection:
    """An autocommit connection with the timeouts above (libpq keys override the DSN's)."""
    return psycopg.connect(dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT,
                           keepalives=1, keepalives_idle=5, keepalives_interval=2,
                           keepalives_count=2, tcp_user_timeout=TCP_USER_TIMEOUT_MS,
                           options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
                           application_name="vpnhub")


def channel_of(member: str) -> str:
    """The LISTEN/NOTIFY channel of a member's commands."""
    return f"vpnhub_member_{member}"


@dataclass(frozen=True)
class MemberRow:
    name: str
    public_address: ipaddress.IPv4Address
    sessions: int
    max_sessions: int
    state: str
    age: float  # seconds since its last heartbeat, by the database's clock
    started: str
    version: str
    vip: bool = False  # it held the virtual address at its last heartbeat (schema 2)


@dataclass(frozen=True)
class BlockRow:
    group: str
    block: ipaddress.IPv4Network
    member: str


@dataclass(frozen=True)
class LeaseRow:
    address: ipaddress.IPv4Address
    group: str
    session_id: str
    user: str


@dataclass(frozen=True)
class SessionRow:
    """A directory row as written: `detail` is the session's `as_dict` (JSON text)."""

    id: str
    user: str
    group: str
    public_ip: str
    public_port: int
    assigned_ip: str | None
    protocol: str
    transport: str
    lan_to_lan: str
    login_time: float  # epoch seconds
    detail: str


@dataclass(frozen=True)
class Reclaimed:
    member: str
    blocks: int
    leases: int
    sessions: int


class ClusterDb:
    """The statements of member `me` on `conn` (autocommit)."""

    def __init__(self, conn: psycopg.Connection, me: str) -> None:
        self.conn = conn
        self.me = me

    def migrate(self) -> list[int]:
        return migrate(self.conn)

    # ------------------------------------------------------------- members
    def register(self, public_address: ipaddress.IPv4Address, sessions: int,
                 max_sessions: int, version: str, vip: bool = False) -> None:
        """This member is up (again): its row, with `started` now."""
        self._upsert(public_address, sessions, max_sessions, version, vip, restarted=True)

    def heartbeat(self, public_address: ipaddress.IPv4Address, sessions: int,
                  max_sessions: int, version: str, vip: bool = False) -> None:
        """Load and heartbeat (an upsert: the row may have been reclaimed meanwhile)."""
        self._upsert(public_address, sessions, max_sessions, version, vip, restarted=False)

    def _upsert(self, public_address: ipaddress.IPv4Address, sessions: int, max_sessions: int,
                version: str, vip: bool, *, restarted: bool) -> None:
        started = ", started = now()" if restarted else ""
        self.conn.execute(
            "INSERT INTO members (name, public_address, sessions, max_sessions, version,"
            " holds_virtual_address) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (name)"
            " DO UPDATE SET public_address = EXCLUDED.public_address,"
            " sessions = EXCLUDED.sessions, max_sessions = EXCLUDED.max_sessions,"
            " version = EXCLUDED.version,"
            " holds_virtual_address = EXCLUDED.holds_virtual_address,"
            f" heartbeat = now(){started}, state = 'up'",
            (self.me, str(public_address), sessions, max_sessions, version, vip))

    def members(self) -> list[MemberRow]:
        rows = self.conn.execute(
            "SELECT name, host(public_address), sessions, max_sessions, state,"
            " extract(epoch FROM now() - heartbeat)::float8,"
            " to_char(started AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), version,"
            " holds_virtual_address FROM members ORDER BY name").fetchall()
        return [MemberRow(r[0], ipaddress.IPv4Address(r[1]), r[2], r[3], r[4], max(0.0, r[5]),
                          r[6], r[7], bool(r[8])) for r in rows]

    def goodbye(self) -> None:
        """A clean stop: no sessions, no leases, marked gone. The blocks stay with the
        member until others reclaim them (member_timeout later): a member restarted
        meanwhile gets its blocks, and the network its routes, back unchanged."""
        with self.conn.transaction():
            self.conn.execute("DELETE FROM sessions WHERE member = %s", (self.me,))
            self.conn.execute("DELETE FROM leases WHERE member = %s", (self.me,))
            self.conn.execute("UPDATE members SET state = 'gone', sessions = 0"
                              " WHERE name = %s", (self.me,))

    def reclaim_dead(self, timeout: float) -> list[Reclaimed]:
        """Blocks, leases and directory rows of members silent for `timeout` seconds
        (by the database's clock) deleted; the members' rows too if they said goodbye
        or died long ago. Called only by a member connected for longer than `timeout`."""
        out = []
        with self.conn.transaction():
            dead = [r[0] for r in self.conn.execute(
                "SELECT name FROM members WHERE name <> %s"
                " AND heartbeat < now() - make_interval(secs => %s) FOR UPDATE SKIP LOCKED",
                (self.me, timeout)).fetchall()]
            for name in dead:
                counts = [self._delete_count(table, name)
                          for table in ("address_blocks", "leases", "sessions")]
                if any(counts):
                    out.append(Reclaimed(name, *counts))
            self.conn.execute(
                "DELETE FROM members WHERE name = ANY(%s) AND (state = 'gone'"
                " OR heartbeat < now() - make_interval(secs => %s))",
                (dead, DEAD_MEMBER_KEPT))
        return out

    def _delete_count(self, table: str, member: str) -> int:
        cur = self.conn.execute(sql.SQL("DELETE FROM {} WHERE member = %s").format(
            sql.Identifier(table)), (member,))
        return cur.rowcount

    # -------------------------------------------------------------- blocks
    def blocks(self, member: str | None = None) -> list[BlockRow]:
        q = "SELECT group_name, block, member FROM address_blocks"
        rows = (self.conn.execute(q + " WHERE member = %s ORDER BY block", (member,))
                if member is not None else self.conn.execute(q + " ORDER BY block"))
        return [BlockRow(r[0], ipaddress.IPv4Network(r[1]), r[2]) for r in rows.fetchall()]

    def assert_block(self, group: str, block: ipaddress.IPv4Network) -> bool:
        """Take `block` for this member if nobody has it; True if it is ours."""
        self.conn.execute(
            "INSERT INTO address_blocks (group_name, block, member) VALUES (%s, %s, %s)"
            " ON CONFLICT DO NOTHING", (group, str(block), self.me))
        row = self.conn.execute("SELECT member FROM address_blocks WHERE block = %s",
                                (str(block),)).fetchone()
        return row is not None and row[0] == self.me

    def claim_block(self, group: str, pool: ipaddress.IPv4Network,
                    prefix: int) -> ipaddress.IPv4Network | None:
        """A block of `prefix` length from `pool` granted to this member, or None
        when every one is granted. Members claiming at once may pick the same
        block: the exclusion constraint lets one insert it, the other tries on."""
        prefix = max(prefix, pool.prefixlen)
        for _ in range(8):  # each round loses only to a block granted meanwhile
            taken = [ipaddress.IPv4Network(r[0]) for r in self.conn.execute(
                "SELECT block FROM address_blocks WHERE block && %s", (str(pool),)).fetchall()]
            candidate = _first_free(pool, prefix, taken)
            if candidate is None:
                return None
            cur = self.conn.execute(
                "INSERT INTO address_blocks (group_name, block, member) VALUES (%s, %s, %s)"
                " ON CONFLICT DO NOTHING", (group, str(candidate), self.me))
            if cur.rowcount == 1:
                return candidate
        return None

    def release_block(self, block: ipaddress.IPv4Network) -> None:
        self.conn.execute("DELETE FROM address_blocks WHERE block = %s AND member = %s",
                          (str(block), self.me))

    # -------------------------------------------------------------- leases
    def put_leases(self, leases: Sequence[LeaseRow]) -> list[LeaseRow]:
        """Record leases inside this member's blocks, in one statement (the thread
        shares the interpreter with the IKE loop: each round trip may wait for it);
        those refused (the address is another member's, or outside our blocks) are
        returned."""
        if not leases:
            return []
        rows = self.conn.execute(
            "INSERT INTO leases (address, group_name, member, session_id, user_name)"
            " SELECT x.a, x.g, %(m)s, x.s, x.u FROM unnest(%(a)s::inet[], %(g)s::text[],"
            " %(s)s::text[], %(u)s::text[]) AS x(a, g, s, u) WHERE EXISTS (SELECT 1 FROM"
            " address_blocks WHERE member = %(m)s AND block >>= x.a)"
            " ON CONFLICT (address) DO UPDATE SET session_id = EXCLUDED.session_id,"
            " user_name = EXCLUDED.user_name, group_name = EXCLUDED.group_name,"
            " since = now() WHERE leases.member = EXCLUDED.member RETURNING address",
            {"m": self.me, "a": [str(x.address) for x in leases], "g": [x.group for x in leases],
             "s": [x.session_id for x in leases], "u": [x.user for x in leases]}).fetchall()
        done = {ipaddress.IPv4Address(r[0]) for r in rows}
        return [x for x in leases if x.address not in done]

    def drop_leases(self, addresses: Iterable[ipaddress.IPv4Address]) -> None:
        self.conn.execute("DELETE FROM leases WHERE member = %s AND address = ANY(%s::inet[])",
                          (self.me, [str(a) for a in addresses]))

    def leases(self, member: str | None = None) -> list[tuple[str, LeaseRow]]:
        q = "SELECT member, address, group_name, session_id, user_name FROM leases"
        rows = (self.conn.execute(q + " WHERE member = %s ORDER BY address", (member,))
                if member is not None else self.conn.execute(q + " ORDER BY address"))
        return [(r[0], LeaseRow(ipaddress.IPv4Address(r[1]), r[2], r[3], r[4]))
                for r in rows.fetchall()]

    def resync_leases(self, leases: Sequence[LeaseRow]) -> list[LeaseRow]:
        """Our leases in the database made exactly `leases` (after an outage or at start)."""
        with self.conn.transaction():
            self.conn.execute("DELETE FROM leases WHERE member = %s", (self.me,))
            return self.put_leases(leases)

    # ----------------------------------------------------------- directory
    def put_sessions(self, rows: Sequence[SessionRow]) -> None:
        if not rows:
            return
        with self.conn.transaction(), self.conn.cursor() as cur:  # one commit for the batch
            cur.executemany(
                "INSERT INTO sessions (member, id, user_name, group_name, public_ip,"
                " public_port, assigned_ip, protocol, transport, lan_to_lan, login_time,"
                " detail) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, to_timestamp(%s),"
                " %s::jsonb) ON CONFLICT (member, id) DO UPDATE SET"
                " user_name = EXCLUDED.user_name, group_name = EXCLUDED.group_name,"
                " public_ip = EXCLUDED.public_ip, public_port = EXCLUDED.public_port,"
                " assigned_ip = EXCLUDED.assigned_ip, protocol = EXCLUDED.protocol,"
                " transport = EXCLUDED.transport, lan_to_lan = EXCLUDED.lan_to_lan,"
                " login_time = EXCLUDED.login_time, detail = EXCLUDED.detail, updated = now()",
                [(self.me, r.id, r.user, r.group, r.public_ip, r.public_port, r.assigned_ip,
                  r.protocol, r.transport, r.lan_to_lan, r.login_time, r.detail)
                 for r in rows])

    def drop_sessions(self, ids: Iterable[str]) -> None:
        self.conn.execute("DELETE FROM sessions WHERE member = %s AND id = ANY(%s)",
                          (self.me, list(ids)))

    def resync_sessions(self, rows: Sequence[SessionRow]) -> None:
        """Our directory rows made exactly `rows`."""
        with self.conn.transaction():
            self.conn.execute("DELETE FROM sessions WHERE member = %s", (self.me,))
            self.put_sessions(rows)

    def list_sessions(self, limit: int, cursor: str | None) -> dict[str, Any]:
        """One page of the cluster's remote access sessions, ordered by (login time,
        member, id), each as `vpnhub sessions --json` shows it plus `member` and
        `id`; the first page (no cursor) also lists the LAN-to-LAN sessions."""
        after = decode_cursor(cursor) if cursor is not None else None
        where = "user_name <> '' AND lan_to_lan = ''"
        params: list[Any] = []
        if after is not None:
            where += " AND (login_time, member, id) > (%s::timestamptz, %s, %s)"
            params += list(after)
        rows = self.conn.execute(
            f"SELECT member, id, login_time::text, detail,"  # `where`: fixed text
            f" extract(epoch FROM now() - login_time)::float8 FROM sessions WHERE {where}"
            " ORDER BY login_time, member, id LIMIT %s", (*params, limit + 1)).fetchall()
        page = [_entry(r) for r in rows[:limit]]
        reply: dict[str, Any] = {"sessions": page, "next_cursor": None}
        if len(rows) > limit:
            last = rows[limit - 1]
            reply["next_cursor"] = encode_cursor(last[2], last[0], last[1])
        if after is None:
            reply["lan_to_lan"] = [_entry(r) for r in self.conn.execute(
                "SELECT member, id, login_time::text, detail,"
                " extract(epoch FROM now() - login_time)::float8 FROM sessions"
                " WHERE lan_to_lan <> '' ORDER BY login_time, member, id").fetchall()]
        count = self.conn.execute(
            "SELECT count(*) FILTER (WHERE user_name <> '' AND lan_to_lan = ''),"
            " count(*) FILTER (WHERE lan_to_lan <> '') FROM sessions").fetchone()
        reply["summary"] = {"remote_access": count[0] if count else 0,
                            "lan_to_lan": count[1] if count else 0}
        return reply

    def session_member(self, member: str, session_id: str) -> bool:
        row = self.conn.execute("SELECT 1 FROM sessions WHERE member = %s AND id = %s",
                                (member, session_id)).fetchone()
        return row is not None

    # ------------------------------------------------------------ commands
    def notify(self, member: str, payload: dict[str, Any]) -> None:
        self.conn.execute("SELECT pg_notify(%s, %s)", (channel_of(member), json.dumps(payload)))


def _entry(row: tuple[Any, ...]) -> dict[str, Any]:
    member, sid, _, detail, age = row
    d = dict(detail) if isinstance(detail, dict) else json.loads(detail)
    d["duration"] = int(age)
    d["member"] = member
    d["id"] = sid
    return d


def encode_cursor(login_time: str, member: str, sid: str) -> str:
    raw = json.dumps([login_time, member, sid]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str, str]:
    """The (login time, member, id) a cursor names; ValueError if it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError) as e:
        raise ValueError("bad cursor (use next_cursor of the previous page)") from e
    if not (isinstance(value, list) and len(value) == 3 and all(isinstance(v, str)
                                                                 for v in value)):
        raise ValueError("bad cursor (use next_cursor of the previous page)")
    return value[0], value[1], value[2]


def _first_free(pool: ipaddress.IPv4Network, prefix: int,
                taken: Sequence[ipaddress.IPv4Network]) -> ipaddress.IPv4Network | None:
    """The first block of `prefix` length in `pool` overlapping none of `taken`."""
    exact = set(taken)
    for block in pool.subnets(new_prefix=prefix):
        if block in exact:
            continue
        if not any(block.overlaps(t) for t in taken):
            return block
    return None
