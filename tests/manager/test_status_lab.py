"""The Status page, the refresh state and Logout in Chromium against the real lab (issue 15).

A running lab (two vpnc clients behind one PAT, `vpnhub serve` as in
test_manager_lab.py) and Debian's Chromium driven by Playwright:

- Monitoring | Status draws its charts from the concentrator's counters: the
  sessions series reaches 2, the throughput and handshake charts have points;
- when the manager stops answering (Playwright aborts its requests) the page
  says "Not updated since ..."; when it answers again, "Last updated ...";
- Logout asks (the dialog: dismissed, nothing happens; accepted), shows its
  busy state and its result, the row goes and the client's tunnel ends (vpnc
  exits on the DELETE, its TUN goes).

Screenshots at 1400 px and 390 px wide: artifacts/manager/ (git-ignored),
files status-*.png and logout-*.png.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from netns_forward import NetnsForwarder
from test_manager_lab import ADMIN, ADMIN_PASSWORD, DH, start_server

from vpnhub.lab.peers import VpncClient, start_vpnc
from vpnhub.lab.topology import LAN_HOST, Topology, wait_until
from vpnhub.manager.statushistory import STATUS_EVERY

pytestmark = pytest.mark.netns

WIDTHS = (1400, 390)


def test_status_page_refresh_state_and_logout(lab_prefix: str, lab_run_dir: Path,
                                              peer_tools: None, vpnhub_available: None,
                                              playwright_chromium: Any,
                                              artifacts: Path) -> None:
    from playwright.sync_api import expect

    with Topology(lab_prefix, clients=2, run_dir=lab_run_dir) as topo:
        server = start_server(topo)
        fwd = NetnsForwarder(topo.conc.netns)
        c1, c2 = topo.clients
        v1 = start_vpnc(topo, c1, dh=DH)
        v2 = start_vpnc(topo, c2, dh=DH)
        context = playwright_chromium.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        page.set_default_timeout(15_000)
        try:
            v1.wait_usable(20)
            v2.wait_usable(20)
            topo.ping(c1, LAN_HOST, interface=c1.tun, count=10, interval=0.1)
            base = fwd.url
            page.goto(f"{base}/status")
            page.fill("input[name=username]", ADMIN)
            page.fill("input[name=password]", ADMIN_PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}/status")
            _charts(page, artifacts, expect)
            _stale_and_back(page, base, artifacts, expect)
            _logout(page, base, topo, v1, v2, artifacts, expect)
        finally:
            context.close()
            v1.stop()
            v2.stop()
            fwd.close()
            server.terminate()


def _shots(page: Any, artifacts: Path, name: str) -> None:
    """The page at both widths (the viewport's height kept), back to 1400 px."""
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(200)  # the charts are drawn at the viewBox's scale
        page.screenshot(path=str(artifacts / f"{name}-{width}.png"), full_page=True)
    page.set_viewport_size({"width": WIDTHS[0], "height": 900})


def _charts(page: Any, artifacts: Path, expect: Any) -> None:
    # the menu: Status, no raw "Metrics"; the page links /metrics for machines
    expect(page.locator("header nav a.active")).to_have_text("Status")
    assert page.locator("header nav a[href='/metrics']").count() == 0
    assert page.locator("#metrics-link").get_attribute("href") == "/metrics"
    # one sample every STATUS_EVERY s; a rate needs two with both sessions up
    sessions = page.locator('#chart-sessions polyline[data-series="sessions"]')
    page.wait_for_function(
        "() => { const l = document.querySelector("
        "'#chart-sessions polyline[data-series=\"sessions\"]');"
        " return l && l.dataset.max === '2' && l.dataset.last === '2'; }",
        timeout=int(4 * STATUS_EVERY * 1000))
    assert int(sessions.get_attribute("data-points") or 0) >= 1
    rx = page.locator('#chart-throughput polyline[data-series="rx_bps"]')
    rx.wait_for(timeout=int(3 * STATUS_EVERY * 1000))
    assert int(rx.get_attribute("data-points") or 0) >= 1
    hs = page.locator('#chart-handshakes polyline[data-series="handshakes_per_s"]')
    assert hs.count() == 1
    # the exact values on hover: the line's title
    assert "sessions: now 2 (2)" in (sessions.locator("title").text_content() or "")
    assert page.locator('#status-now td[data-field="sessions"]').inner_text() == "2"
    expect(page.locator("#refresh-state")).to_have_text(re.compile(r"^Last updated \d\d:"))
    _shots(page, artifacts, "status")


def _stale_and_back(page: Any, base: str, artifacts: Path, expect: Any) -> None:
    """The manager does not answer: the page says since when; then it answers again."""
    # both of the page's polls: the chart data and the table of values now
    page.route(re.compile(r"/(api/v1/)?status[/?]"), lambda route: route.abort())
    state = page.locator("#refresh-state")
    expect(state).to_have_attribute("data-state", "stale", timeout=15_000)
    expect(state).to_have_text(re.compile(
        r"^Not updated since \d\d:\d\d:\d\d \u2014 the concentrator does not answer"))
    page.screenshot(path=str(artifacts / "status-stale-1400.png"), full_page=True)
    page.unroute(re.compile(r"/(api/v1/)?status[/?]"))
    expect(state).to_have_attribute("data-state", "fresh", timeout=15_000)
    expect(state).to_have_text(re.compile(r"^Last updated \d\d:\d\d:\d\d"))
    # the Sessions page's live region likewise (a 5xx is no answer either)
    page.goto(f"{base}/sessions")
    page.route("**/sessions?partial=1*", lambda route: route.fulfill(status=502, body="down"))
    expect(state).to_have_attribute("data-state", "stale", timeout=15_000)
    assert "(HTTP 502)" in state.inner_text()
    page.unroute("**/sessions?partial=1*")
    expect(state).to_have_attribute("data-state", "fresh", timeout=15_000)


@contextlib.contextmanager
def _held(page: Any, pattern: str) -> Iterator[None]:
    """Requests to `pattern` wait until the block ends (the page's busy state shows)."""
    held: list[Any] = []
    page.route(pattern, lambda route: held.append(route))
    try:
        yield
    finally:
        for route in held:
            route.continue_()
        page.unroute(pattern)
    assert len(held) == 1, held


def _logout(page: Any, base: str, topo: Topology, v1: VpncClient, v2: VpncClient,
            artifacts: Path, expect: Any) -> None:
    page.goto(f"{base}/sessions")
    row = page.locator('#remote-access-table tr[data-user="vpnuser2"]')
    row.wait_for()
    asked: list[str] = []
    # dismissed: nothing happens
    page.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))
    row.locator("button.logout").click()
    expect(page.locator("#action-result")).to_have_text("Logout cancelled.")
    assert row.count() == 1 and v2.exited() is None
    # accepted: busy while the request is held, then the result; the row goes
    page.once("dialog", lambda d: (asked.append(d.message), d.accept()))
    with _held(page, "**/api/v1/sessions/*/logout"):
        button = row.locator("button.logout")
        button.click()
        expect(button).to_have_text("Logging out\u2026")
        expect(button).to_be_disabled()
    expect(page.locator("#action-result")).to_have_text(
        re.compile(r"^vpnuser2 logged out: "), timeout=15_000)
    assert [a.startswith("Log out vpnuser2 (") for a in asked] == [True, True], asked
    expect(page.locator("#action-result")).to_have_attribute("data-ok", "yes")
    row.wait_for(state="detached")
    _shots(page, artifacts, "logout")
    # the client's tunnel ends: vpnc got the DELETE and exits, its TUN goes

    def tunnel_gone() -> bool:
        gone = topo.exec(v2.host, ["ip", "link", "show", v2.host.tun]).returncode != 0
        return v2.exited() is not None and gone

    wait_until(tunnel_gone, 20, interval=0.2, what="vpnuser2's vpnc and TUN to go")
    assert v1.exited() is None
    assert topo.ping(v1.host, LAN_HOST, interface=v1.host.tun, count=2, interval=0.2)
    # Ping from the list: busy, then the result in the page
    with _held(page, "**/api/v1/sessions/*/ping"):
        button = page.locator('#remote-access-table tr[data-user="vpnuser1"] button.ping')
        button.click()
        expect(button).to_have_text("Pinging\u2026")
        expect(button).to_be_disabled()
    result = page.locator(".ping-result")
    expect(result).to_have_attribute("data-alive", "yes", timeout=15_000)
