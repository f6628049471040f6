"""Anti-replay window (RFC 4303 3.4.3) kept as a ring of 64-bit blocks (RFC 6479).

The window remembers the highest authenticated sequence number ``top`` and one
bit for each of the ``size`` numbers up to it.  Bits live in ``size // 64 + 1``
blocks used as a ring: when ``top`` moves forward only the blocks it enters are
cleared, so advancing costs O(blocks crossed) instead of shifting the whole
bitmap, and the spare block lets the ring slide one block at a time without
losing bits still inside the window (RFC 6479 section 2).

Usage (RFC 4303 3.4.3): ``check(seq)`` before the ICV is verified, so that
replays are dropped cheaply, and ``update(seq)`` only once the packet is
authentic; otherwise a forged packet could move the window.
"""

from __future__ import annotations

_BLOCK_BITS = 64
_SEQ_MAX = 0xFFFFFFFF


class ReplayWindow:
    """RFC 6479 style sliding window for 32-bit ESP sequence numbers."""

    __slots__ = ("_blocks", "_nblocks", "size", "top")

    def __init__(self, size: int = 1024) -> None:
        if size < _BLOCK_BITS or size % _BLOCK_BITS:
            raise ValueError("replay window size must be a positive multiple of 64")
        self.size = size
        self._nblocks = size // _BLOCK_BITS + 1
        self._blocks = [0] * self._nblocks
        self.top = 0  # highest sequence number accepted so far (0: none yet)

    def check(self, seq: int) -> bool:
        """True if ``seq`` is new and inside (or right of) the window."""
        top = self.top
        if seq > top:
            return 0 < seq <= _SEQ_MAX
        if seq == 0 or top - seq >= self.size:
            return False  # seq 0 is never sent (RFC 4303 3.3.3); too old to tell
        block = self._blocks[(seq >> 6) % self._nblocks]
        return not (block >> (seq & 63)) & 1

    def update(self, seq: int) -> None:
        """Mark ``seq`` as received; call only after its ICV was verified."""
        top = self.top
        blocks = self._blocks
        nblocks = self._nblocks
        if seq > top:
            cur = top >> 6
            new = seq >> 6
            if new != cur:
                # Clear the blocks the window slides into (all when it jumps far).
                if new - cur >= nblocks:
                    blocks[:] = [0] * nblocks
                else:
                    for i in range(cur + 1, new + 1):
                        blocks[i % nblocks] = 0
            self.top = seq
        elif seq == 0 or top - seq >= self.size:
            return
        blocks[(seq >> 6) % nblocks] |= 1 << (seq & 63)

    def check_and_update(self, seq: int) -> bool:
        """Both steps at once, for callers that authenticated ``seq`` already."""
        if not self.check(seq):
            return False
        self.update(seq)
        return True
