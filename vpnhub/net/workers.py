"""``WorkerPool``: N data-plane worker processes behind one ``DataplaneHandle``.

The concentrator uses the pool exactly as it uses the single in-process
``Dataplane`` (vpnhub/net/handle.py).  Underneath:

- Sticky assignment: all the SAs of a peer (its address and port) live in one
  worker, the least loaded when its first SPI is allocated; peers on raw ESP and
  cTCP in worker 0 (it alone has those sockets).  ``spi_allocator`` gives the
  engine, for each new inbound SPI, one that the kernel steers to that worker
  (SPI % N, vpnhub/esp/spi.py and net/ikesplit.py).
- Commands go to the owner over its link (net/workerlink.py), pickled, never
  waited for; a worker whose link is full is hung: killed and restarted
  (``hung_workers``). What one loop turn gives a worker goes as one message (a
  ``Batch``), in the order given: one system call and one wake-up of its process
  instead of one per command (issue 13: ~1.3 sends per tunnel were a tenth of the
  loop's time in a login storm). The commands wait until the open ``batch()`` ends
  or, outside one, for a ``call_soon`` callback (the loop's callbacks that were
  ready run first); an inbound SA goes at once on ``flush_batch()`` (before the
  IKE message that lets the peer use it), a question (``Request``) at once with
  what waits before it.  Each outbound SA's inner destination is announced to the
  other workers as a foreign route, so that a LAN packet read by the wrong one is
  handed over (net/handover.py).
- Events of every worker are merged into one stream (``events``, ``notify``);
  ``stats``/``counters`` ask every worker and merge, with a per-worker figure
  list (``DataplaneStats.workers``).
- A worker that dies (its link closes) is restarted on the same fds and its SAs
  reinstalled.  An outbound sequence number must never be used twice (RFC 4303
  3.3.3) and the pool knows only the last sampled one, so the SA resumes well past
  it: sampled + 1,000,000 per second since the sample + 1024 (no worker sends a
  million packets a second per SA); an SA that would pass 2^32 - 1 resumes at the
  end and asks for a rekey (``SaExhausted``).  Inbound SAs resume their replay
  window at the sampled top (RFC 4303 3.4.3).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Final

from vpnhub.esp.sa import SEQ_MAX, EspSA, SaParams
from vpnhub.esp.spi import spi_for_worker, worker_of_spi
from vpnhub.ike.transport import Transport
from vpnhub.net.messages import (
    TRANSPORT_CTCP,
    TRANSPORT_ESP,
    AddInbound,
    AddOutbound,
    Address,
    Command,
    CtcpClose,
    Event,
    GetCounters,
    GetStats,
    RemoveSA,
    SetKeepalive,
    UpdatePeer,
)
from vpnhub.net.moderation import moderation_limit
from vpnhub.net.stats import DataplaneStats, SaCounters, WorkerStats, merge_counters, merge_stats
from vpnhub.net.worker import WorkerSpec
from vpnhub.net.workerlink import (
    Batch,
    DropForeignRoute,
    HandOver,
    Link,
    LinkClosed,
    LinkFull,
    Reply,
    Request,
    SendIke,
    SetDebug,
    SetForeignRoute,
    WorkerError,
    link_pair,
)

SEQ_RATE: Final = 1_000_000  # packets a second an SA could have sent since the sample
SEQ_MARGIN: Final = 1024
ASK_TIMEOUT: Final = 5.0
MAX_DRAWN: Final = 65536  # inbound SPIs drawn and not (yet) installed, remembered
PR_SET_PDEATHSIG: Final = 1  # <linux/prctl.h>
# A worker that keeps dying (a bad build, an fd the kernel took away) must not turn
# the concentrator into a fork loop: past RESTART_BURST deaths within RESTART_WINDOW
# seconds each further start waits twice as long as the one before, up to
# RESTART_MAX_DELAY seconds. Its SAs are kept and reinstalled when it starts.
RESTART_BURST: Final = 5
RESTART_WINDOW: Final = 60.0
RESTART_MAX_DELAY: Final = 30.0

Log = Callable[[int, str], object]


def spi_for(worker: int, workers: int) -> int:
    """A random SPI >= 256 with SPI % workers == worker (the kernel steers by it)."""
    return spi_for_worker(worker, workers)


def resumed_seq(sampled: int, age: float) -> int:
    """Where an outbound SA resumes after its worker restarted (module doc)."""
    return min(SEQ_MAX, sampled + int(SEQ_RATE * max(0.0, age)) + SEQ_MARGIN)


def _pdeathsig() -> None:  # pragma: no cover - runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (proc(5), fields 14 and 15), 0.0 if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class WorkerFds:
    """The fds of one worker that outlive it (kept by the parent for restarts)."""

    tun: int
    udp: int | None = None
    cisco_udp: int | None = None
    esp: int | None = None
    keepalive: int | None = None
    ctcp: list[int] = field(default_factory=list)
    mesh: dict[int, int] = field(default_factory=dict)
    vnet_hdr: bool = False  # the TUN carries a virtio_net_hdr (net/tunoffload.py)
    udp_virtual: int | None = None  # [cluster]: the virtual address's UDP 4500, send only


@dataclass
class _Sa:
    """What the pool keeps of an SA to reinstall it: its commands, its last sample."""

    commands: list[AddInbound | AddOutbound]
    peer: Address
    seq: int = 0
    sampled_at: float = 0.0


class _Worker:
    def __init__(self, index: int, fds: WorkerFds) -> None:
        self.index = index
        self.fds = fds
        self.proc: subprocess.Popen[bytes] | None = None
        self.link: Link | None = None
        self.restarts = 0
        self.deaths: list[float] = []  # when it died, within RESTART_WINDOW
        self.sas: dict[int, _Sa] = {}
        self.keepalives: dict[tuple[Address, str], SetKeepalive] = {}
        self.peers: dict[Address, int] = {}  # peer -> SAs of it here
        self.figures: dict[str, int] = {}
        # the last answer's (outbound, inbound) SPI -> sequence number, and when
        self.seqs: tuple[dict[int, int], dict[int, int]] | None = None
        self.seqs_at = 0.0
        # commands not sent yet, in order (``WorkerPool._send``); whether one is an
        # AddInbound (``flush_batch`` sends them before an IKE message leaves)
        self.pending: list[object] = []
        self.pending_installs = False
        # its counters at the last answer, and those of its previous lives: a restart
        # must not make totals fall (Prometheus reads a fall as a reset)
        self.last: DataplaneStats | None = None
        self.carried: DataplaneStats | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else 0


class WorkerPool:
    """N worker processes as one ``DataplaneHandle`` (module doc).

    ``fds[k]``: worker k's fds; ``notify``: called (in the loop) when events wait;
    ``log(severity, text)``: the IPSEC event class.
    """

    def __init__(self, fds: list[WorkerFds], *, notify: Callable[[], object] | None = None,
                 log: Log | None = None, frag_policy: str = "none", outer_mtu: int = 1500,
                 clock: Callable[[], float] = time.monotonic,
                 pinned: tuple[str, ...] = (TRANSPORT_ESP, TRANSPORT_CTCP),
                 moderation: float = 0.0) -> None:
        if not fds:
            raise ValueError("a pool needs a worker")
        self.workers = [_Worker(k, f) for k, f in enumerate(fds)]
        self.n = len(fds)
        self.notify = notify
        self.log = log or (lambda _s, _t: None)
        self.frag_policy = frag_policy
        self.outer_mtu = outer_mtu
        # ``[dataplane] moderation_us`` (s): each worker's longest wait scales with N
        self.moderation = moderation_limit(moderation, self.n)
        self.clock = clock
        self.pinned = pinned  # transports whose peers all live in worker 0
        self.debug_severity = 0
        self.hung_workers = 0
        self.ask_timeout = ASK_TIMEOUT
        self._owner: dict[Address, int] = {}  # sticky peer -> worker
        self._assigned = [0] * self.n  # peers assigned to each worker (the load)
        self._spi_owner: dict[int, int] = {}
        # inbound SPIs drawn and not yet installed: (worker, the IKE peer drawn for)
        self._allocated: dict[int, tuple[int, Address]] = {}
        self._routes: dict[str, tuple[int, int]] = {}  # inner dst -> (worker, outbound SPI)
        # outbound SPI -> the dsts it routed: RemoveSA in O(1), not a scan of every route
        # (a shutdown's 20,000 removals over 10,000 routes ran for minutes, issue 13)
        self._dsts_of_spi: dict[int, set[str]] = {}
        self._events: list[Event] = []
        self._pending: dict[int, asyncio.Future[Reply]] = {}
        self._next_id = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._batching = False
        self._flush_soon = False  # a call_soon(_flush_scheduled) is on its way
        self._closed = False

    # -- processes -----------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop or asyncio.get_running_loop()
        for w in self.workers:
            self._spawn(w)

    def _spawn(self, w: _Worker) -> None:
        parent, child = link_pair()
        f = w.fds
        spec = WorkerSpec(w.index, self.n, child.fileno(), f.tun, f.udp, f.cisco_udp, f.esp,
                          f.keepalive, list(f.ctcp), dict(f.mesh), self.frag_policy,
                          self.outer_mtu, self.debug_severity, f.vnet_hdr,
                          udp_virtual=f.udp_virtual, moderation=self.moderation)
        try:
            w.proc = subprocess.Popen(
                [sys.executable, "-m", "vpnhub.net.worker", spec.to_json()],
                pass_fds=spec.fds(), preexec_fn=_pdeathsig, close_fds=True)
        finally:
            child.close()
        w.link = Link(parent)
        assert self._loop is not None
        self._loop.add_reader(parent.fileno(), self._on_link, w)

    def _on_link(self, w: _Worker) -> None:
        link = w.link
        if link is None:
            return
        try:
            messages = link.receive()
        except LinkClosed as e:
            self._died(w, self._why(w, e))
            return
        events = False
        for m in messages:
            if isinstance(m, Reply):
                self._replied(w, m)
            elif isinstance(m, WorkerError):
                self.log(3, m.text)
            else:
                self._events.append(m)  # type: ignore[arg-type]  # the Dataplane's events
                events = True
        if events and self.notify is not None:
            self.notify()

    def _replied(self, w: _Worker, reply: Reply) -> None:
        future = self._pending.pop(reply.id, None)
        if reply.figures is not None:
            w.figures = reply.figures
        if reply.seqs is not None:
            # kept as they came, read only by a restart: a walk of every SA per answer
            # was the largest share of the idle concentrator's CPU (issue 13)
            w.seqs, w.seqs_at = reply.seqs, self.clock()
        if future is not None and not future.done():
            future.set_result(reply)

    def _died(self, w: _Worker, why: str) -> None:
        if self._closed:
            return
        self._stop_worker(w)
        if w.last is not None:
            w.carried = _counts_only(merge_stats([p for p in (w.carried, w.last) if p]))
            w.last = None
        w.restarts += 1
        now = self.clock()
        w.deaths = [t for t in w.deaths if now - t < RESTART_WINDOW] + [now]
        excess = len(w.deaths) - RESTART_BURST
        if excess > 0:
            delay = min(RESTART_MAX_DELAY, float(2 ** excess))
            self.log(1, f"data-plane worker {w.index} ({why}) died {len(w.deaths)} times in"
                     f" {RESTART_WINDOW:g} s: next start in {delay:g} s; its {len(w.sas)}"
                     " SAs pass no traffic meanwhile")
            assert self._loop is not None
            self._loop.call_later(delay, self._restart, w)
            return
        self.log(2, f"data-plane worker {w.index} ({why}): restarted with its"
                 f" {len(w.sas)} SAs (restart {w.restarts})")
        self._restart(w)

    def _restart(self, w: _Worker) -> None:
        if self._closed or w.link is not None:
            return
        self._spawn(w)
        self._reinstall(w)

    @staticmethod
    def _why(w: _Worker, e: LinkClosed) -> str:
        """Why its link closed: how its process ended, if it did."""
        code = w.proc.poll() if w.proc is not None else None
        if code is None and w.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = w.proc.wait(0.2)
        if code is not None and code < 0:
            return f"killed by signal {-code}"
        if code is not None:
            return f"exited with status {code}"
        return f"its link closed: {e.__cause__!r}"

    def _stop_worker(self, w: _Worker) -> None:
        # what waited for it is in its SAs, keepalives and routes, which _reinstall
        # sends with sequence numbers resumed (RFC 4303 3.3.3); the rest (hand-overs,
        # cTCP messages) is lost with it, as what its link held
        w.pending, w.pending_installs = [], False
        if w.link is not None:
            assert self._loop is not None
            self._loop.remove_reader(w.link.fileno())
            w.link.close()
            w.link = None
        if w.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                w.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                w.proc.wait(2.0)
        for rid, fut in list(self._pending.items()):
            if getattr(fut, "worker", None) == w.index:
                del self._pending[rid]
                if not fut.done():
                    fut.set_exception(ConnectionError(f"worker {w.index} restarted"))

    def _reinstall(self, w: _Worker) -> None:
        """Its SAs (sequence numbers past the sampled ones), keepalives, foreign routes."""
        now = self.clock()
        self._apply_seqs(w)
        commands: list[object] = []
        for sa in w.sas.values():
            for cmd in sa.commands:
                params = cmd.sa
                if not isinstance(params, SaParams):
                    continue  # an in-process EspSA cannot cross (tests only)
                if isinstance(cmd, AddOutbound):
                    params = replace(params, seq=resumed_seq(sa.seq, now - sa.sampled_at))
                else:
                    params = replace(params, replay_top=sa.seq)
                commands.append(replace(cmd, sa=params))
        commands += list(w.keepalives.values())
        commands += [SetForeignRoute(dst, k) for dst, (k, _spi) in self._routes.items()
                     if k != w.index]
        if commands and w.link is not None:
            w.pending.extend(commands)  # nothing waits before them (_stop_worker)
            self._flush(w)

    @staticmethod
    def _apply_seqs(w: _Worker) -> None:
        """The last answer's sequence numbers onto its SAs (an outbound SPI's wins); an
        SA installed after that answer keeps the one it was installed with."""
        if w.seqs is None:
            return
        outs, ins = w.seqs
        for spi, sa in w.sas.items():
            seq = outs.get(spi, ins.get(spi))
            if seq is not None:
                sa.seq, sa.sampled_at = seq, w.seqs_at
        w.seqs = None

    def close(self) -> None:
        """Stop every worker (SIGKILL: they keep no state worth a goodbye)."""
        self._closed = True
        for w in self.workers:
            self._stop_worker(w)

    # -- sending ---------------------------------------------------------------

    def _send(self, w: _Worker, obj: object) -> None:
        """Queue ``obj`` for ``w``, after what waits for it (module doc): sent when the
        open ``batch()`` ends, else by a ``call_soon`` callback."""
        if w.link is None:
            return  # waiting to be started again: _reinstall brings its state
        w.pending.append(obj)
        if isinstance(obj, AddInbound):
            w.pending_installs = True
        if not self._batching and not self._flush_soon:
            assert self._loop is not None
            self._flush_soon = True
            self._loop.call_soon(self._flush_scheduled)

    def _flush_scheduled(self) -> None:
        self._flush_soon = False
        self._flush_all()

    def _flush_all(self) -> None:
        for w in self.workers:
            self._flush(w)

    def _flush(self, w: _Worker) -> None:
        """What waits for ``w``, as one message (a lone command as itself). A full link
        (the worker stopped reading) or a closed one restarts it, with its SAs."""
        queued = w.pending
        if not queued:
            return
        w.pending, w.pending_installs = [], False
        link = w.link
        if link is None:
            return
        try:
            link.send(queued[0] if len(queued) == 1 else Batch(tuple(queued)))
        except LinkFull:
            self.hung_workers += 1
            self._died(w, "hung: its control link is full")
        except LinkClosed as e:
            self._died(w, self._why(w, e))

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Commands given inside go at its end (with what waited before), one message
        per worker; nested batches join the outer one."""
        if self._batching:
            yield
            return
        self._batching = True
        try:
            yield
        finally:
            self._batching = False
            self._flush_all()

    def flush_batch(self) -> None:
        """Send a worker what waits for it now if that includes an inbound SA, and go
        on batching: an IKE message about to leave may make the peer send ESP on it,
        and the link then carries it first (RFC 2409 5.5). Other commands wait for the
        batch's end (a shutdown's 20,000 RemoveSA go as one message per worker)."""
        for w in self.workers:
            if w.pending_installs:
                self._flush(w)

    def holds_install(self) -> bool:
        """Whether an inbound SA waits to be sent (``flush_batch`` would send it)."""
        return any(w.pending_installs for w in self.workers)

    # -- assignment ------------------------------------------------------------

    def worker_of(self, peer: Address, transport: str = "") -> int:
        """The peer's worker (assigned now if new: worker 0 for raw ESP and cTCP, else
        the one with the fewest peers)."""
        peer = (peer[0], peer[1])
        k = self._owner.get(peer)
        if k is None:
            if transport in self.pinned:
                k = 0
            else:
                k = min(range(self.n), key=lambda i: (self._assigned[i], i))
            self._owner[peer] = k
            self._assigned[k] += 1
        return k

    def _forget(self, peer: Address) -> None:
        k = self._owner.pop(peer, None)
        if k is not None:
            self._assigned[k] -= 1

    def spi_allocator(self, peer: Address, transport: str) -> int:
        """``IkeConfig.spi_allocator``: a new inbound SPI the kernel steers to the peer's
        worker."""
        k = self.worker_of(peer, transport)
        spi = spi_for(k, self.n)
        self._allocated[spi] = (k, (peer[0], peer[1]))
        if len(self._allocated) > MAX_DRAWN:  # Quick Modes that never finished
            del self._allocated[next(iter(self._allocated))]
        return spi

    def _owner_of_inbound(self, spi: int, peer: Address, transport: str) -> int:
        """The worker of a new inbound SA: the one its SPI was drawn for. Its ESP peer
        may not be the IKE peer it was drawn for (Cisco IPsec over UDP: ESP comes from
        the client's UDP 10000 mapping, IKE from its port 500's): the ESP peer goes
        to that worker, the IKE peer is forgotten if it holds no SA."""
        drawn = self._allocated.pop(spi, None)
        if drawn is None:
            return self.worker_of(peer, transport)
        k, ike_peer = drawn
        if self._owner.get(peer) != k:
            self._forget(peer)
            self._owner[peer] = k
            self._assigned[k] += 1
        if ike_peer != peer and not any(ike_peer in w.peers for w in self.workers):
            self._forget(ike_peer)
        return k

    def _record(self, w: _Worker, cmd: AddInbound | AddOutbound, peer: Address) -> None:
        spi = cmd.sa.spi
        sa = w.sas.get(spi)
        if sa is None:
            sa = w.sas[spi] = _Sa([], peer, sampled_at=self.clock())
            w.peers[peer] = w.peers.get(peer, 0) + 1
        sa.commands.append(cmd)
        self._spi_owner[spi] = w.index

    # -- DataplaneHandle ---------------------------------------------------------

    def add_inbound(self, sa: SaParams | EspSA, peer: Address, *, udp_encap: bool = True,
                    allowed_src: str | None = None, transport: str = "") -> None:
        cmd = AddInbound(sa, peer, udp_encap=udp_encap, allowed_src=allowed_src,
                         transport=transport)
        peer = (peer[0], peer[1])
        w = self.workers[self._owner_of_inbound(
            sa.spi, peer, transport or ("natt" if udp_encap else "esp"))]
        self._record(w, cmd, peer)
        self._send(w, cmd)

    def add_outbound(self, sa: SaParams | EspSA, peer: Address, *, udp_encap: bool = True,
                     dst: str | None = None, transport: str = "") -> None:
        cmd = AddOutbound(sa, peer, udp_encap=udp_encap, dst=dst, transport=transport)
        w = self.workers[self.worker_of(peer, transport or ("natt" if udp_encap else "esp"))]
        self._record(w, cmd, (peer[0], peer[1]))
        self._send(w, cmd)
        if dst is not None:
            before = self._routes.get(dst)
            if before is not None and before[1] != sa.spi:
                self._dsts_of_spi.get(before[1], set()).discard(dst)
            self._routes[dst] = (w.index, sa.spi)
            self._dsts_of_spi.setdefault(sa.spi, set()).add(dst)
            for other in self.workers:
                if other is not w:
                    self._send(other, SetForeignRoute(dst, w.index))

    def remove_sa(self, spi: int) -> None:
        k = self._spi_owner.pop(spi, None)
        if k is None:
            return
        w = self.workers[k]
        self._send(w, RemoveSA(spi))
        sa = w.sas.pop(spi, None)
        if sa is not None:
            left = w.peers.get(sa.peer, 1) - 1
            if left > 0:
                w.peers[sa.peer] = left
            else:  # its last SA: the peer may land elsewhere next time
                w.peers.pop(sa.peer, None)
                if not any(key[0] == sa.peer for key in w.keepalives):
                    self._forget(sa.peer)
        for dst in self._dsts_of_spi.pop(spi, ()):
            if self._routes.get(dst) == (k, spi):
                del self._routes[dst]
                for other in self.workers:
                    if other is not w:
                        self._send(other, DropForeignRoute(dst))

    def update_peer(self, old: Address, new: Address) -> None:
        old, new = (old[0], old[1]), (new[0], new[1])
        k = self._owner.pop(old, None)
        targets = self.workers if k is None else [self.workers[k]]
        if k is not None:
            self._owner[new] = k
            w = self.workers[k]
            if old in w.peers:
                w.peers[new] = w.peers.pop(old)
            for sa in w.sas.values():
                if sa.peer == old:
                    sa.peer = new
                    sa.commands = [replace(c, peer=new) for c in sa.commands]
            for key in [key for key in w.keepalives if key[0] == old]:
                ka = w.keepalives.pop(key)
                w.keepalives[(new, key[1])] = replace(ka, peer=new)
        for w in targets:
            self._send(w, UpdatePeer(old, new))

    def set_keepalive(self, peer: Address, interval: float | None, transport: str = "") -> None:
        w = self.workers[self.worker_of(peer, transport)]
        cmd = SetKeepalive(peer, interval, transport)
        key = ((peer[0], peer[1]), transport)
        if interval is None:
            w.keepalives.pop(key, None)
        else:
            w.keepalives[key] = cmd
        self._send(w, cmd)

    def send_ike(self, message: bytes, addr: Address,
                 transport: Transport = Transport.NATT) -> None:
        k = 0 if transport is Transport.CTCP else self._owner.get((addr[0], addr[1]), 0)
        self._send(self.workers[k], SendIke(message, addr, transport))

    def hand_over(self, datagrams: list[bytes], addr: Address) -> None:
        """ESP behind IKE in a GRO train the IKE socket read (the kernel steered the
        whole train by its first segment): each datagram to the worker its SPI is
        steered to when it arrives alone (SPI mod N, ikesplit); shorter than an SPI
        (a keepalive): the peer's worker, which counts it on the peer, else worker 0.
        Also all UDP 4500 of the cluster's virtual address that is not IKE (issue 17:
        the control plane reads that socket, concentrator/virtual.py)."""
        n = len(self.workers)
        addr = (addr[0], addr[1])
        by_worker: dict[int, list[bytes]] = {}
        for d in datagrams:
            k = worker_of_spi(int.from_bytes(d[:4], "big"), n) if len(d) >= 4 \
                else self._owner.get(addr, 0)
            by_worker.setdefault(k, []).append(d)
        for k, ds in by_worker.items():
            self._send(self.workers[k], HandOver(ds, addr))

    def ctcp_close(self, addr: Address) -> None:
        self._send(self.workers[0], CtcpClose(addr))

    def set_debug(self, severity: int) -> None:
        self.debug_severity = severity
        for w in self.workers:
            self._send(w, SetDebug(severity))

    def events(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    # -- questions -------------------------------------------------------------

    async def _ask(self, w: _Worker, command: Command) -> Reply:
        assert self._loop is not None
        self._next_id += 1
        rid = self._next_id
        if w.link is None:  # waiting to be started again (_died)
            raise ConnectionError(f"worker {w.index} is not running")
        future: asyncio.Future[Reply] = self._loop.create_future()
        future.worker = w.index  # type: ignore[attr-defined]  # _stop_worker fails it
        self._pending[rid] = future
        self._send(w, Request(rid, command))
        self._flush(w)  # asked now, after what waited for it (the answer covers it)
        try:
            reply = await asyncio.wait_for(future, self.ask_timeout)
        except TimeoutError:  # it reads nothing (stopped, looping): hung as a full link
            if self.workers[w.index] is w and w.link is not None:
                self.hung_workers += 1
                self._died(w, f"hung: no answer in {self.ask_timeout:g} s")
            raise
        finally:
            self._pending.pop(rid, None)
        if reply.error is not None:
            raise RuntimeError(f"worker {w.index}: {reply.error}")
        return reply

    async def _ask_again(self, w: _Worker, command: Command) -> Reply:
        """As ``_ask``; a worker that died meanwhile is asked again once restarted."""
        try:
            return await self._ask(w, command)
        except ConnectionError:
            return await self._ask(w, command)

    async def _ask_all(self, command: Command) -> list[object]:
        replies = await asyncio.gather(*(self._ask_again(w, command) for w in self.workers))
        return [r.result for r in replies]

    def _with_past(self, w: _Worker, now: DataplaneStats) -> DataplaneStats:
        """A worker's answer plus what its previous lives counted."""
        w.last = _counts_only(now)
        return now if w.carried is None else merge_stats([now, w.carried])

    async def stats(self) -> DataplaneStats:
        results = await self._ask_all(GetStats())
        snaps = [self._with_past(w, r) for w, r in zip(self.workers, results, strict=True)
                 if isinstance(r, DataplaneStats)]
        return merge_stats(snaps, self.worker_stats(snaps))

    async def counters(self, sas: bool = True) -> SaCounters:
        results = await self._ask_all(GetCounters(sas))
        parts = [replace(r, totals=self._with_past(w, r.totals))
                 for w, r in zip(self.workers, results, strict=True)
                 if isinstance(r, SaCounters)]
        merged = merge_counters(parts)
        return replace(merged, totals=replace(
            merged.totals, workers=self.worker_stats([p.totals for p in parts])))

    def worker_stats(self, snaps: list[DataplaneStats]) -> tuple[WorkerStats, ...]:
        out = []
        for w, s in zip(self.workers, snaps, strict=False):
            f = w.figures
            out.append(WorkerStats(
                index=w.index, pid=w.pid, restarts=w.restarts,
                packets=s.tun_rx + s.udp_rx + s.esp_rx + s.cisco_udp_rx,
                cpu_seconds=cpu_seconds(w.pid) if w.pid else 0.0,
                sas=len(w.sas), peers=len(w.peers),
                handed_over=f.get("handed_over", 0), handed_in=f.get("handed_in", 0),
                handover_dropped=f.get("handover_dropped", 0)))
        return tuple(out)


def _counts_only(s: DataplaneStats) -> DataplaneStats:
    """The running counters of a snapshot, without its lists (SAs, peers, connections)."""
    return replace(s, sas=(), peers=(), workers=(),
                   ctcp=replace(s.ctcp, listening=(), connections=()))
