"""The samples: the data plane's compact counters, in steps; the totals between
them (issue 13)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from manager_fakes import FakeConcentrator, config_text

from vpnhub.config import parse_config
from vpnhub.esp import ESP_AES_CBC, HMAC_SHA1_96, SaParams, key_lengths
from vpnhub.eventlog import EventLog
from vpnhub.manager.view import SAMPLE_CHUNK, ManagerView, session_id
from vpnhub.net.fake_dataplane import FakeDataplane


def sa(spi: int) -> SaParams:
    enc, integ = key_lengths(ESP_AES_CBC, 128, HMAC_SHA1_96)
    return SaParams.from_keymat(spi, ESP_AES_CBC, 128, HMAC_SHA1_96, bytes(enc + integ))


def steps(coro: Coroutine[Any, Any, None]) -> int:
    """Run `coro` by hand; how many times it gave the loop its turn."""
    n = 0
    while True:
        try:
            coro.send(None)
        except StopIteration:
            return n
        n += 1



def one_session(clock: Callable[[], float]) -> tuple[ManagerView, FakeDataplane, Any, Any]:
    """A manager over one session of alice with its two SAs in a fake data plane."""
    conc = FakeConcentrator(parse_config(config_text(None)), EventLog())
    dp = conc.dataplane = FakeDataplane()
    view = ManagerView(conc, clock=clock)
    s = conc.add_session("alice", 1025)
    (child,) = s.children.values()
    dp.add_inbound(sa(child.spi_in), ("203.0.113.78", 1025))
    dp.add_outbound(sa(child.spi_out), ("203.0.113.78", 1025), dst="10.1.0.1/32")
    return view, dp, s, child


def test_throughput_from_the_data_planes_counters() -> None:
    clock = iter([100.0, 102.0, 104.0, 104.5])
    view, dp, s, child = one_session(lambda: next(clock))
    asyncio.run(view.sample())
    dp.count(child.spi_out, "out", packets=4, bytes_=4000)
    dp.count(child.spi_in, "in", packets=2, bytes_=1000)
    asyncio.run(view.sample())
    asyncio.run(view.sample())
    assert view.throughput(session_id(s.key)) == [(102.0, 2000.0, 500.0), (104.0, 0.0, 0.0)]
    (sa_json,) = view.session_json(s)["ipsec"]
    assert (sa_json["bytes_tx"], sa_json["packets_tx"]) == (4000, 4)
    assert (sa_json["bytes_rx"], sa_json["packets_rx"]) == (1000, 2)
    assert view.throughput("not-a-session-id") == []


def test_the_totals_refresh_leaves_the_sessions_counters_and_history() -> None:
    now = [100.0]
    view, dp, s, child = one_session(lambda: now[0])
    asyncio.run(view.sample())
    dp.count(child.spi_out, "out", packets=4, bytes_=4000)
    dp.count(child.spi_in, "in", drops={"replay": 1})
    asyncio.run(view.sample_totals())  # between two samples: the totals move...
    assert view.snapshot.drops_total == {"replay": 1}
    (sa_json,) = view.session_json(s)["ipsec"]
    assert sa_json["bytes_tx"] == 0  # ...the session's SA counters are the last sample's
    assert view.throughput(session_id(s.key)) == []  # and no history point is added
    now[0] = 110.0
    asyncio.run(view.sample())
    (sa_json,) = view.session_json(s)["ipsec"]
    assert sa_json["bytes_tx"] == 4000
    assert view.throughput(session_id(s.key)) == [(110.0, 400.0, 0.0)]


def test_a_sample_yields_after_the_counters_and_after_the_index() -> None:
    # the workers' merged answer, the SPI index and the first chunk: one turn each
    now = [100.0]
    view, dp, s, child = one_session(lambda: now[0])
    assert steps(view.sample()) == 2
    dp.count(child.spi_out, "out", packets=4, bytes_=4000)
    now[0] = 110.0
    assert steps(view.sample()) == 2
    assert view.throughput(session_id(s.key)) == [(110.0, 400.0, 0.0)]  # as in one go


def test_a_sample_of_many_sessions_yields_between_chunks() -> None:
    conc = FakeConcentrator(parse_config(config_text(None, pool="10.64.0.0/16")), EventLog())
    view = ManagerView(conc)
    n = 2 * SAMPLE_CHUNK + 1
    for i in range(n):
        conc.add_session(f"user{i}", 1024 + i)
    assert steps(view.sample()) == 2  # three chunks, the loop's turn between them
    assert len(view.samples) == n


def test_a_session_that_ends_during_a_sample_gets_no_samples() -> None:
    conc = FakeConcentrator(parse_config(config_text(None, pool="10.64.0.0/16")), EventLog())
    view = ManagerView(conc)
    sessions = [conc.add_session(f"user{i}", 1024 + i) for i in range(SAMPLE_CHUNK + 1)]
    coro = view.sample()
    coro.send(None)  # the first chunk is done; the loop runs something else:
    conc.sessions.end(sessions[-1].key, "logged out")
    assert steps(coro) == 0
    assert len(view.samples) == SAMPLE_CHUNK and sessions[-1].key not in view.samples
