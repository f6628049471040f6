"""Shared pytest set-up.

Marker ``netns`` (declared in pyproject.toml): the test builds network
namespaces and runs real peers. It is skipped, with the reason, only when not
root or ``ip netns`` is unavailable; with ``CI=true`` it fails instead, so CI
(which runs as root) can never pass by skipping them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from netns_util import (
    TEST_PREFIX_BASE,
    assert_nothing_left,
    netns_problem,
    unavailable,
    unique_prefix,
)

from vpnhub.lab.topology import cleanup, reap_orphaned_labs


def pytest_sessionstart(session: pytest.Session) -> None:
    # test labs of killed earlier runs (their prefixes are random, so no later
    # run would reuse and clean them); labs of live sessions are left alone
    if netns_problem() is None:
        reap_orphaned_labs(TEST_PREFIX_BASE)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("netns") is None:
        return
    problem = netns_problem()
    if problem is not None:
        unavailable(problem)


@pytest.fixture
def lab_prefix() -> Iterator[str]:
    """A fresh lab prefix; after the test nothing of that lab may remain."""
    prefix = unique_prefix()
    yield prefix
    try:
        assert_nothing_left(prefix)
    except AssertionError:
        cleanup(prefix)  # do not leak into the next tests, but report it
        raise


@pytest.fixture
def lab_run_dir(tmp_path: Path) -> Path:
    """Run directory for lab logs (kept by pytest for post-mortems)."""
    d = tmp_path / "lab"
    d.mkdir()
    return d
