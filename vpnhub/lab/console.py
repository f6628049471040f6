"""The running lab's web console, one step from this machine's browser.

The manager listens on 127.0.0.1:8443 inside the concentrator's namespace,
where no browser of this machine can reach it. So the lab:

- makes a manager account `admin` with a random password (its scrypt hash in
  the generated configuration; the password itself only in `console.json`,
  mode 0600, in the lab's run directory, which `lab down` removes);
- forwards a port of this machine's loopback (127.0.0.1:8443, or the next
  free one) to the manager: a thread of the lab daemon that listens in the
  root namespace and connects from the concentrator's namespace (setns(2)
  acts on the calling thread only). Loopback only: nothing is reachable from
  the network, and no interface, route or firewall rule is added, so `lab
  down` has nothing to remove but the daemon, which holds the listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import secrets
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

from vpnhub.auth.users import hash_password

__all__ = ["CONSOLE_FILE", "ConsoleForwarder", "ConsoleLogin", "load_login", "new_login"]

CONSOLE_FILE = "console.json"
ADMIN_NAME = "admin"
LISTEN_HOST = "127.0.0.1"
FIRST_PORT = 8443  # the manager's own default, when free on this machine
PORTS_TRIED = 100
MANAGER = ("127.0.0.1", 8443)  # [admin] listen's default, in the concentrator's namespace
MAX_CONNECTIONS = 64  # a browser opens a handful; more are refused, not queued
_CLONE_NEWNET = 0x40000000
_CHUNK = 65536


@dataclass(frozen=True)
class ConsoleLogin:
    user: str
    password: str
    password_hash: str


def new_login() -> ConsoleLogin:
    """A fresh account: a random 16-character password (about 96 bits)."""
    password = secrets.token_urlsafe(12)
    return ConsoleLogin(ADMIN_NAME, password, hash_password(password))


def save_login(run_dir: Path, login: ConsoleLogin, url: str) -> Path:
    """console.json, 0600 from its creation (never readable by others, not even briefly)."""
    path = run_dir / CONSOLE_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"url": url, "user": login.user, "password": login.password}, f)
    return path


def load_login(run_dir: Path) -> dict[str, str] | None:
    try:
        data = json.loads((run_dir / CONSOLE_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str)
                                             for k in ("url", "user", "password")):
        return None
    return {k: str(data[k]) for k in ("url", "user", "password")}


def _listen() -> socket.socket:
    """A listener on the first free port from FIRST_PORT (in the caller's namespace)."""
    last: OSError | None = None
    for port in range(FIRST_PORT, FIRST_PORT + PORTS_TRIED):
        try:
            return socket.create_server((LISTEN_HOST, port), backlog=16)
        except OSError as e:
            last = e
    raise OSError(f"no free port on {LISTEN_HOST} from {FIRST_PORT}: {last}")


def _enter_netns(netns: str) -> None:
    fd = os.open(f"/var/run/netns/{netns}", os.O_RDONLY)
    try:
        setns = getattr(os, "setns", None)  # Python >= 3.12
        if setns is not None:
            setns(fd, _CLONE_NEWNET)
            return
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({netns}): {os.strerror(err)}")
    finally:
        os.close(fd)


class ConsoleForwarder:
    """127.0.0.1:PORT of this namespace -> the manager in namespace `netns`."""

    def __init__(self, netns: str, target: tuple[str, int] = MANAGER) -> None:
        self.netns = netns
        self.target = target
        self.listener = _listen()  # in the caller's (root) namespace
        self.port = int(self.listener.getsockname()[1])
        self.url = f"http://{LISTEN_HOST}:{self.port}/"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)
        self._thread = threading.Thread(target=self._run, name="lab-console", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            self.listener.close()
            raise OSError(f"console forwarder: {self._error}")

    def _run(self) -> None:
        try:
            _enter_netns(self.netns)  # this thread's sockets are made in the lab's namespace
            self._loop = asyncio.new_event_loop()
        except BaseException as e:  # reported to the constructor
            self._error = e
            self._ready.set()
            return
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        server = await asyncio.start_server(self._client, sock=self.listener)
        self._stopped = asyncio.Event()
        self._ready.set()
        async with server:
            await self._stopped.wait()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._slots.locked():
            writer.close()
            return
        async with self._slots:
            try:
                up_r, up_w = await asyncio.wait_for(asyncio.open_connection(*self.target), 5)
            except (OSError, TimeoutError):
                writer.close()
                return
            await asyncio.gather(_pump(reader, up_w), _pump(up_r, writer))

    def close(self) -> None:
        loop = self._loop
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(self._stopped.set)
            self._thread.join(5)
        with contextlib.suppress(OSError):
            self.listener.close()


async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while data := await src.read(_CHUNK):
            dst.write(data)
            await dst.drain()
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.close()
