"""The concentrator core (`ConcentratorCore`) driven in memory, with simulated time.

No sockets, no TUN, no root, no event loop. Clients are real initiator
`IkeSA`s (our engine as the client), each either behind a PAT that gives
every local port of every client its own public port (the lab's
"masquerade random") or on a public address of its own. What the core sends
is routed back by its destination address and port; SA commands land in
the fake data plane (`vpnhub.net.fake_dataplane`), which keeps the installed
SAs. XAUTH goes through the configured users behind the real lock-out and
slow-down wrapper (`vpnhub.auth.lockout.Lockout`): its coroutine runs on the
rig's small scheduler, and a refusal's slow-down waits in simulated time
(`settle()` lets it pass).
"""

from __future__ import annotations

import io
import itertools
import time
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass, field
from typing import Any

from vpnhub.auth.api import AuthRequest, AuthResult
from vpnhub.auth.lockout import Lockout, LockoutPolicy
from vpnhub.auth.users import UserTable
from vpnhub.concentrator.core import ConcentratorCore
from vpnhub.config import Config, parse_config
from vpnhub.eventlog import EventFilter, EventLog, EventStore, Record
from vpnhub.ike import events as ev
from vpnhub.ike.driver import DriverFault, IkeDriver, InitiatorTable
from vpnhub.ike.policy import Policy
from vpnhub.ike.sa import Address, Datagram, IkeConfig, IkeSA
from vpnhub.ike.transitions import Role, State
from vpnhub.ike.transport import Transport
from vpnhub.net.fake_dataplane import FakeDataplane
from vpnhub.net.messages import AddInbound, AddOutbound, Event
from vpnhub.secret import Secret

SERVER = "203.0.113.50"
PAT = "203.0.113.78"
GROUP = "vpngroup"
PSK = "labgroupsecret"
USERS = {"vpnuser1": "userpass1", "vpnuser2": "userpass2"}
START = 1000.0  # the simulated monotonic clock at the start


# The smallest whole-shell configuration (`Concentrator` with its admin socket at
# `{sock}`), for the tests of the process shell rather than of the core
SHELL_CONFIG = """\
[concentrator]
public_address = "203.0.113.50"
private_networks = ["192.168.2.0/24"]
[admin]
socket = "{sock}"
[[group]]
name = "g"
psk = "secret"
address_pool = "10.40.1.0/24"
"""


def config_text(*, group_extra: str = "", log_extra: str = "", store: str = "",
                natt: bool = True, pool: str = "10.40.1.0/24", limits_extra: str = "",
                concentrator_extra: str = "", psk: str = PSK,
                users: dict[str, str] | None = None, nat_extra: str = "") -> str:
    users = USERS if users is None else users
    listed = "".join(f'[[user]]\nname = "{u}"\npassword = "{p}"\ngroup = "{GROUP}"\n\n'
                     for u, p in users.items())
    return (f'[concentrator]\npublic_address = "{SERVER}"\n'
            f'private_networks = ["192.168.2.0/24"]\n{concentrator_extra}\n\n'
            f'[admin]\nsocket = "/nonexistent/admin.sock"\n\n'
            f'[nat_transparency]\nipsec_over_natt = {"true" if natt else "false"}\n'
            f'{nat_extra}\n\n'
            f'[limits]\nxauth_retry_delay = 0.1\n{limits_extra}\n\n'
            f'[log]\nstore = "{store}"\n{log_extra}\n'
            f'[[group]]\nname = "{GROUP}"\npsk = "{psk}"\naddress_pool = "{pool}"\n'
            f'{group_extra}\n\n{listed}')


class LogClock:
    """The event log's wall clock, moved by the test (rate-limit windows)."""

    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


def stored_log(config: Config, clock: LogClock, out: io.StringIO) -> EventLog:
    """An event log with its SQLite store ([log] store), on a clock of the test's."""
    assert config.log.store is not None
    store = EventStore(config.log.store, config.log.store_max_events)
    log = EventLog(console_severity=5, keep_severity=5, out=out, clock=clock, store=store)
    log.hide([PSK, *USERS.values()])
    return log


@dataclass
class Pc:
    """A client PC: its IKE SA(s) and driver, where it sits, what it saw and sent."""

    sa: IkeSA  # the current one (a phase 1 rekey replaces it)
    user: str
    password: str
    local_ip: str
    pat_ip: str | None  # its PAT's public address; None: a public address of its own
    table: InitiatorTable = field(default_factory=InitiatorTable)
    driver: IkeDriver | None = None  # the one IKE driver loop, over `table`
    ports: dict[int, int] = field(default_factory=dict)  # local port -> PAT port
    events: list[ev.Event] = field(default_factory=list)
    sent: list[bytes] = field(default_factory=list)  # every datagram it sent (captures)
    replaces: IkeSA | None = None  # the SA the current one takes over once logged in

    @property
    def public_ip(self) -> str:
        return self.pat_ip or self.local_ip

    @property
    def up(self) -> bool:
        return any(isinstance(e, ev.ChildSAEstablished) for e in self.events)

    @property
    def address(self) -> str | None:
        got = [e for e in self.events if isinstance(e, ev.ModeConfigReceived)]
        return str(got[-1].config.address) if got else None


class InlineUsers:
    """The configured users (the `UserTable` of `LocalUsers`), checked inline: the
    rig has no event loop to run `LocalUsers`' worker thread from."""

    def __init__(self, config: Config) -> None:
        self.table = UserTable(config.users)

    async def authenticate(self, request: AuthRequest) -> AuthResult:
        return self.table.check(request.user, request.password.reveal(), request.group)


class _SimDriver:
    """The core's driver loop (`IkeDriver`) on the rig's simulated clock."""

    def __init__(self, rig: CoreRig, driver: IkeDriver) -> None:
        self.rig, self.driver = rig, driver

    def receive(self, data: bytes, remote: Address, local_port: int,
                transport: Transport) -> IkeSA | None:
        return self.driver.receive(data, remote, local_port, transport, self.rig.now)

    def service(self, sa: IkeSA) -> None:
        self.driver.service(sa, self.rig.now)

    def after_sent(self, sa: IkeSA, action: Callable[[], None]) -> None:
        self.driver.after_sent(sa, action)


class _Wait:
    """Awaited by a coroutine on the rig's scheduler: yields until `until`."""

    def __init__(self, rig: CoreRig, until: float) -> None:
        self.rig, self.until = rig, until

    def __await__(self) -> Generator[None, None, None]:
        while self.rig.now < self.until:
            yield


class CoreRig:
    def __init__(self, config: Config, *, log_clock: LogClock | None = None) -> None:
        """With `log_clock`, the event log keeps its store ([log] store) on that clock."""
        self.now = START
        self.wall_skew = 0.0  # seconds added to the wall clock (hold expiry)
        self.console = io.StringIO()
        self.log_clock = log_clock
        self.log = (EventLog(console_severity=5, keep_severity=5, out=self.console)
                    if log_clock is None else stored_log(config, log_clock, self.console))
        self.dp = FakeDataplane()
        self.sent: list[Datagram] = []  # everything the core sent, kept for the asserts
        self.faults: list[DriverFault] = []  # raised in a driver loop (clients' or core's)
        self._outbox: list[Datagram] = []  # from the core, to be delivered
        self._inbox: list[tuple[bytes, Address, Transport]] = []  # to the core
        self._tasks: list[Coroutine[Any, Any, None]] = []
        self._waits: list[float] = []
        auth = Lockout(InlineUsers(config), LockoutPolicy.from_limits(config.limits),
                       self.clock, sleep=self._sleep)
        self.core = ConcentratorCore(config, self.log, authenticator=auth, dataplane=self.dp,
                                     clock=self.clock, wall=self.wall,
                                     spawn=self._tasks.append)
        core = self.core
        self.driver = IkeDriver(core.endpoint, core.on_event, lambda _sa, d: self._send(d),
                                on_error=self._fault(core.on_fault),
                                on_notice=core.on_notice)
        core.bind(_SimDriver(self, self.driver))
        self.pcs: list[Pc] = []
        # who gets a datagram, found in O(1) (a shutdown benchmark runs 10,000 PCs):
        # PCs with an address of their own by that address, PAT ports by (PAT, port)
        self._direct: dict[str, Pc] = {}
        self._mapped: dict[Address, tuple[Pc, int]] = {}
        self._console_seen = 0  # what settle() has checked of the console already
        self._ports = itertools.count(20000)
        # issue 17: the clients' datagrams reach the cluster's virtual address
        self.virtual = False
        self._hosts = itertools.count(2)

    @classmethod
    def from_text(cls, text: str, **kw: Any) -> CoreRig:
        return cls(parse_config(text), **kw)

    # ------------------------------------------------------------- clocks
    def clock(self) -> float:
        return self.now

    def wall(self) -> float:
        return time.time() + self.wall_skew

    async def _sleep(self, delay: float) -> None:
        self._waits.append(self.now + delay)
        await _Wait(self, self.now + delay)

    # ------------------------------------------------------------- clients
    def add_pc(self, user: str = "vpnuser1", password: str | None = None, *,
               behind_pat: bool = True, natt: bool = True, initial_contact: bool = False,
               psk: str = PSK, local_ip: str | None = None,
               application_version: str = "", ctcp_port: int = 0, group: str = GROUP) -> Pc:
        """Without INITIAL-CONTACT by default (strongSwan with ``unique = never``).
        `ctcp_port`: IPsec over TCP to that port (as `vpnhub connect` in tcp mode)."""
        ip = local_ip or (f"10.10.10.{next(self._hosts)}" if behind_pat
                          else f"198.51.100.{next(self._hosts)}")
        cfg = IkeConfig(local_address=ip, policy=Policy(), mode="aggressive",
                        group_name=group, psk=Secret(psk), natt=natt, xauth=True,
                        send_initial_contact=initial_contact,
                        application_version=application_version,
                        transport="tcp" if ctcp_port else "udp")
        sa = (IkeSA(cfg, Role.INITIATOR, (SERVER, ctcp_port), self.now, local_port=ctcp_port)
              if ctcp_port else IkeSA(cfg, Role.INITIATOR, (SERVER, 500), self.now))
        pw = password if password is not None else USERS.get(user, "wrong")
        pc = Pc(sa, user, pw, ip, PAT if behind_pat else None)
        pc.driver = IkeDriver(pc.table, self._client_event(pc), self._client_send(pc),
                              on_error=self._fault(None))
        self.pcs.append(pc)
        if pc.pat_ip is None:
            self._direct.setdefault(ip, pc)
        return pc

    def connect(self, pc: Pc) -> Pc:
        """Starts its phase 1 and moves everything (XAUTH slow-down included)."""
        pc.sa.initiate(self.now)
        self._start(pc, pc.sa)
        self.settle()
        return pc

    def rekey_phase1(self, pc: Pc) -> None:
        """What the client does on Phase1RekeyDue: a new phase 1 from the same ports."""
        old = pc.sa
        pc.sa = old.rekey_phase1(self.now)
        pc.replaces = old
        self._start(pc, pc.sa)

    def _start(self, pc: Pc, sa: IkeSA) -> None:
        assert pc.driver is not None
        pc.table.add(sa)
        pc.driver.service(sa, self.now)

    def inject(self, data: bytes, source: Address, transport: Transport = Transport.IKE
               ) -> None:
        """A datagram from anyone to the core's receive path (UDP 500 by default)."""
        self.core.receive(data, source, transport)

    # ------------------------------------------------------------- moving
    def settle(self, rounds: int = 200) -> None:
        """Move datagrams and answers until all is quiet; waits (XAUTH slow-down) are
        let pass in simulated time, no further than the next one."""
        for _ in range(rounds):
            if self._step():
                continue
            waits = [t for t in self._waits if t > self.now]
            if not self._tasks or not waits:
                break
            self.now = min(waits)  # only a slow-down is pending: its time comes
        errors = self._new_lines("internal error")
        assert not errors, errors  # the core's belt and braces must never be needed
        assert not self.faults, self.faults

    def advance(self, seconds: float, *, max_steps: int = 100_000) -> None:
        """Simulated time passes: every due timer (clients' and core's) fires in order."""
        end = self.now + seconds
        for _ in range(max_steps):
            due = [t for t in self._timers() if t <= end]
            if not due:
                break
            self.now = max(self.now, min(due))
            for pc in self.pcs:
                t = pc.table.next_timer()
                if pc.driver is not None and t is not None and t <= self.now:
                    pc.driver.timer(self.now)
            t = self.driver.next_timer()
            if t is not None and t <= self.now:
                self.driver.timer(self.now)
            self.settle()
        self.now = end
        self.settle()

    def _timers(self) -> list[float]:
        times = [pc.table.next_timer() for pc in self.pcs] + [self.driver.next_timer()]
        return [t for t in times if t is not None] + [t for t in self._waits if t > self.now]

    def _step(self) -> bool:
        moved = self._run_tasks()
        inbox, self._inbox = self._inbox, []
        for data, source, transport in inbox:
            moved = True
            self.core.receive(data, source, transport, virtual=self.virtual)
        out, self._outbox = self._outbox, []
        for d in out:
            moved = True
            self._deliver(d)
        return moved

    def _run_tasks(self) -> bool:
        """The core's coroutines (XAUTH answers), each run until it waits or ends."""
        ran = False
        for coro in list(self._tasks):
            try:
                coro.send(None)
            except StopIteration:
                self._tasks.remove(coro)
                ran = True
        return ran

    def _public(self, pc: Pc, local_port: int) -> Address:
        if pc.pat_ip is None:
            return pc.local_ip, local_port
        if local_port not in pc.ports:
            pc.ports[local_port] = next(self._ports)
            self._mapped[(pc.pat_ip, pc.ports[local_port])] = (pc, local_port)
        return pc.pat_ip, pc.ports[local_port]

    def _send(self, d: Datagram) -> None:
        self.sent.append(d)
        self._outbox.append(d)

    def _deliver(self, d: Datagram) -> None:
        """To the client whose (public) address and port it is for; its table finds
        the SA by the initiator cookie."""
        ip, port = d.remote
        pc: Pc | None = self._direct.get(ip)
        local = port
        if pc is None:
            pc, local = self._mapped.get(d.remote, (None, 0))
            if pc is not None and pc.ports.get(local) != port:
                pc = None  # the PAT forgot that mapping (a test cleared pc.ports)
        if pc is not None and pc.driver is not None:
            pc.driver.receive(d.data, (SERVER, d.local_port), local, d.transport, self.now)

    def _client_send(self, pc: Pc) -> Callable[[IkeSA, Datagram], None]:
        def send(_sa: IkeSA, d: Datagram) -> None:
            pc.sent.append(d.data)
            self._inbox.append((d.data, self._public(pc, d.local_port), d.transport))
        return send

    def _client_event(self, pc: Pc) -> Callable[[IkeSA, ev.Event, float], None]:
        """The client's side, as vpnhub's client answers (vpnhub.client.driver)."""
        def on_event(sa: IkeSA, e: ev.Event, now: float) -> None:
            pc.events.append(e)
            if isinstance(e, ev.XauthRequested):
                sa.xauth_reply(pc.user, Secret(pc.password), now)
            elif isinstance(e, ev.ModeConfigReceived):
                sa.start_quick_mode(now)
            elif isinstance(e, ev.Phase1RekeyDue) and sa is pc.sa:
                self.rekey_phase1(pc)
            elif isinstance(e, ev.XauthCompleted) and e.ok and sa is pc.sa and pc.replaces:
                self._take_over(pc, now)
        return on_event

    def _take_over(self, pc: Pc, now: float) -> None:
        """As the client: the new IKE SA adopts the old one's IPsec SAs; the old one
        is deleted alone (ISAKMP only)."""
        old, pc.replaces = pc.replaces, None
        assert old is not None and pc.driver is not None
        pc.sa.adopt(old, now)
        if old.state is not State.DELETED:
            old.delete(now, "replaced by a new phase 1")
            pc.driver.service(old, now)

    def _fault(self, then: Callable[[DriverFault], None] | None
               ) -> Callable[[DriverFault], None]:
        def on_error(f: DriverFault) -> None:
            self.faults.append(f)
            if then is not None:
                then(f)
        return on_error

    # ------------------------------------------------------------- queries
    def lines(self, needle: str) -> list[str]:
        return [ln for ln in self.console.getvalue().splitlines() if needle in ln]

    def _new_lines(self, needle: str) -> list[str]:
        """As `lines`, over what the console got since the last call (settle() checks
        after every step: rescanning the whole console each time is O(n^2))."""
        self.console.seek(self._console_seen)
        text = self.console.read()  # leaves the position at the end: the log appends
        self._console_seen = self.console.tell()
        return [ln for ln in text.splitlines() if needle in ln]

    def sessions(self, user: str | None = None) -> list[dict[str, Any]]:
        """The session table as `vpnhub sessions` shows it (logged-in, with IPsec)."""
        data = self.core.sessions.to_json(self.wall())
        return [s for s in data["sessions"] if (user is None or s["user"] == user)
                and s["ipsec"]]

    def installed(self) -> dict[int, AddInbound | AddOutbound]:
        """The SAs the data plane holds, by SPI (inbound and outbound)."""
        return {**self.dp.inbound, **self.dp.outbound}

    def commands(self, kind: type) -> list[Any]:
        """The data-plane commands of one kind, in order."""
        return [c for c in self.dp.commands if isinstance(c, kind)]

    def dataplane_event(self, e: Event) -> None:
        """An event from the data plane (its inbox), as the shell hands it over."""
        self.dp.inject(e)
        for got in self.dp.events():
            self.core.on_dataplane(got)
        self.settle()

    def records(self) -> list[Record]:
        """What the event store keeps."""
        return self.log.query(EventFilter(limit=1_000_000))

    def close(self) -> None:
        self.log.close()

    def sent_to(self, pc: Pc) -> list[Datagram]:
        return [d for d in self.sent if d.remote[0] == pc.public_ip]


BENCH_ACCOUNTS = 64  # logins share accounts, as in the benchmarks
BENCH_PASSWORD = "benchpass"
BENCH_BATCH = 8  # clients started together: below the per-address half-open limit (one PAT)


def established_rig(n: int) -> CoreRig:
    """A core with `n` established remote access sessions (bench/shutdown.py and
    bench/dpd_cost.py start from it)."""
    users = {f"bench{i:02d}": BENCH_PASSWORD for i in range(BENCH_ACCOUNTS)}
    rig = CoreRig(parse_config(config_text(users=users, pool="10.40.0.0/16",
                                           group_extra="simultaneous_logins = 1000000")))
    for i in range(n):
        pc = rig.add_pc(f"bench{i % BENCH_ACCOUNTS:02d}", BENCH_PASSWORD,
                        local_ip=f"10.10.{i // 250}.{i % 250 + 2}")
        pc.sa.initiate(rig.now)
        rig._start(pc, pc.sa)
        if i % BENCH_BATCH == BENCH_BATCH - 1:
            rig.settle()
    rig.settle()
    up = sum(pc.up for pc in rig.pcs)
    if up != n:
        raise SystemExit(f"only {up} of {n} sessions established")
    return rig
