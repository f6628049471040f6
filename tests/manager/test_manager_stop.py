"""The manager stops even when the cancel of its periodic task is lost (issue 13).

Python 3.11's ``asyncio.wait_for`` gives the awaited future's outcome instead of
CancelledError when that future is settled in the same turn as the cancel (CPython
gh-86296). In the concentrator's SIGTERM with 10,000 sessions the tick was sampling
the data-plane workers while the shutdown closed the pool: the question failed, the
cancel was lost, the tick went on, and ``Manager.stop`` awaited it forever (the
process never exited). The fake sample below loses the cancel the same way.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from manager_fakes import ManagerServer

from vpnhub.manager import app


def test_stop_ends_when_the_tick_swallows_its_cancel(
        server: ManagerServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app, "TICK", 0.05)
    m = server.manager
    assert m is not None
    sampling = asyncio.Event()
    swallowed: list[bool] = []

    async def sample_losing_the_cancel() -> None:
        sampling.set()
        try:
            await asyncio.sleep(3600)  # a worker's answer that never comes
        except asyncio.CancelledError:
            swallowed.append(True)  # what wait_for does when the answer meets the cancel

    async def restart_ticker() -> None:
        # the running tick sleeps with the old TICK: start one that uses the fakes
        assert m._ticker is not None
        m._ticker.cancel()
        await asyncio.wait({m._ticker})
        m.view.sample = sample_losing_the_cancel  # type: ignore[method-assign]
        m.view.sample_totals = sample_losing_the_cancel  # type: ignore[method-assign]
        m._ticker = asyncio.create_task(m._tick())
        await asyncio.wait_for(sampling.wait(), 5)

    server.call(restart_ticker())
    t0 = time.monotonic()
    server.call(m.stop(), timeout=10)
    took = time.monotonic() - t0
    server.manager = None  # stopped: the fixture's stop() must not stop it again
    assert swallowed == [True]  # the cancel really was lost
    assert m._ticker is not None and m._ticker.done()
    assert took < app.STOP_WAIT
