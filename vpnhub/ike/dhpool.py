"""Diffie-Hellman key pairs computed ahead, in idle time, each handed out once.

A responder's first message costs two modular exponentiations (RFC 2409
section 5): its own g^x and the shared g^xy. g^x does not depend on the peer,
so it can be computed before the peer asks, while the loop has nothing else to
do; a burst of logins then pays only g^xy on the spot. The shell has its DH
worker thread call `fill(count)` between jobs (net.dhworker: gmpy2's powmod lets
go of the GIL there, so the pairs are made on the other core), or, without
gmpy2, calls it when its loop is idle (one pair per call by default: about
0.4 ms for group 14, so no call holds the loop long); the endpoint
calls `take(group)` for each new SA; None means the pool is empty and the SA
draws its own pair as before. Quick Mode with PFS takes its g^x from the same
pool (RFC 2409 section 5.5: a fresh exchange, never phase 1's pair).

Each pair leaves the pool exactly once (`take` pops it) and is never put back,
so unlike `ike.dhreuse` no two SAs ever share an exponent: perfect forward
secrecy stays per SA (RFC 2409 section 3.3). Computing g^x early changes
nothing there: forward secrecy is about forgetting x after use (the SA drops
it once SKEYID is computed), not about when x was drawn. RFC 7296 section 2.12
likewise allows precomputed values as long as each is used once.

The pool does not replace `ike.dhreuse`: under a sustained flood of first
messages the loop is never idle, the pool empties within a fraction of a
second and stays empty, and only reuse (RFC 7296 section 2.12's "for
efficiency", for at most a second) still halves the work per first message.
The endpoint takes from the pool first and falls back to reuse under a flood.

Memory is bounded: at most `sizes[group]` pairs per configured group (about
0.3 KiB each for group 14), and only configured groups are filled.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping

from vpnhub.crypto.dh import DHKeyPair, dh_group

# Pairs per configured group: a burst of logins this large pays one
# exponentiation per SA instead of two; about 100 ms of idle time to refill
# for group 14 (0.4 ms a pair with gmpy2).
DEFAULT_SIZE = 256
# Pairs one `fill()` computes by default: one exponentiation holds the loop
# ~0.4 ms for group 14, ~3.5 ms for group 15, ~0.1 ms for ECP 19 (gmpy2).
FILL_STEP = 1


class DhPool:
    """Fresh key pairs per DH group, bounded; `take` never returns a pair twice."""

    def __init__(self, sizes: Mapping[int, int]) -> None:
        for group, size in sizes.items():
            dh_group(group)  # UnsupportedAlgorithm now, not at the first fill
            if size < 0:
                raise ValueError(f"DH pool size for group {group} is negative")
        self.sizes = dict(sizes)
        self._pairs: dict[int, deque[DHKeyPair]] = {g: deque() for g in self.sizes}
        self.taken = 0  # SAs served from the pool
        self.missed = 0  # SAs that found it empty (or their group not pooled)
        self.generated = 0
        # Set by the endpoint while first messages come in a flood (mostly spoofed):
        # a thread that keeps the pool full between jobs (net.dhworker) must not
        # then compute a g^x for every spoofed message, a core's worth; the pool
        # drains and the endpoint's brief reuse (ike.dhreuse) takes over, as when the
        # loop filled it only when idle. Cleared by the next first message outside a
        # flood, or by the shell once IKE has been quiet.
        self.refill_paused = False

    def take(self, group: int) -> DHKeyPair | None:
        """A pair of `group` that nobody else gets; None when there is none ready."""
        pairs = self._pairs.get(group)
        if not pairs:
            self.missed += 1
            return None
        self.taken += 1
        return pairs.popleft()

    def discard(self) -> int:
        """Forget every ready pair (returns how many); `fill` makes new ones.

        After a burst of first messages the pairs made during it lie between the
        burst's SAs; made again after the trim they lie together (concentrator.memory,
        docs/reliability/ike-dos.md). The exponents are simply dropped: no SA ever
        saw them."""
        dropped = 0
        for pairs in self._pairs.values():
            dropped += len(pairs)
            pairs.clear()
        return dropped

    def wanted(self) -> int:
        """Pairs missing before every group is full: 0 means `fill` has nothing to do
        (`refill_paused` is for the caller to heed: an idle-time `fill` still fills)."""
        return sum(self.sizes[g] - len(p) for g, p in self._pairs.items())

    def fill(self, count: int = FILL_STEP,
             make: Callable[[int], DHKeyPair] | None = None) -> int:
        """Compute up to `count` pairs, emptiest group first; returns how many. `make`
        (group -> pair) replaces the group's own `generate` (the load generator's)."""
        made = 0
        while made < count:
            group = self._emptiest()
            if group is None:
                break
            self._pairs[group].append(make(group) if make else dh_group(group).generate())
            self.generated += 1
            made += 1
        return made

    def _emptiest(self) -> int | None:
        best: int | None = None
        best_room = 0.0
        for group, pairs in self._pairs.items():
            size = self.sizes[group]
            if len(pairs) >= size:
                continue
            room = 1.0 - len(pairs) / size
            if room > best_room:
                best, best_room = group, room
        return best

    def __len__(self) -> int:
        return sum(len(p) for p in self._pairs.values())

    def stats(self) -> dict[str, int]:
        return {"ready": len(self), "taken": self.taken, "missed": self.missed,
                "generated": self.generated}
