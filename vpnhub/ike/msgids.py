"""The message IDs an IKE SA used last, in one fixed buffer (issue 13).

A new exchange must not reuse a message ID still in use or recently used
(RFC 2408 section 3.1: the Message ID identifies the exchange; DPD, RFC 3706
section 5, and the other informational exchanges take a fresh one each). The
SA keeps the last ``size`` of them. With DPD every 30 s the window fills
within the hour on every SA, so its form is per-session memory: an
``OrderedDict`` of 64 ints was ~7.3 KiB per SA once full (a dict slot, a list
node and an int object per entry); this ring is one ``bytearray`` of 4-byte
slots (~0.4 KiB), filled in order, the oldest overwritten. A lookup is one
``find`` of 4 bytes in 256 (C, well under a microsecond).
"""

from __future__ import annotations

WINDOW = 64  # message IDs kept per SA
_SLOT = 4  # a message ID is 4 octets (RFC 2408 3.1)


class MessageIdWindow:
    """The last `size` distinct message IDs added (0 is never one: RFC 2408 3.1 gives
    it to phase 1, so an unused slot holds 0)."""

    __slots__ = ("_buf", "_count", "_next", "size")

    def __init__(self, size: int = WINDOW) -> None:
        self.size = size
        self._buf: bytearray | None = None  # allocated by the first add
        self._next = 0
        self._count = 0

    def add(self, mid: int) -> None:
        if mid == 0:
            return
        needle = mid.to_bytes(_SLOT, "big")  # OverflowError beyond 4 octets, as before
        if self._buf is None:
            self._buf = bytearray(_SLOT * self.size)
        elif self._find(needle):  # already in the window (as a dict key it was)
            return
        at = self._next * _SLOT
        self._buf[at:at + _SLOT] = needle
        self._next = (self._next + 1) % self.size
        self._count = min(self.size, self._count + 1)

    def __contains__(self, mid: object) -> bool:
        if self._buf is None or not isinstance(mid, int) or not 0 < mid < 1 << 32:
            return False
        return self._find(mid.to_bytes(_SLOT, "big"))

    def _find(self, needle: bytes) -> bool:
        """Whether a slot holds these 4 octets (the buffer exists)."""
        assert self._buf is not None
        at = self._buf.find(needle)
        while at >= 0 and at % _SLOT:  # a match across two slots is no match
            at = self._buf.find(needle, at + 1)
        return at >= 0

    def __len__(self) -> int:
        return self._count
