"""The engine's layers: the transition table holds the exchanges' handlers, and
each exchange's typed scratch lets go of what it no longer needs."""

import pytest
from ike_harness import Lab

from vpnhub.ike import aggressive, informational, main_mode, quick, transaction
from vpnhub.ike.transitions import TRANSITIONS, Role, State, handler_for
from vpnhub.wire.constants import ExchangeType

EXCHANGES = {m.__name__ for m in (aggressive, informational, main_mode, quick, transaction)}


def test_every_transition_is_a_handler_of_an_exchange_module() -> None:
    for key, handler in TRANSITIONS.items():
        assert callable(handler) and handler.__module__ in EXCHANGES, key
        assert handler_for(*key) is handler
    # a missing key is an unexpected message, not a handler
    assert handler_for(State.ESTABLISHED, ExchangeType.AGGRESSIVE, Role.RESPONDER) is None
    assert handler_for(State.AM_R_SENT2, ExchangeType.TRANSACTION, Role.RESPONDER) is None


@pytest.mark.parametrize("mode", ["aggressive", "main"])
def test_scratch_drops_the_dh_private_value_and_the_finished_exchanges(mode: str) -> None:
    lab = Lab()
    c = lab.add_client(mode=mode)
    c.sa.initiate(lab.now)
    lab.run()
    srv = lab.server_sa_for(c)
    assert srv is not None and c.sa.established and srv.established
    for sa in (c.sa, srv):
        assert sa.p1.dh is None and sa.p1.dh_source is None  # SKEYID made: g^xy's x goes
        assert not sa.p1.natd3
        # XAUTH, Mode Config and Quick Mode are over: none waits, no scratch is kept
        assert sa.trans.xauth_pending is False and sa.trans.xauth_mid is None
        assert sa.trans.modecfg_pending is None
        assert not sa.exchanges
    assert srv.endpoint_marks.half_open_key is None  # no longer half-open at the endpoint
