"""One JSON request per line on a local unix socket (admin and status sockets).

The sockets are root-only, but a buggy script or a confused operator can
still send anything: a request that is too long or nested too deeply gets an
error answer like any other bad request, never an unhandled exception (the
server goes on serving the next connection).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

# asyncio's StreamReader limit (64 KiB): the longest line readline() returns.
MAX_REQUEST_BYTES = 65536
# Requests are flat ({"cmd": ..., "user": ...}); json.loads recurses once per
# level and raises RecursionError near 1,000 levels: refuse long before.
MAX_DEPTH = 32


class RequestError(ValueError):
    """A request that gets an error answer instead of being executed."""


def nesting_depth(line: bytes) -> int:
    """The deepest level of [ and { in a JSON text (outside strings)."""
    depth = deepest = 0
    in_string = escaped = False
    for b in line:
        if in_string:
            if escaped:
                escaped = False
            elif b == 0x5C:  # backslash
                escaped = True
            elif b == 0x22:  # "
                in_string = False
        elif b == 0x22:
            in_string = True
        elif b in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_DEPTH:  # no need to scan further
                return deepest
        elif b in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


def parse_request(line: bytes) -> dict[str, Any]:
    """The request object of one line; RequestError says what is wrong with it."""
    if len(line) > MAX_REQUEST_BYTES:
        raise RequestError(f"request too long (limit {MAX_REQUEST_BYTES} bytes)")
    if nesting_depth(line) > MAX_DEPTH:
        raise RequestError(f"request nested too deeply (limit {MAX_DEPTH} levels)")
    try:
        req = json.loads(line or b"{}")
    except (ValueError, RecursionError) as e:
        raise RequestError(f"bad request: {e}") from None
    if not isinstance(req, dict):
        raise RequestError("bad request: not a JSON object")
    return req


async def read_request(reader: asyncio.StreamReader, timeout: float) -> dict[str, Any]:
    """Read and parse one request line (TimeoutError if none comes in time)."""
    try:
        line = await asyncio.wait_for(reader.readline(), timeout)
    except ValueError:  # asyncio.LimitOverrunError is turned into ValueError by readline
        raise RequestError(f"request too long (limit {MAX_REQUEST_BYTES} bytes)") from None
    return parse_request(line)
