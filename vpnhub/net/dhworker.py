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
exponentiation (~0.4 ms for group 14); the jobs always come first. While
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
"""

from __future__ import annotations

import queue
import threading
from typing import cast

from vpnhub.crypto.dh import DEFAULT_BACKEND, release_gil_in_this_thread
from vpnhub.ike.dhjob import SharedSecretJob
from vpnhub.ike.dhpool import FILL_STEP, DhPool

BACKLOG = 64

# Put in the queue by `wake()`: no job, only "look at the pool again".
_WAKE = object()


class DhWorker:
    """`submit(job)` from the loop; the thread runs each job once, in order."""

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
            return
        self.submitted += 1
        job.settle = self.settle
        self._jobs.put(job)

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
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join(timeout=2.0)
            self._thread = None

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
            job.run()
            with self._idle:
                self._busy = None
                self._idle.notify_all()
            if job.ran_on_worker:
                self.ran += 1
