"""The link between the concentrator and one data-plane worker process.

A ``SOCK_SEQPACKET`` socketpair (``AF_UNIX``): message boundaries kept, in order,
reliable, and the kernel tells the other end when a process dies (EOF), which is
how the pool learns that a worker crashed.  Each message is a pickled object: the
data-plane commands of vpnhub/net/messages.py (frozen dataclasses of plain data,
``SaParams`` rather than cipher objects) and the worker-only ones below going to
the worker; events, replies and errors coming back.

Objects larger than one packet (a ``GetStats`` answer with 20,000 SAs) are cut in
chunks of ``CHUNK`` bytes, each prefixed by one byte: ``MORE`` or ``LAST``.

The parent never waits for a worker: its sends use ``MSG_DONTWAIT``, and a full
send buffer means the worker stopped reading (:class:`LinkFull`): the pool kills
and restarts it (vpnhub/net/workers.py).  The worker sends events the same way and
drops them when the parent does not keep up (as ``ControlInbox`` does when full).
"""

from __future__ import annotations

import contextlib
import pickle
import socket
from dataclasses import dataclass
from typing import Final

from vpnhub.ike.transport import Transport
from vpnhub.net.messages import Address

CHUNK: Final = 60 * 1024
MORE: Final = b"\x01"
LAST: Final = b"\x00"
# Bytes a link may hold unread each way: SO_SNDBUFFORCE (we are root) passes the
# net.core.wmem_max cap; a shutdown's 20,000 RemoveSA go as a few batches anyway.
LINK_BUFFER: Final = 8 << 20


class LinkFull(Exception):
    """The other end does not read: its receive queue (our send buffer) is full."""


class LinkClosed(Exception):
    """The other end closed the link (its process ended)."""


# -- worker-only commands (the others are vpnhub/net/messages.py's) ------------


@dataclass(frozen=True)
class Request:
    """``command`` whose result the parent awaits: answered with a :class:`Reply`."""

    id: int
    command: object


@dataclass(frozen=True)
class Reply:
    """The answer to :class:`Request` ``id``: ``result``, or ``error`` (its text).

    ``seqs``: every outbound SPI's last sequence number and every inbound SPI's
    replay window top at the time of the answer (the restart's starting points),
    given with stats and the per-SA counters (not the totals-only ones); kept by the
    pool as they came and read only by a restart; ``figures``: the worker's own counters."""

    id: int
    result: object = None
    error: str | None = None
    seqs: tuple[dict[int, int], dict[int, int]] | None = None
    figures: dict[str, int] | None = None


@dataclass(frozen=True)
class Batch:
    """Commands sent together, in order: what one turn of the parent's loop gives a
    worker (net/workers.py), or a restart's reinstall: one message, one wake-up."""

    commands: tuple[object, ...]


@dataclass(frozen=True)
class SendIke:
    """``Dataplane.send_ike`` in the worker (cTCP lives in worker 0)."""

    message: bytes
    addr: Address
    transport: Transport


@dataclass(frozen=True)
class HandOver:
    """UDP 4500 datagrams the parent's IKE socket read in a GRO train led by IKE
    (docs/TRANSPORTS.md): ``Dataplane.hand_over`` in the worker that owns their SPI."""

    datagrams: list[bytes]
    addr: Address


@dataclass(frozen=True)
class SetForeignRoute:
    """Inner packets to ``dst`` (address or CIDR) belong to worker ``worker``: a packet
    for it that the kernel gave this worker's TUN queue is handed over (net/handover.py)."""

    dst: str
    worker: int


@dataclass(frozen=True)
class DropForeignRoute:
    dst: str


@dataclass(frozen=True)
class SetDebug:
    """The IPSECDBG severity kept (``Dataplane.debug_severity``)."""

    severity: int


@dataclass(frozen=True)
class WorkerError:
    """An event: a command failed in the worker (``text`` says which and why)."""

    text: str


# -- the link ------------------------------------------------------------------


def link_pair() -> tuple[socket.socket, socket.socket]:
    """(parent end, worker end); the parent end is non-blocking."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for s in (parent, child):
        for opt, force in ((socket.SO_SNDBUF, 32), (socket.SO_RCVBUF, 33)):
            try:  # SO_SNDBUFFORCE = 32, SO_RCVBUFFORCE = 33 (asm-generic/socket.h)
                s.setsockopt(socket.SOL_SOCKET, force, LINK_BUFFER)
            except OSError:
                with contextlib.suppress(OSError):
                    s.setsockopt(socket.SOL_SOCKET, opt, LINK_BUFFER)
    parent.setblocking(False)
    return parent, child


class Link:
    """Pickled objects over a ``SOCK_SEQPACKET`` socket, in chunks."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._parts: list[bytes] = []
        self.sent = 0
        self.received = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, obj: object, *, wait: bool = False) -> None:
        """Send ``obj``; without ``wait`` raise :class:`LinkFull` rather than block."""
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        flags = 0 if wait else socket.MSG_DONTWAIT
        try:
            for start in range(0, max(len(data), 1), CHUNK):
                tag = MORE if start + CHUNK < len(data) else LAST
                self.sock.send(tag + data[start:start + CHUNK], flags)
        except (BlockingIOError, InterruptedError) as e:
            raise LinkFull from e
        except (BrokenPipeError, ConnectionResetError) as e:
            raise LinkClosed from e
        self.sent += 1

    def receive(self, limit: int = 256) -> list[object]:
        """The objects waiting (up to ``limit`` packets read); :class:`LinkClosed` at EOF."""
        out: list[object] = []
        for _ in range(limit):
            try:
                packet = self.sock.recv(CHUNK + 1, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                break
            except (ConnectionResetError, OSError) as e:
                raise LinkClosed from e
            if not packet:
                raise LinkClosed
            self._parts.append(packet[1:])
            if packet[:1] == LAST:
                data = b"".join(self._parts)
                self._parts = []
                out.append(pickle.loads(data))
                self.received += 1
        return out

    def close(self) -> None:
        self.sock.close()
