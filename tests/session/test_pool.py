"""vpnhub.session.pool: per-group IPv4 address pools."""

from __future__ import annotations

import time
from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vpnhub.config import parse_config
from vpnhub.session.pool import MemoryAddressPool, PoolError, PoolExhausted

# Two clients behind one PAT address are told apart by their ports only.
CLIENT_A = ("203.0.113.78", 1026)
CLIENT_B = ("203.0.113.78", 1025)


def test_first_clients_get_the_first_addresses() -> None:
    pool = MemoryAddressPool("10.40.1.0/24", name="ciscovpn")
    assert pool.allocate(CLIENT_A) == IPv4Address("10.40.1.1")
    assert pool.allocate(CLIENT_B) == IPv4Address("10.40.1.2")
    assert pool.size == 254 and pool.in_use == 2 and pool.available == 252 and len(pool) == 2
    assert pool.address_of(CLIENT_B) == IPv4Address("10.40.1.2")
    assert pool.owner_of("10.40.1.1") == CLIENT_A
    assert pool.owner_of(IPv4Address("10.40.1.3")) is None


def test_allocate_is_idempotent_per_key() -> None:
    pool = MemoryAddressPool(IPv4Network("10.40.1.0/24"))
    assert pool.allocate("k") == pool.allocate("k") == IPv4Address("10.40.1.1")
    assert pool.in_use == 1


def test_reserve_first_and_exclude() -> None:
    pool = MemoryAddressPool("10.40.1.0/29", reserve_first=True, exclude=["10.40.1.3", "10.9.9.9"])
    assert pool.size == 4  # .2 .4 .5 .6
    got = [pool.allocate(i) for i in range(4)]
    assert got == [IPv4Address(f"10.40.1.{n}") for n in (2, 4, 5, 6)]


def test_exhaustion_is_a_named_error() -> None:
    pool = MemoryAddressPool("10.40.1.0/30", name="small")  # .1 and .2
    pool.allocate("a")
    pool.allocate("b")
    with pytest.raises(PoolExhausted) as info:
        pool.allocate("c")
    err = info.value
    assert isinstance(err, PoolError) and err.reason == "pool_exhausted"
    assert err.name == "small" and err.network == IPv4Network("10.40.1.0/30")
    assert "group 'small'" in str(err) and "exhausted" in str(err)
    assert pool.address_of("c") is None
    pool.release("a")
    assert pool.allocate("c") == IPv4Address("10.40.1.1")


def test_release() -> None:
    pool = MemoryAddressPool("10.40.1.0/24")
    address = pool.allocate("a")
    assert pool.release("a") == address
    assert pool.release("a") is None
    assert pool.release("never") is None
    assert pool.owner_of(address) is None and pool.in_use == 0


def test_fresh_addresses_before_reuse_and_reuse_is_fifo() -> None:
    pool = MemoryAddressPool("10.40.1.0/29")  # .1 - .6
    for key in "abc":
        pool.allocate(key)
    pool.release("b")  # .2
    pool.release("a")  # .1
    assert pool.allocate("d") == IPv4Address("10.40.1.4")  # never-used first
    pool.allocate("e")
    pool.allocate("f")
    assert pool.allocate("g") == IPv4Address("10.40.1.2")  # released longest ago
    assert pool.allocate("h") == IPv4Address("10.40.1.1")


def test_sticky_address_for_a_reconnecting_user() -> None:
    pool = MemoryAddressPool("10.40.1.0/24")
    first = pool.allocate(CLIENT_A, identity="vpnclient1")
    pool.allocate(CLIENT_B, identity="vpnclient2")
    pool.release(CLIENT_A)
    pool.allocate(("203.0.113.99", 4500))  # a third client takes a fresh address
    # The user comes back from a new port: same inner address.
    assert pool.allocate(("203.0.113.78", 1030), identity="vpnclient1") == first


def test_sticky_address_taken_meanwhile_falls_back() -> None:
    pool = MemoryAddressPool("10.40.1.0/30")  # .1 .2
    a = pool.allocate("s1", identity="alice")
    pool.release("s1")
    pool.allocate("s2", identity="bob")  # .2 (fresh)
    pool.allocate("s3")  # takes .1, alice's old address
    pool.release("s2")
    assert pool.allocate("s4", identity="alice") == IPv4Address("10.40.1.2")
    assert a == IPv4Address("10.40.1.1")
    # bob's memory of .2 was overwritten by alice, so bob gets no preference now
    pool.release("s3")
    pool.release("s4")
    assert pool.allocate("s5", identity="alice") == IPv4Address("10.40.1.2")


def test_old_session_still_holding_the_address() -> None:
    pool = MemoryAddressPool("10.40.1.0/24")
    old = pool.allocate("old", identity="u")
    new = pool.allocate("new", identity="u")  # the old session is not torn down yet
    assert new != old
    pool.release("old")
    pool.release("new")
    assert pool.allocate("again", identity="u") == new


@pytest.mark.parametrize(
    ("network", "size", "first"),
    [
        ("10.0.0.0/32", 1, "10.0.0.0"),
        ("10.0.0.0/31", 2, "10.0.0.0"),
        ("10.0.0.0/30", 2, "10.0.0.1"),
    ],
)
def test_tiny_networks(network: str, size: int, first: str) -> None:
    pool = MemoryAddressPool(network)
    assert pool.size == size and pool.allocate("k") == IPv4Address(first)


def test_never_hands_out_network_or_broadcast() -> None:
    pool = MemoryAddressPool("10.40.1.0/28")
    got = {pool.allocate(i) for i in range(pool.size)}
    assert IPv4Address("10.40.1.0") not in got and IPv4Address("10.40.1.15") not in got
    assert len(got) == 14


def test_slash16_is_fast() -> None:
    start = time.perf_counter()
    pool = MemoryAddressPool("10.40.0.0/16")
    for i in range(pool.size):
        pool.allocate(i)
    for i in range(0, pool.size, 2):
        pool.release(i)
    for i in range(pool.size, pool.size + pool.size // 2):
        pool.allocate(i, identity=f"user{i}")
    assert pool.available == 0
    assert time.perf_counter() - start < 2.0


def test_for_group_uses_the_config() -> None:
    cfg = parse_config(
        '[concentrator]\npublic_address = "203.0.113.50"\nprivate_networks = ["192.168.2.0/24"]\n'
        '[[group]]\nname = "g"\npsk = "k"\naddress_pool = "10.40.1.0/24"\n'
        "reserve_first_address = true\n"
    )
    pool = MemoryAddressPool.for_group(cfg.groups[0], exclude=[IPv4Address("10.40.1.2")])
    assert pool.name == "g" and pool.allocate("k") == IPv4Address("10.40.1.3")


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 20), st.integers(0, 4)), max_size=120))
def test_invariants_under_random_use(ops: list[tuple[bool, int, int]]) -> None:
    """Never the same address twice, never outside the usable range."""
    pool = MemoryAddressPool("10.40.1.0/29", reserve_first=True)  # 5 usable
    held: dict[int, IPv4Address] = {}
    for allocate, key, who in ops:
        if allocate:
            try:
                address = pool.allocate(key, identity=who or None)
            except PoolExhausted:
                assert len(held) == pool.size and key not in held
                continue
            assert held.setdefault(key, address) == address
        else:
            assert pool.release(key) == held.pop(key, None)
        values = list(held.values())
        assert len(set(values)) == len(values)
        assert all(IPv4Address("10.40.1.2") <= a <= IPv4Address("10.40.1.6") for a in values)
        assert pool.in_use == len(held)
