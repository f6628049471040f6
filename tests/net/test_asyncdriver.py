"""AsyncIkeDriver on a real asyncio loop: one exact call_at, re-armed from the engine."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from driver_fakes import FakeSA

from vpnhub.ike.driver import DriverFault
from vpnhub.ike.sa import Address, Datagram
from vpnhub.ike.summary import Notice
from vpnhub.ike.transport import Transport
from vpnhub.net.asyncdriver import AsyncIkeDriver

PEER = ("198.51.100.7", 500)


@dataclass
class FakeTable:
    """An SA table whose next deadline the test sets; records the timer calls."""

    sa: FakeSA = field(default_factory=FakeSA)
    deadline: float | None = None
    fired: list[float] = field(default_factory=list)
    on_receive_deadline: float | None = None

    def receive(self, data: bytes, remote: Address, local_port: int, now: float,
                transport: Transport | None = None, *, touch: bool = True) -> FakeSA:
        if self.on_receive_deadline is not None:
            self.deadline = self.on_receive_deadline
        return self.sa

    def next_timer(self) -> float | None:
        return self.deadline

    def handle_timer(self, now: float, limit: int | None = None) -> list[FakeSA]:
        self.fired.append(now)
        if self.deadline is not None and self.deadline <= now:
            self.deadline = None
            self.sa.out.append(Datagram(b"retransmit", PEER, 500, Transport.IKE))
            return [self.sa]
        return []

    def touch(self, sa: FakeSA) -> float | None:
        return self.deadline

    def next_notice(self) -> Notice | None:
        return None


def _driver(table: FakeTable, sent: dict[Transport, list[bytes]],
            faults: list[DriverFault]) -> AsyncIkeDriver:
    senders = {t: (lambda data, remote, t=t: sent.setdefault(t, []).append(data))
               for t in (Transport.IKE, Transport.NATT)}
    return AsyncIkeDriver(table, lambda sa, e, now: None, senders,  # type: ignore[arg-type]
                          on_error=faults.append)


def test_call_at_fires_at_the_engines_deadline() -> None:
    async def main() -> tuple[float, FakeTable, dict[Transport, list[bytes]], AsyncIkeDriver]:
        loop = asyncio.get_running_loop()
        table = FakeTable()
        sent: dict[Transport, list[bytes]] = {}
        d = _driver(table, sent, [])
        due = loop.time() + 0.05
        table.deadline = due
        d.service(table.sa)  # type: ignore[arg-type]
        assert d.timer_at == due
        await asyncio.sleep(0.2)
        return due, table, sent, d

    due, table, sent, d = asyncio.run(main())
    assert len(table.fired) == 1  # once, not polled
    assert due <= table.fired[0] < due + 0.04  # the engine never sees `now` before its deadline
    assert sent == {Transport.IKE: [b"retransmit"]}
    assert d.timer_at is None  # nothing left to wait for: nothing armed


def test_receive_rearms_earlier_and_an_unchanged_deadline_keeps_its_handle() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        table = FakeTable()
        d = _driver(table, {}, [])
        table.deadline = loop.time() + 30.0
        d.service(table.sa)  # type: ignore[arg-type]
        first = d._timer
        d.service(table.sa)  # type: ignore[arg-type]
        assert d._timer is first  # same deadline: not cancelled and re-armed
        table.on_receive_deadline = soon = loop.time() + 0.03
        d.receive(b"x" * 28, PEER, 500, Transport.IKE)
        assert d.timer_at == soon and d._timer is not first
        assert first is not None and first.cancelled()
        await asyncio.sleep(0.15)
        assert len(table.fired) == 1 and table.fired[0] >= soon
        d.close()

    asyncio.run(main())


def test_datagrams_go_to_the_sender_of_their_transport_and_failures_are_reported() -> None:
    async def main() -> tuple[dict[Transport, list[bytes]], list[DriverFault]]:
        table = FakeTable()
        sent: dict[Transport, list[bytes]] = {}
        faults: list[DriverFault] = []
        d = _driver(table, sent, faults)
        table.sa.out = [Datagram(b"a", PEER, 500, Transport.IKE),
                        Datagram(b"b", ("198.51.100.7", 4500), 4500, Transport.NATT),
                        Datagram(b"c", ("198.51.100.7", 10000), 10000, Transport.CTCP)]
        d.service(table.sa)  # type: ignore[arg-type]
        return sent, faults

    sent, faults = asyncio.run(main())
    assert sent == {Transport.IKE: [b"a"], Transport.NATT: [b"b"]}
    assert len(faults) == 1 and faults[0].stage == "send"  # no cTCP sender given
    assert faults[0].datagram is not None and faults[0].datagram.data == b"c"


def test_one_send_callable_gets_the_sa_and_every_datagram() -> None:
    async def main() -> list[tuple[object, bytes]]:
        table = FakeTable()
        got: list[tuple[object, bytes]] = []
        d = AsyncIkeDriver(table, lambda sa, e, now: None,  # type: ignore[arg-type]
                           lambda sa, dg: got.append((sa, dg.data)), on_error=print)
        table.sa.out = [Datagram(b"a", PEER, 500, Transport.CTCP)]
        d.service(table.sa)  # type: ignore[arg-type]
        return got

    got = asyncio.run(main())
    assert len(got) == 1 and got[0][1] == b"a"


def test_a_later_deadline_keeps_the_earlier_timer_which_then_asks_the_table() -> None:
    """After a message only an earlier deadline moves the timer (O(1) per message); a
    deadline that moved later makes the armed timer fire once early, find nothing
    due, and re-arm exactly where the table says."""
    async def main() -> None:
        loop = asyncio.get_running_loop()
        table = FakeTable()
        d = _driver(table, {}, [])
        table.deadline = first = loop.time() + 0.03
        d.service(table.sa)  # type: ignore[arg-type]
        armed = d._timer
        table.on_receive_deadline = later = loop.time() + 0.12  # an answer came
        d.receive(b"x" * 28, PEER, 500, Transport.IKE)
        assert d._timer is armed and d.timer_at == first  # not cancelled per message
        await asyncio.sleep(0.06)
        assert len(table.fired) == 1 and table.fired[0] < later  # early, nothing due
        assert d.timer_at == later  # the table's real deadline
        await asyncio.sleep(0.12)
        assert len(table.fired) == 2 and table.fired[1] >= later
        d.close()

    asyncio.run(main())
