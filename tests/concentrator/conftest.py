"""Fixtures of the vpnhub concentrator interop tests (marker ``netns``).

- ``vpnhub``: a factory ``vpnhub(topo, **ServerOptions fields)`` that writes
  the TOML configuration into the lab's run directory, starts
  ``python -m vpnhub serve --config FILE`` in the concentrator namespace and
  returns once UDP 500 (and 4500 with NAT-T) is bound and the admin socket
  exists (a ``VpnhubServer``: log, ``sessions()``, ``logout()``, SIGTERM).
  It fails the test at once, naming the reason, while ``vpnhub serve`` does
  not exist yet.
- ``peer_tools``: the real peers and tools are installed (else skip, or fail in CI).
- On failure the tails of every log of the lab's run directory (vpnhub,
  vpnc, charon, iperf3) are attached to the report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from netns_util import require_tools
from vpnhub_harness import (
    ServerOptions,
    VpnhubServer,
    log_tail,
    start_vpnhub,
    vpnhub_serve_problem,
)

from vpnhub.lab.peers import CHARON
from vpnhub.lab.topology import Topology

TOOLS = ("vpnc", "iperf3", "nft", "conntrack", "stdbuf", "ss", "ping", "unshare",
         "swanctl", CHARON, "ike-scan")
LOG_SUFFIXES = (".log", ".json", ".stdout")


@pytest.fixture
def peer_tools() -> None:
    require_tools(*TOOLS)


@pytest.fixture
def vpnhub_available() -> None:
    """Fail (not skip) when the concentrator cannot run: it is what these tests test."""
    problem = vpnhub_serve_problem()
    if problem:
        pytest.fail(problem, pytrace=False)


@pytest.fixture
def vpnhub(vpnhub_available: None) -> Iterator[Callable[..., VpnhubServer]]:
    """Factory: vpnhub(topo, natt=..., legacy=..., pool=...) -> a running VpnhubServer."""
    started: list[VpnhubServer] = []

    def start(topo: Topology, **options: Any) -> VpnhubServer:
        server = start_vpnhub(topo, ServerOptions(**options))
        started.append(server)
        return server

    yield start
    for server in started:  # normally already stopped by Topology.down()
        if server.proc.alive():
            server.terminate(5.0)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when != "call" or not report.failed:
        return
    run_dir = getattr(item, "funcargs", {}).get("lab_run_dir")
    if not isinstance(run_dir, Path) or not run_dir.is_dir():
        return
    logs = sorted(p for p in run_dir.rglob("*") if p.is_file() and p.suffix in LOG_SUFFIXES)
    for path in logs:
        report.sections.append((f"lab log {path.relative_to(run_dir)}", log_tail(path, 40)))
