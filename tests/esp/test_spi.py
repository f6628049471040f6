"""Inbound SPIs drawn for a data-plane worker (issue 16): spi % workers == worker."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from vpnhub.esp.spi import MAX_SPI, MIN_SPI, spi_for_worker, worker_of_spi


@pytest.mark.parametrize("workers", [1, 2, 3, 4, 7])
def test_every_spi_belongs_to_its_worker_and_is_outside_the_reserved_range(
        workers: int) -> None:
    for worker in range(workers):
        for _ in range(200):
            spi = spi_for_worker(worker, workers)
            assert MIN_SPI <= spi <= MAX_SPI
            assert spi % workers == worker == worker_of_spi(spi, workers)


def test_spis_are_spread_over_the_whole_space() -> None:
    """Uniform draws give SPIs in every sixteenth of the 32-bit space, all distinct."""
    spis = [spi_for_worker(1, 3) for _ in range(2000)]
    assert len(set(spis)) == len(spis)
    buckets = Counter(spi >> 28 for spi in spis)
    assert len(buckets) == 16 and min(buckets.values()) > 2000 / 16 / 2


def _draws(*values: int) -> Iterator[int]:
    yield from values


def test_draws_in_the_reserved_range_or_past_the_top_are_drawn_again() -> None:
    draws = _draws(0, 5, 250, MAX_SPI, 1000)
    # 0, 5, 250 land below 256; MAX_SPI moved to residue 2 of 3 would pass 2**32 - 1
    # (2**32 - 1 is divisible by 3), 1000 gives 999 + 2 = 1001
    assert spi_for_worker(2, 3, lambda: next(draws)) == 1001
    assert spi_for_worker(0, 1, lambda: 256) == 256
    assert spi_for_worker(1, 2, lambda: 256) == 257


@pytest.mark.parametrize(("worker", "workers"), [(0, 0), (2, 2), (-1, 3)])
def test_a_worker_outside_the_pool_is_an_error(worker: int, workers: int) -> None:
    with pytest.raises(ValueError):
        spi_for_worker(worker, workers)
