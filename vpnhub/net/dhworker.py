"""A worker thread for phase 1's g^xy (ike.dhjob): the concentrator's second core.

The IKE loop is one thread; with DH group 14 a fifth of each remote-access
handshake is the shared secret's modular exponentiation. The endpoint hands
each pre-shared-key SA's job here after sending its clear-text answer; this
thread computes it with the GIL released (gmpy2, crypto.dh) while the loop
serves other peers, and the SA collects it one round trip later. A job the
thread has not reached yet is computed by the SA itself (ike.dhjob), so a
backlog here costs latency, never a wrong or missing key.

One thread: the loop itself keeps one core busy, and a second worker would
only compete with it and with the data plane for the other.

When it has no job, the thread also refills the endpoint's pool of key pairs
computed ahead (ike.dhpool, `fill_pool`): the responder's own g^x, one pair at
a time, the GIL released as for g^xy. On the loop (the fallback, without gmpy2)
each pair held IKE ~0.4 ms and was made only after 50 ms without a message, so
a steady stream of logins (bench/handshake.py, 600 tunnels at 250/s) emptied
the pool and each SA after it drew its g^x on the loop: 342 of 600 (cProfile,
2026-12-04). A pair being computed delays a queued g^xy job by at most one
g^x (~0.1 ms for group 14 since crypto.fixedbase); the jobs always come first. While
logins arrive the pool is refilled only below its low-water mark (a quarter:
a storm takes pairs made in idle time and leaves this core to the storm's
own work; a steady stream still never finds the pool empty), the rest once
no first message came for 50 ms (`DhPool.busy`, `refill_now`). Not
under a flood of first messages (`DhPool.refill_paused`): the pool then
drains and the endpoint's brief reuse of a pair takes over.

The backlog is bounded (BACKLOG jobs, about 30 ms of work for group 14): a
flood of first messages from spoofed addresses must not grow a queue here,
and a job left out costs nothing unless its SA comes back with an encrypted
message, which spoofed ones never do (so under such a flood the deferred g^xy
is mostly never computed at all).

A job left out is not forgotten, though (at most LEFT_OUT_KEPT of them, the
oldest forgotten first): when a message of its SA arrives that carries the
responder's cookie (CKY-R, which only a peer that received our answer knows,
RFC 2408 2.5.3: so never a spoofed flood's), the job goes into the queue then,
past the bound, and the message is parked beside it as below. Before, that
message's g^xy ran on the loop with the GIL held: 0-17 of a 600-login storm's,
and in a 10,000-session set-up, stalls of the loop of 52-95 ms (issue 13). The
queue past the bound is then at most one job per SA that proved its return
route, as many as the storm's logins in flight.

A message that comes for an SA whose job is still pending here (the
initiator's next, encrypted, message: Aggressive Mode message 3, Main Mode
message 5) would make the loop wait for this thread, or compute g^xy itself
with the GIL held if the job is still queued (ike.dhjob `result`): under a
storm of logins the backlog is deep and the loop, the concentrator's bottleneck,
stalled there (9.9 % of its samples, py-spy of 1,500 logins, issue 13). The
shell asks `park` first instead (by the SA's cookies, the first 16 bytes of
the ISAKMP header, RFC 2408 3.1): such a message waits here, in arrival
order, at most PARK_PER_SA per SA (beyond: dropped and counted, the peer
retransmits), and once this thread is done with the job (computed, failed, or
the worker stops) it tells the loop (`on_ready`: only for a job something is
parked for, no wake-up per job; and once for all the jobs done before the loop
came to take them) and the loop delivers them, each SA's in arrival order
(`take_parked`). The engine sees the same messages in the same order as
without parking, only later; a job left out of the backlog has none parked
(the SA computes g^xy when it needs it, as before).
"""

from __future__ import annotations

import queue
import threading
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar, cast

from vpnhub.crypto.dh import DEFAULT_BACKEND, release_gil_in_this_thread
from vpnhub.ike.dhjob import SharedSecretJob
from vpnhub.ike.dhpool import FILL_STEP, DhPool

BACKLOG = 64
# Messages held back per SA while its job is pending (`park`): message 3 and a
# retransmission or two of it; more is a misbehaving peer (dropped and counted)
PARK_PER_SA = 4
# Jobs left out for a full backlog that are kept for a late `park` (newest kept), by
# weak reference: the SA holds the job, so this costs a dict entry each.
LEFT_OUT_KEPT = 4096
KEY_LEN = 16  # CKY-I | CKY-R (RFC 2408 3.1)

T = TypeVar("T")

# Put in the queue by `wake()`: no job, only "look at the pool again".
_WAKE = object()


class DhWorker(Generic[T]):
    """`submit(job)` from the loop; the thread runs each job once, in order. `T`: what
    the shell parks (`park`), a datagram and where it came from."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[SharedSecretJob | object | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._busy: SharedSecretJob | None = None  # the job being computed now
        self._idle = threading.Condition()
        self.submitted = 0
        self.left_out = 0  # the backlog was full: the SA computes it if it needs it
        self.ran = 0  # computed here (the rest: by the SA that needed it first)
        self.overlaps = False  # gmpy2 releases the GIL: the work really runs beside the loop
        self._pool: DhPool | None = None
        # `park`: the submitted jobs not done yet, by their SA's cookies (added on the
        # loop, removed by this thread, under `_lock`); the messages held back for
        # them (created on the loop under `_lock` while the job is waiting, then
        # appended to and removed on the loop only)
        self._waiting: dict[bytes, SharedSecretJob] = {}
        self._parked: dict[bytes, list[T]] = {}
        # jobs left out for a full backlog, by their SA's cookies (the loop's only),
        # oldest first: submitted late once their SA's next message comes (`park`)
        # (weakly: a job whose SA was deleted meanwhile is gone, with its private value)
        self._left: dict[bytes, weakref.ref[SharedSecretJob]] = {}
        self.late = 0  # left-out jobs submitted when their SA's next message came
        self._lock = threading.Lock()
        self._ready: Callable[[], object] | None = None
        self._ready_keys: list[bytes] = []  # done, something parked: for `take_parked`
        self.parked = 0  # messages held back
        self.released = 0  # handed back to the loop in order (`take_parked`)
        self.park_drops = 0  # beyond PARK_PER_SA, or still held when the shell stopped

    def on_ready(self, notify: Callable[[], object]) -> None:
        """`notify()` from this thread once a job is done that something is parked for,
        unless an earlier notify has not been answered by `take_parked` yet (the shell:
        loop.call_soon_threadsafe; one wake-up of the loop for a burst of jobs). Call it
        before `start()`; without it nothing is parked."""
        self._ready = notify

    def fill_pool(self, pool: DhPool | None) -> bool:
        """Keep `pool` full from this thread, between jobs; True if it will (gmpy2 lets
        go of the GIL in powmod). False: without gmpy2 a pair made here would hold the
        GIL as long as on the loop, so the caller keeps filling it in idle time. Call it
        before `start()`. The pool is safe to share: `take` (the loop) pops and `fill`
        (here) appends to a deque, each one atomic under the GIL, and no pair is ever
        handed out twice."""
        self._pool = pool if DEFAULT_BACKEND == "gmpy2" else None
        return self._pool is not None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="vpnhub-dh", daemon=True)
            self._thread.start()

    def submit(self, job: SharedSecretJob) -> None:
        if self._thread is None or self._jobs.qsize() >= BACKLOG:
            self.left_out += 1
            self._keep_left_out(job)
            return
        self.submitted += 1
        self._enqueue(job)

    def _enqueue(self, job: SharedSecretJob) -> None:
        job.settle = self.settle
        if job.key and self._ready is not None:
            with self._lock:
                self._waiting[job.key] = job
        self._jobs.put(job)

    def _keep_left_out(self, job: SharedSecretJob) -> None:
        """Keep a job the full backlog left out, for `park` to submit if its SA comes
        back; only while something can be parked (`on_ready`, a running thread)."""
        if not job.key or self._ready is None or self._thread is None:
            return
        left = self._left
        left[job.key] = weakref.ref(job)
        if len(left) > LEFT_OUT_KEPT:  # the oldest: most likely a spoofed first message
            del left[next(iter(left))]

    def _submit_late(self, key: bytes) -> SharedSecretJob | None:
        """The SA of a left-out job sent its next message: queue the job now (past the
        bound: the peer proved it receives our answers), or None if there is none."""
        ref = self._left.pop(key, None)
        job = ref() if ref is not None else None
        if job is None or job.done or self._thread is None:
            return None
        self.late += 1
        self._enqueue(job)
        return job

    def park(self, message: bytes, item: T) -> bool:
        """On the loop, for each IKE message before the engine sees it: True if it is
        held back (or dropped: too many held) because its SA's g^xy is still pending
        here; `item` comes back from `take_parked` once the job is done. Nearly free
        while nothing is waiting (three empty dicts)."""
        if not self._waiting and not self._parked and not self._left:
            return False
        key = message[:KEY_LEN]
        held = self._parked.get(key)
        if held is None:  # the first one of its SA: only while the job is not done
            job = self._waiting.get(key) or self._submit_late(key)
            if job is None or job.done:
                return False
            with self._lock:  # against `_done`: either it sees this list, or we its end
                if key not in self._waiting:
                    return False
                held = self._parked[key] = []
        if len(held) >= PARK_PER_SA:
            self.park_drops += 1
            return True
        held.append(item)
        self.parked += 1
        return True

    def take_parked(self) -> list[T]:
        """On the loop, after `on_ready`'s notify: what was parked for the jobs done
        since the last call, each SA's in arrival order (each once; what was dropped
        meanwhile is not there)."""
        with self._lock:
            keys, self._ready_keys = self._ready_keys, []
        out: list[T] = []
        for key in keys:
            held = self._parked.pop(key, None)
            if held is not None:
                out += held
        self.released += len(out)
        return out

    def drop_parked(self) -> int:
        """On the loop at shutdown: forget what is parked (the SAs are being deleted)."""
        dropped = sum(len(held) for held in self._parked.values())
        self._parked.clear()
        self._left.clear()
        self.park_drops += dropped
        return dropped

    def _done(self, job: SharedSecretJob) -> None:
        """This thread is done with `job` (computed, or failed: the SA's own call says
        why): what is parked for it goes back to the loop."""
        key = job.key
        if not key or self._ready is None:
            return
        with self._lock:
            if self._waiting.get(key) is job:
                del self._waiting[key]
            if key not in self._parked:
                return
            first = not self._ready_keys
            self._ready_keys.append(key)
        if first:
            self._ready()

    def wake(self) -> None:
        """The pool was drawn from without a job coming (Quick Mode PFS, a flood's
        first messages): refill it. The shell calls it from its tick when the pool
        wants pairs and nothing is queued here."""
        if self._thread is not None and self._pool is not None and self._jobs.empty() \
                and self._pool.refill_now():
            self._jobs.put(_WAKE)

    def settle(self, job: SharedSecretJob) -> None:
        """The SA needs g^xy now: if this thread is computing it, wait (well under a
        millisecond) instead of computing it a second time on the loop."""
        with self._idle:
            while self._busy is job:
                self._idle.wait(0.05)

    def stop(self) -> None:
        """The queued jobs are run first; whatever is still parked then is handed back
        (`on_ready`: the SA computes g^xy itself if it needs it) and nothing more is
        parked."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join(timeout=2.0)
            self._thread = None
        self._left.clear()  # (the loop's; the thread is gone: no late submit)
        with self._lock:
            self._waiting.clear()
            first = not self._ready_keys
            self._ready_keys += self._parked  # (a key twice: taken once)
        if first and self._parked and self._ready is not None:
            self._ready()

    def _next_job(self) -> SharedSecretJob | None:
        """The next job (None: stop); while there is none and the pool wants pairs
        now (`DhPool.refill_now`: in idle time, or below its low-water mark while
        logins arrive), one pair per turn, so that a job submitted meanwhile waits
        for one at most."""
        pool = self._pool
        while True:
            if pool is not None and pool.refill_now():
                try:
                    item = self._jobs.get_nowait()
                except queue.Empty:
                    pool.fill(FILL_STEP)
                    continue
            else:
                item = self._jobs.get()
            if item is not _WAKE:  # a job, or None: stop (_WAKE: look at the pool again)
                return cast(SharedSecretJob | None, item)

    def _run(self) -> None:
        self.overlaps = release_gil_in_this_thread()
        while (job := self._next_job()) is not None:
            with self._idle:
                self._busy = job
            try:
                job.run()
            finally:
                with self._idle:
                    self._busy = None
                    self._idle.notify_all()
                self._done(job)
            if job.ran_on_worker:
                self.ran += 1
