"""The real manager over the core rig's concentrator, served on 127.0.0.1.

The rig (tests/concentrator/core_harness.py) runs on simulated time and
serves no sockets: the manager (`Manager` over that very core, as `vpnhub
serve` makes it) is served from an asyncio loop in a thread, where a task
moves the rig's datagrams every 10 ms (a logout's DELETE reaches its client;
simulated time does not advance, so no timer fires and no session expires
meanwhile). Every use of the rig happens in that loop's thread: `call` and
`run` hand work to it. Used by the Chromium tests and by tests/manager/screens.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parents[1] / "concentrator"))

from core_harness import CoreRig

from vpnhub.manager.app import Manager
from vpnhub.manager.view import Pinger, system_ping


class RigManager:
    """The manager over the rig's core, served from a loop in a thread."""

    def __init__(self, rig: CoreRig, pinger: Pinger = system_ping) -> None:
        self.rig = rig
        self.pinger = pinger
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.manager: Manager | None = None
        self.mover: asyncio.Task[None] | None = None
        self.errors: list[BaseException] = []
        self.base = ""

    def start(self) -> RigManager:
        self.thread.start()
        self.call(self._start())
        return self

    async def _start(self) -> None:
        self.manager = Manager(self.rig.core, pinger=self.pinger)
        assert await self.manager.start("127.0.0.1", 0)
        self.base = self.manager.url
        self.mover = asyncio.create_task(self._move())

    async def _move(self) -> None:
        while True:
            await asyncio.sleep(0.01)
            try:
                self.rig.settle()
            except AssertionError as e:  # an internal error or a driver fault: the test fails
                self.errors.append(e)
                return

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def run(self, fn: Any) -> Any:
        async def wrapper() -> Any:
            return fn()
        return self.call(wrapper())

    def stop(self) -> None:
        async def _stop() -> None:
            if self.mover is not None:
                self.mover.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self.mover
            if self.manager is not None:
                await self.manager.stop()
        self.call(_stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

