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
    assert set(view.samples) == {session_id(alice.key), session_id(bob.key)}
    assert len(view.samples[session_id(alice.key)]) == 2

    ended = conc.sessions.end(alice.key, "logged out")
    assert ended is not None
    assert set(view.samples) == {session_id(bob.key)}  # at once, before any sample
    asyncio.run(view.sample())
    assert len(view.samples[session_id(bob.key)]) == 3


def test_a_logout_through_the_concentrator_drops_the_samples() -> None:
    conc = concentrator()
    view = ManagerView(conc)
    s = conc.add_session("vpnuser1", 1025)
    asyncio.run(view.sample())
    snap = conc.sessions.get(s.key)
    assert snap is not None and view.logout(snap, "admin")
    assert view.samples == {} and conc.sessions.get(s.key) is None


def test_a_closed_view_hears_no_more() -> None:
    conc = concentrator()
    view = ManagerView(conc)
    s = conc.add_session("vpnuser1", 1025)
    asyncio.run(view.sample())
    view.close()
    conc.sessions.end(s.key, "logged out")
    assert list(view.samples) == [session_id(s.key)]
