"""Inbound SPIs that say which data-plane worker owns their SA (issue 16).

With ``[dataplane] workers = N``, the kernel steers each inbound ESP datagram
on UDP 4500 (and on the Cisco IPsec-over-UDP port) to worker SPI mod N
(vpnhub/net/ikesplit.py). The SPI of an inbound SA is ours to choose: the
responder's SPI in Quick Mode is the one the peer will put on every packet it
sends us (RFC 2409 section 5.5, RFC 4303 section 2.1). Drawing it with
``spi % N == k`` therefore pins the SA to worker k with no table in the kernel.

SPIs 1..255 are reserved by IANA and 0 is never an SA's (RFC 4303 section
2.1): 0 is also the non-ESP marker on port 4500 (RFC 3948 section 2.2), so
a drawn SPI is always at least 256.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from vpnhub.crypto.randpool import random_bytes

MIN_SPI: Final = 256  # 1..255 reserved (RFC 4303 2.1); 0 is the non-ESP marker
MAX_SPI: Final = 0xFFFFFFFF


def random_u32() -> int:
    """A uniformly random 32-bit number from the OS's CSPRNG, drawn in blocks
    (vpnhub.crypto.randpool; SPIs should not be
    guessable: a blind attacker would otherwise know which ones to forge)."""
    return int.from_bytes(random_bytes(4), "big")


def spi_for_worker(worker: int, workers: int, draw: Callable[[], int] | None = None) -> int:
    """A random SPI >= 256 with ``spi % workers == worker``.

    `draw` returns random 32-bit numbers (default: ``random_u32``); the SPI is the
    drawn number moved down to the nearest one of the worker's residue, so each
    such SPI is (nearly) equally likely. A draw that lands below 256 is redrawn.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    if not 0 <= worker < workers:
        raise ValueError(f"worker {worker} is not one of 0..{workers - 1}")
    draw = draw or random_u32
    while True:
        x = draw() & MAX_SPI
        spi = x - x % workers + worker
        if MIN_SPI <= spi <= MAX_SPI:
            return spi


def worker_of_spi(spi: int, workers: int) -> int:
    """The worker the kernel steers inbound ESP with this SPI to (ikesplit's program)."""
    return spi % workers
