"""Random bytes for the IKE engine from the kernel's CSPRNG, drawn in blocks (issue 13).

Each handshake draws about ten small random values: cookies (RFC 2408 2.5.3),
nonces (RFC 2409 5), message IDs (RFC 2408 3.1), the DPD sequence
(RFC 3706 7) and SPIs (RFC 4303 2.1). One ``os.urandom`` call each cost
1.6-2.7 us on the project machine (a ``getrandom`` system call, more under
load: 4 % of the concentrator loop's samples in a handshake storm); a block
taken from a deque filled 4 KiB at a time costs 0.7 us.

The bytes are the kernel's, unchanged: the pool only moves the system call
out of the hot path. It is safe for several threads without a lock: a block
leaves the pool in one ``deque.popleft()``, atomic under the GIL, so no two
callers ever get the same block (a race on the refill only adds fresh blocks).
A forked child starts with an empty pool (``os.register_at_fork``), so the
parent and a data-plane worker process never hand out the same bytes.
"""

from __future__ import annotations

import os
from collections import deque
from typing import Final

BLOCK: Final = 32  # the largest value drawn per handshake: a phase 1 nonce
REFILL: Final = 4096  # bytes per system call


class RandomPool:
    """``take(n)``: n bytes from the kernel's CSPRNG, as ``os.urandom(n)``."""

    __slots__ = ("_blocks",)

    def __init__(self) -> None:
        self._blocks: deque[bytes] = deque()

    def take(self, n: int) -> bytes:
        if n > BLOCK:
            return os.urandom(n)
        try:
            block = self._blocks.popleft()
        except IndexError:
            block = self._refill()
        return block if n == BLOCK else block[:n]

    def reset(self) -> None:
        """Forget every buffered block (after a fork: the parent may draw them too)."""
        self._blocks.clear()

    def buffered(self) -> int:
        """Blocks ready to hand out (for tests)."""
        return len(self._blocks)

    def _refill(self) -> bytes:
        buf = os.urandom(REFILL)
        blocks = [buf[i:i + BLOCK] for i in range(0, REFILL, BLOCK)]
        self._blocks.extend(blocks[1:])  # one C call: no other thread sees a half list
        return blocks[0]


POOL: Final = RandomPool()
# the engine's default `rng` (vpnhub.ike.state.IkeConfig)
random_bytes: Final = POOL.take

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=POOL.reset)
