"""The view counts handshakes per IKE SA with marks of its own, held weakly:
nothing is written on the SA, and a mark goes when its SA goes."""

import gc
from typing import Any

from vpnhub.ike import events as ev
from vpnhub.manager.view import ManagerView
from vpnhub.session.store import MemorySessionStore


class _SA:
    pass


def test_handshake_marks_live_in_the_view_and_go_with_their_sa() -> None:
    class _Conc:  # on_ike_event reads nothing of the concentrator; the view subscribes
        sessions = MemorySessionStore(10)

    conc: Any = _Conc()
    view = ManagerView(conc)
    sa = _SA()
    p1 = ev.Phase1Established("AES-256", "SHA1", "MODP_2048", "PSK+XAUTH", "Aggressive",
                              86400, "vpngroup", ())
    for e in (ev.LogLine("IKE", 5, "x"), p1, ev.SADeleted("deleted by peer", True)):
        view.on_ike_event(sa, e)
    assert (view.handshakes.started, view.handshakes.completed) == (1, 1)
    assert not view.handshakes.failed  # deleted after it was up: not a failed handshake
    assert vars(sa) == {}
    view.on_ike_event(sa, ev.LogLine("IKE", 5, "after the end"))
    assert view.handshakes.started == 1  # the mark is still there while the SA is
    del sa
    gc.collect()
    assert len(view._handshake_marks) == 0
