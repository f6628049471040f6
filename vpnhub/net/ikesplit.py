"""IKE on UDP 4500 straight to the control plane, ESP to the data plane.

RFC 3948 section 2 puts IKE (after the four-byte non-ESP marker), ESP and
NAT keepalives on the same port. With one socket, every IKE message on 4500
woke the data-plane thread, was classified there, queued in the
``ControlInbox`` and handed across threads to the asyncio loop: about a fifth
of the concentrator's CPU per tunnel in bench/handshake.py (issue 13), in
thread wake-ups and GIL hand-overs rather than in the work itself.

Here the kernel sorts the datagrams before either thread sees them. Two
sockets are bound to the same address and port 4500 in one ``SO_REUSEPORT``
group: index 0 for the data plane, index 1 for the control plane. A classic
BPF program attached to the group (``SO_ATTACH_REUSEPORT_CBPF``, Linux 4.5)
runs on the UDP payload and returns the index of the socket:

- first four bytes zero (the non-ESP marker: SPI 0 is reserved, RFC 4303
  section 2.1, so it cannot be ESP) -> 1, IKE;
- anything else -> 0, ESP; a datagram shorter than four bytes (the one-byte
  NAT keepalive, RFC 3948 section 2.3) makes the load fail, and a failed
  cBPF program returns 0: the data plane, which counts keepalives as before.

The program is attached before the second socket joins, so no datagram is
ever spread over the group by hash. Each socket has its own kernel receive
buffer: a flood of IKE on 4500 fills only the control plane's, and ESP cannot
delay IKE either (before, both shared the data-plane thread's budget). The
asyncio loop reads at most ``BUDGET`` datagrams per wake-up, as on UDP 500.

NAT keepalives can go to a third socket of the group (``open_keepalive_socket``):
a longer program first sends a payload of exactly one byte 0xFF to index 2.
Nobody waits on that socket; the data plane reads it once a tick (at most a
second) and counts what it finds. With 10,000 clients behind NATs, each
sending a keepalive every 20 s, that is 500 datagrams a second that no longer
wake the data-plane thread one by one (issue 13, bench/dpd_cost.py).

With UDP GRO (issue 16, vpnhub/net/udpgso.py) the kernel coalesces a flow's
datagrams into a train and steers the whole train by its *first* segment
(docs/TRANSPORTS.md): a train led by IKE reaches the IKE socket with the ESP
or keepalives that followed, and one led by ESP or a keepalive reaches the
other sockets with the IKE inside. So every socket of the group takes UDP_GRO
and splits trains: the data plane classifies each segment as on 4500 without
the split (IKE then reaches the control plane through its inbox), and
:class:`IkeSocket` delivers the IKE segments and hands the rest to the data
plane (``DataplaneHandle.hand_over``, wired by :class:`SplitDataplane`).

Where the kernel refuses the program (not Linux, an old kernel, a seccomp
policy), ``open_natt_sockets`` returns no IKE socket and the data plane keeps
handing IKE over through its inbox, as before.

With N data-plane workers (issue 16, ``open_natt_group``) the group holds N
ESP sockets (indexes 0..N-1), then IKE (N) and keepalives (N+1); the program
sends ESP to SPI mod N, and the control plane draws each inbound SPI so that
this is the worker owning the SA (vpnhub/esp/spi.py). ``open_cisco_udp_group``
does the same for Cisco IPsec over UDP, which carries bare ESP.
docs/TRANSPORTS.md, "Steering to workers", has the kernel's side.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import socket
import struct
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Final

from vpnhub.esp import EspSA, SaParams
from vpnhub.ike.transport import Transport
from vpnhub.net.dataplane import open_udp_socket
from vpnhub.net.handle import DataplaneHandle
from vpnhub.net.messages import Event
from vpnhub.net.stats import DataplaneStats, SaCounters
from vpnhub.net.udpencap import IKE_HEADER_LEN, NON_ESP_MARKER, SHORT_IKE
from vpnhub.net.udpgso import (
    BatchReader,
    Datagram,
    GroReader,
    Outgoing,
    batch_sender,
    batch_supported,
    enable_gro,
    read_budgeted,
    receive_area,
)

Address = tuple[str, int]

SO_ATTACH_REUSEPORT_CBPF: Final = 51  # linux/asm-generic/socket.h; not in `socket`
# The receive and send buffers of the control plane's IKE sockets (UDP 500 and
# 4500): with 128 handshakes in flight (bench/handshake.py) the default 208 KiB
# on UDP 500 overflowed, 66-144 datagrams lost per run (RcvbufErrors in
# /proc/net/snmp), each loss costing its peer a retransmission timeout. 1 MiB
# (the kernel doubles it: about 2,500 short datagrams) then overflowed on 4500
# when 3,000 clients logged out at once: two DELETEs each, 61-475 lost per run,
# each loss an SA left up until DPD. 4 MiB holds about 10,000; the memory is
# taken only while datagrams wait (issue 13).
IKE_BUFFER_BYTES: Final = 4 << 20
BUDGET: Final = 256  # datagrams per wake-up of the loop, as on UDP 500
# ... and at most this many seconds of them: the loop's timers and the manager wait for
# the turn to end, and 256 DPD answers of a busy 10,000-session run took 40-60 ms, the
# loop's worst delay when idle (StallWatch inside the turn, issue 13). One clock read
# per recvmmsg batch (IKE_BATCH datagrams); the rest waits in the socket for the next
# turn, a loop iteration later.
TURN_TIME: Final = 0.01
IKE_BATCH: Final = 16  # datagrams per recvmmsg of the IKE socket
ESP_INDEX: Final = 0
IKE_INDEX: Final = 1
KEEPALIVE_INDEX: Final = 2
# Stable drop names (the event log and the tests share them).
NOT_IKE: Final = "not_ike_on_ike_socket"  # not IKE, and no data plane to hand it to

# struct sock_filter {u16 code; u8 jt; u8 jf; u32 k}: linux/filter.h
_BPF_LD_W_ABS: Final = 0x20  # A = payload[k:k+4], big-endian; out of range: return 0
_BPF_LD_B_ABS: Final = 0x30  # A = payload[k]
_BPF_LD_W_LEN: Final = 0x80  # A = the payload's length (the UDP header is pulled off)
_BPF_JEQ_K: Final = 0x15  # A == k ? skip jt : skip jf
_BPF_RET_K: Final = 0x06  # return k: the socket's index in the group
_PROGRAM: Final = (
    (_BPF_LD_W_ABS, 0, 0, 0),
    (_BPF_JEQ_K, 0, 1, 0),  # the non-ESP marker (RFC 3948 2.2)
    (_BPF_RET_K, 0, 0, IKE_INDEX),
    (_BPF_RET_K, 0, 0, ESP_INDEX),
)
# The same with NAT keepalives (one byte 0xFF, RFC 3948 2.3) set aside first; the
# jumps skip to _PROGRAM's first instruction (index 5) when it is not one.
_PROGRAM_KEEPALIVE: Final = (
    (_BPF_LD_W_LEN, 0, 0, 0),
    (_BPF_JEQ_K, 0, 3, 1),
    (_BPF_LD_B_ABS, 0, 0, 0),
    (_BPF_JEQ_K, 0, 1, 0xFF),
    (_BPF_RET_K, 0, 0, KEEPALIVE_INDEX),
    *_PROGRAM,
)


def _attach_split(sock: socket.socket,
                  program: tuple[tuple[int, int, int, int], ...] = _PROGRAM) -> None:
    """Attach `program` to `sock`'s reuseport group (replacing the one there);
    OSError if refused."""
    code = b"".join(struct.pack("=HBBI", *ins) for ins in program)
    buf = ctypes.create_string_buffer(code, len(code))
    # struct sock_fprog {unsigned short len; struct sock_filter *filter}: the kernel
    # copies the program during the call, so `buf` only has to outlive it
    fprog = struct.pack("HP", len(program), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)


def open_natt_sockets(host: str, port: int = 4500, *, buffer_bytes: int = 4 << 20,
                      ike_buffer_bytes: int = IKE_BUFFER_BYTES
                      ) -> tuple[socket.socket, socket.socket | None]:
    """The data plane's socket on `port` and, if the kernel splits by marker, the
    control plane's IKE socket (else None: one socket, IKE through the data plane).

    One worker and no keepalive socket (``open_keepalive_socket`` may add it)."""
    group = _open_group(host, port, 1, keepalive=False, buffer_bytes=buffer_bytes,
                        ike_buffer_bytes=ike_buffer_bytes)
    return group.esp[0], group.ike


def open_keepalive_socket(esp: socket.socket, *, buffer_bytes: int = 1 << 20
                          ) -> socket.socket | None:
    """A third socket in the group of `esp` (split by `open_natt_sockets`) that gets
    every NAT keepalive, or None (the kernel refused: keepalives stay on `esp`).

    It joins while the two-way program is in place (which never picks index 2),
    and only then the program that picks it is attached. Its buffer holds a
    tick's worth of keepalives (1 MiB: thousands); a flood beyond that is dropped
    by the kernel without costing the data plane anything."""
    host, port = esp.getsockname()[:2]
    try:
        keepalive = open_udp_socket(host, port, reuse_port=True, buffer_bytes=buffer_bytes)
    except OSError:
        return None
    try:
        _attach_split(esp, _PROGRAM_KEEPALIVE)
    except OSError:
        keepalive.close()
        return None
    return keepalive


# -- several workers (issue 16) ------------------------------------------------
#
# With `workers` = N data-plane processes, each has its own ESP socket in the
# group: indexes 0..N-1. IKE is index N and keepalives N+1, so the program for
# N = 1 is exactly _PROGRAM_KEEPALIVE above. An ESP datagram goes to worker
# SPI mod N: the control plane draws each inbound SPI so that this is the
# worker that owns the SA (vpnhub.esp.spi.spi_for_worker). BPF_ALU|BPF_MOD|BPF_K
# exists in classic BPF since Linux 3.7 (include/uapi/linux/filter.h); on
# a kernel without it the attach fails and the caller runs one worker.
_BPF_ALU_MOD_K: Final = 0x94  # A = A % k (unsigned 32-bit); k = 0 is refused at load
_BPF_RET_A: Final = 0x16  # return A
# While the group is being built: everything to index 0, the first ESP socket
# (what a lone socket gets anyway). See _open_group.
_PROGRAM_FIRST: Final = ((_BPF_RET_K, 0, 0, 0),)


def _spi_mod(workers: int) -> tuple[tuple[int, int, int, int], ...]:
    """A = SPI (loaded by the caller); return A mod `workers` (0 for one worker)."""
    if workers == 1:
        return ((_BPF_RET_K, 0, 0, 0),)
    return ((_BPF_ALU_MOD_K, 0, 0, workers), (_BPF_RET_A, 0, 0, 0))


def natt_program(workers: int, *, keepalive: bool = True
                 ) -> tuple[tuple[int, int, int, int], ...]:
    """The program of a NAT-T group of `workers` ESP sockets, IKE and keepalives.

    For one worker: _PROGRAM (no keepalive socket) or _PROGRAM_KEEPALIVE."""
    if workers < 1:
        raise ValueError("workers must be at least 1")
    body = (
        (_BPF_LD_W_ABS, 0, 0, 0),  # shorter than 4 bytes: the load fails, returns 0
        (_BPF_JEQ_K, 0, 1, 0),  # the non-ESP marker (RFC 3948 2.2)
        (_BPF_RET_K, 0, 0, workers),
        *_spi_mod(workers),
    )
    if not keepalive:
        return body
    return (
        (_BPF_LD_W_LEN, 0, 0, 0),
        (_BPF_JEQ_K, 0, 3, 1),
        (_BPF_LD_B_ABS, 0, 0, 0),
        (_BPF_JEQ_K, 0, 1, 0xFF),  # the NAT keepalive (RFC 3948 2.3)
        (_BPF_RET_K, 0, 0, workers + 1),
        *body,
    )


def cisco_udp_program(workers: int) -> tuple[tuple[int, int, int, int], ...]:
    """Cisco IPsec over UDP carries bare ESP (SPI at offset 0): SPI mod `workers`.
    Shorter than 4 bytes: the load fails and the program returns 0. vpnc's
    keepalive on that port (``00 00 00 00 ff``) has "SPI" 0: worker 0."""
    if workers < 1:
        raise ValueError("workers must be at least 1")
    return ((_BPF_LD_W_ABS, 0, 0, 0), *_spi_mod(workers))


@dataclasses.dataclass
class NattGroup:
    """The sockets of UDP 4500: `esp[k]` is worker k's; `ike` the control plane's,
    `keepalive` the one NAT keepalives are set aside on. When the kernel refused the
    split, `esp` has one socket that gets everything and the others are None."""

    esp: list[socket.socket]
    ike: socket.socket | None
    keepalive: socket.socket | None

    def close(self) -> None:
        for s in (*self.esp, self.ike, self.keepalive):
            if s is not None:
                with contextlib.suppress(OSError):
                    s.close()


def open_natt_group(host: str, port: int, workers: int, *, buffer_bytes: int = 4 << 20,
                    ike_buffer_bytes: int = IKE_BUFFER_BYTES,
                    keepalive_buffer_bytes: int = 1 << 20) -> NattGroup:
    """UDP `port` as `workers` ESP sockets (index k = worker k), the IKE socket
    (index `workers`) and the keepalive socket (index `workers` + 1), the kernel
    steering each datagram by ``natt_program(workers)``.

    If the kernel refuses the program (or SO_REUSEPORT), the group has one ESP
    socket, no IKE and no keepalive socket: the caller runs one worker, which
    hands IKE over and counts keepalives as before the split. With one worker it
    is ``open_natt_sockets`` and ``open_keepalive_socket`` in one call."""
    return _open_group(host, port, workers, keepalive=True, buffer_bytes=buffer_bytes,
                       ike_buffer_bytes=ike_buffer_bytes,
                       keepalive_buffer_bytes=keepalive_buffer_bytes)


def open_cisco_udp_group(host: str, port: int, workers: int, *,
                         buffer_bytes: int = 4 << 20) -> list[socket.socket]:
    """Cisco IPsec over UDP on `port` as `workers` sockets (index k = worker k),
    steered by ``cisco_udp_program``; one socket if the kernel refuses it."""
    if workers < 1:
        raise ValueError("workers must be at least 1")
    if workers == 1:  # no group: as open_cisco_udp_socket
        return [open_udp_socket(host, port, buffer_bytes=buffer_bytes)]
    try:
        first = open_udp_socket(host, port, reuse_port=True, buffer_bytes=buffer_bytes)
    except OSError:
        return [open_udp_socket(host, port, buffer_bytes=buffer_bytes)]
    try:
        _attach_split(first, _PROGRAM_FIRST)  # until all have joined: see _open_group
    except OSError:
        return [first]
    socks = [first, *_join(host, first.getsockname()[1], [buffer_bytes] * (workers - 1))]
    if len(socks) == workers:
        try:
            _attach_split(first, cisco_udp_program(workers))
            return socks
        except OSError:
            pass
    return _alone(socks)


def _open_group(host: str, port: int, workers: int, *, keepalive: bool, buffer_bytes: int,
                ike_buffer_bytes: int, keepalive_buffer_bytes: int = 1 << 20) -> NattGroup:
    """The group of `natt_program(workers, keepalive=keepalive)`.

    The kernel keeps a group's sockets in the order they joined (reuseport_add_sock
    appends, net/core/sock_reuseport.c), so they join in index order. While the
    group is incomplete, a program's index that no socket has yet would not be
    dropped: reuseport_select_sock falls back to choosing by hash. So until the last
    socket has joined, _PROGRAM_FIRST sends everything to index 0, the first ESP
    socket, as a lone socket would get it; no SA exists yet at start, so no ESP
    can be there for another worker, and an early IKE message reaches the data
    plane's inbox as without the split. Then the real program replaces it. With
    one worker, _PROGRAM goes first as it always did: an index it returns before
    its socket has joined can only fall back to the sockets there, index 0."""
    if workers < 1:
        raise ValueError("workers must be at least 1")
    try:
        first = open_udp_socket(host, port, reuse_port=True, buffer_bytes=buffer_bytes)
    except OSError:
        return NattGroup([open_udp_socket(host, port, buffer_bytes=buffer_bytes)], None, None)
    try:
        if workers == 1:  # _PROGRAM's indexes are final already: as before issue 16
            _attach_split(first)
        else:
            _attach_split(first, _PROGRAM_FIRST)
    except OSError:
        return NattGroup([first], None, None)  # alone: it gets every datagram, as before
    sizes = [buffer_bytes] * (workers - 1) + [ike_buffer_bytes]
    if keepalive:
        sizes.append(keepalive_buffer_bytes)
    socks = [first, *_join(host, first.getsockname()[1], sizes)]
    if len(socks) == 1 + len(sizes):
        try:
            if workers > 1 or keepalive:
                _attach_split(first, natt_program(workers, keepalive=keepalive))
            return NattGroup(socks[:workers], socks[workers],
                             socks[workers + 1] if keepalive else None)
        except OSError:
            pass
    return NattGroup(_alone(socks), None, None)


def _join(host: str, port: int, buffers: list[int]) -> list[socket.socket]:
    """Sockets joining the reuseport group on `port` (the first socket's, which may
    have been drawn by port 0), one per buffer size, in order; fewer if one fails
    (the caller then gives up the group)."""
    out: list[socket.socket] = []
    for size in buffers:
        try:
            out.append(open_udp_socket(host, port, reuse_port=True, buffer_bytes=size))
        except OSError:
            break
    return out


def _alone(socks: list[socket.socket]) -> list[socket.socket]:
    """The first socket alone in its group (the others closed): with _PROGRAM_FIRST
    or no program at all, it gets every datagram."""
    for s in socks[1:]:
        s.close()
    return socks[:1]


class IkeSocket:
    """The control plane's end of UDP 4500: reads IKE, sends IKE with the marker.

    `deliver(message, addr)` gets each message without its marker. Not thread-safe:
    the asyncio loop calls `read` when the socket is readable and `send` (through
    its SendQueue) from the same thread.

    The socket takes UDP_GRO: a train led by IKE can carry ESP (the module doc);
    its IKE segments are delivered, the others handed to `handover` (the data
    plane's ``hand_over``, set by :class:`SplitDataplane`) in one call per train,
    or dropped as ``NOT_IKE`` while there is none. ``rx_calls``/``rx_datagrams``:
    receive system calls and the datagrams they held; ``handed_over``: datagrams
    passed on.
    """

    def __init__(self, sock: socket.socket, deliver: Callable[[bytes, Address], None],
                 budget: int = BUDGET,
                 handover: Callable[[list[bytes], Address], None] | None = None, *,
                 turn_time: float = TURN_TIME,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.sock = sock
        self._deliver = deliver
        self.handover = handover
        self.gro = enable_gro(sock)
        # the receive side is UDP 500's (IkeReader: recvmmsg with the accelerator, up
        # to IKE_BATCH datagrams per system call and one release of the GIL per batch,
        # issue 13; else one GRO train a receive), each batch classified here
        self._in = IkeReader(sock, self._classify, budget, turn_time=turn_time, clock=clock)
        # the marker goes in its own iovec: no copy of each message to prepend it
        self._send_batch = batch_sender(sock, NON_ESP_MARKER)
        self.rx = 0
        self.tx = 0
        self.handed_over = 0
        self.drops: Counter[str] = Counter()

    @property
    def rx_calls(self) -> int:
        return self._in.rx_calls

    @property
    def rx_datagrams(self) -> int:
        return self._in.rx_datagrams

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self) -> None:
        """Up to `budget` datagrams and `turn_time` seconds: the loop's other readers (UDP
        500) and its timers get their turn (``IkeReader.read``)."""
        self._in.read()

    def _classify(self, batch: list[Datagram]) -> None:
        """One receive's datagrams: IKE (after its marker) delivered, each alone; the
        others (ESP in a train led by IKE) to `handover` together, per source in a
        row, as a train's come."""
        others: list[bytes] = []
        others_from: Address = ("", 0)  # set with the first of `others`
        for data, addr, _size in batch:
            if data[:4] == NON_ESP_MARKER:
                if len(data) < 4 + IKE_HEADER_LEN:
                    self.drops[SHORT_IKE] += 1
                else:
                    self.rx += 1
                    self._deliver(data[4:], addr)
                continue
            if others and addr != others_from:
                self._hand_over(others, others_from)
                others = []
            others.append(data)
            others_from = addr
        if others:
            self._hand_over(others, others_from)

    def _hand_over(self, others: list[bytes], addr: Address) -> None:
        if self.handover is None:
            self.drops[NOT_IKE] += len(others)
            return
        self.handed_over += len(others)
        self.handover(others, addr)

    def send(self, message: bytes, addr: Address) -> int:
        """One IKE message to `addr` after the non-ESP marker (RFC 3948 2.2)."""
        n = self.sock.sendto(NON_ESP_MARKER + message, addr)
        self.tx += 1
        return n

    def send_batch(self, items: list[Outgoing], start: int) -> int:
        """IKE messages ``items[start:]``, each after the marker, as ``udpgso.batch_sender``
        sends them (one ``sendmmsg``); returns how many left, counted in ``tx``."""
        n = self._send_batch(items, start)
        self.tx += n
        return n

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class IkeReader:
    """The control plane's UDP 500 socket, read as :class:`IkeSocket` reads 4500.

    UDP 500 carries each login's first message (Aggressive or Main Mode message 1;
    RFC 3947 section 4 moves the rest to 4500 once a NAT is seen) and whole
    handshakes without NAT-T. A login storm queues many at once: with the
    accelerator, up to IKE_BATCH datagrams a receive (``recvmmsg``) and one release
    of the GIL per batch, not a ``recvfrom`` (and a 64 KiB buffer) per message
    (issue 13); else ``GroReader``'s one datagram a receive into a buffer kept. No
    marker and no GRO here: every datagram is IKE (or garbage the IKE core drops).

    `deliver(batch)` gets each receive's datagrams, ``[(message, (host, port),
    size), ...]``. ``rx_calls``/``rx_datagrams`` as in IkeSocket. Not thread-safe:
    the asyncio loop calls `read` when the socket is readable.
    """

    def __init__(self, sock: socket.socket, deliver: Callable[[list[Datagram]], object],
                 budget: int = BUDGET, *, turn_time: float = TURN_TIME,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.sock = sock
        self._deliver = deliver
        self.budget = budget
        self.turn_time = turn_time
        self.clock = clock
        self._reader = GroReader(sock)
        self._batch = BatchReader(sock, receive_area(IKE_BATCH), IKE_BATCH) \
            if batch_supported(sock) else None

    @property
    def rx_calls(self) -> int:
        return self._reader.calls + (self._batch.calls if self._batch is not None else 0)

    @property
    def rx_datagrams(self) -> int:
        return self._reader.datagrams + (self._batch.datagrams if self._batch is not None
                                         else 0)

    def read(self) -> int:
        """Up to `budget` datagrams and `turn_time` seconds, as ``IkeSocket.read``; an
        error the socket reports (an ICMP error for an answer sent earlier) is
        skipped (``read_budgeted``). Returns the datagrams delivered."""
        clock = self.clock
        read: Callable[[int], list[Datagram]]
        if self._batch is not None:
            read, count = self._batch.read, self._batch.count
        else:
            read, count = self._reader.read_batch, 1
        return read_budgeted(read, count, self.budget, self._deliver,
                             until=clock() + self.turn_time, clock=clock)


class SplitDataplane:
    """A data plane whose counters include what the IKE socket read and sent.

    With the split, IKE on 4500 never crosses the data plane, so its ``ike_rx``,
    ``ike_tx``, ``udp_rx`` and drops would leave /metrics and the admin
    ``stats`` answer; the concentrator hands this wrapper to its core and
    manager instead of the bare data plane, and the totals read as before the
    split. Every command goes to the data plane unchanged.
    """

    def __init__(self, inner: DataplaneHandle, ike: IkeSocket) -> None:
        self.inner = inner
        self.ike = ike
        if ike.handover is None:  # ESP in a train led by IKE goes on to the data plane
            ike.handover = inner.hand_over

    def hand_over(self, datagrams: list[bytes], addr: Address) -> None:
        self.inner.hand_over(datagrams, addr)

    def add_inbound(self, sa: SaParams | EspSA, peer: Address, *, udp_encap: bool = True,
                    allowed_src: str | None = None, transport: str = "") -> None:
        self.inner.add_inbound(sa, peer, udp_encap=udp_encap, allowed_src=allowed_src,
                               transport=transport)

    def add_outbound(self, sa: SaParams | EspSA, peer: Address, *, udp_encap: bool = True,
                     dst: str | None = None, transport: str = "") -> None:
        self.inner.add_outbound(sa, peer, udp_encap=udp_encap, dst=dst, transport=transport)

    def remove_sa(self, spi: int) -> None:
        self.inner.remove_sa(spi)

    def batch(self) -> contextlib.AbstractContextManager[None]:
        return self.inner.batch()

    def flush_batch(self) -> None:
        self.inner.flush_batch()

    def update_peer(self, old: Address, new: Address) -> None:
        self.inner.update_peer(old, new)

    def set_keepalive(self, peer: Address, interval: float | None,
                      transport: str = "") -> None:
        self.inner.set_keepalive(peer, interval, transport)

    def send_ike(self, message: bytes, addr: Address,
                 transport: Transport = Transport.NATT) -> None:
        if transport is Transport.NATT:
            self.ike.send(message, addr)  # the IKE socket's own counters see it
        else:
            self.inner.send_ike(message, addr, transport)

    def ctcp_close(self, addr: Address) -> None:
        self.inner.ctcp_close(addr)

    def events(self) -> list[Event]:
        return self.inner.events()

    async def stats(self) -> DataplaneStats:
        return self.plus_ike(await self.inner.stats())

    async def counters(self, sas: bool = True) -> SaCounters:
        c = await self.inner.counters(sas)
        return dataclasses.replace(c, totals=self.plus_ike(c.totals))

    def plus_ike(self, s: DataplaneStats) -> DataplaneStats:
        """`s` with the IKE socket's datagrams counted as the data plane counts them."""
        i = self.ike
        return dataclasses.replace(
            s, ike_rx=s.ike_rx + i.rx, ike_tx=s.ike_tx + i.tx,
            udp_rx=s.udp_rx + i.rx + i.drops.total(), drops=_plus(s.drops, i.drops),
            udp_rx_calls=s.udp_rx_calls + i.rx_calls,
            udp_rx_datagrams=s.udp_rx_datagrams + i.rx_datagrams,
            drops_total=_plus(s.drops_total, i.drops))


def _plus(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    """Counts of `a` and `b` added (a reason at 0 in `a` stays listed)."""
    out = dict(a)
    for k, n in b.items():
        out[k] = out.get(k, 0) + n
    return out
