"""GetCounters: every SA's traffic as arrays, the same numbers as GetStats (issue 13).

The manager samples the compact answer every 2 s; it must say what the full
snapshot says, SA for SA, and its totals must be the snapshot's.
"""

from __future__ import annotations

import asyncio
import gc
import pickle
from dataclasses import replace

from test_dataplane import CLIENT, LAN_HOST, close_pair, ipv4, make_pair, params

from vpnhub.esp import ESP_AES_CBC, HMAC_SHA1_96
from vpnhub.net.fake_dataplane import FakeDataplane
from vpnhub.net.messages import GetCounters, GetStats
from vpnhub.net.stats import DataplaneStats, PeerStats, SaCounters, counters_of, merge_counters

SUITE = (ESP_AES_CBC, 128, HMAC_SHA1_96)


def by_spi(c: SaCounters) -> dict[tuple[int, str], tuple[int, int, float]]:
    out = {(spi, "in"): (b, p, a) for spi, b, p, a in
           zip(c.spi_in, c.bytes_in, c.packets_in, c.active_in, strict=True)}
    out.update({(spi, "out"): (b, p, a) for spi, b, p, a in
                zip(c.spi_out, c.bytes_out, c.packets_out, c.active_out, strict=True)})
    return out


def test_counters_say_what_the_snapshot_says() -> None:
    p = make_pair()
    try:
        assert len(p.a_sends(*[ipv4(CLIENT, LAN_HOST, b"x" * 100)] * 3)) == 3
        assert len(p.b_sends(ipv4(LAN_HOST, CLIENT, b"y" * 50))) == 1
        full = p.b.call(GetStats())
        compact = p.b.call(GetCounters())
        assert isinstance(full, DataplaneStats) and isinstance(compact, SaCounters)
        assert compact.totals == replace(full, sas=(), peers=())
        assert by_spi(compact) == {
            (s.spi, s.direction): ((s.bytes_in, s.packets_in) if s.direction == "in"
                                   else (s.bytes_out, s.packets_out)) + (s.last_activity,)
            for s in full.sas}
        assert by_spi(compact)[(0xA0000001, "in")][1] == 3
        assert by_spi(compact)[(0xB0000001, "out")][1] == 1
        assert by_spi(counters_of(full)) == by_spi(compact)
        assert compact.keepalives == counters_of(full).keepalives
    finally:
        close_pair(p)


def test_the_fake_answers_counters_from_its_snapshot() -> None:
    fake = FakeDataplane()
    fake.add_inbound(params(0x1001, SUITE), ("198.51.100.7", 4500))
    fake.add_outbound(params(0x2001, SUITE), ("198.51.100.7", 4500), dst="10.1.0.5/32")
    fake.count(0x1001, "in", packets=2, bytes_=300)
    fake.count(0x2001, "out", packets=1, bytes_=90)
    c = asyncio.run(fake.counters())
    assert by_spi(c) == {(0x1001, "in"): (300, 2, 0.0), (0x2001, "out"): (90, 1, 0.0)}
    assert c.totals.sas == () and c.totals.peers == ()



def test_keepalive_figures_come_whole_in_a_few_objects() -> None:
    """Issue 13: the per-peer NAT keepalive counts (RFC 3948 4) of the per-SA answer,
    which the concentrator unpickles on its loop every sample: with 10,000 peers
    every figure is there (one worker's or merged from two) and the answer makes a
    handful of objects the garbage collector tracks, not two tuples per peer."""
    rows = [((f"203.0.113.{1 + i % 250}", 1024 + i), i % 7, i % 5) for i in range(10_000)]
    full = DataplaneStats(peers=tuple(PeerStats(addr, "natt", True, 20.0, rx, tx)
                                      for addr, rx, tx in rows))
    c = counters_of(full)
    assert c.keepalives.as_dict() == {addr: (rx, tx) for addr, rx, tx in rows if rx or tx}
    half = [counters_of(replace(full, peers=full.peers[:5000])),
            counters_of(replace(full, peers=full.peers[5000:]))]
    data = pickle.dumps(merge_counters(half), protocol=pickle.HIGHEST_PROTOCOL)
    gc.collect()
    gc.disable()
    try:
        before = len(gc.get_objects())
        got = pickle.loads(data)
        created = len(gc.get_objects()) - before
    finally:
        gc.enable()
    assert created < 50, created  # was 20,000 (a dict of address tuples)
    assert all(got.keepalives.get(addr) == (rx, tx) for addr, rx, tx in rows)
    assert got.keepalives.get(("192.0.2.1", 4500)) == (0, 0)
