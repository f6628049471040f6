"""An in-memory network for driving both IKE roles: clients, PATs, one concentrator.

Each client may sit behind a PAT that rewrites its address and port, as the
PIX of the source document does; the concentrator sees only the PAT's
public address and a per-flow port. The engine is driven by the one IKE driver
(`vpnhub.ike.driver.IkeDriver`) with simulated time: one per client over an
`InitiatorTable`, one for the concentrator's `IkeEndpoint`; their `send`
callbacks put datagrams on an in-memory wire that `_step` delivers. Tiny
event handlers answer the engine the way the concentrator and the client do.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import assert_never

from vpnhub.ike import events as ev
from vpnhub.ike.driver import DriverFault, IkeDriver, InitiatorTable
from vpnhub.ike.endpoint import IkeEndpoint, Limits
from vpnhub.ike.pkiseam import SigCredentials
from vpnhub.ike.policy import Policy
from vpnhub.ike.sa import Datagram, IkeConfig, IkeSA
from vpnhub.ike.state import SaState
from vpnhub.ike.transitions import Role
from vpnhub.secret import Secret

SERVER_IP = "203.0.113.50"
GROUP = "ciscovpn"
PSK = "labgroupsecret"
USERS = {"vpnclient1": "userpass1", "vpnclient2": "userpass2", "vpnclient3": "userpass3"}
POOL = ipaddress.IPv4Network("10.40.1.0/24")
LAN = ipaddress.IPv4Network("192.168.2.0/24")


@dataclass
class Client:
    sa: IkeSA
    local_ip: str
    user: str
    password: str
    pat_ip: str | None = None  # public address of its PAT, None = no NAT
    ports: dict[int, int] = field(default_factory=dict)  # local port -> PAT port
    events: list[ev.Event] = field(default_factory=list)
    children: list[ev.ChildSAEstablished] = field(default_factory=list)
    auto_quick_mode: bool = True
    table: InitiatorTable = field(default_factory=InitiatorTable)
    driver: IkeDriver = field(init=False)

    def public(self, local_port: int, port_alloc: itertools.count[int]) -> tuple[str, int]:
        if self.pat_ip is None:
            return self.local_ip, local_port
        if local_port not in self.ports:
            self.ports[local_port] = next(port_alloc)
        return self.pat_ip, self.ports[local_port]


class Lab:
    """Moves datagrams between clients and the concentrator until all is quiet."""

    def __init__(self, server_policy: Policy | None = None, *, server_natt: bool = True,
                 server_psk: str = PSK, limits: Limits | None = None,
                 server_xauth: bool = True, server_local_ip: str = SERVER_IP,
                 group_policy: Policy | None = None) -> None:
        self.group_policy = group_policy
        # issue 14: the concentrator's certificate (SigCredentials) and methods
        self.server_pki: SigCredentials | None = None
        self.server_methods: tuple[int, ...] | None = None
        # issue 14: GROUP is a configured group without a pre-shared key (no "psk")
        self.server_keyless = False
        self.server_ts_check: Callable[..., str | None] | None = None
        # issue 17: the concentrator on a cluster's virtual address (IkeConfig.redirect_for)
        self.server_redirect: Callable[[SaState], ipaddress.IPv4Address | None] | None = None
        # server_local_ip != SERVER_IP puts the concentrator behind a static NAT
        self.server_local_ip = server_local_ip
        self.now = 1000.0
        self.server_policy = server_policy or Policy()
        self.server_natt = server_natt
        self.server_psk = server_psk
        self.server_xauth = server_xauth
        self.endpoint = IkeEndpoint(self._server_config, limits)
        self.clients: list[Client] = []
        self.server_events: list[tuple[IkeSA, ev.Event]] = []
        self.pool = iter(POOL.hosts())
        self.port_alloc = itertools.count(1025)
        self.lost: list[bytes] = []
        self.drop_next_to_server = 0
        self._deleted: list[IkeSA] = []
        # the wire: what the drivers sent, delivered by _step
        self._to_server: list[tuple[Client, Datagram]] = []
        self._to_client: list[Datagram] = []
        self.server = IkeDriver(self.endpoint, self._server_event,
                                lambda sa, d: self._to_client.append(d), on_error=self._fault)

    def _server_config(self, remote: tuple[str, int], local_port: int = 500) -> IkeConfig:
        def lookup(id_type: int, data: bytes, remote: tuple[str, int]) -> Secret | None:
            if (id_type == 0 or data == GROUP.encode()) and not self.server_keyless:
                return Secret(self.server_psk)
            return None

        def keyless(id_type: int, data: bytes) -> bool:
            return self.server_keyless and data == GROUP.encode()

        return IkeConfig(local_address=self.server_local_ip, policy=self.server_policy,
                         psk_lookup=lookup, natt=self.server_natt, xauth=self.server_xauth,
                         policy_for=lambda group: self.group_policy,
                         ts_check=self.server_ts_check, pki=self.server_pki,
                         auth_methods_for=self._methods if self.server_methods else None,
                         group_for_cert=lambda ous, method: GROUP,
                         group_without_psk=keyless, redirect_for=self.server_redirect)

    def _methods(self, group_id: bytes | None) -> tuple[int, ...]:
        assert self.server_methods is not None
        return self.server_methods

    def add_client(self, *, user: str = "vpnclient1", password: str | None = None,
                   local_ip: str = "10.10.10.2", pat_ip: str | None = "203.0.113.78",
                   policy: Policy | None = None, mode: str = "aggressive",
                   psk: str = PSK, natt: bool = True, force_natt: bool = False,
                   xauth: bool = True, auth: str = "psk",
                   pki: SigCredentials | None = None,
                   follow_redirects: bool = False) -> Client:
        cfg = IkeConfig(local_address=local_ip, policy=policy or Policy(), mode=mode,
                        group_name=GROUP, psk=Secret(psk), natt=natt, force_natt=force_natt,
                        xauth=xauth, auth=auth, pki=pki, follow_redirects=follow_redirects)
        sa = IkeSA(cfg, Role.INITIATOR, (SERVER_IP, 500), self.now)
        c = Client(sa, local_ip, user, password if password is not None else USERS[user],
                   pat_ip)
        c.table.add(sa)
        c.driver = IkeDriver(c.table, lambda sa, e, now: self._client_event(c, sa, e, now),
                             lambda sa, d: self._to_server.append((c, d)),
                             on_error=self._fault)
        self.clients.append(c)
        return c

    # ------------------------------------------------------------- moving
    def run(self, rounds: int = 50) -> None:
        for _ in range(rounds):
            if not self._step():
                return

    def _step(self) -> bool:
        """One round trip on the wire: the clients' queued datagrams reach the
        concentrator, whose answers reach the clients (answers to those wait for
        the next step)."""
        for c in self.clients:
            if c.sa not in c.table:  # a test swapped in another SA (a phase 1 rekey)
                c.table.add(c.sa)
            c.driver.service(c.sa, self.now)  # what tests called into the SA directly
        moved = bool(self._to_server)
        out, self._to_server = self._to_server, []
        for c, d in out:
            if self.drop_next_to_server:
                self.drop_next_to_server -= 1
                self.lost.append(d.data)
                continue
            src = c.public(d.local_port, self.port_alloc)
            self.server.receive(d.data, src, d.remote[1], d.transport, self.now)
        # SAs tests fed through lab.endpoint or deleted directly
        for sa in [*self.endpoint, *self._deleted]:
            self.server.service(sa, self.now)
        self._deleted.clear()
        moved = moved or bool(self._to_client)
        back, self._to_client = self._to_client, []
        for d in back:
            self._deliver_to_client(d)
        # drivers may have queued answers while handling events
        return moved or bool(self._to_server) or any(c.sa._out for c in self.clients) or any(
            sa._out for sa in self.endpoint)

    def _deliver_to_client(self, d: Datagram) -> None:
        dest, src = d.remote, (SERVER_IP, d.local_port)
        for c in self.clients:
            if c.pat_ip is None and dest == (c.local_ip, dest[1]):
                c.driver.receive(d.data, src, dest[1], d.transport, self.now)
                return
            if c.pat_ip == dest[0]:
                for local, public in c.ports.items():
                    if public == dest[1]:
                        c.driver.receive(d.data, src, local, d.transport, self.now)
                        return
        self.lost.append(d.data)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for c in self.clients:
            c.table.touch(c.sa)  # tests call into client SAs without a driver
            c.driver.timer(self.now)
        self.server.timer(self.now)
        self.run()

    # ------------------------------------------------------------- drivers
    def _client_event(self, c: Client, sa: IkeSA, e: ev.Event, now: float) -> None:
        c.events.append(e)
        match e:
            case ev.XauthRequested():
                sa.xauth_reply(c.user, Secret(c.password), now)
            case ev.ModeConfigReceived():
                if c.auto_quick_mode:
                    sa.start_quick_mode(now)
            case ev.ChildSAEstablished():
                c.children.append(e)
            case (ev.LogLine() | ev.NatDetected() | ev.NatTraversalRefused()
                  | ev.Phase1Established() | ev.XauthCredentials() | ev.XauthCompleted()
                  | ev.ModeConfigRequested() | ev.ChildSADeleted() | ev.PeerEndpointChanged()
                  | ev.DpdAck() | ev.KeepaliveReceived() | ev.DeadPeer() | ev.SADeleted()
                  | ev.NegotiationFailed() | ev.Phase1RekeyDue() | ev.Redirected()
                  | ev.RedirectRequested() | ev.RedirectRefused() | ev.ChildSAInboundReady()
                  | ev.ChildSAAbandoned()):
                pass  # recorded in c.events for the tests
            case _:
                assert_never(e)

    def _server_event(self, sa: IkeSA, e: ev.Event, now: float) -> None:
        self.server_events.append((sa, e))
        match e:
            case ev.XauthCredentials():
                ok = USERS.get(e.user) is not None and e.password.equals(USERS[e.user])
                sa.xauth_result(ok, now)
            case ev.ModeConfigRequested():
                cfg = ev.ModeConfig(address=next(self.pool), dns=[ipaddress.IPv4Address(
                    "192.168.2.10")], split_include=[LAN], banner="Welcome to vpnhub",
                    save_password=False, pfs=False)
                sa.modecfg_reply(cfg, now)
            case (ev.LogLine() | ev.NatDetected() | ev.NatTraversalRefused()
                  | ev.Phase1Established() | ev.XauthRequested() | ev.XauthCompleted()
                  | ev.ModeConfigReceived() | ev.ChildSAEstablished() | ev.ChildSADeleted()
                  | ev.PeerEndpointChanged() | ev.DpdAck() | ev.KeepaliveReceived()
                  | ev.DeadPeer() | ev.SADeleted() | ev.NegotiationFailed()
                  | ev.Phase1RekeyDue() | ev.Redirected() | ev.RedirectRequested()
                  | ev.RedirectRefused() | ev.ChildSAInboundReady() | ev.ChildSAAbandoned()):
                pass  # recorded in server_events for the tests
            case _:
                assert_never(e)

    @staticmethod
    def _fault(f: DriverFault) -> None:
        raise AssertionError(f.describe())  # a test's handler broke: say so loudly

    # ------------------------------------------------------------- queries
    def server_sa_for(self, c: Client) -> IkeSA | None:
        return self.endpoint.get(c.sa.icookie, c.sa.rcookie)

    def server_children(self) -> list[ev.ChildSAEstablished]:
        return [e for _, e in self.server_events if isinstance(e, ev.ChildSAEstablished)]

    def server_event_types(self) -> list[str]:
        return [type(e).__name__ for _, e in self.server_events]
