"""Former home of the session table: now vpnhub.session (model and store).

Kept importable while the concentrator moves to the `SessionStore` API.
"""

from __future__ import annotations

from vpnhub.session.model import ChildInfo, Session, SessionView, pfs_name
from vpnhub.session.store import MemorySessionStore

SessionTable = MemorySessionStore

__all__ = ["ChildInfo", "Session", "SessionTable", "SessionView", "pfs_name"]
