"""The manager of a cluster member over a real PostgreSQL 15 (issue 17).

Two real `ClusterMember`s share a fresh database of a `PgServer`
(tests/pgserver.py): member `a` is the concentrator the manager serves
(the fake concentrator of manager_fakes.py: its session store is the one `a`
mirrors into the directory, its logout the local one), member `b` is another
concentrator, here only its session store and its command callback (a logout
another member NOTIFYs ends the session in b's store, as the service's
`core.logout` would). Both run their threads against the server loop of the
`ManagerServer`; every store write happens in that loop (`srv.run`).

`a` holds the "virtual address" (its [cluster] virtual_address is 127.0.0.1,
which this namespace has: `address_is_local` finds it), so it is the master;
`b`'s virtual address is a documentation address nobody has.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from manager_fakes import ManagerServer
from pgserver import PgServer

from vpnhub.cluster.member import ClusterMember
from vpnhub.config import ClusterConfig
from vpnhub.secret import Secret
from vpnhub.session.model import ChildInfo, SessionKey
from vpnhub.session.store import MemorySessionStore

HEARTBEAT = 0.2


class Log:
    """Member b's event log, recorded."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, int, str]] = []

    def add(self, cls: str, severity: int, text: str, **_: Any) -> None:
        self.lines.append((cls, severity, text))


def config(dsn: str, name: str, vip: str, public: str) -> ClusterConfig:
    return ClusterConfig(dsn=Secret(dsn), member=name,
                         virtual_address=ipaddress.IPv4Address(vip),
                         public_address=ipaddress.IPv4Address(public), heartbeat=HEARTBEAT,
                         member_timeout=2.0, pool_block=28)


class ClusterRig:
    def __init__(self, tmp: Path, pg: PgServer, *, extra: str = "") -> None:
        dsn = pg.new_database()
        self.pg = pg
        self.srv = ManagerServer(tmp, extra=extra)
        self.a = ClusterMember(config(dsn, "a", "127.0.0.1", "198.51.100.11"),
                               self.srv.conc.sessions, max_sessions=100, log=self.srv.log)
        self.a.on_logout = lambda key, by: self.srv.conc.logout(key, by)
        self.srv.cluster = self.a
        self.srv.conc.cluster = self.a  # type: ignore[attr-defined]  # as the service sets core.cluster
        self.b_store = MemorySessionStore(50)
        self.b_log = Log()
        self.b = ClusterMember(config(dsn, "b", "198.51.100.10", "198.51.100.12"),
                               self.b_store, max_sessions=50, log=self.b_log)
        self.b.on_logout = self._b_logout
        self.b_asked: list[tuple[SessionKey, str]] = []
        self._n = 100

    def _b_logout(self, key: SessionKey, by: str) -> bool:
        """b's command callback (on the loop): as core.logout, the session ends."""
        self.b_asked.append((key, by))
        return self.b_store.end(key, f"logged out by administrator {by}") is not None

    def start(self) -> ClusterRig:
        self.srv.start()
        assert self.a.start(self.srv.loop, 20), self.a.last_error
        assert self.b.start(self.srv.loop, 20), self.b.last_error
        return self

    def stop(self) -> None:
        for m in (self.a, self.b):
            m.stop()
        self.srv.stop()

    def login_b(self, user: str) -> str:
        """A logged-in session on member b; its id."""
        self._n += 1
        n = self._n
        key = (n.to_bytes(8, "big"), (n + 5000).to_bytes(8, "big"))

        def start() -> None:
            self.b_store.start(key, "203.0.113.9", 40000 + n, group="vpngroup", user=user,
                               authenticated=True, login_time=time.time(),
                               assigned_ip=ipaddress.IPv4Address(f"10.40.2.{n % 250 + 2}"))
            # an IPsec SA: the session is active (it counts in the member's load)
            self.b_store.add_child(key, ChildInfo(0x3000 + n, 0x4000 + n, 12, 256, 2, 3,
                                                  "0.0.0.0/0", f"10.40.2.{n % 250 + 2}/32",
                                                  28800, time.time()))
        self.srv.run(start)
        return key[0].hex() + key[1].hex()

    def login_a(self, user: str, port: int) -> str:
        s = self.srv.run(lambda: self.srv.conc.add_session(user, port))
        return str(s.key[0].hex() + s.key[1].hex())


def until(cond: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    """Poll `cond` until true (from the test's thread); fail saying `what`."""
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
