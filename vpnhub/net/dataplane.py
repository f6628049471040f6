"""The ESP forwarding engine: TUN <-> ESP-in-UDP 4500 (RFC 3948) or raw ESP.

Design (numbers from docs/DATAPLANE-COSTS.md):

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
  :class:`ControlInbox`; NAT keepalives are counted.  (The concentrator
  normally gets no IKE here: the kernel gives it a socket of its own,
  vpnhub/net/ikesplit.py.)
- Fewer system calls per packet (issue 16, vpnhub/net/udpgso.py,
  docs/TRANSPORTS.md): the UDP sockets take ``UDP_GRO`` and one receive may
  return a train of one flow's datagrams, split here and each handled as if
  read alone; the ESP datagrams one TUN batch makes for one peer, of one
  size, leave in one ``sendmsg`` with ``UDP_SEGMENT`` (flushed at the end of
  every batch).  ESP that reached the control plane's IKE socket in a train
  led by IKE comes back through ``hand_over``.  With the C accelerator
  (vpnhub/net/_netfast.c) one ``recvmmsg`` takes up to 64 datagrams or trains
  (``udpgso.BatchReader``): a peer that sends one datagram a call over a path
  without GRO (vpnc) no longer costs a receive per ESP packet.
- TUN offloads (issue 16, vpnhub/net/tunoffload.py, a TUN with
  ``vnet_hdr``): a read may be a TCP super-packet, cut into segments before
  routing; the packets a wake-up decrypts are held and written at its end
  (``_flush_tun``), each flow's consecutive TCP segments coalesced into one
  write.  Without the header (``FakeTun``, ``tun_offload = false``) every
  packet is read and written alone, at once, as before.
- Interrupt moderation (issue 16, ``moderation``, ``[dataplane] moderation_us``):
  a fast loop finds few packets at each wake-up (vpnc sends one datagram at a
  time), and each wake-up costs an epoll, a receive, a TUN write and its pass
  through the host's stack whatever it carries. Under a sustained stream the
  loop waits a little after a small batch, so the next one is larger (a NIC's
  interrupt coalescing); a lone packet (a ping) never waits.
- Counters are plain ints on the SAs and here; :class:`GetStats` returns a
  snapshot built in the data-plane thread.  Drops carry stable reason names.

Control interface.  The IKE engine lives in an asyncio loop elsewhere; it
talks to the data plane with the small frozen dataclass commands of
vpnhub/net/messages.py (:class:`AddInbound`, :class:`AddOutbound`,
:class:`RemoveSA`, :class:`UpdatePeer`, :class:`SetKeepalive`,
:class:`GetStats`, :class:`CtcpClose`) passed to ``Dataplane.submit``
(thread-safe; returns a ``concurrent.futures.Future``, ``await
asyncio.wrap_future(f)`` from asyncio), or through the thin methods of the
``DataplaneHandle`` Protocol (vpnhub/net/handle.py: ``add_inbound``,
``remove_sa``, ``await stats()``, ``events()``, ...).  Commands carry
:class:`~vpnhub.esp.sa.SaParams` (plain data), not cipher objects, so the same
messages can be pickled over a socketpair to data-plane worker processes.
Events flow back through the :class:`ControlInbox` (IKE datagrams, a peer that
moved to a new address/port, an SA that ran out of sequence numbers).  The
control plane sends IKE on 4500 with ``Dataplane.send_ike`` (the data plane
owns that socket; ``sendto`` is thread-safe).  ``GetStats`` (``await
stats()``) answers a typed :class:`~vpnhub.net.stats.DataplaneStats`.

Rekey (Quick Mode): ``AddInbound(new)`` (old and new inbound both valid),
``AddOutbound(new, dst)`` (replaces the old one for that destination), later
``RemoveSA(old_in)`` / ``RemoveSA(old_out)``.  ``RemoveSA`` costs the same with
10,000 sessions as with one (issue 13: a shutdown removes them all): the routes
are indexed by SPI, each peer counts the entries that use it, and the peers left
unused are kept aside for the removal that forgets them.

NAT keepalives (RFC 3948 4): ``SetKeepalive(peer, 20.0)`` on the side behind
NAT; the loop sends one 0xFF byte to the peer whenever nothing was sent to it
for ``interval`` seconds.  Time comes from the ``clock`` passed in (default
``time.monotonic``); ``tick(now)`` can also be driven by hand.

Other transports (issue 8; the VPN 3000's "NAT transparency" options).  Every
SA command takes ``transport``: "" keeps the meaning derived from
``udp_encap`` ("natt" or "esp"); "cisco-udp" and "ctcp" pick the others.

- Cisco IPsec over UDP ("cisco-udp"): ESP in UDP to a configured port
  (default 10000) on the ``cisco_udp`` socket, without a non-ESP marker: no
  IKE on that port (IKE stays on UDP 500).  Its NAT keepalive is the one
  vpnc sends in cisco-udp mode, ``00 00 00 00 ff``.  Inbound ESP is demuxed
  by SPI like ESP on 4500.
- IPsec over TCP ("ctcp"): IKE and ESP framed in TCP connections as Cisco
  does (vpnhub/net/ctcp.py documents the framing and its sources).  The
  server side accepts on up to 10 listening sockets (``ctcp_listeners``);
  the client side connects with ``ctcp_connect(addr)``.  IKE frames reach
  the :class:`ControlInbox` as ``IkeDatagram(message, peer, Transport.CTCP)``
  where ``peer`` is the connection's remote address; the control plane answers
  with ``send_ike(message, peer, Transport.CTCP)`` and installs SAs with
  ``transport="ctcp"`` and that same ``peer``: ESP follows whichever
  connection has that remote address.  A closed connection is reported as
  :class:`CtcpClosed`.
- ESP in UDP 4500 on the cluster's virtual address ("natt-virtual", issue 17,
  docs/CLUSTER.md "Redirect"): a client that follows no redirect (strongSwan)
  is served on the address it sent to, and its PAT lets through only what
  comes back from there. The ``udp_virtual`` socket is the control plane's
  socket on that address (concentrator/virtual.py), used here to send only:
  ESP, GSO trains and NAT keepalives leave from it. Its inbound ESP is read
  by the control plane with its IKE and handed over (``hand_over``): only
  the clients that land there, few, pay for the crossing.
- Fragmentation policy (``frag_policy``, ``outer_mtu``): what happens to an
  inner packet whose ESP packet would not fit ``outer_mtu``;
  vpnhub/net/fragment.py.  All ESP sockets get ``IP_PMTUDISC_DONT`` so that
  the kernel fragments outer packets (policy "none") instead of failing.

Several workers (``[dataplane] workers`` > 1, vpnhub/net/workers.py): one
``Dataplane`` per worker process (vpnhub/net/worker.py), each on its own queue
of an ``IFF_MULTI_QUEUE`` TUN and its own UDP 4500 socket, the kernel steering
ESP by SPI (net/ikesplit.py).  The hooks they use here: ``add_reader`` (the
control link, the hand-over sockets), ``no_route`` (a TUN packet for a client
another worker owns, net/handover.py), ``encrypt_inner`` (a packet handed in)
and ``sequence_numbers`` (where a restarted worker resumes its SAs).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import ipaddress
import logging
import os
import select
import socket
import threading
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import replace
from functools import partial
from operator import attrgetter
from typing import TYPE_CHECKING, Final

from vpnhub.esp.errors import BAD_INNER_PACKET, SPOOFED_SOURCE, EspDrop
from vpnhub.esp.inner import refused_text
from vpnhub.esp.sa import EspSA, SaParams
from vpnhub.ike.transport import Transport
from vpnhub.net.ctcp import ESP_TRAILER, CtcpError, CtcpFramer
from vpnhub.net.fragment import (
    FRAG_NONE,
    OUTER_HEADERS,
    POLICIES,
    FragmentPolicy,
    max_inner_len,
)
from vpnhub.net.messages import (
    CTCP_CLOSED_BY_CONTROL,
    CTCP_CONNECT_FAILED,
    CTCP_CONNECT_TIMEOUT_REASON,
    CTCP_EOF,
    CTCP_ESP_BEFORE_IKE,
    CTCP_REPLACED,
    CTCP_RESET,
    CTCP_SETUP_TIMEOUT_REASON,
    TRANSPORT_CISCO_UDP,
    TRANSPORT_CTCP,
    TRANSPORT_ESP,
    TRANSPORT_NATT,
    TRANSPORT_NATT_VIRTUAL,
    TRANSPORTS,
    AddInbound,
    AddOutbound,
    Address,
    Command,
    CtcpClose,
    CtcpClosed,
    DebugLine,
    Event,
    GetCounters,
    GetStats,
    IkeDatagram,
    OuterFragmentation,
    PeerMoved,
    RemoveSA,
    SaExhausted,
    SetKeepalive,
    UpdatePeer,
)
from vpnhub.net.moderation import Moderation
from vpnhub.net.stats import (
    CtcpConnStats,
    CtcpStats,
    DataplaneStats,
    Direction,
    FragStats,
    Keepalives,
    PeerStats,
    SaCounters,
    SaStats,
    Traffic,
)
from vpnhub.net.tun import PacketDevice, read_frames
from vpnhub.net.tunoffload import (
    READ_SIZE,
    ZERO_HDR,
    OffloadError,
    coalesce,
    from_kernel,
)
from vpnhub.net.udpencap import (
    CISCO_UDP_KEEPALIVE,
    NAT_KEEPALIVE,
    NON_ESP_MARKER,
    Esp,
    Ike,
    Keepalive,
    Malformed,
    classify,
    classify_cisco_udp,
)
from vpnhub.net.udpgso import (
    GSO_REFUSED,
    MAX_SEGMENTS,
    MAX_TRAIN_BYTES,
    BatchReader,
    Datagram,
    GroReader,
    Outgoing,
    SendBatch,
    batch_sender,
    batch_supported,
    enable_gro,
    gso_supported,
    read_budgeted,
    receive_area,
    send_train,
)

if TYPE_CHECKING:
    from vpnhub.net.handle import DataplaneHandle

log = logging.getLogger("vpnhub.net.dataplane")

MAX_DATAGRAM: Final = 65535
KEEPALIVE_BUDGET: Final = 16384  # keepalives read per tick (10,000 clients send 500/s)
IPPROTO_ESP: Final = 50
IP_MTU_DISCOVER: Final = 10  # <linux/in.h>; not in Python 3.11's socket module
IP_PMTUDISC_DONT: Final = 0
# <asm-generic/socket.h> (x86, arm; not in Python's socket module): the buffer
# options that ignore net.core.[rw]mem_max
SO_SNDBUFFORCE: Final = 32
SO_RCVBUFFORCE: Final = 33

MAX_CTCP_LISTENERS: Final = 10  # the VPN 3000 takes up to 10 IPsec over TCP ports
CTCP_MAX_PENDING: Final = 1 << 20  # queued bytes per connection before ESP is dropped
CTCP_MAX_PENDING_IKE: Final = 4 << 20  # ... before the connection is dropped
CTCP_RECV: Final = 256 * 1024
CTCP_SETUP_TIMEOUT: Final = 60.0  # no SA bound to an accepted connection: close it
CTCP_CONNECT_TIMEOUT: Final = 10.0
FRAG_WARN_EVERY: Final = 60.0  # seconds between OuterFragmentation events per peer
# IPSECDBG severities (docs/MANAGER.md): 7 debug (state): SAs installed, removed, peers
# moving; 8 debug (decode summary): drops summarised per SA every DROP_REPORT_EVERY s.
DEBUG_STATE: Final = 7
DEBUG_DROPS: Final = 8
DROP_REPORT_EVERY: Final = 10.0

_TRAFFIC = ("bytes_in", "packets_in", "bytes_out", "packets_out")  # EspSA counters

# Data-plane drop reasons (the SAs count their own: replay, auth_failed, ...).
NOT_IPV4: Final = "not_ipv4"  # TUN packet that is not IPv4
NO_SA: Final = "no_sa"  # no outbound SA for the inner destination
UNKNOWN_SPI: Final = "unknown_spi"
SEND_BUFFER_FULL: Final = "send_buffer_full"
SEND_ERROR: Final = "send_error"
TUN_WRITE_ERROR: Final = "tun_write_error"
TUN_OUT_MAX: Final = 1024  # decrypted packets held for one coalesced flush at most
TUN_READS: Final = 8  # TUN reads per read_frames call (vnet_hdr path)
BAD_OUTER_PACKET: Final = "bad_outer_packet"  # raw ESP socket: truncated IP header
CONTROL_QUEUE_FULL: Final = "control_queue_full"
HANDOVER_QUEUE_FULL: Final = "handover_queue_full"  # ESP from the IKE socket, queue full
HANDOVER_MAX: Final = 4096  # datagrams waiting in hand_over's queue
CTCP_NO_CONNECTION: Final = "ctcp_no_connection"  # ESP for a cTCP peer with no connection
CTCP_SEND_BUFFER_FULL: Final = "ctcp_send_buffer_full"
CTCP_TOO_MANY: Final = "ctcp_too_many_connections"  # accepted and closed at once
PR_SET_TIMERSLACK: Final = 29  # <linux/prctl.h>
TIMER_SLACK_NS: Final = 1000


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


# -- tables ------------------------------------------------------------------


class _Peer:
    __slots__ = ("addr", "frag_count", "frag_warned", "gso", "gso_max", "keepalive",
                 "keepalive_interval", "keepalive_sent", "keepalives_rx", "keepalives_tx",
                 "last_tx", "refs", "send", "transport", "udp")

    def __init__(self, addr: Address, transport: str, send: Callable[[bytes, Address], int],
                 keepalive: bytes | None, gso: socket.socket | None = None) -> None:
        self.addr = addr
        self.transport = transport
        self.udp = transport in (TRANSPORT_NATT, TRANSPORT_CISCO_UDP, TRANSPORT_NATT_VIRTUAL)
        self.send = send
        self.gso = gso  # the UDP socket, if it takes UDP_SEGMENT trains
        self.gso_max = MAX_DATAGRAM  # datagrams above this the kernel would not segment
        self.keepalive = keepalive  # payload of a NAT keepalive on this transport
        self.keepalive_interval: float | None = None
        self.keepalive_sent = 0.0
        self.keepalives_rx = 0
        self.keepalives_tx = 0
        self.last_tx = 0.0
        self.frag_count = 0
        self.frag_warned = -FRAG_WARN_EVERY
        self.refs = 0  # inbound and outbound entries that send through this peer


class _Out:
    __slots__ = ("dst", "limit", "peer", "sa", "slot")

    def __init__(self, sa: EspSA, peer: _Peer, dst: str, limit: int,
                 slot: bytes | tuple[int, int] | None) -> None:
        self.sa = sa
        self.peer = peer
        self.dst = dst
        self.limit = limit  # largest inner packet whose outer packet fits outer_mtu
        # Where the route lives, so that RemoveSA finds it without a scan: the 4-byte
        # address (/32), (net, mask) of a prefix, None for the default route.
        self.slot = slot


class _In:
    __slots__ = ("allowed_src", "peer", "reported", "sa", "seen")

    def __init__(self, sa: EspSA, peer: _Peer, allowed_src: bytes | None) -> None:
        self.sa = sa
        self.peer = peer
        self.allowed_src = allowed_src
        self.seen = peer.addr  # last source address of authentic ESP
        self.reported: dict[str, int] = {}  # drop counters at the last IPSECDBG summary


def _last_refused(entry: _In, grown: dict[str, int]) -> str:
    """The drop line's tail naming the last packet the inner checks (RFC 4301 5.2)
    refused, when they refused any in the window: "; the last refused: ICMP
    10.10.10.2 -> 192.168.2.10 echo request, its source is not the assigned address
    10.40.1.1"."""
    if not entry.sa.refused or not (SPOOFED_SOURCE in grown or BAD_INNER_PACKET in grown):
        return ""
    return f"; the last refused: {refused_text(entry.sa.refused, entry.allowed_src)}"


class _CtcpConn:
    """One cTCP connection (either role); written from any thread under ``lock``."""

    __slots__ = ("addr", "closed", "connected", "connecting", "created", "esp_rx", "esp_tx",
                 "fd", "framer", "ike_rx", "ike_seen", "ike_tx", "local", "lock", "out",
                 "role", "rx_bytes", "sock", "tx_bytes")

    def __init__(self, sock: socket.socket, addr: Address, role: str, now: float,
                 connected: Future[Address] | None = None) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.addr = addr
        self.role = role
        local = sock.getsockname()
        self.local: Address = (local[0], local[1])
        self.framer = CtcpFramer("client" if role == "client" else "server")
        self.lock = threading.RLock()
        self.out = bytearray()  # bytes the socket did not take yet (whole frames after)
        self.connecting = connected is not None
        self.connected = connected
        self.closed = False
        self.created = now
        self.ike_seen = False
        self.ike_rx = self.ike_tx = self.esp_rx = self.esp_tx = 0
        self.rx_bytes = self.tx_bytes = 0


def fine_timer_slack() -> None:
    """This thread's timer slack down to 1 us (Linux; default 50 us): a moderation wait
    of tens of microseconds would otherwise last 50 us more (prctl(2))."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_TIMERSLACK, TIMER_SLACK_NS, 0, 0, 0)


def _build(sa: SaParams | EspSA) -> EspSA:
    return sa if isinstance(sa, EspSA) else sa.build()


def _transport(transport: str, udp_encap: bool) -> str:
    if not transport:
        return TRANSPORT_NATT if udp_encap else TRANSPORT_ESP
    if transport not in TRANSPORTS:
        raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)} (or empty)")
    return transport


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


def open_cisco_udp_socket(host: str = "0.0.0.0", port: int = 10000, *,
                          buffer_bytes: int = 4 << 20) -> socket.socket:
    """Non-blocking UDP socket for Cisco IPsec over UDP (ESP only, default port 10000)."""
    return open_udp_socket(host, port, buffer_bytes=buffer_bytes)


def open_ctcp_listener(host: str = "0.0.0.0", port: int = 10000, *,
                       backlog: int = 128) -> socket.socket:
    """Non-blocking listening TCP socket for Cisco IPsec over TCP (default port 10000)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(backlog)
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
    # SO_RCVBUF/SO_SNDBUF are silently capped at net.core.[rw]mem_max (often
    # 208 KiB); the FORCE variants are not, but need CAP_NET_ADMIN (net/core/sock.c,
    # sk_setsockopt). Both set twice the value (room for the kernel's bookkeeping).
    for force, plain in ((SO_RCVBUFFORCE, socket.SO_RCVBUF),
                         (SO_SNDBUFFORCE, socket.SO_SNDBUF)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, size)
        except OSError:  # not root: as much as net.core.[rw]mem_max allows
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, plain, size)


def allow_outer_fragmentation(sock: socket.socket) -> None:
    """``IP_PMTUDISC_DONT``: no DF on outer packets; the kernel fragments the big ones.

    Without it Linux sets DF and answers a send larger than the route's MTU
    with EMSGSIZE: under policy "none" the packet would be lost instead of
    fragmented.
    """
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT)


def _tcp_options(sock: socket.socket) -> None:
    # One frame per send() goes out at once (cTCP peers read one frame per segment);
    # TCP keepalives keep the PAT's mapping and notice a dead peer.
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 20)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 6)


def _ipv4(address: str) -> bytes:
    return ipaddress.IPv4Address(address).packed


# -- the engine --------------------------------------------------------------


class Dataplane:
    """One forwarding loop over a TUN and the ESP sockets.  See the module doc.

    ``cisco_udp``: the Cisco IPsec over UDP socket (``open_cisco_udp_socket``).
    ``ctcp_listeners``: up to 10 listening sockets (``open_ctcp_listener``).
    ``frag_policy``: "none" (default, as on the VPN 3000), "before-encryption"
    or "clear-df"; ``outer_mtu``: the path MTU outer packets must fit (1500).
    ``moderation``: seconds the loop waits after a small batch in a sustained
    stream (interrupt moderation, ``_run_moderated``; a worker's is
    ``moderation.moderation_limit``); 0 (default): never.
    The sockets stay the caller's (``close`` leaves them open); accepted and
    connected cTCP connections are the data plane's.
    """

    def __init__(
        self,
        tun: PacketDevice,
        *,
        udp: socket.socket | None = None,
        esp: socket.socket | None = None,
        inbox: ControlInbox | None = None,
        clock: Callable[[], float] = time.monotonic,
        budget: int = 256,
        cisco_udp: socket.socket | None = None,
        ctcp_listeners: Sequence[socket.socket] = (),
        frag_policy: str = FRAG_NONE,
        outer_mtu: int = 1500,
        ctcp_max_connections: int = 4096,
        keepalive_sock: socket.socket | None = None,
        gro: bool = True,
        gso: bool = True,
        udp_virtual: socket.socket | None = None,
        moderation: float = 0.0,
    ) -> None:
        if frag_policy not in POLICIES:
            raise ValueError(f"frag_policy must be one of {', '.join(POLICIES)}")
        if len(ctcp_listeners) > MAX_CTCP_LISTENERS:
            raise ValueError(f"at most {MAX_CTCP_LISTENERS} IPsec over TCP ports")
        if outer_mtu < 576:
            raise ValueError("outer_mtu below 576")
        self.tun = tun
        self.udp = udp
        self._send_ike_batch: SendBatch | None = None  # send_ike_batch's, made once
        self.esp = esp
        self.cisco_udp = cisco_udp
        # issue 17: UDP 4500 on the cluster's virtual address, to send "natt-virtual"
        # ESP from (never read here: its datagrams come through hand_over)
        self.udp_virtual = udp_virtual
        # NAT keepalives set aside by the kernel (ikesplit.open_keepalive_socket): read
        # in tick(), never waited on, so that they wake nobody (issue 13)
        self.keepalive_sock = keepalive_sock
        self.ctcp_listeners = tuple(ctcp_listeners)
        self.inbox = inbox if inbox is not None else ControlInbox()
        self.clock = clock
        self.budget = budget
        self.outer_mtu = outer_mtu
        self.moderation = moderation  # seconds; read by run() (see _run_moderated)
        self.moderated = 0  # waits made
        self._woke = 0.0  # when the last epoll returned
        self._decide = Moderation().after  # the moderated loop's (_moderated_turn)
        self.frag = FragmentPolicy(frag_policy)
        self.ctcp_max_connections = ctcp_max_connections
        self.ctcp_setup_timeout = CTCP_SETUP_TIMEOUT
        self._tun_fd = tun.fileno()
        self._out_exact: dict[bytes, _Out] = {}
        self._out_prefix: list[tuple[int, int, _Out]] = []  # (net, mask, entry), longest first
        self._out_default: _Out | None = None
        self._in: dict[bytes, _In] = {}
        # The routes of each outbound SPI, so that RemoveSA is O(1) (issue 13: a scan of
        # every route per removal made shutting down 10,000 sessions O(n^2)).
        self._out_by_spi: dict[int, list[_Out]] = {}
        self._peers: dict[tuple[str, Address], _Peer] = {}
        # Peers no entry uses and without keepalives, forgotten at the next RemoveSA
        # (by id: a peer's address can change under it, UpdatePeer).
        self._idle_peers: dict[int, _Peer] = {}
        self._ctcp: dict[Address, _CtcpConn] = {}
        self._handlers: dict[int, Callable[[float, int], None]] = {}
        self.drops: dict[str, int] = {}
        # What removed SAs counted, so that the totals never go down when an SA ends
        # (Prometheus counters must only grow: rate() reads a fall as a restart).
        self.ended_traffic = dict.fromkeys(_TRAFFIC, 0)
        self.ended_drops: dict[str, int] = {}
        # Bumped by everything that can change a live SA's counters (a packet through
        # an SA, an SA added or removed): while it stands still the live SAs' sums are
        # those of the last totals. With 20,000 idle SAs the 2 s totals summed them
        # all (~5-10 ms of this thread, holding the GIL) for the same result (issue 13).
        self._sa_gen = 0
        self._live_sums_at: tuple[int, dict[str, int], dict[str, int]] | None = None
        self.tun_rx = 0
        # TUN offloads (issue 16, vpnhub/net/tunoffload.py): with a virtio_net_hdr
        # before every packet the kernel hands super-packets (split here) and takes
        # the decrypted packets of a batch coalesced (written at the end of the batch).
        self.vnet_hdr = bool(getattr(tun, "vnet_hdr", False))
        self._tun_out: list[bytes] = []
        self.tun_rx_calls = 0  # reads that returned a packet or a super-packet
        self.tun_tx = 0  # packets written (a coalesced write counts its segments)
        self.tun_tx_calls = 0
        self.tun_rx_super = 0  # super-packets split
        self.tun_tx_super = 0  # coalesced super-packets written
        self.udp_rx = 0
        self.esp_rx = 0
        self.ike_rx = 0
        self.ike_tx = 0
        self.keepalive_rx = 0
        self.cisco_udp_rx = 0
        self.ctcp_accepted = 0
        self.ctcp_connected = 0
        self.ctcp_closed = 0
        self.ctcp_ike_rx = 0
        self.ctcp_ike_tx = 0
        # System calls per packet (issue 16): receives on the UDP sockets and what they
        # held (a GRO train counts its segments), ESP sends over UDP and their datagrams.
        self.udp_tx_calls = 0
        self.udp_tx_datagrams = 0
        # UDP GRO (vpnhub/net/udpgso.py): a reader per socket that took the option;
        # the others keep the recvfrom path.
        self._gro: dict[int, GroReader] = {}
        # recvmmsg (udpgso.BatchReader, the C accelerator): a reader per IPv4 UDP socket,
        # GRO or not, all sharing one receive area; without it GroReader and recvfrom.
        self._batch: dict[int, BatchReader] = {}
        self.udp_gro = False  # the 4500 socket took UDP_GRO
        area = None
        for sock in (udp, cisco_udp, keepalive_sock):
            if sock is None:
                continue
            took = gro and enable_gro(sock)
            self.udp_gro = self.udp_gro or (took and sock is udp)
            if batch_supported(sock):
                if area is None:
                    area = receive_area()
                self._batch[sock.fileno()] = BatchReader(sock, area)
            elif took:
                self._gro[sock.fileno()] = GroReader(sock)
        self._udp_rx_calls_plain = 0  # receives on sockets without GRO (one datagram each)
        # looked up once, not at every wake-up (issue 16: the loop's fixed cost)
        self._udp_fd = udp.fileno() if udp is not None else -2
        self._udp_batch = self._batch.get(self._udp_fd)
        # UDP GSO: the sockets that take UDP_SEGMENT; a wake-up's ESP datagrams to one
        # peer, of one size, leave in one sendmsg (the train, flushed before returning).
        self._gso_fds = frozenset(s.fileno() for s in (udp, cisco_udp, udp_virtual)
                                  if gso and s is not None and gso_supported(s))
        self._train: list[bytes] = []
        self._train_peer: _Peer | None = None
        self._train_size = 0
        self._train_bytes = 0
        self.gso_fallbacks = 0
        # ESP that reached the control plane's IKE socket in a train led by IKE
        # (ikesplit.IkeSocket), handed here: any thread appends, this one drains.
        self._handover: deque[tuple[bytes, Address]] = deque()
        self._handover_lock = threading.Lock()
        self._handover_full = 0  # counted by the appending thread, under the lock
        self.esp_via_ike_socket = 0
        self._commands: deque[tuple[Command, Future[object]]] = deque()
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._wake_pending = False  # an eventfd write not yet seen by the loop
        self._batching = threading.local()  # batch(): per submitting thread
        self._epoll = select.epoll()
        self._epoll.register(self._tun_fd, select.EPOLLIN)
        self._epoll.register(self._wake, select.EPOLLIN)
        for sock in (udp, esp, cisco_udp, udp_virtual):
            if sock is not None:
                allow_outer_fragmentation(sock)
        if udp is not None:
            self._epoll.register(udp.fileno(), select.EPOLLIN)
        if esp is not None:
            self._watch(esp.fileno(), lambda now, _mask: self._from_raw_esp(now))
        if cisco_udp is not None:
            self._watch(cisco_udp.fileno(), lambda now, _mask: self._from_cisco_udp(now))
        for listener in self.ctcp_listeners:
            self._watch(listener.fileno(), self._listener_handler(listener))
        self._running = False
        self._thread: threading.Thread | None = None
        self._loop_thread: threading.Thread | None = None
        self._next_tick = 0.0
        # IPSECDBG: the most detailed severity the event log keeps or prints for it (0:
        # none). Set by the owner; every debug line checks it before building a string.
        self.debug_severity = 0
        self._next_drop_report = 0.0
        # A TUN packet no SA here routes: True if the hook took it (a data-plane
        # worker hands it to the worker that owns the client, net/handover.py).
        self.no_route: Callable[[bytes], bool] | None = None
        # Applies the commands that wait, before an unknown SPI is dropped
        # (`_late_inbound`): the queue here; a worker reads its link (net/worker.py).
        self.late_commands: Callable[[], None] = self.apply_commands
        self._late_checked = -1.0  # the wake-up (its clock) that last did so

    def _watch(self, fd: int, handler: Callable[[float, int], None],
               mask: int = select.EPOLLIN) -> None:
        self._handlers[fd] = handler
        self._epoll.register(fd, mask)

    def add_reader(self, fd: int, handler: Callable[[float], None]) -> None:
        """Call ``handler(now)`` in the loop's thread when ``fd`` is readable (a
        worker's control link and hand-over sockets, vpnhub/net/worker.py)."""
        def read(now: float, _mask: int) -> None:
            try:
                handler(now)
            finally:  # what it encrypted (a hand-over) leaves now, not at the next TUN read
                if self._train:
                    self._flush_train()
        self._watch(fd, read)

    def encrypt_inner(self, packet: bytes, now: float) -> bool:
        """An inner packet that did not come from this TUN (handed over by another
        worker) routed and encrypted as if it had; False (counted ``no_sa``): no SA."""
        entry = self._out_exact.get(packet[16:20]) if len(packet) >= 20 else None
        if entry is None:
            entry = self._lookup_slow(packet) if len(packet) >= 20 else None
            if entry is None:
                self._drop(NO_SA)
                return False
        if len(packet) > entry.limit:
            self._too_big(entry, packet, now)
        else:
            self._encrypt_and_send(entry, packet, now)
        return True

    def sequence_numbers(self) -> tuple[dict[int, int], dict[int, int]]:
        """Every outbound SPI's last sequence number sent, every inbound SPI's replay
        top: where a restarted worker resumes them (vpnhub/net/workers.py)."""
        outs = {spi: max(e.sa.seq for e in entries)
                for spi, entries in self._out_by_spi.items() if entries}
        ins = {e.sa.spi: e.sa.replay.top for e in self._in.values()}
        return outs, ins

    def _unwatch(self, fd: int) -> None:
        self._handlers.pop(fd, None)
        with contextlib.suppress(OSError, ValueError):
            self._epoll.unregister(fd)

    # -- control (any thread) -------------------------------------------------

    def submit(self, command: Command) -> Future[object]:
        """Queue a command for the data-plane thread; thread-safe.

        The loop applies it at its next wake-up (the eventfd makes that
        immediate); without a running loop, ``poll`` or ``apply_commands``
        must be called for the future to complete.
        """
        future: Future[object] = Future()
        self._commands.append((command, future))
        if getattr(self._batching, "on", False):
            self._batching.owed = True  # batch() wakes the loop once, at its end
            if isinstance(command, AddInbound):
                self._batching.installs = True  # flush_batch() hands it over now
            return future
        self._wake_up()
        return future

    def _wake_up(self) -> None:
        # One eventfd write per batch, not per command (a handshake submits two).
        # The loop reads the eventfd, then clears the flag, then drains; here the
        # flag is tested *after* the append: a command that finds it set is seen by
        # that drain, and one that finds it clear writes. (Clearing before the read
        # let the read swallow a write made in between, leaving the flag set with
        # nothing to wake the loop: the next command waited for ever.)
        if not self._wake_pending:
            self._wake_pending = True
            os.eventfd_write(self._wake, 1)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Commands this thread submits inside wake the data-plane thread once, at the end.

        A tunnel's AddInbound and AddOutbound (or its two RemoveSA) then cost one
        wake-up and one hand-over of the GIL instead of two: the eventfd write
        releases the GIL, and the woken loop used to take it and drain the first
        command before the second was queued (issue 13: CPU per tunnel). Nested
        batches join the outer one.
        """
        state = self._batching
        if getattr(state, "on", False):
            yield
            return
        state.on, state.owed, state.installs = True, False, False
        try:
            yield
        finally:
            state.on = False
            if state.owed:
                self._wake_up()

    def flush_batch(self) -> None:
        """Wake the loop now if this thread's open batch() queued an inbound SA, and go
        on batching: an IKE message about to leave may make the peer send ESP on it
        (RFC 2409 5.5; service.py calls this before each send). Other commands wait for
        the batch's end: a shutdown's DELETEs must not wake the loop once each."""
        state = self._batching
        if getattr(state, "on", False) and state.installs:
            state.owed = state.installs = False
            self._wake_up()

    def holds_install(self) -> bool:
        """Whether this thread's open batch() queued an inbound SA not handed over yet
        (``flush_batch`` would wake the loop for it)."""
        state = self._batching
        return bool(getattr(state, "on", False) and state.installs)

    def call(self, command: Command, timeout: float | None = 5.0) -> object:
        """Apply ``command`` and return its result, from any thread.

        Runs it directly when no loop thread is running (or when called from
        the loop thread itself), else goes through ``submit`` and waits.
        """
        loop = self._loop_thread
        if loop is None or loop is threading.current_thread():
            self.apply_commands()
            return self._apply_now(command)
        future = self.submit(command)
        self._wake_up()  # inside a batch() too: this thread now waits for the answer
        return future.result(timeout)

    def send_ike(self, message: bytes, addr: Address,
                 transport: Transport = Transport.NATT) -> None:
        """Send an IKE message; thread-safe.

        ``Transport.NATT``: on UDP 4500 after the non-ESP marker.
        ``Transport.CTCP``: framed on the cTCP connection whose remote
        address is ``addr`` (queued while it is still connecting); raises
        ``ConnectionError`` (an ``OSError``) when there is none.  Anything
        else (plain UDP 500 is the control plane's socket) is a ``ValueError``.
        """
        if transport is Transport.CTCP:
            conn = self._ctcp.get(addr)
            if conn is None or conn.closed:
                raise ConnectionError(f"no IPsec over TCP connection with {addr[0]}:{addr[1]}")
            with conn.lock:
                frame = conn.framer.encode_ike(message)
                if not self._ctcp_write(conn, frame, essential=True):
                    raise ConnectionError(f"IPsec over TCP connection with {addr[0]}:{addr[1]}"
                                          " is failing, or its peer stopped reading")
                conn.ike_tx += 1
            self.ctcp_ike_tx += 1
            return
        if transport is not Transport.NATT:
            raise ValueError(f"IKE travels over natt or ctcp, not {transport!r}")
        if self.udp is None:
            raise RuntimeError("no UDP 4500 socket")
        self.udp.sendto(NON_ESP_MARKER + message, addr)
        self.ike_tx += 1

    def send_ike_batch(self, items: list[Outgoing], start: int) -> int:
        """IKE messages ``items[start:]`` on UDP 4500 after the non-ESP marker, as
        ``udpgso.batch_sender`` sends them (one ``sendmmsg``): the control plane's
        ``SendQueue`` flushes a turn's with it where the kernel did not split IKE from
        ESP (issue 13). Returns how many left; raises as that does."""
        if self._send_ike_batch is None:
            if self.udp is None:
                raise RuntimeError("no UDP 4500 socket")
            self._send_ike_batch = batch_sender(self.udp, NON_ESP_MARKER)
        n = self._send_ike_batch(items, start)
        self.ike_tx += n
        return n

    def hand_over(self, datagrams: list[bytes], addr: Address) -> None:
        """UDP 4500 datagrams another socket read, processed here as if read on ``udp``;
        thread-safe.

        With GRO the kernel steers a whole train by its first segment
        (docs/TRANSPORTS.md): a train that starts with IKE reaches the control
        plane's socket (ikesplit.IkeSocket) with the ESP behind it, which it
        passes on here. Bounded (HANDOVER_MAX datagrams, then dropped and
        counted as ``handover_queue_full``); the data-plane thread is woken once.
        """
        addr = (addr[0], addr[1])
        with self._handover_lock:
            room = HANDOVER_MAX - len(self._handover) if self._wake >= 0 else 0  # closed
            if room < len(datagrams):
                self._handover_full += len(datagrams) - max(room, 0)
                datagrams = datagrams[:max(room, 0)]
            self._handover.extend((d, addr) for d in datagrams)
        if datagrams:
            self._wake_up()

    def _drain_handover(self, now: float) -> None:
        queue = self._handover
        while queue:
            data, addr = queue.popleft()  # atomic against hand_over's append
            self.esp_via_ike_socket += 1
            self.udp_rx += 1
            self._from_4500(data, addr, now)

    # -- DataplaneHandle (vpnhub/net/handle.py): thin methods over submit -------

    def add_inbound(self, sa: SaParams | EspSA, peer: Address, *, udp_encap: bool = True,
                    allowed_src: str | None = None, transport: str = "") -> None:
        self.submit(AddInbound(sa, peer, udp_encap=udp_encap, allowed_src=allowed_src,
                               transport=transport))

    def add_outbound(self, sa: SaParams | EspSA, peer: Address, *, udp_encap: bool = True,
                     dst: str | None = None, transport: str = "") -> None:
        self.submit(AddOutbound(sa, peer, udp_encap=udp_encap, dst=dst, transport=transport))

    def remove_sa(self, spi: int) -> None:
        self.submit(RemoveSA(spi))

    def update_peer(self, old: Address, new: Address) -> None:
        self.submit(UpdatePeer(old, new))

    def set_keepalive(self, peer: Address, interval: float | None,
                      transport: str = "") -> None:
        self.submit(SetKeepalive(peer, interval, transport))

    def ctcp_close(self, addr: Address) -> None:
        self.submit(CtcpClose(addr))

    async def stats(self) -> DataplaneStats:
        """``GetStats`` from asyncio, answered by the data-plane thread."""
        result = await self._ask(GetStats())
        assert isinstance(result, DataplaneStats)
        return result

    async def counters(self, sas: bool = True) -> SaCounters:
        """``GetCounters`` from asyncio (as :meth:`stats`, the compact answer)."""
        result = await self._ask(GetCounters(sas))
        assert isinstance(result, SaCounters)
        return result

    async def _ask(self, command: Command) -> object:
        """`command`'s answer from the data-plane thread, awaited; or here when no loop
        thread runs (as ``call`` does: a queued command would wait forever)."""
        import asyncio

        if self._loop_thread is None:
            self.apply_commands()
            return self._apply_now(command)
        return await asyncio.wrap_future(self.submit(command))

    def events(self) -> list[Event]:
        return self.inbox.drain()

    def ctcp_connect(self, addr: Address, *, local: Address | None = None) -> Future[Address]:
        """Open a cTCP connection to ``addr`` (the client side); thread-safe.

        The socket is made in the calling thread (so in its network
        namespace) and connected without blocking; the returned future gets
        the local address once TCP is established, or a ``ConnectionError``.
        IKE sent with ``send_ike(msg, addr, Transport.CTCP)`` before then is queued.
        """
        addr = (addr[0], addr[1])
        old = self._ctcp.get(addr)
        if old is not None and not old.closed:
            raise ConnectionError(f"already connected to {addr[0]}:{addr[1]} (CtcpClose first)")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            _tcp_options(sock)
            if local is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(local)
            err = sock.connect_ex(addr)
            if err not in (0, errno.EINPROGRESS):
                raise ConnectionError(err, f"connect to {addr[0]}:{addr[1]}: {os.strerror(err)}")
        except BaseException:
            sock.close()
            raise
        connected: Future[Address] = Future()
        # Registered from this thread so that send_ike() works at once; the
        # loop only ever sees a complete entry (handler before epoll).
        conn = _CtcpConn(sock, addr, "client", self.clock(), connected)
        self._ctcp[addr] = conn
        self._watch(conn.fd, self._conn_handler(conn), select.EPOLLIN | select.EPOLLOUT)
        return connected

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
            if self.moderation > 0:
                self._run_moderated()
            while self._running:
                self.poll(self._timeout())
        finally:
            self._loop_thread = None

    def _run_moderated(self) -> None:
        """The loop with interrupt moderation (``Moderation`` decides; the wait is
        ``moderation`` s, during which packets queue in the kernel's buffers)."""
        fine_timer_slack()
        sleep = time.sleep
        wait = self.moderation
        turn = self._moderated_turn
        while self._running:
            if turn():
                self.moderated += 1
                sleep(wait)

    def _moderated_turn(self) -> bool:
        """One wake-up of the moderated loop; True if the loop should wait now.

        Its fixed cost is shared by the packets the wake-up finds, fewer with several
        workers (issue 16, bench/wakeup_cost.py): one clock read before the epoll
        serves both the timeout and the moderation's measure of the sleep.
        """
        before = self.tun_rx + self.udp_rx + self.cisco_udp_rx + self.esp_rx
        start = self.clock()
        timeout = self._next_tick - start
        self.poll(1.0 if timeout > 1.0 else timeout if timeout > 0.0 else 0.0)
        return self._decide(self.tun_rx + self.udp_rx + self.cisco_udp_rx + self.esp_rx
                            - before, self._woke - start)

    def close(self) -> None:
        """Stop; close the cTCP connections, the epoll and the eventfd.

        The TUN and the sockets passed in (listeners included) stay open: the caller's.
        """
        if self._wake < 0:
            return
        self.stop()
        for conn in list(self._ctcp.values()):
            self._ctcp_close(conn, CTCP_CLOSED_BY_CONTROL)
        self._epoll.close()
        os.close(self._wake)
        self._wake = -1

    def _timeout(self) -> float:
        return max(0.0, min(1.0, self._next_tick - self.clock()))

    def poll(self, timeout: float = 0.0) -> None:
        """Wait up to ``timeout`` s for I/O, then handle all of it once."""
        events = self._epoll.poll(timeout)
        now = self._woke = self.clock()
        tun_fd = self._tun_fd
        udp_fd = self._udp_fd
        for fd, mask in events:
            if fd == udp_fd:
                self._from_udp(now)
            elif fd == tun_fd:
                self._from_tun(now)
            elif fd == self._wake:
                with contextlib.suppress(BlockingIOError):
                    os.eventfd_read(self._wake)
                # after the read (a write it could swallow was then never needed) and
                # before the drain (a command whose submit saw the flag set is drained
                # now): see submit()
                self._wake_pending = False
                self.apply_commands()
                if self._handover:
                    self._drain_handover(now)
            else:
                handler = self._handlers.get(fd)
                if handler is not None:
                    handler(now, mask)
        if now >= self._next_tick:
            self.tick(now)
        if self._tun_out:
            self._flush_tun()

    def tick(self, now: float) -> None:
        """Timers: NAT keepalives, cTCP set-up timeouts.  Called by the loop; callable by hand."""
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
        if self.keepalive_sock is not None:
            self._drain_keepalives()
        if self._ctcp:
            self._ctcp_timers(now)
        if self.debug_severity >= DEBUG_DROPS and now >= self._next_drop_report:
            self._report_drops(now)
        self._next_tick = next_tick

    def _debug(self, severity: int, text: str, peer: Address | None = None) -> None:
        """Callers check ``severity <= self.debug_severity`` first (no string otherwise)."""
        self.inbox.put(DebugLine(severity, text, peer))

    def _report_drops(self, now: float) -> None:
        """One IPSECDBG line per inbound SA whose drops grew since the last report (at most
        every DROP_REPORT_EVERY s): a flood of replays or forgeries costs a line, not a
        line per packet (the counters are kept per packet anyway). When the inner checks
        refused packets, the line names the last one's headers and why (an operator asks
        "which packet?": e.g. a client's own LAN address as the source)."""
        self._next_drop_report = now + DROP_REPORT_EVERY
        for entry in self._in.values():
            drops = entry.sa.drops
            if drops == entry.reported:
                continue
            grown = {r: n - entry.reported.get(r, 0) for r, n in drops.items()
                     if n > entry.reported.get(r, 0)}
            entry.reported = dict(drops)
            if grown:
                what = ", ".join(f"{n} {r}" for r, n in sorted(grown.items()))
                self._debug(DEBUG_DROPS, f"inbound SA {entry.sa.spi:08x} from"
                            f" {entry.seen[0]}:{entry.seen[1]} dropped {what} in the last"
                            f" {DROP_REPORT_EVERY:.0f} s{_last_refused(entry, grown)}",
                            entry.seen)

    def _send_keepalive(self, peer: _Peer, now: float) -> None:
        if peer.keepalive is None:
            return
        try:
            peer.send(peer.keepalive, peer.addr)
        except OSError:
            self._drop(SEND_ERROR)
            return
        peer.keepalive_sent = now
        peer.keepalives_tx += 1

    # -- hot paths -------------------------------------------------------------

    def _drop(self, reason: str) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1

    def _from_tun(self, now: float) -> None:
        try:
            self._read_tun(now)
        finally:  # never hold a packet across wake-ups
            if self._train:
                self._flush_train()

    def _read_tun(self, now: float) -> None:
        if self.vnet_hdr:
            self._read_tun_vnet(now)
            return
        read = os.read
        fd = self._tun_fd
        exact = self._out_exact
        for _ in range(self.budget):
            try:
                packet = read(fd, MAX_DATAGRAM)
            except BlockingIOError:
                return
            self.tun_rx += 1
            self.tun_rx_calls += 1
            if len(packet) < 20 or packet[0] >> 4 != 4:
                self._drop(NOT_IPV4)
                continue
            entry = exact.get(packet[16:20])
            if entry is None:
                entry = self._lookup_slow(packet)
                if entry is None:
                    if self.no_route is None or not self.no_route(packet):
                        self._drop(NO_SA)
                    continue
            if len(packet) > entry.limit:
                self._too_big(entry, packet, now)
                continue
            self._encrypt_and_send(entry, packet, now)

    def _read_tun_vnet(self, now: float) -> None:
        """As ``_read_tun``, each read a virtio_net_hdr and a packet or a super-packet
        (split into its segments first); the budget counts packets.

        The reads come TUN_READS at a time from ``read_frames`` (C, tun.py), which
        ends at ``EAGAIN`` without an exception; the budget is checked between those
        calls, so it may be passed by the packets of at most TUN_READS - 1 frames.
        """
        fd = self._tun_fd
        taken = 0
        while taken < self.budget:
            frames = read_frames(fd, READ_SIZE, TUN_READS)
            self.tun_rx_calls += len(frames)
            for frame in frames:
                if len(frame) > 10 and not frame[0] and not frame[1]:  # flags, gso_type: 0
                    taken += 1
                    self.tun_rx += 1
                    self._route_tun_packet(frame[10:], now)
                    continue
                try:
                    packets = from_kernel(frame)
                except OffloadError as exc:
                    self._drop(exc.reason)
                    taken += 1
                    continue
                if len(packets) > 1:
                    self.tun_rx_super += 1
                taken += len(packets)
                self.tun_rx += len(packets)
                for packet in packets:
                    self._route_tun_packet(packet, now)
            if len(frames) < TUN_READS:  # the queue is empty (EAGAIN ended the reads)
                return

    def _route_tun_packet(self, packet: bytes, now: float) -> None:
        """One packet read from the TUN: routed, then encrypted (or dropped, counted)."""
        if len(packet) < 20 or packet[0] >> 4 != 4:
            self._drop(NOT_IPV4)
            return
        entry = self._out_exact.get(packet[16:20])
        if entry is None:
            entry = self._lookup_slow(packet)
            if entry is None:
                if self.no_route is None or not self.no_route(packet):
                    self._drop(NO_SA)
                return
        if len(packet) > entry.limit:
            self._too_big(entry, packet, now)
        else:
            self._encrypt_and_send(entry, packet, now)

    def _write_tun(self, packet: bytes) -> None:
        """One packet to the TUN now (with a zero virtio_net_hdr if the TUN has them)."""
        self.tun_tx_calls += 1
        self.tun_tx += 1
        os.write(self._tun_fd, ZERO_HDR + packet if self.vnet_hdr else packet)

    def _flush_tun(self) -> None:
        """The decrypted packets of this wake-up, each flow's TCP segments coalesced
        into one write (tunoffload.coalesce)."""
        packets = self._tun_out
        self._tun_out = []
        write = os.write
        fd = self._tun_fd
        frames = coalesce(packets)
        self.tun_tx += len(packets)
        self.tun_tx_calls += len(frames)
        for frame in frames:
            if frame[1]:  # gso_type set: a coalesced super-packet
                self.tun_tx_super += 1
            try:
                write(fd, frame)
            except OSError:
                self._drop(TUN_WRITE_ERROR)

    def _encrypt_and_send(self, entry: _Out, packet: bytes, now: float) -> None:
        sa = entry.sa
        self._sa_gen += 1  # its counters move (or its drops)
        try:
            esp = sa.encapsulate(packet)
        except EspDrop:
            self.inbox.put(SaExhausted(sa.spi))
            return
        sa.last_activity = now
        peer = entry.peer
        peer.last_tx = now
        if peer.gso is not None:
            self._queue(peer, esp)
        else:
            self._send_one(peer, esp)

    # -- UDP GSO (vpnhub/net/udpgso.py) -----------------------------------------

    def _queue(self, peer: _Peer, esp: bytes) -> None:
        """Add `esp` to the train for `peer`; a train is one peer's datagrams of one
        size (the last may be shorter), at most MAX_SEGMENTS and MAX_TRAIN_BYTES."""
        n = len(esp)
        if self._train and (peer is not self._train_peer or n > self._train_size
                            or self._train_bytes + n > MAX_TRAIN_BYTES):
            self._flush_train()
        if n > peer.gso_max:  # the kernel refused this size for this peer before
            self._send_one(peer, esp)
            return
        train = self._train
        if not train:
            self._train_peer = peer
            self._train_size = n
            self._train_bytes = 0
        train.append(esp)
        self._train_bytes += n
        if n < self._train_size or len(train) >= MAX_SEGMENTS:
            self._flush_train()

    def _flush_train(self) -> None:
        train = self._train
        peer = self._train_peer
        if not train or peer is None:
            return
        self._train = []
        self._train_peer = None
        if len(train) == 1 or peer.gso is None:
            for esp in train:
                self._send_one(peer, esp)
            return
        self.udp_tx_calls += 1
        try:
            send_train(peer.gso, train, self._train_size, peer.addr)
        except BlockingIOError:
            self._drop_n(SEND_BUFFER_FULL, len(train))
            return
        except OSError as exc:
            if exc.errno not in GSO_REFUSED:  # ENOBUFS and the like: as one sendto would
                self._drop_n(SEND_ERROR, len(train))
                return
            self._gso_refused(peer, exc.errno)
            for esp in train:
                self._send_one(peer, esp)
            return
        self.udp_tx_datagrams += len(train)

    def _gso_refused(self, peer: _Peer, err: int | None) -> None:
        """The kernel could not segment: EINVAL/EMSGSIZE are about this size (a segment
        above the route's MTU, net/ipv4/udp.c udp_send_skb), anything else about the
        socket or the device (no checksum offload: EIO): no more trains for the peer."""
        self.gso_fallbacks += 1
        if err in (errno.EINVAL, errno.EMSGSIZE):
            peer.gso_max = min(peer.gso_max, self._train_size - 1)
        else:
            peer.gso = None

    def _send_one(self, peer: _Peer, esp: bytes) -> None:
        """One ESP datagram (or cTCP record) to `peer`; the UDP ones are counted."""
        if peer.udp:
            self.udp_tx_calls += 1
            self.udp_tx_datagrams += 1
        try:
            peer.send(esp, peer.addr)
        except BlockingIOError:
            self._drop(SEND_BUFFER_FULL)
        except OSError:
            self._drop(SEND_ERROR)

    def _drop_n(self, reason: str, n: int) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + n

    def _too_big(self, entry: _Out, packet: bytes, now: float) -> None:
        """An inner packet above the SA's tunnel MTU: apply the fragmentation policy."""
        decision = self.frag.apply(packet, entry.limit, now)
        if decision.to_sender is not None:
            try:
                self._write_tun(decision.to_sender)
            except OSError:
                self._drop(TUN_WRITE_ERROR)
        if decision.drop is not None:
            self._drop(decision.drop)
        if decision.outer_fragmented:
            self._warn_outer_fragmentation(entry, len(packet), now)
        for piece in decision.encrypt:
            self._encrypt_and_send(entry, piece, now)

    def _warn_outer_fragmentation(self, entry: _Out, inner_len: int, now: float) -> None:
        peer = entry.peer
        peer.frag_count += 1
        if now - peer.frag_warned < FRAG_WARN_EVERY:
            return
        peer.frag_warned = now
        outer = inner_len + entry.sa.suite.overhead(inner_len) + OUTER_HEADERS[peer.transport]
        event = OuterFragmentation(peer.addr, peer.transport, inner_len, outer, self.outer_mtu,
                                   peer.frag_count)
        log.warning("%s", event.message)
        self.inbox.put(event)

    def _lookup_slow(self, packet: bytes) -> _Out | None:
        if self._out_prefix:
            dst = int.from_bytes(packet[16:20], "big")
            for net, mask, entry in self._out_prefix:
                if dst & mask == net:
                    return entry
        return self._out_default

    def _from_udp(self, now: float) -> None:
        assert self.udp is not None
        batch = self._udp_batch
        if batch is not None:
            self.udp_rx += self._from_udp_batches(batch, now, self._udp_control)
            return
        reader = self._gro.get(self.udp.fileno())
        if reader is not None:
            self._from_udp_trains(reader, now)
            return
        recv = self.udp.recvfrom
        deliver = self._deliver
        for _ in range(self.budget):
            try:
                data, addr = recv(MAX_DATAGRAM)
            except BlockingIOError:
                return
            self._udp_rx_calls_plain += 1
            self.udp_rx += 1
            # Hot path inline: ESP is anything of >= 8 bytes not starting with 4 zeros.
            if len(data) >= 8 and data[:4] != NON_ESP_MARKER:
                deliver(data, addr, now)
            else:
                self._udp_control(data, addr)

    def _from_udp_trains(self, reader: GroReader, now: float) -> None:
        """UDP 4500 with GRO: each segment of a train exactly as a datagram read alone.

        A train is one flow's datagrams and the kernel steers it by its first
        segment (docs/TRANSPORTS.md): IKE and keepalives can ride in one that
        starts with ESP, so every segment is classified on its own. The budget
        counts datagrams, not reads, so a flood still cannot starve the TUN.
        """
        deliver = self._deliver
        taken = 0
        while taken < self.budget:
            try:
                datagrams, addr = reader.read()
            except BlockingIOError:
                return
            taken += len(datagrams)
            self.udp_rx += len(datagrams)
            for data in datagrams:
                if len(data) >= 8 and data[:4] != NON_ESP_MARKER:
                    deliver(data, addr, now)
                else:
                    self._udp_control(data, addr)

    def _from_udp_batches(self, reader: BatchReader, now: float,
                          control: Callable[[bytes, Address], None]) -> int:
        """A UDP port with recvmmsg (4500, Cisco UDP): each datagram (a train's
        segments) as if read alone, non-ESP to `control`; returns how many were
        taken (the port's receive counter).

        As ``_from_udp_trains``: the budget counts datagrams (``read_budgeted``, the
        read loop it shares with the keepalive and IKE sockets: a short batch
        drained the socket, an error the socket reports is skipped).
        """
        handle = partial(self._deliver_batch if self.vnet_hdr else self._deliver_each,
                         now, control)
        return read_budgeted(reader.read, reader.count, self.budget, handle)

    def _deliver_each(self, now: float, control: Callable[[bytes, Address], None],
                      batch: list[Datagram]) -> None:
        """One recvmmsg batch without the TUN offloads: each datagram as if read alone."""
        deliver = self._deliver
        for data, addr, _size in batch:
            # Hot path inline: ESP is anything of >= 8 bytes not starting with 4 zeros.
            if len(data) >= 8 and data[:4] != NON_ESP_MARKER:
                deliver(data, addr, now)
            else:
                control(data, addr)

    def _deliver_batch(self, now: float, control: Callable[[bytes, Address], None],
                       batch: list[Datagram]) -> None:
        """One recvmmsg batch, the packets coalesced at the end (TUN offloads): each
        run of one inbound SA's ESP from its known source in one call
        (``EspSA.receive_run``, C with the codec), the rest (other kinds, a first
        packet from a new source) one by one as ``_deliver`` does; same packets,
        drops and counters as one ``_deliver`` each."""
        lookup = self._in.get
        i, n = 0, len(batch)
        while i < n:
            data, addr, _size = batch[i]
            if len(data) < 8 or data[:4] == NON_ESP_MARKER:
                control(data, addr)
                i += 1
                continue
            entry = lookup(data[:4])
            if entry is None or addr != entry.seen:  # unknown SPI, a peer that moved
                self._deliver(data, addr, now)
                i += 1
                continue
            sa = entry.sa
            self._sa_gen += 1  # its counters move (or its drops)
            out = self._tun_out
            end, inners, received = sa.receive_run(batch, i, entry.allowed_src, addr,
                                                   TUN_OUT_MAX - len(out), 20)
            if received:
                sa.last_activity = now
            out += inners
            if len(out) >= TUN_OUT_MAX:
                self._flush_tun()
            if end <= i:  # never (the run takes at least this packet): no loop forever
                self._deliver(data, addr, now)
                end = i + 1
            i = end

    def _from_4500(self, data: bytes, addr: Address, now: float) -> None:
        """One UDP 4500 datagram read off the hot paths (a keepalive socket's, one
        handed over): as ``_from_udp`` handles it inline."""
        if len(data) >= 8 and data[:4] != NON_ESP_MARKER:
            self._deliver(data, addr, now)
        else:
            self._udp_control(data, addr)

    def _udp_control(self, data: bytes, addr: Address) -> None:
        kind = classify(data)
        if isinstance(kind, Ike):
            self.ike_rx += 1
            if not self.inbox.put(IkeDatagram(kind.message, addr)):
                self._drop(CONTROL_QUEUE_FULL)
        elif isinstance(kind, Keepalive):
            self._keepalive_from(TRANSPORT_NATT, addr)
        elif isinstance(kind, Malformed):
            self._drop(kind.reason)
        elif isinstance(kind, Esp):  # pragma: no cover - handled inline
            self._deliver(kind.packet, addr, self.clock())

    def _drain_keepalives(self) -> None:
        """The NAT keepalives (RFC 3948 2.3) that came since the last tick, counted as
        if they had come on the 4500 socket; at most KEEPALIVE_BUDGET a tick (more is a
        flood: the kernel drops it when the socket's buffer is full). One read of
        ``read_budgeted`` (its budget and stop rules): recvmmsg where the accelerator
        is, else one train (a GRO socket) or one datagram a receive."""
        assert self.keepalive_sock is not None
        fd = self.keepalive_sock.fileno()
        read: Callable[[int], list[Datagram]]
        batches = self._batch.get(fd)
        reader = self._gro.get(fd)
        if batches is not None:
            read, count = batches.read, batches.count
        elif reader is not None:  # a train steered here by a first keepalive
            read, count = reader.read_batch, 1
        else:
            read, count = self._recv_plain(self.keepalive_sock), 1

        def handle(batch: list[Datagram]) -> None:
            now = self.clock()
            for data, addr, _size in batch:  # classified as on 4500: filter not trusted
                self._from_4500(data, addr, now)
        self.udp_rx += read_budgeted(read, count, KEEPALIVE_BUDGET, handle)

    def _recv_plain(self, sock: socket.socket) -> Callable[[int], list[Datagram]]:
        """``read_budgeted``'s read for a socket without GRO or recvmmsg: one datagram
        a receive, counted in ``_udp_rx_calls_plain``."""
        recv = sock.recvfrom

        def read(_count: int) -> list[Datagram]:
            data, addr = recv(MAX_DATAGRAM)
            self._udp_rx_calls_plain += 1
            return [(data, addr, 0)]
        return read

    def _keepalive_from(self, transport: str, addr: Address) -> None:
        self.keepalive_rx += 1
        peer = self._peers.get((transport, addr))
        if peer is None and transport == TRANSPORT_NATT:  # handed over from the virtual
            peer = self._peers.get((TRANSPORT_NATT_VIRTUAL, addr))  # address's 4500
        if peer is not None:
            peer.keepalives_rx += 1

    def _from_cisco_udp(self, now: float) -> None:
        assert self.cisco_udp is not None
        batches = self._batch.get(self.cisco_udp.fileno())
        if batches is not None:
            self.cisco_udp_rx += self._from_udp_batches(batches, now,
                                                         self._cisco_udp_control)
            return
        reader = self._gro.get(self.cisco_udp.fileno())
        recv = self.cisco_udp.recvfrom
        deliver = self._deliver
        taken = 0
        while taken < self.budget:
            try:
                if reader is not None:
                    datagrams, addr = reader.read()
                else:
                    data, addr = recv(MAX_DATAGRAM)
                    datagrams = [data]
                    self._udp_rx_calls_plain += 1
            except BlockingIOError:
                return
            taken += len(datagrams)
            self.cisco_udp_rx += len(datagrams)
            for data in datagrams:
                if len(data) >= 8 and data[:4] != NON_ESP_MARKER:
                    deliver(data, addr, now)
                else:
                    self._cisco_udp_control(data, addr)

    def _cisco_udp_control(self, data: bytes, addr: Address) -> None:
        """What is not ESP on the Cisco UDP port: its keepalive, else a drop."""
        kind = classify_cisco_udp(data)
        if isinstance(kind, Keepalive):
            self._keepalive_from(TRANSPORT_CISCO_UDP, addr)
        elif isinstance(kind, Malformed):
            self._drop(kind.reason)

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

    def _late_inbound(self, spi: bytes, now: float) -> _In | None:
        """The inbound SA of an SPI not found, after applying the commands that wait.

        The control plane installs a Quick Mode's inbound SA before the message that
        lets the peer use it leaves (message 2 as responder, 3 as initiator; RFC 2409
        5.5), but this loop may read the peer's first ESP packet in the same wake-up
        as that command, and handle the socket first: the packet would be dropped as
        an unknown SPI, a lost packet at every rekey. So the commands waiting are
        applied first, at most once per wake-up (a flood of unknown SPIs then costs
        one look at the queue, in a worker one non-blocking read of its link, per
        wake-up, not per packet).
        """
        if self._late_checked == now:
            return None
        self._late_checked = now
        self.late_commands()
        return self._in.get(spi)

    def _deliver(self, esp: bytes, addr: Address, now: float) -> None:
        entry = self._in.get(esp[:4])
        if entry is None:
            entry = self._late_inbound(esp[:4], now)
            if entry is None:
                self._drop(UNKNOWN_SPI)
                return
        sa = entry.sa
        self._sa_gen += 1  # its counters move (or its drops)
        # decapsulate + inner source check (RFC 4301 5.2); one C call with the codec
        inner = sa.receive(esp, entry.allowed_src)
        if inner is None:
            return  # counted on the SA
        sa.last_activity = now
        if addr != entry.seen:
            self._peer_moved(entry, addr)
        if self.vnet_hdr:  # written at the end of the batch, coalesced
            if len(inner) < 20:  # the kernel would refuse it (as below)
                sa.count_drop(BAD_INNER_PACKET)
                return
            out = self._tun_out
            out.append(inner)
            if len(out) >= TUN_OUT_MAX:
                self._flush_tun()
            return
        try:
            self._write_tun(inner)
        except OSError:
            if len(inner) < 20:
                sa.count_drop(BAD_INNER_PACKET)
            else:
                self._drop(TUN_WRITE_ERROR)

    def _peer_moved(self, entry: _In, addr: Address) -> None:
        old = entry.seen
        entry.seen = addr
        self.inbox.put(PeerMoved(entry.sa.spi, old, addr))
        if self.debug_severity >= DEBUG_STATE:
            self._debug(DEBUG_STATE, f"inbound SA {entry.sa.spi:08x}: authentic ESP from"
                        f" {addr[0]}:{addr[1]} (was {old[0]}:{old[1]}): peer moved", addr)

    # -- IPsec over TCP (data-plane thread unless noted) ----------------------

    def _listener_handler(self, listener: socket.socket) -> Callable[[float, int], None]:
        return lambda now, _mask: self._accept(listener, now)

    def _accept(self, listener: socket.socket, now: float) -> None:
        for _ in range(64):
            try:
                sock, raddr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._drop(CTCP_RESET)
                return
            if len(self._ctcp) >= self.ctcp_max_connections:
                sock.close()
                self._drop(CTCP_TOO_MANY)
                continue
            sock.setblocking(False)
            _tcp_options(sock)
            addr = (raddr[0], raddr[1])
            old = self._ctcp.get(addr)
            if old is not None:
                self._ctcp_close(old, CTCP_REPLACED)
            conn = _CtcpConn(sock, addr, "server", now)
            self._ctcp[addr] = conn
            self.ctcp_accepted += 1
            self._watch(conn.fd, self._conn_handler(conn))

    def _conn_handler(self, conn: _CtcpConn) -> Callable[[float, int], None]:
        def handle(now: float, mask: int) -> None:
            if mask & select.EPOLLOUT:
                self._ctcp_writable(conn)
            if not conn.closed and mask & (select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP):
                self._ctcp_readable(conn, now)
        return handle

    def _ctcp_readable(self, conn: _CtcpConn, now: float) -> None:
        if conn.connecting:
            return  # the EPOLLOUT half decides
        for _ in range(16):
            try:
                data = conn.sock.recv(CTCP_RECV)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._ctcp_close(conn, CTCP_RESET)
                return
            if not data:
                self._ctcp_close(conn, CTCP_EOF)
                return
            conn.rx_bytes += len(data)
            try:
                frames = conn.framer.feed(data)
            except CtcpError as exc:
                log.info("IPsec over TCP %s:%d: %s", conn.addr[0], conn.addr[1], exc)
                self._ctcp_close(conn, exc.reason)
                return
            for frame in frames:
                if frame.kind == "ike":
                    conn.ike_seen = True
                    conn.ike_rx += 1
                    self.ctcp_ike_rx += 1
                    if not self.inbox.put(IkeDatagram(frame.payload, conn.addr, Transport.CTCP)):
                        self._drop(CONTROL_QUEUE_FULL)
                    continue
                if conn.role == "server" and not conn.ike_seen:
                    self._ctcp_close(conn, CTCP_ESP_BEFORE_IKE)
                    return
                conn.esp_rx += 1
                self._deliver(frame.payload, conn.addr, now)
                if conn.closed:
                    return

    def _ctcp_writable(self, conn: _CtcpConn) -> None:
        with conn.lock:
            if conn.closed:
                return
            if conn.connecting:
                err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    log.info("IPsec over TCP to %s:%d: %s", conn.addr[0], conn.addr[1],
                             os.strerror(err))
                    self._ctcp_close(conn, CTCP_CONNECT_FAILED)
                    return
                conn.connecting = False
                local = conn.sock.getsockname()
                conn.local = (local[0], local[1])
                self.ctcp_connected += 1
                if conn.connected is not None and not conn.connected.done():
                    conn.connected.set_result(conn.local)
            while conn.out:
                try:
                    sent = conn.sock.send(conn.out)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:
                    self._ctcp_close(conn, CTCP_RESET)
                    return
                conn.tx_bytes += sent
                del conn.out[:sent]
            with contextlib.suppress(OSError, ValueError):
                self._epoll.modify(conn.fd, select.EPOLLIN)

    def _ctcp_write(self, conn: _CtcpConn, frame: bytes, *, essential: bool) -> bool:
        """Queue or send one whole frame (any thread).  False: not taken.

        ESP is dropped when ``CTCP_MAX_PENDING`` bytes wait already (a slow
        link loses packets, as UDP would); IKE is queued up to
        ``CTCP_MAX_PENDING_IKE``.  A frame is never cut: partial sends keep
        their rest at the head of ``out``.
        """
        with conn.lock:
            if conn.closed:
                return False
            if conn.out or conn.connecting:
                cap = CTCP_MAX_PENDING_IKE if essential else CTCP_MAX_PENDING
                if len(conn.out) + len(frame) > cap:
                    return False
                conn.out += frame
                return True
            try:
                sent = conn.sock.send(frame)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                return False  # the loop sees the error on the socket and closes it
            conn.tx_bytes += sent
            if sent < len(frame):
                conn.out += frame[sent:]
                with contextlib.suppress(OSError, ValueError):
                    self._epoll.modify(conn.fd, select.EPOLLIN | select.EPOLLOUT)
            return True

    def _ctcp_send_esp(self, esp: bytes, addr: Address) -> int:
        """``_Peer.send`` for the "ctcp" transport."""
        conn = self._ctcp.get(addr)
        if conn is None or conn.closed:
            self._drop(CTCP_NO_CONNECTION)
            return 0
        frame = esp + ESP_TRAILER
        if self._ctcp_write(conn, frame, essential=False):
            conn.esp_tx += 1
            return len(frame)
        self._drop(CTCP_SEND_BUFFER_FULL)
        return 0

    def _ctcp_close(self, conn: _CtcpConn, reason: str) -> None:
        with conn.lock:
            if conn.closed:
                return
            conn.closed = True
            self._unwatch(conn.fd)
            with contextlib.suppress(OSError):
                conn.sock.close()
        if self._ctcp.get(conn.addr) is conn:
            del self._ctcp[conn.addr]
        self.ctcp_closed += 1
        self._drop(reason)
        if conn.connected is not None and not conn.connected.done():
            conn.connected.set_exception(ConnectionError(
                f"IPsec over TCP to {conn.addr[0]}:{conn.addr[1]}: {reason}"))
        self.inbox.put(CtcpClosed(conn.addr, reason))

    def _ctcp_timers(self, now: float) -> None:
        for conn in list(self._ctcp.values()):
            age = now - conn.created
            if conn.connecting and age > CTCP_CONNECT_TIMEOUT:
                self._ctcp_close(conn, CTCP_CONNECT_TIMEOUT_REASON)
            elif (conn.role == "server" and age > self.ctcp_setup_timeout
                  and (TRANSPORT_CTCP, conn.addr) not in self._peers):
                self._ctcp_close(conn, CTCP_SETUP_TIMEOUT_REASON)

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
            peer = self._peer(command.peer, _transport(command.transport, True))
            peer.keepalive_interval = command.interval
            self._check_idle(peer)
            self._next_tick = 0.0
            return None
        if isinstance(command, GetStats):
            return self.stats_now()
        if isinstance(command, GetCounters):
            return self.counters_now(command.sas)
        if isinstance(command, CtcpClose):
            conn = self._ctcp.get(command.addr)
            if conn is None:
                return False
            self._ctcp_close(conn, CTCP_CLOSED_BY_CONTROL)
            return True
        raise TypeError(f"unknown command {command!r}")

    def _peer(self, addr: Address, transport: str) -> _Peer:
        key = (transport, addr)
        peer = self._peers.get(key)
        if peer is None:
            send: Callable[[bytes, Address], int]
            keepalive: bytes | None = None
            gso: socket.socket | None = None
            if transport == TRANSPORT_CTCP:
                send = self._ctcp_send_esp
            else:
                sock = {TRANSPORT_NATT: self.udp, TRANSPORT_ESP: self.esp,
                        TRANSPORT_CISCO_UDP: self.cisco_udp,
                        TRANSPORT_NATT_VIRTUAL: self.udp_virtual}[transport]
                if sock is None:
                    raise RuntimeError({TRANSPORT_NATT: "no UDP 4500 socket",
                                        TRANSPORT_ESP: "no raw ESP socket",
                                        TRANSPORT_CISCO_UDP: "no Cisco UDP socket",
                                        TRANSPORT_NATT_VIRTUAL: "no UDP 4500 socket on the"
                                        " virtual address"}[transport])
                send = sock.sendto
                keepalive = {TRANSPORT_NATT: NAT_KEEPALIVE, TRANSPORT_NATT_VIRTUAL: NAT_KEEPALIVE,
                             TRANSPORT_CISCO_UDP: CISCO_UDP_KEEPALIVE}.get(transport)
                if sock.fileno() in self._gso_fds:
                    gso = sock
            peer = self._peers[key] = _Peer(addr, transport, send, keepalive, gso)
            self._idle_peers[id(peer)] = peer  # until an entry uses it
        return peer

    def _use_peer(self, peer: _Peer) -> None:
        peer.refs += 1
        self._idle_peers.pop(id(peer), None)

    def _release_peer(self, peer: _Peer) -> None:
        peer.refs -= 1
        self._check_idle(peer)

    def _check_idle(self, peer: _Peer) -> None:
        """Keep ``_idle_peers`` exactly the peers ``_forget_idle_peers`` may drop."""
        if peer.refs == 0 and peer.keepalive_interval is None:
            self._idle_peers[id(peer)] = peer
        else:
            self._idle_peers.pop(id(peer), None)

    def _limit(self, sa: EspSA, transport: str) -> int:
        if transport == TRANSPORT_CTCP and self.frag.policy == FRAG_NONE:
            return MAX_DATAGRAM  # TCP segments it: no IP fragments to warn about
        return max_inner_len(sa.suite, self.outer_mtu, OUTER_HEADERS[transport])

    def _add_inbound(self, cmd: AddInbound) -> EspSA:
        sa = _build(cmd.sa)
        self._sa_gen += 1
        transport = _transport(cmd.transport, cmd.udp_encap)
        allowed = _ipv4(cmd.allowed_src) if cmd.allowed_src is not None else None
        replaced = self._in.get(sa.spi_bytes)
        entry = _In(sa, self._peer(cmd.peer, transport), allowed)
        if replaced is not None:  # the same SPI again: the old SA ends here
            self._count_ended(replaced.sa)
            self._release_peer(replaced.peer)
        self._in[sa.spi_bytes] = entry
        self._use_peer(entry.peer)
        if self.debug_severity >= DEBUG_STATE:
            self._debug(DEBUG_STATE, f"inbound SA {sa.spi:08x} installed: {sa.suite.name},"
                        f" {transport}, peer {cmd.peer[0]}:{cmd.peer[1]}", cmd.peer)
        return sa

    def _add_outbound(self, cmd: AddOutbound) -> EspSA:
        sa = _build(cmd.sa)
        self._sa_gen += 1
        transport = _transport(cmd.transport, cmd.udp_encap)
        net = ipaddress.IPv4Network(cmd.dst or "0.0.0.0/0")
        peer = self._peer(cmd.peer, transport)
        replaced: _Out | None
        if net.prefixlen == 32:
            entry = _Out(sa, peer, str(net), self._limit(sa, transport),
                         net.network_address.packed)
            replaced = self._out_exact.get(net.network_address.packed)
            self._out_exact[net.network_address.packed] = entry
        elif net.prefixlen == 0:
            entry = _Out(sa, peer, str(net), self._limit(sa, transport), None)
            replaced, self._out_default = self._out_default, entry
        else:
            key = (int(net.network_address), int(net.netmask))
            entry = _Out(sa, peer, str(net), self._limit(sa, transport), key)
            replaced = next((p[2] for p in self._out_prefix if p[:2] == key), None)
            rest = [p for p in self._out_prefix if p[:2] != key]
            rest.append((*key, entry))
            rest.sort(key=lambda p: -p[1])  # longest prefix (largest mask) first
            self._out_prefix = rest
        self._out_by_spi.setdefault(sa.spi, []).append(entry)
        self._use_peer(peer)
        if replaced is not None:  # a rekey's new SA took the route: the old one ends here
            self._count_ended(replaced.sa)
            self._unindex_out(replaced)
        if self.debug_severity >= DEBUG_STATE:
            self._debug(DEBUG_STATE, f"outbound SA {sa.spi:08x} installed: {sa.suite.name},"
                        f" {transport}, to {net} via {cmd.peer[0]}:{cmd.peer[1]}", cmd.peer)
        return sa

    def _outbound_entries(self) -> list[_Out]:
        entries = [*self._out_exact.values(), *(p[2] for p in self._out_prefix)]
        if self._out_default is not None:
            entries.append(self._out_default)
        return entries

    def _unindex_out(self, entry: _Out) -> None:
        """A route another SA took over: its SPI no longer owns it, its peer one use less."""
        entries = self._out_by_spi.get(entry.sa.spi, [])
        if entry in entries:
            entries.remove(entry)  # a few routes per SPI at most: not a scan of all SAs
            if not entries:
                del self._out_by_spi[entry.sa.spi]
        self._release_peer(entry.peer)

    def _remove_sa(self, spi: int) -> int:
        """Remove the SPI's inbound SA and its routes; O(1): indexes, no scan (issue 13)."""
        key = spi.to_bytes(4, "big")
        self._sa_gen += 1
        gone: dict[int, EspSA] = {}  # by id, to count each SA once
        inbound = self._in.pop(key, None)
        removed = 1 if inbound is not None else 0
        if inbound is not None:
            gone[id(inbound.sa)] = inbound.sa
            self._release_peer(inbound.peer)
            if self.debug_severity >= DEBUG_STATE:
                self._debug(DEBUG_STATE, f"inbound SA {spi:08x} removed: {inbound.sa.packets_in}"
                            f" packets in, drops {dict(inbound.sa.drops) or 'none'}", inbound.seen)
        routes = self._out_by_spi.pop(spi, [])
        for entry in routes:
            self._drop_route(entry)
            gone[id(entry.sa)] = entry.sa
            self._release_peer(entry.peer)
        removed += len(routes)
        for sa in gone.values():
            self._count_ended(sa)
        if routes and self.debug_severity >= DEBUG_STATE:
            self._debug(DEBUG_STATE, f"outbound SA {spi:08x} removed")
        self._forget_idle_peers()
        return removed

    def _drop_route(self, entry: _Out) -> None:
        slot = entry.slot
        if slot is None:
            self._out_default = None
        elif isinstance(slot, bytes):
            del self._out_exact[slot]
        else:  # prefixes are few (split-tunnel networks); /32s and the default are dicts
            self._out_prefix = [p for p in self._out_prefix if p[2] is not entry]

    def _count_ended(self, sa: EspSA) -> None:
        """Keep an ending SA's counts in the running totals (``esp_totals``)."""
        for name in _TRAFFIC:
            self.ended_traffic[name] += getattr(sa, name)
        for reason, count in sa.drops.items():
            self.ended_drops[reason] = self.ended_drops.get(reason, 0) + count

    def _forget_idle_peers(self) -> None:
        """Drop the peers no entry uses and without keepalives: only those, no scan."""
        idle, self._idle_peers = self._idle_peers, {}
        for peer in idle.values():
            key = (peer.transport, peer.addr)
            if self._peers.get(key) is peer:
                del self._peers[key]

    def _update_peer(self, old: Address, new: Address) -> bool:
        moved = False
        for transport in TRANSPORTS:
            peer = self._peers.pop((transport, old), None)
            if peer is None:
                continue
            peer.addr = new
            self._peers[(transport, new)] = peer
            moved = True
        return moved

    # -- counters --------------------------------------------------------------

    def stats_now(self) -> DataplaneStats:
        """All counters; call in the data-plane thread (``GetStats``) while it runs."""
        sas = [self._sa_stats(e.sa, "in", e.peer, seen=e.seen) for e in self._in.values()]
        sas += [self._sa_stats(o.sa, "out", o.peer, dst=o.dst, tunnel_mtu=o.limit)
                for o in self._outbound_entries()]
        return replace(
            self._totals([e.sa for e in self._in.values()],
                         [o.sa for o in self._outbound_entries()]),
            sas=tuple(sas),
            peers=tuple(
                PeerStats(p.addr, p.transport, p.udp, p.keepalive_interval, p.keepalives_rx,
                          p.keepalives_tx, p.frag_count)
                for p in self._peers.values()),
        )

    def counters_now(self, sas: bool = True) -> SaCounters:
        """Every SA's traffic as arrays and the totals (``GetCounters``): no object
        per SA, so the manager's sample costs little with 20,000 SAs. `sas` False:
        the totals only (the eight arrays not built: ~3/4 of the answer's cost)."""
        if not sas:  # the live SAs are listed only if their sums must be taken again
            return SaCounters(self._totals(None, None))
        ins = [e.sa for e in self._in.values()]
        outs = [o.sa for o in self._outbound_entries()]
        return SaCounters(
            self._totals(ins, outs),
            array("L", [sa.spi for sa in ins]), array("Q", [sa.bytes_in for sa in ins]),
            array("Q", [sa.packets_in for sa in ins]),
            array("d", [sa.last_activity for sa in ins]),
            array("L", [sa.spi for sa in outs]), array("Q", [sa.bytes_out for sa in outs]),
            array("Q", [sa.packets_out for sa in outs]),
            array("d", [sa.last_activity for sa in outs]),
            {sa.spi: dict(sa.drops) for sa in ins if sa.drops},
            Keepalives.of((p.addr, p.keepalives_rx, p.keepalives_tx)
                          for p in self._peers.values()))

    def _totals(self, ins: list[EspSA] | None, outs: list[EspSA] | None) -> DataplaneStats:
        """Every counter but the SA and peer lists: drops and traffic of the live SAs
        (`ins`, `outs`: listed here when None and needed) added to the ended ones'."""
        drops = dict(self.drops)
        if self._handover_full:
            drops[HANDOVER_QUEUE_FULL] = self._handover_full
        totals: dict[str, int] = dict(drops)
        for reason, count in self.ended_drops.items():
            totals[reason] = totals.get(reason, 0) + count
        traffic = dict(self.ended_traffic)
        live_traffic, live_drops = self._live_sums(ins, outs)
        for reason, count in live_drops.items():
            totals[reason] = totals.get(reason, 0) + count
        for name in _TRAFFIC:
            traffic[name] += live_traffic[name]
        return DataplaneStats(
            tun_rx=self.tun_rx, udp_rx=self.udp_rx, esp_rx=self.esp_rx,
            tun_rx_calls=self.tun_rx_calls, tun_tx=self.tun_tx, tun_tx_calls=self.tun_tx_calls,
            tun_rx_super=self.tun_rx_super, tun_tx_super=self.tun_tx_super,
            tun_offload=self.vnet_hdr,
            ike_rx=self.ike_rx, ike_tx=self.ike_tx, keepalive_rx=self.keepalive_rx,
            keepalive_tx=sum(p.keepalives_tx for p in self._peers.values()),
            cisco_udp_rx=self.cisco_udp_rx,
            udp_rx_calls=self._udp_rx_calls_plain + sum(r.calls for r in self._gro.values())
            + sum(r.calls for r in self._batch.values()),
            udp_rx_datagrams=self._udp_rx_calls_plain
            + sum(r.datagrams for r in self._gro.values())
            + sum(r.datagrams for r in self._batch.values()),
            udp_tx_calls=self.udp_tx_calls, udp_tx_datagrams=self.udp_tx_datagrams,
            gso_fallbacks=self.gso_fallbacks, esp_via_ike_socket=self.esp_via_ike_socket,
            moderation_waits=self.moderated, udp_gro=self.udp_gro,
            udp_gso=bool(self._gso_fds),
            drops=drops, drops_total=totals,
            esp_totals=Traffic(**traffic),  # live SAs + ended ones: never goes down
            control_dropped=self.inbox.dropped,
            frag=self._frag_stats(),
            ctcp=self._ctcp_stats(),
        )

    def _live_sums(self, ins: list[EspSA] | None,
                   outs: list[EspSA] | None) -> tuple[dict[str, int], dict[str, int]]:
        """The live SAs' traffic and drops, summed again only if `_sa_gen` moved (the
        dicts are shared with the cache: read them, never change them)."""
        at = self._live_sums_at
        if at is not None and at[0] == self._sa_gen:
            return at[1], at[2]
        if ins is None:
            ins = [e.sa for e in self._in.values()]
        if outs is None:
            outs = [o.sa for o in self._outbound_entries()]
        every = ins + outs
        drops: dict[str, int] = {}
        for sa_drops in [sa.drops for sa in every if sa.drops]:  # the few SAs that dropped
            for reason, count in sa_drops.items():
                drops[reason] = drops.get(reason, 0) + count
        # sums in C: with 20,000 SAs the loop per SA and name held the GIL ~30 ms of
        # every manager sample (2 s), the IKE loop's thread waiting (issue 13)
        traffic = {name: sum(map(attrgetter(name), every)) for name in _TRAFFIC}
        self._live_sums_at = (self._sa_gen, traffic, drops)
        return traffic, drops

    @staticmethod
    def _sa_stats(sa: EspSA, direction: Direction, peer: _Peer, *, seen: Address | None = None,
                  dst: str | None = None, tunnel_mtu: int | None = None) -> SaStats:
        return SaStats(
            spi=sa.spi, direction=direction, suite=sa.suite.name, peer=peer.addr,
            transport=peer.transport, udp_encap=peer.udp,
            bytes_in=sa.bytes_in, packets_in=sa.packets_in, bytes_out=sa.bytes_out,
            packets_out=sa.packets_out, seq_out=sa.seq, replay_top=sa.replay.top,
            last_activity=sa.last_activity, drops=dict(sa.drops), seen=seen, dst=dst,
            tunnel_mtu=tunnel_mtu)

    def _frag_stats(self) -> FragStats:
        f = self.frag
        return FragStats(f.policy, f.packets_fragmented, f.fragments_made, f.icmp_sent,
                         f.icmp_suppressed, f.df_cleared, f.outer_oversize, self.outer_mtu)

    def _ctcp_stats(self) -> CtcpStats:
        return CtcpStats(
            listening=tuple((s.getsockname()[0], s.getsockname()[1])
                            for s in self.ctcp_listeners),
            accepted=self.ctcp_accepted, connected=self.ctcp_connected,
            closed=self.ctcp_closed, ike_rx=self.ctcp_ike_rx, ike_tx=self.ctcp_ike_tx,
            connections=tuple(
                CtcpConnStats(c.addr, c.local, c.role,
                              "connecting" if c.connecting else "established",
                              c.ike_rx, c.ike_tx, c.esp_rx, c.esp_tx, c.rx_bytes, c.tx_bytes,
                              len(c.out))
                for c in list(self._ctcp.values())),
        )


if TYPE_CHECKING:
    def _implements_the_seam(dp: Dataplane) -> DataplaneHandle:
        return dp  # mypy proves Dataplane satisfies the DataplaneHandle Protocol
