"""Socket stand-ins shared by the admin, status-socket and IKE send-queue tests."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any


async def ask(path: Path, line: bytes) -> dict[str, Any]:
    """Send one raw request line to a unix socket server; its one JSON reply line."""
    reader, writer = await asyncio.open_unix_connection(str(path), limit=1 << 20)
    writer.write(line)
    await writer.drain()
    answer = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    assert answer.endswith(b"\n"), f"no answer line, got {answer[:200]!r}"
    reply = json.loads(answer)
    assert isinstance(reply, dict)
    return reply


class FullSocket:
    """A UDP socket as IKE uses it (sendto to an address), over one end of a socketpair
    whose buffer the test fills, so that sendto meets a real EAGAIN."""

    def __init__(self, end: socket.socket) -> None:
        self.end = end

    def fileno(self) -> int:
        return self.end.fileno()

    def sendto(self, data: bytes, addr: tuple[str, int]) -> int:
        return self.end.send(data)
