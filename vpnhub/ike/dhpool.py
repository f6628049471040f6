"""Diffie-Hellman key pairs computed ahead, in idle time, each handed out once.

A responder's first message costs two modular exponentiations (RFC 2409
section 5): its own g^x and the shared g^xy. g^x does not depend on the peer,
so it can be computed before the peer asks, while the loop has nothing else to
do; a burst of logins then pays only g^xy on the spot. The shell has its DH
worker thread call `fill(count)` between jobs (net.dhworker: gmpy2's powmod lets
go of the GIL there, so the pairs are made on the other core; while logins
arrive only below LOW_WATER, `refill_now`), or, without
gmpy2, calls it when its loop is idle (one pair per call by default: about
0.5 ms for group 14 with pow(), ~0.1 ms with gmpy2, so no call holds the loop
long); the endpoint
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
0.5 KiB each for group 14, tracemalloc), and only configured groups are filled.

Sizing (`default_size`): a login storm (every client of a cluster member that
failed, or of a site whose power came back, reconnecting at once) should find
a pair ready for each of its first messages, so the default is the size of
such a storm, STORM_PAIRS, bounded by what the DH worker thread can make in
about FILL_BUDGET seconds: the pool is filled at start-up and after each storm
while the concentrator is idle, and a group whose pairs cost milliseconds
(MODP 15, 16) gets fewer of them. The figures per group are in DEFAULT_SIZES
and docs/CONFIG.md (`dh_pool_size`, the operator's override).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping

from vpnhub.crypto.dh import DHKeyPair, dh_group

# A login storm's first messages that find a pair ready by default (per group).
STORM_PAIRS = 2048
# Seconds of the DH worker thread a group's default pool may take to fill (with gmpy2).
FILL_BUDGET = 1.0
# Pairs per group by default: STORM_PAIRS, or what FILL_BUDGET makes when a pair costs
# more than FILL_BUDGET / STORM_PAIRS (~0.5 ms). Cost per pair with gmpy2 (the 2-core
# lab machine, 2026-12-05; g^x from the group's fixed-base table, crypto.fixedbase, in
# brackets the powmod it replaced) and memory (tracemalloc):
#   MODP 1: 0.03 ms (0.06); 2: 0.04 ms (0.10), 0.35 KiB; 5: 0.05 ms (0.19);
#   14: 0.09 ms (0.38), 0.47 KiB; 15: 0.25 ms (1.05), 0.61 KiB; 16: 0.42 ms (2.0), 0.75 KiB;
#   ECP 19: 0.03 ms, 0.26 KiB; 20: 0.22 ms, 0.28 KiB; 21: 0.19 ms, 0.31 KiB;
# plus, once per MODP group in use, its table: ~0.3 MiB for group 14, 0.15-0.3 MiB for
# the others. So group 14: 2048 pairs, ~0.2 s, ~0.9 MiB; 15: 1024, ~0.25 s; 16: 512,
# ~0.2 s. (With the table 15 and 16 would fit STORM_PAIRS in FILL_BUDGET as well; their
# sizes date from powmod.)
DEFAULT_SIZES = {1: STORM_PAIRS, 2: STORM_PAIRS, 5: STORM_PAIRS, 14: STORM_PAIRS,
                 15: 1024, 16: 512, 19: STORM_PAIRS, 20: STORM_PAIRS, 21: STORM_PAIRS}
# A group not in the table (none today: crypto.dh knows no other) gets the old default.
DEFAULT_SIZE = 256
# While logins arrive (`DhPool.busy`) a group is refilled only below this share of its
# size: a storm takes pairs made in idle time and the DH thread's core stays with the
# storm (a refill beside it cost the concentrator ~0.4 ms per tunnel more, group 14,
# bench/handshake.py 2026-12-05), while a steady stream longer than the pool is
# refilled between the thread's g^xy jobs before the pool runs dry.
LOW_WATER = 0.25
# Pairs one `fill()` computes by default: one pair holds the loop ~0.1 ms for
# group 14, ~0.25 ms for group 15, ~0.1 ms for ECP 19 (gmpy2; with pow() and the
# fixed-base table, crypto.fixedbase, ~0.5 ms for group 14, ~1.5 ms for group 15).
FILL_STEP = 1


def default_size(group: int, max_sessions: int | None = None, per_tunnel: int = 1) -> int:
    """Pairs of `group` a pool keeps by default: DEFAULT_SIZES, but never more than
    `max_sessions` tunnels can take (`per_tunnel` pairs each: 2 with Quick Mode PFS,
    RFC 2409 5.5), since a storm larger than the session limit is refused anyway."""
    size = DEFAULT_SIZES.get(group, DEFAULT_SIZE)
    if max_sessions is not None:
        size = min(size, max_sessions * max(1, per_tunnel))
    return size


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
        # Set by the endpoint at each first message (with its time), cleared by the shell
        # once no first message came for 50 ms: the pool is meanwhile refilled only
        # below LOW_WATER (`refill_now`), the rest in idle time. First messages, not
        # any IKE message: with 10,000 sessions DPD and rekeys never leave IKE quiet
        # for 50 ms, and the pool would stay at LOW_WATER after the first storm.
        self.busy = False
        self.last_first_message = float("-inf")

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

    def refill_now(self) -> bool:
        """Should a thread that keeps the pool full (net.dhworker) make a pair now? Not
        under a flood; while logins arrive only for a group below LOW_WATER; else
        whenever one is missing (idle time)."""
        if self.refill_paused or not self.wanted():
            return False
        return not self.busy or any(len(p) < self.sizes[g] * LOW_WATER
                                    for g, p in self._pairs.items())

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

    def ready(self, group: int) -> int:
        """Pairs of `group` ready now (0 for a group not pooled)."""
        pairs = self._pairs.get(group)
        return len(pairs) if pairs is not None else 0

    def full(self) -> bool:
        return self.wanted() == 0

    def stats(self) -> dict[str, object]:
        """The admin `stats` answer's `dh_pool` (docs/MANAGER.md): totals, and per
        group (keys are strings: the answer is JSON) its ready pairs and its size."""
        return {"ready": len(self), "size": sum(self.sizes.values()), "full": self.full(),
                "taken": self.taken, "missed": self.missed, "generated": self.generated,
                "refill_paused": self.refill_paused, "busy": self.busy,
                "groups": {str(g): {"ready": len(p), "size": self.sizes[g]}
                           for g, p in sorted(self._pairs.items())}}
