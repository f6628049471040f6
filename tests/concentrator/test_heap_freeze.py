"""gc.freeze() after sessions grow (issue 13, concentrator/memory.py HeapFreezer).

Frozen objects are never walked by the cyclic collector again: what makes that
safe is that a session that ends leaves no reference cycle behind (reference
counting frees all of it), checked here with the real core.
"""

from __future__ import annotations

import gc

from core_harness import CoreRig, config_text

from vpnhub.concentrator.memory import HeapFreezer


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
