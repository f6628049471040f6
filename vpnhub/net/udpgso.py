"""UDP GRO on receive and UDP GSO on send: fewer system calls per ESP packet (issue 16).

Receive (``UDP_GRO``, Linux 5.0): a socket with the option set may be handed
a *train*: several datagrams of one flow (same addresses and ports) that the
kernel coalesced, in one ``recvmsg``, with a control message ``(SOL_UDP,
UDP_GRO, int gso_size)``. Every segment but the last is ``gso_size`` bytes,
the last may be shorter (net/ipv4/udp_offload.c ``udp_gro_receive_segment``;
the cmsg is put by ``udp_cmsg_recv`` in include/net/udp.h). A datagram
without the cmsg is one datagram. A socket *without* the option gets a train
segmented again before it is queued (``udp_rcv_segment``), so setting it is
what makes the saving.

Send (``UDP_SEGMENT``, Linux 4.18): one ``sendmsg`` with the control message
``(SOL_UDP, UDP_SEGMENT, u16 gso_size)`` and up to 64 segments of that size
(the last may be shorter) leaves as that many datagrams
(net/ipv4/udp.c ``udp_send_skb``: at most ``UDP_MAX_SEGMENTS`` = 64, and the
whole payload must fit one UDP datagram). The kernel refuses a train it
cannot segment (EINVAL: a segment larger than the path MTU;
EIO: no checksum offload on the way out): the caller then sends them one by
one.
"""

from __future__ import annotations

import errno
import mmap
import socket
import struct
from collections.abc import Callable, Sequence
from typing import Final, Protocol, TypeAlias

from vpnhub.net.accel import NETFAST

SOL_UDP: Final = 17  # IPPROTO_UDP
UDP_SEGMENT: Final = 103  # include/uapi/linux/udp.h
UDP_GRO: Final = 104
MAX_SEGMENTS: Final = 64  # UDP_MAX_SEGMENTS (include/linux/udp.h)
MAX_TRAIN_BYTES: Final = 65000  # below the 65,507-byte UDP payload of IPv4
RECV_BUFFER: Final = 65536  # a whole train fits one read (64 KiB, as GRO caps it)
BATCH: Final = 64  # datagrams (or trains) per recvmmsg
SEND_BATCH: Final = 256  # datagrams per sendmmsg (_netfast.c MAX_SEND)
_CMSG_SPACE: Final = socket.CMSG_SPACE(4)
# one datagram as BatchReader.read gives it: (payload, (host, port), segment size or 0)
Datagram: TypeAlias = tuple[bytes, tuple[str, int], int]
# one datagram to send: (payload, (host, port))
Outgoing: TypeAlias = tuple[bytes, tuple[str, int]]
# send_batch(items, start) -> how many of items[start:] left (see ``batch_sender``)
SendBatch: TypeAlias = Callable[[list[Outgoing], int], int]
_INT: Final = struct.Struct("=i")
_U16: Final = struct.Struct("=H")

# What a sendmsg with UDP_SEGMENT answers when the kernel cannot segment this train
# (the datagrams themselves could still go one by one).
GSO_REFUSED: Final = frozenset({errno.EIO, errno.EINVAL, errno.ENOPROTOOPT, errno.EOPNOTSUPP,
                                errno.EMSGSIZE, errno.ENOTSUP})


def enable_gro(sock: socket.socket) -> bool:
    """Ask for trains on `sock`; False where the kernel (or the socket's kind) refuses."""
    try:
        sock.setsockopt(SOL_UDP, UDP_GRO, 1)
    except OSError:
        return False
    return True


def gso_supported(sock: socket.socket) -> bool:
    """Whether `sock` takes UDP_SEGMENT (reading the option is enough to know)."""
    try:
        sock.getsockopt(SOL_UDP, UDP_SEGMENT)
    except OSError:
        return False
    return sock.type == socket.SOCK_DGRAM and sock.family == socket.AF_INET


class GroReader:
    """``recvmsg_into`` one preallocated 64 KiB buffer; a train comes back split.

    ``calls``: receive system calls that returned data; ``datagrams``: the
    datagrams they held (a train counts its segments).
    """

    __slots__ = ("_buf", "_view", "calls", "datagrams", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buf = bytearray(RECV_BUFFER)
        self._view = memoryview(self._buf)
        self.calls = 0
        self.datagrams = 0

    def read(self) -> tuple[list[bytes], tuple[str, int]]:
        """The datagrams of one receive (one, or a train's segments), and their source.

        Raises what ``recvmsg_into`` raises (``BlockingIOError`` when there is none).
        """
        n, ancdata, _flags, addr = self.sock.recvmsg_into([self._buf], _CMSG_SPACE)
        self.calls += 1
        size = 0
        for level, kind, data in ancdata:
            if level == SOL_UDP and kind == UDP_GRO and len(data) >= _INT.size:
                size = _INT.unpack_from(data)[0]
        view = self._view[:n]
        if size <= 0 or size >= n:
            self.datagrams += 1
            return [bytes(view[:n])], _address(addr)
        segments = [bytes(view[i:i + size]) for i in range(0, n, size)]
        self.datagrams += len(segments)
        return segments, _address(addr)


    def read_batch(self, _count: int = 0) -> list[Datagram]:
        """``read`` as ``BatchReader.read`` gives it: one receive's datagrams (a
        train's segments, each with its segment size; a lone datagram with 0)."""
        datagrams, addr = self.read()
        if len(datagrams) == 1:
            return [(datagrams[0], addr, 0)]
        size = len(datagrams[0])
        return [(d, addr, size) for d in datagrams]


def batch_supported(sock: socket.socket) -> bool:
    """Whether `sock` can be read with ``BatchReader``: the accelerator is there and
    `sock` is an IPv4 UDP socket (``recv_batch`` gives IPv4 sources only)."""
    return (NETFAST is not None and sock.family == socket.AF_INET
            and sock.type == socket.SOCK_DGRAM)


def receive_area(count: int = BATCH) -> mmap.mmap:
    """Room for `count` slots of a whole train each (4 MiB for 64), mapped, not
    allocated: only the pages the kernel writes ever become resident. One area serves
    every ``BatchReader`` of one thread (each read copies its datagrams out)."""
    return mmap.mmap(-1, count * RECV_BUFFER)


class BatchReader:
    """Up to `count` datagrams a receive system call (``recvmmsg``), trains split.

    ``read`` returns ``[(datagram, (host, port), size), ...]`` in arrival order:
    each segment of a GRO train (``size``: its segment size) or lone datagram (0)
    exactly as ``GroReader.read`` (or ``recvfrom``) gives it; a datagram is cut at
    64 KiB as those cut it. ``calls`` counts the receives that returned data,
    ``datagrams`` what they held (a train counts its segments), as in GroReader.
    `area` (``receive_area``) may be shared by the readers of one thread.
    """

    __slots__ = ("_area", "_fd", "_recv", "calls", "count", "datagrams", "sock")

    def __init__(self, sock: socket.socket, area: mmap.mmap | None = None,
                 count: int = BATCH) -> None:
        if NETFAST is None:
            raise RuntimeError("BatchReader needs vpnhub.net._netfast")
        self.sock = sock
        self.count = count
        self._area = area if area is not None else receive_area(count)
        if len(self._area) < count * RECV_BUFFER:
            raise ValueError("receive area too small")
        self._fd = sock.fileno()
        self._recv = NETFAST.recv_batch
        self.calls = 0
        self.datagrams = 0

    def read(self, count: int = 0) -> list[Datagram]:
        """The datagrams of one receive (at least one; at most `count`, or ``count``
        of the reader when 0).

        Raises what ``recvfrom`` raises: ``BlockingIOError`` when none is queued,
        ``ConnectionRefusedError`` and the like for an error the socket reports.
        """
        batch: list[Datagram] = self._recv(self._fd, self._area,
                                           count if 0 < count < self.count else self.count)
        if not batch:  # never with a count >= 1; as "nothing queued" if it were
            raise BlockingIOError(errno.EAGAIN, "no datagram")
        self.calls += 1
        self.datagrams += len(batch)
        return batch


def read_budgeted(read: Callable[[int], list[Datagram]], count: int, budget: int,
                  handle: Callable[[list[Datagram]], object], *, until: float = 0.0,
                  clock: Callable[[], float] | None = None) -> int:
    """Read a socket until it is drained or `budget` datagrams are taken, each receive's
    batch to `handle`; returns the datagrams taken. The one budgeted read loop of the
    UDP readers (the data plane's 4500 and Cisco UDP ports, its keepalive socket, the
    IKE socket), so that a flood on one socket cannot starve the loop's other work.

    ``read(n)`` is one receive of at most `n` datagrams (``BatchReader.read``, or
    ``GroReader.read_batch`` with `count` 1: one train); `n` is `count`, never more
    than the budget left. A batch shorter than asked drained the socket: no call is
    made just to see ``EAGAIN`` (epoll is level-triggered: what comes later wakes the
    loop again). An error the socket reports (an ICMP error) is skipped and counts
    one datagram of the budget. With `clock`, the loop also stops once ``clock()``
    reaches `until`.
    """
    taken = got = 0
    while taken < budget:
        if clock is not None and clock() >= until:
            break
        want = budget - taken
        if want > count:
            want = count
        try:
            batch = read(want)
        except (BlockingIOError, InterruptedError):
            break
        except OSError:  # e.g. an ICMP error reported on the socket: next one
            taken += 1
            continue
        taken += len(batch)
        got += len(batch)
        handle(batch)
        if len(batch) < want:
            break
    return got


def _address(addr: object) -> tuple[str, int]:
    if isinstance(addr, tuple) and len(addr) >= 2:
        return (str(addr[0]), int(addr[1]))
    return ("", 0)  # not an IP socket (a socketpair in tests)


def send_train(sock: socket.socket, segments: list[bytes], size: int,
               addr: tuple[str, int]) -> int:
    """One ``sendmsg`` of `segments` (all `size` bytes but the last) with UDP_SEGMENT."""
    return sock.sendmsg(segments, [(SOL_UDP, UDP_SEGMENT, _U16.pack(size))], 0, addr)


class _SendsTo(Protocol):
    def sendto(self, data: bytes, addr: tuple[str, int], /) -> int: ...


def send_batch_py(sock: _SendsTo, items: Sequence[Outgoing], start: int = 0,
                  prefix: bytes = b"") -> int:
    """Send ``items[start:]`` (at most SEND_BATCH) in order, each after `prefix`, with
    one ``sendto`` each; returns how many the kernel took (0: nothing to send).

    The reference of ``_netfast.send_batch`` (one ``sendmmsg``), and what sendmmsg(2)
    does: a datagram the kernel refuses ends the call; before it, the count is
    returned (the next call meets it again), first, its OSError is raised
    (BlockingIOError: the send buffer is full)."""
    sent = 0
    for i in range(start, min(len(items), start + SEND_BATCH)):
        data, addr = items[i]
        try:
            sock.sendto(prefix + data if prefix else data, addr)
        except OSError:
            if sent:
                return sent
            raise
        sent += 1
    return sent


def batch_sender(sock: _SendsTo, prefix: bytes = b"") -> SendBatch:
    """``send_batch(items, start)`` for `sock`: one ``sendmmsg`` per call with the
    accelerator (an IPv4 UDP socket), else ``send_batch_py``'s ``sendto`` loop; the
    same datagrams leave in the same order, and the same errors come back."""
    if (NETFAST is not None and isinstance(sock, socket.socket)
            and sock.family == socket.AF_INET and sock.type == socket.SOCK_DGRAM):
        fd, fast = sock.fileno(), NETFAST.send_batch

        def send_batch(items: list[Outgoing], start: int) -> int:
            n: int = fast(fd, items, start, prefix)
            return n
        return send_batch

    def send_batch_loop(items: list[Outgoing], start: int) -> int:
        return send_batch_py(sock, items, start, prefix)
    return send_batch_loop
