"""Fixtures of the manager tests.

- ``server``: a Manager around a fake concentrator on 127.0.0.1 (manager_fakes.py).
- ``browser``: Debian's Chromium (/usr/bin/chromium) driven headless by Playwright
  (the pip package; its own browser downloads are never used). Missing: skipped
  outside CI, failed in CI.
- ``artifacts``: artifacts/manager/ at the top of the repository (git-ignored),
  where the browser tests keep a screenshot of every page.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "concentrator"))  # vpnhub_harness (lab servers)

from manager_fakes import ManagerServer  # noqa: E402
from netns_util import require_tools, unavailable  # noqa: E402
from vpnhub_harness import vpnhub_serve_problem  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
# Chromium as root in a sandbox-less container, with nothing phoning home (the
# machine has no network but the package registries).
CHROMIUM_ARGS = [
    "--no-sandbox", "--headless", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-quic", "--no-first-run", "--disable-default-apps", "--disable-extensions",
    "--metrics-recording-only", "--mute-audio",
]
ARTIFACTS = HERE.parent.parent / "artifacts" / "manager"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ManagerServer]:
    srv = ManagerServer(tmp_path).start()
    yield srv
    srv.stop()


@pytest.fixture
def peer_tools() -> None:
    require_tools("vpnc", "nft", "conntrack", "stdbuf", "ss", "ping", "unshare")


@pytest.fixture
def vpnhub_available() -> None:
    problem = vpnhub_serve_problem()
    if problem:
        pytest.fail(problem, pytrace=False)


# Module scope, not session: the sync Playwright API keeps an asyncio loop marked as
# running in this thread until it stops, and every later test calling asyncio.run()
# would fail ("cannot be called from a running event loop").
@pytest.fixture(scope="module")
def playwright_chromium() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the playwright package is not installed (pip install -e '.[dev]')")
    if not CHROMIUM.exists():
        unavailable("Debian's chromium is not installed (scripts/setup installs it)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed lab test shows the tails of the lab's logs (the concentrator's first)."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when != "call" or not report.failed:
        return
    run_dir = getattr(item, "funcargs", {}).get("lab_run_dir")
    if not isinstance(run_dir, Path) or not run_dir.is_dir():
        return
    from vpnhub_harness import log_tail

    for path in sorted(run_dir.rglob("*.log"), key=lambda p: "serve" not in p.name):
        if path.suffix == ".log" and path.name != "vpnhub-events.log":
            report.sections.append((f"lab log {path.relative_to(run_dir)}", log_tail(path, 40)))
