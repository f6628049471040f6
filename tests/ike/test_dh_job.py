"""Phase 1's g^xy computed off the IKE loop (ike.dhjob, net.dhworker; issue 13 point 4).

With a pre-shared key the responder answers Aggressive Mode message 1 and Main
Mode message 3 without g^xy (RFC 2409 section 5: SKEYID = prf(PSK, Ni_b |
Nr_b), HASH_R needs only SKEYID); the shared secret is computed on a worker
thread meanwhile and SKEYID_d/a/e when the first encrypted message needs them.
These tests check that the keys are the same whoever computes them, that a bad
KE payload is still refused at once; tests/ike/test_exchange_certificates.py
checks that signatures (whose SKEYID needs g^xy) never defer.
"""

from __future__ import annotations

import threading

from ike_harness import Lab

from vpnhub.crypto.dh import dh_group
from vpnhub.crypto.keys import derive_skeyids
from vpnhub.crypto.prf import hash_alg
from vpnhub.ike.dhjob import SharedSecretJob
from vpnhub.ike.sa import IkeConfig, IkeSA, Role
from vpnhub.ike.state import State
from vpnhub.net.dhworker import DhWorker
from vpnhub.wire.constants import ExchangeType
from vpnhub.wire.message import decode_header

PAT = "203.0.113.78"


def _server_sa(lab: Lab) -> IkeSA:
    sas = [sa for sa in lab.endpoint._by_cookies.values()]
    assert len(sas) == 1
    return sas[0]


def test_a_job_computes_once_whoever_comes_first() -> None:
    g = dh_group(14)
    a, b = g.generate(), g.generate()
    job = SharedSecretJob(a, b.public)
    job.run()
    assert job.ran_on_worker
    assert job.result() == b.shared_secret(a.public)
    late = SharedSecretJob(g.generate(), b.public)
    value = late.result()  # the SA first: the worker's later run changes nothing
    late.run()
    assert not late.ran_on_worker and late.result() == value


def test_deferred_keys_match_and_the_tunnel_comes_up() -> None:
    lab = Lab()
    jobs: list[SharedSecretJob] = []
    lab.endpoint.dh_offload = jobs.append  # nobody runs them: the SA computes on use
    c = lab.add_client(pat_ip=PAT)
    c.sa.initiate(lab.now)
    lab.run()
    assert c.sa.established and c.children
    assert len(jobs) == 1
    server = _server_sa(lab)
    # both ends hold the same keys: the client computed them eagerly
    assert (server.skeyid_d, server.skeyid_a, server.skeyid_e, server.enc_key) == \
        (c.sa.skeyid_d, c.sa.skeyid_a, c.sa.skeyid_e, c.sa.enc_key)
    assert server.keys_pending is None


def test_the_worker_thread_computes_and_the_keys_agree() -> None:
    worker = DhWorker()
    worker.start()
    ran = threading.Event()
    lab = Lab()

    def offload(job: SharedSecretJob) -> None:
        worker.submit(job)
        worker._jobs.put(_Marker(ran))  # type: ignore[arg-type]

    lab.endpoint.dh_offload = offload
    c = lab.add_client(pat_ip=PAT)
    c.sa.initiate(lab.now)
    lab.run(rounds=1)  # message 1 in, message 2 out: the job is queued
    assert ran.wait(5.0)  # the worker has passed it
    lab.run()
    worker.stop()
    assert c.sa.established and c.children
    assert worker.submitted == 1 and worker.ran == 1
    server = _server_sa(lab)
    assert server.skeyid_a == c.sa.skeyid_a


class _Marker:
    """Queued after a job: set when the worker reaches it."""

    ran_on_worker = False
    key = b""  # no SA: nothing is parked for it

    def __init__(self, ev: threading.Event) -> None:
        self.ev = ev

    def run(self) -> None:
        self.ev.set()


def test_a_bad_public_value_is_refused_in_answer_to_message_1() -> None:
    lab = Lab()
    jobs: list[SharedSecretJob] = []
    lab.endpoint.dh_offload = jobs.append
    c = lab.add_client(pat_ip=PAT)
    c.sa.initiate(lab.now)
    msg1 = bytearray(c.sa.datagrams_to_send()[0].data)
    lab.clients.remove(c)
    assert c.sa.p1.dh is not None
    pub = c.sa.p1.dh.public
    at = bytes(msg1).index(pub)
    msg1[at:at + len(pub)] = (dh_group(14).prime - 1).to_bytes(len(pub), "big")  # p-1
    sa = lab.endpoint.receive(bytes(msg1), (PAT, 20000), 500, lab.now)
    assert sa is not None and sa.state is State.DELETED and not jobs
    out = sa.datagrams_to_send()  # INVALID-KEY-INFORMATION, no message 2
    assert [decode_header(d.data).exchange for d in out] == [ExchangeType.INFORMATIONAL]


def test_main_mode_defers_too() -> None:
    lab = Lab()
    jobs: list[SharedSecretJob] = []
    lab.endpoint.dh_offload = jobs.append
    c = lab.add_client(pat_ip=PAT, mode="main")
    c.sa.initiate(lab.now)
    lab.run()
    assert c.sa.established and c.children and len(jobs) == 1
    assert _server_sa(lab).skeyid_e == c.sa.skeyid_e


def test_derive_skeyids_of_the_job_equals_the_eager_path() -> None:
    g = dh_group(14)
    a, b = g.generate(), g.generate()
    job = SharedSecretJob(a, b.public)
    h = hash_alg(2)
    assert derive_skeyids(h, b"k" * 20, job.result(), b"i" * 8, b"r" * 8) == \
        derive_skeyids(h, b"k" * 20, b.shared_secret(a.public), b"i" * 8, b"r" * 8)


def test_the_worker_backlog_is_bounded() -> None:
    """A flood of first messages (spoofed: no message 3 ever) must not grow a queue:
    past BACKLOG the job is left to the SA, which computes g^xy only if it needs it."""
    from vpnhub.net import dhworker

    g = dh_group(14)
    a, b = g.generate(), g.generate()
    w = DhWorker()
    w._thread = threading.current_thread()  # "started", but nobody takes jobs
    jobs = [SharedSecretJob(a, b.public) for _ in range(dhworker.BACKLOG + 10)]
    for job in jobs:
        w.submit(job)
    assert w.submitted == dhworker.BACKLOG and w.left_out == 10
    assert jobs[-1].result() == b.shared_secret(a.public)  # the SA's own call still works
    w._thread = None


def test_the_sa_waits_for_a_worker_that_is_at_it() -> None:
    """settle(): the SA does not compute g^xy a second time on the loop while the
    worker thread is in the middle of it."""
    g = dh_group(14)
    a, b = g.generate(), g.generate()
    w = DhWorker()
    job = SharedSecretJob(a, b.public)
    job.settle = w.settle
    w._busy = job  # the worker has taken it

    def finish() -> None:
        job.run()
        with w._idle:
            w._busy = None
            w._idle.notify_all()

    t = threading.Timer(0.05, finish)
    t.start()
    assert job.result() == b.shared_secret(a.public)
    t.join()
    assert job.ran_on_worker  # computed once, by the worker


def test_under_a_flood_g_xy_waits_for_message_3_and_nobody_computes_it_before() -> None:
    """A flood of first messages (mostly spoofed: no message 3 ever): the jobs go to no
    worker; an SA that comes back computes g^xy itself, the others never do."""
    import os

    lab = Lab()
    jobs: list[SharedSecretJob] = []
    lab.endpoint.dh_offload = jobs.append
    c = lab.add_client(pat_ip=PAT)
    c.sa.initiate(lab.now)
    msg1 = c.sa.datagrams_to_send()[0].data
    for i in range(300):  # 300 first messages from one (spoofed) address: a flood
        lab.endpoint.receive(os.urandom(8) + msg1[8:], ("198.51.100.7", 20000 + i), 500,
                             lab.now)
    from vpnhub.ike.endpoint import Limits

    # until the endpoint sees the flood (here the per-source half-open cap reached: the
    # SAs beyond it are served, none is old enough to recycle, but it is a flood sign;
    # or more than FLOOD_UNVERIFIED unanswered SAs) jobs go to the worker; after, none
    assert lab.endpoint.over_source_cap > 0 and lab.endpoint.flooded(lab.now)
    assert 0 < len(jobs) <= Limits().half_open_per_source
    jobs.clear()
    lab.clients.remove(c)
    real = lab.add_client(pat_ip=PAT, local_ip="10.10.10.9")
    real.sa.initiate(lab.now)
    lab.run()
    assert real.sa.established and real.children and not jobs


def test_the_worker_thread_keeps_the_dh_pool_full_between_jobs() -> None:
    """fill_pool(): the pool's pairs are made on the worker thread (gmpy2 lets go of the
    GIL), refilled after the loop took some, each pair handed out once; a job submitted
    meanwhile is still computed."""
    import time

    from vpnhub.crypto.dh import DEFAULT_BACKEND
    from vpnhub.ike.dhpool import DhPool

    pool = DhPool({14: 4})
    w = DhWorker()
    if not w.fill_pool(pool):  # without gmpy2 the shell fills it on its loop
        assert DEFAULT_BACKEND != "gmpy2"
        return

    def wait_full() -> None:
        end = time.monotonic() + 30
        while len(pool) < 4:
            assert time.monotonic() < end, "the worker did not fill the pool"
            time.sleep(0.01)

    w.start()
    try:
        wait_full()
        taken = [pool.take(14), pool.take(14)]
        w.wake()  # taken without a job (Quick Mode PFS): the shell's tick wakes it
        wait_full()
        g = dh_group(14)
        a, b = g.generate(), g.generate()
        job = SharedSecretJob(a, b.public)
        w.submit(job)
        assert job.result() == b.shared_secret(a.public)
        pool.busy = True  # logins arrive: 3 of 4 left is not below LOW_WATER (1)
        pool.take(14)
        queued = w._jobs.qsize()
        w.wake()
        assert w._jobs.qsize() == queued and len(pool) == 3
        pool.busy = False  # quiet again (the shell's tick): refilled
        w.wake()
        wait_full()
        pool.refill_paused = True  # a flood (the endpoint says so): no wake, no refill
        rest = [pool.take(14) for _ in range(4)]
        queued = w._jobs.qsize()
        w.wake()
        # (at most the pair it had begun when the flag came)
        assert w._jobs.qsize() == queued and len(pool) <= 1
        publics = [kp.public for kp in taken + rest if kp is not None]
        assert len(publics) == 6 and len(set(publics)) == 6  # never one pair twice
        assert pool.generated - len(pool) == 7
    finally:
        w.stop()


def test_deferred_keys_replace_keys_already_set() -> None:
    """The first read after `defer_keys` derives all four keys, even when the SA held
    values before (a key once set is a plain attribute, read without a call)."""
    sa = IkeSA(IkeConfig(local_address="198.51.100.1"), Role.RESPONDER, (PAT, 500), 0.0)
    assert (sa.skeyid_d, sa.skeyid_a, sa.skeyid_e, sa.enc_key) == (b"", b"", b"", b"")
    sa.skeyid_d, sa.skeyid_a, sa.skeyid_e, sa.enc_key = b"old-d", b"old-a", b"old-e", b"old-k"
    calls: list[int] = []

    def derive() -> tuple[bytes, bytes, bytes, bytes]:
        calls.append(1)
        return b"d", b"a", b"e", b"k"

    sa.defer_keys(derive)
    assert sa.keys_pending is not None
    assert sa.skeyid_e == b"e"  # any of the four derives them all, once
    assert (sa.skeyid_d, sa.skeyid_a, sa.skeyid_e, sa.enc_key) == (b"d", b"a", b"e", b"k")
    assert sa.keys_pending is None and calls == [1]
