"""An SA's messages wait beside the DH worker while its g^xy is pending (net.dhworker
`park`, issue 13), instead of the IKE loop waiting for the worker or computing g^xy.

The worker here is the real thread; a job ahead of the SAs' jobs is held on a
`threading.Event`, so their g^xy stays pending for as long as a test wants. The
shell's part (vpnhub/concentrator/service.py `_receive`, `_release_parked`) is
played by `Shell`: every datagram for the concentrator asks `park` first, and the
keys the worker reports ready are drained as the loop's callback would.
"""

from __future__ import annotations

import queue
import threading
import time

from ike_harness import Lab

from vpnhub.crypto.dh import DHKeyPair, dh_group
from vpnhub.ike.dhjob import SharedSecretJob
from vpnhub.ike.sa import IkeSA
from vpnhub.ike.transport import Transport
from vpnhub.net.dhworker import PARK_PER_SA, DhWorker

PAT = "203.0.113.78"
Parked = tuple[bytes, tuple[str, int], int, Transport]


class HeldPair:
    """The key pair of the job that holds the worker: its g^xy waits for `gate`."""

    def __init__(self, gate: threading.Event) -> None:
        self.gate = gate

    def shared_secret(self, peer_public: bytes) -> bytes:
        assert self.gate.wait(30), "the test never opened the gate"
        return b"\x01" * 256


class FailsOnTheWorker:
    """A key pair whose g^xy fails on the worker thread, then works (the SA's call)."""

    def __init__(self, kp: DHKeyPair) -> None:
        self.kp = kp
        self.calls = 0

    def shared_secret(self, peer_public: bytes) -> bytes:
        self.calls += 1
        if threading.current_thread().name == "vpnhub-dh":
            raise RuntimeError("the worker's computation failed")
        return self.kp.shared_secret(peer_public)


class Shell:
    """The concentrator's shell around `lab`'s endpoint with a real DH worker."""

    def __init__(self, lab: Lab, *, fail: bool = False) -> None:
        self.lab = lab
        self.gate = threading.Event()
        self.fail = fail
        self.failing: list[FailsOnTheWorker] = []
        self.ready: queue.SimpleQueue[None] = queue.SimpleQueue()
        self.worker: DhWorker[Parked] = DhWorker()
        self.worker.on_ready(lambda: self.ready.put(None))  # the shell: call_soon_threadsafe
        self.worker.start()
        g = dh_group(14)
        # the job that holds the worker: every job submitted after it waits
        self.worker.submit(SharedSecretJob(HeldPair(self.gate), g.generate().public))  # type: ignore[arg-type]
        lab.endpoint.dh_offload = self._offload
        self.engine = lab.server.receive
        lab.server.receive = self._receive  # type: ignore[method-assign]
        self.offered: dict[bytes, list[bytes]] = {}  # per SA's cookies, arrival order
        self.delivered: dict[bytes, list[bytes]] = {}  # what the engine saw, in order

    def _offload(self, job: SharedSecretJob) -> None:
        if self.fail:
            failing = FailsOnTheWorker(job._kp)  # type: ignore[arg-type]
            job._kp = failing  # type: ignore[assignment]
            self.failing.append(failing)
        self.worker.submit(job)

    def _receive(self, data: bytes, src: tuple[str, int], port: int, transport: Transport,
                 now: float) -> IkeSA | None:
        self.offered.setdefault(data[:16], []).append(data)
        if self.worker.park(data, (data, src, port, transport)):
            return None
        return self._engine(data, src, port, transport)

    def _engine(self, data: bytes, src: tuple[str, int], port: int,
                transport: Transport) -> IkeSA | None:
        self.delivered.setdefault(data[:16], []).append(data)
        return self.engine(data, src, port, transport, self.lab.now)

    def release(self, jobs: int) -> None:
        """The loop's callbacks: deliver what was parked, until `jobs` SAs' messages
        were (a notify may stand for several jobs)."""
        before = len(self.delivered)
        while len(self.delivered) < before + jobs:
            self.ready.get(timeout=30)
            for data, src, port, transport in self.worker.take_parked():
                self._engine(data, src, port, transport)

    def stop(self) -> None:
        self.gate.set()
        self.worker.stop()


def _server_sa(lab: Lab, client: IkeSA) -> IkeSA:
    for sa in lab.endpoint:
        if sa.icookie == client.icookie:
            return sa
    raise AssertionError("no server SA for that client")


def test_message_3_waits_for_its_g_xy_while_the_loop_serves_other_sas() -> None:
    lab = Lab()
    shell = Shell(lab)
    try:
        a = lab.add_client(pat_ip=PAT)
        a.sa.initiate(lab.now)
        lab.run()
        # message 3 came while g^xy was pending (held worker): held back, unanswered
        assert shell.worker.parked == 1 and not a.children
        key = a.sa.icookie + a.sa.rcookie
        assert len(shell.offered[key]) == 1 and key not in shell.delivered
        assert _server_sa(lab, a.sa).keys_pending is not None  # nobody computed g^xy
        # meanwhile another client's login is served: its message 1 is answered
        b = lab.add_client(pat_ip=PAT, local_ip="10.10.10.9")
        b.sa.initiate(lab.now)
        lab.run()
        assert b.sa.rcookie != b"\x00" * 8  # it read our message 2
        assert shell.worker.parked == 2 and not b.children
        # a's peer retransmits message 3 while it waits: held too, after the first
        lab.advance(10.0)
        assert len(shell.offered[key]) >= 2 and key not in shell.delivered
        parked = shell.worker.parked
        shell.gate.set()
        shell.release(2)
        lab.run()
        assert a.sa.established and a.children and b.sa.established and b.children
        # the engine saw a's messages in their order of arrival, none lost
        assert shell.delivered[key][:parked - 1] == shell.offered[key][:parked - 1]
        assert shell.worker.released == parked and shell.worker.park_drops == 0
        assert shell.worker.ran == 3  # the held job and both SAs' g^xy: on the worker
        assert _server_sa(lab, a.sa).skeyid_e == a.sa.skeyid_e
        assert not lab.lost
    finally:
        shell.stop()


def test_a_job_that_fails_on_the_worker_releases_its_messages() -> None:
    """The worker's computation fails: the parked message 3 is delivered all the same
    and the SA computes g^xy itself (ike.dhjob `result`), as without a worker."""
    lab = Lab()
    shell = Shell(lab, fail=True)
    try:
        a = lab.add_client(pat_ip=PAT)
        a.sa.initiate(lab.now)
        lab.run()
        assert shell.worker.parked == 1 and not a.children
        shell.gate.set()
        shell.release(1)
        lab.run()
        assert a.sa.established and a.children
        assert shell.worker.released == 1 and shell.worker.ran == 1  # the held job only
        assert shell.failing[0].calls == 2  # the worker's failed try, then the SA's
    finally:
        shell.stop()


def test_too_many_messages_of_one_sa_are_dropped_and_counted() -> None:
    lab = Lab()
    shell = Shell(lab)
    try:
        a = lab.add_client(pat_ip=PAT)
        a.sa.initiate(lab.now)
        lab.run()
        message_3 = shell.offered[a.sa.icookie + a.sa.rcookie][0]
        for _ in range(PARK_PER_SA + 2):
            assert shell.worker.park(message_3, (message_3, (PAT, 1025), 500, Transport.IKE))
        assert shell.worker.parked == PARK_PER_SA and shell.worker.park_drops == 3
    finally:
        shell.stop()


def test_stop_hands_back_or_drops_what_is_parked_and_parks_nothing_more() -> None:
    """The concentrator's shutdown: the worker stops (its queued jobs run, their parked
    messages are reported ready), then the shell drops what is still parked (its SAs
    are being deleted); the loop's callbacks that come after find nothing, and a
    message after the stop goes to the engine, which computes g^xy itself."""
    lab = Lab()
    shell = Shell(lab)
    a = lab.add_client(pat_ip=PAT)
    a.sa.initiate(lab.now)
    lab.run()
    key = a.sa.icookie + a.sa.rcookie
    assert shell.worker.parked == 1
    shell.stop()
    shell.ready.get(timeout=5)  # the loop's callback comes after the shell dropped them
    assert shell.worker.drop_parked() == 1 and shell.worker.park_drops == 1
    assert shell.worker.take_parked() == [] and key not in shell.delivered
    message_3 = shell.offered[key][0]
    assert not shell.worker.park(message_3, (message_3, (PAT, 1025), 500, Transport.IKE))
    lab.advance(10.0)  # the peer retransmits message 3: served inline now
    assert a.sa.established and a.children


def test_parking_costs_next_to_nothing_while_no_job_is_pending() -> None:
    """The check every IKE message pays: two empty dicts while no g^xy is pending."""
    w: DhWorker[int] = DhWorker()
    w.on_ready(lambda: None)
    message = bytes(range(64))
    start = time.perf_counter()
    for _ in range(100_000):
        w.park(message, 0)
    per_call = (time.perf_counter() - start) / 100_000
    assert per_call < 5e-6  # ~0.1 us on the lab machine; generous for a shared one
    assert w.parked == 0


def test_a_job_the_full_backlog_left_out_is_queued_when_its_sa_comes_back() -> None:
    """A login storm fills the backlog: the SA's job is left out. Its message 3 (which
    carries our cookie, so its peer received our answer) queues the job then and waits
    beside it, instead of the loop computing g^xy itself with the GIL held."""
    from vpnhub.net import dhworker

    lab = Lab()
    shell = Shell(lab)
    try:
        g = dh_group(14)
        deadline = time.monotonic() + 30
        while shell.worker._busy is None:  # the held job left the queue: at the gate
            assert time.monotonic() < deadline, "the worker never took the held job"
            time.sleep(0.001)
        filler = g.generate()  # the backlog behind the held job: full
        for _ in range(dhworker.BACKLOG):
            shell.worker.submit(SharedSecretJob(filler, g.generate().public))
        a = lab.add_client(pat_ip=PAT)
        a.sa.initiate(lab.now)
        lab.run()
        assert shell.worker.left_out == 1  # a's job did not fit
        assert shell.worker.late == 1 and shell.worker.parked == 1 and not a.children
        assert _server_sa(lab, a.sa).keys_pending is not None  # nobody computed g^xy
        shell.gate.set()
        shell.release(1)
        lab.run()
        assert a.sa.established and a.children
        assert shell.worker.ran == dhworker.BACKLOG + 2  # the held job, the fillers, a's
        assert _server_sa(lab, a.sa).skeyid_e == a.sa.skeyid_e
    finally:
        shell.stop()


def test_a_left_out_job_is_kept_by_weak_reference_and_only_so_many() -> None:
    """The kept jobs cost no secret beyond their SA's life (a deleted SA's job, with
    its private value, is gone) and their number is bounded against a spoofed flood,
    whose first messages never come back."""
    import gc

    from vpnhub.net import dhworker

    g = dh_group(14)
    a, b = g.generate(), g.generate()
    w: DhWorker[int] = DhWorker()
    w.on_ready(lambda: None)
    w._thread = threading.current_thread()  # "started", but nobody takes jobs
    kept = [SharedSecretJob(a, b.public, key=i.to_bytes(16, "big"))
            for i in range(dhworker.BACKLOG + dhworker.LEFT_OUT_KEPT + 10)]
    for job in kept:
        w.submit(job)
    assert w.left_out == dhworker.LEFT_OUT_KEPT + 10
    assert len(w._left) == dhworker.LEFT_OUT_KEPT  # the oldest forgotten
    newest = kept[-1].key
    del kept, job  # the SAs are deleted: nothing else holds their jobs
    gc.collect()
    # its SA is gone: message 3 (say a forged one) finds nothing to queue or park
    assert not w.park(newest + bytes(12), 0) and w.late == 0
    w._thread = None
