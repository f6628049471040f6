"""The client's status socket answers a too-long request with an error and goes on
serving (issue 11, 8a: the same code as the concentrator's admin socket had)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from socket_fakes import ask

from vpnhub.client.driver import Options, VpnClient
from vpnhub.net.jsonline import MAX_REQUEST_BYTES
from vpnhub.secret import Secret


def test_status_socket_answers_a_too_long_request_and_keeps_serving(tmp_path: Path) -> None:
    sock = tmp_path / "status.sock"
    profile = SimpleNamespace(host="203.0.113.50", port=500, transparent_tunneling=True,
                              tunnel_interface="vhtun9")
    client = VpnClient(profile, Options(user="u", password=Secret("p"),  # type: ignore[arg-type]
                                        status_socket=sock, print=lambda _s: None))
    unhandled: list[dict[str, Any]] = []

    async def main() -> list[dict[str, Any]]:
        asyncio.get_running_loop().set_exception_handler(lambda _l, ctx: unhandled.append(ctx))
        server = await client._start_status()
        assert server is not None
        try:
            return [await ask(sock, b'{"cmd": "status", "x": "' + b"y" * MAX_REQUEST_BYTES
                              + b'"}\n'),
                    await ask(sock, b'{"cmd": "status"}\n')]
        finally:
            server.close()
            await server.wait_closed()

    too_long, status = asyncio.run(main())
    assert too_long == {"error": f"request too long (limit {MAX_REQUEST_BYTES} bytes)"}
    assert status["state"] == "connecting" and status["concentrator"] == "203.0.113.50"
    assert unhandled == []
