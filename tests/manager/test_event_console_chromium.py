"""The event log in Chromium at 1400 px and 390 px (issue 15): paging over 10,000 records
reaches the first and the last page, Save Log of a filtered range downloads exactly that
range (text and CSV), Clear Log leaves one record saying who cleared it, and a severity
changed on the Classes page changes what the next events store and survives a restart.

The manager runs around the fake concentrator of manager_fakes.py (Debian's Chromium driven
by Playwright, conftest.py). Screenshots go to artifacts/manager/ (git-ignored):
events-<width>-*.png, classes-<width>.png.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from manager_fakes import ADMIN, ADMIN_PASSWORD, ManagerServer
from test_event_console import T0, fill

WIDTHS = (1400, 390)


def _login(page: Any, base: str, target: str) -> None:
    page.goto(f"{base}{target}")
    page.fill("input[name=username]", ADMIN)
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    page.goto(f"{base}{target}")  # the login returns to the path, not its query


def _seqs(page: Any) -> list[int]:
    return [int(s) for s in page.locator("#events tr").evaluate_all(
        "rows => rows.map(r => r.dataset.seq)")]


def _fits(page: Any, width: int) -> None:
    """Nothing of the page's own content sticks out sideways (tables scroll in their box)."""
    right = page.evaluate("""() => Math.max(...[...document.querySelectorAll(
        'main > *, main form > *, main fieldset > *')]
        .map(e => e.getBoundingClientRect().right))""")
    assert right <= width + 0.5, f"content is {right} px wide at {width} px"


def _click(page: Any, selector: str) -> None:
    page.click(selector)
    page.wait_for_load_state()


def _local(t: float) -> str:
    return datetime.fromtimestamp(t).strftime("%Y-%m-%dT%H:%M")


@pytest.mark.parametrize("width", WIDTHS)
def test_event_log_in_chromium(tmp_path: Path, playwright_chromium: Any, artifacts: Path,
                               width: int) -> None:
    srv = ManagerServer(tmp_path, max_events=50_000).start()
    try:
        seqs = fill(srv)
        context = playwright_chromium.new_context(
            accept_downloads=True, viewport={"width": width, "height": 900})
        page = context.new_page()
        page.set_default_timeout(20_000)
        try:
            _login(page, srv.base, "/events?class=IKE&limit=500")
            assert _seqs(page)[-1] == seqs[-1] and page.locator("#events-pager a.next").count() == 0
            _fits(page, width)
            page.screenshot(path=str(artifacts / f"events-{width}-last.png"))
            _click(page, "#events-pager a.first")
            assert _seqs(page)[:1] == seqs[:1] and page.locator("#events-pager a.prev").count() == 0
            assert "order=oldest" in page.url and "class=IKE" in page.url  # bookmarkable
            _click(page, "#events-pager a.next")
            assert _seqs(page) == seqs[500:1000]
            _click(page, "#events-pager a.prev")
            assert _seqs(page) == seqs[:500]
            _click(page, "#events-pager a.last")
            assert _seqs(page) == seqs[-500:]

            # Save Log of a filtered range, set in the form as an operator would
            start, end = T0 + 600, T0 + 1799  # whole minutes of the fill's clock
            page.check("#event-filters input[name=class][value=IKE]")
            page.select_option("#severity_min", "6")
            page.fill("#event-filters input[name=since]", _local(start))
            page.fill("#event-filters input[name=until]", _local(end))
            _click(page, "#get-log")
            lo = datetime.fromisoformat(_local(start)).timestamp()
            hi = datetime.fromisoformat(_local(end)).timestamp()
            want = [s for i, s in enumerate(seqs, 1)
                    if lo <= T0 + i <= hi and 4 + i % 3 == 6]
            assert len(want) > 300
            with page.expect_download() as got:
                page.click("#save-text")
            text = Path(got.value.path()).read_text()
            assert re.fullmatch(r"vpnhub-events-\d{8}T\d{6}Z\.txt", got.value.suggested_filename)
            assert [int(m) for m in re.findall(r"^(\d+) \S+ \S+ SEV=6 IKE/0 ", text, re.M)] == want
            assert len(text.splitlines()) == 2 * len(want)
            with page.expect_download() as got:
                page.click("#save-csv")
            rows = list(csv.DictReader(io.StringIO(Path(got.value.path()).read_text())))
            assert [int(r["seq"]) for r in rows] == want
            page.screenshot(path=str(artifacts / f"events-{width}-filtered.png"))

            # Clear Log: asked first, one record left naming who cleared it
            _click(page, "#clear-log")
            page.screenshot(path=str(artifacts / f"events-{width}-clear.png"), full_page=True)
            _click(page, "#clear-confirm")
            assert page.url.endswith("/events")
            rows_text = page.locator("#events tr").all_inner_texts()
            assert len(rows_text) == 1 and f"event log cleared by {ADMIN} from 127.0.0.1" \
                in rows_text[0], rows_text
            page.screenshot(path=str(artifacts / f"events-{width}-cleared.png"), full_page=True)

            # Classes: NATT keeps 1-2 from the next event on
            _click(page, "#classes-link")
            page.select_option("select[name='keep.NATT']", "2")
            _click(page, "#classes-apply")
            assert page.locator("p.ok").inner_text().startswith("Applied: 1 class")
            _fits(page, width)
            page.screenshot(path=str(artifacts / f"classes-{width}.png"), full_page=True)
        finally:
            context.close()
        assert srv.run(lambda: srv.log.add("NATT", 4, "not stored now")) is None
        assert srv.run(lambda: srv.log.add("NATT", 2, "stored")) is not None
    finally:
        srv.stop()

    again = ManagerServer(tmp_path, max_events=50_000).start()
    try:
        context = playwright_chromium.new_context(viewport={"width": width, "height": 900})
        page = context.new_page()
        try:
            _login(page, again.base, "/config/events/classes")
            assert page.locator("select[name='keep.NATT']").input_value() == "2"
            assert "set here" in page.locator("#classes-table tr[data-class=NATT]").inner_text()
        finally:
            context.close()
        assert again.run(lambda: again.log.add("NATT", 4, "still not stored")) is None
    finally:
        again.stop()
