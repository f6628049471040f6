"""Interrupt moderation for the data-plane loop (issue 16), sans-I/O.

After a wake-up that found only a few packets, in the middle of a stream of
them, the loop waits before its next epoll so that the next wake-up finds more
(as a NIC's interrupt coalescing does): each wake-up costs an epoll, a receive,
a TUN write and its pass through the host's stack whatever it carries.
``Moderation`` decides when from the packet counts and the epoll's sleep the
loop (``Dataplane._run_moderated``) passes in; ``moderation_limit`` is how long
a data-plane worker waits. Neither reads a clock.
"""

from __future__ import annotations

from typing import Final

MODERATION_STREAK: Final = 4  # busy wake-ups in a row before the loop waits
MODERATION_GAP: Final = 0.0005  # an epoll that slept longer than this ends a streak
MODERATION_BATCH: Final = 24  # packets in a wake-up from which waiting gains nothing
MODERATION_MAX: Final = 0.001  # a worker's longest wait: above 1 ms a wait is a delay


class Moderation:
    """When the loop should wait before its next epoll (interrupt moderation, issue 16).

    Wait after a wake-up that found some packets but fewer than MODERATION_BATCH,
    if it is the MODERATION_STREAK-th in a row to find packets after an epoll that
    slept at most MODERATION_GAP: a sustained stream whose batches stay small. A
    lone packet, or a request and its answer (a ping), never waits; nor does a
    loop whose batches are already large (under load the wait gains nothing).
    """

    __slots__ = ("streak",)

    def __init__(self) -> None:
        self.streak = 0  # busy wake-ups in a row, each after a short epoll

    def after(self, took: int, slept: float) -> bool:
        """A wake-up handled ``took`` packets after ``slept`` s in epoll: wait now?"""
        if not took or slept > MODERATION_GAP:
            self.streak = 1 if took else 0
            return False
        self.streak += 1
        return self.streak >= MODERATION_STREAK and took < MODERATION_BATCH


def moderation_limit(moderation: float, workers: int) -> float:
    """The wait of each of `workers` data-plane loops, s, for ``[dataplane]
    moderation_us`` = `moderation` s: that is the wait of one loop that sees all the
    traffic; each of N workers sees about 1/N of it, so it waits N times as long for
    the same batch, up to MODERATION_MAX (or `moderation` itself, if larger).

    With one fixed wait, 2 workers cost 27 % more CPU per packet than 1 at 200 us and
    15 % less at 400 us each (bench/results/2026-12-05-night-alone.md): the batches,
    not a shared lock, socket or queue, made the difference.
    """
    if moderation <= 0.0:
        return 0.0
    return min(moderation * max(1, workers), max(moderation, MODERATION_MAX))
