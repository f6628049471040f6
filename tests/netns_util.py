"""Helpers for tests that build lab networks in namespaces (marker ``netns``).

Prerequisites are checked once: root, ``ip netns`` usable. Tests that need
more (vpnc, charon, ...) call ``require_tools``. Outside CI a missing
prerequisite skips the test with the reason; in CI (``CI=true``) it fails,
so that the namespace tests can never be skipped silently there.
"""

from __future__ import annotations

import functools
import os
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import NoReturn

import pytest

from vpnhub.lab import procs, topology

TEST_PREFIX_BASE = "vht"  # test labs: vht + 5 hex digits; the lab itself uses "vhl"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


@functools.cache
def netns_problem() -> str | None:
    """Why namespace tests cannot run here, or None if they can."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, nft, TUN)"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    try:
        cp = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"'ip netns list' failed: {e}"
    if cp.returncode != 0:
        return f"'ip netns' is unavailable: {cp.stderr.strip()}"
    return None


def unavailable(reason: str) -> NoReturn:
    """Skip the test, or fail it when running in CI."""
    if in_ci():
        pytest.fail(f"netns test cannot run in CI (CI=true): {reason}", pytrace=False)
    pytest.skip(reason)


def require_tools(*tools: str) -> None:
    """Each tool is a command name or an absolute path of an executable."""
    missing = [
        t for t in tools
        if (not os.access(t, os.X_OK) if t.startswith("/") else shutil.which(t) is None)
    ]
    if missing:
        unavailable(f"missing {', '.join(missing)} (run scripts/setup as root)")
    if not Path("/dev/net/tun").exists():
        unavailable("/dev/net/tun is missing")


def unique_prefix(base: str = TEST_PREFIX_BASE) -> str:
    """A lab prefix no other test run or lab uses: base + 5 random hex digits."""
    return f"{base}{secrets.token_hex(3)[:5]}"


def assert_nothing_left(prefix: str, pids: tuple[int, ...] = ()) -> None:
    """No namespace, link, recorded process or given PID of lab `prefix` remains."""
    left = topology.leftovers(prefix)
    left += [f"process {pid}" for pid in pids if procs.is_running(pid)]
    assert not left, f"lab {prefix} left behind: {left}"
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert prefix + "-" not in netns
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert f": {prefix}" not in links
    assert not procs.state_dir(prefix).exists()
