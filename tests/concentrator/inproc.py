"""The concentrator's driver (`Concentrator`) run in-process, without sockets or TUN.

Clients are sans-I/O `IkeSA` initiators behind a PAT that gives each client
its own public port (like the lab's "masquerade random"); what the
concentrator sends through its UDP 500 socket or the data plane comes back
to the client of that port. XAUTH runs on the driver's thread pool, so the
exchanges are moved inside a running asyncio loop (`settle`).
"""

from __future__ import annotations

import asyncio
import io
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

from vpnhub.concentrator.service import Concentrator
from vpnhub.config import Config, parse_config
from vpnhub.eventlog import EventLog
from vpnhub.ike import events as ev
from vpnhub.ike.policy import Policy
from vpnhub.ike.sa import IkeConfig, IkeSA
from vpnhub.ike.secret import Secret
from vpnhub.ike.transitions import Role

SERVER = "203.0.113.50"
PAT = "203.0.113.78"
GROUP = "vpngroup"
PSK = "labgroupsecret"
USERS = {"vpnuser1": "userpass1", "vpnuser2": "userpass2"}


def config_text(*, group_extra: str = "", log_extra: str = "", store: str = "") -> str:
    users = "".join(f'[[user]]\nname = "{u}"\npassword = "{p}"\ngroup = "{GROUP}"\n\n'
                    for u, p in USERS.items())
    return (f'[concentrator]\npublic_address = "{SERVER}"\n'
            f'private_networks = ["192.168.2.0/24"]\n\n'
            f'[nat_transparency]\nipsec_over_natt = true\n\n'
            f'[limits]\nxauth_retry_delay = 0.1\n\n'
            f'[log]\nstore = "{store}"\n{log_extra}\n'
            f'[[group]]\nname = "{GROUP}"\npsk = "{PSK}"\naddress_pool = "10.40.1.0/24"\n'
            f'{group_extra}\n\n{users}')


class FakeDataplane:
    """Takes the SAs and the IKE datagrams the driver hands the data plane thread."""

    def __init__(self, out: list[tuple[bytes, tuple[str, int], int]]) -> None:
        self.out = out
        self.commands: list[Any] = []

    def submit(self, cmd: Any) -> None:
        self.commands.append(cmd)

    def send_ike(self, data: bytes, remote: tuple[str, int], transport: str = "") -> None:
        self.out.append((data, remote, 4500))


class FakeSocket:
    def __init__(self, out: list[tuple[bytes, tuple[str, int], int]]) -> None:
        self.out = out

    def sendto(self, data: bytes, remote: tuple[str, int]) -> int:
        self.out.append((data, remote, 500))
        return len(data)

    def send(self, data: bytes, addr: tuple[str, int]) -> None:  # SendQueue.send
        self.sendto(data, addr)


class _Via4500:
    """The send queue of UDP 4500: hands IKE to the data plane."""

    def __init__(self, dataplane: Any) -> None:
        self.dataplane = dataplane

    def send(self, data: bytes, remote: tuple[str, int]) -> None:
        self.dataplane.send_ike(data, remote)


@dataclass
class Pc:
    """A client PC behind the PAT: its IKE SA and the PAT ports of its local ports."""

    sa: IkeSA
    user: str
    password: str
    ports: dict[int, int] = field(default_factory=dict)
    events: list[ev.Event] = field(default_factory=list)


class InProcess:
    def __init__(self, config: Config) -> None:
        self.console = io.StringIO()
        self.log = EventLog(console_severity=5, keep_severity=5, out=self.console)
        self.conc = Concentrator(config, self.log)
        self.out: list[tuple[bytes, tuple[str, int], int]] = []
        self.conc.dataplane = FakeDataplane(self.out)  # type: ignore[assignment]
        self.conc.sock500 = FakeSocket(self.out)  # type: ignore[assignment]
        # the driver sends IKE through its send queues: UDP 500 and the data plane's 4500
        self.conc.out500 = self.conc.sock500  # type: ignore[assignment]
        self.conc.out4500 = _Via4500(self.conc.dataplane)  # type: ignore[assignment]
        self.pcs: list[Pc] = []
        self._ports = itertools.count(20000)

    @classmethod
    def from_text(cls, text: str) -> InProcess:
        return cls(parse_config(text))

    def add_pc(self, user: str, *, initial_contact: bool = False) -> Pc:
        """Without INITIAL-CONTACT by default (strongSwan with ``unique = never``)."""
        cfg = IkeConfig(local_address="10.10.10.2", policy=Policy(), mode="aggressive",
                        group_name=GROUP, psk=Secret(PSK), natt=True, xauth=True,
                        send_initial_contact=initial_contact)
        pc = Pc(IkeSA(cfg, Role.INITIATOR, (SERVER, 500), time.monotonic()), user,
                USERS.get(user, "wrong"))
        pc.sa.initiate(time.monotonic())
        self.pcs.append(pc)
        return pc

    def lines(self, needle: str) -> list[str]:
        return [ln for ln in self.console.getvalue().splitlines() if needle in ln]

    async def settle(self, rounds: int = 60) -> None:
        """Move datagrams both ways until all is quiet (XAUTH answers are awaited)."""
        for _ in range(rounds):
            moved = self._step()
            await asyncio.sleep(0.02)
            if not moved and not self.out:
                await asyncio.sleep(0.15)  # an XAUTH answer may be on its way
                if not self.out and not self._pending():
                    return

    def _pending(self) -> bool:
        return any(pc.sa._out for pc in self.pcs)

    def _step(self) -> bool:
        moved = False
        now = time.monotonic()
        for pc in self.pcs:
            for d in pc.sa.datagrams_to_send():
                moved = True
                port = pc.ports.setdefault(d.local_port, next(self._ports))
                self.conc._ike_in(d.data, (PAT, port), d.remote[1], d.transport)
        out, self.out[:] = list(self.out), []
        for data, remote, local_port in out:
            moved = True
            for pc in self.pcs:
                local = next((lp for lp, pp in pc.ports.items() if pp == remote[1]), None)
                if local is not None:
                    pc.sa.receive(data, (SERVER, local_port), local, now)
                    break
        for pc in self.pcs:
            while (e := pc.sa.next_event()) is not None:
                pc.events.append(e)
                if isinstance(e, ev.XauthRequested):
                    pc.sa.xauth_reply(pc.user, Secret(pc.password), now)
                elif isinstance(e, ev.ModeConfigReceived):
                    pc.sa.start_quick_mode(now)
        return moved

    def address_of(self, pc: Pc) -> str | None:
        got = [e for e in pc.events if isinstance(e, ev.ModeConfigReceived)]
        return str(got[-1].config.address) if got else None

    def has_child(self, pc: Pc) -> bool:
        return any(isinstance(e, ev.ChildSAEstablished) for e in pc.events)
