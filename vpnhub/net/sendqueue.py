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

With `send_batch` (``udpgso.batch_sender``: one ``sendmmsg`` with the C
accelerator) the datagrams of one turn of the loop leave together: the first
one schedules a flush with ``loop.call_soon``, which asyncio runs first in its
next iteration, before the callbacks of the sockets that became readable, and
the flush hands all of them to the kernel in one system call (issue 13: each
``sendto`` was ~54 us of the loop's thread in a VM, where every one runs the
veth and PAT path in softirq and wakes the load generator on the other vCPU).
What the kernel refuses with EAGAIN waits here as above, in order; a datagram
refused with another error (no route, too long) is dropped, counted, reported
to `on_error`, and the others go.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from collections import deque
from collections.abc import Callable

from vpnhub.net.udpgso import SEND_BATCH, Outgoing, SendBatch

Address = tuple[str, int]

MAX_QUEUED = 256  # datagrams (IKE messages are at most a few KiB each)
REPORT_EVERY = 10.0  # seconds between two "dropped" reports
DRAIN_POLL = 0.005  # seconds between two looks at the queue in `drained`


class SendQueue:
    """Send datagrams through `sendto`; queue them while `fd` is not writable.

    With `send_batch`, `send` only collects: the turn's datagrams leave in one
    flush (the module doc); hard errors then go to `on_error(data, addr, error)`,
    since the caller of `send` is gone. Without it, `send` sends at once and
    raises them."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int,
                 sendto: Callable[[bytes, Address], object], *,
                 send_batch: SendBatch | None = None,
                 on_error: Callable[[bytes, Address, Exception], None] | None = None,
                 max_queued: int = MAX_QUEUED,
                 on_drops: Callable[[int], None] | None = None,
                 report_every: float = REPORT_EVERY,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._loop = loop
        self._fd = fd
        self._sendto = sendto
        self._send_batch = send_batch
        self._on_error = on_error
        self._max = max_queued
        # this turn's datagrams (with send_batch), not tried yet; never at the same
        # time as `_queue`: a flush moves what the kernel refused there, and `send`
        # queues behind `_queue` while it waits for the socket
        self._pending: list[Outgoing] = []
        self._flush_handle: asyncio.Handle | None = None
        self._queue: deque[Outgoing] = deque()
        # when_sent: (datagrams that must leave first, counted from the start, action)
        self._waiting: deque[tuple[int, Callable[[], None]]] = deque()
        self._entered = 0  # datagrams that entered `_pending` or `_queue`
        self._taken = 0  # ... and of those, that left (sent or given up)
        self._on_drops = on_drops
        self._report_every = report_every
        self._clock = clock
        self._last_report: float | None = None
        self._watching = False
        self.queued = 0  # datagrams that had to wait for the socket
        self.dropped = 0  # datagrams lost: the queue was full (or sending failed later)
        self.sent_late = 0  # queued datagrams sent once the socket was writable
        self.flushes = 0  # flushes of a turn's datagrams (with send_batch)
        self.send_calls = 0  # send_batch calls (system calls with the accelerator)

    def __len__(self) -> int:
        """Datagrams not sent yet: this turn's and those waiting for the socket."""
        return self._entered - self._taken

    def send(self, data: bytes, addr: Address) -> None:
        """Send now (or, with `send_batch`, at the end of the turn), or queue (keeping
        the order) if the socket is full.

        Without `send_batch`, other OSErrors (no route, ...) are raised: they are not
        transient."""
        if self._send_batch is not None:
            if self._queue:
                self._entered += self._enqueue(data, addr)  # behind what waits
                return
            self._pending.append((data, addr))
            self._entered += 1
            if self._flush_handle is None:
                self._flush_handle = self._loop.call_soon(self.flush)
            return
        if not self._queue:
            try:
                self._sendto(data, addr)
                return
            except (BlockingIOError, InterruptedError):
                pass
        self._entered += self._enqueue(data, addr)

    def flush(self) -> None:
        """Send this turn's datagrams now (the loop calls it once per turn); what meets
        a full socket waits for it."""
        self._flush_handle = None  # a flush scheduled later finds nothing, or new ones
        items = self._pending  # a when_sent action that sends appends here meanwhile
        if not items:
            return
        self.flushes += 1
        done = self._send_items(items, late=False)
        self._pending = []
        for i in range(done, len(items)):  # the socket is full: the rest waits, in order
            if not self._enqueue(*items[i]):
                self._left(1)  # dropped at the bound: given up, as far as when_sent goes

    def when_sent(self, action: Callable[[], None]) -> None:
        """Run `action` once every datagram queued so far left the queue (sent, or
        given up on a hard error): at once when nothing waits."""
        if self._entered == self._taken:
            action()
            return
        self._waiting.append((self._entered, action))

    def lift_bound(self) -> None:
        """No bound from now on: at shutdown every client gets a DELETE (RFC 2408
        4.8: the peer then drops its SAs at once instead of waiting for DPD), and a
        burst of 10,000 must wait for the socket, not be dropped (issue 13)."""
        self._max = sys.maxsize

    async def drained(self, timeout: float) -> bool:
        """Wait until every queued datagram went out, at most `timeout` seconds."""
        deadline = self._clock() + timeout
        while len(self) and self._clock() < deadline:
            await asyncio.sleep(DRAIN_POLL)
        return not len(self)

    def close(self) -> None:
        """Stop: this turn's datagrams get one try first (a DELETE sent just before a
        close must not stay behind), what waits for the socket is dropped."""
        self._waiting.clear()  # shutting down: what they would install is going anyway
        if self._pending and not self._queue:
            self._send_items(self._pending, late=False)
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._watching:
            self._loop.remove_writer(self._fd)
            self._watching = False
        self._taken = self._entered  # nothing waits any more
        self._pending = []
        self._queue.clear()

    def _send_items(self, items: list[Outgoing], *, late: bool) -> int:
        """Send `items` in order until the socket is full; returns how many left (sent,
        or dropped on a hard error: the others still go)."""
        send_batch = self._send_batch
        assert send_batch is not None
        i = 0
        while i < len(items):  # `items` may grow meanwhile (flush)
            self.send_calls += 1
            try:
                k = send_batch(items, i)
            except (BlockingIOError, InterruptedError):
                break  # full: the caller keeps the rest
            except Exception as e:  # this one cannot go (no route, too long, bad port)
                self.dropped += 1
                if self._on_error is not None:
                    self._on_error(items[i][0], items[i][1], e)
                k = 1
            else:
                if late:
                    self.sent_late += k
            i += k
            self._left(k)
        return i

    def _left(self, k: int) -> None:
        """`k` more datagrams left: run the `when_sent` actions that waited for them."""
        self._taken += k
        while self._waiting and self._waiting[0][0] <= self._taken:
            self._waiting.popleft()[1]()

    def _enqueue(self, data: bytes, addr: Address) -> bool:
        """Queue behind the others until the socket is writable; False: dropped (full)."""
        if len(self._queue) >= self._max:
            self.dropped += 1
            self._report()
            return False
        self._queue.append((data, addr))
        self.queued += 1
        if not self._watching:
            self._loop.add_writer(self._fd, self._writable)
            self._watching = True
        return True

    def _writable(self) -> None:
        if self._send_batch is not None:
            self._writable_batch()
            return
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
            self._left(1)
        self._loop.remove_writer(self._fd)
        self._watching = False

    def _writable_batch(self) -> None:
        """The queue in batches of what one call sends (a `when_sent` action may queue
        more meanwhile: it waits for the next batch)."""
        while self._queue:
            items = list(itertools.islice(self._queue, SEND_BATCH))
            done = self._send_items(items, late=True)
            for _ in range(done):
                self._queue.popleft()
            if done < len(items):
                return  # still full: wait for the next writable event
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
