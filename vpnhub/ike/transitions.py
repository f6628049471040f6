"""The IKEv1 state machine as data (h11 style).

`TRANSITIONS[(state, exchange type, role)]` is the handler that may process
a message; a missing key means the message is unexpected in that state and
is dropped and counted ("unexpected_exchange"), never handled ad hoc.

The table holds the exchange modules' functions themselves, so the type
checker sees every entry; it sits above the exchanges (which import only
`state`), so no import circle is needed to build it.
"""

from __future__ import annotations

from collections.abc import Callable

from vpnhub.ike import aggressive, informational, main_mode, quick, transaction
from vpnhub.ike.state import Address, Role, SaState, State
from vpnhub.wire.constants import ExchangeType
from vpnhub.wire.message import Message

__all__ = ["TRANSITIONS", "Handler", "Role", "State", "handler_for"]

# (the SA, the decrypted message, its source, our port, now)
Handler = Callable[[SaState, Message, Address, int, float], None]

INIT, RESP = Role.INITIATOR, Role.RESPONDER
AM, MM = ExchangeType.AGGRESSIVE, ExchangeType.IDENTITY_PROTECTION
INFO, TRANS, QM = ExchangeType.INFORMATIONAL, ExchangeType.TRANSACTION, ExchangeType.QUICK_MODE

TRANSITIONS: dict[tuple[State, int, Role], Handler] = {
    (State.INITIAL, AM, RESP): aggressive.responder_1,
    (State.AM_I_SENT1, AM, INIT): aggressive.initiator_2,
    (State.AM_R_SENT2, AM, RESP): aggressive.responder_3,
    (State.INITIAL, MM, RESP): main_mode.responder_1,
    (State.MM_I_SENT1, MM, INIT): main_mode.initiator_2,
    (State.MM_R_SENT2, MM, RESP): main_mode.responder_3,
    (State.MM_I_SENT3, MM, INIT): main_mode.initiator_4,
    (State.MM_R_SENT4, MM, RESP): main_mode.responder_5,
    (State.MM_I_SENT5, MM, INIT): main_mode.initiator_6,
}
# Errors may arrive in cleartext during phase 1 (e.g. NO-PROPOSAL-CHOSEN).
for _s in (State.AM_I_SENT1, State.AM_R_SENT2, State.MM_I_SENT1, State.MM_R_SENT2,
           State.MM_I_SENT3, State.MM_R_SENT4, State.MM_I_SENT5):
    for _r in (INIT, RESP):
        TRANSITIONS[(_s, INFO, _r)] = informational.receive
for _r in (INIT, RESP):
    TRANSITIONS[(State.ESTABLISHED, INFO, _r)] = informational.receive
    TRANSITIONS[(State.ESTABLISHED, TRANS, _r)] = transaction.receive
    TRANSITIONS[(State.ESTABLISHED, QM, _r)] = quick.receive
# The server starts XAUTH right after Aggressive Mode message 3; a message of
# the client may overtake our view of "established" only by reordering, which
# UDP allows, so transactions in AM_R_SENT2 are not accepted (no keys yet).


def handler_for(state: State, exchange: int, role: Role) -> Handler | None:
    return TRANSITIONS.get((state, exchange, role))
