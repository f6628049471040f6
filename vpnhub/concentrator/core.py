"""The concentrator's core: everything that decides, nothing that does I/O.

Sessions, XAUTH (through an `Authenticator`, awaited), address pools, Mode
Config, group policy, phase 1 take-over, simultaneous logins, the NAT-T
diagnosis, peer moved, the state record's content and the shutdown (every
SA deleted). Time comes in (`now` from the driver, or the injected clocks);
datagrams leave through the `send` callback and SAs go to the data plane as
commands. The shell (`vpnhub.concentrator.service`) owns the sockets, the TUN,
the routes and the timers; the tests drive this class in memory
(tests/concentrator/core_harness.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import ipaddress
import operator
import os
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any, Protocol, assert_never

from vpnhub import __version__
from vpnhub.auth.api import Authenticator, AuthRequest, AuthResult, BackendError
from vpnhub.cluster.balance import Balancer
from vpnhub.concentrator.certauth import CertAuthPolicy
from vpnhub.concentrator.memory import BurstTrimmer
from vpnhub.concentrator.staterecord import (
    HeldAddress,
    RawSession,
    RunRecord,
    StateError,
    StateKeeper,
    read_state,
    state_path,
)
from vpnhub.config import Config, GroupConfig, LanToLanConfig
from vpnhub.esp.sa import SaParams
from vpnhub.eventlog import EventLog
from vpnhub.ike import events as ev
from vpnhub.ike.dhpool import DhPool, default_size
from vpnhub.ike.driver import DriverFault
from vpnhub.ike.endpoint import IkeEndpoint, Limits
from vpnhub.ike.pkiseam import SigCredentials
from vpnhub.ike.policy import Policy
from vpnhub.ike.sa import Address, IkeConfig, IkeSA
from vpnhub.ike.state import SaState
from vpnhub.ike.summary import Notice
from vpnhub.ike.transitions import State
from vpnhub.ike.transport import Transport
from vpnhub.net.handle import DataplaneHandle, SaCounters
from vpnhub.net.loopwatch import LoopWatch
from vpnhub.net.messages import (
    CTCP_CLOSED_BY_CONTROL,
    TRANSPORT_NATT_VIRTUAL,
    CtcpClosed,
    DebugLine,
    IkeDatagram,
    OuterFragmentation,
    PeerMoved,
    SaExhausted,
)
from vpnhub.net.messages import Event as DataplaneEvent
from vpnhub.secret import Secret
from vpnhub.session.model import ChildInfo, SessionView
from vpnhub.session.pool import PoolError, pool_for_group
from vpnhub.session.store import MemorySessionStore, SessionStore
from vpnhub.text import printable
from vpnhub.wire.constants import CfgAttr, EncapsulationMode, IdType, NotifyType

if TYPE_CHECKING:
    from vpnhub.cluster.member import ClusterMember

Clock = Callable[[], float]
EventHook = Callable[[IkeSA, ev.Event], None]
# Runs a coroutine to its end (the shell: a task on its loop; the tests: their scheduler)
Spawn = Callable[[Coroutine[Any, Any, None]], object]


class BoundDriver(Protocol):
    """The IKE driver loop as the core uses it (`AsyncIkeDriver`; the tests' clock)."""

    def receive(self, data: bytes, remote: Address, local_port: int,
                transport: Transport) -> IkeSA | None: ...

    def service(self, sa: IkeSA) -> None: ...

    def after_sent(self, sa: IkeSA, action: Callable[[], None]) -> None:
        """From an event handler: `action` once `sa`'s datagrams left (IkeDriver)."""
        ...


# A session's state record fields (staterecord.RawSession), then those of the test
# of whether it is recorded: authenticated, or a LAN-to-LAN tunnel with an IPsec SA.
_STATE_FIELDS = operator.attrgetter("user", "group", "public_ip", "public_port",
                                    "assigned_ip", "login_time", "authenticated",
                                    "lan_to_lan", "children")
COUNTER_STEP = 500  # sessions per step of apply_counters_in_steps
# Sessions per step of the state record's field copy (write_state_in_steps): ~1.5 ms
# of the loop each; all 10,000 in one go held it 6 ms idle, 16-28 ms on a loaded
# machine (issue 13).
STATE_STEP = 2500
# Remote access clients that ask R-U-THERE on the concentrator's own interval ask
# first: ours waits one idle timer step more (IkeConfig.dpd_grace, issue 13)
DPD_GRACE = 1.0


class ConcentratorCore:
    """The application of the IKE driver loop (`on_event`) and of the data plane
    (`on_dataplane`); SAs and peers go to the data plane, datagrams through the
    driver (`bind`).

    `clock` is the monotonic clock of the driver (the engine's `now` when an
    answer comes back from the authenticator); `wall` stamps sessions and the
    state record. `spawn` runs the authenticator's coroutines (a task on the
    shell's loop); the core itself never sleeps and owns no event loop.
    """

    def __init__(self, config: Config, log: EventLog, *, authenticator: Authenticator,
                 dataplane: DataplaneHandle | None, clock: Clock, wall: Clock,
                 spawn: Spawn, signer: SigCredentials | None = None,
                 balancer: Balancer | None = None) -> None:
        self.config = config
        # issue 14: our certificate and the groups' phase 1 methods; None: PSK only
        self.signer = signer
        self.cert_auth = CertAuthPolicy(config) if signer is not None else None
        self.log = log
        c = config.concentrator
        self.public = str(c.public_address)
        self.policy = Policy(allow_legacy=c.allow_legacy_crypto, ike_lifetime=c.ike_lifetime,
                             ipsec_lifetime=c.ipsec_lifetime)
        self.groups = {g.name: g for g in config.groups}
        self.pools = {g.name: pool_for_group(g) for g in config.groups}
        self.authenticator = authenticator
        self.dataplane = dataplane
        self.clock = clock
        self.wall = wall
        self.spawn = spawn
        lim = config.limits
        self.endpoint = IkeEndpoint(self._ike_config, Limits(
            lim.max_half_open_per_source, lim.max_half_open_total, lim.max_sessions,
            lim.max_half_open_verified_per_source))
        if lim.dh_pool_size != 0:  # the shell fills it in idle time (service.py)
            self.endpoint.dh_pool = DhPool(dh_pool_sizes(config))
        # Typed as the Protocol: its reads are SessionView, so every write goes
        # through the store and is told to its subscribers (manager, accounting)
        self.sessions: SessionStore = MemorySessionStore(lim.max_sessions)
        self._trimmer = BurstTrimmer(before_trim=self._drop_pooled_dh_pairs)
        self.spi_owner: dict[int, tuple[bytes, bytes]] = {}
        self._exhausted: set[int] = set()  # outbound SPIs whose SaExhausted started a rekey
        self._l2l_by_peer = {str(t.peer): t for t in config.lan_to_lan if t.peer is not None}
        nt = config.nat_transparency
        # IPsec over TCP ports double as the engine's "local port" label of TCP-borne SAs
        self.ctcp_ports = set(nt.ipsec_over_tcp_ports) if nt.ipsec_over_tcp else set()
        self.udp_port = nt.ipsec_over_udp_port if nt.ipsec_over_udp else 0
        self._l2l_by_id = {t.peer_id: t for t in config.lan_to_lan if t.peer_id}
        self.natt_enabled = config.nat_transparency.ipsec_over_natt
        self.event_hook: EventHook | None = None  # the manager's handshake counters
        # issue 16: draws the SPI of each new inbound ESP SA from (peer, transport
        # name), so that the kernel steers its ESP to the data-plane worker that
        # will own it (vpnhub/esp/spi.py); set by the shell before the first SA.
        # None: the engine's random SPIs (one data plane)
        self.spi_allocator: Callable[[Address, str], int] | None = None
        # the shell's watch of its loop's delay (issue 13), for /metrics; None in-process
        self.loop_watch: LoopWatch | None = None
        self.driver: BoundDriver | None = None  # the IKE driver loop (`bind`)
        self._state: StateKeeper | None = None  # the state record (crash recovery)
        self._held: list[HeldAddress] = []  # pool addresses of sessions a crash lost
        # What a RADIUS Access-Accept granted each session (issue 14): Class, address,
        # Session-Timeout, Reply-Message; and the Session-Timeout deadlines as a heap
        # (deadline, key) checked each tick, the current one per session beside it
        self.grants: dict[tuple[bytes, bytes], AuthResult] = {}
        self._deadlines: list[tuple[float, tuple[bytes, bytes]]] = []
        self._deadline_of: dict[tuple[bytes, bytes], float] = {}
        # told (old key, new key) when a phase 1 rekey takes a session over: RADIUS
        # accounting goes on under the same Acct-Session-Id (the shell sets it)
        self.renewal_hook: Callable[[tuple[bytes, bytes], tuple[bytes, bytes]], None] | None \
            = None
        # issue 17, [cluster]: the virtual address clients connect to (the VRRP master
        # holds it) and who says which member serves a new client there (None: every
        # client is served where it lands); see _redirect_for
        cl = config.cluster
        self.virtual_address = str(cl.virtual_address) if cl is not None else None
        self.balancer = balancer
        # the member itself when [cluster] is set (the shell sets it): the manager's
        # banners and /metrics read its state (vpnhub/cluster/member.py)
        self.cluster: ClusterMember | None = None
        self._rx_virtual = False  # the datagram being received came to the virtual address
        # phase 1s on the virtual address: sent to another member, sent to this member's
        # own address, served on the virtual address (a client that follows no redirect)
        self.redirects: Counter[str] = Counter()

    # ----------------------------------------------------------- IKE config
    def _ike_config(self, remote: Address, local_port: int = 500) -> IkeConfig:
        c = self.config.concentrator
        over_tcp = local_port in self.ctcp_ports
        site = self._l2l_by_peer.get(remote[0])
        if site is not None:  # Main Mode from a LAN-to-LAN peer: known by its address
            return self._l2l_config(site)
        virtual = self._rx_virtual and self.virtual_address is not None
        return IkeConfig(
            # NAT-D hashes the address the client sent to (RFC 3947 3.2): on the
            # virtual address, that one; the shell sends the SA's answers from it too
            local_address=self.virtual_address if virtual and self.virtual_address
            else self.public,
            redirect_for=self._redirect_for if virtual else None,
            policy=self.policy, psk_lookup=self._psk_lookup,
            policy_for=self._group_policy, config_for_id=self._config_for_id,
            natt=self.natt_enabled and not over_tcp, xauth=True,
            transport="tcp" if over_tcp else "udp", log_severity=self.log.max_severity(),
            dpd_interval=float(c.dpd_interval), dpd_grace=DPD_GRACE,
            dpd_retries=c.dpd_retries, application_version=f"vpnhub {__version__}",
            xauth_timeout=float(c.xauth_timeout), pki=self.signer,
            auth_methods_for=self.cert_auth.methods_for if self.cert_auth else None,
            group_for_cert=self.cert_auth.group_for_cert if self.cert_auth else None,
            group_without_psk=self._group_without_psk, spi_allocator=self._spi_hook())

    def _l2l_config(self, site: LanToLanConfig) -> IkeConfig:
        c = self.config.concentrator
        policy = self.policy
        if site.ike_proposals is not None or site.esp_proposals is not None:
            policy = group_policy(self.policy, site)
        local = site.local_networks
        remote = site.remote_networks

        def ts_check(theirs: ipaddress.IPv4Network, ours: ipaddress.IPv4Network) -> str | None:
            if not any(theirs.subnet_of(n) for n in remote):
                return f"{theirs} is not among {site.name}'s remote_networks"
            if not any(ours.subnet_of(n) for n in local):
                return f"{ours} is not among {site.name}'s local_networks"
            return None

        return IkeConfig(
            local_address=self.public, policy=policy, psk=site.psk,
            natt=site.ipsec_over_natt, xauth=False, unity=False,
            dpd_interval=float(c.dpd_interval), dpd_retries=c.dpd_retries,
            ts_check=ts_check, application_version=f"vpnhub {__version__}",
            log_severity=self.log.max_severity(),
            extra_vendor_ids=(), spi_allocator=self._spi_hook())

    def _spi_hook(self) -> Callable[[Address, str], int] | None:
        return self._inbound_spi if self.spi_allocator is not None else None

    def _inbound_spi(self, remote: Address, transport: str) -> int:
        """`spi_allocator`'s SPI for a Quick Mode inbound SA with the peer at `remote`.

        The engine knows the transport only from IKE's: "esp" for IKE on UDP 500
        may be Cisco IPsec over UDP, which Mode Config chose for the session
        (before Quick Mode); its record says which."""
        assert self.spi_allocator is not None
        if transport == "esp":
            views = self.sessions.at_address(remote[0], remote[1])
            if views and views[-1].transport == "cisco-udp":
                transport = "cisco-udp"
        return self.spi_allocator(remote, transport)

    def _config_for_id(self, id_type: int, data: bytes) -> IkeConfig | None:
        site = self._l2l_by_id.get(data.decode("utf-8", "replace"))
        return self._l2l_config(site) if site is not None else None

    def _group_policy(self, group_id: bytes) -> Policy | None:
        g = self.groups.get(group_id.decode("utf-8", "replace"))
        if g is None or (g.ike_proposals is None and g.esp_proposals is None):
            return None
        return group_policy(self.policy, g)

    def _psk_lookup(self, id_type: int, data: bytes, remote: Address) -> Secret | None:
        if id_type == 0:  # Main Mode: before the identity; only one group can match
            return self.config.groups[0].psk if len(self.groups) == 1 else None
        if id_type not in (IdType.KEY_ID, IdType.FQDN, IdType.USER_FQDN):
            return None
        g = self.groups.get(data.decode("utf-8", "replace"))
        return g.psk if g is not None else None

    def _group_without_psk(self, id_type: int, data: bytes) -> bool:
        """A configured group with no key (issue 14: auth has no "psk")."""
        if id_type not in (IdType.KEY_ID, IdType.FQDN, IdType.USER_FQDN):
            return False
        g = self.groups.get(data.decode("utf-8", "replace"))
        return g is not None and g.psk is None

    # ------------------------------------------------------------- receive
    def bind(self, driver: BoundDriver) -> None:
        """The IKE driver loop over `self.endpoint` whose callbacks are `on_event`,
        `on_fault` and `on_notice`; the core services SAs it called into through it."""
        self.driver = driver

    def local_port(self, transport: Transport) -> int:
        """The engine's "local port" of a transport: _ike_config knows cTCP by its ports."""
        c = self.config.concentrator
        if transport is Transport.IKE:
            return c.ike_port
        if transport is Transport.CTCP and self.ctcp_ports:
            return min(self.ctcp_ports)
        return c.natt_port

    def receive(self, data: bytes, addr: Address, transport: Transport, *,
                virtual: bool = False) -> None:
        """An IKE datagram from UDP 500, UDP 4500 (marker removed) or cTCP. `virtual`:
        it came to the cluster's virtual address (issue 17): a new SA it starts answers
        from that address and may be redirected (`_redirect_for`)."""
        self._rx_virtual = virtual
        try:
            self._driver().receive(data, addr, self.local_port(transport), transport)
        finally:
            self._rx_virtual = False

    def _redirect_for(self, sa: SaState) -> ipaddress.IPv4Address | None:
        """Issue 17, asked by the engine when a phase 1 on the virtual address is
        established, before XAUTH: where the client goes (the Cisco load-balance notify
        carries the address), or None to serve it on the virtual address.

        Only a client that announced Cisco Unity follows the notify (vpnc, the Cisco
        client); strongSwan and other clients without it are served where they land.
        A client the Balancer keeps on this member (None: this member is the least
        loaded) is sent to this member's own address, [cluster] public_address: its
        session then lives on an address that stays with this member when the
        virtual address moves to another one (VRRP), like every redirected client's."""
        cl = self.config.cluster
        if cl is None or not cl.load_balancing or self.balancer is None:
            return None
        if not follows_redirects(sa):
            self.redirects["served_on_virtual"] += 1
            self.log.add("CLUSTER", 5, "a client that follows no redirect (no Cisco Unity, or"
                         " strongSwan) is served on the virtual cluster address",
                         peer=f"{sa.remote[0]}:{sa.remote[1]}")
            return None
        try:
            target = self.balancer.redirect_target()
        except Exception as e:  # the directory's fault must not stop the login
            self.log.add("CLUSTER", 2, f"load balancing: no answer from the cluster"
                         f" directory ({e!r}): the client stays on this member",
                         peer=f"{sa.remote[0]}:{sa.remote[1]}")
            target = None
        return target if target is not None else cl.public_address

    def on_dataplane(self, e: DataplaneEvent) -> None:
        """One event from the data plane thread's inbox."""
        match e:
            case IkeDatagram():
                self.receive(e.message, e.addr, e.transport)
            case PeerMoved():
                self._peer_moved(e)
            case DebugLine():
                self.log.add("IPSECDBG", e.severity, e.text,
                             peer=f"{e.peer[0]}:{e.peer[1]}" if e.peer else "")
            case OuterFragmentation():
                self.log.add("IPSEC", 3, e.message + "; fragmentation policy \"none\": set"
                             " [concentrator] fragmentation = \"before-encryption\" (or"
                             " \"clear-df\") so that large packets cross such NAT devices",
                             peer=f"{e.peer[0]}:{e.peer[1]}")
            case SaExhausted():
                self._sa_exhausted(e.spi)
            case CtcpClosed():
                self._ctcp_closed(e)
            case _:
                assert_never(e)

    def _endpoint_notices(self) -> None:
        while (n := self.endpoint.next_notice()) is not None:
            self.on_notice(n)

    def on_notice(self, n: Notice) -> None:
        """The endpoint's rate-limited summaries (refused, recycled, unanswered SAs)."""
        self.log.add(n.cls, n.severity, n.text, peer="" if n.source == "*" else n.source)

    def on_fault(self, fault: DriverFault) -> None:
        """Something raised in the driver loop: logged, and the loop goes on."""
        self.log.add("IKE", 3 if fault.stage == "send" else 1, fault.describe())

    def _sa_exhausted(self, spi_out: int) -> None:
        """Outbound SA `spi_out` used up its sequence numbers: rekey its child now.

        RFC 4303 3.3.3: the counter must not cycle, a new SA must be negotiated
        first. The responder may start that Quick Mode (as its lifetime rekey
        does). The data plane drops what it cannot send meanwhile and repeats the
        event for every such packet: one rekey per SPI.
        """
        if spi_out in self._exhausted:
            return
        self._exhausted &= self.spi_owner.keys()  # forget SPIs that are gone
        self._exhausted.add(spi_out)
        key = self.spi_owner.get(spi_out)
        sa = self.endpoint.get(*key) if key is not None else None
        s = self.sessions.get(key) if key is not None else None
        peer = f"{sa.remote[0]}:{sa.remote[1]}" if sa is not None else ""
        group, user = (s.group, s.user) if s is not None else ("", "")
        now = self.clock()
        if sa is not None and sa.established and sa.rekey_child(spi_out, now) is not None:
            self.log.add("IPSEC", 4, f"IPsec SA {spi_out:08x} used up its sequence numbers:"
                         " rekeying it", peer=peer, group=group, user=user)
            self._service(sa)
            return
        self.log.add("IPSEC", 3, f"IPsec SA {spi_out:08x} used up its sequence numbers and"
                     " cannot be rekeyed: " + ("deleting its IKE SA, the client reconnects"
                                               if sa is not None else "no IKE SA owns it"),
                     peer=peer, group=group, user=user)
        if sa is not None:
            sa.delete(now, "IPsec SA out of sequence numbers, no rekey possible")
            self._service(sa)
        elif self.dataplane is not None:  # an orphan: it would repeat the event forever
            self.dataplane.remove_sa(spi_out)

    def _ctcp_closed(self, e: CtcpClosed) -> None:
        """The IPsec over TCP connection of a session ended: without it there is no
        tunnel, so the session ends as for a dead peer (RFC 3706), without a DELETE
        (nothing could carry it). Every IKE SA it carried goes (a phase 1 rekey under
        way has two). One we closed ourselves (`CtcpClose`, shutdown) belongs to an SA
        already on its way out."""
        if e.reason == CTCP_CLOSED_BY_CONTROL:
            return
        peer = f"{e.addr[0]}:{e.addr[1]}"
        for s in [s for s in self.sessions.all() if s.transport == "ctcp"
                  and (s.public_ip, s.public_port) == e.addr]:
            sa = self.endpoint.get(*s.key)
            if sa is None:
                continue
            self.log.add("NATT", 4, f"the IPsec over TCP connection from {peer} closed"
                         f" ({e.reason}): ending its session", peer=peer, group=s.group,
                         user=s.user)
            sa.terminate(f"IPsec over TCP connection closed ({e.reason})", self.clock(),
                         by_peer=False, notify_peer=False)
            self._service(sa)

    def _peer_moved(self, e: PeerMoved) -> None:
        key = self.spi_owner.get(e.spi)
        s = self.sessions.get(key) if key else None
        if s is None:
            return
        sa = self.endpoint.get(*s.key)
        if sa is not None and sa.remote == e.old:
            sa.remote = e.new
        if self.dataplane is not None:  # authentic ESP from there: follow (RFC 3948 2.2)
            self.dataplane.update_peer(e.old, e.new)
        if s.transport == "cisco-udp":  # ESP's own port: IKE's (public_port) stays
            if not s.udp_port:
                self.sessions.update(s.key, udp_port=e.new[1])
                self.log.add("NATT", 5, f"IPsec over UDP: the client's ESP comes from UDP port"
                             f" {e.new[1]}", peer=f"{e.new[0]}:{e.new[1]}", group=s.group,
                             user=s.user)
                return
            self.sessions.update(s.key, udp_port=e.new[1], public_ip=e.new[0])
        else:
            self.sessions.update(s.key, public_ip=e.new[0], public_port=e.new[1])
        self._state_changed()
        self.log.add("NATT", 4, f"ESP from a new NAT mapping {e.new[0]}:{e.new[1]}"
                     f" (was {e.old[0]}:{e.old[1]}): following it", peer=f"{e.new[0]}:{e.new[1]}",
                     group=s.group, user=s.user)

    # --------------------------------------------------------------- timers
    def housekeeping(self, now: float, *, state: bool = True) -> None:
        """The periodic duties that are not IKE timers (the shell calls it every tick).
        `state` False: the state record is the caller's (``state_due`` and
        ``write_state_in_steps``, with the loop's turn between the steps)."""
        self._keep_state(now, write=state)
        self.log.tick()  # summaries of rate-limited lines once a flood's window ends
        self._endpoint_notices()
        self._trimmer.tick(self.endpoint.half_open_count())  # memory back after a flood
        self._session_timeouts(now)

    def _drop_pooled_dh_pairs(self) -> None:
        """Before the trim after a burst: the pool's pairs were refilled while the
        burst's SAs lived, in between them; the shell refills the pool after the
        trim (memory.BurstTrimmer, docs/reliability/ike-dos.md)."""
        if self.endpoint.dh_pool is not None:
            self.endpoint.dh_pool.discard()

    def apply_counters(self, c: SaCounters, now: float) -> None:
        """Counters from the data plane (``GetCounters``: arrays, no object per SA); ESP
        from a peer counts as liveness (RFC 3706). A session whose counters did not
        move costs a comparison, not an update."""
        for _ in self.apply_counters_in_steps(c, now):
            pass

    def apply_counters_in_steps(self, c: SaCounters, now: float,
                                step: int = COUNTER_STEP) -> Iterator[None]:
        """`apply_counters`, yielding after every `step` * 4 SAs of the sums and after
        every `step` sessions: the shell gives the event loop its turn there. With
        10,000 sessions whose NAT keepalive counts all moved, one go held the loop
        ~0.1 s, and the sums of their 20,000 SAs alone 16-21 ms (issue 13). A session
        that ends between two steps is skipped."""
        owner = self.spi_owner
        # per session: bytes in, packets in, bytes out, packets out
        per: dict[tuple[bytes, bytes], list[int]] = {}
        sa_step = step * 4
        for at, spis, nbytes, npackets in ((0, c.spi_in, c.bytes_in, c.packets_in),
                                           (2, c.spi_out, c.bytes_out, c.packets_out)):
            for i, (spi, b, p) in enumerate(zip(spis, nbytes, npackets, strict=True)):
                if i and i % sa_step == 0:
                    yield
                key = owner.get(spi)
                if key is not None:
                    acc = per.get(key)
                    if acc is None:
                        acc = per[key] = [0, 0, 0, 0]
                    acc[at] += b
                    acc[at + 1] += p
        drops: dict[tuple[bytes, bytes], dict[str, int]] = {}
        for spi, sa_drops in c.drops_in.items():
            key = owner.get(spi)
            if key is not None:
                d = drops.setdefault(key, {})
                for reason, n in sa_drops.items():
                    d[reason] = d.get(reason, 0) + n
        keepalives = c.keepalives
        yield
        for i, (key, (b_in, p_in, b_out, p_out)) in enumerate(per.items()):
            if i and i % step == 0:
                yield
            s = self.sessions.get(key)
            if s is None:
                continue
            if p_in > s.packets_rx:
                ike = self.endpoint.get(*key)
                if ike is not None:
                    ike.note_traffic(now)
            k_rx, k_tx = keepalives.get((s.public_ip, s.public_port))
            d = drops.get(key, {})
            if (b_in, p_in, b_out, p_out, k_rx, k_tx) != (
                    s.bytes_rx, s.packets_rx, s.bytes_tx, s.packets_tx, s.keepalives_rx,
                    s.keepalives_tx) or d != s.drops:  # an idle session costs no update
                self.sessions.update(key, bytes_rx=b_in, packets_rx=p_in, bytes_tx=b_out,
                                     packets_tx=p_out, drops=d, keepalives_rx=k_rx,
                                     keepalives_tx=k_tx)

    # ------------------------------------------------------------- actions
    def logout(self, key: tuple[bytes, bytes], admin: str) -> bool:
        """An administrator ends a session: its SAs are deleted (the peer is told)."""
        return self._end_session(key, "ADMIN", "logged out by administrator",
                                 lambda user: f"logout of {user} by administrator {admin}")

    def disconnect(self, key: tuple[bytes, bytes], why: str) -> bool:
        """End a session for `why` (a RADIUS Disconnect-Request, RFC 5176 3.1): its
        SAs are deleted and the peer is told, as for an administrator's logout."""
        return self._end_session(key, "SESSION", why,
                                 lambda user: f"session of {user} ended: {why}")

    def _end_session(self, key: tuple[bytes, bytes], event_class: str, why: str,
                     line: Callable[[str], str]) -> bool:
        s = self.sessions.get(key)
        sa = self.endpoint.get(*key)
        if s is None or sa is None:
            return False
        self.log.add(event_class, 4, line(s.user),
                     peer=f"{s.public_ip}:{s.public_port}", group=s.group, user=s.user)
        sa.delete(self.clock(), why)
        self._service(sa)
        return True

    def set_session_timeout(self, key: tuple[bytes, bytes], seconds: int) -> bool:
        """The session ends `seconds` from now (RADIUS Session-Timeout, RFC 2865 5.27;
        from an Access-Accept or a CoA-Request, RFC 5176 3.2)."""
        if key not in self.sessions:
            return False
        self._deadline_at(key, self.clock() + seconds)
        return True

    def _deadline_at(self, key: tuple[bytes, bytes], deadline: float) -> None:
        self._deadline_of[key] = deadline
        heapq.heappush(self._deadlines, (deadline, key))

    def _session_timeouts(self, now: float) -> None:
        """Sessions past their Session-Timeout end (the heap's top only: no scan)."""
        while self._deadlines and self._deadlines[0][0] <= now:
            deadline, key = heapq.heappop(self._deadlines)
            if self._deadline_of.get(key) != deadline:
                continue  # replaced by a later CoA, or the session is gone
            del self._deadline_of[key]
            self.disconnect(key, "session timeout (RADIUS Session-Timeout)")

    def admin_command(self, req: dict[str, Any]) -> dict[str, Any]:
        """The admin socket's commands (vpnhub.admin); the shell adds what it owns
        (send queues to "stats") and answers "sessions" itself, one page at a time
        (concentrator/adminsessions.py); the whole table here is for in-process
        callers (tests)."""
        cmd = req.get("cmd")
        if cmd == "sessions":
            return self.sessions.to_json(self.wall())
        if cmd == "logout":
            user = str(req.get("user", ""))
            n = 0
            for s in self.sessions.all():
                sa = self.endpoint.get(*s.key)
                if s.user == user and sa is not None:
                    self.log.add("ADMIN", 4, f"logout of {user} by administrator",
                                 peer=f"{s.public_ip}:{s.public_port}", user=user)
                    sa.delete(self.clock(), "logged out by administrator")
                    self._service(sa)
                    n += 1
            return {"logged_out": n} if n else {"error": f"no session of user {user!r}"}
        if cmd == "stats":
            pool = self.endpoint.dh_pool
            return {"endpoint_drops": dict(self.endpoint.drops),
                    "half_open": self.endpoint.half_open_count(),
                    "half_open_unverified": self.endpoint.unverified_count(),
                    # first messages served beyond max_half_open_per_source (a burst)
                    "half_open_over_source_cap": self.endpoint.over_source_cap,
                    "sas": len(self.endpoint),
                    # issue 17: phase 1s on the cluster's virtual address
                    "redirects": {k: self.redirects[k] for k in
                                  ("to_member", "to_self", "served_on_virtual")},
                    "dh_pool": pool.stats() if pool is not None else None}
        return {"error": f"unknown command {cmd!r}"}

    def shutdown(self, now: float) -> None:
        """Every SA deleted (the peers are told), the record marked clean."""
        self.log.add("SESSION", 3, "shutting down: deleting every session")
        # The data-plane thread is woken once, after the last DELETE: woken per tunnel,
        # it competed for the GIL with every DELETE's send (10,000 sessions, issue 13).
        dp = self.dataplane
        with dp.batch() if dp is not None else contextlib.nullcontext():
            for sa in list(self.endpoint):
                sa.delete(now, "concentrator shutting down")
                self._service(sa)
        self.write_state(now, clean=True)

    # ------------------------------------------------------------- driving
    def _driver(self) -> BoundDriver:
        assert self.driver is not None, "bind() the IKE driver first"
        return self.driver

    def _service(self, sa: IkeSA) -> None:
        """After a call into `sa`: its events, datagrams and timer, by the driver."""
        self._driver().service(sa)

    def _session(self, sa: IkeSA) -> SessionView:
        """The SA's session, started (SessionStarted) on its first event."""
        return self.sessions.start((sa.icookie, sa.rcookie), sa.remote[0], sa.remote[1])

    def on_event(self, sa: IkeSA, e: ev.Event, now: float) -> None:
        """Every engine event, from the driver loop."""
        if self.event_hook is not None:  # manager (issue 6): handshake counters
            self.event_hook(sa, e)
        match e:
            case ev.LogLine():
                self._log_line(sa, self.sessions.get((sa.icookie, sa.rcookie)), e)
            case ev.Phase1Established():
                self._on_Phase1Established(sa, e)
            case ev.NatTraversalRefused():
                self._on_NatTraversalRefused(sa, e)
            case ev.XauthCredentials():
                self._on_XauthCredentials(sa, e)
            case ev.ModeConfigRequested():
                self._on_ModeConfigRequested(sa, e)
            case ev.ChildSAInboundReady():
                self._on_ChildSAInboundReady(sa, e)
            case ev.ChildSAEstablished():
                self._on_ChildSAEstablished(sa, e)
            case ev.ChildSAAbandoned():
                self._on_ChildSAAbandoned(sa, e)
            case ev.ChildSADeleted():
                self._on_ChildSADeleted(sa, e)
            case ev.PeerEndpointChanged():
                self._on_PeerEndpointChanged(sa, e)
            case ev.SADeleted():
                self._on_SADeleted(sa, e)
            case ev.Redirected():
                self._on_Redirected(sa, e)
            case (ev.NatDetected() | ev.XauthRequested() | ev.XauthCompleted()
                  | ev.ModeConfigReceived() | ev.DpdAck() | ev.KeepaliveReceived()
                  | ev.DeadPeer() | ev.NegotiationFailed() | ev.Phase1RekeyDue()
                  | ev.RedirectRequested() | ev.RedirectRefused()):
                pass  # the engine's own business, or the initiator's (logged by LogLine)
            case _:
                assert_never(e)

    def _log_line(self, sa: IkeSA, s: SessionView | None, e: ev.LogLine) -> None:
        """Only authenticated input is logged in the session's name (issue 11): a line
        caused by a message that did not authenticate names the packet's source."""
        if e.source is not None:
            self.log.add(e.cls, e.severity, e.text, peer=f"{e.source[0]}:{e.source[1]}",
                         authenticated=False, limit=e.reason)
            return
        self.log.add(e.cls, e.severity, e.text, peer=f"{sa.remote[0]}:{sa.remote[1]}",
                     group=s.group if s else "", user=s.user if s else sa.xauth_user,
                     limit=e.reason or None)

    def _on_Redirected(self, sa: IkeSA, e: ev.Redirected) -> None:
        """Issue 17: the client went to another member; it never had a session here."""
        cl = self.config.cluster
        own = cl is not None and e.target == cl.public_address
        self.redirects["to_self" if own else "to_member"] += 1
        why = "this member is the least loaded" if own else "load-balancing"
        self.log.add("CLUSTER", 4, f"redirected {sa.remote[0]}:{sa.remote[1]} to member"
                     f" {e.target} ({why})", peer=f"{sa.remote[0]}:{sa.remote[1]}")

    def _on_Phase1Established(self, sa: IkeSA, e: ev.Phase1Established) -> None:
        if sa.redirected_to is not None:
            return  # sent to another member before XAUTH: no session here (issue 17)
        s = self._session(sa)
        fields: dict[str, Any] = dict(
            group=e.cert_group or e.peer_id, public_ip=sa.remote[0], public_port=sa.remote[1],
            vendor_ids=e.peer_vendor_ids,
            ike={"encryption": e.encryption, "hash": e.hash, "dh_group": e.group,
                 "authentication": e.auth_method, "mode": e.mode, "rekey_interval": e.lifetime,
                 "auth_mode": e.auth_mode, "certificate": e.cert_subject,
                 "local_behind_nat": sa.local_behind_nat,
                 "peer_behind_nat": sa.remote_behind_nat},
            nat_t=sa.natt_in_use,
            transport="ctcp" if sa.transport is Transport.CTCP else (
                "natt" if sa.natt_in_use else "esp"),
            peer_behind_nat=sa.remote_behind_nat,
            client=_client_type(e.peer_vendor_ids, ""))
        if not sa.config.xauth:  # a LAN-to-LAN tunnel: no user, the tunnel's name
            site = self._l2l_by_peer.get(sa.remote[0]) or self._l2l_by_id.get(e.peer_id)
            name = site.name if site is not None else e.peer_id
            fields.update(lan_to_lan=name, user=name, group="LAN-to-LAN")
        self.sessions.update(s.key, **fields)  # one SessionChanged for phase 1

    def _on_NatTraversalRefused(self, sa: IkeSA, e: ev.NatTraversalRefused) -> None:
        if sa.redirected_to is not None:
            return
        self.sessions.update(self._session(sa).key, diagnosis=e.reason)

    def _on_XauthCredentials(self, sa: IkeSA, e: ev.XauthCredentials) -> None:
        s = self._session(sa)
        self.sessions.update(s.key, user=e.user)
        request = AuthRequest(e.user, e.password, s.group, sa.remote[0], sa.remote[1])
        self.spawn(self._authenticate(sa, request))

    async def _authenticate(self, sa: IkeSA, request: AuthRequest) -> None:
        """Awaits the answer; a slow-down to guessing (per user and per source address)
        is the authenticator's, so a failure comes back when it may be sent."""
        try:
            result = await self.authenticator.authenticate(request)
        except BackendError as exc:  # e.g. no RADIUS server answered: refused, said why
            self.log.add("AUTH", 2, f"login of {request.user} refused: {exc}",
                         peer=f"{sa.remote[0]}:{sa.remote[1]}", group=request.group,
                         user=request.user)
            self._finish_xauth(sa, False, "authentication server unavailable")
            return
        except Exception as exc:
            self.log.add("AUTH", 1, f"authentication error: {exc!r}")
            return
        if sa.state is State.DELETED:
            return
        self._finish_xauth(sa, result.ok, "" if result.ok else _refusal(result), result)

    def _finish_xauth(self, sa: IkeSA, ok: bool, why: str,
                      result: AuthResult | None = None) -> None:
        if sa.state is State.DELETED:
            return
        s = self._session(sa)
        if ok and result is not None:
            s = self._apply_grant(sa, s, result)
        renews = self._rekey_of(sa, s) if ok else None
        if ok and renews is None and (refusal := self._over_login_limit(sa, s)):
            ok, why = False, refusal  # the client gets an XAUTH failure (STATUS = FAIL)
        sa.xauth_result(ok, self.clock(), why)
        if ok:
            self.sessions.update(s.key, authenticated=True)
            self._state_changed()
            if renews is None or not self._take_over(sa, s, renews):
                self.sessions.logged_in(s)
        self._service(sa)

    def _apply_grant(self, sa: IkeSA, s: SessionView, r: AuthResult) -> SessionView:
        """What an Access-Accept granted (issue 14). Class `OU=<group>;` moves the
        session to that group's policy (pool, split tunnel, DNS), as on the VPN 3000;
        the rest is kept for Mode Config, the Session-Timeout and accounting."""
        peer = f"{sa.remote[0]}:{sa.remote[1]}"
        if r.group and r.group != s.group:
            if r.group in self.groups:
                self.log.add("AUTH", 5, f"RADIUS Class puts {s.user} in group {r.group}"
                             f" (logged in to {s.group})", peer=peer, group=r.group, user=s.user)
                self.sessions.update(s.key, group=r.group)
            else:
                self.log.add("AUTH", 3, f"RADIUS Class names group {printable(r.group)}, which"
                             f" is not configured: {s.user} keeps group {s.group}", peer=peer,
                             group=s.group, user=s.user)
        if r.server:
            self.grants[s.key] = r
        if r.session_timeout:
            self.set_session_timeout(s.key, r.session_timeout)
        return self._session(sa)

    def _over_login_limit(self, sa: IkeSA, s: SessionView) -> str:
        """Why this login is one too many for its user, or "" (the VPN 3000's
        "Simultaneous Logins"). The new login is refused; no session is torn down for
        it (later ASA releases log off the idlest one: anyone with the password, or a
        client in a reconnect loop, could then knock a working user off)."""
        g = self.groups.get(s.group)
        if g is None:
            return ""
        if self.sessions.login_count(s.user, besides=s) < g.simultaneous_logins:
            return ""
        if g.simultaneous_logins == 0:
            why = f"group {g.name} allows no logins (simultaneous_logins = 0)"
        else:
            logins = self.sessions.logins_of(s.user, besides=s)
            held = ", ".join(sorted(f"{o.public_ip}:{o.public_port}" for o in logins))
            why = (f"already {len(logins)} session(s) (from {held}); group {g.name} allows"
                   f" {g.simultaneous_logins} simultaneous login(s)")
        self.log.add("AUTH", 3, f"login of {s.user} refused: {why}",
                     peer=f"{sa.remote[0]}:{sa.remote[1]}", group=s.group, user=s.user)
        return "too many simultaneous logins"

    def _rekey_of(self, sa: IkeSA, s: SessionView) -> SessionView | None:
        """The session a new phase 1 renews, if it is a phase 1 rekey. IKEv1 has no
        rekey exchange: the same client simply starts a new phase 1. "The same client"
        is the same public address AND port (its NAT mapping, RFC 3947 section 4/5):
        another PC behind the same PAT has another port and is a separate login, even
        as the same user and without INITIAL-CONTACT (strongSwan with unique = never
        sends none; RFC 2407 4.6.3.3 makes it optional). A client whose
        mapping changed and that logs in again is a separate login too: its old session
        is dead and ends by DPD (RFC 3706)."""
        if sa.initial_contact:
            return None
        for old in self.sessions.at_address(*sa.remote):
            if old.key == s.key or old.user != s.user or old.group != s.group or not old.children:
                continue
            if self.endpoint.get(*old.key) is not None:
                return old
        return None

    def _take_over(self, sa: IkeSA, s: SessionView, old: SessionView) -> bool:
        """A phase 1 rekey (`old`, found by `_rekey_of`) takes over the old SA's IPsec
        SAs and address; False if the old IKE SA is gone meanwhile."""
        old_sa = self.endpoint.get(*old.key)
        if old_sa is None:
            return False
        sa.adopt(old_sa, self.clock())
        children = dict(old.children)
        moved: dict[str, Any] = dict(children=children, login_time=old.login_time,
                                     client=old.client, nat_t=old.nat_t)
        left: dict[str, Any] = dict(children={})
        for spi_in, child in children.items():
            self.spi_owner[spi_in] = s.key
            self.spi_owner[child.spi_out] = s.key
        if old.assigned_ip is not None:
            self.pools[old.group].release(old.key)
            pool = self.pools[s.group]  # the very address (a RADIUS Framed-IP-Address too)
            moved["assigned_ip"] = old.assigned_ip if pool.claim(s.key, old.assigned_ip) \
                else pool.allocate(s.key, identity=s.user)
            left["assigned_ip"] = None
        # the session goes on: its Session-Timeout counts from the first login, and
        # RADIUS accounting keeps its Acct-Session-Id (no Stop and Start for a rekey)
        if (deadline := self._deadline_of.pop(old.key, None)) is not None:
            self._deadline_at(s.key, deadline)
        if self.renewal_hook is not None:
            self.renewal_hook(old.key, s.key)
        # its login goes on in the new session
        self.sessions.update(old.key, authenticated=False, **left)
        self.sessions.update(s.key, **moved)
        self.log.add("IKE", 5, f"phase 1 rekey: new IKE SA of {s.user} takes over"
                     f" {len(children)} IPsec SA(s)", peer=f"{sa.remote[0]}:{sa.remote[1]}",
                     group=s.group, user=s.user)
        return True

    def _on_ModeConfigRequested(self, sa: IkeSA, e: ev.ModeConfigRequested) -> None:
        s = self._session(sa)
        # the client's type goes in with the address: one SessionChanged (issue 13)
        client = _client_type(s.vendor_ids, e.application_version)
        g = self.groups.get(s.group)
        if g is None:
            self.sessions.update(s.key, client=client)
            sa.delete(self.clock(), "no such group")
            return
        try:
            addr = self._granted_address(g, s) or self.pools[g.name].allocate(s.key,
                                                                               identity=s.user)
        except PoolError as err:
            # the pool says why (vpnhub/session/pool.py PoolExhausted; a cluster member
            # without its database, vpnhub/cluster/pool.py): the client is refused
            self.sessions.update(s.key, client=client)
            reason = str(getattr(err, "reason", "pool_exhausted"))
            what = "exhausted" if reason == "pool_exhausted" else f"refused ({reason})"
            self.log.add("MODECFG", 2, f"address pool of group {g.name} {what}"
                         f" ({g.address_pool}): refusing {s.user}: {err}",
                         peer=f"{sa.remote[0]}:{sa.remote[1]}", group=g.name, user=s.user)
            sa.notify_peer(NotifyType.ATTRIBUTES_NOT_SUPPORTED, self.clock())
            sa.delete(self.clock(), "address pool exhausted" if reason == "pool_exhausted"
                      else f"no address: {reason.replace('_', ' ')}")
            return
        fields: dict[str, Any] = {"client": client, "assigned_ip": addr}
        if self._held:  # its own user took a held address back
            self._held = [h for h in self._held if (h.group, h.address) != (g.name, str(addr))]
        self._state_changed()
        cfg = self._modecfg(g, addr)
        grant = self.grants.get(s.key)
        if grant is not None and grant.message:  # RADIUS Reply-Message: shown at login
            cfg.banner = grant.message + ("\n" + cfg.banner if cfg.banner else "")
        if self.udp_port and CfgAttr.UNITY_NATT_PORT in e.requested:
            # The VPN 3000's order when several are on: IPsec over TCP, NAT-T, IPsec over UDP.
            if s.transport in ("ctcp", "natt"):
                self.log.add("NATT", 5, f"client asked for IPsec over UDP; using"
                             f" {'IPsec over TCP' if s.transport == 'ctcp' else 'NAT-T'}"
                             " (priority: TCP, NAT-T, UDP)", peer=f"{sa.remote[0]}:{sa.remote[1]}",
                             group=s.group, user=s.user)
            else:
                cfg.natt_port = self.udp_port
                fields.update(transport="cisco-udp", diagnosis="")  # the NAT is crossed after all
                self.log.add("NATT", 4, f"IPsec over UDP negotiated on port {self.udp_port}",
                             peer=f"{sa.remote[0]}:{sa.remote[1]}", group=s.group, user=s.user)
        self.sessions.update(s.key, **fields)  # one SessionChanged: client, address (transport)
        sa.modecfg_reply(cfg, self.clock())

    def _granted_address(self, g: GroupConfig, s: SessionView) -> ipaddress.IPv4Address | None:
        """The RADIUS Framed-IP-Address, if it is free in the group's pool (only the
        pools are routed to the tunnel); otherwise the pool chooses, and the log says."""
        grant = self.grants.get(s.key)
        if grant is None or grant.address is None:
            return None
        if self.pools[g.name].claim(s.key, grant.address):
            return grant.address
        self.log.add("MODECFG", 3, f"RADIUS Framed-IP-Address {grant.address} of {s.user} is"
                     f" not free in group {g.name}'s pool {g.address_pool}: assigning one from"
                     " the pool", peer=f"{s.public_ip}:{s.public_port}", group=g.name,
                     user=s.user)
        return None

    def _modecfg(self, g: GroupConfig, addr: ipaddress.IPv4Address) -> ev.ModeConfig:
        c = self.config.concentrator
        return ev.ModeConfig(
            address=addr, dns=list(g.dns or c.dns), nbns=list(g.nbns or c.nbns),
            banner=g.banner or c.banner, default_domain=g.default_domain or c.default_domain,
            split_include=list(g.split_include or []), split_dns=list(g.split_dns),
            save_password=g.save_password, pfs=g.pfs,
            application_version=f"vpnhub {__version__}")

    def _on_virtual(self, sa: IkeSA) -> bool:
        """The SA began on the cluster's virtual address (issue 17)."""
        return self.virtual_address is not None \
            and sa.config.local_address == self.virtual_address

    def _virtual_without_natt(self, sa: IkeSA, s: SessionView) -> None:
        """A child SA set up on the cluster's virtual address goes by ESP in UDP 4500 to
        and from that address ("natt-virtual", docs/CLUSTER.md "Redirect"); raw ESP there
        is not carried (the raw socket is bound to the member's own address): logged
        once per session."""
        if not s.children:
            self.log.add("CLUSTER", 2, f"tunnel of {s.user or sa.xauth_user} set up on the"
                         f" virtual cluster address {self.virtual_address} without NAT-T,"
                         " whose ESP is not carried there: it passes no traffic; connect this"
                         " client (it follows no redirect) to a member's own address",
                         peer=f"{sa.remote[0]}:{sa.remote[1]}", group=s.group, user=s.user)

    def _esp_path(self, sa: IkeSA, s: SessionView, encapsulation: int, *,
                  warn: bool = False) -> tuple[bool, str, Address]:
        """How a child SA's ESP travels: (UDP-encapsulated, the data plane's transport
        name, the peer's address). `warn`: say once if the cluster's virtual address
        cannot carry it."""
        udp = encapsulation != EncapsulationMode.TUNNEL
        transport = s.transport if s.transport in ("ctcp", "cisco-udp") else ""
        if self._on_virtual(sa):
            if udp and not transport:
                transport = TRANSPORT_NATT_VIRTUAL
            elif warn:
                self._virtual_without_natt(sa, s)
        # plain ESP (no NAT-T) goes over the raw socket: the peer has no port; IPsec over
        # UDP: the client's translated port is learnt from its first authentic ESP
        peer = sa.remote if udp or transport == "ctcp" else (sa.remote[0], 0)
        if transport == "cisco-udp":
            peer = (sa.remote[0], self.udp_port)
        return udp, transport, peer

    def _on_ChildSAInboundReady(self, sa: IkeSA, e: ev.ChildSAInboundReady) -> None:
        """Quick Mode message 2 goes out: our inbound SA goes in first, so that the
        initiator's ESP right after its message 3 meets a known SPI (RFC 2409 5.5;
        vpnhub/ike/quick.py). The outbound SA waits for message 3."""
        s = self._session(sa)
        assert self.dataplane is not None
        udp, transport, peer = self._esp_path(sa, s, e.encapsulation)
        allowed = str(s.assigned_ip) if s.assigned_ip else None
        self.dataplane.add_inbound(
            SaParams(e.spi_in, e.transform, e.key_length or None, e.auth or None,
                     e.enc_key_in, e.auth_key_in),
            peer, udp_encap=udp, allowed_src=allowed, transport=transport)
        self.spi_owner[e.spi_in] = s.key  # its ESP is the session's (liveness, NAT moves)

    def _on_ChildSAAbandoned(self, sa: IkeSA, e: ev.ChildSAAbandoned) -> None:
        """No valid message 3 came: the inbound SA installed with message 2 goes (the
        engine counted and logged why)."""
        if self.dataplane is not None:
            self.dataplane.remove_sa(e.spi_in)
        self.spi_owner.pop(e.spi_in, None)

    def _on_ChildSAEstablished(self, sa: IkeSA, e: ev.ChildSAEstablished) -> None:
        s = self._session(sa)
        assert self.dataplane is not None
        udp, transport, peer = self._esp_path(sa, s, e.encapsulation, warn=True)
        key_len = e.key_length or None
        auth = e.auth or None
        inbound = SaParams(e.spi_in, e.transform, key_len, auth, e.enc_key_in, e.auth_key_in)
        outbound = SaParams(e.spi_out, e.transform, key_len, auth, e.enc_key_out, e.auth_key_out)
        allowed = str(s.assigned_ip) if s.assigned_ip else None
        if s.lan_to_lan and not s.children:
            self.sessions.logged_in(s)
        if transport == "cisco-udp":
            self.sessions.update(s.key, udp_server_port=self.udp_port)
        dst = allowed or str(e.remote_ts)
        dp = self.dataplane
        self.spi_owner[e.spi_in] = s.key
        self.spi_owner[e.spi_out] = s.key

        def add_outbound() -> None:
            if self.spi_owner.get(e.spi_out) != s.key:
                return  # deleted while message 3 waited in a send queue: no orphan SA
            dp.add_outbound(outbound, peer, udp_encap=udp, dst=dst, transport=transport)

        with dp.batch():  # one wake-up of the data-plane thread (issue 13)
            if not e.inbound_early:  # else installed with message 2 (ChildSAInboundReady)
                dp.add_inbound(inbound, peer, udp_encap=udp, allowed_src=allowed,
                               transport=transport)
            if e.we_initiated:
                # message 3 is still among the SA's datagrams (the driver sends them
                # after the events) and ESP leaves by another socket (a worker's) or
                # thread: the new SA's first packet could reach the peer first, and
                # vpnc drops it ("unknown spi"). Our inbound SA is in before message 3
                self._driver().after_sent(sa, add_outbound)
            else:  # the responder: message 3 came, the initiator sends on it already
                add_outbound()
            if sa.local_behind_nat and udp:
                dp.set_keepalive(sa.remote, float(self.config.concentrator.natt_keepalive),
                                 # from the virtual address too (issue 17)
                                 transport if transport == TRANSPORT_NATT_VIRTUAL else "")
        self.sessions.add_child(s.key, ChildInfo(
            e.spi_in, e.spi_out, e.transform, e.key_length, e.auth, e.encapsulation,
            str(e.local_ts), str(e.remote_ts), e.lifetime, self.wall(), pfs_group=e.pfs_group))
        self.sessions.update(s.key, nat_t=udp and not transport)
        self.sessions.update_peak()
        if e.rekey_of is not None:
            old = s.children.get(e.rekey_of)
            if old is not None:
                self.log.add("IPSEC", 5, f"rekeyed: {old.spi_in:08x} replaced by {e.spi_in:08x}",
                             group=s.group, user=s.user)
        if not udp and not transport and (sa.remote_behind_nat or s.diagnosis):
            self.log.add("NATT", 3, s.diagnosis or "IPsec SA without NAT-T for a peer behind"
                         " NAT: no data will pass", peer=f"{sa.remote[0]}:{sa.remote[1]}",
                         group=s.group, user=s.user)

    def _on_ChildSADeleted(self, sa: IkeSA, e: ev.ChildSADeleted) -> None:
        if self.dataplane is not None:
            with self.dataplane.batch():
                self.dataplane.remove_sa(e.spi_in)
                self.dataplane.remove_sa(e.spi_out)
        self.spi_owner.pop(e.spi_in, None)
        self.spi_owner.pop(e.spi_out, None)
        self.sessions.remove_child((sa.icookie, sa.rcookie), e.spi_in)

    def _on_PeerEndpointChanged(self, sa: IkeSA, e: ev.PeerEndpointChanged) -> None:
        s = self.sessions.get((sa.icookie, sa.rcookie))
        if self.dataplane is not None and (s is None or s.nat_t):
            self.dataplane.update_peer(e.old, e.new)
        if s is not None:
            self.sessions.update(s.key, public_ip=e.new[0], public_port=e.new[1])

    def _on_SADeleted(self, sa: IkeSA, e: ev.SADeleted) -> None:
        key = (sa.icookie, sa.rcookie)
        s = self.sessions.end(key, e.reason)  # accounting's Stop reads the grant: then gone
        self.grants.pop(key, None)
        self._deadline_of.pop(key, None)
        if s is not None:
            self._state_changed()
            if s.assigned_ip is not None and s.group in self.pools:
                self.pools[s.group].release(key)
            if s.user:
                self.log.add("SESSION", 4, f"session of {s.user} ended: {e.reason}",
                             peer=f"{s.public_ip}:{s.public_port}", group=s.group, user=s.user)
        self.endpoint.remove(sa)

    # -------------------------------------------------------- state record
    def restore_state(self, pid: int | None = None) -> None:
        """What the previous run left: tell what a crash lost, restore the Session
        Summary's counters, hold the lost sessions' addresses; then start this run's."""
        store = self.config.log.store
        if store is None:
            self.log.add("SESSION", 4, "no event store ([log] store = \"\"): no state"
                         " record is kept, a crash will leave no trace of its sessions")
            return
        path = state_path(store)
        wall = self.wall()
        self._state = StateKeeper(path, os.getpid() if pid is None else pid, wall)
        try:
            prev = read_state(path)
        except StateError as e:
            self.log.add("SESSION", 2, f"state record {path} unusable ({e}): how the previous"
                         " run ended, its sessions and its counters are unknown; counters"
                         " start at 0")
            prev = None
        else:
            if prev is None:
                self.log.add("SESSION", 5, f"no state record {path} yet: first start")
        if prev is not None:
            self.sessions.restore_counters(prev.peak, prev.cumulative)
            # a clock that jumped must not stretch a hold beyond lost_address_hold
            longest = wall + self.config.limits.lost_address_hold
            self._held = [dataclasses.replace(h, until=min(h.until, longest))
                          for h in prev.held if h.until > wall]
            if not prev.clean:
                self._report_crash(prev, wall)
            self._held = [h for h in self._held
                          if h.group in self.pools and self.pools[h.group].hold(h.address, h.user)]
        self.write_state(self.clock())

    def _report_crash(self, prev: RunRecord, wall: float) -> None:
        """Severity 2 for the crash, 3 per lost session; their addresses are held for
        `lost_address_hold` seconds after the crashed run was last seen (its clients
        notice by DPD and log in again), except from their own user."""
        self.log.add("SESSION", 2, f"the previous run (pid {prev.pid}, started"
                     f" {_utc(prev.started)}) ended unexpectedly: last seen"
                     f" {_utc(prev.heartbeat)}, no clean shutdown; {len(prev.sessions)}"
                     " session(s) lost")
        until = min(prev.heartbeat, wall) + self.config.limits.lost_address_hold
        for s in prev.sessions:
            held = ""
            if s.assigned_ip and until > wall and s.group in self.pools:
                self._held.append(HeldAddress(s.group, s.assigned_ip, s.user, until))
                held = f"; {s.assigned_ip} kept from other users until {_utc(until)}"
            self.log.add("SESSION", 3, f"session lost with the previous run: {s.user}"
                         f" (group {s.group}), address {s.assigned_ip or '-'}, public"
                         f" {s.public_ip}:{s.public_port}, logged in {_utc(s.login_time)}{held}",
                         peer=f"{s.public_ip}:{s.public_port}", group=s.group, user=s.user)

    @property
    def held(self) -> list[HeldAddress]:
        """Pool addresses held for the users of sessions a crash lost."""
        return list(self._held)

    def _state_changed(self) -> None:
        if self._state is not None:
            self._state.changed()

    def _keep_state(self, now: float, *, write: bool = True) -> None:
        """From the timer loop: release expired holds; write the record when due."""
        if self._held:
            wall = self.wall()
            for h in [h for h in self._held if h.until <= wall]:
                self._held.remove(h)
                if h.group in self.pools:
                    self.pools[h.group].unhold(h.address)
                self._state_changed()
        if write and self.state_due(now):
            self.write_state(now)

    def state_due(self, now: float) -> bool:
        """Whether the state record is to be written now (a change, or the heartbeat)."""
        return self._state is not None and self._state.due(now)

    def write_state(self, now: float, *, clean: bool = False) -> None:
        for _ in self.write_state_in_steps(now, clean=clean):
            pass

    def write_state_in_steps(self, now: float, *, clean: bool = False,
                             step: int = STATE_STEP) -> Iterator[None]:
        """`write_state`, yielding after every `step` sessions of the field copy: the
        shell gives the event loop its turn there. The record is one of the sessions
        as they were at some moment of the walk: one that ends meanwhile may be in it,
        and its end makes the next record due (the change is not lost)."""
        state = self._state
        if state is None:
            return
        if clean:  # the clean record is the last one: after any background write
            self._log_state_error(state.stop_background())
        changes = state.changes
        # On the loop only the fields, by attrgetter in C (~6 ms for 10,000 sessions;
        # building the SessionRecords here cost 18-36 ms): the writer's thread makes
        # the records (staterecord.session_records), issue 13.
        sessions = self.sessions.all()
        raw: list[RawSession] = []
        for start in range(0, len(sessions), step):
            if start:
                yield
            raw += [t[:6] for t in map(_STATE_FIELDS, sessions[start:start + step])
                    if t[6] or (t[7] and t[8])]
        summary = self.sessions.summary()
        record = RunRecord(pid=state.pid, started=state.started,
                           heartbeat=self.wall(), clean=clean, peak=summary["peak"],
                           cumulative=summary["cumulative"], held=tuple(self._held))
        self._log_state_error(state.write(record, now, raw))
        if state.changes != changes:  # changed during the walk: not in this record
            state.changed()

    def state_in_background(self) -> None:
        """The shell's event loop: serialise and write the record on a thread (issue 13)."""
        if self._state is not None:
            self._state.start_background()

    def _log_state_error(self, error: str | None) -> None:
        if error:
            self.log.add("SESSION", 2, error + ": a crash now would leave no trace of"
                         " this run's sessions")


_IKE_HASH = {"md5": 1, "sha1": 2, "sha256": 4, "sha384": 5, "sha512": 6}
_ESP_AUTH = {"md5": 1, "sha1": 2, "sha256": 5, "sha384": 6, "sha512": 7}


def pooled_dh_groups(config: Config) -> tuple[int, ...]:
    """The DH groups worth computing ahead: those of every group's ike_proposals; for
    a group without them, 14 (the engine's default) and 2 with allow_legacy_crypto
    (what Cisco clients propose with a group password); and the PFS groups of the
    esp_proposals (Quick Mode takes its pair from the same pool, ike.quick)."""
    found: set[int] = set()
    for g in config.groups:
        if g.ike_proposals is None:
            found.update((14, 2) if config.concentrator.allow_legacy_crypto else (14,))
        else:
            found.update(p.dh_group for p in g.ike_proposals if p.dh_group)
        found.update(p.dh_group for p in g.esp_proposals or () if p.dh_group)
    return tuple(sorted(found))


def dh_pool_sizes(config: Config) -> dict[int, int]:
    """Pairs kept ready per pooled DH group: `[limits] dh_pool_size` when set (the
    operator's override, the same for each group), else sized for a login storm per
    group and bounded by max_sessions (ike.dhpool.default_size; docs/CONFIG.md)."""
    lim = config.limits
    if lim.dh_pool_size is not None:
        return dict.fromkeys(pooled_dh_groups(config), lim.dh_pool_size)
    # Quick Mode with PFS draws a second pair per tunnel (RFC 2409 5.5): Unity `pfs`
    # tells the client to propose it, an esp_proposal with a DH group requires it
    pfs = any(g.pfs or any(p.dh_group for p in g.esp_proposals or ()) for g in config.groups)
    return {group: default_size(group, lim.max_sessions, 2 if pfs else 1)
            for group in pooled_dh_groups(config)}


def group_policy(base: Policy, g: GroupConfig | LanToLanConfig) -> Policy:
    """The concentrator's policy narrowed to a group's ike_proposals / esp_proposals."""
    ike = esp = None
    if g.ike_proposals is not None:
        ike = tuple((7, p.key_bits or 0, _IKE_HASH[p.integrity], p.dh_group or 0)
                    if p.cipher == "aes" else (5, 0, _IKE_HASH[p.integrity], p.dh_group or 0)
                    for p in g.ike_proposals)
    if g.esp_proposals is not None:
        esp = tuple((12, p.key_bits or 0, _ESP_AUTH[p.integrity], p.dh_group or -1)
                    if p.cipher == "aes" else (3, 0, _ESP_AUTH[p.integrity], p.dh_group or -1)
                    for p in g.esp_proposals)
    return dataclasses.replace(base, ike_only=ike, esp_only=esp)


def _refusal(result: AuthResult) -> str:
    """The XAUTH status message's reason for a refused login."""
    return {"unknown_user": "unknown user", "bad_password": "wrong password",
            "locked_out": "account locked after too many failures",
            "wrong_group": "user not in this group"}.get(str(result.reason),
                                                       str(result.reason))


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def follows_redirects(sa: SaState) -> bool:
    """Whether a client follows the Cisco load-balance notify (issue 17): vpnc and the
    Cisco VPN client do (both announce Cisco Unity); strongSwan does not, with or
    without Unity (the lab's sets cisco_unity = yes). strongSwan announces IKE
    fragmentation by default and vpnc never does; a client that announces it counts
    only with a Cisco client's own vendor ID (vpnc's message 3 one, the VPN 3000
    client's), and never with strongSwan's vendor ID."""
    if not sa.peer_unity or any("strongSwan" in v for v in sa.peer_vendor_ids):
        return False
    return sa.peer_cisco_client or not sa.peer_frag


def _client_type(vendor_ids: tuple[str, ...], app_version: str) -> str:
    if app_version:
        return app_version
    for name in vendor_ids:
        if "strongSwan" in name:
            return name
    return "Cisco Unity client" if "Cisco Unity" in vendor_ids else ""


