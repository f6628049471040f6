"""What makes the responder see a flood (issue 13, handshakes).

A flood of spoofed first messages leaves half-open SAs whose peers never
answer our message 2; real clients answer within a round trip. So the signal
is the number of such *unverified* SAs (more than FLOOD_UNVERIFIED), not the
rate of first messages: a benchmark at 1,000 logins a second is no flood,
600 spoofed first messages are one until they time out. Under a flood the
responder shares its DH value for a second (ike.dhreuse) and leaves g^xy to
the SAs that come back (ike.dhjob); the count it keeps for this must come
back to 0 whatever ends an SA.
"""

from __future__ import annotations

import ipaddress
import os

from ike_harness import Client, Lab
from test_half_open_flood import _first_message, _sources

from vpnhub.ike.endpoint import ANSWER_GRACE, FLOOD_UNVERIFIED

STEP = 0.010  # seconds per round trip on the lab's wire


def _start(lab: Lab, n: int, first: int) -> list[Client]:
    out = []
    for i in range(first, first + n):
        # 40 PCs behind each of 25 PATs, as many offices would log in
        c = lab.add_client(local_ip=f"10.10.{i % 40}.2", pat_ip=f"198.51.100.{1 + i // 40}")
        c.sa.initiate(lab.now)
        out.append(c)
    return out


def test_1000_logins_in_one_second_are_no_flood() -> None:
    lab = Lab()
    lab.pool = iter(ipaddress.IPv4Network("10.40.0.0/20").hosts())  # 1,000 addresses
    t0 = lab.now
    started: list[Client] = []
    peak = 0
    for step in range(100):  # 1 s: 1,000 clients start in the first 0.8 s
        if step < 80:
            started += _start(lab, 13 if step < 40 else 12, len(started))
        lab._step()  # one round trip
        lab.clients = [c for c in lab.clients if not c.children]  # done: off the wire
        peak = max(peak, lab.endpoint.unverified_count())
        assert not lab.endpoint.flooded(lab.now), (step, lab.endpoint.unverified_count())
        lab.now += STEP
        lab.server.timer(lab.now)
    assert lab.now - t0 <= 1.0 + 1e-9
    assert len(started) == 1000 and all(c.sa.established and c.children for c in started)
    # the rate was ten times the old flood threshold (100 first messages a second), but
    # only the last round trip's first messages were ever unanswered
    assert 0 < peak <= 13, peak
    assert lab.endpoint.dh_reuse.generated == 0  # every SA drew its own DH value
    assert lab.endpoint.unverified_count() == 0 and lab.endpoint.half_open_count() == 0


def test_600_spoofed_first_messages_are_a_flood_until_they_time_out() -> None:
    lab = Lab()
    msg1 = _first_message(lab)
    ep = lab.endpoint
    for n, src in enumerate(_sources(600), 1):
        ep.receive(os.urandom(8) + msg1[8:], src, 500, lab.now)
        assert ep.flooded(lab.now) == (n > FLOOD_UNVERIFIED), n
    assert ep.unverified_count() == 600
    assert ep.dh_reuse.generated == 1  # the SAs beyond FLOOD_UNVERIFIED shared a pair
    assert not ep.drops["recycled_per_source"] and not ep.drops["recycled_total"]
    # a real client logs in during the flood (with the shared DH value)
    c = lab.add_client(pat_ip="203.0.113.78")
    c.sa.initiate(lab.now)
    lab.run()
    assert c.sa.established and c.children
    lab.advance(29)
    assert ep.flooded(lab.now)  # still unanswered, 29 s on
    lab.advance(2)  # phase1_timeout (30 s): they are dropped
    assert ep.unverified_count() == 0 and ep.half_open_count() == 0
    assert not ep.flooded(lab.now)
    assert ep.drops["half_open_timeout"] == 600
    # the shared pair is forgotten with the flood: the next SA draws its own
    c2 = lab.add_client(pat_ip="203.0.113.78", local_ip="10.10.10.5")
    c2.sa.initiate(lab.now)
    lab.run()
    assert c2.sa.established and ep.dh_reuse.generated == 1
    assert c2.sa.dh_public_r != c.sa.dh_public_r


def test_the_count_comes_back_to_0_however_the_sas_end() -> None:
    lab = Lab()
    ep = lab.endpoint
    msg1 = _first_message(lab)
    # completed: a Main Mode client is verified by its message 3, then established
    done = lab.add_client(pat_ip="203.0.113.78", mode="main")
    done.sa.initiate(lab.now)
    lab._step()
    assert ep.unverified_count() == 1  # our message 2 sent, nothing back yet
    lab._step()
    assert ep.unverified_count() == 0 and ep.half_open_count() == 1  # verified
    lab.run()
    assert done.sa.established and ep.half_open_count() == 0
    # deleted while unverified (the administrator, or the core on shutdown)
    for src in _sources(20):
        ep.receive(os.urandom(8) + msg1[8:], src, 500, lab.now)
    assert ep.unverified_count() == 20
    for sa in [sa for sa in ep if not sa.established][:10]:
        sa.delete(lab.now)
        ep.remove(sa)
    assert ep.unverified_count() == 10
    # recycled: 40 first messages from one address at once are a burst (all kept);
    # left unanswered for ANSWER_GRACE, the next one brings the address back to 32
    for i in range(40):
        ep.receive(os.urandom(8) + msg1[8:], ("203.0.113.9", 30000 + i), 500, lab.now)
    assert ep.unverified_count() == 10 + 40 and ep.over_source_cap == 8
    lab.advance(ANSWER_GRACE)
    ep.receive(os.urandom(8) + msg1[8:], ("203.0.113.9", 31000), 500, lab.now)
    assert ep.unverified_count() == 10 + 32 and ep.drops["recycled_per_source"] == 9
    # expired: the rest time out
    lab.advance(31)
    assert ep.unverified_count() == 0 and ep.half_open_count() == 0
    assert len(ep) == 1  # the established one


def test_a_burst_of_128_logins_from_one_pat_is_served_whole_with_the_default_limits() -> None:
    """128 PCs behind one address start together (a PAT after an outage): more
    first messages in one round trip than max_half_open_per_source (32). None is
    recycled before it could answer (this lost 96 of them before). Beyond the cap
    the burst cannot be told from a spoofed flood yet, so it takes the flood's cheap
    path (shared DH values, g^xy deferred to message 3): every login still works."""
    lab = Lab()
    lab.pool = iter(ipaddress.IPv4Network("10.40.0.0/24").hosts())
    clients = []
    for i in range(128):
        c = lab.add_client(local_ip=f"10.10.{i // 100}.{2 + i % 100}", pat_ip="198.51.100.7")
        c.sa.initiate(lab.now)
        clients.append(c)
    lab._step()  # every message 1 in, before any client could answer
    ep = lab.endpoint
    assert ep.unverified_count() == 128 and ep.over_source_cap == 128 - 32
    lab.run()
    assert all(c.sa.established and c.children for c in clients)
    assert not ep.drops["recycled_per_source"] and not ep.drops["unknown_cookie"]
    assert ep.half_open_count() == 0 and ep.unverified_count() == 0


def test_a_storm_behind_one_pat_is_a_flood_sign_only_until_it_is_answered() -> None:
    """The burst beyond max_half_open_per_source takes the cheap path while it cannot
    be told from a spoofed one; its clients answer, none is recycled, so ANSWER_GRACE
    after its last first message the endpoint is back to its full path (its own DH
    value per SA), not 60 s later."""
    lab = Lab()
    lab.pool = iter(ipaddress.IPv4Network("10.40.0.0/24").hosts())
    storm = []
    for i in range(128):
        c = lab.add_client(local_ip=f"10.10.{i // 100}.{2 + i % 100}", pat_ip="198.51.100.7")
        c.sa.initiate(lab.now)
        storm.append(c)
    lab._step()
    ep = lab.endpoint
    assert ep.over_source_cap == 128 - 32 and ep.flooded(lab.now)
    lab.run()
    assert all(c.sa.established and c.children for c in storm)
    assert not ep.drops["recycled_per_source"]
    shared = ep.dh_reuse.generated
    lab.clients = []
    lab.advance(ANSWER_GRACE)
    assert not ep.flooded(lab.now)
    late = lab.add_client(local_ip="10.10.9.2", pat_ip="198.51.100.7")
    late.sa.initiate(lab.now)
    lab.run()
    assert late.sa.established and ep.dh_reuse.generated == shared  # its own pair
    assert late.sa.dh_public_r not in {c.sa.dh_public_r for c in storm}


def test_a_spoofed_source_is_a_flood_for_a_minute_once_its_sas_are_recycled() -> None:
    lab = Lab()
    msg1 = _first_message(lab)
    ep = lab.endpoint
    for i in range(300):  # one spoofed address, all at once: a burst (nothing recycled)
        ep.receive(os.urandom(8) + msg1[8:], ("198.51.100.9", 20000 + i), 500, lab.now)
    assert ep.flooded(lab.now) and ep.dh_reuse.generated == 1
    lab.advance(ANSWER_GRACE)  # nobody answered: the next message recycles the oldest
    ep.receive(os.urandom(8) + msg1[8:], ("198.51.100.9", 21000), 500, lab.now)
    assert ep.drops["recycled_per_source"] > 0 and ep.flooded(lab.now)
    lab.advance(29)  # its SAs timed out, the flood sign stays (PRESSURE_MEMORY)
    assert ep.unverified_count() <= 1 and ep.flooded(lab.now)
