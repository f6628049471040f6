"""The IKEv1 state machine as data (h11 style).

`TRANSITIONS[(state, exchange type, role)]` names the handler that may process
a message; a missing key means the message is unexpected in that state and
is dropped and counted ("unexpected_exchange"), never handled ad hoc.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

from vpnhub.wire.constants import ExchangeType

if TYPE_CHECKING:
    from vpnhub.ike.sa import IkeSA
    from vpnhub.wire.message import Message

    Handler = Callable[[IkeSA, Message, tuple[str, int], int, float], None]


class Role(enum.Enum):
    INITIATOR = "initiator"
    RESPONDER = "responder"


class State(enum.Enum):
    INITIAL = "initial"
    AM_I_SENT1 = "aggressive: initiator sent message 1"
    AM_R_SENT2 = "aggressive: responder sent message 2"
    MM_I_SENT1 = "main: initiator sent message 1"
    MM_R_SENT2 = "main: responder sent message 2"
    MM_I_SENT3 = "main: initiator sent message 3"
    MM_R_SENT4 = "main: responder sent message 4"
    MM_I_SENT5 = "main: initiator sent message 5"
    ESTABLISHED = "established"
    DELETED = "deleted"


INIT, RESP = Role.INITIATOR, Role.RESPONDER
AM, MM = ExchangeType.AGGRESSIVE, ExchangeType.IDENTITY_PROTECTION
INFO, TRANS, QM = ExchangeType.INFORMATIONAL, ExchangeType.TRANSACTION, ExchangeType.QUICK_MODE

# (state, exchange, role) -> "module.function"
TRANSITIONS: dict[tuple[State, int, Role], str] = {
    (State.INITIAL, AM, RESP): "aggressive.responder_1",
    (State.AM_I_SENT1, AM, INIT): "aggressive.initiator_2",
    (State.AM_R_SENT2, AM, RESP): "aggressive.responder_3",
    (State.INITIAL, MM, RESP): "main_mode.responder_1",
    (State.MM_I_SENT1, MM, INIT): "main_mode.initiator_2",
    (State.MM_R_SENT2, MM, RESP): "main_mode.responder_3",
    (State.MM_I_SENT3, MM, INIT): "main_mode.initiator_4",
    (State.MM_R_SENT4, MM, RESP): "main_mode.responder_5",
    (State.MM_I_SENT5, MM, INIT): "main_mode.initiator_6",
}
# Errors may arrive in cleartext during phase 1 (e.g. NO-PROPOSAL-CHOSEN).
for _s in (State.AM_I_SENT1, State.AM_R_SENT2, State.MM_I_SENT1, State.MM_R_SENT2,
           State.MM_I_SENT3, State.MM_R_SENT4, State.MM_I_SENT5):
    for _r in (INIT, RESP):
        TRANSITIONS[(_s, INFO, _r)] = "informational.receive"
for _r in (INIT, RESP):
    TRANSITIONS[(State.ESTABLISHED, INFO, _r)] = "informational.receive"
    TRANSITIONS[(State.ESTABLISHED, TRANS, _r)] = "transaction.receive"
    TRANSITIONS[(State.ESTABLISHED, QM, _r)] = "quick.receive"
# The server starts XAUTH right after Aggressive Mode message 3; a message of
# the client may overtake our view of "established" only by reordering, which
# UDP allows, so transactions in AM_R_SENT2 are not accepted (no keys yet).


def handler_for(state: State, exchange: int, role: Role) -> Handler | None:
    name = TRANSITIONS.get((state, exchange, role))
    if name is None:
        return None
    return _handler(name)


@functools.cache
def _handler(name: str) -> Handler:
    # Resolved once per name: resolving per message left small strings alive all
    # over the heap during a flood, which kept its memory from being returned.
    module, func = name.split(".")
    import importlib

    mod = importlib.import_module(f"vpnhub.ike.{module}")
    handler: Handler = getattr(mod, func)
    return handler
