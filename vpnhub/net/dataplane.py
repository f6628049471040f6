"""The ESP forwarding engine: TUN <-> ESP-in-UDP 4500 (RFC 3948) or raw ESP.

Design (numbers from /work/shared/interop/DATAPLANE.md):

- One thread runs a level-triggered ``select.epoll`` loop over the TUN fd, the
  UDP 4500 socket, the raw ESP socket (IP protocol 50, used when there is no
  NAT) and an eventfd that wakes it for control commands.  Each ready fd is
  drained until ``EAGAIN`` or until ``budget`` packets (so a flood on one fd
  cannot starve the others, IKE on 4500 included; epoll reports the rest
  again at once).  Per packet: 4-5 us of syscalls plus the crypto, against
  28 us for an asyncio ``DatagramProtocol``.
- Outbound: TUN read -> outbound SA by the 4 bytes of the inner IPv4
  destination (dict), then longest prefix, then the default SA ->
  ``EspSA.encapsulate`` -> ``sendto`` the peer, over UDP or raw ESP.
- Inbound: UDP 4500 datagram -> ESP (first 4 bytes not zero, >= 8 bytes) ->
  inbound SA by the 4-byte SPI (dict) -> ``decapsulate`` -> inner source check
  (concentrator: must be the client's assigned address) -> TUN write.
  IKE (after the non-ESP marker) goes to the control plane's bounded
  :class:`ControlInbox`; NAT keepalives are counted.
- Counters are plain ints on the SAs and here; :class:`GetStats` returns a
  snapshot built in the data-plane thread.  Drops carry stable reason names.

Control interface.  The IKE engine lives in an asyncio loop elsewhere; it
talks to the data plane with small frozen dataclass commands
(:class:`AddInbound`, :class:`AddOutbound`, :class:`RemoveSA`,
:class:`UpdatePeer`, :class:`SetKeepalive`, :class:`GetStats`) passed to
``Dataplane.submit`` (thread-safe; returns a ``concurrent.futures.Future``,
``await asyncio.wrap_future(f)`` from asyncio).  Commands carry
:class:`~vpnhub.esp.sa.SaParams` (plain data), not cipher objects, so the same
messages can be pickled over a socketpair to data-plane worker processes.
Events flow back through the :class:`ControlInbox` (IKE datagrams, a peer that
moved to a new address/port, an SA that ran out of sequence numbers).  The
control plane sends IKE on 4500 with ``Dataplane.send_ike`` (the data plane
owns that socket; ``sendto`` is thread-safe).

Rekey (Quick Mode): ``AddInbound(new)`` (old and new inbound both valid),
``AddOutbound(new, dst)`` (replaces the old one for that destination), later
``RemoveSA(old_in)`` / ``RemoveSA(old_out)``.

NAT keepalives (RFC 3948 4): ``SetKeepalive(peer, 20.0)`` on the side behind
NAT; the loop sends one 0xFF byte to the peer whenever nothing was sent to it
for ``interval`` seconds.  Time comes from the ``clock`` passed in (default
``time.monotonic``); ``tick(now)`` can also be driven by hand.

Next step, multi-worker (documented, not built here): one worker process per
core, each with its own queue of an ``IFF_MULTI_QUEUE`` TUN
(``TunDevice.add_queue``) and its own ``SO_REUSEPORT`` socket on 4500
(``open_udp_socket(reuse_port=True)``); the kernel steers a flow's return
packets to the queue that wrote it, and ``SO_ATTACH_REUSEPORT_CBPF`` can shard
inbound datagrams by peer.  Each SA (sequence numbers, replay window, GCM
IVs) must live in exactly one worker; the control plane pickles the same
commands to the owning worker over a socketpair and merges ``GetStats``.
DATAPLANE.md measured 1.6-1.9x with two workers.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Final

from vpnhub.esp.errors import BAD_INNER_PACKET, SPOOFED_SOURCE, EspDrop
from vpnhub.esp.inner import inner_source_reason
from vpnhub.esp.sa import EspSA, SaParams
from vpnhub.net.tun import PacketDevice
from vpnhub.net.udpencap import (
    NAT_KEEPALIVE,
    NON_ESP_MARKER,
    Esp,
    Ike,
    Keepalive,
    Malformed,
    classify,
)

Address = tuple[str, int]

MAX_DATAGRAM: Final = 65535
IPPROTO_ESP: Final = 50

# Data-plane drop reasons (the SAs count their own: replay, auth_failed, ...).
NOT_IPV4: Final = "not_ipv4"  # TUN packet that is not IPv4
NO_SA: Final = "no_sa"  # no outbound SA for the inner destination
UNKNOWN_SPI: Final = "unknown_spi"
SEND_BUFFER_FULL: Final = "send_buffer_full"
SEND_ERROR: Final = "send_error"
TUN_WRITE_ERROR: Final = "tun_write_error"
BAD_OUTER_PACKET: Final = "bad_outer_packet"  # raw ESP socket: truncated IP header
CONTROL_QUEUE_FULL: Final = "control_queue_full"


# -- events to the control plane ---------------------------------------------


@dataclass(frozen=True, slots=True)
class IkeDatagram:
    """An IKE message that arrived on UDP 4500 (non-ESP marker removed)."""

    message: bytes
    addr: Address


@dataclass(frozen=True, slots=True)
class PeerMoved:
    """Authentic ESP for ``spi`` came from ``new`` instead of ``old`` (NAT rebinding)."""

    spi: int
    old: Address
    new: Address


@dataclass(frozen=True, slots=True)
class SaExhausted:
    """Outbound SA ``spi`` sent 2^32-1 packets and refuses more: rekey now."""

    spi: int


Event = IkeDatagram | PeerMoved | SaExhausted


class ControlInbox:
    """Bounded, thread-safe queue of events for the control plane.

    Like wireguard-go's handshake queue: when it is full, new events are
    dropped and counted, so a flood of IKE packets can never stall the data
    path.  ``notify`` (optional) is called from the data-plane thread once per
    burst, when the first event lands in an empty, drained inbox; from
    asyncio pass e.g. ``lambda: loop.call_soon_threadsafe(wakeup.set)`` and
    call ``drain()`` in the handler.  Threads can block in ``get``.
    """

    def __init__(self, maxlen: int = 1024, notify: Callable[[], None] | None = None) -> None:
        self.maxlen = maxlen
        self.dropped = 0
        self._notify = notify
        self._items: deque[Event] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._signalled = False

    def put(self, event: Event) -> bool:
        with self._cond:
            if len(self._items) >= self.maxlen:
                self.dropped += 1
                return False
            self._items.append(event)
            self._cond.notify()
            fire = not self._signalled
            self._signalled = True
        if fire and self._notify is not None:
            self._notify()
        return True

    def drain(self) -> list[Event]:
        """Everything queued now (re-arms ``notify``)."""
        with self._cond:
            items = list(self._items)
            self._items.clear()
            self._signalled = False
        return items

    def get(self, timeout: float | None = None) -> Event | None:
        """Next event, waiting up to ``timeout`` seconds; None on timeout."""
        with self._cond:
            if not self._items and not self._cond.wait(timeout):
                return None
            event = self._items.popleft()
            if not self._items:
                self._signalled = False
            return event

    def __len__(self) -> int:
        return len(self._items)


# -- commands from the control plane -----------------------------------------


@dataclass(frozen=True)
class AddInbound:
    """Accept ESP with ``sa.spi`` from ``peer``.

    ``allowed_src``: the only inner IPv4 source accepted (the client's
    Mode Config address, on the concentrator); None accepts any.
    """

    sa: SaParams | EspSA
    peer: Address
    udp_encap: bool = True
    allowed_src: str | None = None


@dataclass(frozen=True)
class AddOutbound:
    """Encrypt packets routed to ``dst`` (address, CIDR, or None = default) to ``peer``."""

    sa: SaParams | EspSA
    peer: Address
    udp_encap: bool = True
    dst: str | None = None


@dataclass(frozen=True)
class RemoveSA:
    """Remove the inbound and/or outbound SA with this SPI (no-op if absent)."""

    spi: int


@dataclass(frozen=True)
class UpdatePeer:
    """Send everything that went to ``old`` to ``new`` from now on (NAT rebinding)."""

    old: Address
    new: Address


@dataclass(frozen=True)
class SetKeepalive:
    """Send NAT keepalives to ``peer`` every ``interval`` s of silence (None: stop)."""

    peer: Address
    interval: float | None


@dataclass(frozen=True)
class GetStats:
    """Snapshot of every counter (result: a dict, see ``Dataplane.snapshot``)."""


Command = AddInbound | AddOutbound | RemoveSA | UpdatePeer | SetKeepalive | GetStats


# -- tables ------------------------------------------------------------------


class _Peer:
    __slots__ = ("addr", "keepalive_interval", "keepalive_sent", "keepalives_rx",
                 "keepalives_tx", "last_tx", "send", "udp")

    def __init__(self, addr: Address, udp: bool, send: Callable[[bytes, Address], int]) -> None:
        self.addr = addr
        self.udp = udp
        self.send = send
        self.keepalive_interval: float | None = None
        self.keepalive_sent = 0.0
        self.keepalives_rx = 0
        self.keepalives_tx = 0
        self.last_tx = 0.0


class _Out:
    __slots__ = ("dst", "peer", "sa")

    def __init__(self, sa: EspSA, peer: _Peer, dst: str) -> None:
        self.sa = sa
        self.peer = peer
        self.dst = dst


class _In:
    __slots__ = ("allowed_src", "peer", "sa", "seen")

    def __init__(self, sa: EspSA, peer: _Peer, allowed_src: bytes | None) -> None:
        self.sa = sa
        self.peer = peer
        self.allowed_src = allowed_src
        self.seen = peer.addr  # last source address of authentic ESP


def _build(sa: SaParams | EspSA) -> EspSA:
    return sa if isinstance(sa, EspSA) else sa.build()


# -- sockets -----------------------------------------------------------------


def open_udp_socket(host: str = "0.0.0.0", port: int = 4500, *, reuse_port: bool = False,
                    buffer_bytes: int = 4 << 20) -> socket.socket:
    """Non-blocking UDP socket for NAT-T (no UDP_ENCAP: ESP stays in userspace)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    _grow_buffers(sock, buffer_bytes)
    sock.bind((host, port))
    sock.setblocking(False)
    return sock


def open_esp_socket(host: str = "0.0.0.0", *, buffer_bytes: int = 4 << 20) -> socket.socket:
    """Non-blocking raw IP socket for protocol 50 (ESP without NAT); needs CAP_NET_RAW.

    Received datagrams start with the IPv4 header; sent ones get it from the kernel.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_ESP)
    _grow_buffers(sock, buffer_bytes)
    if host != "0.0.0.0":
        sock.bind((host, 0))
    sock.setblocking(False)
    return sock


def _grow_buffers(sock: socket.socket, size: int) -> None:
    # The kernel silently caps these at net.core.[rw]mem_max.
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, opt, size)


def _ipv4(address: str) -> bytes:
    return ipaddress.IPv4Address(address).packed


# -- the engine --------------------------------------------------------------


class Dataplane:
    """One forwarding loop over a TUN and the ESP sockets.  See the module doc."""

    def __init__(
        self,
        tun: PacketDevice,
        *,
        udp: socket.socket | None = None,
        esp: socket.socket | None = None,
        inbox: ControlInbox | None = None,
        clock: Callable[[], float] = time.monotonic,
        budget: int = 256,
    ) -> None:
        self.tun = tun
        self.udp = udp
        self.esp = esp
        self.inbox = inbox if inbox is not None else ControlInbox()
        self.clock = clock
        self.budget = budget
        self._tun_fd = tun.fileno()
        self._out_exact: dict[bytes, _Out] = {}
        self._out_prefix: list[tuple[int, int, _Out]] = []  # (net, mask, entry), longest first
        self._out_default: _Out | None = None
        self._in: dict[bytes, _In] = {}
        self._peers: dict[Address, _Peer] = {}
        self.drops: dict[str, int] = {}
        self.tun_rx = 0
        self.udp_rx = 0
        self.esp_rx = 0
        self.ike_rx = 0
        self.ike_tx = 0
        self.keepalive_rx = 0
        self._commands: deque[tuple[Command, Future[object]]] = deque()
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._epoll = select.epoll()
        self._epoll.register(self._tun_fd, select.EPOLLIN)
        self._epoll.register(self._wake, select.EPOLLIN)
        if udp is not None:
            self._epoll.register(udp.fileno(), select.EPOLLIN)
        if esp is not None:
            self._epoll.register(esp.fileno(), select.EPOLLIN)
        self._running = False
        self._thread: threading.Thread | None = None
        self._loop_thread: threading.Thread | None = None
        self._next_tick = 0.0

    # -- control (any thread) -------------------------------------------------

    def submit(self, command: Command) -> Future[object]:
        """Queue a command for the data-plane thread; thread-safe.

        The loop applies it at its next wake-up (the eventfd makes that
        immediate); without a running loop, ``poll`` or ``apply_commands``
        must be called for the future to complete.
        """
        future: Future[object] = Future()
        self._commands.append((command, future))
        os.eventfd_write(self._wake, 1)
        return future

    def call(self, command: Command, timeout: float | None = 5.0) -> object:
        """Apply ``command`` and return its result, from any thread.

        Runs it directly when no loop thread is running (or when called from
        the loop thread itself), else goes through ``submit`` and waits.
        """
        loop = self._loop_thread
        if loop is None or loop is threading.current_thread():
            self.apply_commands()
            return self._apply_now(command)
        return self.submit(command).result(timeout)

    def send_ike(self, message: bytes, addr: Address) -> None:
        """Send an IKE message on UDP 4500 (prefixed with the non-ESP marker)."""
        if self.udp is None:
            raise RuntimeError("no UDP 4500 socket")
        self.udp.sendto(NON_ESP_MARKER + message, addr)
        self.ike_tx += 1

    # -- running ---------------------------------------------------------------

    def start(self) -> threading.Thread:
        """Run the loop in a daemon thread."""
        self._running = True
        thread = threading.Thread(target=self._run, name="vpnhub-dataplane", daemon=True)
        self._thread = self._loop_thread = thread  # from now on commands go through submit
        thread.start()
        return thread

    def stop(self, timeout: float | None = 5.0) -> None:
        """End the loop (also safe from a signal handler in the loop's thread)."""
        self._running = False
        if self._wake >= 0:
            os.eventfd_write(self._wake, 1)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            self._thread = None

    def run(self) -> None:
        """Run the loop in the calling thread until ``stop``."""
        self._running = True
        self._run()

    def _run(self) -> None:
        self._loop_thread = threading.current_thread()
        try:
            while self._running:
                self.poll(self._timeout())
        finally:
            self._loop_thread = None

    def close(self) -> None:
        """Stop and release the epoll and eventfd (not the TUN and sockets: the caller's)."""
        if self._wake < 0:
            return
        self.stop()
        self._epoll.close()
        os.close(self._wake)
        self._wake = -1

    def _timeout(self) -> float:
        return max(0.0, min(1.0, self._next_tick - self.clock()))

    def poll(self, timeout: float = 0.0) -> None:
        """Wait up to ``timeout`` s for I/O, then handle all of it once."""
        events = self._epoll.poll(timeout)
        now = self.clock()
        tun_fd = self._tun_fd
        udp_fd = self.udp.fileno() if self.udp is not None else -2
        for fd, _mask in events:
            if fd == tun_fd:
                self._from_tun(now)
            elif fd == udp_fd:
                self._from_udp(now)
            elif fd == self._wake:
                with contextlib.suppress(BlockingIOError):
                    os.eventfd_read(self._wake)
                self.apply_commands()
            else:
                self._from_raw_esp(now)
        if now >= self._next_tick:
            self.tick(now)

    def tick(self, now: float) -> None:
        """Timers: NAT keepalives.  Called by the loop; callable by hand in tests."""
        next_tick = now + 1.0
        for peer in self._peers.values():
            interval = peer.keepalive_interval
            if interval is None:
                continue
            due = max(peer.last_tx, peer.keepalive_sent) + interval
            if now >= due:
                self._send_keepalive(peer, now)
                due = now + interval
            next_tick = min(next_tick, due)
        self._next_tick = next_tick

    def _send_keepalive(self, peer: _Peer, now: float) -> None:
        if self.udp is None or not peer.udp:
            return
        try:
            self.udp.sendto(NAT_KEEPALIVE, peer.addr)
        except OSError:
            self._drop(SEND_ERROR)
            return
        peer.keepalive_sent = now
        peer.keepalives_tx += 1

    # -- hot paths -------------------------------------------------------------

    def _drop(self, reason: str) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1

    def _from_tun(self, now: float) -> None:
        read = os.read
        fd = self._tun_fd
        exact = self._out_exact
        for _ in range(self.budget):
            try:
                packet = read(fd, MAX_DATAGRAM)
            except BlockingIOError:
                return
            self.tun_rx += 1
            if len(packet) < 20 or packet[0] >> 4 != 4:
                self._drop(NOT_IPV4)
                continue
            entry = exact.get(packet[16:20])
            if entry is None:
                entry = self._lookup_slow(packet)
                if entry is None:
                    self._drop(NO_SA)
                    continue
            sa = entry.sa
            try:
                esp = sa.encapsulate(packet)
            except EspDrop:
                self.inbox.put(SaExhausted(sa.spi))
                continue
            sa.last_activity = now
            peer = entry.peer
            peer.last_tx = now
            try:
                peer.send(esp, peer.addr)
            except BlockingIOError:
                self._drop(SEND_BUFFER_FULL)
            except OSError:
                self._drop(SEND_ERROR)

    def _lookup_slow(self, packet: bytes) -> _Out | None:
        if self._out_prefix:
            dst = int.from_bytes(packet[16:20], "big")
            for net, mask, entry in self._out_prefix:
                if dst & mask == net:
                    return entry
        return self._out_default

    def _from_udp(self, now: float) -> None:
        assert self.udp is not None
        recv = self.udp.recvfrom
        deliver = self._deliver
        for _ in range(self.budget):
            try:
                data, addr = recv(MAX_DATAGRAM)
            except BlockingIOError:
                return
            self.udp_rx += 1
            # Hot path inline: ESP is anything of >= 8 bytes not starting with 4 zeros.
            if len(data) >= 8 and data[:4] != NON_ESP_MARKER:
                deliver(data, addr, now)
            else:
                self._udp_control(data, addr)

    def _udp_control(self, data: bytes, addr: Address) -> None:
        kind = classify(data)
        if isinstance(kind, Ike):
            self.ike_rx += 1
            if not self.inbox.put(IkeDatagram(kind.message, addr)):
                self._drop(CONTROL_QUEUE_FULL)
        elif isinstance(kind, Keepalive):
            self.keepalive_rx += 1
            peer = self._peers.get(addr)
            if peer is not None:
                peer.keepalives_rx += 1
        elif isinstance(kind, Malformed):
            self._drop(kind.reason)
        elif isinstance(kind, Esp):  # pragma: no cover - handled inline
            self._deliver(kind.packet, addr, self.clock())

    def _from_raw_esp(self, now: float) -> None:
        if self.esp is None:
            return
        recv = self.esp.recvfrom
        for _ in range(self.budget):
            try:
                data, addr = recv(MAX_DATAGRAM)
            except BlockingIOError:
                return
            self.esp_rx += 1
            ihl = (data[0] & 0x0F) * 4 if data else 0
            if ihl < 20 or len(data) < ihl + 8:
                self._drop(BAD_OUTER_PACKET)
                continue
            self._deliver(data[ihl:], (addr[0], 0), now)

    def _deliver(self, esp: bytes, addr: Address, now: float) -> None:
        entry = self._in.get(esp[:4])
        if entry is None:
            self._drop(UNKNOWN_SPI)
            return
        sa = entry.sa
        try:
            inner = sa.decapsulate(esp)[0]
        except EspDrop:
            return  # counted on the SA
        allowed = entry.allowed_src
        if allowed is not None and inner[12:16] != allowed:
            sa.count_drop(inner_source_reason(inner, allowed) or SPOOFED_SOURCE)
            return
        sa.last_activity = now
        if addr != entry.seen:
            self._peer_moved(entry, addr)
        try:
            os.write(self._tun_fd, inner)
        except OSError:
            if len(inner) < 20:
                sa.count_drop(BAD_INNER_PACKET)
            else:
                self._drop(TUN_WRITE_ERROR)

    def _peer_moved(self, entry: _In, addr: Address) -> None:
        old = entry.seen
        entry.seen = addr
        self.inbox.put(PeerMoved(entry.sa.spi, old, addr))

    # -- commands (data-plane thread) ------------------------------------------

    def apply_commands(self) -> None:
        """Run queued commands; done by the loop, or by hand when no loop runs."""
        while self._commands:
            command, future = self._commands.popleft()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(self._apply_now(command))
            except Exception as exc:  # reported to the caller through the future
                future.set_exception(exc)

    def _apply_now(self, command: Command) -> object:
        if isinstance(command, AddInbound):
            return self._add_inbound(command)
        if isinstance(command, AddOutbound):
            return self._add_outbound(command)
        if isinstance(command, RemoveSA):
            return self._remove_sa(command.spi)
        if isinstance(command, UpdatePeer):
            return self._update_peer(command.old, command.new)
        if isinstance(command, SetKeepalive):
            peer = self._peer(command.peer, True)
            peer.keepalive_interval = command.interval
            self._next_tick = 0.0
            return None
        if isinstance(command, GetStats):
            return self.snapshot()
        raise TypeError(f"unknown command {command!r}")

    def _peer(self, addr: Address, udp: bool) -> _Peer:
        peer = self._peers.get(addr)
        if peer is None:
            sock = self.udp if udp else self.esp
            if sock is None:
                raise RuntimeError("no UDP 4500 socket" if udp else "no raw ESP socket")
            peer = self._peers[addr] = _Peer(addr, udp, sock.sendto)
        return peer

    def _add_inbound(self, cmd: AddInbound) -> EspSA:
        sa = _build(cmd.sa)
        allowed = _ipv4(cmd.allowed_src) if cmd.allowed_src is not None else None
        self._in[sa.spi_bytes] = _In(sa, self._peer(cmd.peer, cmd.udp_encap), allowed)
        return sa

    def _add_outbound(self, cmd: AddOutbound) -> EspSA:
        sa = _build(cmd.sa)
        net = ipaddress.IPv4Network(cmd.dst or "0.0.0.0/0")
        entry = _Out(sa, self._peer(cmd.peer, cmd.udp_encap), str(net))
        if net.prefixlen == 32:
            self._out_exact[net.network_address.packed] = entry
        elif net.prefixlen == 0:
            self._out_default = entry
        else:
            key = (int(net.network_address), int(net.netmask))
            rest = [p for p in self._out_prefix if p[:2] != key]
            rest.append((*key, entry))
            rest.sort(key=lambda p: -p[1])  # longest prefix (largest mask) first
            self._out_prefix = rest
        return sa

    def _outbound_entries(self) -> list[_Out]:
        entries = [*self._out_exact.values(), *(p[2] for p in self._out_prefix)]
        if self._out_default is not None:
            entries.append(self._out_default)
        return entries

    def _remove_sa(self, spi: int) -> int:
        key = spi.to_bytes(4, "big")
        removed = 1 if self._in.pop(key, None) is not None else 0
        for dst, entry in list(self._out_exact.items()):
            if entry.sa.spi == spi:
                del self._out_exact[dst]
                removed += 1
        before = len(self._out_prefix)
        self._out_prefix = [p for p in self._out_prefix if p[2].sa.spi != spi]
        removed += before - len(self._out_prefix)
        if self._out_default is not None and self._out_default.sa.spi == spi:
            self._out_default = None
            removed += 1
        self._forget_idle_peers()
        return removed

    def _forget_idle_peers(self) -> None:
        used = {id(e.peer) for e in self._in.values()}
        used.update(id(e.peer) for e in self._outbound_entries())
        for addr, peer in list(self._peers.items()):
            if id(peer) not in used and peer.keepalive_interval is None:
                del self._peers[addr]

    def _update_peer(self, old: Address, new: Address) -> bool:
        peer = self._peers.pop(old, None)
        if peer is None:
            return False
        peer.addr = new
        self._peers[new] = peer
        return True

    # -- counters --------------------------------------------------------------

    def snapshot(self) -> dict[str, object]:
        """All counters; call in the data-plane thread (``GetStats``) while it runs."""
        sas: list[dict[str, object]] = []
        totals: dict[str, int] = dict(self.drops)
        for key, entry in self._in.items():
            sas.append({**entry.sa.stats(), "direction": "in", "peer": entry.peer.addr,
                        "seen": entry.seen, "udp_encap": entry.peer.udp, "spi_key": key.hex()})
        for out in self._outbound_entries():
            sas.append({**out.sa.stats(), "direction": "out", "peer": out.peer.addr,
                        "udp_encap": out.peer.udp, "dst": out.dst})
        for entry_stats in sas:
            drops = entry_stats["drops"]
            assert isinstance(drops, dict)
            for reason, count in drops.items():
                totals[reason] = totals.get(reason, 0) + count
        return {
            "tun_rx": self.tun_rx,
            "udp_rx": self.udp_rx,
            "esp_rx": self.esp_rx,
            "ike_rx": self.ike_rx,
            "ike_tx": self.ike_tx,
            "keepalive_rx": self.keepalive_rx,
            "keepalive_tx": sum(p.keepalives_tx for p in self._peers.values()),
            "drops": dict(self.drops),
            "drops_total": totals,
            "control_dropped": self.inbox.dropped,
            "sas": sas,
            "peers": [
                {"addr": p.addr, "udp_encap": p.udp, "keepalive_interval": p.keepalive_interval,
                 "keepalives_rx": p.keepalives_rx, "keepalives_tx": p.keepalives_tx}
                for p in self._peers.values()
            ],
        }


async def fetch_stats(dataplane: Dataplane) -> dict[str, Any] | None:
    """``GetStats`` from asyncio: the snapshot, or None if the loop could not answer."""
    import asyncio

    try:
        snap = await asyncio.wrap_future(dataplane.submit(GetStats()))
    except Exception:
        return None
    return snap if isinstance(snap, dict) else None
