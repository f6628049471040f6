"""The local users (`XauthAuthenticator`, blocking) as an async `Authenticator`.

Password hashes cost CPU time, so the check runs on a one-thread pool (or
inline, for in-memory tests); a refused login's slow-down (per user and per
source address) is waited here, before the answer returns, so the
concentrator core never sleeps and a slow answer holds nothing else up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor

from vpnhub.auth.api import AuthRequest, AuthResult
from vpnhub.auth.users import XauthAuthenticator


class LocalXauth:
    """`clock` is the monotonic clock the lock-out policy counts in."""

    def __init__(self, users: XauthAuthenticator, clock: Callable[[], float], *,
                 executor: Executor | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.users = users
        self.clock = clock
        self.executor = executor
        self.sleep = sleep

    async def authenticate(self, request: AuthRequest) -> AuthResult:
        def check() -> AuthResult:
            return self.users.authenticate(request.user, request.password,
                                           group=request.group, source=request.source,
                                           now=self.clock())

        if self.executor is None:
            result = check()
        else:
            result = await asyncio.get_running_loop().run_in_executor(self.executor, check)
        if not result.ok and result.delay > 0:
            await self.sleep(result.delay)  # slow down guessing (the answer waits)
        return result
