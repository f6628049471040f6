"""Reuse of the responder's Diffie-Hellman value while a flood of first messages lasts.

Each first message costs the responder two modular exponentiations: its own
key pair and the shared secret (RFC 2409 section 5). Under a flood the key
pair is the half that can be saved: RFC 7296 section 2.12 lets a responder
reuse its DH value across exchanges "for efficiency" as long as each one is
used only for a limited time, since a reused exponent is forgotten later and
perfect forward secrecy covers the whole window instead of one SA. The shared
secret, the nonces and therefore every key still differ per SA. vpnhub reuses
one key pair per group for at most REUSE_SECONDS and only while the endpoint
sees a flood (see endpoint); otherwise every SA draws its own.
"""

from __future__ import annotations

from vpnhub.crypto.dh import DHKeyPair, dh_group

REUSE_SECONDS = 1.0
REUSE_MAX = 1000  # SAs per key pair, whatever the rate


class DhReuse:
    """One key pair per DH group, renewed every REUSE_SECONDS or REUSE_MAX uses."""

    def __init__(self, seconds: float = REUSE_SECONDS, max_uses: int = REUSE_MAX) -> None:
        self.seconds = seconds
        self.max_uses = max_uses
        self._pairs: dict[int, tuple[DHKeyPair, float, int]] = {}
        self.generated = 0

    def key_pair(self, group: int, now: float) -> DHKeyPair:
        held = self._pairs.get(group)
        if held is not None:
            kp, born, uses = held
            if now - born < self.seconds and uses < self.max_uses:
                self._pairs[group] = (kp, born, uses + 1)
                return kp
        kp = dh_group(group).generate()  # CryptoError for an unknown group, as before
        self.generated += 1
        self._pairs[group] = (kp, now, 1)
        return kp

    def forget(self) -> None:
        """The flood is over: no exponent outlives it."""
        self._pairs.clear()
