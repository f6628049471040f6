"""The engine's error: a stable reason name, a detail line and the RFC notify."""

from __future__ import annotations


class IkeError(Exception):
    """Raised by exchange handlers; `IkeSA.receive` turns it into log, notify and counters.

    `reason` is a stable snake_case name shared by tests, event log and metrics.
    `notify` is the RFC 2408 3.14.1 notify the peer should get, if any.
    `fatal` ends a phase 1 negotiation; phase 2 errors only end their exchange.
    """

    def __init__(
        self,
        reason: str,
        detail: str,
        notify: int | None = None,
        *,
        send_notify: bool = True,
        fatal: bool = True,
    ) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.notify = notify
        self.send_notify = send_notify
        self.fatal = fatal
