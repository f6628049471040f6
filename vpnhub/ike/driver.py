"""The one IKE driver loop: receive, dispatch events, send, re-arm the timer.

Every program that drives the engine (the concentrator, the client, the load
generator, the in-memory test harness) runs the same loop, as aioquic's
`asyncio/protocol.py` does for `QuicConnection`:

- a message arrives: the table of SAs routes it (`receive`), then the SA's
  events go to ONE `on_event` callback and its datagrams to ONE `send`
  callback;
- a timer is due: the table runs the due SAs (`handle_timer`), then the same;
- the application called into an SA (`xauth_result`, `delete`, ...): `service`
  does the same for that SA, and tells the table its timer may have moved;
- `next_timer()` says when to call `timer()` next: exact, not polled;
- an event handler that must act only once the SA's datagrams left (the
  outbound SA of a Quick Mode we initiated, after message 3) hands the action
  to `after_sent`: it runs after this call's datagrams went to `send`, through
  the application's `when_sent` when that send may queue them.

Sans-I/O like the rest of `ike/`: no sockets, no clock (`now` is passed in).
An exception in a callback or in the table is reported through `on_error`
and the loop goes on: one bad event must not stall every other SA.

Two tables: the responder's `IkeEndpoint` (demux by cookies, bounded
half-open state) and `InitiatorTable` here (the client's SA and the ones a
phase 1 rekey replaces; the load generator's thousands of initiators).
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from vpnhub.ike import events as ev
from vpnhub.ike.sa import Address, Datagram, IkeSA
from vpnhub.ike.summary import Notice
from vpnhub.ike.transitions import State
from vpnhub.ike.transport import Transport

HEADER_LEN = 28  # RFC 2408 3.1: the ISAKMP header; anything shorter is no message

OnEvent = Callable[[IkeSA, ev.Event, float], None]  # (sa, event, now)
# (sa, datagram): the SA too, because a load generator sends each simulated
# client's datagrams out of that client's own socket
Send = Callable[[IkeSA, Datagram], None]
Action = Callable[[], None]
# (sa, the last datagram handed to `send`, action): run `action` once that datagram
# left, e.g. when the send queue that holds it drained that far (vpnhub/net/sendqueue.py)
WhenSent = Callable[[IkeSA, Datagram, Action], None]


class SaTable(Protocol):
    """What the driver needs of a table of SAs (`IkeEndpoint`, `InitiatorTable`)."""

    def receive(self, data: bytes, remote: Address, local_port: int, now: float,
                transport: Transport | None = None, *, touch: bool = True) -> IkeSA | None:
        """The SA that took the message, or None (dropped). `touch=False`: the caller
        queues the SA's timer itself afterwards (`IkeDriver.service` does)."""
        ...

    def next_timer(self) -> float | None: ...

    def handle_timer(self, now: float, limit: int | None = None) -> list[IkeSA]: ...

    def touch(self, sa: IkeSA) -> float | None:
        """Queue `sa`'s timer; returns its deadline (None: it waits for nothing)."""
        ...

    def next_notice(self) -> Notice | None: ...


@dataclass(frozen=True)
class DriverFault:
    """Something raised inside the loop: reported, never propagated.

    `stage` says where: "receive" (the table), "event" (the `on_event`
    callback), "timer" (the table's timers), "send" (the `send` callback) or
    "after_sent" (an action given to `after_sent`, or `when_sent`).
    """

    stage: str
    error: Exception
    sa: IkeSA | None = None
    event: ev.Event | None = None
    remote: Address | None = None
    datagram: Datagram | None = None

    def describe(self) -> str:
        """The log line (never carries a secret: events' secrets do not print)."""
        if self.stage == "event" and self.event is not None:
            return f"internal error handling {type(self.event).__name__}: {self.error!r}"
        if self.stage == "receive" and self.remote is not None:
            return (f"internal error receiving from {self.remote[0]}:{self.remote[1]}:"
                    f" {self.error!r}")
        if self.stage == "send" and self.datagram is not None:
            to = self.datagram.remote
            return f"cannot send to {to[0]}:{to[1]}: {self.error}"
        if self.stage == "timer":
            return f"internal error in the timer loop: {self.error!r}"
        return f"internal error ({self.stage}): {self.error!r}"


OnError = Callable[[DriverFault], None]
OnNotice = Callable[[Notice], None]


class IkeDriver:
    """Moves one table's messages, events, datagrams and timers.

    `on_notice` gets the table's rate-limited summary lines (`IkeEndpoint`'s
    refused, recycled and unanswered SAs) after each receive and timer; without
    it they stay in the table for the application to read. `when_sent` runs an
    `after_sent` action once the datagram it follows really left (a `send` that may
    queue datagrams gives it); without it the action runs as soon as that datagram
    was handed to `send`.
    """

    def __init__(self, table: SaTable, on_event: OnEvent, send: Send, *,
                 on_error: OnError, on_notice: OnNotice | None = None,
                 when_sent: WhenSent | None = None) -> None:
        self.table = table
        self._on_event = on_event
        self._send = send
        self._on_error = on_error
        self._on_notice = on_notice
        self._when_sent = when_sent
        # from `after_sent`: (sa, action), run at the end of that SA's `service` (a
        # handler may service another SA inside: its datagrams are not these)
        self._after: list[tuple[IkeSA, Action]] = []
        # the earliest deadline `service` gave an SA since `earliest_touched()` last
        # asked: a timer armed before it need not move (no table scan per message)
        self._earliest: float | None = None
        # how often `timer()` ran and how many SAs it ran (issue 13: idle timers are
        # coalesced so that 10,000 SAs do not wake the loop once each)
        self.wakes = 0
        self.timer_sas = 0

    def receive(self, data: bytes, remote: Address, local_port: int, transport: Transport,
                now: float) -> IkeSA | None:
        """One IKE message (non-ESP marker stripped) from `remote` to our `local_port`."""
        try:
            # no timer work in the table: `service` below queues the SA's timer once
            # its events ran (one get_timer per message, not two; issue 13)
            sa = self.table.receive(data, remote, local_port, now, transport, touch=False)
        except Exception as e:  # the engine catches its own; this is belt and braces
            self._on_error(DriverFault("receive", e, remote=remote))
            sa = None
        if sa is not None:
            self.service(sa, now)
        self._notices()
        return sa

    def timer(self, now: float, limit: int | None = None) -> None:
        """Run the timers due at `now` (call it at `next_timer()`). `limit`: at most
        that many SAs' timers; the others stay due (`next_timer()` <= `now`), for the
        next call: an event loop answers the messages waiting in between."""
        self.wakes += 1
        try:
            due = self.table.handle_timer(now, limit)
        except Exception as e:
            self._on_error(DriverFault("timer", e))
            due = []
        self.timer_sas += len(due)
        for sa in due:
            self.service(sa, now)
        self._notices()

    def service(self, sa: IkeSA, now: float) -> None:
        """Dispatch the SA's events, send its datagrams and re-queue its timer: after
        every call into the SA (the application's too, e.g. `xauth_result`)."""
        while (e := sa.next_event()) is not None:
            try:
                self._on_event(sa, e, now)
            except Exception as exc:  # the loop goes on for this SA and the others
                self._on_error(DriverFault("event", exc, sa=sa, event=e))
        last: Datagram | None = None
        for d in sa.datagrams_to_send():  # after the events: handlers queue answers
            last = d
            try:
                self._send(sa, d)
            except Exception as exc:
                self._on_error(DriverFault("send", exc, sa=sa, datagram=d))
        if self._after:
            self._run_after_sent(sa, last)
        # an event handler's call may have moved its timer earlier
        t = self.table.touch(sa)
        if t is not None and (self._earliest is None or t < self._earliest):
            self._earliest = t

    def after_sent(self, sa: IkeSA, action: Action) -> None:
        """Run `action` once `sa`'s datagrams have left: call it from a handler of one
        of `sa`'s events; it runs at the end of that `service` call, after the
        datagrams went to `send` (and through `when_sent`, once they left its queue).

        Events are dispatched BEFORE the datagrams are sent: a responder's inbound SA
        must be in place before its Quick Mode message 2 leaves (vpnhub/ike/quick.py).
        The outbound SA of a Quick Mode we initiated must wait for message 3 instead:
        vpnc keeps one SA pair and answers ESP on an SA whose message 3 it has not
        read with "unknown spi" (issue 16)."""
        self._after.append((sa, action))

    def _run_after_sent(self, sa: IkeSA, last: Datagram | None) -> None:
        actions = [a for s, a in self._after if s is sa]
        if not actions:
            return
        self._after = [(s, a) for s, a in self._after if s is not sa]
        for action in actions:
            try:
                if last is None or self._when_sent is None:
                    action()  # nothing sent now, or `send` never queues: nothing to wait for
                else:
                    self._when_sent(sa, last, action)
            except Exception as exc:
                self._on_error(DriverFault("after_sent", exc, sa=sa))

    def next_timer(self) -> float | None:
        """When `timer()` is due next (None: no SA waits for anything)."""
        self._earliest = None
        return self.table.next_timer()

    def earliest_touched(self) -> float | None:
        """The earliest deadline an SA got from `service` since the last call (or
        since `next_timer()`), in O(1). After a message, an armed timer only has to
        move if this is earlier: deadlines that moved later make it fire early, and
        `timer()` then finds nothing due and `next_timer()` says when to come back."""
        t, self._earliest = self._earliest, None
        return t

    def _notices(self) -> None:
        if self._on_notice is None:
            return  # the application reads the table's notices itself
        while (n := self.table.next_notice()) is not None:
            self._on_notice(n)


class InitiatorTable:
    """The initiator's SAs, routed by initiator cookie, with a timer heap.

    The initiator chose every icookie it holds (RFC 2408 2.5.3), so the first
    eight bytes of a message find its SA; anything else is dropped and counted.
    Deleted SAs leave the table once the driver had them (their last events
    still reach `on_event`: `receive()` and `handle_timer()` return them).
    """

    def __init__(self) -> None:
        self._by_icookie: dict[bytes, IkeSA] = {}
        # (deadline, n, sa) with lazy deletion, as in IkeEndpoint: at most one live
        # entry per SA, pushed only when its deadline moves earlier than the queued one
        self._timers: list[tuple[float, int, IkeSA]] = []
        self._queued: dict[bytes, float] = {}
        self._seq = 0
        self.drops: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._by_icookie)

    def __iter__(self) -> Iterator[IkeSA]:
        return iter(list(self._by_icookie.values()))

    def __contains__(self, sa: object) -> bool:
        return isinstance(sa, IkeSA) and self._by_icookie.get(sa.icookie) is sa

    def add(self, sa: IkeSA) -> None:
        """Route messages for `sa.icookie` to `sa` (call `IkeDriver.service` after
        `initiate()` so that its first message goes out and its timer is queued)."""
        if self._by_icookie.get(sa.icookie, sa) is not sa:
            raise ValueError("initiator cookie already in use")
        self._by_icookie[sa.icookie] = sa
        self.touch(sa)

    def remove(self, sa: IkeSA) -> None:
        if self._by_icookie.get(sa.icookie) is sa:
            del self._by_icookie[sa.icookie]
            self._queued.pop(sa.icookie, None)

    def get(self, icookie: bytes) -> IkeSA | None:
        return self._by_icookie.get(icookie)

    def next_notice(self) -> Notice | None:
        return None  # nothing summarised here: an initiator floods no one's log

    def receive(self, data: bytes, remote: Address, local_port: int, now: float,
                transport: Transport | None = None, *, touch: bool = True) -> IkeSA | None:
        if len(data) < HEADER_LEN:
            self.drops["truncated_header"] += 1
            return None
        sa = self._by_icookie.get(data[:8])
        if sa is None:
            self.drops["unknown_cookie"] += 1
            return None
        sa.receive(data, remote, local_port, now, transport)
        if touch or sa.state is State.DELETED:
            self._after(sa)
        return sa

    def touch(self, sa: IkeSA) -> float | None:
        if sa not in self:
            return None
        if sa.state is State.DELETED:
            self.remove(sa)
            return None
        t = sa.get_timer()
        if t is None:
            return None
        queued = self._queued.get(sa.icookie)
        if queued is not None and queued <= t:
            return t  # that entry fires first and re-arms the SA
        self._queued[sa.icookie] = t
        self._seq += 1
        heapq.heappush(self._timers, (t, self._seq, sa))
        return t

    def next_timer(self) -> float | None:
        while self._timers:
            t, _, sa = self._timers[0]
            if self._live(sa) and sa.get_timer() == t:
                return t
            heapq.heappop(self._timers)  # stale: the SA moved on or is gone
            self._popped(sa, t)
            self.touch(sa)  # its real deadline (if any) needs an entry of its own
        return None

    def handle_timer(self, now: float, limit: int | None = None) -> list[IkeSA]:
        """Run every due SA timer once (at most `limit` SAs' timers); returns the SAs
        that may have output or events."""
        touched: list[IkeSA] = []
        seen: set[int] = set()
        while self._timers and self._timers[0][0] <= now and \
                (limit is None or len(touched) < limit):
            t, _, sa = heapq.heappop(self._timers)
            self._popped(sa, t)
            if not self._live(sa) or id(sa) in seen:
                continue  # a second due entry of an SA that ran: re-armed below
            current = sa.get_timer()
            if current is None or current > now:  # stale: the deadline moved later
                self.touch(sa)
                continue
            seen.add(id(sa))
            sa.handle_timer(now)
            touched.append(sa)
        for sa in touched:
            self._after(sa)
        return touched

    def _live(self, sa: IkeSA) -> bool:
        return sa in self and sa.state is not State.DELETED

    def _popped(self, sa: IkeSA, t: float) -> None:
        if self._queued.get(sa.icookie) == t and sa in self:
            del self._queued[sa.icookie]

    def _after(self, sa: IkeSA) -> None:
        if sa.state is State.DELETED:
            self.remove(sa)
        else:
            self.touch(sa)
