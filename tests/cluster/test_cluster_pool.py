"""ClusterAddressPool (vpnhub/cluster/pool.py): addresses only from this member's
blocks, leases told to the member, a block asked for when few are left, refusal
without the database; and on a real PostgreSQL, blocks claimed in the background."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Hashable

import pytest
from cluster_helpers import GROUP, make_member, start, stop, until

from vpnhub.cluster.pool import ClusterAddressPool, ClusterPoolExhausted, ClusterPoolUnavailable
from vpnhub.config import GroupConfig
from vpnhub.secret import Secret
from vpnhub.session.pool import AddressPool, PoolError

B0 = ipaddress.IPv4Network("10.77.0.0/28")
B1 = ipaddress.IPv4Network("10.77.0.16/28")


class Sink:
    """The member's side of the pool, recorded (the database part is tested below)."""

    def __init__(self) -> None:
        self.database_ok = True
        self.last_error = ""
        self.leases: dict[ipaddress.IPv4Address, str] = {}
        self.wanted = 0

    def lease(self, group: str, address: ipaddress.IPv4Address, key: Hashable,
              user: str) -> None:
        assert address not in self.leases
        self.leases[address] = user

    def unlease(self, group: str, address: ipaddress.IPv4Address) -> None:
        del self.leases[address]

    def want_block(self, group: str) -> None:
        self.wanted += 1


def pool(sink: Sink, *blocks: ipaddress.IPv4Network, reserve: bool = False) -> ClusterAddressPool:
    g = GroupConfig(name="staff", psk=Secret("k"), address_pool=GROUP.address_pool,
                    reserve_first_address=reserve)
    p = ClusterAddressPool(g, sink, block_prefix=28)
    for b in blocks:
        p.add_block(b)
    return p


def test_allocates_only_inside_its_blocks_and_records_leases() -> None:
    sink = Sink()
    p = pool(sink, B1)
    assert isinstance(p, AddressPool)
    got = [p.allocate(("k", n)) for n in range(16)]
    assert all(a in B1 for a in got) and len(set(got)) == 16  # the whole block: .16 to .31
    assert set(sink.leases) == set(got)
    with pytest.raises(ClusterPoolExhausted) as err:
        p.allocate(("k", 99))
    assert err.value.reason == "pool_exhausted" and "this member" in str(err.value)
    assert sink.wanted == 1  # asked once, while the block filled up
    p.add_block(B0)  # .0 is the pool's network address: never given
    assert p.allocate(("k", 99)) == ipaddress.IPv4Address("10.77.0.1")
    assert p.release(("k", 0)) == got[0] and got[0] not in sink.leases


def test_refuses_new_addresses_without_the_database_but_keeps_a_rekeys() -> None:
    sink = Sink()
    p = pool(sink, B0, reserve=True)
    first = p.allocate("a", identity="alice")
    assert first == ipaddress.IPv4Address("10.77.0.2")  # .1 reserved
    sink.database_ok, sink.last_error = False, "connection refused"
    with pytest.raises(ClusterPoolUnavailable) as err:
        p.allocate("b", identity="bob")
    assert isinstance(err.value, PoolError)
    assert err.value.reason == "cluster_database_unavailable"
    assert "connection refused" in str(err.value)
    assert p.allocate("a") == first  # an established session keeps its address
    # a phase 1 rekey: the new IKE SA takes the address its old one released
    p.release("a")
    assert p.claim("a2", first)
    assert not p.claim("c", ipaddress.IPv4Address("10.77.0.9"))  # not a new one


def test_holds_and_sticky_addresses_stay_inside_the_blocks() -> None:
    sink = Sink()
    p = pool(sink, B0)
    outside = ipaddress.IPv4Address("10.77.0.40")
    assert not p.hold(outside, "alice") and not p.claim("x", outside)
    assert p.hold(ipaddress.IPv4Address("10.77.0.5"), "alice")
    assert p.allocate("a", identity="alice") == ipaddress.IPv4Address("10.77.0.5")
    p.release("a")
    p.allocate("b", identity="bob")
    assert p.allocate("a2", identity="alice") == ipaddress.IPv4Address("10.77.0.5")


def test_a_lost_block_gives_back_its_sessions() -> None:
    sink = Sink()
    p = pool(sink, B0, B1)
    keys = [("k", n) for n in range(20)]
    for k in keys:
        p.allocate(k)
    lost = p.remove_block(B0)
    assert sorted(lost) == sorted(k for k in keys if p.address_of(k) is None)
    assert len(lost) == 15 and p.size == 16 and p.in_use == 5


def test_blocks_are_claimed_in_the_background_when_few_are_left(pg_dsn: str) -> None:
    async def main() -> None:
        m, _, _ = make_member(pg_dsn, "c1", block=29)  # 8 addresses a block
        assert await start(m)
        p = m.pools["staff"]
        try:
            assert len(p.blocks) == 1
            for n in range(6):
                p.allocate(("k", n))
            await until(lambda: len(p.blocks) == 2, "a second block")
            assert m.status()["pools"]["staff"]["blocks"] == [str(b) for b in p.blocks]
        finally:
            await stop(m)
    asyncio.run(main())
