"""A real PostgreSQL 15 for the cluster tests (issue 17), removed afterwards.

`PgServer` runs initdb as the `postgres` user (initdb and postgres refuse
root) in a temporary directory, listens on `listen` (127.0.0.1 by default; an
address of a network namespace with `netns=`) on a free port and on a unix
socket in that directory, with trust authentication, and makes a non-superuser
role `vpnhub` owning a database `vpnhub` (the migrations must work without
superuser rights). `stop()` / `start()` take it away and bring it back (the
outage tests); `close()` stops it whatever state it is in and deletes the
directory. Use it as a context manager, or through the `pg` fixtures of
tests/cluster/conftest.py.

    with PgServer() as pg:
        dsn = pg.dsn()            # host=127.0.0.1 port=... dbname=vpnhub user=vpnhub
        other = pg.new_database() # a fresh database for one test

In a namespace (the lab's cluster tests): PgServer(listen="10.0.5.1", netns="lab-db").
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PREFIX = "vpnhub-pg-"


def pg_problem() -> str | None:
    """Why a PostgreSQL server cannot be started here, or None."""
    if os.geteuid() != 0:
        return "needs root (initdb runs as the postgres user)"
    if not (PG_BIN / "initdb").exists():
        return f"PostgreSQL 15 is not installed ({PG_BIN}; run scripts/setup)"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "no postgres user (run scripts/setup)"
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    def __init__(self, *, listen: str = "127.0.0.1", port: int | None = None,
                 netns: str | None = None) -> None:
        self.listen = listen
        self.port = port or free_port()
        self.netns = netns
        self.dir = Path(tempfile.mkdtemp(prefix=PREFIX))
        self.data = self.dir / "data"
        self.sockets = self.dir / "sock"
        self.logfile = self.dir / "postgres.log"
        self._databases = 0
        pw = pwd.getpwnam("postgres")
        self.sockets.mkdir()
        os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        os.chown(self.sockets, pw.pw_uid, pw.pw_gid)
        try:
            self._initdb()
            self.start()
            self._psql("CREATE ROLE vpnhub LOGIN", "CREATE DATABASE vpnhub OWNER vpnhub")
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ lifecycle
    def _run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        cmd = ["runuser", "-u", "postgres", "--", *argv]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=timeout)

    def _initdb(self) -> None:
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres",
                  "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C")
        conf = self.data / "postgresql.conf"
        with conf.open("a") as f:
            f.write(f"listen_addresses = '{self.listen}'\nport = {self.port}\n"
                    f"unix_socket_directories = '{self.sockets}'\n"
                    "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                    "shared_buffers = 16MB\nmax_connections = 60\n")
        with (self.data / "pg_hba.conf").open("a") as f:
            f.write("host all all 0.0.0.0/0 trust\n")  # a namespace's addresses (test only)

    def start(self) -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.logfile),
                  "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`immediate`: as a crash; `fast`: connections cut)."""
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        return self._postmaster_pid() is not None

    def _postmaster_pid(self) -> int | None:
        try:
            pid = int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def close(self) -> None:
        """Stopped and removed, whatever happened before."""
        pid = self._postmaster_pid()
        if pid is not None:
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                self.stop("immediate")
            pid = self._postmaster_pid()
            if pid is not None:  # pg_ctl failed: the postmaster we started, by its pid
                os.kill(pid, signal.SIGKILL)
                for _ in range(50):
                    if self._postmaster_pid() is None:
                        break
                    time.sleep(0.1)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PgServer:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # ------------------------------------------------------------ databases
    def dsn(self, dbname: str = "vpnhub", *, unix: bool = False) -> str:
        host = str(self.sockets) if unix else self.listen
        return f"host={host} port={self.port} dbname={dbname} user=vpnhub"

    def admin_dsn(self, dbname: str = "vpnhub") -> str:
        """As the superuser, over the unix socket (tests that inspect or break things)."""
        return f"host={self.sockets} port={self.port} dbname={dbname} user=postgres"

    def new_database(self, *, unix: bool = False) -> str:
        """A fresh empty database owned by vpnhub; its DSN (`unix`: over the socket,
        which reaches the server from any network namespace)."""
        self._databases += 1
        name = f"t{self._databases}"
        self._psql(f"CREATE DATABASE {name} OWNER vpnhub")
        return self.dsn(name, unix=unix)

    def _psql(self, *statements: str) -> None:
        for sql in statements:
            self._run(str(PG_BIN / "psql"), "-h", str(self.sockets), "-p", str(self.port),
                      "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-qc", sql)
