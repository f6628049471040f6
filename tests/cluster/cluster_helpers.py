"""Members for the cluster tests: short heartbeats, a recording log, polling."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import time
from collections.abc import Callable
from typing import Any

from vpnhub.cluster.member import ClusterMember
from vpnhub.config import ClusterConfig, GroupConfig
from vpnhub.secret import Secret
from vpnhub.session.store import MemorySessionStore

GROUP = GroupConfig(name="staff", psk=Secret("k"), address_pool=ipaddress.IPv4Network(
    "10.77.0.0/24"))
HEARTBEAT = 0.2


class Log:
    """The event log's `add`, recorded."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, int, str]] = []

    def add(self, cls: str, severity: int, text: str, **_: Any) -> None:
        self.lines.append((cls, severity, text))

    def has(self, part: str) -> bool:
        return any(part in text for _, _, text in self.lines)


def cluster_config(dsn: str, name: str, *, timeout: float = 1.0, block: int = 28,
                   balancing: bool = True) -> ClusterConfig:
    last = {"c1": 11, "c2": 12, "c3": 13}.get(name, 20)
    return ClusterConfig(dsn=Secret(dsn), member=name,
                         virtual_address=ipaddress.IPv4Address("198.51.100.10"),
                         public_address=ipaddress.IPv4Address(f"198.51.100.{last}"),
                         load_balancing=balancing, heartbeat=HEARTBEAT, member_timeout=timeout,
                         pool_block=block)


def make_member(dsn: str, name: str, *, limit: int = 100, groups: tuple[GroupConfig, ...]
                = (GROUP,), **kw: Any) -> tuple[ClusterMember, MemorySessionStore, Log]:
    store = MemorySessionStore(limit)
    log = Log()
    m = ClusterMember(cluster_config(dsn, name, **kw), store, max_sessions=limit, log=log)
    for g in groups:
        m.pool_for_group(g)
    return m, store, log


async def start(m: ClusterMember, wait: float = 15.0) -> bool:
    return await asyncio.to_thread(m.start, asyncio.get_running_loop(), wait)


async def stop(m: ClusterMember, **kw: Any) -> None:
    await asyncio.to_thread(m.stop, **kw)


async def until(cond: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    """Poll `cond` (the loop runs meanwhile) until true; fail saying `what`."""
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def key(n: int) -> tuple[bytes, bytes]:
    return (n.to_bytes(8, "big"), (n + 1000).to_bytes(8, "big"))


def login(store: MemorySessionStore, n: int, user: str) -> tuple[bytes, bytes]:
    """A logged-in session (as the core leaves it after XAUTH)."""
    k = key(n)
    store.start(k, "203.0.113.5", 40000 + n, group=GROUP.name)
    store.update(k, user=user, authenticated=True)
    return k


class Cut:
    """A TCP relay to PostgreSQL that the test can cut and mend: one member's own
    network partition (the database stays up for the others)."""

    def __init__(self, port: int) -> None:
        import socket
        import threading

        self.target = port
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.open = True
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open:
                client.close()
                continue
            server = socket.create_connection(("127.0.0.1", self.target))
            with self._lock:
                self._socks += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: Any, b: Any) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(2)

    def cut(self) -> None:
        """Every relayed connection reset, new ones refused."""
        import socket
        import struct

        self.open = False
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            try:  # RST, as a dropped path would end in after the TCP timeouts
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()
            except OSError:
                pass

    def mend(self) -> None:
        self.open = True

    def close(self) -> None:
        self.cut()
        self.listener.close()
