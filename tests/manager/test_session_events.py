"""The manager keeps its per-session data by the store's session events (issue 12).

Its throughput samples used to be rebuilt from the whole table at every
sample; now a session's samples go when the store says the session ended.
"""

from __future__ import annotations

import asyncio

from manager_fakes import FakeConcentrator, config_text

from vpnhub.config import parse_config
from vpnhub.eventlog import EventLog
from vpnhub.manager.view import ManagerView, session_id


def concentrator() -> FakeConcentrator:
    return FakeConcentrator(parse_config(config_text(None)), EventLog())


def test_samples_of_an_ended_session_go_with_its_event() -> None:
    conc = concentrator()
    clock = iter(range(100, 200, 2))
    view = ManagerView(conc, clock=lambda: float(next(clock)))
    alice = conc.add_session("vpnuser1", 1025)
    bob = conc.add_session("vpnuser2", 1026)
    asyncio.run(view.sample())
    asyncio.run(view.sample())
    assert len(view.samples) == 2 and alice.key in view.samples and bob.key in view.samples
    assert len(view.samples.points(alice.key)) == 2
    assert len(view.throughput(session_id(alice.key))) == 1

    ended = conc.sessions.end(alice.key, "logged out")
    assert ended is not None
    assert len(view.samples) == 1 and bob.key in view.samples  # at once, before any sample
    assert view.throughput(session_id(alice.key)) == []
    asyncio.run(view.sample())
    assert len(view.samples.points(bob.key)) == 3


def test_a_logout_through_the_concentrator_drops_the_samples() -> None:
    conc = concentrator()
    view = ManagerView(conc)
    s = conc.add_session("vpnuser1", 1025)
    asyncio.run(view.sample())
    snap = conc.sessions.get(s.key)
    assert snap is not None and view.logout(snap, "admin")
    assert len(view.samples) == 0 and conc.sessions.get(s.key) is None


def test_a_closed_view_hears_no_more() -> None:
    conc = concentrator()
    view = ManagerView(conc)
    s = conc.add_session("vpnuser1", 1025)
    asyncio.run(view.sample())
    view.close()
    conc.sessions.end(s.key, "logged out")
    assert len(view.samples) == 1 and s.key in view.samples
