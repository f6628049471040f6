"""The load generator's counts for bench/scale.py (issue 13), in-process: every
DELETE the concentrator sends is counted (`deletes_received`), and a tunnel that
dies before our own teardown is a lost session; load-balancing redirects followed
(issue 17) are counted too."""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Iterator

import pytest

from vpnhub.ike import events as ev
from vpnhub.ike.policy import Policy
from vpnhub.ike.sa import IkeConfig, IkeSA
from vpnhub.ike.transitions import Role
from vpnhub.secret import Secret
from vpnhub.tools.loadgen import MAX_REDIRECTS, LoadConfig, LoadGenerator, SimClient, merge


@pytest.fixture
def lg() -> Iterator[LoadGenerator]:
    gen = LoadGenerator(LoadConfig(server="203.0.113.50", group="g", psk="p",
                                   users=[("u", "pw")], local_address="10.10.10.2"))
    yield gen
    gen.ep.close()


def _client(lg: LoadGenerator, i: int, *, established: bool) -> SimClient:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    cfg = IkeConfig(local_address="10.10.10.2", policy=Policy(), group_name="g",
                    psk=Secret("p"))
    c = SimClient(i, sock, IkeSA(cfg, Role.INITIATOR, ("203.0.113.50", 500), 0.0), "u", "pw")
    lg.clients.append(c)
    if established:
        c.done_at = 1.0
    return c


def test_deletes_from_the_concentrator_are_counted_and_lost_sessions_too(
        lg: LoadGenerator, capsys: pytest.CaptureFixture[str]) -> None:
    up = [_client(lg, i, established=True) for i in range(3)]
    half = _client(lg, 3, established=False)
    lg.inflight = 1
    lg._on_event(up[0], ev.SADeleted("deleted by peer", by_peer=True), 2.0)
    lg._on_event(up[1], ev.DeadPeer("no answer to 5 DPD R-U-THERE"), 2.0)
    lg._on_event(half, ev.SADeleted("deleted by peer", by_peer=True), 2.0)
    assert lg.c.deletes_received == 2  # every DELETE, set up or not
    assert lg.c.lost == 2  # the two established tunnels that died
    lg.emit_status()
    status = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert status["event"] == "status"
    assert (status["alive"], status["sessions_lost"], status["deletes_received"]) == (1, 2, 2)
    for c in lg.clients:
        c.sock.close()


def test_our_own_teardown_loses_nothing(lg: LoadGenerator) -> None:
    c = _client(lg, 0, established=True)
    lg.phase = "teardown"
    lg._on_event(c, ev.SADeleted("load generator done", by_peer=False), 3.0)
    assert lg.c.lost == 0 and lg.c.deletes_received == 0
    c.sock.close()


def test_the_summary_carries_the_counts() -> None:
    part = {"config": {"tunnels": 7}, "counters": {"deletes_received": 7, "lost": 1},
            "first_start": 0.0, "last_done": 0.0, "setup_times": [], "rtts_ms": [],
            "alive_at_end": 6, "cpu": {"total": 0.0}}
    doc = merge([part, part])
    assert doc["deletes_received"] == 14 and doc["sessions_lost"] == 2


def test_redirects_are_followed_counted_and_bounded(lg: LoadGenerator) -> None:
    """Issue 17: a cluster's virtual address sends a client to a member; it starts a
    new Aggressive Mode there (UDP 500), the old SA's end is no failure, and a loop
    ends after MAX_REDIRECTS."""
    sent: list[tuple[str, int]] = []
    lg._send = lambda c, data, addr: sent.append(addr)  # type: ignore[method-assign]
    lg._start_one(1.0)
    c = lg.clients[0]
    assert sent == [("203.0.113.50", 500)] and c.sa.config.follow_redirects
    for n in range(1, MAX_REDIRECTS + 1):
        old = c.sa
        target = ipaddress.IPv4Address(f"203.0.113.{50 + n}")
        lg._on_ike_event(old, ev.RedirectRequested(target), 2.0)
        lg._on_ike_event(old, ev.SADeleted(f"redirected to {target}", by_peer=False), 2.0)
        assert c.sa is not old and c.sa.remote == (str(target), 500)
        assert sent[-1] == (str(target), 500) and c.server == str(target)
        assert not c.error and lg.c.redirects == n
    lg._on_ike_event(c.sa, ev.RedirectRequested(ipaddress.IPv4Address("203.0.113.99")), 3.0)
    assert c.error == "redirect_loop" and lg.c.failed == 1
    assert lg.c.redirects == MAX_REDIRECTS
    assert merge([lg_part(lg)])["redirects"] == MAX_REDIRECTS
    c.sock.close()


def lg_part(lg: LoadGenerator) -> dict[str, object]:
    return {"config": {"tunnels": 1}, "counters": {"redirects": lg.c.redirects},
            "first_start": 0.0, "last_done": 0.0, "setup_times": [], "rtts_ms": [],
            "alive_at_end": 0, "cpu": {"total": 0.0}}
