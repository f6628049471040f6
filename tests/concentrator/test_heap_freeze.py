"""gc.freeze() after sessions grow (issue 13, concentrator/memory.py HeapFreezer).

Frozen objects are never walked by the cyclic collector again: what makes that
safe is that a session that ends leaves no reference cycle behind (reference
counting frees all of it), checked here with the real core.
"""

from __future__ import annotations

import contextlib
import gc
import io
from pathlib import Path

from core_harness import SHELL_CONFIG, CoreRig, config_text

from vpnhub.concentrator.memory import HeapFreezer, young_generation_fill
from vpnhub.concentrator.service import Concentrator
from vpnhub.config import parse_config
from vpnhub.eventlog import EventLog


def test_a_freeze_after_every_growth_of_sessions() -> None:
    frozen: list[int] = []
    counts = iter(range(100))
    f = HeapFreezer(growth=10, freeze=lambda: frozen.append(next(counts)))
    for n in (0, 5, 9, 10, 15, 19, 20):
        f.tick(n)
    assert f.freezes == len(frozen) == 2  # at 10 and at 20
    f.tick(12)  # sessions ended: growth counts from the lowest since
    f.tick(21)
    assert f.freezes == 2
    f.tick(22)
    assert f.freezes == 3


def test_ended_sessions_leave_no_cyclic_garbage_behind_a_freeze() -> None:
    p = CoreRig.from_text(config_text())
    for _ in range(2):  # the second round: the first one's lazy imports and caches
        for user in ("vpnuser1", "vpnuser2"):
            p.connect(p.add_pc(user))
        assert len(p.core.sessions) == 2, p.console.getvalue()
        gc.collect()
        gc.freeze()  # what HeapFreezer does while these sessions are up
        try:
            for s in p.core.sessions.all():
                assert p.core.logout(s.key, "admin")
            p.settle()
            p.advance(200)  # DELETEs answered, the SAs' remains timed out
            assert len(p.core.sessions) == 0 and len(p.core.endpoint) == 0
            p.pcs.clear()
        finally:
            gc.unfreeze()
        garbage = gc.collect()
    assert garbage == 0  # what a freeze would have kept for ever


def test_a_storm_freezes_before_the_young_collection() -> None:
    """A login storm's sessions fill the young generation before `growth` of them
    come: once `early_growth` new sessions are there and it is half full, the freeze
    comes first (else the young collection walks them all once, issue 13)."""
    fill = [0.0]
    f = HeapFreezer(growth=500, freeze=lambda: None, early_growth=50, young_fill=0.5,
                    young=lambda: fill[0])
    f.tick(40)
    fill[0] = 0.7
    f.tick(49)  # full enough, but too few new sessions: what fills it may be garbage
    assert f.freezes == 0
    f.tick(50)
    assert f.freezes == 1
    fill[0] = 0.1  # the freeze restarted the young count
    f.tick(120)
    assert f.freezes == 1
    fill[0] = 0.49
    f.tick(300)
    assert f.freezes == 1
    fill[0] = 0.5
    f.tick(300)
    assert f.freezes == 2
    fill[0] = 0.9  # no new sessions since: the young collections keep their work
    f.tick(310)
    assert f.freezes == 2
    fill[0] = 0.0
    f.tick(800)  # `growth` new sessions freeze however empty it is
    assert f.freezes == 3


def test_the_young_generation_fill_is_read_from_the_collector() -> None:
    old = gc.get_threshold()
    gc.collect()
    try:
        gc.set_threshold(100_000, *old[1:])
        before = young_generation_fill()
        kept = [[i] for i in range(20_000)]  # tracked, alive: counted until a collection
        assert young_generation_fill() - before >= 0.19
        gc.freeze()
        assert young_generation_fill() < 0.01  # a freeze restarts the count
        gc.unfreeze()
        del kept
    finally:
        gc.set_threshold(*old)


class _Batching:
    """The one thing a reader's turn asks of the data plane."""

    def batch(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()


def test_every_readers_turn_gives_the_freezer_its_look(tmp_path: Path) -> None:
    """Not only the timer: its turn can wait behind the data plane's answers while a
    storm fills the young generation (vpnhub serve only: `own_process`)."""
    config = parse_config(SHELL_CONFIG.format(sock=tmp_path / "a.sock"))
    conc = Concentrator(config, EventLog(out=io.StringIO()))
    conc.dataplane = _Batching()  # type: ignore[assignment]
    frozen: list[int] = []
    conc.freezer = HeapFreezer(freeze=lambda: frozen.append(1), early_growth=0,
                               young=lambda: 1.0)
    with conc._turn():
        pass
    assert frozen == []  # a concentrator in someone else's process: no freezes
    conc.own_process = True
    with conc._turn():
        pass
    assert frozen == [1]
