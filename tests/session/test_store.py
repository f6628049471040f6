"""vpnhub.session.store: the session store, its events and their frozen snapshots."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import logging
import time
from collections.abc import Callable

import pytest

from vpnhub.session.model import ChildInfo, Session, SessionView
from vpnhub.session.store import (
    MemorySessionStore,
    SessionChanged,
    SessionEnded,
    SessionEvent,
    SessionStarted,
    SessionStore,
)

# Two clients behind one PAT address: same public address, other ports.
KEY_A = (b"A" * 8, b"a" * 8)
KEY_B = (b"B" * 8, b"b" * 8)


def child(spi: int) -> ChildInfo:
    # ESP AES-CBC 256 / HMAC-SHA1 in UDP-encapsulated tunnel mode (RFC 3948)
    return ChildInfo(spi, spi + 1, 12, 256, 2, 3, "0.0.0.0/0", "10.40.1.1/32", 28800,
                     time.time())


def recording(store: MemorySessionStore) -> list[SessionEvent]:
    seen: list[SessionEvent] = []
    store.subscribe(seen.append)
    return seen


def test_a_session_life_is_told_in_order_with_its_content() -> None:
    store = MemorySessionStore(10)
    seen = recording(store)
    store.start(KEY_A, "203.0.113.78", 1026)
    store.update(KEY_A, group="vpngroup", user="alice", nat_t=True)
    store.add_child(KEY_A, child(0x1000))
    store.update(KEY_A, assigned_ip=ipaddress.IPv4Address("10.40.1.1"))
    store.remove_child(KEY_A, 0x1000)
    ended = store.end(KEY_A, "deleted by peer")

    assert [type(e) for e in seen] == [SessionStarted, SessionChanged, SessionChanged,
                                       SessionChanged, SessionChanged, SessionEnded]
    started = seen[0]
    assert isinstance(started, SessionStarted)
    assert (started.session.key, started.session.public_ip, started.session.public_port,
            started.session.user) == (KEY_A, "203.0.113.78", 1026, "")
    changes = [e for e in seen if isinstance(e, SessionChanged)]
    assert [e.fields for e in changes] == [frozenset({"group", "user", "nat_t"}),
                                          frozenset({"children"}),
                                          frozenset({"assigned_ip"}),
                                          frozenset({"children"})]
    assert changes[0].session.user == "alice" and changes[0].session.nat_t
    assert list(changes[1].session.children) == [0x1000]
    assert str(changes[2].session.assigned_ip) == "10.40.1.1"
    assert not changes[3].session.children
    last = seen[-1]
    assert isinstance(last, SessionEnded)
    assert last.reason == "deleted by peer"
    assert ended is not None and last.session.as_dict(0.0) == ended.as_dict(0.0)
    assert last.session.user == "alice"
    assert KEY_A not in store and store.get(KEY_A) is None and len(store) == 0


def test_an_update_that_changes_nothing_tells_nothing() -> None:
    store = MemorySessionStore(10)
    store.start(KEY_A, "203.0.113.78", 1026, user="alice")
    seen = recording(store)
    assert store.update(KEY_A, user="alice", public_port=1026)
    assert store.update(KEY_A, user="alice", public_port=4500)
    assert [e.fields for e in seen if isinstance(e, SessionChanged)] == \
        [frozenset({"public_port"})]


def test_writes_to_an_unknown_session_are_refused_quietly() -> None:
    store = MemorySessionStore(10)
    seen = recording(store)
    assert not store.update(KEY_A, user="alice")
    assert not store.add_child(KEY_A, child(0x1000))
    assert store.remove_child(KEY_A, 0x1000) is None
    assert store.end(KEY_A, "gone") is None
    assert seen == []


def test_only_session_fields_can_be_set_and_never_the_key() -> None:
    store = MemorySessionStore(10)
    store.start(KEY_A, "203.0.113.78", 1026)
    with pytest.raises(TypeError, match="not a session field: key"):
        store.update(KEY_A, key=KEY_B)
    with pytest.raises(TypeError, match="not a session field: password"):
        store.update(KEY_A, password="secret")


def test_a_refused_write_leaves_the_counters_and_the_user_index_alone() -> None:
    """A write naming a field that does not exist changes nothing: the session is still
    counted as active and logged in (the check comes before the counters are touched)."""
    store = MemorySessionStore(10)
    s = store.start(KEY_A, "203.0.113.78", 1026, user="alice", authenticated=True)
    other = store.start(KEY_B, "203.0.113.78", 1027)
    store.add_child(KEY_A, child(1))
    with pytest.raises(TypeError, match="not a session field: password"):
        store.update(KEY_A, user="bob", password="secret")
    assert s.user == "alice" and store.active() == 1
    assert [o.key for o in store.logins_of("alice", besides=other)] == [KEY_A]


def test_start_of_a_known_key_keeps_the_session() -> None:
    store = MemorySessionStore(10)
    first = store.start(KEY_A, "203.0.113.78", 1026, user="alice")
    seen = recording(store)
    again = store.start(KEY_A, "198.51.100.9", 9999)
    assert again is first and (again.public_ip, again.user) == ("203.0.113.78", "alice")
    assert seen == []


def test_event_snapshots_are_frozen_and_do_not_follow_the_session() -> None:
    store = MemorySessionStore(10)
    seen = recording(store)
    ike = {"encryption": "AES-256"}
    store.start(KEY_A, "203.0.113.78", 1026, user="alice", ike=ike, drops={"replay": 1})
    store.add_child(KEY_A, child(0x1000))
    snap = seen[-1].session
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.user = "mallory"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del snap.user  # type: ignore[misc]
    with pytest.raises(TypeError):
        snap.ike["encryption"] = "DES"  # type: ignore[index]
    with pytest.raises(TypeError):
        snap.children[0x2000] = child(0x2000)  # type: ignore[index]
    with pytest.raises(TypeError):
        snap.drops["replay"] = 0  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.children[0x1000].spi_out = 0  # type: ignore[misc]
    ike["encryption"] = "DES"  # the caller's dict is no alias of the store's
    store.update(KEY_A, user="bob", drops={"replay": 2})
    store.add_child(KEY_A, child(0x3000))
    assert (snap.user, dict(snap.ike), list(snap.children), dict(snap.drops)) == \
        ("alice", {"encryption": "AES-256"}, [0x1000], {"replay": 1})
    live = store.get(KEY_A)
    assert live is not None and live.ike["encryption"] == "AES-256" and live.user == "bob"
    assert list(live.children) == [0x1000, 0x3000]


def test_an_event_snapshot_reads_as_the_session_and_edits_nothing() -> None:
    store = MemorySessionStore(10)
    events: list[SessionEvent] = []
    store.subscribe(events.append)
    store.start(KEY_A, "203.0.113.78", 1026, user="alice", transport="natt", nat_t=True)
    store.add_child(KEY_A, child(0x1000))
    e = events[-1]
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.session = e.session  # type: ignore[misc]
    live = store.get(KEY_A)
    assert live is not None
    assert e.session is not live
    assert e.session.as_dict(0.0) == live.as_dict(0.0)
    assert (e.session.protocol, e.session.encryption()) == ("IPsec/NAT-T", live.encryption())
    json.dumps(e.session.as_dict(0.0))  # the read-only maps come out as plain dicts


def test_a_raising_subscriber_breaks_neither_the_store_nor_the_others(
        caplog: pytest.LogCaptureFixture) -> None:
    store = MemorySessionStore(10)
    before: list[SessionEvent] = []
    after: list[SessionEvent] = []

    def broken(e: SessionEvent) -> None:
        raise RuntimeError("subscriber bug")

    store.subscribe(before.append)
    store.subscribe(broken)
    store.subscribe(after.append)
    with caplog.at_level(logging.ERROR, logger="vpnhub.session.store"):
        store.start(KEY_A, "203.0.113.78", 1026)
        assert store.update(KEY_A, user="alice")
        assert store.end(KEY_A, "logged out") is not None
    assert [type(e) for e in before] == [type(e) for e in after] == \
        [SessionStarted, SessionChanged, SessionEnded]
    assert store.subscriber_errors == 3
    assert len(store) == 0
    assert sum("subscriber" in r.getMessage() for r in caplog.records) == 3


def test_unsubscribe_stops_the_events_even_from_inside_one() -> None:
    store = MemorySessionStore(10)
    seen: list[SessionEvent] = []
    unsubscribe = store.subscribe(lambda e: (seen.append(e), unsubscribe()))
    store.start(KEY_A, "203.0.113.78", 1026)
    store.start(KEY_B, "203.0.113.78", 1025)
    assert len(seen) == 1
    unsubscribe()  # twice is harmless


def test_an_event_reaches_the_subscribers_it_had_when_it_was_made() -> None:
    """Subscribing or unsubscribing from inside a subscriber changes who hears the next
    event, never who hears this one; subscribers are told in the order they came."""
    store = MemorySessionStore(10)
    heard: list[str] = []
    stops: dict[str, Callable[[], None]] = {}

    def first(e: SessionEvent) -> None:
        heard.append(f"first {type(e).__name__}")
        if isinstance(e, SessionStarted):
            stops["second"]()  # still hears this event
            stops["late"] = store.subscribe(lambda e: heard.append(f"late {type(e).__name__}"),
                                            (SessionChanged,), frozenset({"user"}))

    stops["first"] = store.subscribe(first)
    stops["second"] = store.subscribe(lambda e: heard.append(f"second {type(e).__name__}"))
    store.start(KEY_A, "203.0.113.78", 1026)
    store.update(KEY_A, client="vpnc")  # not a field "late" asked for
    store.update(KEY_A, user="alice")
    assert heard == ["first SessionStarted", "second SessionStarted",
                     "first SessionChanged", "first SessionChanged", "late SessionChanged"]


class SnapshotCount:
    """How many times Session.snapshot ran (the cost the store avoids without a
    subscriber for that kind of event)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = Session.snapshot

        def counting(session: Session) -> SessionView:
            self.calls += 1
            return real(session)

        monkeypatch.setattr(Session, "snapshot", counting)


@pytest.fixture
def snapshots(monkeypatch: pytest.MonkeyPatch) -> SnapshotCount:
    return SnapshotCount(monkeypatch)


def test_no_subscriber_no_snapshot_cost(snapshots: SnapshotCount) -> None:
    store = MemorySessionStore(10)
    store.start(KEY_A, "203.0.113.78", 1026)
    before = snapshots.calls
    store.update(KEY_A, bytes_rx=100, packets_rx=1)
    store.add_child(KEY_A, child(0x1000))
    assert snapshots.calls - before == 0


def logged_in(store: MemorySessionStore, key: tuple[bytes, bytes], user: str, port: int,
              *, l2l: str = "") -> SessionView:
    snap = store.start(key, "203.0.113.78", port, user=user, lan_to_lan=l2l, group="g",
                       authenticated=not l2l)
    store.add_child(key, child(int.from_bytes(key[0][:2], "big")))
    store.logged_in(snap)
    return snap


def test_logins_of_a_user_leave_the_asking_session_out() -> None:
    store = MemorySessionStore(10)
    a = logged_in(store, KEY_A, "alice", 1026)
    b = logged_in(store, KEY_B, "alice", 1025)
    store.start((b"C" * 8, b"c" * 8), "198.51.100.7", 500, user="alice")  # not through XAUTH
    assert [s.public_port for s in store.logins_of("alice", besides=a)] == [1025]
    assert len(store.logins_of("alice", besides=b)) == 1
    assert store.logins_of("bob", besides=a) == []
    assert [store.login_count(u, besides=a) for u in ("alice", "bob")] == [1, 0]


def test_summary_peak_and_cumulative_as_the_session_summary_shows_them() -> None:
    store = MemorySessionStore(100)
    store.restore_counters(peak=5, cumulative=7)  # from the previous run's state record
    logged_in(store, KEY_A, "alice", 1026)
    logged_in(store, KEY_B, "branch", 500, l2l="branch")
    store.start((b"C" * 8, b"c" * 8), "198.51.100.7", 500)  # half-way: counts nowhere
    assert store.active() == 2 and store.active_l2l() == 1
    assert store.summary() == {"active_remote_access": 1, "active_lan_to_lan": 1,
                               "active_management": 0, "active": 1, "total_active": 2,
                               "peak": 5, "concurrent_limit": 100, "cumulative": 9}
    store.end(KEY_A, "logged out")
    store.end(KEY_B, "deleted")
    store.restore_counters(peak=1, cumulative=0)
    assert (store.summary()["peak"], store.summary()["total_active"]) == (5, 0)


def test_peak_follows_the_active_sessions() -> None:
    store = MemorySessionStore(100)
    logged_in(store, KEY_A, "alice", 1026)
    logged_in(store, KEY_B, "bob", 1025)
    store.end(KEY_A, "logged out")
    store.update_peak()
    assert (store.peak, store.cumulative, store.active()) == (2, 2, 1)


def test_to_json_lists_users_and_sites_apart() -> None:
    store = MemorySessionStore(100)
    logged_in(store, KEY_A, "alice", 1026)
    logged_in(store, KEY_B, "branch", 500, l2l="branch")
    data = store.to_json(time.time())
    assert [s["user"] for s in data["sessions"]] == ["alice"]
    assert [s["lan_to_lan"] for s in data["lan_to_lan"]] == ["branch"]
    assert data["summary"]["total_active"] == 2
    assert data["sessions"][0]["ipsec"][0]["spi_in"] == "00004141"


def test_the_memory_store_is_a_session_store() -> None:
    assert isinstance(MemorySessionStore(1), SessionStore)


def test_the_counters_and_the_user_index_follow_every_write() -> None:
    """active(), active_l2l() and logins_of() are kept by the writes, not counted by a
    scan (a login would scan 10,000 sessions twice): after any sequence of writes they
    equal what a scan of the sessions says."""
    import random

    rng = random.Random(7)
    store = MemorySessionStore(100)
    keys = [(bytes([i]) * 8, bytes([i + 1]) * 8) for i in range(12)]
    users = ["alice", "bob", ""]
    for step in range(3000):
        key = rng.choice(keys)
        op = rng.randrange(6)
        if op == 0:
            store.start(key, "198.51.100.7", 1024 + step % 100)
        elif op == 1:
            store.update(key, user=rng.choice(users), authenticated=rng.random() < 0.6)
        elif op == 2:
            store.update(key, lan_to_lan=rng.choice(["", "site-b"]))
        elif op == 5 and step % 2:  # fields the counters do not read
            store.update(key, client=rng.choice(["vpnc", ""]), nat_t=rng.random() < 0.5)
        elif op == 3:
            store.add_child(key, child(rng.randrange(1, 5)))
        elif op == 4:
            store.remove_child(key, rng.randrange(1, 5))
        else:
            store.end(key, "test")
        sessions = store.all()
        assert store.active() == sum(1 for s in sessions if s.user and s.children)
        assert store.active_l2l() == sum(1 for s in sessions if s.lan_to_lan and s.children)
        for s in sessions:
            for user in ("alice", "bob"):
                want = {o.key for o in sessions
                        if o.authenticated and o.user == user and o.key != s.key}
                assert {o.key for o in store.logins_of(user, besides=s)} == want
                assert store.login_count(user, besides=s) == len(want)


def test_a_subscriber_gets_only_the_kinds_it_asked_for_and_no_snapshot_is_built_else(
        snapshots: SnapshotCount) -> None:
    """The manager only wants SessionEnded: the store then builds no snapshot for the
    other writes (a login makes about ten of them)."""
    store = MemorySessionStore(10)
    ended: list[SessionEvent] = []
    store.subscribe(ended.append, (SessionEnded,))
    store.start(KEY_A, "198.51.100.7", 1025)
    store.update(KEY_A, user="alice", authenticated=True)
    store.add_child(KEY_A, child(7))
    assert snapshots.calls == 0 and ended == []
    store.end(KEY_A, "logged out")
    assert snapshots.calls == 1 and [type(e) for e in ended] == [SessionEnded]


def test_a_subscriber_named_fields_gets_only_changes_of_those_and_no_snapshot_else(
        snapshots: SnapshotCount) -> None:
    """The manager's tally reads a few fields; the traffic counters the concentrator
    refreshes for every session every 10 s then build no snapshot at all."""
    store = MemorySessionStore(10)
    store.start(KEY_A, "198.51.100.7", 1025)
    changed: list[SessionEvent] = []
    store.subscribe(changed.append, (SessionChanged,), frozenset({"user", "diagnosis"}))
    before = snapshots.calls
    store.update(KEY_A, bytes_rx=100, packets_rx=1)
    assert snapshots.calls == before and changed == []
    store.update(KEY_A, bytes_rx=200, diagnosis="stuck")
    assert snapshots.calls == before + 1
    assert [(type(e), getattr(e, "fields", None)) for e in changed] == [
        (SessionChanged, frozenset({"bytes_rx", "diagnosis"}))]
    # another subscriber that wants every field still gets the counters
    every: list[SessionEvent] = []
    store.subscribe(every.append, (SessionChanged,))
    store.update(KEY_A, bytes_rx=300)
    assert len(every) == 1 and len(changed) == 1


def test_sessions_are_found_by_public_address_and_port_as_they_move() -> None:
    """`at_address` (a login's phase 1 rekey check, issue 13) follows every write:
    start, a new NAT mapping (public_ip / public_port), end; oldest first."""
    store = MemorySessionStore(10)
    key_c = (b"C" * 8, b"c" * 8)
    store.start(KEY_A, "203.0.113.78", 1026)
    store.start(KEY_B, "203.0.113.78", 1027)
    store.start(key_c, "203.0.113.78", 1026)  # a phase 1 rekey from the same mapping
    assert [s.key for s in store.at_address("203.0.113.78", 1026)] == [KEY_A, key_c]
    assert [s.key for s in store.at_address("203.0.113.78", 1027)] == [KEY_B]
    assert store.at_address("203.0.113.79", 1026) == []
    store.update(KEY_A, public_port=40000)
    assert [s.key for s in store.at_address("203.0.113.78", 1026)] == [key_c]
    assert [s.key for s in store.at_address("203.0.113.78", 40000)] == [KEY_A]
    store.update(KEY_B, public_ip="198.51.100.7", user="bob")
    assert store.at_address("203.0.113.78", 1027) == []
    assert [s.key for s in store.at_address("198.51.100.7", 1027)] == [KEY_B]
    store.update(KEY_B, user="carol")  # other fields leave the index alone
    assert [s.key for s in store.at_address("198.51.100.7", 1027)] == [KEY_B]
    store.end(key_c, "deleted by peer")
    store.end(KEY_A, "deleted by peer")
    assert store.at_address("203.0.113.78", 1026) == []
    assert store.at_address("203.0.113.78", 40000) == []
