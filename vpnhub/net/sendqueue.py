"""A bounded queue for IKE datagrams that meet a full socket send buffer.

`sendto` on a non-blocking UDP socket fails with EAGAIN (BlockingIOError)
when the socket's send buffer is full, e.g. while the data plane floods the
same UDP 4500 socket with ESP. An IKE reply lost there costs the peer a
retransmission (vpnc: 2-3 s and more; RFC 2408 leaves the back-off to the
sender) or the whole exchange, so the datagram waits here until the socket is
writable again (`loop.add_writer`). The queue is bounded (a flood must not
grow memory without limit); what does not fit is dropped and counted, and the
caller is told at most once per `report_every` seconds.

`when_sent` runs an action once everything queued before it has left: the
outbound SA of a Quick Mode we initiated must not carry ESP before our
message 3 left (issue 16, vpnhub/ike/driver.py `after_sent`).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import deque
from collections.abc import Callable

Address = tuple[str, int]

MAX_QUEUED = 256  # datagrams (IKE messages are at most a few KiB each)
REPORT_EVERY = 10.0  # seconds between two "dropped" reports
DRAIN_POLL = 0.005  # seconds between two looks at the queue in `drained`


class SendQueue:
    """Send datagrams through `sendto`; queue them while `fd` is not writable."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int,
                 sendto: Callable[[bytes, Address], object], *,
                 max_queued: int = MAX_QUEUED,
                 on_drops: Callable[[int], None] | None = None,
                 report_every: float = REPORT_EVERY,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._loop = loop
        self._fd = fd
        self._sendto = sendto
        self._max = max_queued
        self._queue: deque[tuple[bytes, Address]] = deque()
        # when_sent: (datagrams that must leave first, counted from the start, action)
        self._waiting: deque[tuple[int, Callable[[], None]]] = deque()
        self._taken = 0  # queued datagrams that left the queue (sent or given up)
        self._on_drops = on_drops
        self._report_every = report_every
        self._clock = clock
        self._last_report: float | None = None
        self._watching = False
        self.queued = 0  # datagrams that had to wait for the socket
        self.dropped = 0  # datagrams lost: the queue was full (or sending failed later)
        self.sent_late = 0  # queued datagrams sent once the socket was writable

    def __len__(self) -> int:
        return len(self._queue)

    def send(self, data: bytes, addr: Address) -> None:
        """Send now, or queue (keeping the order) if the socket is full.

        Other OSErrors (no route, ...) are raised: they are not transient."""
        if not self._queue:
            try:
                self._sendto(data, addr)
                return
            except (BlockingIOError, InterruptedError):
                pass
        self._enqueue(data, addr)

    def when_sent(self, action: Callable[[], None]) -> None:
        """Run `action` once every datagram queued so far left the queue (sent, or
        given up on a hard error): at once when nothing waits."""
        if not self._queue:
            action()
            return
        self._waiting.append((self._taken + len(self._queue), action))

    def lift_bound(self) -> None:
        """No bound from now on: at shutdown every client gets a DELETE (RFC 2408
        4.8: the peer then drops its SAs at once instead of waiting for DPD), and a
        burst of 10,000 must wait for the socket, not be dropped (issue 13)."""
        self._max = sys.maxsize

    async def drained(self, timeout: float) -> bool:
        """Wait until every queued datagram went out, at most `timeout` seconds."""
        deadline = self._clock() + timeout
        while self._queue and self._clock() < deadline:
            await asyncio.sleep(DRAIN_POLL)
        return not self._queue

    def close(self) -> None:
        if self._watching:
            self._loop.remove_writer(self._fd)
            self._watching = False
        self._queue.clear()
        self._waiting.clear()  # shutting down: what they would install is going anyway

    def _enqueue(self, data: bytes, addr: Address) -> None:
        if len(self._queue) >= self._max:
            self.dropped += 1
            self._report()
            return
        self._queue.append((data, addr))
        self.queued += 1
        if not self._watching:
            self._loop.add_writer(self._fd, self._writable)
            self._watching = True

    def _writable(self) -> None:
        while self._queue:
            data, addr = self._queue[0]
            try:
                self._sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                return  # still full: wait for the next writable event
            except OSError:  # this one cannot go (e.g. no route): do not block the others
                self.dropped += 1
            else:
                self.sent_late += 1
            self._queue.popleft()
            self._taken += 1
            while self._waiting and self._waiting[0][0] <= self._taken:
                self._waiting.popleft()[1]()
        self._loop.remove_writer(self._fd)
        self._watching = False

    def _report(self) -> None:
        now = self._clock()
        if self._on_drops is None:
            return
        if self._last_report is not None and now - self._last_report < self._report_every:
            return
        self._last_report = now
        self._on_drops(self.dropped)
