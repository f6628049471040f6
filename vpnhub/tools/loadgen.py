"""Handshake load generator: many remote-access clients from one process, over real UDP.

    python -m vpnhub.tools.loadgen --server 203.0.113.50 --group vpngroup --psk-file F \\
        --users vpnuser{n}:userpass{n} --user-count 64 --tunnels 1000 --concurrency 64 \\
        [--dh 14] [--hold 0] [--traffic-sessions 0] [--traffic-hold 0] [--json out.json]

Each simulated client is one initiator ``IkeSA`` of the sans-I/O engine
(Aggressive Mode with the group PSK, XAUTH, Mode Config pull, Quick Mode)
with a UDP socket of its own: bound to ``--bind`` (default: any address) and
an ephemeral port. Every client therefore has its own source port and, run
behind the lab's PAT, all of them share one public address and are told
apart only by the port the PAT gave them (the PIX ``show xlate`` of the
Cisco note, ten thousand times over). NAT-D says "behind NAT", so each client
floats to UDP 4500 and gets ESP-in-UDP (RFC 3947/3948), from the same socket.

Phases:

0. before the clock starts: every client's phase 1 DH key pair, one fresh
   pair per tunnel (``--no-dh-precompute``: each client computes its own as
   it starts), and every client's UDP socket. A measuring tool should leave
   the cores to the concentrator: real clients compute on their own machines,
   and the same load generator (and the same precomputation) serves vpnhub
   and strongSwan alike (bench/handshake.py), so it favours neither;
   the shared secret, XAUTH, Mode Config and Quick Mode still run per tunnel.
   Quick Mode carries no PFS here (the clients' policy proposes no DH group
   for ESP, and neither concentrator asks for one: vpnc's default, Cisco's
   `pfs = false`), so one pair per tunnel is all a client draws; with PFS a
   client would need a second pair per tunnel (RFC 2409 section 5.5), from the
   same pool (``ike.quick`` takes it from ``endpoint_marks.dh_pool``).
   What was made here is then frozen out of the cyclic collector, whose young
   generation is as large as in ``vpnhub serve`` during the run (`quiet_collector`).
   What each tunnel costs the load generator: docs/BENCHMARKS.md.
   For the same reason the clients' MODP private exponents are 64 bits
   (``--client-exponent-bits``; 0 = the engine's 320 for group 14): their g^xy
   costs a fifth, while the concentrator does exactly what it does for any
   client (checks the public value, raises it to its own full-size exponent).
1. set-up: ``--tunnels`` tunnels, at most ``--concurrency`` in flight (and at
   most ``--rate`` new ones per second when given). The set-up time of a
   tunnel runs from its first message to the Quick Mode's last; the rate is
   tunnels completed / (last completion - first start).
2. ``--hold`` seconds idle: the engine's DPD (``--dpd``, R-U-THERE after that
   much silence) and NAT keepalives (one 0xFF byte on 4500 every
   ``--keepalive`` seconds) keep running.
3. ``--traffic-hold`` seconds during which ``--traffic-sessions`` of the
   tunnels each send an ICMP echo request every ``--traffic-interval``
   seconds to ``--traffic-dst`` through their ESP SA (keys from the Quick
   Mode, ``vpnhub.esp.sa.EspSA``), and decrypt and count the replies.
4. ``--linger`` seconds idle again (a benchmark lists the sessions then);
   SIGUSR1 ends it early.
5. ``--teardown``: DELETE every IKE SA (informational), then exit.

Counted for a benchmark (issue 13): ``deletes_received``, the ISAKMP DELETEs
the concentrator sent (a SIGTERM must reach every client), and
``sessions_lost``, the established tunnels that died before our own
teardown (DPD, a DELETE, anything). SIGUSR2 prints both, with the tunnels
alive, as a ``status`` event at once, in any phase after the set-up.

A cluster's virtual address (issue 17) may send a client to a member with the
Cisco load-balance notify: it starts again there as vpnc does (at most 3 times in
a row), and ``redirects`` counts the redirects followed.

Progress goes to stdout as one JSON object per line (``{"event": ...}``) so a
benchmark can act at phase boundaries; the summary goes to ``--json``.
Several worker processes (``--workers``) split the tunnels between them (each
with its own share of ``--concurrency``/``--rate``); their results are merged.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import ipaddress
import json
import multiprocessing as mp
import os
import resource
import secrets
import select
import signal
import socket
import struct
import sys
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, assert_never

from vpnhub.crypto.dh import DHKeyPair, ModpGroup, dh_group
from vpnhub.esp.errors import EspDrop
from vpnhub.esp.sa import EspSA, SaParams
from vpnhub.ike import events as ev
from vpnhub.ike.dhpool import DhPool
from vpnhub.ike.driver import DriverFault, IkeDriver, InitiatorTable
from vpnhub.ike.policy import LEGACY_GROUPS, Policy
from vpnhub.ike.sa import Datagram, IkeConfig, IkeSA
from vpnhub.ike.transitions import Role, State
from vpnhub.ike.transport import Transport
from vpnhub.secret import Secret

NON_ESP_MARKER = b"\x00\x00\x00\x00"
NAT_KEEPALIVE = b"\xff"
MAX_REDIRECTS = 3  # load-balancing redirects followed in a row (as `vpnhub connect`)
# The cyclic collector during the run, as `vpnhub serve` sets it: the default young
# generation (700 allocations) ran a collection every few messages, each walking the
# young objects of the tunnels in flight; nearly everything a handshake allocates is
# freed by reference counting, and what the precomputation made is frozen out of it
GC_THRESHOLDS = (50_000, 5, 100)


@contextlib.contextmanager
def quiet_collector() -> Iterator[None]:
    """The set-up's collector: what exists now (DH pairs, sockets) frozen, the young
    generation large; the process's own settings come back afterwards."""
    saved = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*saved)
        gc.unfreeze()


def client_key_pair(group: int, exponent_bits: int) -> DHKeyPair:
    """A simulated client's DH pair: MODP with a short private exponent when asked
    (`LoadConfig.client_exponent_bits`), else the engine's own (ECP: always)."""
    g = dh_group(group)
    if exponent_bits <= 0 or not isinstance(g, ModpGroup):
        return g.generate()
    return g.from_private(secrets.randbits(exponent_bits) | 1 << (exponent_bits - 1))


@dataclass
class LoadConfig:
    server: str
    group: str
    psk: str
    users: list[tuple[str, str]]
    tunnels: int = 100
    concurrency: int = 64
    rate: float = 0.0  # new tunnels per second, 0 = as fast as the window allows
    dh_group: int = 14
    ike_port: int = 500
    natt_port: int = 4500
    bind: str = "0.0.0.0"
    local_address: str = ""  # for NAT-D; default: the address the kernel picks
    setup_timeout: float = 60.0  # give up waiting for the set-up phase after this
    hold: float = 0.0
    dpd: float = 30.0  # 0 = no DPD from the clients
    keepalive: float = 20.0  # 0 = no NAT keepalives
    traffic_sessions: int = 0
    traffic_hold: float = 0.0
    traffic_interval: float = 1.0
    traffic_dst: str = "192.168.2.10"
    traffic_size: int = 64  # ICMP payload bytes
    linger: float = 0.0  # idle seconds after the traffic phase (before the teardown)
    # compute every client's phase 1 DH pair before the set-up starts (its CPU is
    # reported apart): a measuring tool should spend the cores on the concentrator
    dh_precompute: bool = True
    # bits of the simulated clients' own MODP private exponents (0: the engine's,
    # 320 for group 14). The load generator's secrecy is worth nothing (test tunnels
    # in the lab's namespaces) and its CPU is not the concentrator's: a short exponent
    # makes each client's g^xy ~5x cheaper. The concentrator's work is the same either
    # way: it checks the public value and raises it to its own full-size exponent.
    client_exponent_bits: int = 64
    teardown: bool = False
    worker: int = 0


# ----------------------------------------------------------------------------- packets
def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def icmp_echo(src: bytes, dst: bytes, ident: int, seq: int, payload: bytes) -> bytes:
    """An IPv4 ICMP echo request (both checksums filled in)."""
    icmp = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + payload
    icmp = icmp[:2] + struct.pack("!H", _checksum(icmp)) + icmp[4:]
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), seq & 0xFFFF, 0, 64, 1, 0,
                      src, dst)
    hdr = hdr[:10] + struct.pack("!H", _checksum(hdr)) + hdr[12:]
    return hdr + icmp


# ----------------------------------------------------------------------------- clients
class SimClient:
    """One simulated remote-access client: an initiator IkeSA and its UDP socket."""

    __slots__ = ("assigned", "done_at", "error", "esp_in", "esp_out", "fd", "index",
                 "next_ka", "next_ping", "password", "ping_seq", "redirects", "sa", "server",
                 "sock", "started_at", "user")

    def __init__(self, index: int, sock: socket.socket, sa: IkeSA, user: str,
                 password: str) -> None:
        self.index = index
        self.sock = sock
        self.fd = sock.fileno()
        self.sa = sa
        self.user = user
        self.password = password
        self.started_at = 0.0
        self.done_at = 0.0
        self.error = ""
        self.assigned: bytes = b""
        self.esp_out: EspSA | None = None
        self.esp_in: EspSA | None = None
        self.next_ka = 0.0
        self.next_ping = 0.0
        self.ping_seq = 0
        self.server = sa.remote[0]  # a redirect (issue 17) moves it to a cluster member
        self.redirects = 0


@dataclass
class Counters:
    started: int = 0
    established: int = 0
    failed: int = 0
    deleted_by_peer: int = 0
    deletes_received: int = 0  # ISAKMP DELETEs from the concentrator (RFC 2408 3.15)
    lost: int = 0  # established tunnels that died before our own teardown
    dpd_acks: int = 0
    keepalives_tx: int = 0
    ike_rx: int = 0
    ike_tx: int = 0
    esp_tx: int = 0
    esp_rx: int = 0
    esp_drops: int = 0
    pings_tx: int = 0
    pings_rx: int = 0
    send_errors: int = 0
    redirects: int = 0  # Cisco load-balance notifies followed (issue 17)
    # messages our clients sent again during the set-up (no answer within the
    # retransmission interval: a datagram lost on the way, or an answer that late)
    retransmissions_setup: int = 0
    errors: Counter[str] = field(default_factory=Counter)


class LoadGenerator:
    def __init__(self, cfg: LoadConfig) -> None:
        self.cfg = cfg
        self.ep = select.epoll()
        self.by_fd: dict[int, SimClient] = {}
        self.clients: list[SimClient] = []
        # every client's IKE SA, driven by the one IKE driver (exact timers)
        self.table = InitiatorTable()
        self.ike = IkeDriver(self.table, self._on_ike_event, self._send_ike,
                             on_error=self._on_fault)
        self.by_icookie: dict[bytes, SimClient] = {}
        self.ka_queue: deque[SimClient] = deque()
        self.ping_queue: deque[SimClient] = deque()
        self.c = Counters()
        self.setup_times: list[float] = []
        self.done_times: list[float] = []  # monotonic, system-wide: the workers' compare
        self.rtts: list[float] = []
        self.first_start = 0.0
        self.last_done = 0.0
        self.inflight = 0
        self.local_address = cfg.local_address or self._route_source()
        self.dst = ipaddress.IPv4Address(cfg.traffic_dst).packed
        legacy = cfg.dh_group in LEGACY_GROUPS
        self.policy = Policy(allow_legacy=legacy, dh_group=cfg.dh_group)
        self.psk = Secret(cfg.psk)
        # one configuration for every client: nothing in it is per client. Log
        # severity 0: the load generator reads no LogLine, so the engine does not
        # even build them (the IKEDECODE decodes of every message cost the most)
        self.ike_config = IkeConfig(
            local_address=self.local_address, policy=self.policy, group_name=cfg.group,
            psk=self.psk, natt=True, xauth=True, dpd=cfg.dpd > 0,
            dpd_interval=cfg.dpd or 30.0, application_version="vpnhub-loadgen",
            log_severity=0, follow_redirects=True)
        # the clients' phase 1 DH pairs, computed before the clock starts (`run`):
        # one fresh pair per tunnel, never one twice (`DhPool.take`); the shared
        # secret g^xy is still computed per tunnel, during the set-up
        self.dh_pool = DhPool({cfg.dh_group: cfg.tunnels}) if cfg.dh_precompute else None
        self.spare_sockets: deque[socket.socket] = deque()  # opened before the set-up
        self.phase = "setup"
        self.cpu0 = time.process_time()
        self.interrupted = False  # SIGUSR1: end the linger phase now
        self.status_wanted = False  # SIGUSR2: print a "status" event

    def _route_source(self) -> str:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((self.cfg.server, self.cfg.ike_port))
            return str(s.getsockname()[0])

    def emit(self, event: str, **kw: Any) -> None:
        doc = {"event": event, "worker": self.cfg.worker, "t": time.monotonic(), **kw}
        print(json.dumps(doc), flush=True)

    # -- clients --------------------------------------------------------------
    def _new_client(self, now: float) -> SimClient:
        i = len(self.clients)
        user, pw = self.cfg.users[(i * 7919 + self.cfg.worker) % len(self.cfg.users)]
        sock = self.spare_sockets.popleft() if self.spare_sockets else self._open_socket()
        sa = IkeSA(self.ike_config, Role.INITIATOR, (self.cfg.server, self.cfg.ike_port), now)
        if self.dh_pool is not None:
            sa.p1.dh_source = self._key_pair
        c = SimClient(i, sock, sa, user, pw)
        self.clients.append(c)
        self.by_fd[c.fd] = c
        self.by_icookie[sa.icookie] = c
        self.table.add(sa)
        self.ep.register(c.fd, select.EPOLLIN)
        return c

    def _open_socket(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((self.cfg.bind, 0))
        sock.setblocking(False)
        return sock

    def _open_sockets(self) -> None:
        """Every client's UDP socket, before the clock starts (as the DH pairs): a
        simulated client's socket stands for another machine's, whose socket() and
        bind() are not the concentrator's business nor on its cores; each is still one
        client's alone (its own source port through the PAT)."""
        while len(self.spare_sockets) < self.cfg.tunnels:
            self.spare_sockets.append(self._open_socket())

    def _key_pair(self, group: int) -> DHKeyPair:
        assert self.dh_pool is not None
        return self.dh_pool.take(group) or client_key_pair(group, self.cfg.client_exponent_bits)

    def _fill_dh_pool(self) -> float:
        """Every tunnel's DH pair, now; returns the CPU seconds it took."""
        c0 = time.process_time()
        if self.dh_pool is not None:
            bits = self.cfg.client_exponent_bits
            self.dh_pool.fill(self.cfg.tunnels, make=lambda g: client_key_pair(g, bits))
        return time.process_time() - c0

    def _start_one(self, now: float) -> None:
        c = self._new_client(now)
        c.started_at = now
        if not self.first_start:
            self.first_start = now
        self.c.started += 1
        self.inflight += 1
        c.sa.initiate(now)
        self.ike.service(c.sa, now)

    def _send(self, c: SimClient, data: bytes, addr: tuple[str, int]) -> None:
        try:
            c.sock.sendto(data, addr)
        except OSError:
            self.c.send_errors += 1

    def _send_ike(self, sa: IkeSA, d: Datagram) -> None:
        c = self.by_icookie[sa.icookie]  # out of that client's own socket
        self.c.ike_tx += 1
        if d.transport is Transport.NATT:
            self._send(c, NON_ESP_MARKER + d.data, d.remote)
        else:
            self._send(c, d.data, d.remote)

    def _on_ike_event(self, sa: IkeSA, e: ev.Event, now: float) -> None:
        c = self.by_icookie[sa.icookie]
        if sa is c.sa:  # not the SA a redirect left behind (its SADeleted)
            self._on_event(c, e, now)

    def _on_fault(self, f: DriverFault) -> None:
        c = self.by_icookie.get(f.sa.icookie) if f.sa is not None else None
        if c is not None:  # that tunnel counts as failed, the others go on
            self._fail(c, f"internal_error_{f.stage}")
        else:
            self.c.errors[f"internal_error_{f.stage}"] += 1

    def _on_event(self, c: SimClient, e: ev.Event, now: float) -> None:
        match e:
            case ev.XauthRequested():
                c.sa.xauth_reply(c.user, Secret(c.password), now)
            case ev.ModeConfigReceived():
                if e.config.address is not None:
                    c.assigned = e.config.address.packed
                c.sa.start_quick_mode(now)
            case ev.ChildSAEstablished():
                self._established(c, e, now)
            case ev.DpdAck():
                self.c.dpd_acks += 1
            case ev.NegotiationFailed():
                self._fail(c, e.error)
            case ev.DeadPeer():
                self._fail(c, "dead_peer")
            case ev.RedirectRequested():
                self._redirect(c, e, now)
            case ev.RedirectRefused():
                self.c.errors[e.reason] += 1
            case ev.SADeleted():
                if e.by_peer:
                    self.c.deletes_received += 1
                if c.done_at and e.by_peer:
                    self.c.deleted_by_peer += 1
                self._fail(c, f"deleted: {e.reason}")
            case (ev.LogLine() | ev.NatDetected() | ev.NatTraversalRefused()
                  | ev.Phase1Established() | ev.XauthCredentials() | ev.XauthCompleted()
                  | ev.ModeConfigRequested() | ev.ChildSADeleted() | ev.PeerEndpointChanged()
                  | ev.KeepaliveReceived() | ev.Phase1RekeyDue() | ev.Redirected()
                  # a Quick Mode the concentrator starts: its ChildSAEstablished still
                  # carries both keys, which is all the traffic here needs
                  | ev.ChildSAInboundReady() | ev.ChildSAAbandoned()):
                pass  # nothing to measure
            case _:
                assert_never(e)

    def _redirect(self, c: SimClient, e: ev.RedirectRequested, now: float) -> None:
        """Issue 17: follow the cluster master's load-balance notify as vpnc does: a new
        Aggressive Mode at the member's address, UDP 500, from the same socket (the
        engine ended the old SA without a DELETE). The set-up time runs on."""
        c.redirects += 1
        if c.redirects > MAX_REDIRECTS:
            self._fail(c, "redirect_loop")
            return
        self.c.redirects += 1
        c.server = str(e.target)
        sa = IkeSA(self.ike_config, Role.INITIATOR, (c.server, self.cfg.ike_port), now)
        if self.dh_pool is not None:
            sa.p1.dh_source = self._key_pair
        c.sa = sa
        self.by_icookie[sa.icookie] = c
        self.table.add(sa)
        sa.initiate(now)
        self.ike.service(sa, now)

    def _established(self, c: SimClient, e: ev.ChildSAEstablished, now: float) -> None:
        if not c.done_at:
            c.done_at = now
            self.last_done = now
            self.done_times.append(now)
            self.setup_times.append(now - c.started_at)
            self.c.established += 1
            self.inflight -= 1
            if self.cfg.keepalive > 0:
                c.next_ka = now + self.cfg.keepalive
                self.ka_queue.append(c)
        if len(self.ping_queue) < self.cfg.traffic_sessions:
            c.esp_out = SaParams(e.spi_out, e.transform, e.key_length or None, e.auth or None,
                                 e.enc_key_out, e.auth_key_out).build()
            c.esp_in = SaParams(e.spi_in, e.transform, e.key_length or None, e.auth or None,
                                e.enc_key_in, e.auth_key_in).build()
            self.ping_queue.append(c)

    def _fail(self, c: SimClient, reason: str) -> None:
        if c.error:
            return
        c.error = reason
        self.c.errors[reason] += 1
        if c.done_at and self.phase != "teardown":
            self.c.lost += 1
        if not c.done_at:
            self.c.failed += 1
            self.inflight -= 1

    # -- I/O ------------------------------------------------------------------
    def _readable(self, c: SimClient, now: float) -> None:
        # one datagram per readiness: the epoll is level-triggered, so a socket with
        # more queued is reported again by the next poll, and a client rarely has
        # two messages waiting; reading until EAGAIN cost a failed recvfrom (and
        # its exception) per message
        try:
            data, addr = c.sock.recvfrom(65535)
        except OSError:  # BlockingIOError (a spurious wake-up) included
            return
        natt = self.cfg.natt_port
        if addr[1] == natt:
            if data[:4] == NON_ESP_MARKER:
                self.c.ike_rx += 1
                self.ike.receive(data[4:], (addr[0], addr[1]), natt, Transport.NATT, now)
            elif len(data) == 1 and data == NAT_KEEPALIVE:
                return
            else:
                self._esp_in(c, data, now)
        else:
            self.c.ike_rx += 1
            self.ike.receive(data, (addr[0], addr[1]), self.cfg.ike_port, Transport.IKE, now)

    def _esp_in(self, c: SimClient, data: bytes, now: float) -> None:
        self.c.esp_rx += 1
        if c.esp_in is None or data[:4] != c.esp_in.spi_bytes:
            self.c.esp_drops += 1
            return
        try:
            inner = c.esp_in.decapsulate(data)[0]
        except EspDrop:
            self.c.esp_drops += 1
            return
        if len(inner) >= 36 and inner[9] == 1 and inner[20] == 0:  # ICMP echo reply
            self.c.pings_rx += 1
            (sent_ns,) = struct.unpack_from("!Q", inner, 28)
            self.rtts.append(time.monotonic_ns() - sent_ns)

    # -- timers ---------------------------------------------------------------
    def _run_timers(self, now: float) -> None:
        due = self.ike.next_timer()
        if due is not None and due <= now:
            self.ike.timer(now)
        if self.cfg.keepalive > 0:
            q = self.ka_queue
            while q and q[0].next_ka <= now:
                c = q.popleft()
                if c.error:
                    continue
                self._send(c, NAT_KEEPALIVE, (c.server, self.cfg.natt_port))
                self.c.keepalives_tx += 1
                c.next_ka = now + self.cfg.keepalive
                q.append(c)
        if self.phase == "traffic":
            self._pings(now)

    def _pings(self, now: float) -> None:
        q = self.ping_queue
        pad = b"\x00" * max(0, self.cfg.traffic_size - 8)
        for _ in range(len(q)):
            if not q or q[0].next_ping > now:
                break
            c = q.popleft()
            if c.error or c.esp_out is None:
                continue
            c.ping_seq = (c.ping_seq + 1) & 0xFFFF
            inner = icmp_echo(c.assigned, self.dst, c.index & 0xFFFF, c.ping_seq,
                              struct.pack("!Q", time.monotonic_ns()) + pad)
            try:
                self._send(c, c.esp_out.encapsulate(inner), (c.server, self.cfg.natt_port))
            except EspDrop:
                continue
            self.c.esp_tx += 1
            self.c.pings_tx += 1
            c.next_ping = now + self.cfg.traffic_interval
            q.append(c)

    def _next_deadline(self, now: float) -> float:
        nxt = now + 0.2
        if (due := self.ike.next_timer()) is not None:
            nxt = min(nxt, due)
        if self.ka_queue:
            nxt = min(nxt, self.ka_queue[0].next_ka)
        if self.phase == "traffic" and self.ping_queue:
            nxt = min(nxt, self.ping_queue[0].next_ping)
        return nxt

    # -- the run ---------------------------------------------------------------
    def _loop_once(self, now: float, timeout: float) -> None:
        for fd, _ in self.ep.poll(max(0.0, timeout), 4096):
            c = self.by_fd.get(fd)
            if c is not None:
                self._readable(c, time.monotonic())
        self._run_timers(time.monotonic())

    def _wait(self, seconds: float, *, interruptible: bool = False) -> None:
        end = time.monotonic() + seconds
        while (now := time.monotonic()) < end:
            if self.status_wanted:
                self.status_wanted = False
                self.emit_status()
            if interruptible and self.interrupted:
                self.interrupted = False
                return
            self._loop_once(now, min(end, self._next_deadline(now)) - now)

    def _on_sigusr1(self, signum: int, frame: Any) -> None:
        self.interrupted = True

    def _on_sigusr2(self, signum: int, frame: Any) -> None:
        self.status_wanted = True  # printed by the loop, not from the signal handler

    def emit_status(self) -> None:
        self.emit("status", alive=self._alive(), sessions_lost=self.c.lost,
                  deletes_received=self.c.deletes_received)

    def run(self) -> dict[str, Any]:
        signal.signal(signal.SIGUSR1, self._on_sigusr1)
        signal.signal(signal.SIGUSR2, self._on_sigusr2)
        dh_cpu = self._fill_dh_pool()
        self._open_sockets()
        with quiet_collector():
            return self._run(dh_cpu)

    def _run(self, dh_cpu: float) -> dict[str, Any]:
        cfg = self.cfg
        self.cpu0 = time.process_time()  # the set-up's CPU starts now
        sys0 = os.times().system
        t0 = time.monotonic()
        progress_at = t0 + 1.0
        deadline = None
        while True:
            now = time.monotonic()
            if self.c.started < cfg.tunnels:
                room = cfg.concurrency - self.inflight
                if cfg.rate > 0:
                    room = min(room, int((now - t0) * cfg.rate) + 1 - self.c.started)
                for _ in range(max(0, min(room, cfg.tunnels - self.c.started))):
                    self._start_one(time.monotonic())
            elif self.inflight <= 0:
                break
            elif deadline is None:
                deadline = now + cfg.setup_timeout
            elif now > deadline:
                for c in self.clients:
                    if not c.done_at and not c.error:
                        self._fail(c, "setup_timeout")
                break
            if now >= progress_at:
                progress_at = now + 1.0
                self.emit("progress", established=self.c.established, failed=self.c.failed,
                          inflight=self.inflight)
            wait = 0.0 if (self.c.started < cfg.tunnels and
                           self.inflight < cfg.concurrency and cfg.rate <= 0) else 0.005
            self._loop_once(now, min(wait, self._next_deadline(now) - now))
        setup_cpu = time.process_time() - self.cpu0
        setup_sys = os.times().system - sys0  # the kernel's share: sockets, sends, receives
        self.c.retransmissions_setup = sum(c.sa.stats["retransmissions"] for c in self.clients)
        self.emit("setup_done", established=self.c.established, failed=self.c.failed)
        hold_cpu = traffic_cpu = 0.0
        if cfg.hold > 0:
            self.phase = "hold"
            self.emit("hold_start", seconds=cfg.hold)
            c0 = time.process_time()
            self._wait(cfg.hold)
            hold_cpu = time.process_time() - c0
            self.emit("hold_done", alive=self._alive())
        if cfg.traffic_sessions > 0 and cfg.traffic_hold > 0:
            self.phase = "traffic"
            now = time.monotonic()
            n = len(self.ping_queue)
            for k, c in enumerate(self.ping_queue):  # spread the pings over the interval
                c.next_ping = now + cfg.traffic_interval * k / max(1, n)
            self.emit("traffic_start", sessions=n, seconds=cfg.traffic_hold)
            c0 = time.process_time()
            self._wait(cfg.traffic_hold)
            traffic_cpu = time.process_time() - c0
            self.phase = "drain"
            self._wait(min(2.0, cfg.traffic_interval * 2))
            self.emit("traffic_done", pings_tx=self.c.pings_tx, pings_rx=self.c.pings_rx,
                      alive=self._alive())
        if cfg.linger > 0:
            self.phase = "linger"
            self.emit("linger_start", seconds=cfg.linger, alive=self._alive())
            self._wait(cfg.linger, interruptible=True)
            self.emit("linger_done", alive=self._alive())
        alive_at_end = self._alive()
        if cfg.teardown:
            self.phase = "teardown"
            now = time.monotonic()
            for c in self.clients:
                if c.sa.state is State.ESTABLISHED:
                    c.sa.delete(now, "load generator done")
                    self.ike.service(c.sa, now)
            self._wait(0.5)
            self.emit("teardown_done")
        self.emit("done")
        for sock in [c.sock for c in self.clients] + list(self.spare_sockets):
            with contextlib.suppress(OSError):
                sock.close()
        self.spare_sockets.clear()
        return {
            "config": {k: v for k, v in asdict(cfg).items() if k not in ("users", "psk")},
            "counters": {k: (dict(v) if isinstance(v, Counter) else v)
                         for k, v in vars(self.c).items()},
            "first_start": self.first_start, "last_done": self.last_done,
            "setup_times": self.setup_times, "done_times": self.done_times,
            "rtts_ms": [r / 1e6 for r in self.rtts],
            "alive_at_end": alive_at_end,
            "cpu": {"setup": setup_cpu, "hold": hold_cpu, "traffic": traffic_cpu,
                    "total": time.process_time() - self.cpu0, "dh_precompute": dh_cpu,
                    "setup_system": setup_sys},
        }

    def _alive(self) -> int:
        return sum(1 for c in self.clients if c.done_at and not c.error)


# ----------------------------------------------------------------------------- results
def _pct(values: list[float], p: float) -> float | None:
    vals = sorted(values)
    if not vals:
        return None
    k = max(0, min(len(vals) - 1, -(-len(vals) * p // 100) - 1))
    return vals[int(k)]


def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One summary from the workers' results."""
    setup = [t for p in parts for t in p["setup_times"]]
    rtts = [t for p in parts for t in p["rtts_ms"]]
    counters: dict[str, Any] = {}
    for p in parts:
        for k, v in p["counters"].items():
            if isinstance(v, dict):
                d = counters.setdefault(k, {})
                for kk, vv in v.items():
                    d[kk] = d.get(kk, 0) + vv
            else:
                counters[k] = counters.get(k, 0) + v
    starts = [p["first_start"] for p in parts if p["first_start"]]
    dones = [p["last_done"] for p in parts if p["last_done"]]
    span = (max(dones) - min(starts)) if starts and dones else 0.0
    est = counters.get("established", 0)
    return {
        "tunnels": sum(p["config"]["tunnels"] for p in parts),
        "established": est,
        "failed": counters.get("failed", 0),
        "tunnels_per_s": est / span if span > 0 else None,
        "setup_span_s": span,
        "setup_p50_ms": (_pct(setup, 50) or 0) * 1e3 if setup else None,
        "setup_p99_ms": (_pct(setup, 99) or 0) * 1e3 if setup else None,
        "setup_max_ms": max(setup) * 1e3 if setup else None,
        "rtt_p50_ms": _pct(rtts, 50), "rtt_p99_ms": _pct(rtts, 99),
        "alive_at_end": sum(p["alive_at_end"] for p in parts),
        # each tunnel's completion (CLOCK_MONOTONIC), in order: the rate over any part
        # of the set-up (bench/handshake.py: after the concentrator's DH pool ran out)
        "done_times": sorted(t for p in parts for t in p.get("done_times", [])),
        "deletes_received": counters.get("deletes_received", 0),
        "sessions_lost": counters.get("lost", 0),
        "redirects": counters.get("redirects", 0),
        "counters": counters,
        "cpu_s": {k: sum(p["cpu"][k] for p in parts) for k in parts[0]["cpu"]} if parts else {},
        "workers": len(parts),
        "config": parts[0]["config"] if parts else {},
    }


# ----------------------------------------------------------------------------- CLI
def _raise_fd_limit(n: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 256
    if soft >= want:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _worker(cfg: LoadConfig, out: Any) -> None:
    try:
        out.send(LoadGenerator(cfg).run())
    except BaseException as e:  # the parent reports it
        out.send({"error": f"{type(e).__name__}: {e}"})
        raise


def run(cfg: LoadConfig, workers: int = 1) -> dict[str, Any]:
    _raise_fd_limit(cfg.tunnels)
    if workers <= 1:
        return merge([LoadGenerator(cfg).run()])
    ctx = mp.get_context("fork")
    procs, pipes = [], []
    for w in range(workers):
        n = cfg.tunnels // workers + (1 if w < cfg.tunnels % workers else 0)
        part = replace(cfg, tunnels=n, worker=w,
                       concurrency=max(1, cfg.concurrency // workers),
                       rate=cfg.rate / workers,
                       traffic_sessions=cfg.traffic_sessions // workers)
        parent, child = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_worker, args=(part, child))
        p.start()
        procs.append(p)
        pipes.append(parent)
    parts = [pipe.recv() for pipe in pipes]
    for p in procs:
        p.join()
    errors = [p["error"] for p in parts if "error" in p]
    if errors:
        raise RuntimeError("; ".join(errors))
    return merge(parts)


def parse_users(spec: str, count: int) -> list[tuple[str, str]]:
    """"vpnuser{n}:userpass{n}" with count=3 -> vpnuser1/userpass1 .. vpnuser3/userpass3;
    or a comma-separated list of user:password."""
    if "{n}" in spec:
        user, pw = spec.split(":", 1)
        return [(user.replace("{n}", str(i)), pw.replace("{n}", str(i)))
                for i in range(1, count + 1)]
    out = []
    for item in spec.split(","):
        user, _, pw = item.partition(":")
        out.append((user, pw))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vpnhub.tools.loadgen",
                                 description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--server", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--psk-file", type=Path, required=True, help="first line: the group PSK")
    ap.add_argument("--users", required=True,
                    help="user:password,... or a pattern like vpnuser{n}:userpass{n}")
    ap.add_argument("--user-count", type=int, default=1, help="n = 1..COUNT in --users")
    ap.add_argument("--tunnels", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--rate", type=float, default=0.0)
    ap.add_argument("--dh", type=int, default=14, help="DH group: 2, 14, 19, ...")
    ap.add_argument("--bind", default="0.0.0.0")
    ap.add_argument("--local-address", default="")
    ap.add_argument("--setup-timeout", type=float, default=60.0)
    ap.add_argument("--hold", type=float, default=0.0)
    ap.add_argument("--dpd", type=float, default=30.0)
    ap.add_argument("--keepalive", type=float, default=20.0)
    ap.add_argument("--traffic-sessions", type=int, default=0)
    ap.add_argument("--traffic-hold", type=float, default=0.0)
    ap.add_argument("--traffic-interval", type=float, default=1.0)
    ap.add_argument("--traffic-dst", default="192.168.2.10")
    ap.add_argument("--linger", type=float, default=0.0,
                    help="idle seconds after the traffic phase, before the teardown")
    ap.add_argument("--teardown", action="store_true")
    ap.add_argument("--no-dh-precompute", action="store_true",
                    help="compute each client's DH pair when it starts, not before the set-up")
    ap.add_argument("--client-exponent-bits", type=int, default=64,
                    help="bits of the simulated clients' MODP private exponents (0: the"
                         " engine's size); the concentrator's own work is the same")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--json", type=Path, help="write the summary here")
    args = ap.parse_args(argv)
    psk = args.psk_file.read_text().splitlines()[0]
    cfg = LoadConfig(
        server=args.server, group=args.group, psk=psk,
        users=parse_users(args.users, args.user_count), tunnels=args.tunnels,
        concurrency=args.concurrency, rate=args.rate, dh_group=args.dh, bind=args.bind,
        local_address=args.local_address, setup_timeout=args.setup_timeout, hold=args.hold,
        dpd=args.dpd, keepalive=args.keepalive, traffic_sessions=args.traffic_sessions,
        traffic_hold=args.traffic_hold, traffic_interval=args.traffic_interval,
        traffic_dst=args.traffic_dst, linger=args.linger, teardown=args.teardown,
        dh_precompute=not args.no_dh_precompute,
        client_exponent_bits=args.client_exponent_bits)
    result = run(cfg, args.workers)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    summary = {k: v for k, v in result.items() if k not in ("config",)}
    print(json.dumps({"event": "summary", **summary}), flush=True)
    return 0 if result["established"] else 1


if __name__ == "__main__":
    sys.exit(main())
