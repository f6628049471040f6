"""The pool of DH key pairs computed in idle time (issue 13, point 4).

Each pair leaves the pool once and is never handed out again (RFC 2409 section
3.3: perfect forward secrecy is per SA); the pool is bounded per group and the
endpoint falls back to its own pair (or, under a flood, to ike.dhreuse).
"""

from __future__ import annotations

import os

import pytest
from ike_harness import Lab

from vpnhub.crypto.errors import UnsupportedAlgorithm
from vpnhub.ike.dhpool import DhPool
from vpnhub.ike.policy import Policy

PAT = "203.0.113.78"


def test_a_pair_is_never_handed_out_twice() -> None:
    pool = DhPool({19: 8})
    pool.fill(8)
    taken = [pool.take(19) for _ in range(8)]
    assert all(kp is not None for kp in taken)
    assert len({id(kp) for kp in taken}) == 8
    assert len({kp.public for kp in taken if kp is not None}) == 8
    assert pool.take(19) is None  # empty: nothing comes back, nothing is reused
    pool.fill(8)
    again = [pool.take(19) for _ in range(8)]
    assert not {id(kp) for kp in again} & {id(kp) for kp in taken}
    assert pool.stats() == {"ready": 0, "size": 8, "full": False, "taken": 16, "missed": 1,
                            "generated": 16, "refill_paused": False, "busy": False,
                            "groups": {"19": {"ready": 0, "size": 8}}}


def test_fill_is_bounded_per_group_and_by_the_step() -> None:
    pool = DhPool({19: 3, 20: 2})
    assert pool.wanted() == 5
    assert pool.fill(2) == 2  # no more than asked per call: the loop is not held
    assert pool.fill(100) == 3  # never above the sizes
    assert pool.fill(100) == 0 and pool.wanted() == 0 and len(pool) == 5
    assert pool.generated == 5


def test_while_logins_arrive_only_a_group_below_its_low_water_mark_is_refilled() -> None:
    """A storm takes pairs made in idle time; the DH thread refills beside it only a
    group below LOW_WATER (a steady stream never runs dry), the rest once IKE is quiet;
    under a flood, nothing."""
    pool = DhPool({19: 8, 20: 8})
    assert pool.refill_now()  # empty, idle: fill
    pool.fill(16)
    assert not pool.refill_now()  # full
    pool.busy = True  # the endpoint saw a first message
    for _ in range(6):
        pool.take(19)
    assert not pool.refill_now()  # 2 of 8 left: at LOW_WATER, not below
    pool.take(19)
    assert pool.refill_now()  # below it: refilled beside the logins
    pool.fill(1)
    assert not pool.refill_now()
    pool.busy = False  # quiet (the shell): the rest now
    assert pool.refill_now()
    pool.refill_paused = True  # a flood: not even below the mark
    pool.busy = True
    pool.take(19)
    pool.take(19)
    assert not pool.refill_now()


def test_the_endpoint_marks_the_pool_busy_at_each_first_message() -> None:
    lab = Lab()
    pool = DhPool({14: 2})
    lab.endpoint.dh_pool = pool
    c = lab.add_client(pat_ip=PAT)
    c.sa.initiate(lab.now)
    lab.run()
    assert c.sa.established and pool.busy and not pool.refill_paused
    assert pool.last_first_message == lab.now  # the shell clears busy 50 ms after it


def test_fill_serves_the_emptiest_group_first_and_refills_what_was_taken() -> None:
    pool = DhPool({19: 4, 20: 4})
    pool.fill(8)
    for _ in range(3):
        pool.take(20)
    pool.fill(1)
    assert pool.wanted() == 2  # group 20 got the pair: 4 + 2 ready
    kp = pool.take(20)
    assert kp is not None and kp.group.group_id == 20


def test_discard_forgets_the_ready_pairs_and_fill_makes_new_ones() -> None:
    """After a burst (concentrator.memory.BurstTrimmer): pairs made during it are
    dropped before the trim and made again after it, never handed out."""
    pool = DhPool({19: 3, 20: 2})
    pool.fill(5)
    old = [pool._pairs[19][0], pool._pairs[20][0]]
    assert pool.discard() == 5 and len(pool) == 0 and pool.wanted() == 5
    assert pool.fill(5) == 5
    fresh = [pool.take(19), pool.take(20)]
    assert all(kp is not None and kp not in old for kp in fresh)


def test_a_group_not_pooled_or_of_another_size_gets_none() -> None:
    pool = DhPool({19: 2})
    pool.fill()
    assert pool.take(14) is None  # mismatch: the SA draws its own
    kp = pool.take(19)
    assert kp is not None and kp.group.group_id == 19
    assert pool.missed == 1


def test_size_zero_pools_nothing_and_bad_groups_are_refused_at_once() -> None:
    pool = DhPool({19: 0})
    assert pool.fill(10) == 0 and pool.take(19) is None
    with pytest.raises(UnsupportedAlgorithm):
        DhPool({99: 4})
    with pytest.raises(ValueError):
        DhPool({19: -1})


def test_the_endpoint_takes_a_pooled_pair_once_and_keys_agree() -> None:
    lab = Lab()
    pool = DhPool({14: 2})
    pool.fill(2)
    ready = set()
    for kp in list(pool._pairs[14]):
        ready.add(kp.public)
    lab.endpoint.dh_pool = pool
    kes = []
    for i in range(3):
        c = lab.add_client(pat_ip=PAT, local_ip=f"10.10.10.{5 + i}")
        c.sa.initiate(lab.now)
        lab.run()
        assert c.sa.established and c.children
        kes.append(c.sa.dh_public_r)
        lab.clients.remove(c)
    assert set(kes[:2]) == ready  # the first two came from the pool ...
    assert kes[2] not in ready and len(set(kes)) == 3  # ... the third drew its own
    assert pool.taken == 2 and len(pool) == 0


def test_under_a_flood_the_pool_comes_before_reuse() -> None:
    lab = Lab()
    c = lab.add_client(local_ip="10.10.10.99")
    c.sa.initiate(lab.now)
    msg1 = c.sa.datagrams_to_send()[0].data
    lab.clients.remove(c)
    pool = DhPool({14: 50})
    pool.fill(50)
    lab.endpoint.dh_pool = pool
    for i in range(300):  # 300 first messages from one address: a flood (the per-source cap)
        lab.endpoint.receive(os.urandom(8) + msg1[8:], (PAT, 20000 + i), 500, lab.now)
    assert pool.taken == 50  # every pooled pair went to one SA each
    assert lab.endpoint.dh_reuse.generated == 1  # then the flood's shared pair
    # and nobody refills it for the flood (net.dhworker heeds this) until a first
    # message comes outside a flood again
    assert pool.refill_paused


def test_quick_mode_pfs_takes_its_own_pooled_pair() -> None:
    lab = Lab()
    pool = DhPool({14: 4})
    pool.fill(4)
    ready = {kp.public for kp in pool._pairs[14]}
    lab.endpoint.dh_pool = pool
    c = lab.add_client(pat_ip=PAT, policy=Policy(pfs_group=14))
    c.sa.initiate(lab.now)
    lab.run()
    assert c.sa.established and c.children
    assert pool.taken == 2  # phase 1's pair and Quick Mode's, two different ones
    assert c.sa.dh_public_r in ready
