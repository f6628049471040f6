"""Micro-benchmark of the concentrator's state record (crash recovery, issue 11).

    .venv/bin/python bench/state_record.py [--sessions 2,100,1000,10000] [--repeat 20]

For each number of sessions, writes the record (JSON, temp file, fsync,
rename: what the concentrator does at most every 2 s while sessions change,
and every 10 s otherwise) and reads it back (what a start does); prints the
file size and the median milliseconds of each. Run it on the disk that holds
the event store (`--dir`, default: a temporary directory). "beat cpu ms": the
CPU time (`time.process_time`) of one heartbeat of an idle run through the
concentrator's `StateKeeper` (the same sessions, a new heartbeat time; since
issue 13 their JSON rows are reused).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from vpnhub.concentrator.staterecord import (
    HEARTBEAT,
    MIN_INTERVAL,
    RunRecord,
    SessionRecord,
    StateKeeper,
    read_state,
    write_state,
)


def record(n: int) -> RunRecord:
    now = time.time()
    sessions = tuple(
        SessionRecord(f"user{i:05d}", "vpngroup", "203.0.113.78", 1024 + i % 64000,
                      f"10.{40 + i // 65536}.{i // 256 % 256}.{i % 256}", now - i)
        for i in range(n))
    return RunRecord(pid=12345, started=now - 3600, heartbeat=now, clean=False, peak=n,
                     cumulative=10 * n, sessions=sessions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", default="2,100,1000,10000")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--dir", default="", help="where to write (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir or None) as d:
        path = Path(d) / "events.state.json"
        row = "{:>9} {:>11} {:>10} {:>9} {:>13}"
        print(f"writes: on a change at most every {MIN_INTERVAL:g} s, else every"
              f" {HEARTBEAT:g} s")
        print(row.format("sessions", "file bytes", "write ms", "read ms", "beat cpu ms"))
        for n in (int(x) for x in args.sessions.split(",") if x):
            rec = record(n)
            writes, reads = [], []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                write_state(path, rec)
                t1 = time.perf_counter()
                assert read_state(path) == rec
                reads.append(time.perf_counter() - t1)
                writes.append(t1 - t0)
            beats = heartbeats(path, rec, args.repeat)
            print(row.format(n, path.stat().st_size, f"{statistics.median(writes) * 1e3:.2f}",
                             f"{statistics.median(reads) * 1e3:.2f}",
                             f"{statistics.median(beats) * 1e3:.2f}"))


def heartbeats(path: Path, rec: RunRecord, repeat: int) -> list[float]:
    """CPU seconds of each heartbeat after the first write (synchronous writes)."""
    keeper = StateKeeper(path, pid=rec.pid, started=rec.started)
    keeper.write(rec, 0.0)
    out = []
    for i in range(repeat):
        beat = replace(rec, heartbeat=rec.heartbeat + HEARTBEAT * (i + 1))
        t0 = time.process_time()
        keeper.write(beat, HEARTBEAT * (i + 1))
        out.append(time.process_time() - t0)
    return out


if __name__ == "__main__":
    main()
