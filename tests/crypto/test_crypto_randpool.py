"""The engine's random bytes (vpnhub.crypto.randpool): right lengths, never the same
block twice, not across threads and not across a fork (issue 13)."""

from __future__ import annotations

import os
import threading

import pytest

from vpnhub.crypto import randpool
from vpnhub.crypto.randpool import BLOCK, POOL, REFILL, RandomPool, random_bytes
from vpnhub.esp.spi import random_u32
from vpnhub.ike.state import IkeConfig


@pytest.mark.parametrize("n", [0, 1, 4, 8, 20, 32, 33, 256])
def test_take_gives_n_bytes(n: int) -> None:
    assert len(RandomPool().take(n)) == n


def test_no_block_is_handed_out_twice() -> None:
    pool = RandomPool()
    values = [pool.take(BLOCK) for _ in range(3 * REFILL // BLOCK + 5)]  # three refills
    assert len(set(values)) == len(values)
    assert len({v[:8] for v in values}) == len(values)  # shorter draws: prefixes differ too


def test_threads_never_share_a_block() -> None:
    pool = RandomPool()
    got: list[list[bytes]] = [[] for _ in range(4)]

    def draw(out: list[bytes]) -> None:
        for _ in range(2000):
            out.append(pool.take(8))

    threads = [threading.Thread(target=draw, args=(out,)) for out in got]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [v for out in got for v in out]
    assert len(every) == 8000 and len(set(every)) == 8000


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_draws_other_bytes_than_its_parent() -> None:
    POOL.take(1)  # the pool holds buffered blocks the child would inherit
    assert POOL.buffered() > 0
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first draws, to the parent
        try:
            os.write(w, random_bytes(BLOCK) + random_bytes(BLOCK))
        finally:
            os._exit(0)
    os.close(w)
    child = b""
    while chunk := os.read(r, 2 * BLOCK):
        child += chunk
    os.close(r)
    os.waitpid(pid, 0)
    mine = {POOL.take(BLOCK) for _ in range(POOL.buffered())}
    assert len(child) == 2 * BLOCK
    assert child[:BLOCK] not in mine and child[BLOCK:] not in mine


def test_reset_forgets_the_buffer() -> None:
    pool = RandomPool()
    pool.take(4)
    assert pool.buffered() == REFILL // BLOCK - 1
    pool.reset()
    assert pool.buffered() == 0


def test_the_engine_and_the_spis_draw_from_the_pool() -> None:
    assert IkeConfig(local_address="198.51.100.1").rng is randpool.random_bytes
    before = POOL.buffered() or REFILL // BLOCK
    assert 0 <= random_u32() < 2**32
    assert POOL.buffered() == before - 1
