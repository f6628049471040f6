"""The sans-I/O IKE driver: routing by transport, exact timers, faults, InitiatorTable."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from driver_fakes import FakeSA

from vpnhub.ike import events as ev
from vpnhub.ike.driver import DriverFault, IkeDriver, InitiatorTable
from vpnhub.ike.endpoint import IkeEndpoint
from vpnhub.ike.sa import Address, Datagram, IkeConfig, IkeSA
from vpnhub.ike.summary import Notice
from vpnhub.ike.transitions import Role, State
from vpnhub.ike.transport import Transport
from vpnhub.secret import Secret

SERVER = "203.0.113.50"
CLIENT_LOCAL = "10.10.10.2"
PAT = "203.0.113.78"  # the client's public address: NAT-D sees a NAT, NAT-T floats
GROUP, PSK = "ciscovpn", "labgroupsecret"
NOW = 1000.0


def _no_fault(f: DriverFault) -> None:
    raise AssertionError(f.describe())


def _client_sa(now: float = NOW, **kw: object) -> IkeSA:
    cfg = IkeConfig(local_address=CLIENT_LOCAL, group_name=GROUP, psk=Secret(PSK),
                    **kw)  # type: ignore[arg-type]
    return IkeSA(cfg, Role.INITIATOR, (SERVER, 500), now)


def _server_config(remote: Address, local_port: int = 500) -> IkeConfig:
    return IkeConfig(local_address=SERVER, psk_lookup=lambda t, d, r: Secret(PSK))


@dataclass
class Wire:
    """Two drivers (a client's InitiatorTable, the concentrator's IkeEndpoint) and the
    datagrams between them; the client's ports are rewritten by a PAT."""

    now: float = NOW
    to_server: list[Datagram] = field(default_factory=list)
    to_client: list[Datagram] = field(default_factory=list)
    server_got: list[tuple[int, Transport]] = field(default_factory=list)
    client_events: list[ev.Event] = field(default_factory=list)
    server_events: list[ev.Event] = field(default_factory=list)
    faults: list[DriverFault] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.table = InitiatorTable()
        self.endpoint = IkeEndpoint(_server_config)
        self.client = IkeDriver(self.table, self._client_event,
                                lambda sa, d: self.to_server.append(d),
                                on_error=self.faults.append)
        self.server = IkeDriver(self.endpoint, self._server_event,
                                lambda sa, d: self.to_client.append(d),
                                on_error=self.faults.append)

    def _client_event(self, sa: IkeSA, e: ev.Event, now: float) -> None:
        self.client_events.append(e)
        if isinstance(e, ev.XauthRequested):
            sa.xauth_reply("vpnclient1", Secret("userpass1"), now)
        elif isinstance(e, ev.ModeConfigReceived):
            sa.start_quick_mode(now)

    def _server_event(self, sa: IkeSA, e: ev.Event, now: float) -> None:
        self.server_events.append(e)
        if isinstance(e, ev.XauthCredentials):
            sa.xauth_result(e.password.equals("userpass1"), now)
        elif isinstance(e, ev.ModeConfigRequested):
            sa.modecfg_reply(ev.ModeConfig(address=ipaddress.IPv4Address("10.40.1.1")), now)

    def run(self) -> None:
        for _ in range(50):
            if not self.to_server and not self.to_client:
                return
            out, self.to_server = self.to_server, []
            for d in out:
                pat_port = {500: 1025, 4500: 1026}[d.local_port]
                self.server_got.append((d.remote[1], d.transport))
                self.server.receive(d.data, (PAT, pat_port), d.remote[1], d.transport,
                                    self.now)
            back, self.to_client = self.to_client, []
            for d in back:
                local = {1025: 500, 1026: 4500}[d.remote[1]]
                self.client.receive(d.data, (SERVER, d.local_port), local, d.transport,
                                    self.now)


def test_a_login_through_two_drivers_floats_to_natt_and_every_datagram_says_so() -> None:
    w = Wire()
    sa = _client_sa()
    w.table.add(sa)
    sa.initiate(w.now)
    w.client.service(sa, w.now)
    w.run()
    assert any(isinstance(e, ev.ChildSAEstablished) for e in w.client_events)
    assert any(isinstance(e, ev.ChildSAEstablished) for e in w.server_events)
    assert w.server_got[0] == (500, Transport.IKE)  # message 1 on UDP 500
    assert (4500, Transport.NATT) in w.server_got  # RFC 3947 4: floated behind the PAT
    assert all(t is Transport.NATT for port, t in w.server_got if port == 4500)
    assert all(t is Transport.IKE for port, t in w.server_got if port == 500)
    assert not w.faults


def test_each_message_through_the_driver_asks_the_sa_for_its_timer_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 13: the table queues no timer in `receive`; the driver's `service` does,
    once the SA's events ran (they may move it), so one get_timer per message, and
    every SA still has its deadline queued (the login completes, retransmissions and
    DPD stay armed)."""
    calls: list[IkeSA] = []
    real = IkeSA.get_timer

    def counted(self: IkeSA) -> float | None:
        calls.append(self)
        return real(self)

    monkeypatch.setattr(IkeSA, "get_timer", counted)
    w = Wire()
    sa = _client_sa()
    w.table.add(sa)
    sa.initiate(w.now)
    w.client.service(sa, w.now)
    w.run()
    assert any(isinstance(e, ev.ChildSAEstablished) for e in w.server_events)
    server_sas = list(w.endpoint)
    assert len(server_sas) == 1
    received = sum(1 for _ in w.server_got)
    # one per message, plus one per nested service (the XAUTH and Mode Config
    # handlers answer inside the event dispatch and queue no timer of their own)
    assert sum(1 for s in calls if s is server_sas[0]) == received
    assert sum(1 for s in calls if s is sa) <= received + 2
    assert w.endpoint.next_timer() == server_sas[0].get_timer() is not None
    assert w.table.next_timer() == sa.get_timer() is not None


def test_the_timer_fires_at_the_exact_deadline_not_before() -> None:
    sent: list[Datagram] = []
    table = InitiatorTable()
    driver = IkeDriver(table, lambda sa, e, now: None, lambda sa, d: sent.append(d),
                       on_error=_no_fault)
    sa = _client_sa()
    table.add(sa)
    sa.initiate(NOW)
    driver.service(sa, NOW)
    assert len(sent) == 1
    due = driver.next_timer()
    assert due == sa.get_timer() == NOW + sa.config.retransmit_interval
    driver.timer(due - 0.001)
    assert len(sent) == 1  # not yet
    driver.timer(due)
    assert len(sent) == 2 and sent[1].data == sent[0].data  # the retransmission
    assert driver.next_timer() == sa.get_timer() > due  # re-armed at the back-off


def test_unanswered_sa_times_out_its_last_events_are_dispatched_and_it_leaves() -> None:
    events: list[ev.Event] = []
    table = InitiatorTable()
    driver = IkeDriver(table, lambda sa, e, now: events.append(e), lambda sa, d: None,
                       on_error=_no_fault)
    sa = _client_sa()
    table.add(sa)
    sa.initiate(NOW)
    driver.service(sa, NOW)
    for _ in range(20):
        due = driver.next_timer()
        if due is None:
            break
        driver.timer(due)
    assert driver.next_timer() is None
    assert len(table) == 0 and sa not in table
    assert isinstance(events[-1], ev.SADeleted)


def test_initiator_table_routes_by_icookie_and_counts_what_it_drops() -> None:
    table = InitiatorTable()
    a, b = _client_sa(), _client_sa()
    table.add(a)
    table.add(b)
    assert table.get(b.icookie) is b and len(table) == 2
    twin = _client_sa()
    twin.icookie = b.icookie
    with pytest.raises(ValueError):  # never route one cookie to two SAs
        table.add(twin)
    assert table.receive(bytes(20), (SERVER, 500), 500, NOW) is None
    assert table.drops["truncated_header"] == 1
    assert table.receive(b"\x01" * 28, (SERVER, 500), 500, NOW) is None
    assert table.drops["unknown_cookie"] == 1
    # a garbage message with b's cookie reaches b, and only b
    got = table.receive(b.icookie + bytes(20), (SERVER, 500), 500, NOW, Transport.IKE)
    assert got is b
    assert (b in table) == (b.state is not State.DELETED)  # a deleted SA leaves
    table.remove(a)
    assert a not in table and table.get(a.icookie) is None


def test_a_deleted_sa_leaves_the_table_when_serviced() -> None:
    table = InitiatorTable()
    driver = IkeDriver(table, lambda sa, e, now: None, lambda sa, d: None,
                       on_error=_no_fault)
    sa = _client_sa()
    table.add(sa)
    sa.initiate(NOW)
    driver.service(sa, NOW)
    assert driver.next_timer() is not None
    sa.terminate("test", NOW, by_peer=False, notify_peer=False)
    driver.service(sa, NOW)
    assert sa not in table and driver.next_timer() is None


# ------------------------------------------------------------------ faults
@dataclass
class FakeTable:
    sa: FakeSA | None = None
    raise_on_receive: bool = False
    touched: int = 0
    notices: list[Notice] = field(default_factory=list)

    def receive(self, data: bytes, remote: Address, local_port: int, now: float,
                transport: Transport | None = None, *, touch: bool = True) -> FakeSA | None:
        if self.raise_on_receive:
            raise RuntimeError("boom")
        return self.sa

    def next_timer(self) -> float | None:
        return None

    def handle_timer(self, now: float, limit: int | None = None) -> list[FakeSA]:
        raise RuntimeError("timer boom")

    def touch(self, sa: FakeSA) -> float | None:
        self.touched += 1
        return None

    def next_notice(self) -> Notice | None:
        return self.notices.pop(0) if self.notices else None

    def __iter__(self) -> Iterator[FakeSA]:
        return iter([self.sa] if self.sa else [])


def _dgram(port: int) -> Datagram:
    return Datagram(b"x" * 28, ("198.51.100.7", port), 500, Transport.IKE)


def test_an_exception_in_on_event_is_reported_and_the_loop_goes_on() -> None:
    sa = FakeSA([ev.DpdAck(1), ev.DpdAck(2), ev.DpdAck(3)], [_dgram(1)])
    table = FakeTable(sa)
    seen: list[int] = []
    faults: list[DriverFault] = []
    sent: list[Datagram] = []

    def on_event(s: object, e: ev.Event, now: float) -> None:
        assert isinstance(e, ev.DpdAck)
        seen.append(e.sequence)
        if e.sequence == 2:
            raise KeyError("handler bug")

    driver = IkeDriver(table, on_event, lambda s, d: sent.append(d),  # type: ignore[arg-type]
                       on_error=faults.append)
    assert driver.receive(b"x" * 28, ("198.51.100.7", 500), 500, Transport.IKE, NOW) is sa
    assert seen == [1, 2, 3] and len(sent) == 1 and table.touched == 1
    assert [f.stage for f in faults] == ["event"]
    assert faults[0].event == ev.DpdAck(2) and faults[0].sa is sa
    assert faults[0].describe() == "internal error handling DpdAck: KeyError('handler bug')"


def test_faults_in_the_table_and_in_send_are_reported_too() -> None:
    sa = FakeSA([], [_dgram(1), _dgram(2)])
    table = FakeTable(sa, raise_on_receive=True)
    faults: list[DriverFault] = []
    sent: list[Datagram] = []

    def send(s: object, d: Datagram) -> None:
        if d.remote[1] == 1:
            raise OSError(105, "No buffer space available")
        sent.append(d)

    driver = IkeDriver(table, lambda s, e, now: None, send,  # type: ignore[arg-type]
                       on_error=faults.append)
    assert driver.receive(b"", ("198.51.100.7", 500), 500, Transport.IKE, NOW) is None
    driver.timer(NOW)
    driver.service(sa, NOW)  # type: ignore[arg-type]
    assert [f.stage for f in faults] == ["receive", "timer", "send"]
    assert faults[0].describe().startswith("internal error receiving from 198.51.100.7:500")
    assert faults[1].describe() == "internal error in the timer loop: RuntimeError('timer boom')"
    assert faults[2].describe() == ("cannot send to 198.51.100.7:1: [Errno 105] No buffer"
                                    " space available")
    assert [d.remote[1] for d in sent] == [2]  # the next datagram still went


def test_the_tables_notices_go_to_on_notice() -> None:
    table = FakeTable(None, notices=[Notice("IKE", 4, "3 half-open SA(s) recycled", "*")])
    got: list[Notice] = []
    driver = IkeDriver(table, lambda s, e, now: None, lambda s, d: None,  # type: ignore[arg-type]
                       on_error=_no_fault, on_notice=got.append)
    driver.receive(b"x" * 28, ("198.51.100.7", 500), 500, Transport.IKE, NOW)
    assert [n.text for n in got] == ["3 half-open SA(s) recycled"]


def test_an_after_sent_action_runs_after_the_sas_datagrams_went_out() -> None:
    """Issue 16: the outbound SA of a Quick Mode we initiated waits for message 3; an
    event handler hands it to `after_sent`, the driver runs it after `send`, and a
    `when_sent` (a send queue) gets the last datagram to wait behind."""
    log: list[str] = []
    sa = FakeSA([ev.DpdAck(1), ev.DpdAck(2)], [_dgram(1), _dgram(2)])
    other = FakeSA([], [_dgram(9)])  # serviced from inside a handler: not sa's datagrams
    driver: IkeDriver

    def on_event(s: object, e: ev.Event, now: float) -> None:
        assert isinstance(e, ev.DpdAck)
        log.append(f"event {e.sequence}")
        if e.sequence == 1:
            driver.after_sent(sa, lambda: log.append("action"))  # type: ignore[arg-type]
            driver.service(other, now)  # type: ignore[arg-type]

    driver = IkeDriver(FakeTable(sa), on_event,
                       lambda s, d: log.append(f"send {d.remote[1]}"),
                       on_error=_no_fault)
    driver.service(sa, NOW)  # type: ignore[arg-type]
    assert log == ["event 1", "send 9", "event 2", "send 1", "send 2", "action"]



def test_with_when_sent_an_after_sent_action_waits_behind_the_last_datagram() -> None:
    """A send queue may hold the datagrams (a full socket buffer): the application's
    `when_sent` gets the last one, to run the action once it left."""
    sa = FakeSA([ev.DpdAck(1)], [_dgram(3), _dgram(4)])
    ran: list[str] = []
    waiting: list[tuple[Datagram, Callable[[], None]]] = []
    driver: IkeDriver

    def on_event(s: object, e: ev.Event, now: float) -> None:
        driver.after_sent(sa, lambda: ran.append("action"))  # type: ignore[arg-type]

    driver = IkeDriver(FakeTable(sa), on_event, lambda s, d: None, on_error=_no_fault,
                       when_sent=lambda s, d, action: waiting.append((d, action)))
    driver.service(sa, NOW)  # type: ignore[arg-type]
    assert [d.remote[1] for d, _ in waiting] == [4] and ran == []
    waiting[0][1]()  # the queue sent datagram 4
    assert ran == ["action"]
