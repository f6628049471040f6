"""The admin protocol: one JSON line in, one JSON line out, on a local unix socket.

Both ends live here: `request` (the `vpnhub` CLI, the lab, the benches),
`request_sessions` (every page of the concentrator's `sessions`) and
`start_server` (the concentrator's admin socket and the client's status
socket). A request is read with the limits of `vpnhub.net.jsonline`; whatever
goes wrong with it is answered as `{"error": ...}`, never raised into asyncio
(which would log a traceback and leave the caller without an answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from vpnhub.net.jsonline import RequestError, read_request

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]

# A local client writes its line at once; one that connects and says nothing
# must not hold a connection open forever.
READ_TIMEOUT = 5.0


def request(sock_path: str, req: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """One JSON request to a running server's socket (admin or status)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(sock_path)
        s.sendall(json.dumps(req).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    reply = json.loads(buf or b"{}")
    assert isinstance(reply, dict)
    return reply


# More pages than 10,000 sessions can fill at 1000 a page: a server that keeps
# answering a next_cursor (a bug) must not make the walk endless.
MAX_PAGES = 1000


def request_sessions(sock_path: str, timeout: float = 10.0, *,
                     cluster: bool = False) -> dict[str, Any]:
    """The concentrator's `sessions` answer with every page joined: the summary and
    LAN-to-LAN list of the first page, the sessions of all, no `next_cursor` (as one
    answer was before the admin socket paged). An `{"error": ...}` page is returned
    as it is. `cluster`: every member's sessions, from the cluster directory
    (issue 17), each with its `member` and `id`."""
    base: dict[str, Any] = {"cmd": "sessions", "cluster": True} if cluster \
        else {"cmd": "sessions"}
    reply = request(sock_path, base, timeout)
    cursor = reply.pop("next_cursor", None)
    for _ in range(MAX_PAGES):
        if not cursor or "error" in reply:
            break
        page = request(sock_path, {**base, "cursor": cursor}, timeout)
        if "error" in page:
            return page
        reply["sessions"] = reply.get("sessions", []) + page.get("sessions", [])
        cursor = page.get("next_cursor")
    return reply


async def start_server(path: Path, handler: Handler) -> asyncio.AbstractServer:
    """Serve `handler` on a unix socket at `path`, mode 0600 (OSError if it can't)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a stale socket of an earlier run
    server = await asyncio.start_unix_server(functools.partial(serve_one, handler),
                                             path=str(path))
    os.chmod(path, 0o600)  # only root talks to it: it can end sessions, shows addresses
    return server


async def serve_one(handler: Handler, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> None:
    """Answer one connection's request line with one reply line."""
    try:
        try:
            req = await read_request(reader, READ_TIMEOUT)
            reply = await handler(req)
        except RequestError as e:  # too long, too deep, not JSON: answered, not raised
            reply = {"error": str(e)}
        except (ValueError, KeyError) as e:
            reply = {"error": f"bad request: {e}"}
        writer.write(json.dumps(reply).encode() + b"\n")
        await writer.drain()
    except (TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()
