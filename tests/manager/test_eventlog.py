"""The event log: records, severities per class, repeats, the bounded SQLite store."""

from __future__ import annotations

import dataclasses
import io
import sqlite3
import threading
import time
import timeit
from collections.abc import Callable
from pathlib import Path

import pytest

from vpnhub.config import parse_config
from vpnhub.eventlog import (
    CLASSES,
    SEVERITY_MEANING,
    EventFilter,
    EventLog,
    EventStore,
    Record,
)

HEAD = """
[concentrator]
public_address = "203.0.113.50"
private_networks = ["192.168.2.0/24"]
[[group]]
name = "vpngroup"
psk = "sup3r-secret-psk"
address_pool = "10.40.1.0/24"
[[user]]
name = "vpnuser1"
password = "pl41n-password"
group = "vpngroup"
"""


class Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


def make_log(tmp_path: Path | None = None, max_events: int = 1000, **kw: object) -> EventLog:
    store = EventStore(tmp_path / "events.db", max_events) if tmp_path else None
    return EventLog(out=io.StringIO(), clock=Clock(), store=store, **kw)  # type: ignore[arg-type]


def test_classes_and_severities_are_documented() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "MANAGER.md").read_text()
    assert set(SEVERITY_MEANING) == set(range(1, 14))
    for name in CLASSES:
        assert f"`{name}`" in doc, name
    for sev in range(1, 14):
        assert f"| {sev} |" in doc, sev


def test_defaults_console_1_to_3_kept_1_to_5() -> None:
    log = make_log()
    for sev in (1, 3, 4, 5, 6, 9):
        log.add("IKE", sev, f"event at severity {sev}")
    out = log.out.getvalue()  # type: ignore[union-attr]
    assert "SEV=1" in out and "SEV=3" in out and "SEV=4" not in out
    assert [r.severity for r in log.records] == [1, 3, 4, 5]
    assert log.seq == 4  # 6 and 9 were neither printed nor kept: no number


def test_per_class_levels_from_config(tmp_path: Path) -> None:
    cfg = parse_config(HEAD + '[log]\nstore = ""\n[log.classes.IKEDECODE]\nkeep_severity = 9\n'
                       "[log.classes.NATT]\nconsole_severity = 0\nkeep_severity = 4\n")
    log = EventLog(out=io.StringIO())
    assert log.configure(cfg) is None
    assert log.levels("IKEDECODE") == (3, 9) and log.levels("NATT") == (0, 4)
    assert log.levels("IKE") == (3, 5)
    log.add("IKEDECODE", 9, "HDR + SA + VID")
    log.add("NATT", 1, "fault")
    log.add("NATT", 5, "not kept")
    assert [(r.cls, r.severity) for r in log.records] == [("IKEDECODE", 9), ("NATT", 1)]
    assert "NATT" not in log.out.getvalue()  # type: ignore[union-attr]


def test_identical_consecutive_events_collapse() -> None:
    log = make_log()
    for _ in range(5):
        log.add("DPD", 3, "R-U-THERE sent", peer="203.0.113.78:4500")
    log.add("DPD", 3, "R-U-THERE sent", peer="203.0.113.78:1026")  # another peer
    log.add("DPD", 3, "R-U-THERE sent", peer="203.0.113.78:4500")
    recs = list(log.records)
    assert [(r.seq, r.repeat) for r in recs] == [(1, 5), (2, 1), (3, 1)]
    assert recs[0].last > recs[0].time
    lines = log.out.getvalue().splitlines()  # type: ignore[union-attr]
    assert len(lines) == 4 and "repeated 4 more time(s)" in lines[1]
    assert log.counts["DPD"] == 7


def test_filters(tmp_path: Path) -> None:
    for log in (make_log(), make_log(tmp_path)):
        log.add("NATT", 4, "NAT-Traversal successfully negotiated", peer="203.0.113.78:1025",
                group="vpngroup", user="vpnuser1")
        log.add("NATT", 4, "NAT-Traversal successfully negotiated", peer="203.0.113.78:1026",
                group="vpngroup", user="vpnuser2")
        log.add("IKE", 5, "IKE SA established 100%_done", peer="203.0.113.78:1025")
        log.add("AUTH", 3, "manager login FAILED for 'x'")

        def seqs(log: EventLog = log, **kw: object) -> list[int]:
            return [r.seq for r in log.query(EventFilter(**kw))]  # type: ignore[arg-type]

        base = log.seq - 4
        assert seqs(classes=frozenset({"NATT"})) == [base + 1, base + 2]
        assert seqs(peer="203.0.113.78") == [base + 1, base + 2, base + 3]
        assert seqs(peer="203.0.113.78:1026") == [base + 2]
        assert seqs(user="vpnuser1") == [base + 1]
        assert seqs(group="vpngroup") == [base + 1, base + 2]
        assert seqs(severity_min=4, severity_max=4) == [base + 1, base + 2]
        assert seqs(text="nat-traversal") == [base + 1, base + 2]  # case-insensitive
        assert seqs(text="100%_") == [base + 3]  # LIKE wildcards are literal
        assert seqs(text="0%") == [base + 3]
        assert seqs(limit=2) == [base + 3, base + 4]  # the newest, oldest first
        assert seqs(before_seq=base + 3, limit=1) == [base + 2]
        t = log.query(EventFilter())[1].time
        assert seqs(since=t, until=t) == [base + 2]


def test_store_survives_restart_and_numbering_goes_on(tmp_path: Path) -> None:
    log = make_log(tmp_path)
    log.add("SESSION", 3, "first run")
    log.add("NATT", 4, "NAT-Traversal successfully negotiated", peer="203.0.113.78:1025")
    log.close()
    again = make_log(tmp_path)
    assert [r.text for r in again.query(EventFilter())] == [
        "first run", "NAT-Traversal successfully negotiated"]
    rec = again.add("SESSION", 3, "second run")
    assert rec is not None and rec.seq == 3
    assert again.query(EventFilter(peer="203.0.113.78"))[0].peer_port == 1025
    again.close()


def test_repeat_count_is_stored(tmp_path: Path) -> None:
    log = make_log(tmp_path)
    for _ in range(3):
        log.add("IKE", 3, "same")
    log.close()
    [rec] = make_log(tmp_path).query(EventFilter())
    assert (rec.seq, rec.repeat) == (1, 3) and rec.last > rec.time


def test_store_batches_keep_order_repeats_and_a_row_written_meanwhile(
        tmp_path: Path) -> None:
    """Issue 13: a flush INSERTs the records numbered after the newest stored row and
    replaces the repeats of stored ones; every record arrives, in order, with its
    last repeat count, and a row another writer put under a fresh number meanwhile is
    replaced, not a lost batch. Close flushes what is still queued."""
    log = make_log(tmp_path)
    store = log.store
    assert store is not None
    log.add("IKE", 4, "a")
    log.add("IKE", 4, "b")
    store.flush()
    log.add("IKE", 4, "b")  # a repeat of a stored row
    log.add("NATT", 5, "c")
    log.add("NATT", 5, "d")
    store.db.execute("INSERT INTO events (seq, time, last, cls, severity, repeat, peer,"
                     " peer_address, grp, user, text, auth) VALUES (4, 0, 0, 'X', 1, 1, '',"
                     " '', '', '', 'someone else', 1)")
    log.close()  # the last batch goes with close
    again = make_log(tmp_path)
    got = [(r.seq, r.cls, r.text, r.repeat) for r in again.query(EventFilter())]
    assert got == [(1, "IKE", "a", 1), (2, "IKE", "b", 2), (3, "NATT", "c", 1),
                   (4, "NATT", "d", 1)]
    assert again.store is not None and again.store.count == 4
    again.close()


def test_a_flood_is_bounded_by_the_store_size(tmp_path: Path) -> None:
    log = make_log(tmp_path, max_events=100)
    for i in range(5000):
        log.add("IKE", 3, f"flood {i}")
    log.flush()
    assert log.store is not None and log.store.count == 100
    db = sqlite3.connect(tmp_path / "events.db")
    (count, lo, hi), = db.execute("SELECT COUNT(*), MIN(seq), MAX(seq) FROM events")
    db.close()
    assert (count, lo, hi) == (100, 4901, 5000)  # oldest dropped first
    assert len(log.records) <= log.size
    log.close()
    assert (tmp_path / "events.db").stat().st_mode & 0o077 == 0  # user names, addresses


def test_secrets_never_reach_a_record(tmp_path: Path) -> None:
    cfg = parse_config(HEAD + f'[log]\nstore = "{tmp_path / "ev.db"}"\n')
    out = io.StringIO()
    log = EventLog(out=out)
    log.configure(cfg)
    log.add("IKE", 3, "psk was sup3r-secret-psk and password pl41n-password")
    log.close()
    raw = (tmp_path / "ev.db").read_bytes() + out.getvalue().encode()
    assert b"sup3r-secret-psk" not in raw and b"pl41n-password" not in raw
    assert "psk was <hidden> and password <hidden>" in out.getvalue()


def test_many_secrets_are_hidden_and_cost_little_to_look_for() -> None:
    """1,000 users with plain-text passwords (issue 13): every one is hidden, the
    longest first when one secret begins another, and a line without any costs
    about what it costs with two secrets (the search is a trie, not 1,000 words
    tried at every character: ~50 us a line before)."""
    words = [f"pw{i * 7919 % 100003:x}x" for i in range(1000)]
    log = EventLog(out=io.StringIO(), console_severity=5)
    log.hide(["sup3r-secret-psk", "sup3r-secret", *words])
    for w in words[::97]:
        r = log.add("AUTH", 4, f"login with {w}, then {w}!", user=w)
        assert r is not None and r.text == "login with <hidden>, then <hidden>!"
        assert r.user == "<hidden>"
    r = log.add("AUTH", 4, "psk sup3r-secret-psk, sup3r-secret and sup3r-secre")
    assert r is not None and r.text == "psk <hidden>, <hidden> and sup3r-secre"
    line = "Group [vpngroup] User [user17] connected, address 10.40.17.17 assigned"
    few = EventLog(out=io.StringIO())
    few.hide(["sup3r-secret-psk", "pl41n-password"])
    assert log._secrets is not None and few._secrets is not None
    many_t = min(timeit.repeat(lambda: log._secrets[0].search(line), number=2000, repeat=5))
    few_t = min(timeit.repeat(lambda: few._secrets[0].search(line), number=2000, repeat=5))
    assert many_t < 5 * few_t, (many_t, few_t)


def test_a_very_long_secret_is_hidden_too() -> None:
    psk = "x7" * 600  # longer than the trie takes: the plain search finds it
    log = EventLog(out=io.StringIO(), console_severity=5)
    log.hide([psk, "pl41n-password"])
    r = log.add("IKE", 3, f"psk {psk} and pl41n-password")
    assert r is not None and r.text == "psk <hidden> and <hidden>"


def test_unusable_store_keeps_events_in_memory(tmp_path: Path) -> None:
    bad = tmp_path / "not-a-db"
    bad.write_bytes(b"this is not an SQLite database, just text" * 100)
    cfg = parse_config(HEAD + f'[log]\nstore = "{bad}"\n')
    log = EventLog(out=io.StringIO())
    problem = log.configure(cfg)
    assert problem and "in memory only" in problem
    log.add("IKE", 3, "still logged")
    assert log.query(EventFilter())[0].text == "still logged"


def test_subscribers_see_new_and_repeated_records() -> None:
    log = make_log()
    seen: list[tuple[int, int]] = []
    stop = log.subscribe(lambda r: seen.append((r.seq, r.repeat)))
    log.add("IKE", 3, "a")
    log.add("IKE", 3, "a")
    log.add("IKE", 9, "not kept, not printed")
    stop()
    log.add("IKE", 3, "b")
    assert seen == [(1, 1), (1, 2)]


def test_a_subscriber_may_unsubscribe_from_inside_its_notify() -> None:
    """The log calls the subscribers it had when the record was made: one that stops
    (itself or another) from inside its call changes the next record's list only."""
    log = make_log()
    seen: list[str] = []
    stops: list[Callable[[], None]] = []

    def first(r: Record) -> None:
        seen.append(f"first {r.text}")
        stops[0]()

    stops.append(log.subscribe(first))
    stops.append(log.subscribe(lambda r: seen.append(f"second {r.text}")))
    twice = log.subscribe(lambda r: seen.append(f"third {r.text}"))
    log.add("IKE", 3, "a")
    log.add("IKE", 3, "b")
    twice()
    twice()  # a second stop is harmless
    log.add("IKE", 3, "c")
    assert seen == ["first a", "second a", "third a", "second b", "third b", "second c"]


def test_records_are_frozen_values() -> None:
    """What the log hands out equals (and hashes as) the same Record built by hand,
    and cannot be changed; a repeat is a new record."""
    log = make_log()
    rec = log.add("IKE", 3, "a", peer="203.0.113.78:4500", group="g", user="u")
    assert rec is not None
    same = Record(rec.seq, rec.time, "IKE", 3, "a", "203.0.113.78:4500", "g", "u", 1,
                  rec.last, True)
    assert rec == same and hash(rec) == hash(same) and repr(rec) == repr(same)
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.text = "b"  # type: ignore[misc]
    again = log.add("IKE", 3, "a", peer="203.0.113.78:4500", group="g", user="u")
    assert again is not None and (again.seq, again.repeat) == (rec.seq, 2)
    assert rec.repeat == 1 and again.time == rec.time and again.last >= rec.last


@pytest.mark.parametrize("records", [0, 10])
def test_memory_records_move_into_a_late_store(tmp_path: Path, records: int) -> None:
    old = make_log(tmp_path)
    for i in range(7):
        old.add("SESSION", 3, f"old {i}")
    old.close()
    log = make_log()
    for i in range(records):
        log.add("IKE", 3, f"early {i}")
    log.attach(EventStore(tmp_path / "events.db", 1000))
    rec = log.add("IKE", 3, "late")
    assert rec is not None and rec.seq == 7 + records + 1
    assert [r.seq for r in log.query(EventFilter())] == list(range(1, 7 + records + 2))


# ----------------------------------------------------------------- issue 11, points 3 and 4
class StillClock:
    """A clock the test moves (rate-limit windows are 10 s)."""

    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


def test_every_field_is_escaped_as_the_last_line_of_defence() -> None:
    log = make_log(console_severity=5)
    rec = log.add("XAUTH", 3, "user evil\n1 2026-12-03 SEV=4 SESSION forged\x1b[2J",
                  peer="198.51.100.7:500", group="g\x07", user="evil\r\n\u202e")
    assert rec is not None
    assert (rec.text, rec.group, rec.user) == (
        "user evil\\n1 2026-12-03 SEV=4 SESSION forged\\x1b[2J", "g\\x07", "evil\\r\\n\\u202e")
    out = log.out.getvalue()  # type: ignore[union-attr]
    assert out.count("\n") == 1 and "\x1b" not in out and "\x07" not in out


def test_unauthenticated_records_say_so_and_keep_to_their_share(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.db", 100)
    clock = StillClock()
    log = EventLog(out=io.StringIO(), clock=clock, store=store, console_severity=5)
    log.add("SESSION", 4, "login of vpnuser1", user="vpnuser1", peer="198.51.100.7:500")
    for i in range(50):  # 50 windows of junk, each within the unauthenticated budget
        clock.t += 11
        for j in range(100):
            log.add("IKE", 3, f"junk {i}.{j}", peer=f"10.98.0.{j}:500", authenticated=False)
    log.add("ADMIN", 4, "logout of vpnuser1 by administrator", user="vpnuser1")
    kept = log.query(EventFilter(limit=1000))
    assert [r.text for r in kept if r.authenticated] == [
        "login of vpnuser1", "logout of vpnuser1 by administrator"]
    assert sum(not r.authenticated for r in kept) == store.unauth_max == 10
    assert "UNAUTHENTICATED" in kept[1].format() and kept[1].to_json()["authenticated"] is False
    # the ring without a store keeps the same promise
    mem = EventLog(out=io.StringIO(), clock=clock, size=100)
    mem.add("SESSION", 4, "login of vpnuser1", user="vpnuser1")
    for j in range(1000):
        mem.add("IKE", 3, f"junk {j}", peer=f"10.98.0.{j % 250}:500", authenticated=False)
    assert [r.text for r in mem.query(EventFilter(limit=1000)) if r.authenticated] == [
        "login of vpnuser1"]


def test_a_store_without_the_auth_column_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    db = sqlite3.connect(path)
    db.executescript("""CREATE TABLE events (seq INTEGER PRIMARY KEY, time REAL NOT NULL,
        last REAL NOT NULL, cls TEXT NOT NULL, severity INTEGER NOT NULL,
        repeat INTEGER NOT NULL, peer TEXT NOT NULL, peer_address TEXT NOT NULL,
        grp TEXT NOT NULL, user TEXT NOT NULL, text TEXT NOT NULL);
        INSERT INTO events VALUES (1, 1.0, 1.0, 'SESSION', 4, 1, '', '', '', 'u', 'old');""")
    db.commit()
    db.close()
    log = EventLog(out=io.StringIO(), store=EventStore(path, 100))
    log.add("IKE", 3, "new", authenticated=False)
    got = log.query(EventFilter())
    assert [(r.text, r.authenticated) for r in got] == [("old", True), ("new", False)]


def test_the_unauthenticated_index_holds_only_those_rows_and_replaces_the_old_one(
        tmp_path: Path) -> None:
    """Issue 13: the index for trimming unauthenticated records is partial (a login's
    records do not pay for it); a store with the earlier full (auth, seq) index gets
    the partial one, and the trimming still finds the oldest junk by it."""
    path = tmp_path / "events.db"
    db = sqlite3.connect(path)
    db.executescript("""CREATE TABLE events (seq INTEGER PRIMARY KEY, time REAL NOT NULL,
        last REAL NOT NULL, cls TEXT NOT NULL, severity INTEGER NOT NULL,
        repeat INTEGER NOT NULL, peer TEXT NOT NULL, peer_address TEXT NOT NULL,
        grp TEXT NOT NULL, user TEXT NOT NULL, text TEXT NOT NULL,
        auth INTEGER NOT NULL DEFAULT 1);
        CREATE INDEX events_unauth ON events (auth, seq);""")
    db.commit()
    db.close()
    store = EventStore(path, 100)  # junk's share: 10 records
    sql = store.db.execute("SELECT sql FROM sqlite_master WHERE name = 'events_unauth'"
                           ).fetchone()[0]
    assert "WHERE auth = 0" in sql
    plan = store.db.execute("EXPLAIN QUERY PLAN SELECT seq FROM events WHERE auth = 0"
                            " ORDER BY seq LIMIT 1").fetchall()
    assert "events_unauth" in str(plan)
    log = EventLog(out=io.StringIO(), store=store)
    for i in range(30):
        log.add("IKE", 4, f"junk {i}", peer=f"198.51.100.{i}:500", authenticated=False)
        log.add("SESSION", 4, f"login {i}")
    log.flush()
    got = log.query(EventFilter(limit=1000))
    assert [r.text for r in got if not r.authenticated] == [f"junk {i}" for i in range(20, 30)]
    assert len([r for r in got if r.authenticated]) == 30
    log.close()


def test_per_packet_lines_are_rate_limited_and_summarised() -> None:
    clock = StillClock()
    log = EventLog(out=io.StringIO(), clock=clock, console_severity=5)
    burst = log.limiter.burst
    for i in range(500):  # an authenticated peer's per-packet failures, one reason
        log.add("IKE", 4, f"bad packet {i}", peer="198.51.100.7:4500", user="vpnuser1",
                limit="decryption_failed")
    for i in range(5):  # audit lines are never limited
        log.add("SESSION", 4, f"session {i} ended", user="vpnuser1")
    recs = log.query(EventFilter(limit=1000))
    assert sum(r.text.startswith("bad packet") for r in recs) == burst
    assert sum(r.cls == "SESSION" for r in recs) == 5
    assert log.suppressed["IKE"] == 500 - burst
    clock.t += 10
    log.tick()
    summary = log.query(EventFilter(text="suppressed"))
    assert [r.text for r in summary] == [
        f"{500 - burst} similar events suppressed in the last 10 s"
        " (IKE, decryption_failed, from 198.51.100.7)"]
    assert summary[0].user == "" and summary[0].peer_address == "198.51.100.7"
    log.add("IKE", 4, "bad packet again", peer="198.51.100.7:4500", limit="decryption_failed")
    assert log.query(EventFilter(text="again"))  # a new window, a new budget


def test_many_spoofed_sources_share_one_unauthenticated_budget() -> None:
    clock = StillClock()
    log = EventLog(out=io.StringIO(), clock=clock, console_severity=5)
    budget = log.limiter.unauth_burst
    for i in range(5000):
        log.add("IKE", 5, "Aggressive Mode from a new peer",
                peer=f"10.{i // 250}.{i % 250}.1:500", authenticated=False)
    assert len(log.query(EventFilter(limit=10_000))) == budget
    clock.t += 10
    log.tick()
    summary = log.query(EventFilter(text="suppressed"))
    assert len(summary) == 1 and summary[0].text.startswith(
        f"{5000 - budget} unauthenticated events from 1024+ source(s) suppressed")
    assert len(log.limiter._keys) == 0  # idle keys are forgotten


def test_the_console_marks_unauthenticated_records_and_escapes_them() -> None:
    from vpnhub.manager.pages import event_row

    log = EventLog(out=io.StringIO(), clock=StillClock(), console_severity=5)
    rec = log.add("IKE", 3, "junk <script>x</script>", peer="10.98.0.9:500",
                  authenticated=False)
    assert rec is not None
    row = event_row(rec)
    assert "[unauthenticated] junk &lt;script&gt;" in row and "<script>" not in row
    ok = log.add("XAUTH", 4, "user 'vpnuser1' authenticated", user="vpnuser1")
    assert ok is not None and "[unauthenticated]" not in event_row(ok)


def test_keyset_pages_both_ways_and_exists(tmp_path: Path) -> None:
    for path in (tmp_path, None):  # the store, and memory only
        log = make_log(path)
        for i in range(30):
            log.add("IKE", 4, f"event {i}")
        first = log.query(EventFilter(limit=10, oldest_first=True))
        assert [r.seq for r in first] == list(range(1, 11))
        nxt = log.query(EventFilter(limit=10, oldest_first=True, after_seq=10))
        assert [r.seq for r in nxt] == list(range(11, 21))
        last = log.query(EventFilter(limit=10))
        assert [r.seq for r in last] == list(range(21, 31))
        assert log.exists(EventFilter(before_seq=2)) and not log.exists(EventFilter(after_seq=30))


def test_clear_leaves_one_record_saying_who(tmp_path: Path) -> None:
    log = make_log(tmp_path, classes={"ADMIN": (0, 0)})  # even a class that keeps nothing
    for i in range(20):
        log.add("IKE", 4, f"event {i}")
    rec = log.clear(lambda n: f"event log cleared by admin: {n} removed", "admin")
    assert rec.text == "event log cleared by admin: 20 removed" and rec.seq == 21
    assert [r.seq for r in log.query(EventFilter())] == [21] == [r.seq for r in log.records]
    assert log.store is not None and log.store.count == 1


def test_class_levels_set_at_run_time_outlive_a_restart(tmp_path: Path) -> None:
    cfg = parse_config(HEAD + f'[log]\nstore = "{tmp_path / "events.db"}"\n'
                       "[log.classes.NATT]\nkeep_severity = 4\n")
    log = EventLog(out=io.StringIO())
    assert log.configure(cfg) is None
    assert log.set_levels("NATT", 1, 7) == (3, 4)
    assert log.add("NATT", 7, "kept now") is not None
    log.close()
    again = EventLog(out=io.StringIO())
    assert again.configure(cfg) is None
    assert again.levels("NATT") == (1, 7) and again.levels("IKE") == (3, 5)
    again.configure(cfg)  # a reload of the same configuration keeps the override
    assert again.levels("NATT") == (1, 7)
    again.close()


def test_event_cells_are_named_and_the_pager_counts_readably() -> None:
    """The 390 px cards label number, severity and repeats by the cells' class (not
    their position), and the pager groups its numbers as every count (issue 15)."""
    import dataclasses

    from vpnhub.manager.eventpages import pager
    from vpnhub.manager.pages import event_row

    log = EventLog(out=io.StringIO(), clock=StillClock(), console_severity=5)
    rec = log.add("NATT", 4, "NAT-Traversal successfully negotiated", peer="10.98.0.9:4500")
    assert rec is not None
    row = event_row(rec)
    for cls, value in (("seq", rec.seq), ("sev", 4), ("rpt", rec.repeat)):
        assert f'<td class="{cls}">{value}</td>' in row
    first, last = dataclasses.replace(rec, seq=9501), dataclasses.replace(rec, seq=10000)
    assert "#9,501 to #10,000" in pager({}, [first, last], older=True, newer=False)


def _rows(path: Path) -> list[tuple[int, int, str]]:
    """What another process reading the store sees: (seq, repeat, text) in order."""
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT seq, repeat, text FROM events ORDER BY seq").fetchall()
    finally:
        db.close()


def test_the_writer_thread_commits_so_that_logging_never_waits_for_sqlite(
        tmp_path: Path) -> None:
    """Issue 13: with the store's writer thread, `put` only queues. While another
    thread holds the database (a long query, a slow disk) the logging thread goes
    on; every record reaches the file, in order, the newest repeat included."""
    path = tmp_path / "events.db"
    store = EventStore(path, 10_000, batch=8, flush_interval=0.05)
    store.start_writer()
    log = EventLog(out=io.StringIO(), clock=Clock(), store=store)
    busy, release = threading.Event(), threading.Event()

    def hold_the_database() -> None:
        with store._lock:  # what a flush or a query on another thread holds
            busy.set()
            release.wait(10)

    holder = threading.Thread(target=hold_the_database)
    holder.start()
    busy.wait(5)
    t0 = time.monotonic()
    for i in range(3 * 8):  # three batches: each would have been a flush in `put`
        log.add("SESSION", 4, f"login {i}", user=f"user{i}")
    log.add("SESSION", 4, "login 23", user="user23")  # a repeat of the last record
    assert time.monotonic() - t0 < 1.0  # without the writer, `put` waited for the lock
    release.set()
    holder.join()
    deadline = time.monotonic() + 5
    while len(_rows(path)) < 24 and time.monotonic() < deadline:
        time.sleep(0.02)  # the writer's own wake: no further put or flush needed
    rows = _rows(path)
    assert [seq for seq, _, _ in rows] == list(range(1, 25))
    assert [text for _, _, text in rows] == [f"login {i}" for i in range(24)]
    log.add("SESSION", 4, "login 23", user="user23")  # repeat count 3, still queued
    assert [r.repeat for r in log.query(EventFilter(limit=1))] == [3]  # a query flushes
    log.add("SESSION", 5, "logout", user="user23")
    log.close()  # stops the writer and writes what is left
    assert _rows(path)[-2:] == [(24, 3, "login 23"), (25, 1, "logout")]
    assert not any(t.name == "event-store" and t.is_alive() for t in threading.enumerate())


def test_the_configured_store_writes_on_its_own_thread(tmp_path: Path) -> None:
    cfg = parse_config(HEAD + f'[log]\nstore = "{tmp_path / "events.db"}"\n')
    log = EventLog.from_config(cfg, out=io.StringIO())
    assert log.store is not None and log.store._writer is not None
    assert log.store._writer.name == "event-store" and log.store._writer.is_alive()
    log.add("SESSION", 4, "login of vpnuser1", user="vpnuser1")
    log.flush_soon()
    log.close()
    assert [text for _, _, text in _rows(tmp_path / "events.db")][-1] == "login of vpnuser1"
