"""The real `Concentrator` driven in-process: no sockets, no TUN, no namespaces.

The concentrator's own `_ike_in` takes every datagram (as its UDP 500 reader
would) and its own `_on_event` handles the engine's events (logging,
sessions, XAUTH in its thread pool); only the I/O ends are stand-ins: UDP 500
sends land in a list, data-plane commands are accepted and kept. A client is
a real initiator `IkeSA`. Used for the event log's attack tests (issue 11),
where what counts is what the concentrator logs, not what crosses a wire.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from vpnhub.concentrator.service import Concentrator
from vpnhub.config import parse_config
from vpnhub.eventlog import EventLog, EventStore
from vpnhub.ike import events as ev
from vpnhub.ike.policy import Policy
from vpnhub.ike.sa import Address, IkeConfig, IkeSA
from vpnhub.ike.secret import Secret
from vpnhub.ike.transitions import Role
from vpnhub.ike.transport import Transport

T = TypeVar("T")

PUBLIC = "203.0.113.50"
GROUP, PSK = "vpngroup", "inprocess-group-psk"
USER, PASSWORD = "vpnuser1", "inprocess-user-pw"


def config_text(store: Path) -> str:
    return f"""
[concentrator]
public_address = "{PUBLIC}"
private_networks = ["192.168.2.0/24"]
[admin]
socket = "/nonexistent/admin.sock"
[log]
console_severity = 5
keep_severity = 5
store = "{store}"
[[group]]
name = "{GROUP}"
psk = "{PSK}"
address_pool = "10.40.1.0/24"
[[user]]
name = "{USER}"
password = "{PASSWORD}"
group = "{GROUP}"
"""


def run(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run in a thread of its own: other tests (Playwright's sync API) may leave
    an event loop running in this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


class Clock:
    """The event log's wall clock, moved by the test (rate-limit windows)."""

    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


class FakeSocket:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Address]] = []

    def sendto(self, data: bytes, addr: Address) -> int:
        self.sent.append((data, addr))
        return len(data)

    def send(self, data: bytes, addr: tuple[str, int]) -> None:  # SendQueue.send
        self.sendto(data, addr)


class FakeDataplane:
    def __init__(self) -> None:
        self.commands: list[object] = []
        self.ike: list[tuple[bytes, Address]] = []

    def submit(self, command: object) -> Future[object]:
        self.commands.append(command)
        f: Future[object] = Future()
        f.set_result(None)
        return f

    def send_ike(self, data: bytes, addr: Address, transport: str = "natt") -> None:
        self.ike.append((data, addr))


@dataclass
class Client:
    sa: IkeSA
    public: Address  # where its packets come from (no NAT: natt off, UDP 500)
    user: str
    password: str
    events: list[ev.Event] = field(default_factory=list)
    sent: list[bytes] = field(default_factory=list)  # every datagram it sent (captures)

    @property
    def up(self) -> bool:
        return any(isinstance(e, ev.ChildSAEstablished) for e in self.events)


class Rig:
    def __init__(self, tmp_path: Path) -> None:
        self.clock = Clock()
        self.out = io.StringIO()  # the text log (console)
        config = parse_config(config_text(tmp_path / "events.db"))
        store = EventStore(tmp_path / "events.db", config.log.store_max_events)
        self.log = EventLog(console_severity=5, keep_severity=5, out=self.out,
                            clock=self.clock, store=store)
        self.log.hide([PSK, PASSWORD])
        self.conc = Concentrator(config, self.log)
        self.sock = FakeSocket()
        self.dp = FakeDataplane()
        self.conc.sock500 = self.sock  # type: ignore[assignment]
        self.conc.out500 = self.sock  # type: ignore[assignment]  # the UDP 500 send queue
        self.conc.dataplane = self.dp  # type: ignore[assignment]
        self.now = 1000.0

    def client(self, *, user: str = USER, password: str = PASSWORD, ip: str = "198.51.100.7",
               application_version: str = "vpnhub-test 1.0") -> Client:
        cfg = IkeConfig(local_address=ip, policy=Policy(), mode="aggressive", group_name=GROUP,
                        psk=Secret(PSK), natt=False, xauth=True,
                        application_version=application_version)
        return Client(IkeSA(cfg, Role.INITIATOR, (PUBLIC, 500), self.now), (ip, 500), user,
                      password)

    def inject(self, data: bytes, source: Address) -> None:
        """A datagram to UDP 500 from `source` (the concentrator's receive path)."""
        self.conc._ike_in(data, source, 500, Transport.IKE)

    async def connect(self, c: Client, rounds: int = 200) -> None:
        c.sa.initiate(self.now)
        for _ in range(rounds):
            self._pump(c)
            await asyncio.sleep(0.01)  # XAUTH runs in the concentrator's thread pool
            if c.up or c.sa.state.name == "DELETED":
                self._pump(c)
                return

    def _pump(self, c: Client) -> None:
        for _ in range(20):
            moved = False
            for d in c.sa.datagrams_to_send():
                moved = True
                c.sent.append(d.data)
                self.inject(d.data, c.public)
            while (e := c.sa.next_event()) is not None:
                c.events.append(e)
                if isinstance(e, ev.XauthRequested):
                    c.sa.xauth_reply(c.user, Secret(c.password), self.now)
                elif isinstance(e, ev.ModeConfigReceived):
                    c.sa.start_quick_mode(self.now)
                moved = True
            for data, addr in self.sock.sent:
                if addr == c.public:
                    c.sa.receive(data, (PUBLIC, 500), 500, self.now)
                    moved = True
            self.sock.sent.clear()
            if not moved:
                return

    def records(self) -> list:  # type: ignore[type-arg]
        from vpnhub.eventlog import EventFilter

        return self.log.query(EventFilter(limit=1_000_000))

    def close(self) -> None:
        self.conc._auth_pool.shutdown(wait=True)
        self.log.close()
