"""RemoveSA is O(1) (issue 13): the indexes behind it stay equal to what a scan finds.

No timing: after every command the by-SPI route index, the peers' use counts and
the idle-peer set are compared with a brute-force recomputation from the route
tables, and removal runs with tables that fail the test if anything iterates them.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from typing import Any

import pytest

from vpnhub.esp import ESP_AES_CBC, HMAC_SHA1_96, SaParams, key_lengths
from vpnhub.net.dataplane import Dataplane, open_udp_socket
from vpnhub.net.messages import AddInbound, AddOutbound, RemoveSA, SetKeepalive, UpdatePeer
from vpnhub.net.tun import FakeTun

SPI_BASE = 0x5000_0000


def params(spi: int) -> SaParams:
    enc_len, integ_len = key_lengths(ESP_AES_CBC, 128, HMAC_SHA1_96)
    return SaParams.from_keymat(spi, ESP_AES_CBC, 128, HMAC_SHA1_96,
                                os.urandom(enc_len + integ_len))


class NoScanDict(dict[Any, Any]):
    """A dict that fails the test when iterated while armed: lookups, stores, deletes only."""

    armed = True

    def __iter__(self) -> Any:
        return self._unless_armed("__iter__")

    def items(self) -> Any:
        return self._unless_armed("items")

    def values(self) -> Any:
        return self._unless_armed("values")

    def keys(self) -> Any:
        return self._unless_armed("keys")

    def _unless_armed(self, method: str) -> Any:
        if self.armed:
            raise AssertionError(f"RemoveSA scanned a table ({method})")
        return getattr(dict, method)(self)


@pytest.fixture
def dp() -> Iterator[Dataplane]:
    tun = FakeTun()
    udp = open_udp_socket("127.0.0.1", 0)
    plane = Dataplane(tun, udp=udp)
    yield plane
    plane.close()
    udp.close()
    tun.close()


def check_consistent(dp: Dataplane) -> None:
    """Every index equals what a scan of the tables (the pre-issue-13 way) gives."""
    routes = dp._outbound_entries()
    by_spi: dict[int, set[int]] = {}
    for entry in routes:
        by_spi.setdefault(entry.sa.spi, set()).add(id(entry))
    assert {spi: {id(e) for e in entries} for spi, entries in dp._out_by_spi.items()} == by_spi
    assert all(dp._out_by_spi.values())  # no empty lists left behind
    uses: dict[int, int] = {}
    for peer in [e.peer for e in dp._in.values()] + [e.peer for e in routes]:
        uses[id(peer)] = uses.get(id(peer), 0) + 1
    for peer in dp._peers.values():
        assert peer.refs == uses.get(id(peer), 0)
    idle = {id(p) for p in dp._peers.values() if p.refs == 0 and p.keepalive_interval is None}
    assert {i for i, p in dp._idle_peers.items() if p in dp._peers.values()} == idle
    for peer in dp._idle_peers.values():
        assert peer.refs == 0 and peer.keepalive_interval is None


def check_no_idle_peers(dp: Dataplane) -> None:
    """What the old scan in ``_forget_idle_peers`` guaranteed after every RemoveSA."""
    used = {id(e.peer) for e in dp._in.values()} | {id(e.peer) for e in dp._outbound_entries()}
    for peer in dp._peers.values():
        assert id(peer) in used or peer.keepalive_interval is not None


def remove_without_scan(dp: Dataplane, spi: int) -> int:
    """RemoveSA with every table swapped for one that cannot be iterated."""
    tables = {name: getattr(dp, name) for name in ("_in", "_out_exact", "_peers", "_out_by_spi")}
    for name, table in tables.items():
        setattr(dp, name, NoScanDict(table))

    def no_scan() -> Any:
        raise AssertionError("RemoveSA listed every route")

    dp._outbound_entries = no_scan  # type: ignore[method-assign]
    try:
        removed = dp.call(RemoveSA(spi))
    finally:
        del dp._outbound_entries
        for name in tables:
            table = getattr(dp, name)
            table.armed = False
            setattr(dp, name, dict(table))
    assert isinstance(removed, int)
    return removed


def test_many_sas_shared_peers_removed_without_scan(dp: Dataplane) -> None:
    peers = [(f"198.51.100.{i + 1}", 4500) for i in range(20)]
    n = 300
    for i in range(n):  # 15 inbound+outbound pairs per peer, each with its own /32
        peer = peers[i % len(peers)]
        dp.call(AddInbound(params(SPI_BASE + 2 * i), peer))
        dp.call(AddOutbound(params(SPI_BASE + 2 * i + 1), peer, dst=f"10.8.{i // 250}.{i % 250}"))
    check_consistent(dp)
    assert len(dp._peers) == len(peers)
    for i in range(n):
        assert remove_without_scan(dp, SPI_BASE + 2 * i) == 1
        assert remove_without_scan(dp, SPI_BASE + 2 * i + 1) == 1
        check_consistent(dp)
        check_no_idle_peers(dp)
    assert not dp._in and not dp._out_exact and not dp._out_by_spi and not dp._peers
    assert remove_without_scan(dp, SPI_BASE) == 0  # already gone


def test_random_add_replace_remove_matches_scan(dp: Dataplane) -> None:
    rng = random.Random(13)
    peers = [(f"203.0.113.{i + 1}", 4500 + i % 2) for i in range(6)]
    dsts = [None, "192.168.0.0/16", "192.168.2.0/24", "10.9.0.0/24",
            *(f"10.9.1.{i}" for i in range(12))]
    spis = [SPI_BASE + i for i in range(40)]
    for _ in range(1500):
        op = rng.random()
        spi = rng.choice(spis)
        peer = rng.choice(peers)
        if op < 0.3:
            dp.call(AddInbound(params(spi), peer))  # a re-add of a live SPI replaces it
        elif op < 0.6:
            dp.call(AddOutbound(params(spi), peer, dst=rng.choice(dsts)))  # may take a route
        elif op < 0.9:
            removed = remove_without_scan(dp, spi)
            assert spi not in dp._out_by_spi and spi.to_bytes(4, "big") not in dp._in
            assert removed >= 0
            check_no_idle_peers(dp)
        elif op < 0.97:
            dp.call(SetKeepalive(peer, rng.choice([None, 20.0])))
        else:
            dp.call(UpdatePeer(peer, rng.choice(peers)))
        check_consistent(dp)


def test_one_sa_on_several_routes_counted_once(dp: Dataplane) -> None:
    """An SA object on three routes: one RemoveSA takes all three, its counts kept once."""
    sa = params(SPI_BASE)
    built = dp.call(AddOutbound(sa, ("198.51.100.1", 4500), dst="10.1.0.0/16"))
    for dst in ("10.2.0.1", None):
        dp.call(AddOutbound(built, ("198.51.100.1", 4500), dst=dst))  # type: ignore[arg-type]
    built.packets_out = 7  # type: ignore[attr-defined]
    check_consistent(dp)
    assert remove_without_scan(dp, SPI_BASE) == 3
    assert dp.ended_traffic["packets_out"] == 7
    assert not dp._out_prefix and not dp._out_exact and dp._out_default is None
    check_consistent(dp)


def test_removal_keeps_keepalive_peer_and_readd(dp: Dataplane) -> None:
    peer = ("198.51.100.9", 4500)
    dp.call(SetKeepalive(peer, 20.0))
    dp.call(AddInbound(params(SPI_BASE), peer))
    remove_without_scan(dp, SPI_BASE)
    assert ("natt", peer) in dp._peers  # keepalives still due: the peer stays
    dp.call(SetKeepalive(peer, None))
    remove_without_scan(dp, SPI_BASE)  # the next removal forgets it, as the scan did
    assert not dp._peers
    dp.call(AddInbound(params(SPI_BASE), peer))  # re-add after removal
    dp.call(AddOutbound(params(SPI_BASE + 1), peer, dst="10.3.0.1"))
    check_consistent(dp)
    assert dp._peers[("natt", peer)].refs == 2
