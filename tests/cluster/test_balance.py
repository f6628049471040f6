"""The load-balancing rule (vpnhub/cluster/balance.py): least-loaded member, the
master keeps the client until another member is 1 percentage point less loaded."""

from __future__ import annotations

import ipaddress

from vpnhub.cluster.balance import MemberLoad, choose_member


def member(name: str, sessions: int, limit: int = 100, *, alive: bool = True) -> MemberLoad:
    last = {"c1": 11, "c2": 12, "c3": 13}.get(name, 20)
    return MemberLoad(name, ipaddress.IPv4Address(f"198.51.100.{last}"), sessions, limit, alive)


def test_empty_cluster_keeps_the_client() -> None:
    assert choose_member([member("c1", 0)], "c1") is None
    assert choose_member([], "c1") is None


def test_redirects_to_the_least_loaded() -> None:
    got = choose_member([member("c1", 5), member("c2", 3), member("c3", 1)], "c1")
    assert got is not None and got.name == "c3"


def test_keeps_until_the_others_are_one_percent_higher() -> None:
    # 1 of 100 here, 0 there: the other is exactly 1 point lower, so redirect
    assert choose_member([member("c1", 1), member("c2", 0)], "c1") == member("c2", 0)
    # equal load: keep (a fresh cluster fills the master first, then spreads)
    assert choose_member([member("c1", 0), member("c2", 0)], "c1") is None
    # with limit 1000, 5 vs 0 is half a point: keep
    assert choose_member([member("c1", 5, 1000), member("c2", 0, 1000)], "c1") is None


def test_dead_and_full_members_are_not_candidates() -> None:
    ms = [member("c1", 50), member("c2", 0, alive=False), member("c3", 10, 10)]
    assert choose_member(ms, "c1") is None


def test_full_master_redirects_even_to_a_busier_ratio() -> None:
    got = choose_member([member("c1", 10, 10), member("c2", 99, 100)], "c1")
    assert got is not None and got.name == "c2"


def test_ties_go_to_the_first_name() -> None:
    got = choose_member([member("c3", 0), member("c2", 0), member("c1", 9)], "c1")
    assert got is not None and got.name == "c2"


def test_the_member_that_lost_the_virtual_address_is_skipped() -> None:
    """m1 held the address and died: its heartbeat is still young, but the new
    master (c2, holding the address now) must not send clients back to it."""
    dead = MemberLoad("c1", ipaddress.IPv4Address("198.51.100.11"), 0, 100, True, True)
    me = MemberLoad("c2", ipaddress.IPv4Address("198.51.100.12"), 9, 100, True, True)
    other = member("c3", 5)
    got = choose_member([dead, me, other], "c2")
    assert got is not None and got.name == "c3"
    # before the new master noticed that it holds the address, the rule does not apply
    me_before = MemberLoad("c2", me.public_address, 9, 100, True, False)
    got = choose_member([dead, me_before, other], "c2")
    assert got is not None and got.name == "c1"
