"""The netns marker policy: skip with a reason locally, fail in CI."""

from __future__ import annotations

import os
from collections.abc import Iterator

import netns_util
import pytest


@pytest.fixture
def not_root(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    netns_util.netns_problem.cache_clear()
    yield
    netns_util.netns_problem.cache_clear()


@pytest.mark.usefixtures("not_root")
def test_not_root_is_a_problem() -> None:
    assert netns_util.netns_problem() == "needs root (network namespaces, nft, TUN)"


def test_missing_prerequisite_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no netns here"):
        netns_util.unavailable("no netns here")


@pytest.mark.parametrize("value", ["true", "TRUE", "1", "yes"])
def test_missing_prerequisite_fails_in_ci(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match=r"cannot run in CI .*no netns here"):
        netns_util.unavailable("no netns here")


def test_unique_prefixes_are_valid_and_distinct() -> None:
    from vpnhub.lab.topology import PREFIX_RE

    prefixes = {netns_util.unique_prefix() for _ in range(50)}
    assert len(prefixes) > 45
    assert all(PREFIX_RE.match(p) for p in prefixes)
