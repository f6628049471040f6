"""Processes started by the lab, and how we stop them (and only them).

Every process the lab starts is recorded in a small JSON file under
``STATE_ROOT/<prefix>/pids/`` with its PID and its kernel start time (field 22
of ``/proc/PID/stat``). PID plus start time names one process for the whole
uptime of the machine, so a later run with the same prefix can stop what a
crashed run left behind without ever signalling an unrelated process that
happens to have reused the PID.

Orphans of a crashed run are re-parented to PID 1, which on this kind of VM
does not reap them; we try ``waitpid`` anyway (it works when the caller is a
subreaper) and treat a zombie as gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

STATE_ROOT = Path(os.environ.get("VPNHUB_LAB_STATE", "/run/vpnhub-lab"))


def state_dir(prefix: str) -> Path:
    """Where the records of one lab (one prefix) live; /run so a reboot clears them."""
    return STATE_ROOT / prefix


def proc_starttime(pid: int) -> int | None:
    """Kernel start time of PID in clock ticks, or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ')'
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[19])


def proc_state(pid: int) -> str | None:
    """One-letter state of PID (R, S, Z, ...), or None if it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def proc_comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def is_running(pid: int, starttime: int | None = None) -> bool:
    """True if PID is a live (non-zombie) process, and the same one when starttime is given."""
    st = proc_starttime(pid)
    if st is None or (starttime is not None and st != starttime):
        return False
    return proc_state(pid) not in (None, "Z", "X")


def _reap(pid: int) -> None:
    # only succeeds for our own children (or orphans when we are a subreaper)
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def terminate_pid(pid: int, starttime: int | None, timeout: float = 5.0) -> bool:
    """SIGTERM (SIGKILL after timeout) the process (pid, starttime); True if we signalled it."""
    if not is_running(pid, starttime):
        _reap(pid)
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not is_running(pid, starttime):
            return True
        time.sleep(0.02)
    if is_running(pid, starttime):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        end = time.monotonic() + 2.0
        while is_running(pid, starttime) and time.monotonic() < end:
            _reap(pid)
            time.sleep(0.02)
    _reap(pid)
    return True


@dataclass(frozen=True)
class ProcRecord:
    """What we write down about a process we started."""

    pid: int
    starttime: int
    name: str
    netns: str
    argv: tuple[str, ...]

    def to_json(self) -> str:
        return json.dumps(
            {
                "pid": self.pid,
                "starttime": self.starttime,
                "name": self.name,
                "netns": self.netns,
                "argv": list(self.argv),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> ProcRecord:
        d = json.loads(text)
        return cls(int(d["pid"]), int(d["starttime"]), str(d["name"]), str(d["netns"]),
                   tuple(str(a) for a in d["argv"]))


def records(prefix: str) -> Iterator[tuple[Path, ProcRecord]]:
    """Every process record of the lab `prefix` (unreadable records are skipped)."""
    d = state_dir(prefix) / "pids"
    if not d.is_dir():
        return
    for f in sorted(d.glob("*.json")):
        try:
            yield f, ProcRecord.from_json(f.read_text())
        except (OSError, ValueError, KeyError):
            continue


@dataclass
class Proc:
    """A background process running in one lab host (see ``Topology.spawn``)."""

    name: str
    netns: str
    argv: tuple[str, ...]
    log: Path
    popen: subprocess.Popen[bytes]
    record: ProcRecord
    record_path: Path
    stopped: bool = field(default=False)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 5.0, sig: int = signal.SIGTERM) -> int | None:
        """Stop the process (sig, then SIGKILL after timeout), reap it, drop its record."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5.0)
        self.stopped = True
        with contextlib.suppress(OSError):
            self.record_path.unlink()
        return self.popen.returncode


def start(
    prefix: str,
    name: str,
    netns: str,
    argv: Sequence[str],
    log: Path,
    env: Mapping[str, str] | None = None,
) -> Proc:
    """Start argv inside netns (``ip netns exec``), output to log, and record it."""
    log.parent.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    cmd = ["ip", "netns", "exec", netns, *argv]
    with log.open("wb") as out:
        # own session: a Ctrl-C on the terminal reaches the lab driver only,
        # which then stops the peers in order (clients before the concentrator)
        popen = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env=full_env, start_new_session=True,
        )
    st = proc_starttime(popen.pid)
    rec = ProcRecord(popen.pid, st if st is not None else -1, name, netns, tuple(argv))
    pids = state_dir(prefix) / "pids"
    pids.mkdir(parents=True, exist_ok=True)
    path = pids / f"{popen.pid}.json"
    path.write_text(rec.to_json())
    return Proc(name, netns, tuple(argv), log, popen, rec, path)


def write_owner(prefix: str) -> None:
    """Record which process owns lab `prefix` (the one that built it)."""
    d = state_dir(prefix)
    d.mkdir(parents=True, exist_ok=True)
    me = os.getpid()
    # written whole or not at all: a reaper reading a half-written record would take
    # the lab for an orphan (owner_alive: None) and remove it under its owner's feet
    tmp = d / f"owner.{me}.tmp"
    tmp.write_text(f"{me} {proc_starttime(me)}\n")
    os.replace(tmp, d / "owner")


def owner_alive(prefix: str) -> bool | None:
    """Whether the process that built lab `prefix` still runs (None: no owner record)."""
    try:
        pid, start = (state_dir(prefix) / "owner").read_text().split()
    except (OSError, ValueError):
        return None
    return is_running(int(pid), int(start) if start.isdigit() else None)


def kill_recorded(prefix: str, timeout: float = 3.0) -> list[ProcRecord]:
    """Stop every still-running process recorded for `prefix`; returns those signalled."""
    killed = []
    for path, rec in records(prefix):
        if terminate_pid(rec.pid, rec.starttime, timeout):
            killed.append(rec)
        with contextlib.suppress(OSError):
            path.unlink()
    return killed
