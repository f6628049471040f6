"""A wrapper that keeps secrets (PSKs, passwords) out of logs and reprs."""

from __future__ import annotations

import hmac


class Secret:
    """Holds secret bytes; `repr()`/`str()` never show them."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes | str) -> None:
        self._value = value.encode() if isinstance(value, str) else bytes(value)

    def reveal(self) -> bytes:
        return self._value

    def reveal_str(self) -> str:
        return self._value.decode("utf-8", "replace")

    def equals(self, other: Secret | bytes | str) -> bool:
        """Constant-time comparison (no early exit on the first wrong byte)."""
        theirs = other.reveal() if isinstance(other, Secret) else Secret(other).reveal()
        return hmac.compare_digest(self._value, theirs)

    def __repr__(self) -> str:
        return "Secret(<hidden>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secret):
            return self.equals(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(("Secret", len(self._value)))
