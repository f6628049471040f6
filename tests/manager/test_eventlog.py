"""The event log: records, severities per class, repeats, the bounded SQLite store."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

import pytest

from vpnhub.config import parse_config
from vpnhub.eventlog import CLASSES, SEVERITY_MEANING, EventFilter, EventLog, EventStore

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
