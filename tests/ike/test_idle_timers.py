"""Idle timers on a coarse grid (issue 13): one driver wake serves every SA due in a
slot; retransmissions stay exact; DPD still finds a dead peer (RFC 3706)."""

from __future__ import annotations

import dataclasses

from ike_harness import Client, Lab

from vpnhub.ike import events as ev
from vpnhub.ike.sa import IkeConfig


class GridLab(Lab):
    """The harness with the concentrator's `idle_timer_grid` set."""

    def __init__(self, grid: float) -> None:
        self.grid = grid
        super().__init__()

    def _server_config(self, remote: tuple[str, int], local_port: int = 500) -> IkeConfig:
        return dataclasses.replace(super()._server_config(remote, local_port),
                                   idle_timer_grid=self.grid)


def _up(lab: Lab, at: float, user: str = "vpnclient1", ip: str = "10.10.10.2") -> Client:
    lab.now = at
    c = lab.add_client(user=user, local_ip=ip, pat_ip=None)
    c.sa.initiate(lab.now)
    lab.run()
    assert c.sa.established and c.children
    return c


def test_the_dpd_deadline_is_rounded_up_to_the_grid() -> None:
    for grid, expected in ((1.0, 1031.0), (0.5, 1030.5), (0.0, 1030.3)):
        lab = GridLab(grid)
        c = _up(lab, 1000.3)
        srv = lab.server_sa_for(c)
        assert srv is not None and srv.dpd_next_at == 1030.3
        assert srv.get_timer() == expected


def test_sas_due_in_one_slot_share_one_wake() -> None:
    lab = GridLab(1.0)
    a = _up(lab, 1000.2)
    b = _up(lab, 1000.7, user="vpnclient2", ip="10.10.10.3")
    sa, sb = lab.server_sa_for(a), lab.server_sa_for(b)
    assert sa is not None and sb is not None
    assert sa.get_timer() == sb.get_timer() == 1031.0
    wakes, ran = lab.server.wakes, lab.server.timer_sas
    lab.now = 1031.0
    lab.server.timer(lab.now)
    assert lab.server.wakes - wakes == 1 and lab.server.timer_sas - ran == 2
    assert sa.dpd_outstanding == sb.dpd_outstanding == 1  # both asked R-U-THERE


def _dpd_round(limit: int | None) -> tuple[list[int], list[float | None], int]:
    """Three SAs due in one slot, their timers run `limit` at a time: the R-U-THEREs
    asked, the next deadlines, the driver's calls it took."""
    lab = GridLab(1.0)
    clients = [_up(lab, 1000.2 + i / 10, user=f"vpnclient{i + 1}", ip=f"10.10.10.{i + 2}")
               for i in range(3)]
    sas = [lab.server_sa_for(c) for c in clients]
    assert all(sa is not None and sa.get_timer() == 1031.0 for sa in sas)
    lab.now = 1031.0
    calls = 0
    while (due := lab.server.next_timer()) is not None and due <= lab.now:
        lab.server.timer(lab.now, limit)
        calls += 1
    return ([sa.dpd_outstanding for sa in sas if sa is not None],
            [sa.get_timer() for sa in sas if sa is not None], calls)


def test_timers_run_in_steps_as_in_one_go() -> None:
    # an event loop runs at most TIMER_STEP SAs' timers per turn (net/asyncdriver.py):
    # the others stay due, and the round ends as one call would have ended it
    asked, deadlines, calls = _dpd_round(None)
    assert asked == [1, 1, 1] and calls == 1
    assert _dpd_round(1) == (asked, deadlines, 3)
    assert _dpd_round(2) == (asked, deadlines, 2)


def test_retransmissions_and_setup_deadlines_stay_exact() -> None:
    lab = GridLab(1.0)
    lab.now = 1000.3
    c = lab.add_client(pat_ip=None)
    lab.drop_next_to_server = 1  # message 1 is lost: the client retransmits it
    c.sa.initiate(lab.now)
    lab.run()
    # RFC 2408 / 2409 retransmission: exactly retransmit_interval later, no grid
    assert c.sa.get_timer() == 1000.3 + c.sa.config.retransmit_interval


def test_a_timer_run_exactly_at_the_dpd_deadline_probes() -> None:
    # 1030.6 - 1000.6 < 30 in floating point: the idle check used to re-arm the same
    # deadline and a simulated clock spun on it for ever
    lab = GridLab(0.0)
    c = _up(lab, 1000.6)
    srv = lab.server_sa_for(c)
    assert srv is not None
    t = srv.get_timer()
    assert t is not None
    lab.now = t
    lab.server.timer(t)
    assert srv.dpd_outstanding == 1  # R-U-THERE sent, not the same deadline again


def _dead_after(grid: float) -> float:
    lab = GridLab(grid)
    c = _up(lab, 1000.3)
    srv = lab.server_sa_for(c)
    assert srv is not None
    lab.clients.remove(c)  # the client vanishes: nothing reaches it any more
    start = lab.now
    while lab.server_sa_for(c) is not None:
        lab.advance(0.25)
        assert lab.now - start < 300, "no dead peer declared"
    dead = [e for s, e in lab.server_events if s is srv and isinstance(e, ev.DeadPeer)]
    assert dead and "R-U-THERE" in dead[0].reason
    return lab.now - start


def test_dpd_still_declares_a_dead_peer_within_a_few_grid_steps() -> None:
    exact, coarse = _dead_after(0.0), _dead_after(1.0)
    # RFC 3706 5.5: probes after `dpd_interval` of silence, `dpd_retries` of them; each
    # idle deadline moves by less than one grid step, never earlier
    retries = IkeConfig(local_address="").dpd_retries
    assert exact <= coarse <= exact + (retries + 1) * 1.0 + 0.25
    assert coarse < 30 + 5 * retries + 10


def test_a_message_moves_the_dpd_deadline_without_a_timer_operation() -> None:
    # RFC 3706 5.5: the idle period restarts with every message; only the attribute
    # moves, and the entry queued for the old deadline is re-queued when it fires,
    # without running the SA (issue 13: 10,000 idle SAs, bench/dpd_cost.py)
    lab = GridLab(1.0)
    c = _up(lab, 1000.3)
    srv = lab.server_sa_for(c)
    lab.now = 1010.0  # the set-up's stale entries (answered retransmissions) go
    lab.server.timer(lab.now)
    lab.server.next_timer()
    assert srv is not None and srv.endpoint_marks.timer_at == 1031.0
    queued = len(lab.endpoint._timers)
    lab.now = 1020.0
    c.sa.send_dpd(lab.now)  # the client asks R-U-THERE; the server answers
    lab.run()
    assert srv.dpd_next_at == 1050.0 and srv.get_timer() == 1050.0
    assert srv.endpoint_marks.timer_at == 1031.0 and len(lab.endpoint._timers) == queued
    ran = lab.server.timer_sas
    lab.now = 1031.0
    lab.server.timer(lab.now)
    assert lab.server.timer_sas == ran  # stale: re-queued, the SA not run
    assert srv.endpoint_marks.timer_at == 1050.0 and srv.dpd_outstanding == 0


class GraceLab(GridLab):
    """The concentrator's DPD grace (IkeConfig.dpd_grace) on the 1 s grid."""

    def __init__(self, grace: float) -> None:
        self.grace = grace
        super().__init__(1.0)

    def _server_config(self, remote: tuple[str, int], local_port: int = 500) -> IkeConfig:
        return dataclasses.replace(super()._server_config(remote, local_port),
                                   dpd_grace=self.grace)


def _server_probes(lab: Lab, seconds: float) -> tuple[int, int]:
    """(R-U-THEREs the server sent, the client sent) over `seconds` of DPD only."""
    c = _up(lab, 1000.3)
    srv = lab.server_sa_for(c)
    assert srv is not None
    seq0 = srv.dpd_seq, c.sa.dpd_seq  # RFC 3706 7: each starts from a random number
    for _ in range(int(seconds / 0.25)):
        lab.advance(0.25)
    assert srv.established and c.sa.established
    return (srv.dpd_seq - seq0[0]) & 0xFFFFFFFF, (c.sa.dpd_seq - seq0[1]) & 0xFFFFFFFF


def test_with_a_grace_the_client_asks_first_and_the_concentrator_never_does() -> None:
    # both on a 30 s interval and the same grid: without the grace both ask in the
    # same slot (each answering the other); with it only the client asks
    raced = _server_probes(GraceLab(0.0), 125.0)
    assert raced[0] >= 3 and raced[1] >= 3
    server, client = _server_probes(GraceLab(1.0), 125.0)
    assert server == 0 and client >= 3


def test_the_grace_delays_only_the_first_probe_to_a_silent_peer() -> None:
    exact, graced = _dead_after(1.0), _dead_after_grace(1.0)
    assert graced == exact + 1.0  # one step later; the retries keep their pace


def _dead_after_grace(grace: float) -> float:
    lab = GraceLab(grace)
    c = _up(lab, 1000.3)
    srv = lab.server_sa_for(c)
    assert srv is not None
    lab.clients.remove(c)
    start = lab.now
    while lab.server_sa_for(c) is not None:
        lab.advance(0.25)
        assert lab.now - start < 300, "no dead peer declared"
    return lab.now - start
