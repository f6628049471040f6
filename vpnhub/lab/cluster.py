"""The cluster's own peers in the lab: PostgreSQL and keepalived (issue 17).

- ``Postgres``: PostgreSQL 15 in the ``db`` namespace, run as the ``postgres``
  user (initdb and postgres refuse root), its data directory under the lab's
  state directory, listening only on 192.168.2.5 and on a socket in that
  directory, a ``vpnhub`` role and database; ``pg_hba.conf`` lets the role in
  from the members' private addresses only (SCRAM password, written into each
  member's 0600 configuration, never printed).
- ``start_keepalived``: one keepalived per member, VRRP only, configured from
  ``templates/keepalived.conf``: one instance, the virtual address, unicast
  adverts, priorities in member order, and a ``vrrp_script`` that fails when the
  member's vpnhub process is gone (``templates/vpnhub-alive.sh`` reads the PID
  and start time the lab writes), so killing the master's vpnhub moves the
  address. A notify script logs each state change with its time.

Every process is started through ``Topology.spawn`` (recorded by PID and start
time; removed by ``down``), every file lives in the lab's directories.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from vpnhub.lab import procs
from vpnhub.lab.peers import render
from vpnhub.lab.procs import Proc
from vpnhub.lab.topology import (
    INTERNET,
    VIRTUAL_ADDRESS,
    Host,
    LabError,
    Topology,
    wait_until,
)

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_PORT = 5432
PG_USER = "postgres"  # the OS user the server runs as
DB_NAME = "vpnhub"
DB_ROLE = "vpnhub"
KEEPALIVED = "keepalived"
VRID = 50
TOP_PRIORITY = 150  # m1; each next member 10 lower


def _as_postgres(argv: list[str]) -> list[str]:
    """argv run as the postgres user; setpriv execs (no extra parent to signal)."""
    return ["setpriv", f"--reuid={PG_USER}", f"--regid={PG_USER}", "--clear-groups", "--",
            *argv]


@dataclass
class Postgres:
    """PostgreSQL of a lab cluster: where it is, how members reach it, and its process."""

    topo: Topology
    host: Host
    base: Path  # owned by postgres: data/, the socket, the log
    password: str
    members: tuple[str, ...]  # private addresses allowed in
    proc: Proc | None = None

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def log(self) -> Path:
        return self.topo.run_dir / "postgres.log"

    @property
    def dsn(self) -> str:
        """The members' libpq connection string (holds the password: a secret)."""
        return (f"host={self.host.addr} port={PG_PORT} dbname={DB_NAME} user={DB_ROLE}"
                f" password={self.password} connect_timeout=3")

    @property
    def dsn_shown(self) -> str:
        return f"host={self.host.addr} port={PG_PORT} dbname={DB_NAME} user={DB_ROLE}"

    def init(self) -> None:
        """initdb, the configuration, start, then the role and the database."""
        pw = _pw_entry(PG_USER)
        self.base.mkdir(parents=True, exist_ok=True)
        os.chown(self.base, pw[0], pw[1])
        os.chmod(self.base, 0o700)
        cp = subprocess.run(
            _as_postgres([str(PG_BIN / "initdb"), "-D", str(self.data_dir), "-U", PG_USER,
                          "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions"]),
            capture_output=True, text=True, timeout=120, check=False, cwd="/")
        if cp.returncode != 0:
            raise LabError(f"initdb failed: {cp.stderr.strip()[-500:]}")
        with (self.data_dir / "postgresql.conf").open("a") as f:
            f.write(self._conf())
        (self.data_dir / "pg_hba.conf").write_text(self._hba())
        self.start()
        self.psql(f"CREATE ROLE {DB_ROLE} LOGIN PASSWORD '{self.password}'",
                  db="postgres")
        self.psql(f"CREATE DATABASE {DB_NAME} OWNER {DB_ROLE}", db="postgres")

    def _conf(self) -> str:
        # a lab database: no durability needed, small, quick to stop and start
        return (
            "\n# vpnhub lab (vpnhub/lab/cluster.py)\n"
            f"listen_addresses = '{self.host.addr}'\n"
            f"port = {PG_PORT}\n"
            f"unix_socket_directories = '{self.base}'\n"
            "password_encryption = 'scram-sha-256'\n"
            "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
            "shared_buffers = 16MB\nmax_connections = 60\n"
            "logging_collector = off\nlog_line_prefix = '%m [%p] %h '\n"
            "log_connections = off\n"
        )

    def _hba(self) -> str:
        lines = ["# vpnhub lab: the superuser on the local socket only; the vpnhub role",
                 "# from the members' private addresses only, with its password",
                 f"local all {PG_USER} trust",
                 f"local {DB_NAME} {DB_ROLE} scram-sha-256"]
        lines += [f"host {DB_NAME} {DB_ROLE} {a}/32 scram-sha-256" for a in self.members]
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 30.0) -> float:
        """Start the server (again); returns the seconds until it accepts connections."""
        t0 = time.monotonic()
        if self.proc is not None and self.proc.alive():
            return 0.0
        self.proc = self.topo.spawn(
            self.host, _as_postgres([str(PG_BIN / "postgres"), "-D", str(self.data_dir)]),
            self.log, name="postgres")
        proc = self.proc

        def ready() -> bool:
            if not proc.alive():
                raise LabError(f"postgres exited with {proc.returncode}:"
                               f" {proc.log_text()[-600:]}")
            cp = subprocess.run([str(PG_BIN / "pg_isready"), "-q", "-h", str(self.base),
                                 "-p", str(PG_PORT)], capture_output=True, timeout=10,
                                check=False)
            return cp.returncode == 0

        wait_until(ready, timeout, interval=0.1, what="PostgreSQL to accept connections")
        return time.monotonic() - t0

    def stop(self) -> None:
        """Fast shutdown (SIGINT): sessions are cut, as when the server goes away."""
        if self.proc is not None:
            self.proc.stop(15.0, sig=signal.SIGINT)

    def running(self) -> bool:
        return self.proc is not None and self.proc.alive()

    def psql(self, sql: str, *, db: str = DB_NAME) -> str:
        """Run sql as the superuser over the local socket; tab-separated rows."""
        cp = subprocess.run(
            [str(PG_BIN / "psql"), "-h", str(self.base), "-p", str(PG_PORT), "-U", PG_USER,
             "-d", db, "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1",
             "-c", sql], capture_output=True, text=True, timeout=30, check=False, cwd="/")
        if cp.returncode != 0:
            raise LabError(f"psql: {cp.stderr.strip()[-400:]}")
        return cp.stdout


def _pw_entry(user: str) -> tuple[int, int]:
    import pwd

    try:
        e = pwd.getpwnam(user)
    except KeyError as err:
        raise LabError(f"no {user} user: install PostgreSQL 15 (scripts/setup)") from err
    return e.pw_uid, e.pw_gid


def new_postgres(topo: Topology) -> Postgres:
    """A Postgres for the lab's db host (not started: ``init()``)."""
    if topo.db is None:
        raise LabError("this lab has no database host (one concentrator)")
    base = procs.state_dir(topo.prefix) / "pg"
    shutil.rmtree(base, ignore_errors=True)
    return Postgres(topo, topo.db, base, secrets.token_urlsafe(18),
                    tuple(m.private for m in topo.members))


# ---------------------------------------------------------------------------- keepalived
@dataclass
class Keepalived:
    """keepalived in one member namespace."""

    member: Host
    proc: Proc
    conf: Path
    pidfile: Path  # what the vrrp_script checks: "PID STARTTIME" of the member's vpnhub
    notify_log: Path

    def transitions(self) -> list[tuple[float, str]]:
        """(time, state) of each VRRP state change the notify script logged."""
        try:
            lines = self.notify_log.read_text().splitlines()
        except OSError:
            return []
        out = []
        for line in lines:
            parts = line.split()
            if len(parts) >= 4:
                try:
                    out.append((float(parts[0]), parts[3]))
                except ValueError:
                    continue
        return out


def member_dir(topo: Topology, member: Host) -> Path:
    return topo.run_dir / member.role


def write_tracked_pid(pidfile: Path, pid: int) -> None:
    """Point the member's vrrp_script at process `pid` (written atomically)."""
    st = procs.proc_starttime(pid)
    tmp = pidfile.with_suffix(".tmp")
    tmp.write_text(f"{pid} {st if st is not None else -1}\n")
    os.replace(tmp, pidfile)


def start_keepalived(topo: Topology, member: Host) -> Keepalived:
    """keepalived (VRRP only) in `member`, from templates/keepalived.conf."""
    d = member_dir(topo, member)
    d.mkdir(parents=True, exist_ok=True)
    index = topo.members.index(member)
    pidfile = d / "vpnhub.pid"
    check = d / "vpnhub-alive.sh"
    notify = d / "keepalived-notify.sh"
    notify_log = d / "vrrp-states.log"
    notify_log.unlink(missing_ok=True)
    check.write_text(render("vpnhub-alive.sh", {"MEMBER": member.role,
                                                "PIDFILE": str(pidfile)}))
    notify.write_text(render("keepalived-notify.sh", {"MEMBER": member.role,
                                                      "LOG": str(notify_log)}))
    peers = "\n".join(f"        {m.addr}" for m in topo.members if m != member)
    conf = d / "keepalived.conf"
    conf.write_text(render("keepalived.conf", {
        "MEMBER": member.role, "CHECK": str(check), "NOTIFY": str(notify),
        "IFACE": member.ifname, "VRID": str(VRID),
        "PRIORITY": str(TOP_PRIORITY - 10 * index), "SRC": member.addr, "PEERS": peers,
        "VIP": VIRTUAL_ADDRESS, "PLEN": INTERNET.split("/")[1],
    }))
    # keepalived keeps pid files in /run: its own mount namespace with a tmpfs
    # there, so that the members' keepalived never meet (as for charon)
    argv = ["unshare", "--mount", "sh", "-c",
            f"mount -t tmpfs vpnhub-lab /run && exec {KEEPALIVED} --dont-fork"
            f" --log-console --log-detail --vrrp --use-file {conf}"]
    proc = topo.spawn(member, argv, d / "keepalived.log", name=f"keepalived-{member.role}")
    return Keepalived(member, proc, conf, pidfile, notify_log)


def wait_master(topo: Topology, timeout: float = 15.0,
                exclude: tuple[str, ...] = ()) -> str:
    """The one member holding the virtual address (not in `exclude`), once it is so."""

    def one() -> str | None:
        held = [m for m in topo.holders() if m not in exclude]
        return held[0] if len(held) == 1 and len(topo.holders()) == 1 else None

    return wait_until(one, timeout, interval=0.05, what="one member to hold the virtual"
                      f" address {VIRTUAL_ADDRESS}")


def leases(pg: Postgres) -> list[tuple[str, str]]:
    """(address, member) of every lease in the directory (the cluster's tables)."""
    rows = pg.psql("SELECT host(address), member FROM leases")
    return [(a, m) for a, m in (line.split("\t", 1) for line in rows.splitlines() if "\t" in line)]
