"""`vpnhub connect`: the client, an asyncio driver around the initiator IKE SA.

What the Cisco VPN Client does for the source document's PCs: Aggressive Mode
with the group password, XAUTH, Mode Config (pull), Quick Mode, then ESP in
UDP 4500 when a NAT is in the path ("transparent tunneling"). Everything the
tunnel changes on the system (TUN device, routes, DNS) is undone on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, assert_never

from vpnhub import __version__
from vpnhub.admin import start_server
from vpnhub.esp.sa import SaParams
from vpnhub.ike import events as ev
from vpnhub.ike.driver import DriverFault, InitiatorTable
from vpnhub.ike.pkiseam import SigCredentials
from vpnhub.ike.policy import Policy
from vpnhub.ike.sa import Address, IkeConfig, IkeSA
from vpnhub.ike.transitions import Role, State
from vpnhub.ike.transport import Transport
from vpnhub.net.asyncdriver import AsyncIkeDriver, SendBytes
from vpnhub.net.dataplane import (
    ControlInbox,
    Dataplane,
    open_cisco_udp_socket,
    open_esp_socket,
    open_udp_socket,
)
from vpnhub.net.messages import (
    CTCP_CLOSED_BY_CONTROL,
    AddInbound,
    AddOutbound,
    CtcpClosed,
    IkeDatagram,
    RemoveSA,
    SaExhausted,
    SetKeepalive,
)
from vpnhub.net.sendqueue import SendQueue
from vpnhub.net.tun import TunDevice, ip
from vpnhub.secret import Secret
from vpnhub.wire.constants import EncapsulationMode

# After a phase 2 rekey, how long the client keeps sending on the old SA (still valid
# until its lifetime ends) before the new one: longer than a concentrator that installs
# its inbound SA only after our message 3 takes to do so (about a millisecond; more
# under load). vpnhub's concentrator now installs it with its message 2 (as strongSwan
# and libreswan do, vpnhub/ike/quick.py), so against it no wait would be needed; it is
# kept for concentrators that do not (an older vpnhub during an upgrade, others): it
# costs nothing, as the old SA is valid for the last 15 % of its lifetime.
REKEY_SWITCH_DELAY = 0.2

# exit codes (documented in README)
EXIT_OK, EXIT_AUTH, EXIT_CONFIG, EXIT_NAT, EXIT_PEER = 0, 1, 2, 3, 4
DEFAULT_STATUS_DIR = Path("/run/vpnhub")
RESOLV_CONF = Path("/etc/resolv.conf")
# issue 17: load-balancing redirects followed in a row before giving up (a loop
# between cluster members that each send the client on would never end)
MAX_REDIRECTS = 3
RFC1918 = [ipaddress.IPv4Network(n) for n in
           ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")]


class Profile(Protocol):
    """What the driver needs of a client profile (TOML or Cisco .pcf)."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def group(self) -> str: ...
    @property
    def group_password(self) -> Secret: ...
    @property
    def transparent_tunneling(self) -> bool: ...
    @property
    def dh_group(self) -> int: ...
    @property
    def allow_legacy(self) -> bool: ...
    @property
    def ike_mode(self) -> str: ...
    @property
    def dpd_interval(self) -> int: ...
    @property
    def force_keepalives(self) -> bool: ...
    @property
    def tunnel_interface(self) -> str: ...
    @property
    def auth(self) -> str: ...  # "psk", "hybrid" or "rsa" (issue 14)


@dataclass
class Options:
    user: str
    password: Secret
    verbose: bool = False
    no_dns: bool = False
    reconnect: bool = False
    status_socket: Path | None = None
    log_file: Path | None = None
    local_port: int = 500
    natt_port: int = 4500
    connect_timeout: float = 30.0
    # issue 14: the profile's certificates (client/certs.py); None: group PSK
    signer: SigCredentials | None = None
    # issue 16: IFF_VNET_HDR and TUNSETOFFLOAD on the TUN (vpnhub/net/tunoffload.py)
    tun_offload: bool = True
    print: Callable[[str], None] = field(default=lambda s: print(s, flush=True))


@dataclass
class Status:
    state: str = "connecting"
    connected_since: float | None = None
    concentrator: str = ""
    assigned_address: str = ""
    tunnel_port: int = 0
    local_behind_nat: bool = False
    remote_behind_nat: bool = False
    natt_version: str = ""
    encryption: str = ""
    authentication: str = ""
    ike: dict[str, Any] = field(default_factory=dict)
    routes: list[str] = field(default_factory=list)
    dns: list[str] = field(default_factory=list)
    banner: str = ""
    diagnosis: str = ""
    transport: str = ""
    counters: dict[str, int] = field(default_factory=dict)
    # issue 17: "redirected by the concentrator to X (load balancing)", one per redirect
    redirects: list[str] = field(default_factory=list)


class ClientError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class VpnClient:
    def __init__(self, profile: Profile, opts: Options) -> None:
        self.profile = profile
        self.opts = opts
        self.status = Status(concentrator=profile.host)
        self.sa: IkeSA | None = None  # the current IKE SA
        # every IKE SA: the current one and those a phase 1 rekey replaces; the
        # driver runs their timers and routes messages to them by cookie
        self.table = InitiatorTable()
        self.ike: AsyncIkeDriver | None = None
        self.tun: TunDevice | None = None
        self.dataplane: Dataplane | None = None
        self.sock500: socket.socket | None = None
        # IKE that meets a full send buffer waits here (per socket fd) until writable
        self._send_queues: dict[int, SendQueue] = {}
        self._routes: list[str] = []
        self._resolv_backup: str | None = None
        self._stop = asyncio.Event()
        self._result: ClientError | None = None
        self._log_fh = opts.log_file.open("a") if opts.log_file else None
        self._child_spis: dict[int, int] = {}  # spi_in -> spi_out
        self._exhausted: set[int] = set()  # outbound SPIs out of sequence numbers
        self.server: tuple[str, int] = (profile.host, profile.port)
        # "natt": NAT-T, else Cisco IPsec over UDP if offered; "udp": only the latter;
        # "tcp": Cisco IPsec over TCP (cTCP) to tcp_port, IKE included
        self.mode = str(getattr(profile, "tunneling_mode", "natt")) \
            if profile.transparent_tunneling else "esp"
        self.tcp_port = int(getattr(profile, "tcp_port", 10000))
        self.cisco_udp_peer: tuple[str, int] | None = None
        self._redirects = 0  # followed in this connection (MAX_REDIRECTS)

    # ------------------------------------------------------------- output
    def say(self, text: str, *, always: bool = True) -> None:
        line = time.strftime("%H:%M:%S ") + text
        if self._log_fh is not None:
            self._log_fh.write(line + "\n")
            self._log_fh.flush()
        if always:
            self.opts.print(text)

    def _log_event(self, e: ev.LogLine) -> None:
        # -v shows the Cisco-client log (every message, vendor IDs, NAT, SPIs)
        verbose_limit = 9 if self.opts.verbose else 5
        if e.severity <= verbose_limit:
            self.say(f"{e.cls:9s} {e.text}")
        elif self._log_fh is not None:
            self.say(f"{e.cls:9s} {e.text}", always=False)

    # --------------------------------------------------------- lifecycle
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        code = EXIT_OK
        try:
            while True:
                code = await self._one_connection()
                if not self.opts.reconnect or self._stop.is_set() or code in (
                        EXIT_AUTH, EXIT_CONFIG, EXIT_NAT):
                    break
                self.say("reconnecting in 5 s (--reconnect)")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), 5)
                if self._stop.is_set():
                    break
        finally:
            if self._log_fh is not None:
                self._log_fh.close()
        return code

    async def _one_connection(self) -> int:
        self._stop_conn = asyncio.Event()
        self._result = None
        # every connect starts at the profile's gateway (a cluster's virtual address)
        self.status = Status(concentrator=self.profile.host)
        self._redirects = 0
        status_server = None
        try:
            self._open_sockets()
            status_server = await self._start_status()
            self.table = InitiatorTable()
            self.ike = AsyncIkeDriver(self.table, self._on_event, self._senders(),
                                      on_error=self._on_fault)
            now = time.monotonic()
            if self.mode == "tcp":
                self._ensure_dataplane().ctcp_connect((self.server[0], self.tcp_port))
                self.sa = IkeSA(self._ike_config(), Role.INITIATOR,
                                (self.server[0], self.tcp_port), now, local_port=self.tcp_port)
            else:
                self.sa = IkeSA(self._ike_config(), Role.INITIATOR, self.server, now)
            self.say(f"connecting to {self.profile.host} as {self.opts.user}"
                     f" (group {self.profile.group}), transparent tunneling"
                     f" {'on' if self.profile.transparent_tunneling else 'off'}")
            self.table.add(self.sa)
            self.sa.initiate(now)
            self.ike.service(self.sa)
            ticker = asyncio.create_task(self._ticker())
            stop = asyncio.create_task(self._stop.wait())
            conn = asyncio.create_task(self._stop_conn.wait())
            await asyncio.wait({stop, conn}, return_when=asyncio.FIRST_COMPLETED)
            ticker.cancel()
            stop.cancel()
            conn.cancel()
            if self._result is not None:
                self.say(f"ERROR: {self._result}")
                return self._result.code
            return EXIT_OK
        finally:
            self._disconnect()
            if self.ike is not None:
                self.ike.close()
            if status_server is not None:
                status_server.close()
                with contextlib.suppress(OSError):
                    self._status_path().unlink()
            self._close()

    def _ike_config(self) -> IkeConfig:
        p = self.profile
        policy = Policy(allow_legacy=p.allow_legacy, dh_group=p.dh_group)
        return IkeConfig(local_address=self._local_address(), policy=policy,
                         mode=str(p.ike_mode), group_name=p.group, psk=p.group_password,
                         natt=p.transparent_tunneling and self.mode == "natt", xauth=True,
                         transport="tcp" if self.mode == "tcp" else "udp",
                         log_severity=13 if self.opts.log_file else (
                             9 if self.opts.verbose else 5),
                         dpd_interval=float(p.dpd_interval),
                         application_version=f"vpnhub {__version__}:Linux",
                         auth=p.auth, pki=self.opts.signer, follow_redirects=True)

    def _local_address(self) -> str:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(self.server)
            return str(s.getsockname()[0])

    def _open_sockets(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = (socket.gethostbyname(self.profile.host), self.profile.port)
        self.sock500 = _udp(self.opts.local_port)
        loop.add_reader(self.sock500.fileno(), self._on_udp500)

    def _fail(self, code: int, message: str) -> None:
        if self._result is None:
            self._result = ClientError(code, message)
        self._stop_conn.set()

    def _disconnect(self) -> None:
        """Tell the concentrator (DELETE), undo routes, DNS and the TUN device."""
        now = time.monotonic()
        for sa in self.table:
            if sa.state is State.ESTABLISHED and self.ike is not None:
                sa.delete(now, "client disconnect")
                self.ike.service(sa)
        if self.status.state == "connected":
            self.say("disconnected")
        self.status.state = "disconnected"
        self._restore_dns()
        if self.tun is not None:
            for r in self._routes:
                with contextlib.suppress(Exception):
                    ip("route", "del", r)
            self._routes.clear()
        self._close_send_queues()  # before their sockets close
        if self.dataplane is not None:
            self.dataplane.close()
            for s in (self.dataplane.udp, self.dataplane.esp, self.dataplane.cisco_udp):
                if s is not None:
                    s.close()
            self.dataplane = None
        if self.tun is not None:
            self.tun.close()
            with contextlib.suppress(Exception):
                ip("link", "del", self.tun.name)
            self.tun = None

    def _close(self) -> None:
        self._close_send_queues()
        if self.sock500 is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self.sock500.fileno())
            self.sock500.close()
            self.sock500 = None

    # ------------------------------------------------------------ network
    def _on_udp500(self) -> None:
        assert self.sock500 is not None
        while True:
            try:
                data, addr = self.sock500.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self._ike_in(data, (addr[0], addr[1]), 500, Transport.IKE)

    def _drain_inbox(self) -> None:
        if self.dataplane is None:
            return
        for e in self.dataplane.events():
            if isinstance(e, IkeDatagram):
                if e.transport is Transport.CTCP:
                    self._ike_in(e.message, e.addr, self.tcp_port, Transport.CTCP)
                else:
                    self._ike_in(e.message, e.addr, 4500, Transport.NATT)
            elif isinstance(e, SaExhausted):
                self._sa_exhausted(e.spi)
            elif isinstance(e, CtcpClosed):
                self._ctcp_closed(e.addr, e.reason)
            # PeerMoved: the client does not follow the concentrator to a new address;
            # OuterFragmentation and DebugLine: the client keeps no IPSEC/IPSECDBG log.

    def _sa_exhausted(self, spi_out: int) -> None:
        """Outbound SA ``spi_out`` used up its sequence numbers: rekey it now.

        RFC 4303 3.3.3: the counter must not cycle, a new SA must be negotiated
        first; the data plane drops what it cannot send meanwhile and repeats the
        event for every such packet, so a rekey is started once per SA.
        """
        if spi_out in self._exhausted:
            return
        self._exhausted.add(spi_out)
        spi_in = next((i for i, o in self._child_spis.items() if o == spi_out), None)
        sa = self.sa
        child = sa.children.get(spi_in) if sa is not None and spi_in is not None else None
        if sa is None or child is None or not sa.established:
            self._fail(EXIT_PEER, f"IPsec SA {spi_out:08x} used up its sequence numbers and"
                       " cannot be rekeyed: reconnecting")
            return
        self.say(f"IPsec SA {spi_out:08x} used up its sequence numbers: rekeying it")
        child.rekeyed = True  # the lifetime rekey (quick.check_child_lifetimes) is done here
        sa.start_quick_mode(time.monotonic(), child.local_ts, child.remote_ts,
                            rekey_of=child.spi_in)
        if self.ike is not None:
            self.ike.service(sa)

    def _ctcp_closed(self, addr: tuple[str, int], reason: str) -> None:
        """The IPsec over TCP connection ended: without it there is no tunnel (as for a
        dead peer, RFC 3706: the session is over, --reconnect starts a new one)."""
        if self.mode != "tcp" or addr != (self.server[0], self.tcp_port):
            return
        if reason == CTCP_CLOSED_BY_CONTROL:  # we closed it (disconnecting)
            return
        self._fail(EXIT_PEER, f"the IPsec over TCP connection to the concentrator"
                   f" {addr[0]}:{addr[1]} closed ({reason})")

    def _ike_in(self, data: bytes, addr: tuple[str, int], local_port: int,
                transport: Transport) -> None:
        if self.ike is not None:
            self.ike.receive(data, addr, local_port, transport)

    def _senders(self) -> dict[Transport, SendBytes]:
        """Where the driver sends each transport's IKE datagrams."""
        return {Transport.IKE: self._send500, Transport.NATT: self._send4500,
                Transport.CTCP: self._send_ctcp}

    def _send500(self, data: bytes, remote: tuple[str, int]) -> None:
        assert self.sock500 is not None
        self._send_queue(self.sock500, self.sock500.sendto).send(data, remote)

    def _send4500(self, data: bytes, remote: tuple[str, int]) -> None:
        dp = self._ensure_dataplane()  # the data plane owns UDP 4500 (non-ESP marker)
        assert dp.udp is not None
        self._send_queue(dp.udp, dp.send_ike).send(data, remote)

    def _send_ctcp(self, data: bytes, remote: tuple[str, int]) -> None:
        self._ensure_dataplane().send_ike(data, remote, transport=Transport.CTCP)

    def _send_queue(self, sock: socket.socket,
                    send: Callable[[bytes, tuple[str, int]], object]) -> SendQueue:
        q = self._send_queues.get(sock.fileno())
        if q is None:
            q = SendQueue(asyncio.get_running_loop(), sock.fileno(), send,
                          on_drops=lambda n: self.say(f"IKE send buffer full: {n} message(s)"
                                                      " dropped so far"))
            self._send_queues[sock.fileno()] = q
        return q

    def _close_send_queues(self) -> None:
        for q in self._send_queues.values():
            q.close()
        self._send_queues.clear()

    def _ensure_dataplane(self) -> Dataplane:
        """The TUN and the ESP sockets (the data plane owns UDP 4500)."""
        if self.dataplane is not None:
            return self.dataplane
        loop = asyncio.get_running_loop()
        self.tun = TunDevice(self.profile.tunnel_interface, offload=self.opts.tun_offload)
        if self.opts.tun_offload and not self.tun.offloads:
            self.say(f"TUN offloads refused ({self.tun.offload_refused}): one packet per I/O",
                     always=self.opts.verbose)

        def wake() -> None:
            loop.call_soon_threadsafe(self._drain_inbox)

        try:
            udp = open_udp_socket("0.0.0.0", self.opts.natt_port)
        except OSError:
            udp = open_udp_socket("0.0.0.0", 0)  # another client holds 4500 here
        esp = cisco = None
        with contextlib.suppress(OSError):
            esp = open_esp_socket()
        if self.mode in ("natt", "udp"):
            try:
                cisco = open_cisco_udp_socket("0.0.0.0", 10000)
            except OSError:
                cisco = open_cisco_udp_socket("0.0.0.0", 0)
        # Fragment before encapsulating: home and hotel NAT devices often drop IP
        # fragments, so the outer packets must fit (the VPN 3000's recommended policy).
        self.dataplane = Dataplane(self.tun, udp=udp, esp=esp, cisco_udp=cisco,
                                   inbox=ControlInbox(notify=wake),
                                   frag_policy="before-encryption")
        self.dataplane.start()
        return self.dataplane

    async def _ticker(self) -> None:
        last_stats = 0.0
        started = time.monotonic()
        while True:
            await asyncio.sleep(0.25)  # IKE timers are the driver's (exact), not polled
            now = time.monotonic()
            if self.status.state == "connecting" and now - started > self.opts.connect_timeout:
                self._fail(EXIT_PEER, f"no answer from the concentrator {self.status.concentrator}"
                           f" within {self.opts.connect_timeout:.0f} s")
            if now - last_stats >= 2.0:
                last_stats = now
                await self._refresh_counters()

    async def _refresh_counters(self) -> None:
        if self.dataplane is None:
            return
        try:
            snap = await self.dataplane.stats()
        except OSError:  # the data plane was closed under us: the connection is ending
            return
        c = {"packets_encrypted": 0, "packets_decrypted": 0, "bytes_out": 0, "bytes_in": 0}
        for s in snap.sas:
            if s.direction == "out":
                c["packets_encrypted"] += s.packets_out
                c["bytes_out"] += s.bytes_out
            else:
                c["packets_decrypted"] += s.packets_in
                c["bytes_in"] += s.bytes_in
        drops = snap.drops_total
        c["packets_discarded"] = sum(v for k, v in drops.items() if k != "no_sa")
        # Cisco's "bypassed": cleartext packets not sent into the tunnel. With
        # split tunneling they never reach our TUN; what reaches it without an
        # SA is counted here.
        c["packets_bypassed"] = int(drops.get("no_sa", 0))
        c["nat_keepalives_sent"] = sum(p.keepalives_tx for p in snap.peers)
        c["nat_keepalives_received"] = snap.keepalive_rx
        if self.sa is not None and c["packets_decrypted"] > self.status.counters.get(
                "packets_decrypted", 0):
            self.sa.note_traffic(time.monotonic())
        self.status.counters = c

    # ------------------------------------------------------------- events
    def _on_fault(self, f: DriverFault) -> None:
        if f.stage == "send":
            self.say(f.describe())
        elif isinstance(f.error, ClientError):  # a handler's verdict on the session
            self._fail(f.error.code, str(f.error))
        else:
            self._fail(EXIT_PEER, f.describe())

    def _on_event(self, sa: IkeSA, e: ev.Event, now: float) -> None:
        match e:
            case ev.LogLine():
                self._log_event(e)
            case ev.NatDetected():
                self._on_NatDetected(sa, e)
            case ev.NatTraversalRefused():
                self._on_NatTraversalRefused(sa, e)
            case ev.Phase1Established():
                self._on_Phase1Established(sa, e)
            case ev.XauthRequested():
                self._on_XauthRequested(sa, e)
            case ev.XauthCompleted():
                self._on_XauthCompleted(sa, e)
            case ev.ModeConfigReceived():
                self._on_ModeConfigReceived(sa, e)
            case ev.ChildSAInboundReady():
                self._on_ChildSAInboundReady(sa, e)
            case ev.ChildSAEstablished():
                self._on_ChildSAEstablished(sa, e)
            case ev.ChildSAAbandoned():
                if self.dataplane is not None:  # the engine logged why
                    self.dataplane.submit(RemoveSA(e.spi_in))
            case ev.ChildSADeleted():
                self._on_ChildSADeleted(sa, e)
            case ev.Phase1RekeyDue():
                self._on_Phase1RekeyDue(sa, e)
            case ev.DeadPeer():
                self._on_DeadPeer(sa, e)
            case ev.NegotiationFailed():
                self._on_NegotiationFailed(sa, e)
            case ev.SADeleted():
                self._on_SADeleted(sa, e)
            case ev.RedirectRequested():
                self._on_RedirectRequested(sa, e)
            case ev.RedirectRefused():
                pass  # dropped and counted by the engine, said by its LogLine (IKE 3)
            # responder-side events never reach an initiator; the engine answers
            # DPD and keepalives and follows the peer by itself
            case (ev.XauthCredentials() | ev.ModeConfigRequested() | ev.PeerEndpointChanged()
                  | ev.DpdAck() | ev.KeepaliveReceived() | ev.Redirected()):
                pass
            case _:
                assert_never(e)

    def _on_NatDetected(self, sa: IkeSA, e: ev.NatDetected) -> None:
        self.status.local_behind_nat = e.local_behind_nat
        self.status.remote_behind_nat = e.remote_behind_nat
        self.status.natt_version = e.variant if e.natt_in_use else ""
        if e.variant == "none":  # no NAT-D exchanged: nothing could be detected
            self.say("NAT detection: not possible, the concentrator does not offer NAT-T")
            return
        natt = f"in use ({e.variant})" if e.natt_in_use else "not used"
        self.say(f"NAT detection: this end {'IS' if e.local_behind_nat else 'is NOT'} behind a"
                 f" NAT device; NAT-T {natt}")

    def _on_NatTraversalRefused(self, sa: IkeSA, e: ev.NatTraversalRefused) -> None:
        self.status.diagnosis = e.reason
        if self.mode in ("natt", "esp"):  # IPsec over UDP/TCP may still cross the NAT
            raise ClientError(EXIT_NAT, e.reason)

    def _on_Phase1Established(self, sa: IkeSA, e: ev.Phase1Established) -> None:
        self.status.ike = {"encryption": e.encryption, "hash": e.hash, "dh_group": e.group,
                           "mode": e.mode, "lifetime": e.lifetime}
        self.status.authentication = e.auth_method

    def _check_nat_without_natt(self, sa: IkeSA) -> None:
        """The concentrator offered no NAT-T, so nothing proved a NAT; but a
        private source address talking to a public concentrator is behind one."""
        if sa.natt_in_use or self.mode in ("tcp", "esp") or self.cisco_udp_peer is not None:
            return
        local = ipaddress.IPv4Address(sa.config.local_address)
        remote = ipaddress.IPv4Address(self.server[0])
        if any(local in n for n in RFC1918) and not any(remote in n for n in RFC1918):
            raise ClientError(EXIT_NAT, (
                f"this end ({local}) IS behind a NAT device but the concentrator"
                f" {remote} did not offer NAT-T (IPsec over NAT-T is disabled there): the"
                " tunnel would come up but no data would pass. Ask the administrator to"
                " enable NAT Transparency (IPsec over NAT-T) on the concentrator."))

    def _on_XauthRequested(self, sa: IkeSA, e: ev.XauthRequested) -> None:
        if e.message:
            self.say(f"concentrator says: {e.message}")
        sa.xauth_reply(self.opts.user, self.opts.password, time.monotonic())

    def _on_XauthCompleted(self, sa: IkeSA, e: ev.XauthCompleted) -> None:
        if not e.ok:
            raise ClientError(EXIT_AUTH, "authentication failed: the concentrator refused"
                              f" user {self.opts.user!r} (wrong user name or password)")
        if sa.replaces is not None:  # a phase 1 rekey: take over the children
            old, sa.replaces = sa.replaces, None
            sa.adopt(old, time.monotonic())
            old.delete(time.monotonic(), "replaced by a new phase 1")  # ISAKMP SA only
            assert self.ike is not None
            self.ike.service(old)
            self.say("phase 1 rekeyed: a new IKE SA carries the tunnel on")

    def _on_ModeConfigReceived(self, sa: IkeSA, e: ev.ModeConfigReceived) -> None:
        cfg = e.config
        assert cfg.address is not None
        if cfg.natt_port and not sa.natt_in_use and self.mode in ("natt", "udp"):
            self.cisco_udp_peer = (self.server[0], cfg.natt_port)
            self.say(f"IPsec over UDP: the concentrator offers port {cfg.natt_port}")
        self._check_nat_without_natt(sa)
        self.status.assigned_address = str(cfg.address)
        if cfg.banner:
            self.say("---- banner ----\n" + cfg.banner + "\n----------------")
        self._ensure_dataplane()
        assert self.tun is not None
        self.tun.configure(f"{cfg.address}/32", mtu=1400)
        routes = [str(n) for n in cfg.split_include] or ["0.0.0.0/1", "128.0.0.0/1"]
        if not cfg.split_include:
            # tunnel everything, but keep the concentrator reachable outside it
            gw = _route_to(self.server[0])
            if gw:
                ip("route", "replace", f"{self.server[0]}/32", *gw)
                self._routes.append(f"{self.server[0]}/32")
        for r in routes:
            self.tun.add_route(r, src=str(cfg.address))
            self._routes.append(r)
        self.status.routes = routes
        self.status.dns = [str(d) for d in cfg.dns]
        self._apply_dns(cfg)
        sa.start_quick_mode(time.monotonic())

    def _esp_path(self, sa: IkeSA, encapsulation: int) -> tuple[bool, str, Address]:
        """(UDP-encapsulated, the data plane's transport name, the peer) of a child SA."""
        udp = encapsulation != EncapsulationMode.TUNNEL
        peer = sa.remote if udp else (sa.remote[0], 0)
        transport = ""
        if self.mode == "tcp":
            transport, peer = "ctcp", sa.remote
        elif self.cisco_udp_peer is not None and not udp:
            transport, peer = "cisco-udp", self.cisco_udp_peer
        return udp, transport, peer

    def _on_ChildSAInboundReady(self, sa: IkeSA, e: ev.ChildSAInboundReady) -> None:
        """We answer the concentrator's Quick Mode (it rekeys a child at 92 % of its
        lifetime when we did not): our inbound SA goes in with message 2, as the
        concentrator may send on it right after its message 3 (RFC 2409 5.5)."""
        dp = self._ensure_dataplane()
        udp, transport, peer = self._esp_path(sa, e.encapsulation)
        dp.submit(AddInbound(SaParams(e.spi_in, e.transform, e.key_length or None,
                                      e.auth or None, e.enc_key_in, e.auth_key_in),
                             peer, udp_encap=udp, transport=transport))

    def _on_ChildSAEstablished(self, sa: IkeSA, e: ev.ChildSAEstablished) -> None:
        dp = self._ensure_dataplane()
        udp, transport, peer = self._esp_path(sa, e.encapsulation)
        kl, auth = e.key_length or None, e.auth or None
        if not e.inbound_early:  # else installed with message 2 (ChildSAInboundReady)
            dp.submit(AddInbound(SaParams(e.spi_in, e.transform, kl, auth, e.enc_key_in,
                                          e.auth_key_in), peer, udp_encap=udp,
                                 transport=transport))
        outbound = AddOutbound(SaParams(e.spi_out, e.transform, kl, auth, e.enc_key_out,
                                        e.auth_key_out), peer, udp_encap=udp, dst=None,
                               transport=transport)
        if self._child_spis:
            # A rekey: the old SA stays valid until its lifetime ends, so keep sending on
            # it a little (REKEY_SWITCH_DELAY: a concentrator that installs its inbound
            # SA only once our message 3 checks out, as vpnhub did before it installed
            # it with its message 2, would meet a packet right behind message 3 with
            # an unknown SPI; vpnc waits ~10 ms the same way).
            spi_in = e.spi_in
            asyncio.get_running_loop().call_later(
                REKEY_SWITCH_DELAY, self._switch_outbound, spi_in, outbound)
        else:
            dp.submit(outbound)
        if (udp or transport == "cisco-udp") and (
                sa.local_behind_nat or self.profile.force_keepalives or transport):
            dp.submit(SetKeepalive(peer, 20.0, transport=transport))
        self._child_spis[e.spi_in] = e.spi_out
        from vpnhub.crypto.suites import esp_suite_name

        self.status.encryption = esp_suite_name(e.transform, kl, auth)
        self.status.tunnel_port = 4500 if udp else (peer[1] if transport else 0)
        self.status.transport = {"ctcp": f"IPsec over TCP port {self.tcp_port}",
                                 "cisco-udp": f"IPsec over UDP port {peer[1]}"}.get(
            transport, "IPsec over NAT-T (UDP 4500)" if udp else "IPsec (ESP)")
        if self.status.state != "connected":
            self.status.state = "connected"
            self.status.connected_since = time.time()
            self.say(f"connected: address {self.status.assigned_address}, tunnel port"
                     f" {self.status.tunnel_port} ({self.status.transport}),"
                     f" {self.status.encryption}; routes {', '.join(self.status.routes)}")

    def _switch_outbound(self, spi_in: int, outbound: AddOutbound) -> None:
        """Send on a rekeyed child's new SA (REKEY_SWITCH_DELAY after it was made),
        unless it is gone meanwhile (deleted, or the client stopped)."""
        if self.dataplane is not None and spi_in in self._child_spis:
            self.dataplane.submit(outbound)

    def _on_ChildSADeleted(self, sa: IkeSA, e: ev.ChildSADeleted) -> None:
        if self.dataplane is not None:
            self.dataplane.submit(RemoveSA(e.spi_in))
            self.dataplane.submit(RemoveSA(e.spi_out))
        self._child_spis.pop(e.spi_in, None)

    def _on_Phase1RekeyDue(self, sa: IkeSA, e: ev.Phase1RekeyDue) -> None:
        new = sa.rekey_phase1(time.monotonic())
        self.table.add(new)  # the old SA stays in the table until it is deleted
        self.sa = new
        assert self.ike is not None
        self.ike.service(new)

    def _on_DeadPeer(self, sa: IkeSA, e: ev.DeadPeer) -> None:
        if sa is self.sa:
            self._fail(EXIT_PEER, f"the concentrator is not answering: {e.reason}")

    def _on_NegotiationFailed(self, sa: IkeSA, e: ev.NegotiationFailed) -> None:
        if sa is self.sa:
            code = EXIT_AUTH if e.error in ("hash_mismatch", "decryption_failed") else EXIT_PEER
            hint = (" (check the group name and group password)" if code == EXIT_AUTH else "")
            self._fail(code, f"negotiation failed: {e.detail}{hint}")

    def _on_RedirectRequested(self, sa: IkeSA, e: ev.RedirectRequested) -> None:
        """Issue 17: the cluster's master sent us to a member (Cisco notify 40501). As
        vpnc does (vpnc.c do_phase2_notice_check): the phase 1 SA is gone (the engine
        ended it, no DELETE), and Aggressive Mode, XAUTH and Mode Config start again at
        that address on UDP 500 with the same credentials; NAT-T floats as usual. The
        profile's gateway stays what the next connect or --reconnect goes to."""
        if sa is not self.sa:
            return
        if sa.replaces is not None:  # a phase 1 rekey must not move the tunnel
            self._fail(EXIT_PEER, f"the concentrator redirected a phase 1 rekey to"
                       f" {e.target}: reconnecting")
            return
        self._redirects += 1
        if self._redirects > MAX_REDIRECTS:
            self._fail(EXIT_PEER, f"redirected {self._redirects} times in a row by the"
                       f" concentrators' load balancing (last to {e.target}, after"
                       f" {', '.join(self.status.redirects)}): giving up, the cluster is"
                       " sending the client round in a loop")
            return
        text = f"redirected by the concentrator to {e.target} (load balancing)"
        self.say(text)
        self.status.redirects.append(text)
        self._start_at(str(e.target))

    def _start_at(self, address: str) -> None:
        """A new phase 1 with the concentrator at `address` (a redirect's target)."""
        self.server = (address, 500)
        self.status.concentrator = address
        self.cisco_udp_peer = None
        now = time.monotonic()
        if self.mode == "tcp":
            self._ensure_dataplane().ctcp_connect((address, self.tcp_port))
            new = IkeSA(self._ike_config(), Role.INITIATOR, (address, self.tcp_port), now,
                        local_port=self.tcp_port)
        else:
            new = IkeSA(self._ike_config(), Role.INITIATOR, self.server, now)
        self.say(f"connecting to {address} as {self.opts.user} (group {self.profile.group})")
        self.table.add(new)
        self.sa = new
        new.initiate(now)
        assert self.ike is not None
        self.ike.service(new)

    def _on_SADeleted(self, sa: IkeSA, e: ev.SADeleted) -> None:
        if sa is self.sa and e.by_peer:
            self._fail(EXIT_PEER, f"the concentrator ended the session: {e.reason}")

    # ---------------------------------------------------------------- DNS
    def _apply_dns(self, cfg: ev.ModeConfig) -> None:
        if not cfg.dns:
            return
        servers = " ".join(str(d) for d in cfg.dns)
        if self.opts.no_dns:
            self.say(f"DNS servers (not applied, --no-dns): {servers}"
                     + (f"; domain {cfg.default_domain}" if cfg.default_domain else ""))
            return
        try:
            self._resolv_backup = RESOLV_CONF.read_text()
            lines = ["# written by vpnhub connect; the original is restored on exit"]
            if cfg.default_domain:
                lines.append(f"search {cfg.default_domain}")
            lines += [f"nameserver {d}" for d in cfg.dns]
            RESOLV_CONF.write_text("\n".join(lines) + "\n")
            self.say(f"DNS servers set in {RESOLV_CONF}: {servers}")
        except OSError as e:
            self._resolv_backup = None
            self.say(f"cannot set DNS ({e}); servers: {servers}")

    def _restore_dns(self) -> None:
        if self._resolv_backup is not None:
            with contextlib.suppress(OSError):
                RESOLV_CONF.write_text(self._resolv_backup)
            self._resolv_backup = None

    # ------------------------------------------------------------- status
    def _status_path(self) -> Path:
        if self.opts.status_socket is not None:
            return self.opts.status_socket
        return DEFAULT_STATUS_DIR / f"client-{self.profile.tunnel_interface}.sock"

    async def _start_status(self) -> asyncio.AbstractServer | None:
        path = self._status_path()
        try:
            return await start_server(path, self._status_request)
        except OSError as e:
            self.say(f"no status socket at {path}: {e}")
            return None

    async def _status_request(self, req: dict[str, Any]) -> dict[str, Any]:
        await self._refresh_counters()  # any request: the answer is the status
        return self.status_dict()

    def status_dict(self) -> dict[str, Any]:
        s = self.status
        since = s.connected_since
        return {
            "state": s.state,
            "connected_since": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(since))
            if since else None,
            "duration": int(time.time() - since) if since else 0,
            "concentrator": s.concentrator,
            "gateway": self.profile.host,
            "redirects": s.redirects,
            "assigned_address": s.assigned_address,
            "tunnel_port": s.tunnel_port,
            "nat": ("this end IS behind a NAT device" if s.local_behind_nat
                    else "this end is NOT behind a NAT device"),
            "local_behind_nat": s.local_behind_nat,
            "remote_behind_nat": s.remote_behind_nat,
            "natt_version": s.natt_version,
            "transport": s.transport,
            "encryption": s.encryption,
            "authentication": s.authentication,
            "ike": s.ike,
            "routes": s.routes,
            "dns": s.dns,
            "diagnosis": s.diagnosis,
            **{k: s.counters.get(k, 0) for k in (
                "bytes_in", "bytes_out", "packets_encrypted", "packets_decrypted",
                "packets_discarded", "packets_bypassed", "nat_keepalives_sent",
                "nat_keepalives_received")},
        }


def _udp(port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(("0.0.0.0", port))
    except OSError:
        s.bind(("0.0.0.0", 0))  # port 500 taken (another client): any port will do
    s.setblocking(False)
    return s


def _route_to(address: str) -> list[str]:
    """("via", gw, "dev", dev) of the current route to `address`, for a host route."""
    try:
        out = ip("-o", "route", "get", address)
    except Exception:
        return []
    words = out.split()
    res: list[str] = []
    for key in ("via", "dev"):
        if key in words:
            res += [key, words[words.index(key) + 1]]
    return res


def format_status(st: dict[str, Any]) -> str:
    """Like the Cisco VPN Client's status window."""
    lines = [
        f"Connection state:       {st.get('state')}",
        f"Connected since:        {st.get('connected_since') or '-'}"
        f"  ({st.get('duration', 0)} s)",
        f"Concentrator:           {st.get('concentrator')}",
        *(f"Redirected:             {r}" for r in st.get("redirects") or []),
        f"Client address:         {st.get('assigned_address') or '-'}",
        f"Tunnel port:            {st.get('tunnel_port')}"
        f"   ({'NAT-T in use' if st.get('tunnel_port') == 4500 else 'no NAT-T'})",
        f"Transport:              {st.get('transport') or '-'}",
        f"NAT:                    {st.get('nat')}",
        f"Encryption:             {st.get('encryption') or '-'}",
        f"Authentication:         {st.get('authentication') or '-'}",
        f"Routes through tunnel:  {', '.join(st.get('routes') or []) or '-'}",
        f"Bytes in / out:         {st.get('bytes_in', 0)} / {st.get('bytes_out', 0)}",
        f"Packets encrypted:      {st.get('packets_encrypted', 0)}",
        f"Packets decrypted:      {st.get('packets_decrypted', 0)}",
        f"Packets discarded:      {st.get('packets_discarded', 0)}",
        f"Packets bypassed:       {st.get('packets_bypassed', 0)}",
    ]
    if st.get("diagnosis"):
        lines.append(f"Problem:                {st['diagnosis']}")
    return "\n".join(lines)
