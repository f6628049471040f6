"""The configured users (`[[user]]` in the configuration) as an `Authenticator`.

`LocalUsers` answers from `UserTable` (vpnhub/auth/users.py): known user,
password (scrypt / PBKDF2 hash or plain text, constant-time), group; unknown
names cost the same hash work. It knows nothing of lock-out or slow-down:
`vpnhub.auth.lockout.Lockout` wraps it (or any other backend) for that.

Why a worker thread: one scrypt check is about 0.1 s of CPU, and the event
loop that runs IKE for every peer must not stall for it (hashlib releases the
GIL while it hashes). One thread, as before this backend existed: checks run
one at a time, which bounds the CPU that a flood of guesses can take.
When no configured user has a hash (`UserTable.plain_only`), every check is a
constant-time compare of microseconds: it runs on the loop, which saves the
two thread hand-offs per login (issue 13: CPU per tunnel).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from vpnhub.auth.api import AuthRequest, AuthResult
from vpnhub.auth.users import UserTable

if TYPE_CHECKING:
    from vpnhub.config import UserConfig

__all__ = ["LocalUsers"]


class LocalUsers:
    """XAUTH users from the configuration; `authenticate` never blocks the loop."""

    def __init__(self, users: Iterable[UserConfig]) -> None:
        self.table = UserTable(users)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xauth")

    async def authenticate(self, request: AuthRequest) -> AuthResult:
        password = request.password.reveal()
        if self.table.plain_only:
            return self.table.check(request.user, password, request.group)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._pool, self.table.check, request.user, password, request.group
        )

    def knows(self, username: str) -> bool:
        return self.table.knows(username)

    def close(self) -> None:
        """Stop the worker thread without waiting for a check in progress."""
        self._pool.shutdown(wait=False)

    async def aclose(self) -> None:
        """Stop the worker thread once a check in progress has finished."""
        await asyncio.get_running_loop().run_in_executor(None, self._pool.shutdown, True)
