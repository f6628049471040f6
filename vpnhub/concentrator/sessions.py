"""Former home of the session table: now vpnhub.session (model and store).

Kept importable while the concentrator moves to the `SessionStore` API.
"""

from __future__ import annotations

from vpnhub.session.model import ChildInfo, Session, SessionSnapshot, pfs_name
from vpnhub.session.store import MemorySessionStore

SessionTable = MemorySessionStore

__all__ = ["ChildInfo", "Session", "SessionSnapshot", "SessionTable", "pfs_name"]
