"""The cluster's PostgreSQL side on a real PostgreSQL 15 (vpnhub/cluster/member.py,
db.py, migrate.py): migrations, members and loads, blocks, leases, the session
directory, NOTIFY commands, dead members, outages."""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import threading

import psycopg
import pytest
from cluster_helpers import login, make_member, start, stop, until
from pgserver import PgServer

from vpnhub.cluster.db import ClusterDb, LeaseRow, connect
from vpnhub.cluster.migrate import SchemaError, known_migrations, migrate
from vpnhub.cluster.pool import ClusterPoolUnavailable, session_id


def test_migrations_apply_once_and_refuse_a_newer_schema(pg_dsn: str) -> None:
    with connect(pg_dsn) as conn:
        assert migrate(conn) == [m.version for m in known_migrations()]
        assert migrate(conn) == []  # idempotent
        rows = conn.execute("SELECT version FROM schema_migrations").fetchall()
        assert [r[0] for r in rows] == [m.version for m in known_migrations()]
        conn.execute("INSERT INTO schema_migrations (version, name) VALUES (999, 'future')")
        with pytest.raises(SchemaError, match="version 999, newer than this vpnhub knows"):
            migrate(conn)


def test_concurrent_migrations_wait_for_each_other(pg_dsn: str) -> None:
    def run() -> list[int]:
        with connect(pg_dsn) as conn:
            return migrate(conn)
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        results = list(ex.map(lambda _: run(), range(4)))
    assert sorted(map(len, results)) == [0, 0, 0, len(known_migrations())]


def test_two_members_see_each_other_and_their_loads(pg_dsn: str) -> None:
    async def main() -> None:
        m1, s1, log1 = make_member(pg_dsn, "c1")
        m2, _, _ = make_member(pg_dsn, "c2")
        assert await start(m1) and await start(m2)
        try:
            for n in range(3):  # active: a user and an IPsec SA
                k = login(s1, n, f"u{n}")
                s1.add_child(k, _child(n))
            await until(lambda: {(m.name, m.sessions, m.alive) for m in m2.members()}
                        == {("c1", 3, True), ("c2", 0, True)}, "c2 to see c1's load")
            assert m1.database_ok and log1.has("cluster member c1 joined")
            # c1 has 3 of 100, c2 none: c1 sends a new client to c2
            assert m1.redirect_target() == ipaddress.IPv4Address("198.51.100.12")
            assert m2.redirect_target() is None
            status = m1.status()
            assert [m["name"] for m in status["members"]] == ["c1", "c2"]
            assert status["database_ok"] and status["pools"]["staff"]["blocks"]
        finally:
            await stop(m1)
            await stop(m2)
        with connect(pg_dsn) as conn:
            assert conn.execute("SELECT name, state FROM members ORDER BY name").fetchall() \
                == [("c1", "gone"), ("c2", "gone")]
    asyncio.run(main())


def test_blocks_never_overlap_under_concurrent_claims(pg_dsn: str) -> None:
    with connect(pg_dsn) as conn:
        migrate(conn)
    pool = ipaddress.IPv4Network("10.88.0.0/24")
    barrier = threading.Barrier(4)

    def claimer(name: str) -> list[ipaddress.IPv4Network]:
        with connect(pg_dsn) as conn:
            db = ClusterDb(conn, name)
            db.register(ipaddress.IPv4Address("198.51.100.1"), 0, 10, "t")
            barrier.wait()
            got = []
            while (block := db.claim_block("g", pool, 28)) is not None:
                got.append(block)
            return got
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        results = list(ex.map(claimer, ["a", "b", "c", "d"]))
    every = [b for r in results for b in r]
    assert sorted(every) == list(pool.subnets(new_prefix=28))  # each once, none lost
    # the database itself refuses an overlapping block
    with connect(pg_dsn) as conn, pytest.raises(psycopg.errors.ExclusionViolation):
        conn.execute("INSERT INTO address_blocks (group_name, block, member)"
                     " VALUES ('other', '10.88.0.0/25', 'a')")


def test_a_lease_is_unique(pg_dsn: str) -> None:
    with connect(pg_dsn) as conn:
        migrate(conn)
        a, b = ClusterDb(conn, "a"), ClusterDb(conn, "b")
        for db in (a, b):
            db.register(ipaddress.IPv4Address("198.51.100.1"), 0, 10, "t")
        block = a.claim_block("g", ipaddress.IPv4Network("10.89.0.0/24"), 26)
        assert block is not None
        address = next(block.hosts())
        assert a.put_leases([LeaseRow(address, "g", "s1", "alice")]) == []
        # another member cannot lease it (nor anything outside its own blocks) ...
        refused = b.put_leases([LeaseRow(address, "g", "s2", "bob")])
        assert len(refused) == 1
        # ... and the primary key refuses a second row for the address, whoever writes it
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO leases (address, group_name, member, session_id)"
                         " VALUES (%s, 'g', 'b', 's3')", (str(address),))
        assert [(m, x.session_id) for m, x in a.leases()] == [("a", "s1")]


def test_the_directory_mirrors_the_session_store(pg_dsn: str) -> None:
    async def main() -> None:
        m1, s1, _ = make_member(pg_dsn, "c1")
        m2, _, _ = make_member(pg_dsn, "c2")
        assert await start(m1) and await start(m2)
        try:
            k1 = login(s1, 1, "alice")
            k2 = login(s1, 2, "bob")
            s1.start((b"\0" * 8, b"\1" * 8), "203.0.113.9", 500)  # no user yet: not listed
            listed = await until(lambda: _ids(m2) == {session_id(k1), session_id(k2)},
                                 "both sessions in the directory")
            assert listed
            page = await asyncio.wrap_future(m2.list_sessions(100, None))
            today = s1.get(k1)
            assert today is not None
            entry = next(e for e in page["sessions"] if e["id"] == session_id(k1))
            assert set(today.as_dict(0)) <= set(entry)
            assert entry["member"] == "c1" and entry["user"] == "alice"
            s1.end(k1, "user logout")
            await until(lambda: _ids(m2) == {session_id(k2)}, "alice's row to go")
            # paging: one per page, the cursor carries on
            first = await asyncio.wrap_future(m2.list_sessions(1, None))
            assert len(first["sessions"]) == 1 and first["next_cursor"] is None
        finally:
            await stop(m1)
            await stop(m2)
    asyncio.run(main())


def test_notify_logout_reaches_the_right_member(pg_dsn: str) -> None:
    async def main() -> None:
        m1, s1, _ = make_member(pg_dsn, "c1")
        m2, _, _ = make_member(pg_dsn, "c2")
        asked: dict[str, list[tuple[tuple[bytes, bytes], str]]] = {"c1": [], "c2": []}
        m1.on_logout = lambda k, by: asked["c1"].append((k, by)) is None
        m2.on_logout = lambda k, by: asked["c2"].append((k, by)) is None
        assert await start(m1) and await start(m2)
        try:
            k = login(s1, 7, "carol")
            await until(lambda: _ids(m2) == {session_id(k)}, "carol in the directory")
            reply = await asyncio.wrap_future(m2.send_logout("c1", session_id(k), "admin"))
            assert reply["logged_out"] == 1, reply
            await until(lambda: asked["c1"], "c1 to be asked")
            assert asked["c1"] == [(k, "admin on member c2")] and asked["c2"] == []
            missing = await asyncio.wrap_future(m2.send_logout("c2", session_id(k), "admin"))
            assert "error" in missing
        finally:
            await stop(m1)
            await stop(m2)
    asyncio.run(main())


def test_a_dead_member_is_reclaimed_only_by_a_continuously_connected_one(pg_dsn: str) -> None:
    async def main() -> None:
        timeout = 1.5
        m2, s2, _ = make_member(pg_dsn, "c2", timeout=timeout)
        assert await start(m2)
        k = login(s2, 3, "dave")
        m2.pools["staff"].allocate(k, identity="dave")
        await until(lambda: _count(pg_dsn, "leases", "c2") == 1, "c2's lease")
        await stop(m2, goodbye=False)  # a crash: its rows stay
        await asyncio.sleep(timeout + 0.5)  # c2 is dead by now
        m3, _, log3 = make_member(pg_dsn, "c3", timeout=timeout)
        assert await start(m3)
        try:
            # c3 just connected: it has not watched c2's silence, so c2 keeps its state
            assert _count(pg_dsn, "address_blocks", "c2") == 1
            assert _count(pg_dsn, "leases", "c2") == 1
            await until(lambda: _count(pg_dsn, "address_blocks", "c2") == 0,
                        "c3 to reclaim c2's block after member_timeout connected")
            assert _count(pg_dsn, "leases", "c2") == 0
            assert _count(pg_dsn, "sessions", "c2") == 0
            await until(lambda: log3.has("cluster member c2 dead"), "the log line")
        finally:
            await stop(m3)
    asyncio.run(main())


def test_database_outage_keeps_sessions_refuses_addresses_and_resyncs(pg_own: PgServer) -> None:
    async def main() -> None:
        dsn = pg_own.dsn()
        m1, s1, log1 = make_member(dsn, "c1", timeout=1.0)
        assert await start(m1)
        pool = m1.pools["staff"]
        try:
            k1 = login(s1, 1, "alice")
            a1 = pool.allocate(k1, identity="alice")
            s1.update(k1, assigned_ip=a1)
            await until(lambda: _count(dsn, "leases", "c1") == 1, "alice's lease")
            await asyncio.to_thread(pg_own.stop)
            await until(lambda: not m1.database_ok, "the outage to be noticed")
            assert log1.has("cluster database unreachable (")
            assert log1.has("established tunnels kept, new logins refused until it returns")
            k2 = login(s1, 2, "bob")
            with pytest.raises(ClusterPoolUnavailable) as err:
                pool.allocate(k2, identity="bob")
            assert err.value.reason == "cluster_database_unavailable"
            assert pool.address_of(k1) == a1  # the established session keeps its address
            s1.end(k1, "user logout")  # meanwhile: alice leaves, bob stays listed
            pool.release(k1)
            await asyncio.to_thread(pg_own.start)
            await until(lambda: m1.database_ok, "the database to be back")
            await until(lambda: log1.has("cluster database reachable again"), "the log line")
            await until(lambda: _ids(m1) == {session_id(k2)}, "the directory resynced")
            assert _count(dsn, "leases", "c1") == 0
            assert _count(dsn, "address_blocks", "c1") >= 1  # kept its blocks
            pool.allocate(k2, identity="bob")  # new logins again
            await until(lambda: _count(dsn, "leases", "c1") == 1, "bob's lease")
        finally:
            await stop(m1)
    asyncio.run(main())


# ----------------------------------------------------------------- helpers
def _ids(m: object) -> set[str]:
    """The session ids the directory lists (read directly, not through a member)."""
    dsn = m.config.dsn.reveal_str()  # type: ignore[attr-defined]
    try:
        with connect(dsn) as conn:
            return {r[0] for r in conn.execute("SELECT id FROM sessions").fetchall()}
    except psycopg.OperationalError:
        return set()


def _count(dsn: str, table: str, member: str) -> int:
    with connect(dsn) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table} WHERE member = %s",  # type: ignore
                           (member,)).fetchone()
        return int(row[0]) if row else 0


def _child(n: int) -> object:
    from vpnhub.session.model import ChildInfo

    return ChildInfo(spi_in=0x1000 + n, spi_out=0x2000 + n, transform=12, key_length=256,
                     auth=12, encapsulation=1, local_ts="0.0.0.0/0",
                     remote_ts=f"10.77.0.{n + 2}/32", lifetime=28800, established=0.0)


def test_a_malformed_dsn_is_not_quoted_in_the_log() -> None:
    async def main() -> None:
        m, _, log = make_member("host=127.0.0.1 hunter2", "c1")
        assert not await start(m, wait=1.0)
        await until(lambda: log.lines, "the outage line")
        await stop(m)
        text = " ".join(t for _, _, t in log.lines) + m.last_error
        assert "hunter2" not in text and "not a valid libpq connection string" in text
    asyncio.run(main())


def test_a_block_lost_during_a_long_partition_ends_its_sessions(pg_server: PgServer) -> None:
    """c1 is cut off from the database longer than member_timeout: c2 (connected
    throughout) reclaims c1's block and takes it; when c1 is back its sessions in
    that block end (their addresses may be c2's now) and its route goes."""
    from cluster_helpers import GROUP, Cut

    from vpnhub.config import GroupConfig
    from vpnhub.secret import Secret

    small = GroupConfig(name=GROUP.name, psk=Secret("k"),
                        address_pool=ipaddress.IPv4Network("10.77.0.0/27"))

    async def main() -> None:
        dsn = pg_server.new_database()
        relay = Cut(pg_server.port)
        relayed = dsn.replace(f"port={pg_server.port}", f"port={relay.port}")
        m1, s1, log1 = make_member(relayed, "c1", groups=(small,), timeout=1.0)
        m2, _, _ = make_member(dsn, "c2", groups=(small,), timeout=1.0)
        ended: list[tuple[bytes, bytes]] = []
        routes: list[tuple[str, bool]] = []
        m1.on_disconnect = lambda k, why: ended.append(k) is None
        m1.on_block = lambda g, b, added: routes.append((str(b), added))
        try:
            assert await start(m1) and await start(m2)
            k = login(s1, 1, "alice")
            m1.pools["staff"].allocate(k, identity="alice")
            lost = m1.pools["staff"].blocks[0]
            relay.cut()
            await until(lambda: not m1.database_ok, "c1 to lose the database")
            await until(lambda: _count(dsn, "address_blocks", "c1") == 0,
                        "c2 to reclaim c1's block")
            p2 = m2.pools["staff"]
            n = 0
            while lost not in p2.blocks:  # c2's logins take it (both /28s of the /27)
                p2.allocate(("c2", n))
                n += 1
                await asyncio.sleep(0.05)
                assert n < 100, "c2 never claimed the reclaimed block"
            relay.mend()
            await until(lambda: m1.database_ok, "c1 to be back")
            await until(lambda: ended == [k], "alice's session to end")
            assert (str(lost), False) in routes
            assert lost not in m1.pools["staff"].blocks
            assert log1.has(f"address block {lost} of group staff was reclaimed")
        finally:
            await stop(m1)
            await stop(m2)
            relay.close()
    asyncio.run(main())
