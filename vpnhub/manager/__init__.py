"""The manager: web console, HTTP API, live event log and Prometheus metrics (issue 6).

`Manager(concentrator)` opens the event log's store; `await manager.start()`
serves [admin] listen from the concentrator's own event loop; the
concentrator calls `manager.on_ike_event(sa, event)` for every engine event
(handshake counters) and `await manager.stop()` on shutdown. docs/MANAGER.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vpnhub.manager.app import Manager

__all__ = ["Manager"]


def __getattr__(name: str) -> Any:
    # lazy: `python -m vpnhub.manager.openapi` must not import the server first
    if name == "Manager":
        from vpnhub.manager.app import Manager

        return Manager
    raise AttributeError(name)
