"""What a session store tells its subscribers: a session started, changed, ended.

The manager subscribes today; RADIUS accounting (Start / Interim-Update / Stop,
RFC 2866 5.1) and a cluster peer (replicating the table) are the subscribers
these events are shaped for. Each event is frozen and carries a
snapshot of the session (`Session.snapshot()`, frozen): a subscriber can keep
it, but never edit the live session.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from vpnhub.session.model import SessionView

__all__ = ["SessionChanged", "SessionEnded", "SessionEvent", "SessionStarted", "Subscriber"]


@dataclass(frozen=True)
class SessionStarted:
    """A new IKE SA got its session (before XAUTH: `user` may still be empty)."""

    session: SessionView


@dataclass(frozen=True)
class SessionChanged:
    """`fields` (Session attribute names) changed; `session` is the session after it."""

    session: SessionView
    fields: frozenset[str]


@dataclass(frozen=True)
class SessionEnded:
    """The session is gone from the store; `session` is how it was last."""

    session: SessionView
    reason: str


SessionEvent = SessionStarted | SessionChanged | SessionEnded
Subscriber = Callable[[SessionEvent], None]
ALL_KINDS: tuple[type[SessionEvent], ...] = (SessionStarted, SessionChanged, SessionEnded)
