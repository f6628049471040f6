"""The load generator's own cost (issue 13, 500 tunnels/s): its clients' DH pairs
are computed before the set-up, one fresh pair per tunnel, and its engine builds
no log lines nobody reads. Every tunnel still runs the whole exchange with real
crypto (the benchmarks' netns runs check that the tunnels pass traffic)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from vpnhub.ike import events as ev
from vpnhub.tools.loadgen import LoadConfig, LoadGenerator


def _gen(**kw: object) -> LoadGenerator:
    cfg = LoadConfig(server="203.0.113.50", group="g", psk="p", users=[("u", "pw")],
                     local_address="10.10.10.2", tunnels=3, dh_group=19, **kw)  # type: ignore[arg-type]
    return LoadGenerator(cfg)


@pytest.fixture
def lg() -> Iterator[LoadGenerator]:
    gen = _gen()
    yield gen
    for c in gen.clients:
        c.sock.close()
    gen.ep.close()


def test_every_client_takes_its_own_pair_from_the_pool(lg: LoadGenerator) -> None:
    assert lg.dh_pool is not None and len(lg.dh_pool) == 0
    lg._fill_dh_pool()
    assert len(lg.dh_pool) == 3
    pairs = []
    for _ in range(3):
        c = lg._new_client(0.0)
        c.sa.initiate(0.0)  # Aggressive Mode message 1 carries the KE; nothing is sent
        assert c.sa.p1.dh is not None
        pairs.append(c.sa.p1.dh)
    # no private value serves two tunnels, and all three came from the pool
    assert len({id(p) for p in pairs}) == 3
    assert len({p.public for p in pairs}) == 3
    assert len(lg.dh_pool) == 0 and lg.dh_pool.taken == 3
    # a fourth tunnel (the pool is empty) computes its own
    c = lg._new_client(0.0)
    c.sa.initiate(0.0)
    assert c.sa.p1.dh is not None and c.sa.p1.dh.public not in {
        p.public for p in pairs}


def test_every_client_gets_a_socket_of_its_own_opened_before_the_set_up(
        lg: LoadGenerator) -> None:
    lg._open_sockets()
    spare = list(lg.spare_sockets)
    assert len(spare) == 3
    clients = [lg._new_client(0.0) for _ in range(4)]  # the fourth opens its own
    assert [c.sock for c in clients[:3]] == spare and not lg.spare_sockets
    assert len({c.sock.getsockname()[1] for c in clients}) == 4  # one source port each


def test_without_precompute_there_is_no_pool() -> None:
    gen = _gen(dh_precompute=False)
    try:
        assert gen.dh_pool is None and gen._fill_dh_pool() >= 0.0
        c = gen._new_client(0.0)
        c.sa.initiate(0.0)
        assert c.sa.p1.dh is not None
        c.sock.close()
    finally:
        gen.ep.close()


def test_the_clients_build_no_log_lines(lg: LoadGenerator) -> None:
    c = lg._new_client(0.0)
    c.sa.initiate(0.0)
    events = []
    while (e := c.sa.next_event()) is not None:
        events.append(e)
    assert not any(isinstance(e, ev.LogLine) for e in events)
    assert c.sa.config is lg.ike_config  # one configuration for every client


def test_short_client_exponents_still_agree_with_a_full_size_server() -> None:
    """MODP clients use 64-bit private exponents (their secrecy is worth nothing, their
    CPU is the benchmark's): the concentrator's side is a full-size pair as always."""
    from vpnhub.crypto.dh import ModpKeyPair, dh_group
    from vpnhub.tools.loadgen import client_key_pair

    server = dh_group(14).generate()
    short = client_key_pair(14, 64)
    assert isinstance(short, ModpKeyPair) and short._x.bit_length() == 64
    assert short.shared_secret(server.public) == server.shared_secret(short.public)
    full = client_key_pair(14, 0)
    assert isinstance(full, ModpKeyPair) and full._x.bit_length() == 320
    assert client_key_pair(19, 64).group.group_id == 19  # ECP: the engine's own


def test_the_set_up_runs_with_a_quiet_collector_and_gives_it_back() -> None:
    import gc

    from vpnhub.tools.loadgen import GC_THRESHOLDS, quiet_collector

    before = gc.get_threshold()
    made_before = [object() for _ in range(3)]  # stands for the DH pairs and sockets
    with quiet_collector():
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() >= len(made_before)  # out of every collection
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
