"""Issue 11 point 6 in-process: the state record next to the event store.

After `kill -9` the next run must say that the previous one ended
unexpectedly (pid, last seen) and which sessions it lost, keep the peak and
cumulative counters, and keep the lost sessions' pool addresses from other
users until their clients can have noticed. A corrupt, partial or missing
record is a clear log line, never a failed start.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import stat
import time
from pathlib import Path

import pytest
from core_harness import CoreRig, config_text

from vpnhub.concentrator.staterecord import (
    HeldAddress,
    RunRecord,
    SessionRecord,
    StateError,
    StateKeeper,
    encode_state,
    read_state,
    session_records,
    state_path,
    write_state,
)

LOST = (
    SessionRecord("vpnuser1", "vpngroup", "203.0.113.78", 4500, "10.40.1.1", 1_700_000_000.0),
    SessionRecord("vpnuser2", "vpngroup", "203.0.113.78", 61234, "10.40.1.2", 1_700_000_100.0),
)


def _store(tmp_path: Path) -> Path:
    return tmp_path / "events.db"


def _start(tmp_path: Path, extra: str = "") -> CoreRig:
    """A concentrator run starting up (the state part of `run()`) on tmp_path's store."""
    p = CoreRig.from_text(config_text(store=str(_store(tmp_path)), log_extra=extra))
    p.core.restore_state()
    return p


def _crashed_run(tmp_path: Path, *, heartbeat: float | None = None, clean: bool = False,
                 sessions: tuple[SessionRecord, ...] = LOST) -> RunRecord:
    rec = RunRecord(pid=424242, started=time.time() - 3600,
                    heartbeat=time.time() - 5 if heartbeat is None else heartbeat,
                    clean=clean, peak=7, cumulative=41, sessions=sessions)
    write_state(state_path(_store(tmp_path)), rec)
    return rec


def _severity(line: str) -> int:
    m = re.search(r"\bSEV=(\d+)", line)
    assert m, line
    return int(m.group(1))


def test_state_path_is_next_to_the_event_store(tmp_path: Path) -> None:
    assert state_path(tmp_path / "events.db") == tmp_path / "events.state.json"


def test_write_is_atomic_private_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "s.state.json"
    rec = RunRecord(pid=1, started=2.0, heartbeat=3.0, clean=False, peak=4, cumulative=5,
                    sessions=LOST)
    write_state(path, rec)
    assert read_state(path) == rec
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # user names and addresses
    assert [p.name for p in tmp_path.iterdir()] == ["s.state.json"]  # no temp file left


def test_crash_is_reported_with_pid_last_seen_and_each_lost_session(tmp_path: Path) -> None:
    prev = _crashed_run(tmp_path)
    p = _start(tmp_path)
    crash = p.lines("ended unexpectedly")
    assert len(crash) == 1 and _severity(crash[0]) <= 3, p.console.getvalue()
    assert "pid 424242" in crash[0] and "2 session(s) lost" in crash[0]
    assert time.strftime("%H:%M:%S", time.gmtime(prev.heartbeat)) in crash[0]  # last seen
    lost = p.lines("session lost with the previous run")
    assert len(lost) == 2 and all(_severity(ln) <= 3 for ln in lost), lost
    for s, line in zip(LOST, lost, strict=True):
        assert s.user in line and s.assigned_ip is not None and s.assigned_ip in line
        assert f"{s.public_ip}:{s.public_port}" in line
    summary = p.core.sessions.summary()
    assert (summary["peak"], summary["cumulative"]) == (7, 41)


def test_lost_addresses_are_held_from_others_but_their_user_gets_theirs(
        tmp_path: Path) -> None:
    _crashed_run(tmp_path)
    p = _start(tmp_path)
    pool = p.core.pools["vpngroup"]
    others = {str(pool.allocate(("new", i), identity=f"someone{i}")) for i in range(5)}
    assert not others & {"10.40.1.1", "10.40.1.2"}, others
    assert str(pool.allocate(("back", 2), identity="vpnuser2")) == "10.40.1.2"


def test_a_lost_user_logging_in_again_gets_the_held_address(tmp_path: Path) -> None:
    _crashed_run(tmp_path)
    p = _start(tmp_path)
    pc = p.connect(p.add_pc("vpnuser2"))
    assert pc.address == "10.40.1.2", p.console.getvalue()
    assert p.core.held == [h for h in p.core.held if h.user == "vpnuser1"]


def test_holds_end_after_lost_address_hold(tmp_path: Path) -> None:
    _crashed_run(tmp_path, heartbeat=time.time() - 120)
    p = _start(tmp_path, "")  # default hold (600 s): still held
    assert p.core.pools["vpngroup"].held == 2
    p2 = CoreRig.from_text(config_text(store=str(_store(tmp_path)),
                                       limits_extra="lost_address_hold = 60"))
    _crashed_run(tmp_path, heartbeat=time.time() - 120)
    p2.core.restore_state()
    assert p2.core.pools["vpngroup"].held == 0  # the clients noticed long ago
    assert str(p2.core.pools["vpngroup"].allocate("k", identity="x")) == "10.40.1.1"


def test_a_heartbeat_from_the_future_holds_no_longer_than_lost_address_hold(
        tmp_path: Path) -> None:
    _crashed_run(tmp_path, heartbeat=time.time() + 86400)  # the clock was wrong then
    p = _start(tmp_path)
    assert p.core.held and all(h.until <= time.time() + 600 for h in p.core.held)


def test_expired_holds_are_released_by_the_timer(tmp_path: Path) -> None:
    _crashed_run(tmp_path)
    p = _start(tmp_path)
    pool = p.core.pools["vpngroup"]
    assert pool.held == 2
    p.wall_skew = 601  # the wall clock passes the holds' end (600 s after last seen)
    p.core.housekeeping(p.now)
    assert pool.held == 0 and p.core.held == []


def test_clean_shutdown_is_not_a_crash_and_keeps_the_counters(tmp_path: Path) -> None:
    _crashed_run(tmp_path, clean=True, sessions=())
    p = _start(tmp_path)
    assert not p.lines("ended unexpectedly")
    summary = p.core.sessions.summary()
    assert (summary["peak"], summary["cumulative"]) == (7, 41)
    p.core.shutdown(p.now)  # what run() does on SIGTERM
    rec = read_state(state_path(_store(tmp_path)))
    assert rec is not None and rec.clean and rec.pid == os.getpid()


def test_this_run_is_recorded_unclean_from_the_start(tmp_path: Path) -> None:
    p = _start(tmp_path)
    assert p.lines("first start")
    rec = read_state(state_path(_store(tmp_path)))
    assert rec is not None and not rec.clean and rec.pid == os.getpid()
    assert (rec.peak, rec.cumulative, rec.sessions) == (0, 0, ())


@pytest.mark.parametrize(("content", "why"), [
    (b"\x00\xff garbage", "not valid JSON"),
    (None, "not valid JSON"),  # a partial write: the record cut in half
    (b"", "empty file"),
    (b'{"version": 99}', "unknown version"),
    (b'{"version": 1, "pid": 1}', "missing field"),
    (b'[1, 2]', "not a JSON object"),
    ("bad-ip", "not an IPv4 address"),  # a session whose pool address is not one
])
def test_unusable_record_is_a_clear_line_and_the_start_goes_on(
        tmp_path: Path, content: bytes | str | None, why: str) -> None:
    path = state_path(_store(tmp_path))
    if content == "bad-ip":
        rec = RunRecord(pid=1, started=1.0, heartbeat=2.0, clean=False, sessions=LOST)
        content = json.dumps(rec.to_json()).replace('"10.40.1.2"', '"10.40.1.999"').encode()
    if content is None:
        rec = RunRecord(pid=1, started=1.0, heartbeat=2.0, clean=False, sessions=LOST)
        full = json.dumps(rec.to_json()).encode()
        content = full[: len(full) // 2]
    assert isinstance(content, bytes)
    path.write_bytes(content)
    with pytest.raises(StateError, match=why):
        read_state(path)
    p = _start(tmp_path)
    bad = p.lines("unusable")
    assert len(bad) == 1 and why in bad[0] and str(path) in bad[0], p.console.getvalue()
    assert _severity(bad[0]) <= 3
    assert p.core.sessions.summary()["cumulative"] == 0
    rec = read_state(path)  # replaced by this run's record
    assert rec is not None and rec.pid == os.getpid()


def test_a_record_that_cannot_be_written_is_logged_once(tmp_path: Path) -> None:
    p = _start(tmp_path)
    (tmp_path / "events.state.json").unlink()
    (tmp_path / "events.state.json").mkdir()  # rename over a directory fails
    for _ in range(3):
        p.core.write_state(p.now)
    assert len(p.lines("cannot write the state record")) == 1, p.console.getvalue()


def test_pool_hold_keeps_an_address_for_its_identity_only() -> None:
    from vpnhub.session.pool import MemoryAddressPool

    pool = MemoryAddressPool("10.0.0.0/29")  # .1 .. .6
    assert pool.hold("10.0.0.2", "alice")
    assert not pool.hold("10.0.0.2", "bob")  # held already
    assert not pool.hold("10.0.1.1", "bob")  # not ours
    got = [str(pool.allocate(i)) for i in range(5)]
    assert "10.0.0.2" not in got and pool.available == 0
    assert str(pool.allocate("a", identity="alice")) == "10.0.0.2"
    pool.release("a")
    assert pool.hold(ipaddress.IPv4Address("10.0.0.2"), "alice")
    pool.unhold("10.0.0.2")
    assert str(pool.allocate("b", identity="carol")) == "10.0.0.2"


# ------------------------------------------------------------ off the event loop (issue 13)
def test_encode_state_is_the_same_document_as_to_json() -> None:
    rec = RunRecord(pid=1, started=2.0, heartbeat=3.0, clean=True, peak=4, cumulative=5,
                    sessions=(*LOST, SessionRecord('a"sessions":[]', "g", "203.0.113.9", 1,
                                                   None, 6.0)),
                    held=(HeldAddress("vpngroup", "10.40.1.3", "vpnuser3", 9.0),))
    assert json.loads(encode_state(rec)) == json.loads(json.dumps(rec.to_json()))


def test_background_writes_land_and_the_clean_record_is_last(tmp_path: Path) -> None:
    path = tmp_path / "s.state.json"
    keeper = StateKeeper(path, pid=1, started=2.0)
    keeper.start_background()
    rec = RunRecord(pid=1, started=2.0, heartbeat=3.0, clean=False, sessions=LOST)
    assert keeper.write(rec, 100.0) is None
    assert keeper.stop_background() is None  # waits for the write under way
    assert read_state(path) == rec
    final = RunRecord(pid=1, started=2.0, heartbeat=4.0, clean=True)
    assert keeper.write(final, 101.0) is None  # synchronous again
    assert read_state(path) == final


def test_a_heartbeat_reuses_the_rows_of_unchanged_sessions_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vpnhub.concentrator import staterecord
    encoded: list[int] = []
    real = staterecord.session_rows
    monkeypatch.setattr(staterecord, "session_rows",
                        lambda sessions: encoded.append(len(sessions)) or real(sessions))
    path = tmp_path / "s.state.json"
    keeper = StateKeeper(path, pid=1, started=2.0)
    for beat, sessions in ((3.0, LOST), (4.0, tuple(LOST)), (5.0, LOST[:1])):
        rec = RunRecord(pid=1, started=2.0, heartbeat=beat, clean=False, sessions=sessions)
        assert keeper.write(rec, beat) is None
        assert read_state(path) == rec  # the heartbeat and the sessions as they are now
    assert encoded == [2, 1]  # the equal sessions of the second write were not encoded


def test_raw_sessions_make_the_same_record_on_the_writer_thread(tmp_path: Path) -> None:
    """The loop hands over field tuples (addresses still objects); the file is the one
    the SessionRecords built on the loop made, and an equal heartbeat reuses the rows."""
    raw = [("vpnuser1", "vpngroup", "203.0.113.78", 4500,
            ipaddress.IPv4Address("10.40.1.1"), 1_700_000_000.0),
           ("vpnuser2", "vpngroup", "203.0.113.78", 61234,
            ipaddress.IPv4Address("10.40.1.2"), 1_700_000_100.0),
           ("vpnuser3", "vpngroup", "203.0.113.9", 500, None, 1_700_000_200.0)]
    loop_built = (*LOST, SessionRecord("vpnuser3", "vpngroup", "203.0.113.9", 500, None,
                                       1_700_000_200.0))
    assert session_records(raw) == loop_built
    ref = tmp_path / "ref.state.json"
    write_state(ref, RunRecord(pid=1, started=2.0, heartbeat=3.0, clean=False,
                               sessions=loop_built))
    path = tmp_path / "s.state.json"
    keeper = StateKeeper(path, pid=1, started=2.0)
    keeper.start_background()
    assert keeper.write(RunRecord(pid=1, started=2.0, heartbeat=3.0, clean=False), 3.0,
                        raw) is None
    assert keeper.stop_background() is None
    assert path.read_bytes() == ref.read_bytes()
    rows = keeper._raw
    assert keeper.write(RunRecord(pid=1, started=2.0, heartbeat=4.0, clean=False), 14.0,
                        list(raw)) is None
    assert keeper._raw is rows  # the same sessions: their rows were not encoded again
    rec = read_state(path)
    assert rec is not None and rec.heartbeat == 4.0 and rec.sessions == loop_built


def test_a_background_write_error_is_reported_once_by_a_later_call(tmp_path: Path) -> None:
    keeper = StateKeeper(tmp_path / "missing" / "s.state.json", pid=1, started=2.0)
    keeper.start_background()
    rec = RunRecord(pid=1, started=2.0, heartbeat=3.0, clean=False)
    assert keeper.write(rec, 100.0) is None  # the error comes back later, from the loop
    msg = keeper.stop_background()
    assert msg is not None and "cannot write the state record" in msg
    keeper.start_background()
    keeper.write(rec, 103.0)
    assert keeper.stop_background() is None  # the same error is not logged again


def test_the_concentrator_writes_in_the_background_and_shuts_down_clean(
        tmp_path: Path) -> None:
    p = _start(tmp_path)
    p.core.state_in_background()
    p.core.write_state(p.now)
    p.core.shutdown(p.now)  # waits for the background write, then the clean record
    rec = read_state(state_path(_store(tmp_path)))
    assert rec is not None and rec.clean and rec.pid == os.getpid()


def _two_sessions(tmp_path: Path) -> CoreRig:
    p = _start(tmp_path)
    for user in ("vpnuser1", "vpnuser2"):
        p.connect(p.add_pc(user))
    assert len(p.core.sessions) == 2, p.console.getvalue()
    return p


def test_the_record_taken_in_steps_is_the_one_taken_at_once(tmp_path: Path) -> None:
    p = _two_sessions(tmp_path)
    path = state_path(_store(tmp_path))
    p.core.write_state(p.now)  # one step (STATE_STEP sessions per step)
    once = read_state(path)
    turns = list(p.core.write_state_in_steps(p.now + 10, step=1))
    stepped = read_state(path)
    assert len(turns) == 1  # the loop's turn between the two sessions
    assert once is not None and stepped is not None
    assert {s.user for s in once.sessions} == {"vpnuser1", "vpnuser2"}
    assert (stepped.sessions, stepped.peak, stepped.cumulative) == (
        once.sessions, once.peak, once.cumulative)


def test_a_session_that_ends_during_a_stepped_record_makes_the_next_one_due(
        tmp_path: Path) -> None:
    from vpnhub.concentrator.staterecord import HEARTBEAT, MIN_INTERVAL

    p = _two_sessions(tmp_path)
    quiet = p.core.write_state_in_steps(p.now, step=1)
    list(quiet)
    assert not p.core.state_due(p.now + MIN_INTERVAL)  # nothing changed: the heartbeat
    walk = p.core.write_state_in_steps(p.now, step=1)
    next(walk)  # the first session copied; the loop runs a logout meanwhile
    first = p.core.sessions.all()[0]
    assert p.core.logout(first.key, "admin")
    p.settle()
    assert len(p.core.sessions) == 1
    list(walk)  # the record is written, with or without the ended session
    assert p.core.state_due(p.now + MIN_INTERVAL) and MIN_INTERVAL < HEARTBEAT
    p.core.write_state(p.now + MIN_INTERVAL)
    rec = read_state(state_path(_store(tmp_path)))
    assert rec is not None and [s.user for s in rec.sessions] == [
        s.user for s in p.core.sessions.all()]
