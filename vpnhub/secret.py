"""The one `Secret`: PSKs and passwords, kept out of logs, reprs and error messages.

A leaf module (it imports nothing of vpnhub) so that the configuration, the
IKE engine, the client and the concentrator share one class: a PSK read from
the configuration is the same object the IKE engine uses, with no conversion.
"""

from __future__ import annotations

import hmac


class Secret:
    """Secret bytes. `repr()` and `str()` never show them; `reveal()` does."""

    __slots__ = ("_value",)

    def __init__(self, value: str | bytes) -> None:
        self._value = value.encode("utf-8") if isinstance(value, str) else bytes(value)

    def reveal(self) -> bytes:
        return self._value

    def reveal_str(self) -> str:
        return self._value.decode("utf-8", "replace")

    def equals(self, other: Secret | str | bytes) -> bool:
        """Constant-time comparison (hmac.compare_digest: no early exit on the
        first wrong byte, so the time taken does not tell how much matched)."""
        theirs = other._value if isinstance(other, Secret) else Secret(other)._value
        return hmac.compare_digest(self._value, theirs)

    def __repr__(self) -> str:
        return "Secret(<hidden>)"

    def __str__(self) -> str:
        return "<hidden>"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secret):
            return self.equals(other)
        return NotImplemented

    def __hash__(self) -> int:
        # Equal secrets have equal lengths; the length is all we let out.
        return hash(("Secret", len(self._value)))

    def __len__(self) -> int:
        return len(self._value)
