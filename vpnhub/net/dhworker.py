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

The backlog is bounded (BACKLOG jobs, about 30 ms of work for group 14): a
flood of first messages from spoofed addresses must not grow a queue here,
and a job left out costs nothing unless its SA comes back with an encrypted
message, which spoofed ones never do (so under such a flood the deferred g^xy
is mostly never computed at all).
"""

from __future__ import annotations

import queue
import threading

from vpnhub.crypto.dh import release_gil_in_this_thread
from vpnhub.ike.dhjob import SharedSecretJob

BACKLOG = 64


class DhWorker:
    """`submit(job)` from the loop; the thread runs each job once, in order."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[SharedSecretJob | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._busy: SharedSecretJob | None = None  # the job being computed now
        self._idle = threading.Condition()
        self.submitted = 0
        self.left_out = 0  # the backlog was full: the SA computes it if it needs it
        self.ran = 0  # computed here (the rest: by the SA that needed it first)
        self.overlaps = False  # gmpy2 releases the GIL: the work really runs beside the loop

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

    def _run(self) -> None:
        self.overlaps = release_gil_in_this_thread()
        while (job := self._jobs.get()) is not None:
            with self._idle:
                self._busy = job
            job.run()
            with self._idle:
                self._busy = None
                self._idle.notify_all()
            if job.ran_on_worker:
                self.ran += 1
