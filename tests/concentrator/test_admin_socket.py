"""The admin socket answers every bad request and keeps serving (issue 11, point 8a).

A line over 64 KiB and deeply nested JSON used to raise out of the connection
handler: asyncio logged an unhandled-exception traceback and the client got
no answer. The server here is the concentrator's own admin server, started
as `vpnhub serve` starts it (no TUN needed for the socket).
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from pathlib import Path
from typing import Any

from core_harness import SHELL_CONFIG
from socket_fakes import ask

from vpnhub.concentrator.service import Concentrator
from vpnhub.config import parse_config
from vpnhub.eventlog import EventLog
from vpnhub.net.jsonline import MAX_DEPTH, MAX_REQUEST_BYTES
from vpnhub.net.loopwatch import LoopWatch


def run_server(tmp_path: Path, requests: list[bytes]) -> tuple[list[dict[str, Any]],
                                                                  list[dict[str, Any]], str]:
    sock = tmp_path / "admin.sock"
    out = io.StringIO()
    conc = Concentrator(parse_config(SHELL_CONFIG.format(sock=sock)), EventLog(out=out))
    unhandled: list[dict[str, Any]] = []

    async def main() -> list[dict[str, Any]]:
        asyncio.get_running_loop().set_exception_handler(lambda _l, ctx: unhandled.append(ctx))
        server = await conc._start_admin()
        assert server is not None, out.getvalue()
        try:
            return [await ask(sock, r) for r in requests]
        finally:
            server.close()
            await server.wait_closed()

    replies = asyncio.run(main())
    return replies, unhandled, out.getvalue()


def test_too_long_and_too_deep_requests_are_answered_and_the_server_goes_on(
        tmp_path: Path) -> None:
    long_line = json.dumps({"cmd": "sessions", "pad": "x" * (MAX_REQUEST_BYTES + 10)})
    deep = "[" * 20_000 + "]" * 20_000  # under 64 KiB; json.loads: RecursionError
    replies, unhandled, log = run_server(tmp_path, [
        long_line.encode() + b"\n",
        deep.encode() + b"\n",
        b'{"a": ' * (MAX_DEPTH + 1) + b"1" + b"}" * (MAX_DEPTH + 1) + b"\n",
        b'{"cmd": "stats"}\n',  # still serving, and serving right
    ])
    assert replies[0] == {"error": f"request too long (limit {MAX_REQUEST_BYTES} bytes)"}
    assert replies[1] == {"error": f"request nested too deeply (limit {MAX_DEPTH} levels)"}
    assert replies[2] == replies[1]
    assert replies[3].get("sas") == 0 and "half_open" in replies[3], replies[3]
    assert unhandled == [], unhandled
    assert "Traceback" not in log


def test_strings_with_brackets_are_not_nesting(tmp_path: Path) -> None:
    user = "[" * 200 + '\\"{' * 50  # a (silly) user name full of brackets and quotes
    replies, unhandled, _ = run_server(tmp_path, [
        json.dumps({"cmd": "logout", "user": user}).encode() + b"\n"])
    assert replies[0]["error"].startswith("no session of user"), replies[0]
    assert unhandled == []


def test_status_reports_the_loops_worst_delay(tmp_path: Path) -> None:
    """Issue 13: `status` carries LoopWatch's figures (the shell starts it in run())."""
    sock = tmp_path / "admin.sock"
    conc = Concentrator(parse_config(SHELL_CONFIG.format(sock=sock)), EventLog(out=io.StringIO()))

    async def main() -> dict[str, Any]:
        conc.loop_watch = LoopWatch(asyncio.get_running_loop(), interval=0.02)
        conc.loop_watch.start()
        server = await conc._start_admin()
        assert server is not None
        try:
            await asyncio.sleep(0.05)
            time.sleep(0.2)  # something holds the loop
            await asyncio.sleep(0.05)
            return await ask(sock, b'{"cmd": "status"}\n')
        finally:
            conc.loop_watch.stop()
            server.close()
            await server.wait_closed()

    reply = asyncio.run(main())
    assert reply["sessions"] == 0 and reply["sas"] == 0
    assert reply["loop_delay_max_ms"] >= 150 and reply["loop_delay_recent_max_ms"] >= 150
