"""The event log: numbered records with class, severity, peer, group, user, text.

Severities as on the VPN 3000 (1 fault ... 13 most detailed); 1-3 go to the
console by default and 1-5 are kept. The filterable store, the web view and
SQLite persistence build on this record (issue 6).
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

SEVERITY_MEANING = {
    1: "fault", 2: "warning (major)", 3: "warning (minor)", 4: "information (main events)",
    5: "information (milestones)", 6: "information (details)", 7: "debug (state)",
    8: "debug (decode summary)", 9: "debug (full decode)", 10: "debug (internals)",
    11: "trace", 12: "trace (detailed)", 13: "trace (everything)",
}


@dataclass(frozen=True)
class Record:
    seq: int
    time: float
    cls: str
    severity: int
    text: str
    peer: str = ""
    group: str = ""
    user: str = ""
    repeat: int = 1

    def format(self) -> str:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.time))
        who = f" peer={self.peer}" if self.peer else ""
        who += f" group={self.group}" if self.group else ""
        who += f" user={self.user}" if self.user else ""
        return f"{self.seq} {stamp} SEV={self.severity} {self.cls}{who} {self.text}"


class EventLog:
    """Bounded in memory; prints what is at or below the console severity."""

    def __init__(self, *, console_severity: int = 3, keep_severity: int = 5,
                 size: int = 2048, out: TextIO | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.console_severity = console_severity
        self.keep_severity = keep_severity
        self.records: deque[Record] = deque(maxlen=size)
        self.out = out if out is not None else sys.stdout
        self.clock = clock
        self.seq = 0

    def add(self, cls: str, severity: int, text: str, *, peer: str = "", group: str = "",
            user: str = "") -> Record | None:
        if severity > max(self.console_severity, self.keep_severity):
            return None
        self.seq += 1
        rec = Record(self.seq, self.clock(), cls, severity, text, peer, group, user)
        if severity <= self.keep_severity:
            self.records.append(rec)
        if severity <= self.console_severity:
            print(rec.format(), file=self.out, flush=True)
        return rec
