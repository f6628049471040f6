"""Every page of the console at 1400 px and 390 px in Chromium (issue 15, point 5).

The pages come from one table, tests/manager/screens.py `PAGES` (a new page is
one line there); the data from its `demo_rig()`: six clients up by real IKE on
the core rig, one with a diagnosis, under the real manager. For each page and
width: served with the expected status, no page-level horizontal scrolling
(`scrollWidth <= innerWidth`), the menu and the sign-out button on screen, and a
screenshot kept in artifacts/screens/ (git-ignored). At 390 px the Sessions
page keeps its key columns (user, assigned and public address, group) on
screen before any scrolling, and Logout and Ping of a row on screen however
its table's box is scrolled: their column is sticky at the box's right edge;
so is the text of a diagnosis row, kept to the box's visible part.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import screens
from rig_manager import RigManager
from screens import NARROW, PAGES, WIDE, Page

SCREENS = Path(__file__).parents[2] / "artifacts" / "screens"


@pytest.fixture(scope="module")
def console() -> Iterator[tuple[RigManager, str]]:
    with screens.served() as srv:
        yield srv, screens.first_session(srv)


@pytest.fixture
def browser_at(playwright_chromium: Any) -> Iterator[Any]:
    """A new browser context at a given width: call it with the width."""
    made: list[Any] = []

    def new(width: int) -> Any:
        context = playwright_chromium.new_context(
            viewport={"width": width, "height": screens.HEIGHT})
        made.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        return page

    yield new
    for context in made:
        context.close()


def _fits(page: Any) -> tuple[int, int]:
    return tuple(page.evaluate(
        "() => [document.documentElement.scrollWidth, window.innerWidth]"))


def _on_screen(page: Any, selector: str) -> None:
    """Visible and horizontally within the viewport (the page may scroll down to it)."""
    width = page.evaluate("() => window.innerWidth")
    box = page.locator(selector).first.bounding_box()
    assert box is not None, f"{selector} not shown"
    assert box["x"] >= 0 and box["x"] + box["width"] <= width, (selector, box, width)


def _open(page: Any, srv: RigManager, sid: str, entry: Page) -> None:
    if entry.signed_in:
        screens.sign_in(page, srv.base)
    response = screens.visit(page, srv.base, entry, sid)
    assert response is not None and response.status == entry.status, entry.name


@pytest.mark.parametrize("width", [WIDE, NARROW])
@pytest.mark.parametrize("entry", PAGES, ids=[p.name for p in PAGES])
def test_page_fits_its_width(console: tuple[RigManager, str], browser_at: Any,
                             entry: Page, width: int) -> None:
    srv, sid = console
    page = browser_at(width)
    _open(page, srv, sid, entry)
    SCREENS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENS / f"{entry.name}-{width}.png"), full_page=True)
    scroll_width, inner = _fits(page)
    assert scroll_width <= inner, f"{entry.name} is {scroll_width} px wide at {width} px"
    if entry.menu:
        links = page.locator("header nav a")
        assert links.count() >= 5  # Sessions, Event Log, Event Classes, NAT-T, Status
        for i in range(links.count()):
            _on_screen(page, f"header nav a >> nth={i}")
        _on_screen(page, "#sign-out")
    assert not srv.errors, srv.errors


def test_sessions_key_columns_and_actions_at_390(console: tuple[RigManager, str],
                                                 browser_at: Any) -> None:
    srv, sid = console
    page = browser_at(NARROW)
    _open(page, srv, sid, screens.named("sessions"))
    row = f'#remote-access-table tr[data-session="{sid}"]'
    actions = page.locator(f"{row} > td:last-child").bounding_box()
    assert actions is not None
    # the key columns come first and are seen before the box is scrolled, not under
    # the sticky Actions column
    for key in ("a.user", "span.assigned", "span.public", "td:nth-child(3)"):
        _on_screen(page, f"{row} {key}")
        box = page.locator(f"{row} {key}").bounding_box()
        assert box is not None and box["x"] + box["width"] <= actions["x"] + 1, key
    summary = page.locator("#summary-table").locator("xpath=..")
    assert summary.evaluate("e => e.scrollWidth <= e.clientWidth")  # a list, not scrolled
    box = page.locator("#remote-access-table").locator("xpath=..")
    assert box.evaluate("e => e.scrollWidth > e.clientWidth")  # the box scrolls, not the page
    for left in ("0", "e.scrollWidth"):  # either end of the box
        box.evaluate(f"e => {{ e.scrollLeft = {left}; }}")
        for button in ("button.logout", "button.ping"):
            _on_screen(page, f"{row} {button}")
        # a diagnosis (erin's: NAT-T was off) is read without scrolling sideways
        _on_screen(page, "#remote-access-table tr.diagnosis .said")
    assert _fits(page)[0] <= NARROW


def test_sessions_table_unscrolled_at_1400(console: tuple[RigManager, str],
                                           browser_at: Any) -> None:
    """Wide, nothing changes: every table of the page fits its box."""
    srv, sid = console
    page = browser_at(WIDE)
    _open(page, srv, sid, screens.named("sessions"))
    boxes = page.locator("#live .scroll")
    assert boxes.count() == 4  # summary, LAN-to-LAN, remote access, management
    assert boxes.evaluate_all("bs => bs.every(e => e.scrollWidth <= e.clientWidth)")


def test_session_detail_actions_at_390(console: tuple[RigManager, str],
                                       browser_at: Any) -> None:
    srv, sid = console
    page = browser_at(NARROW)
    _open(page, srv, sid, screens.named("session-detail"))
    for button in ("main button.logout", "main button.ping"):
        _on_screen(page, button)
    _on_screen(page, "svg.chart")  # the chart shrinks to the screen
