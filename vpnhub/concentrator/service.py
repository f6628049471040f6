"""`vpnhub serve`: the shell around the concentrator core.

The decisions (sessions, XAUTH, pools, Mode Config, diagnosis) are the core's
(`vpnhub.concentrator.core`); this module owns what touches the system: the
UDP 500 socket, the data plane (TUN, UDP 4500, raw ESP, Cisco UDP, cTCP),
the routes, the admin socket, the manager, the signals and the timers.
One packet's way: UDP 500 or UDP 4500 (asyncio readers; on 4500 the kernel
gives IKE to our socket and ESP to the data plane's, net/ikesplit.py; where it
cannot, the data plane thread demuxes RFC 3948 and hands IKE over) ->
`ConcentratorCore.receive` ->
the driver -> engine events -> the core reacts -> datagrams back out through
`_send`, by their transport. ESP never touches asyncio: the data plane's epoll loop owns
TUN and ESP on 4500. The IKE loop is the one `AsyncIkeDriver` over the core's
endpoint: exact timers (one `call_at` re-armed at the next deadline).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from vpnhub import __version__
from vpnhub.admin import start_server
from vpnhub.auth import build_authenticator
from vpnhub.auth.radius import NasIdentity
from vpnhub.auth.radiusclient import RadiusClient
from vpnhub.cluster.balance import Balancer
from vpnhub.concentrator.accounting import RadiusAccounting
from vpnhub.concentrator.adminsessions import sessions_page
from vpnhub.concentrator.core import ConcentratorCore
from vpnhub.concentrator.dae import DaeServer
from vpnhub.concentrator.memory import HeapFreezer, limit_arenas
from vpnhub.concentrator.virtual import VirtualListener
from vpnhub.config import Config
from vpnhub.eventlog import EventLog
from vpnhub.ike.dhpool import FILL_STEP
from vpnhub.ike.driver import DriverFault
from vpnhub.ike.sa import Datagram, IkeSA
from vpnhub.ike.transport import Transport
from vpnhub.manager import Manager  # manager (issue 6)
from vpnhub.net.accel import describe as describe_accelerators
from vpnhub.net.asyncdriver import AsyncIkeDriver
from vpnhub.net.dataplane import (
    ControlInbox,
    Dataplane,
    open_cisco_udp_socket,
    open_ctcp_listener,
    open_esp_socket,
    open_udp_socket,
)
from vpnhub.net.dhworker import DhWorker
from vpnhub.net.handover import mesh
from vpnhub.net.ikesplit import (
    IKE_BUFFER_BYTES,
    IkeReader,
    IkeSocket,
    NattGroup,
    SplitDataplane,
    open_cisco_udp_group,
    open_keepalive_socket,
    open_natt_group,
    open_natt_sockets,
)
from vpnhub.net.loopwatch import GcWatch, LoopWatch, StallWatch
from vpnhub.net.sendqueue import SendQueue
from vpnhub.net.tun import TunDevice, ip
from vpnhub.net.udpgso import Datagram as Received
from vpnhub.net.udpgso import batch_sender
from vpnhub.net.workers import WorkerFds, WorkerPool
from vpnhub.pki.signer import build_signer

if TYPE_CHECKING:  # [cluster] only: psycopg is imported when a member starts, not before
    import ipaddress

    from vpnhub.cluster.member import ClusterMember

# The duties that are not IKE timers: the state record, the event log's flood
# summaries, the endpoint's notices, memory back after a flood.
TICK = 0.25
# Data plane counters (and ESP liveness for DPD, whose interval is 30 s); `sessions`
# asks at once. The snapshot costs O(SAs), so not too often with 10,000 sessions.
STATS_EVERY = 10.0
# Without gmpy2 (no GIL released: the DH worker thread cannot fill it beside the loop,
# net.dhworker) the DH pool (ike/dhpool.py) is filled on the loop, only after this long
# without an IKE message, FILL_STEP pairs (one, ~0.4 ms for group 14) per turn: a
# login that arrives meanwhile waits behind one exponentiation at most.
DH_QUIET = 0.05
# An IKE message the DH worker holds back until its SA's g^xy is done (`_receive`):
# the message, where it came from, and how
Parked = tuple[bytes, tuple[str, int], Transport]
# At shutdown, how long the DELETEs that met a full send buffer may take to go out.
SHUTDOWN_SEND_WAIT = 2.0
# At shutdown, how long the RADIUS accounting Stops may take (issue 14).
SHUTDOWN_ACCOUNTING_WAIT = 3.0


class Concentrator:
    """`balancer` (issue 17): who says which member serves a new client on the
    cluster's virtual address ([cluster]; the cluster member's directory); None:
    every client is served where it lands."""

    def __init__(self, config: Config, log: EventLog, *,
                 balancer: Balancer | None = None) -> None:
        self.config = config
        self.log = log
        self.public = str(config.concentrator.public_address)
        # the local users behind lock-out and slow-down (their check on a worker thread)
        self.auth = build_authenticator(config)
        self.core = ConcentratorCore(config, log, authenticator=self.auth, dataplane=None,
                                     clock=time.monotonic, wall=time.time, spawn=self._spawn,
                                     signer=build_signer(config.pki, time.time),
                                     balancer=balancer)
        self._tasks: set[asyncio.Task[None]] = set()  # XAUTH answers being awaited
        self._stop = asyncio.Event()
        self._routes: list[str] = []
        self.tun: TunDevice | None = None
        self.dataplane: Dataplane | None = None
        # [dataplane] workers > 1: the worker processes instead of `dataplane`
        self.pool: WorkerPool | None = None
        self._worker_socks: list[socket.socket | None] = []
        self.sock500: socket.socket | None = None
        self.reader500: IkeReader | None = None  # reads sock500 (`_read_udp500`)
        # IKE on UDP 4500 read here, not through the data plane (None: the kernel cannot)
        self.ike4500: IkeSocket | None = None
        # IKE out of UDP 500 and UDP 4500: queued while the socket's buffer is full
        self.out500: SendQueue | None = None
        self.out4500: SendQueue | None = None
        # During a reader's turn, once an inbound SA waits for the data plane: the IKE
        # sends (and after-sent actions) that wait for the turn's end (`_turn`)
        self._held: list[Callable[[], None]] | None = None
        # [cluster]: IKE on the virtual address (concentrator/virtual.py)
        self.virtual: VirtualListener | None = None
        self._last_stats = 0.0
        self._last_ike = 0.0  # when the last IKE message came in (the DH pool fills after)
        self._dh_filler: asyncio.Task[None] | None = None
        self._dh_pool_on_worker = False  # the DH worker thread keeps the pool full
        # phase 1's g^xy on another core (net.dhworker, ike.dhjob); it holds back the
        # messages of an SA whose g^xy it has not finished (`_receive`)
        self.dh_worker: DhWorker[Parked] = DhWorker()
        self.ike: AsyncIkeDriver | None = None  # the IKE driver loop: exact timers
        self.manager: Manager | None = None  # manager (issue 6): web console, API, metrics
        self.loop_watch: LoopWatch | None = None  # how late this loop runs (issue 13)
        self.stall_watch: StallWatch | None = None  # and what held it, when it stalls
        self.gc_watch = GcWatch()  # the garbage collector's share of it
        self.own_process = False  # serve(): the process ends with run(), GC may be tuned
        self.freezer = HeapFreezer()  # with own_process: the sessions out of collections
        self.accounting = self._radius_accounting()  # RADIUS (issue 14); None without
        if self.accounting is not None:
            self.core.renewal_hook = self.accounting.renewed
        self.dae: DaeServer | None = None  # RFC 5176 Disconnect / CoA server (issue 14)
        # issue 17: this concentrator as a [cluster] member (docs/CLUSTER.md); its
        # pools replace the core's, drawing from the blocks the database grants
        self.cluster: ClusterMember | None = self._cluster_member()

    def _cluster_member(self) -> ClusterMember | None:
        if self.config.cluster is None:
            return None
        from vpnhub.cluster.member import ClusterMember  # no psycopg without [cluster]

        member = ClusterMember(self.config.cluster, self.core.sessions,
                               max_sessions=self.config.limits.max_sessions, log=self.log)
        for g in self.config.groups:
            self.core.pools[g.name] = member.pool_for_group(g)
        member.on_block = self._cluster_block
        member.on_logout = lambda key, by: self.core.logout(key, by)
        member.on_disconnect = self.core.disconnect
        if self.core.balancer is None:  # one handed in (a test's) comes first
            self.core.balancer = member  # the master's redirect, from the member's snapshot
        self.core.cluster = member  # the manager's banners and /metrics
        return member

    async def _start_cluster(self) -> bool:
        """Join the cluster database before serving (its blocks, its routes); False
        if this vpnhub cannot use it (a newer schema). Without the database the
        member serves what it can and keeps trying (CLUSTER.md, the outage)."""
        member = self.cluster
        if member is None:
            return True
        from vpnhub.cluster.migrate import SchemaError

        try:
            await asyncio.to_thread(member.start, asyncio.get_running_loop())
        except SchemaError as e:
            self.log.add("CLUSTER", 1, f"cannot start: {e}")
            await asyncio.to_thread(member.stop, goodbye=False)
            return False
        return True

    def _cluster_block(self, group: str, block: ipaddress.IPv4Network, added: bool) -> None:
        """An address block granted to this member (route it into the tunnel) or lost;
        before the network is up, _setup_network routes the blocks it finds."""
        if self.tun is None:
            return
        route = str(block)
        try:
            if added:
                self.tun.add_route(route)
                self._routes.append(route)
            elif route in self._routes:
                self._routes.remove(route)
                self.tun.del_route(route)
        except Exception as e:
            self.log.add("CLUSTER", 2, f"route to {route} (group {group}) not"
                         f" {'added' if added else 'removed'}: {e}")

    def _radius_accounting(self) -> RadiusAccounting | None:
        r = self.config.radius
        radius_groups = [g for g in self.config.groups if g.xauth == "radius"]
        if not (r.accounting and radius_groups):
            return None
        # a group's own [[group.radius_server]]s account its sessions (issue 14)
        realms = {g.name: RadiusClient(g.radius_servers, "acct")
                  for g in radius_groups if g.radius_servers}
        return RadiusAccounting(
            client=RadiusClient(r.servers, "acct"), realms=realms,
            nas=NasIdentity(r, self.config.concentrator.public_address),
            interim=r.interim_interval, grants=self.core.grants, store=self.core.sessions,
            log=self.log, clock=time.monotonic, wall=time.time, spawn=self._spawn)

    async def _start_dae(self) -> None:
        """RFC 5176 on `[radius] dae_port` of the public address, for the dae_clients."""
        r = self.config.radius
        if not r.dae_clients:
            return
        dae = DaeServer(self.core, r.dae_clients,
                        NasIdentity(r, self.config.concentrator.public_address),
                        before_disconnect=self._refresh_stats, accounting=self.accounting)
        try:
            await dae.start(self.public, r.dae_port)
        except OSError as e:
            self.log.add("AUTH", 2, f"RADIUS Disconnect/CoA port {r.dae_port} unavailable: {e}")
            return
        self.dae = dae

    # ----------------------------------------------------------- lifecycle
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self.loop_watch = LoopWatch(loop)
        self.loop_watch.start()
        self.core.loop_watch = self.loop_watch
        self.stall_watch = StallWatch(self.loop_watch, threading.get_ident())
        self.stall_watch.start()
        self.gc_watch.start()
        # manager (issue 6): opens the event log store first; the Cluster page (issue 17)
        self.manager = Manager(self.core, cluster=self.cluster)
        self.core.event_hook = self.manager.on_ike_event
        if not await self._start_cluster():
            return 1
        self._setup_network()
        core = self.core
        # the DH pool's pairs too, beside the loop (net.dhworker); else the loop fills it
        self._dh_pool_on_worker = self.dh_worker.fill_pool(core.endpoint.dh_pool)
        self.dh_worker.on_ready(lambda: loop.call_soon_threadsafe(self._release_parked))
        self.dh_worker.start()
        core.endpoint.dh_offload = self.dh_worker.submit
        self.ike = AsyncIkeDriver(core.endpoint, core.on_event, self._send_for,
                                  on_error=core.on_fault, on_notice=core.on_notice,
                                  when_sent=self._when_sent)
        core.bind(self.ike)
        # once the ports are ours (a second instance must not overwrite the record of the
        # one running), before the loop reads a first packet (holds before any login)
        self.core.restore_state()
        self.core.state_in_background()  # ~0.1 s per write at 10,000 sessions: not here
        assert self.sock500 is not None
        loop.add_reader(self.sock500.fileno(), self._on_udp500)
        if self.ike4500 is not None:
            loop.add_reader(self.ike4500.fileno(), self._read_ike4500)
        if self.virtual is not None:
            self.virtual.start(loop)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        admin = await self._start_admin()
        await self._start_dae()
        await self.manager.start()  # manager (issue 6): [admin] listen
        ticker = asyncio.create_task(self._ticker())
        if self.own_process:  # the set-up's objects out of every collection from now on
            self.freezer.set_up(len(core.sessions))
        c = self.config.concentrator
        self.log.add("SESSION", 3, f"vpnhub {__version__} concentrator listening on"
                     f" {self.public} UDP {c.ike_port}/{c.natt_port}"
                     + (f" and on the virtual address {self.virtual.address}"
                        if self.virtual is not None else "") + "; NAT-T"
                     f" {'enabled' if self.core.natt_enabled else 'DISABLED'}; tunnel interface"
                     f" {c.tunnel_interface}")
        try:
            await self._stop.wait()
        finally:
            if self.own_process:
                # Exiting: no cyclic collection any more. With 10,000 sessions a full
                # one walks ~1 million objects (0.2-0.6 s), and ending every session
                # makes enough garbage to start several; the interpreter's collection
                # at exit skips what gc.freeze() sets aside below.
                gc.disable()
            ticker.cancel()
            if self._dh_filler is not None:
                self._dh_filler.cancel()
            core.endpoint.dh_offload = None  # what is still pending is computed inline
            self.loop_watch.stop()
            self.stall_watch.stop()
            self.gc_watch.stop()
            self.dh_worker.stop()
            self.dh_worker.drop_parked()  # their SAs are deleted below: nobody to answer
            for q in self._send_queues():
                q.lift_bound()  # every client's DELETE waits for the socket
            steps = ShutdownTimes(time.monotonic)
            peers = len(self.core.endpoint)
            if self.accounting is not None:  # the Stops carry the last counters
                await self._refresh_stats()
            self.core.shutdown(time.monotonic())
            steps.mark("delete")
            await self._deletes_sent()
            steps.mark("send")
            await self._accounting_sent()
            if self.cluster is not None:  # our directory rows and leases go, marked gone
                await asyncio.to_thread(self.cluster.stop)
                steps.mark("cluster")
            self.ike.close()
            if admin is not None:
                admin.close()
                with contextlib.suppress(Exception):
                    self.config.admin.socket.unlink()
            loop.remove_reader(self.sock500.fileno())
            if self.ike4500 is not None:
                loop.remove_reader(self.ike4500.fileno())
            self._teardown_network()
            steps.mark("network")
            self.auth.close()
            # where a slow SIGTERM spent its time (issue 13: < 5 s with 10,000 sessions)
            self.log.add("SESSION", 4, f"shut down: {peers} IKE SAs deleted, {steps}")
            await self.manager.stop()  # manager (issue 6): last, so the shutdown is logged
            if self.own_process:
                gc.freeze()
        return 0

    async def _accounting_sent(self) -> None:
        """The accounting Stops of the shutdown go out (bounded), then RADIUS closes."""
        if self.dae is not None:
            self.dae.close()
        if self.accounting is None:
            return
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=SHUTDOWN_ACCOUNTING_WAIT)
        self.accounting.close()

    async def _deletes_sent(self) -> None:
        """The shutdown's DELETEs that met a full send buffer go out before the sockets
        close (close() would drop them); bounded, so that SIGTERM still ends soon."""
        for q in self._send_queues():
            if not await q.drained(SHUTDOWN_SEND_WAIT):
                self.log.add("IKE", 3, f"shutting down: {len(q)} IKE messages still queued"
                             f" after {SHUTDOWN_SEND_WAIT:g} s, not sent")

    def _setup_network(self) -> None:
        c = self.config.concentrator
        # Forwarding between the tunnel and the private LAN (per network namespace).
        with contextlib.suppress(OSError):
            Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
        workers, group = self._natt_group()
        self.tun = TunDevice(c.tunnel_interface, queues=workers,
                             offload=self.config.dataplane.tun_offload)
        if self.config.dataplane.tun_offload:
            t = self.tun
            self.log.add("IPSEC", 5 if t.offloads else 3,
                         f"TUN offloads {t.offloads:#x}" + (f" ({t.offload_refused})"
                                                            if t.offload_refused else ""))
        accelerated, text = describe_accelerators()
        self.log.add("IPSEC", 5 if accelerated else 3, text)
        # 1500: the fragmentation policy (not the TUN's MTU) decides what happens to
        # packets that no longer fit once encapsulated.
        self.tun.configure(mtu=1500)
        for g in self.config.groups:
            # a cluster member routes only its own blocks: the private network sends
            # each block to the member it is granted to (docs/CLUSTER.md)
            routed = self.cluster.pools[g.name].blocks if self.cluster is not None \
                else [g.address_pool]
            for net in routed:
                self.tun.add_route(str(net))
                self._routes.append(str(net))
        for site in self.config.lan_to_lan:
            for net in site.remote_networks:
                self.tun.add_route(str(net))
                self._routes.append(str(net))
        self.sock500 = open_ike500(self.public, c.ike_port)
        self._open_virtual()
        loop = asyncio.get_running_loop()
        if group is not None:  # [dataplane] workers > 1: worker processes
            self._start_workers(group, loop)
            self._open_send_queues(loop)
            return
        def wake() -> None:  # called from the data plane thread
            loop.call_soon_threadsafe(self._drain_inbox)

        inbox = ControlInbox(maxlen=4096, notify=wake)
        udp, ike = open_natt_sockets(self.public, c.natt_port)
        keepalives: socket.socket | None = None
        if ike is not None:
            self.ike4500 = IkeSocket(ike, self._on_ike4500)
            keepalives = open_keepalive_socket(udp)
        else:
            self.log.add("IKE", 5, f"UDP {c.natt_port}: the kernel cannot split IKE from ESP"
                         " (SO_ATTACH_REUSEPORT_CBPF); IKE goes through the data plane")
        esp = self._open_raw_esp()
        core = self.core
        cisco = open_cisco_udp_socket(self.public, core.udp_port) if core.udp_port else None
        listeners = [open_ctcp_listener(self.public, port) for port in sorted(core.ctcp_ports)]
        v = self.virtual
        self.dataplane = Dataplane(self.tun, udp=udp, esp=esp, inbox=inbox, cisco_udp=cisco,
                                   ctcp_listeners=listeners, frag_policy=c.fragmentation,
                                   keepalive_sock=keepalives,
                                   udp_virtual=v.ike4500.sock if v is not None else None,
                                   moderation=self.config.dataplane.moderation_us * 1e-6)
        self.dataplane.debug_severity = max(self.log.levels("IPSECDBG"))  # 0 lines if unkept
        self.dataplane.start()
        if v is not None:  # ESP on the virtual address (issue 17, concentrator/virtual.py)
            v.hand_esp_to(self.dataplane.hand_over)
        # with the split, the IKE socket's counts join the data plane's (ikesplit.py)
        self.core.dataplane = self.dataplane if self.ike4500 is None else \
            SplitDataplane(self.dataplane, self.ike4500)
        self._open_send_queues(loop)

    def _open_virtual(self) -> None:
        """[cluster]: IKE sockets on the virtual address too (issue 17), bound whether
        or not this member holds it now (IP_FREEBIND; the kernel delivers to them only
        while VRRP has put the address here)."""
        cl = self.config.cluster
        if cl is None:
            return
        c = self.config.concentrator
        core = self.core

        def deliver(message: bytes, addr: tuple[str, int], transport: Transport) -> None:
            self._last_ike = time.monotonic()
            core.receive(message, addr, transport, virtual=True)

        self.virtual = VirtualListener(str(cl.virtual_address), c.ike_port, c.natt_port,
                                       deliver, self._ike_send_drops,
                                       on_error=self._ike_send_failed)

    def _send_queues(self) -> list[SendQueue]:
        qs = [q for q in (self.out500, self.out4500) if q is not None]
        return qs + (self.virtual.queues() if self.virtual is not None else [])

    def _open_raw_esp(self) -> socket.socket | None:
        """The raw ESP socket (IP protocol 50, clients not behind NAT), or None, logged."""
        try:
            return open_esp_socket(self.public)
        except OSError as e:
            self.log.add("IPSEC", 2, f"no raw ESP socket ({e}): clients not behind NAT"
                         " cannot pass data")
            return None

    def _natt_group(self) -> tuple[int, NattGroup | None]:
        """``[dataplane] workers`` and, when more than one, their UDP 4500 sockets (the
        kernel steers ESP by SPI, net/ikesplit.py); one when it cannot."""
        c = self.config.concentrator
        n = self.config.dataplane.worker_count()
        if n == 1:
            return 1, None
        group = open_natt_group(self.public, c.natt_port, n)
        if group.ike is None or len(group.esp) != n:
            group.close()
            self.log.add("IPSEC", 2, f"[dataplane] workers = {n}: the kernel cannot steer"
                         " ESP to workers (SO_ATTACH_REUSEPORT_CBPF); running one data plane")
            return 1, None
        return n, group

    def _start_workers(self, group: NattGroup, loop: asyncio.AbstractEventLoop) -> None:
        """N worker processes (net/workers.py) on the TUN's queues and the group's
        sockets; worker 0 also gets raw ESP, cTCP and the NAT keepalives."""
        c = self.config.concentrator
        core = self.core
        assert self.tun is not None and group.ike is not None
        n = len(group.esp)
        self.ike4500 = IkeSocket(group.ike, self._on_ike4500)
        esp = self._open_raw_esp()
        cisco = open_cisco_udp_group(self.public, core.udp_port, n) if core.udp_port else []
        listeners = [open_ctcp_listener(self.public, port) for port in sorted(core.ctcp_ports)]
        meshes = mesh(n)
        v = self.virtual  # every worker sends its "natt-virtual" ESP from it (issue 17)
        fds = [WorkerFds(
            tun=self.tun.queues[k].fileno(), vnet_hdr=self.tun.vnet_hdr,
            udp=group.esp[k].fileno(),
            cisco_udp=cisco[k].fileno() if k < len(cisco) else None,
            esp=esp.fileno() if k == 0 and esp is not None else None,
            keepalive=group.keepalive.fileno() if k == 0 and group.keepalive else None,
            ctcp=[sock.fileno() for sock in listeners] if k == 0 else [],
            mesh={j: sock.fileno() for j, sock in meshes[k].items()},
            udp_virtual=v.ike4500.fileno() if v is not None else None) for k in range(n)]
        # kept open here for the life of the service: a restarted worker gets them again
        self._worker_socks = [*group.esp, group.keepalive, *cisco, esp, *listeners,
                              *(sock for m in meshes for sock in m.values())]
        pinned = ("esp", "ctcp") if len(cisco) in (0, n) else ("esp", "ctcp", "cisco-udp")
        pool = WorkerPool(fds, notify=lambda: loop.call_soon(self._drain_inbox),
                          log=lambda sev, text: self.log.add("IPSEC", sev, text),
                          frag_policy=c.fragmentation, pinned=pinned,
                          moderation=self.config.dataplane.moderation_us * 1e-6)
        pool.debug_severity = max(self.log.levels("IPSECDBG"))
        pool.start(loop)
        self.pool = pool
        if v is not None:  # its ESP by SPI to the owning worker (concentrator/virtual.py)
            v.hand_esp_to(pool.hand_over)
        core.spi_allocator = pool.spi_allocator
        core.dataplane = SplitDataplane(pool, self.ike4500)
        self.log.add("IPSEC", 5, f"{n} data-plane workers, pids "
                     + ", ".join(str(w.pid) for w in pool.workers))

    def _open_send_queues(self, loop: asyncio.AbstractEventLoop) -> None:
        """Both IKE ports send a loop turn's messages together (one sendmmsg each,
        net/sendqueue.py): UDP 500 carries the first answer of each login, 4500 the
        rest, and on this machine each sendto cost the loop ~54 us (issue 13)."""
        c = self.config.concentrator
        if self.sock500 is not None:
            self.out500 = SendQueue(loop, self.sock500.fileno(), self.sock500.sendto,
                                    send_batch=batch_sender(self.sock500),
                                    on_error=self._ike_send_failed,
                                    on_drops=lambda n: self._ike_send_drops(c.ike_port, n))
        dp = self.dataplane
        if self.ike4500 is not None:
            self.out4500 = SendQueue(loop, self.ike4500.fileno(), self.ike4500.send,
                                     send_batch=self.ike4500.send_batch,
                                     on_error=self._ike_send_failed,
                                     on_drops=lambda n: self._ike_send_drops(c.natt_port, n))
        elif dp is not None and dp.udp is not None:
            # send_ike is a plain sendto on the data plane's 4500 socket: EAGAIN comes
            # back here; a second epoll (asyncio's) may watch the same socket
            self.out4500 = SendQueue(loop, dp.udp.fileno(), lambda m, a: dp.send_ike(m, a),
                                     send_batch=dp.send_ike_batch,
                                     on_error=self._ike_send_failed,
                                     on_drops=lambda n: self._ike_send_drops(c.natt_port, n))

    def _ike_send_failed(self, data: bytes, addr: tuple[str, int], error: Exception) -> None:
        """A message of a turn's flush the kernel refused (no route, too long): logged
        as the driver logs a send that raised ("cannot send to ..."), the others went."""
        self.log.add("IKE", 3, f"cannot send to {addr[0]}:{addr[1]}: {error}")

    def _ike_send_drops(self, port: int, total: int) -> None:
        self.log.add("IKE", 3, f"UDP {port} send buffer full: IKE messages dropped, the"
                     f" send queue is full ({total} so far; peers retransmit)")

    def _teardown_network(self) -> None:
        for q in (self.out500, self.out4500):
            if q is not None:
                q.close()
        if self.virtual is not None:
            self.virtual.close()
        if self.pool is not None:
            self.pool.close()
            for sock in self._worker_socks:
                if sock is not None:
                    sock.close()
        if self.dataplane is not None:
            self.dataplane.close()
            for s in (self.dataplane.udp, self.dataplane.esp, self.dataplane.cisco_udp,
                      self.dataplane.keepalive_sock,
                      *self.dataplane.ctcp_listeners):
                if s is not None:
                    s.close()
        if self.tun is not None:
            for r in self._routes:
                with contextlib.suppress(Exception):
                    self.tun.del_route(r)
            self.tun.close()  # a non-persistent TUN disappears with its last fd
            with contextlib.suppress(Exception):
                ip("link", "del", self.config.concentrator.tunnel_interface)
        if self.sock500 is not None:
            self.sock500.close()
        if self.ike4500 is not None:
            self.ike4500.close()

    # ------------------------------------------------------------- receive
    def _on_udp500(self) -> None:
        with self._turn():
            self._read_udp500()

    def _read_udp500(self) -> None:
        """A turn of UDP 500 as of 4500 (``IkeReader``: the same budget, turn time and
        batched receive); built on first use, for the socket there then."""
        assert self.sock500 is not None
        reader = self.reader500
        if reader is None or reader.sock is not self.sock500:
            reader = self.reader500 = IkeReader(self.sock500, self._on_ike500)
        reader.read()

    def _on_ike500(self, batch: list[Received]) -> None:
        self._last_ike = time.monotonic()
        receive = self._receive  # (net.dhworker `park` first)
        for data, addr, _size in batch:
            receive(data, addr, Transport.IKE)

    def _read_ike4500(self) -> None:
        assert self.ike4500 is not None
        with self._turn():
            self.ike4500.read()

    @contextlib.contextmanager
    def _turn(self) -> Iterator[None]:
        """One turn of an IKE reader (up to its budget of messages) in one batch of
        data-plane commands: the tunnels whose Quick Mode completes in this turn reach
        the data plane as one hand-over (one eventfd write, or one message on each
        worker's link) instead of one per tunnel (issue 13: a burst of 128).

        A responder's inbound SA must reach the data plane before its Quick Mode
        message 2 leaves (the peer may send ESP on it as soon as it reads that, RFC
        2409 5.5). Rather than hand over the batch before each such message (one link
        message, one wake-up of a worker per tunnel: issue 13), the IKE messages from
        the first one that would need it on wait for the turn's end (`_send_for`):
        the batch is handed over, then they leave in their order."""
        dp = self.pool or self.dataplane
        if dp is None or self._held is not None:  # no data plane yet; or nested
            yield
            return
        self._held = []
        try:
            with dp.batch():
                yield
        finally:
            held, self._held = self._held, None
            for send in held:
                send()
            if self.own_process:  # a storm's sessions frozen in time (memory.HeapFreezer)
                self.freezer.tick(len(self.core.sessions))

    def _on_ike4500(self, message: bytes, addr: tuple[str, int]) -> None:
        self._last_ike = time.monotonic()
        self._receive(message, addr, Transport.NATT)

    def _receive(self, data: bytes, addr: tuple[str, int], transport: Transport) -> None:
        """An IKE message from UDP 500 or 4500 (marker removed) to the engine, unless
        its SA's g^xy is still with the DH worker (net.dhworker `park`): then it waits
        there, and the loop serves other peers instead of waiting for that thread or
        computing g^xy itself (issue 13)."""
        if not self.dh_worker.park(data, (data, addr, transport)):
            self.core.receive(data, addr, transport)

    def _release_parked(self) -> None:
        """The DH worker is done with jobs that messages wait for (its notify, from
        that thread through call_soon_threadsafe): those messages, each SA's in arrival
        order, in one reader's turn (`_turn`: one batch of data-plane commands)."""
        parked = self.dh_worker.take_parked()
        if not parked:
            return
        with self._turn():
            for data, addr, transport in parked:
                self.core.receive(data, addr, transport)

    def _drain_inbox(self) -> None:
        dp = self.pool or self.dataplane
        assert dp is not None
        self._last_ike = time.monotonic()
        for e in dp.events():
            self.core.on_dataplane(e)

    def _send_for(self, sa: IkeSA, d: Datagram) -> None:
        """An SA that began on the cluster's virtual address answers from it (a PAT
        maps only what comes back from the address the client sent to)."""
        if d.transport is not Transport.CTCP:
            # The data-plane commands the open batch holds go first (a Quick Mode's
            # inbound SA: the peer may use it as soon as this message reaches it; cTCP
            # messages are data-plane commands themselves and keep their order). In a
            # reader's turn the message waits for the turn's end (`_turn`), and every
            # one after it, in order; else the batch is handed over now.
            dp = self.pool or self.dataplane
            held = self._held
            if held is not None and dp is not None and (held or dp.holds_install()):
                held.append(lambda: self._send_held(sa, d))
                return
            if dp is not None:
                dp.flush_batch()
        self._send_out(sa, d)

    def _send_held(self, sa: IkeSA, d: Datagram) -> None:
        """A message `_turn` held, at its end: as the driver would, an error is
        reported (stage "send"), never raised."""
        try:
            self._send_out(sa, d)
        except Exception as e:
            self.core.on_fault(DriverFault("send", e, sa=sa, datagram=d))

    def _send_out(self, sa: IkeSA, d: Datagram) -> None:
        v = self.virtual
        if v is not None and d.transport is not Transport.CTCP and v.owns(sa):
            v.send(d)
        else:
            self._send(d)

    def _send(self, d: Datagram) -> None:
        """An IKE message out by its transport (the engine labels each one); an
        OSError reaches the driver, which logs it ("cannot send to ...")."""
        q = self._queue_for(d)
        if q is not None:
            q.send(d.data, d.remote)
            return
        dp = self.pool or self.dataplane
        assert dp is not None
        dp.send_ike(d.data, d.remote, transport=Transport.CTCP)

    def _queue_for(self, d: Datagram) -> SendQueue | None:
        """The send queue `_send` gives `d` to; None for cTCP (a data-plane command)."""
        if d.transport is Transport.CTCP:
            return None
        q = self.out4500 if d.transport is Transport.NATT else self.out500
        assert q is not None
        return q

    def _when_sent(self, sa: IkeSA, d: Datagram, action: Callable[[], None]) -> None:
        """The driver's `when_sent` (vpnhub/ike/driver.py): `action` (the outbound SA
        of a Quick Mode we initiated) once `d` (its message 3) left its send queue; a
        full socket buffer must not let the new SA's ESP overtake message 3 (issue 16).
        cTCP: the message is a data-plane command, and the commands keep their order.
        Held by `_turn` (not sent yet): it waits for the turn's end too."""
        if self._held:
            self._held.append(lambda: self._when_sent_held(sa, d, action))
            return
        v = self.virtual
        q = (v.queue_for(d) if v is not None and d.transport is not Transport.CTCP
             and v.owns(sa) else self._queue_for(d))
        if q is None or not len(q):
            action()  # nothing waits: the driver reports what it raises
            return

        def later() -> None:  # from the queue's writer callback: report, never raise
            try:
                action()
            except Exception as e:
                self.core.on_fault(DriverFault("after_sent", e, sa=sa))

        q.when_sent(later)

    def _when_sent_held(self, sa: IkeSA, d: Datagram, action: Callable[[], None]) -> None:
        try:
            self._when_sent(sa, d, action)
        except Exception as e:  # at a turn's end: reported as the driver does
            self.core.on_fault(DriverFault("after_sent", e, sa=sa))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """The core awaits the authenticator here (a task holds it until it ends)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --------------------------------------------------------------- timers
    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            try:
                await self._tick()
            except Exception as e:  # the timers must never stop: log and go on
                self.log.add("IKE", 1, f"internal error in the timer loop: {e!r}")

    async def _tick(self) -> None:
        now = time.monotonic()
        core = self.core
        core.housekeeping(now, state=False)
        if core.state_due(now):  # the record's field copy in steps (core.STATE_STEP)
            for _ in core.write_state_in_steps(now):
                await asyncio.sleep(0)
        if self.own_process:
            self.freezer.tick(len(core.sessions))
        if self.accounting is not None:
            self.accounting.tick(now)
        self._start_dh_filler()
        if now - self._last_stats >= STATS_EVERY:
            self._last_stats = now
            await self._refresh_stats()

    def _start_dh_filler(self) -> None:
        """Refill the DH pool if SAs took from it (a task only while it has work, so
        an idle concentrator does not wake for it)."""
        pool = self.core.endpoint.dh_pool
        if pool is not None and self._dh_pool_on_worker:
            now = time.monotonic()
            if pool.refill_paused and now - self._last_ike >= DH_QUIET:
                pool.refill_paused = False  # the flood's messages stopped (ike.dhpool)
            if pool.busy and now - pool.last_first_message >= DH_QUIET:
                pool.busy = False  # the storm's first messages stopped: idle time
            if pool.wanted():  # drawn without a g^xy job (Quick Mode PFS, after a flood)
                self.dh_worker.wake()
            return
        if pool is None or not pool.wanted() or \
                (self._dh_filler is not None and not self._dh_filler.done()):
            return
        self._dh_filler = asyncio.get_running_loop().create_task(self._fill_dh_pool())

    async def _fill_dh_pool(self) -> None:
        pool = self.core.endpoint.dh_pool
        assert pool is not None
        while pool.wanted():
            quiet = time.monotonic() - self._last_ike
            if quiet < DH_QUIET:  # logins are arriving: they come first
                await asyncio.sleep(DH_QUIET - quiet)
                continue
            pool.fill(FILL_STEP)
            await asyncio.sleep(0)  # one step per turn: what is ready runs in between

    async def _refresh_stats(self) -> None:
        dp = self.core.dataplane
        if dp is None:
            return
        try:
            counters = await dp.counters()  # arrays, not an object per SA (issue 13)
        except Exception:  # the data plane could not answer: the counters wait
            return
        for _ in self.core.apply_counters_in_steps(counters, time.monotonic()):
            await asyncio.sleep(0)  # IKE and the manager between two steps

    # --------------------------------------------------------------- admin
    async def _start_admin(self) -> asyncio.AbstractServer | None:
        path = self.config.admin.socket
        try:
            return await start_server(path, self.admin_command)
        except OSError as e:
            self.log.add("ADMIN", 2, f"admin socket {path} unavailable: {e}")
            return None

    async def admin_command(self, req: dict[str, Any]) -> dict[str, Any]:
        if req.get("cmd") == "status":
            return self._status()
        if req.get("cmd") == "cluster" or req.get("cluster") or \
                (req.get("cmd") == "logout" and "session" in req):
            return await self._cluster_command(req)
        if req.get("cmd") == "sessions":  # paged, built in steps (adminsessions.py)
            if req.get("cursor") is None:  # fresh counters once per walk, not per page
                await self._refresh_stats()
            return await sessions_page(self.core.sessions, req, self.core.wall())
        reply = self.core.admin_command(req)
        if req.get("cmd") == "stats":
            reply["ike_send"] = self._send_counters()
            i = self.ike4500  # None: IKE on 4500 goes through the data plane
            reply["ike_4500"] = None if i is None else {"rx": i.rx, "tx": i.tx,
                                                         "drops": dict(i.drops)}
            reply["udp_io"] = await self._udp_io()
            reply["dataplane_drops"] = await self._dataplane_drops()
            if self.virtual is not None:  # issue 17: IKE on the virtual address
                reply["virtual"] = self.virtual.stats()
            if self.pool is not None:  # [dataplane] workers > 1: each one's figures
                with contextlib.suppress(Exception):
                    totals = (await self.pool.counters(sas=False)).totals
                    reply["workers"] = [w.as_dict() for w in totals.workers]
                reply["hung_workers"] = self.pool.hung_workers
            w = self.dh_worker  # phase 1's g^xy: how many the worker thread computed
            reply["dh_worker"] = {"submitted": w.submitted, "ran": w.ran,
                                  "left_out": w.left_out, "late": w.late,
                                  "overlaps": w.overlaps,
                                  # messages held back while their SA's g^xy was pending
                                  "parked": w.parked, "released": w.released,
                                  "park_drops": w.park_drops}
        return reply

    async def _cluster_command(self, req: dict[str, Any]) -> dict[str, Any]:
        """`cluster`, `sessions` with `cluster`, `logout` of a session by id (on any
        member): what needs the database is answered by the member's thread."""
        member = self.cluster
        cmd = req.get("cmd")
        if cmd == "logout":
            return await self._logout_session(req)
        if member is None:
            return {"error": "this concentrator is not a cluster member ([cluster] is not"
                             " configured)"}
        if cmd == "cluster":
            return member.status()
        if cmd != "sessions":
            return {"error": f"unknown command {cmd!r}"}
        limit, cursor = req.get("limit", 1000), req.get("cursor")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            return {"error": "limit must be an integer between 1 and 1000"}
        if cursor is not None and not isinstance(cursor, str):
            return {"error": "cursor must be a string (next_cursor of the previous page)"}
        return await asyncio.wrap_future(member.list_sessions(limit, cursor))

    async def _logout_session(self, req: dict[str, Any]) -> dict[str, Any]:
        """`logout` with `session` (its id: the IKE cookies in hex, as the manager and
        `sessions --cluster` show it) and, in a cluster, the `member` that has it."""
        sid, name = req.get("session"), req.get("member")
        if not isinstance(sid, str) or len(sid) != 32 or \
                any(c not in "0123456789abcdef" for c in sid):
            return {"error": "session must be a session id (32 hex digits)"}
        member = self.cluster
        here = member.name if member is not None else None
        if name is not None and name != here:
            if member is None:
                return {"error": "this concentrator is not a cluster member ([cluster] is"
                                 " not configured)"}
            if not isinstance(name, str):
                return {"error": "member must be a member's name"}
            return await asyncio.wrap_future(member.send_logout(name, sid, "(admin socket)"))
        key = (bytes.fromhex(sid[:16]), bytes.fromhex(sid[16:]))
        if not self.core.logout(key, "(admin socket)"):
            return {"error": f"no session {sid} here"}
        return {"logged_out": 1, "member": here, "id": sid}

    async def _dataplane_drops(self) -> dict[str, int] | None:
        """The data plane's drops by reason, every SA's included ("unknown_spi": ESP on
        an SA not installed; issue 16's rekeys under ping explain a lost packet by it)."""
        dp = self.core.dataplane
        if dp is None:
            return None
        try:
            return dict((await dp.counters(sas=False)).totals.drops_total)
        except Exception:  # the data plane could not answer: no figures this time
            return None

    async def _udp_io(self) -> dict[str, Any] | None:
        """System calls per packet on the UDP sockets (issue 16): the totals only."""
        dp = self.core.dataplane
        if dp is None:
            return None
        try:
            t = (await dp.counters(sas=False)).totals
        except Exception:  # the data plane could not answer: no figures this time
            return None
        return {"rx_calls": t.udp_rx_calls, "rx_datagrams": t.udp_rx_datagrams,
                "tx_calls": t.udp_tx_calls, "tx_datagrams": t.udp_tx_datagrams,
                "gso_fallbacks": t.gso_fallbacks, "esp_via_ike_socket": t.esp_via_ike_socket,
                "gro": t.udp_gro, "gso": t.udp_gso, "tun_rx": t.tun_rx,
                "tun_tx": t.tun_tx, "tun_rx_calls": t.tun_rx_calls,
                "tun_tx_calls": t.tun_tx_calls, "tun_rx_super": t.tun_rx_super,
                "tun_tx_super": t.tun_tx_super, "tun_offload": t.tun_offload,
                "moderation_waits": t.moderation_waits}

    def _status(self) -> dict[str, Any]:
        """`status`: cheap figures a benchmark or a monitor polls (O(1), no listing)."""
        out: dict[str, Any] = {"sessions": len(self.core.sessions), "sas": len(self.core.endpoint)}
        if self.loop_watch is not None:
            out.update(self.loop_watch.to_json())
        if self.stall_watch is not None:
            out["loop_stalls"] = self.stall_watch.to_json()
        out["gc"] = self.gc_watch.to_json()
        if self.ike is not None:
            out["timer_wakes"] = self.ike.driver.wakes
        if self.cluster is not None:  # issue 17: the member's state at a glance
            c = self.cluster
            out["cluster"] = {"member": c.name, "database_ok": c.database_ok,
                              "holds_virtual_address": c.holds_virtual_address()}
        return out

    def _send_counters(self) -> dict[str, int]:
        """IKE messages that met a full send buffer: queued, sent late, dropped."""
        qs = self._send_queues()
        return {"queued": sum(q.queued for q in qs), "sent_late": sum(q.sent_late for q in qs),
                "dropped": sum(q.dropped for q in qs), "waiting": sum(len(q) for q in qs)}


# Python's cyclic garbage collector, tuned for a heap of long-lived sessions (issue 13).
# A full collection walks every tracked object (~1 million with 10,000 sessions: 0.2 to
# 0.6 s with the loop stopped, seen by StallWatch in bench/scale.py). CPython 3.11 runs
# one when objects promoted out of the young generations reach a quarter of the old
# one, and with the default 700-allocation young collections the temporaries of every
# page of sessions, export and handshake got promoted while still alive. Young
# collections every 50,000 allocations let such temporaries die first; reference
# counting frees all but cycles, which the collector still finds, later. A middle
# collection every 5 young ones keeps the middle generation (and its pause) small.
GC_THRESHOLDS: Final = (50_000, 5, 100)
SWITCH_INTERVAL: Final = 0.001  # seconds a thread keeps the GIL when another wants it


class ShutdownTimes:
    """Seconds per step of the shutdown, for its log line."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.start = self.last = clock()
        self.steps: list[tuple[str, float]] = []

    def mark(self, name: str) -> None:
        now = self.clock()
        self.steps.append((name, now - self.last))
        self.last = now

    def __str__(self) -> str:
        parts = ", ".join(f"{name} {dt:.2f} s" for name, dt in self.steps)
        return f"{self.last - self.start:.2f} s ({parts})"


def open_ike500(host: str, port: int) -> socket.socket:
    """The IKE socket on UDP 500 (non-blocking), with the control plane's buffers
    (IKE_BUFFER_BYTES, as the IKE socket on 4500)."""
    return open_udp_socket(host, port, buffer_bytes=IKE_BUFFER_BYTES)


def serve(config: Config, log: EventLog) -> int:
    """`vpnhub serve`: the concentrator owns this process (its allocator, its garbage
    collector)."""
    # before any thread allocates: an arena per thread stays (memory.py, limit_arenas)
    limit_arenas()
    gc.set_threshold(*GC_THRESHOLDS)
    # Every IKE message costs the loop's thread a system call, which lets go of the GIL;
    # while another thread computes (the data plane, the state record's writer) it gets
    # the GIL back only at the next switch, 5 ms by default: ten answers in a row then
    # held IKE 50-85 ms (StallWatch, 10,000 sessions, issue 13). 1 ms bounds that.
    sys.setswitchinterval(SWITCH_INTERVAL)
    conc = Concentrator(config, log)
    conc.own_process = True
    try:
        return asyncio.run(conc.run())
    except OSError as e:
        log.add("SESSION", 1, f"cannot start: {e}")
        return 1
