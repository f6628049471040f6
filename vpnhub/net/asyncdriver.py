"""`AsyncIkeDriver`: the one IKE driver loop (`vpnhub.ike.driver`) on an asyncio loop.

The shape of aioquic's `asyncio/protocol.py`: ONE `loop.call_at` armed at the
engine's next deadline, so IKE timers (retransmissions, DPD, lifetimes, XAUTH
time-outs) fire when they are due instead of on a polling tick. After a
message or a call into an SA it moves only if that SA now has an earlier
deadline (O(1), `IkeDriver.earliest_touched`); when it fires, the table says
the exact next deadline. A deadline that moved later (an answer stopped a
retransmission) makes the timer fire early once and find nothing due: far
cheaper than asking the table of thousands of SAs after every message
(measured: re-arming from the table after every message cost 0.4 ms of CPU per
tunnel at 250 handshakes/s, bench/handshake.py). `loop.time()` is the clock: `time.monotonic()`
on Linux, the clock the engine's `now` has always been read from.

Datagrams leave through one place: the application maps each `Transport` to
the function that sends on it (UDP 500 socket or its send queue, the NAT-T
socket that prepends the non-ESP marker, the data plane's cTCP connection),
or gives one callable that takes the SA and the datagram. A send that raises
(a full or closed socket) is reported through `on_error`, like every other
fault in the loop, and the loop goes on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from vpnhub.ike.driver import (
    Action,
    DriverFault,
    IkeDriver,
    OnError,
    OnEvent,
    OnNotice,
    SaTable,
    WhenSent,
)
from vpnhub.ike.sa import Address, Datagram, IkeSA
from vpnhub.ike.transport import Transport

# SAs whose timers run in one turn of the loop (DPD's R-U-THERE, retransmissions):
# the rest stay due for the next turn, with the messages that arrived meanwhile
# answered in between (~60-100 us each; a DPD round of a 10,000-session set-up
# ran 6 ms of timers in one turn on a loaded machine, issue 13).
TIMER_STEP = 64

SendBytes = Callable[[bytes, Address], object]  # (data, remote), e.g. a SendQueue's send
Senders = Mapping[Transport, SendBytes] | Callable[[IkeSA, Datagram], None]


class AsyncIkeDriver:
    """`IkeDriver` with `loop.time()` as `now` and one exact `call_at` timer."""

    def __init__(self, table: SaTable, on_event: OnEvent, senders: Senders, *,
                 on_error: OnError, on_notice: OnNotice | None = None,
                 when_sent: WhenSent | None = None,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop or asyncio.get_running_loop()
        # decided once: `isinstance` against the Mapping ABC cost ~1 us per datagram
        # (1.5 % of the idle concentrator's py-spy samples, issue 13)
        self._by_transport: Mapping[Transport, SendBytes] | None = None
        self._send_one: Callable[[IkeSA, Datagram], None] | None = None
        if isinstance(senders, Mapping):
            self._by_transport = senders
        else:
            self._send_one = senders
        self._on_error = on_error
        self.driver = IkeDriver(table, on_event, self._send, on_error=on_error,
                                on_notice=on_notice, when_sent=when_sent)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._closed = False

    @property
    def table(self) -> SaTable:
        return self.driver.table

    @property
    def timer_at(self) -> float | None:
        """When the armed `call_at` fires (None: nothing armed)."""
        return self._timer_at

    def now(self) -> float:
        return self._loop.time()

    def receive(self, data: bytes, remote: Address, local_port: int,
                transport: Transport) -> IkeSA | None:
        """One IKE message (non-ESP marker stripped) that came by `transport`."""
        try:
            return self.driver.receive(data, remote, local_port, transport, self.now())
        finally:
            self._rearm_if_earlier()

    def service(self, sa: IkeSA) -> None:
        """After the application called into `sa` (initiate, xauth_result, delete...)."""
        try:
            self.driver.service(sa, self.now())
        finally:
            self._rearm_if_earlier()

    def after_sent(self, sa: IkeSA, action: Action) -> None:
        """`IkeDriver.after_sent`: from an event handler, once `sa`'s datagrams left."""
        self.driver.after_sent(sa, action)

    def close(self) -> None:
        """Stop the timer (the application is shutting down)."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._timer_at = None

    def _on_timer(self) -> None:
        # call_at may run a handle up to the clock's resolution early: never hand
        # the engine a `now` before the deadline it asked for (aioquic does the same)
        assert self._timer_at is not None
        now = max(self._timer_at, self._loop.time())
        self._timer = self._timer_at = None
        try:
            self.driver.timer(now, TIMER_STEP)
        finally:
            self._rearm()  # SAs left due: the next turn, after the messages waiting

    def _rearm_if_earlier(self) -> None:
        when = self.driver.earliest_touched()
        if self._closed or when is None:
            return
        if self._timer_at is not None and self._timer_at <= when:
            return  # armed early enough: it fires, and then the table knows exactly
        self._arm(when)

    def _rearm(self) -> None:
        if self._closed:
            return
        when = self.driver.next_timer()
        if when == self._timer_at and (self._timer is not None or when is None):
            return
        self._arm(when)

    def _arm(self, when: float | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = when
        if when is not None:
            self._timer = self._loop.call_at(when, self._on_timer)

    def _send(self, sa: IkeSA, d: Datagram) -> None:
        if self._send_one is not None:
            self._send_one(sa, d)
            return
        assert self._by_transport is not None
        send = self._by_transport.get(d.transport)
        if send is None:
            self._on_error(DriverFault("send", LookupError(
                f"no sender for transport {d.transport.name}"), sa=sa, datagram=d))
            return
        send(d.data, d.remote)  # an OSError is reported by the driver (stage "send")
