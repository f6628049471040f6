"""The Cluster page in Chromium (issue 17), two real members on a real PostgreSQL 15.

Member a serves the manager and has one session, member b two
(cluster_rig.py). Debian's Chromium, driven by Playwright as the other
console tests do, checks: the Cluster entry in the menu, both members listed
with a marked as the master and "this member", the three sessions of the
cluster with their member, Logout of one of b's sessions from a's page (asked
first; delivered to b, whose command callback ends it; the row goes), then
PostgreSQL stopped: the red banner "Cluster database unreachable since ...:
established tunnels kept, new logins refused" and the sessions table saying
why it is empty; PostgreSQL started again: the banner goes. At 390 px the
page does not scroll sideways. Screenshots
`cluster-*.png` in artifacts/manager/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster_rig import ClusterRig, until
from manager_fakes import ADMIN, ADMIN_PASSWORD
from netns_util import unavailable
from pgserver import PgServer, pg_problem


@pytest.fixture
def pg() -> Iterator[PgServer]:
    problem = pg_problem()
    if problem is not None:
        unavailable(problem)
    with PgServer() as server:
        yield server


@pytest.fixture
def rig(tmp_path: Path, pg: PgServer) -> Iterator[ClusterRig]:
    r = ClusterRig(tmp_path, pg).start()
    yield r
    r.stop()


def test_cluster_page_members_sessions_logout_and_database_down(
        rig: ClusterRig, playwright_chromium: Any, artifacts: Path) -> None:
    from playwright.sync_api import expect

    base = rig.srv.base
    rig.login_a("alice", 1301)
    bob, carol = rig.login_b("bob"), rig.login_b("carol")
    context = playwright_chromium.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        page.goto(f"{base}/cluster")
        page.fill("input[name=username]", ADMIN)
        page.fill("input[name=password]", ADMIN_PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/cluster")
        expect(page.locator("nav a.active")).to_have_text("Cluster")

        # members: a (this member, the master) and b, alive; the database reachable
        members = page.locator("#cluster-members-table tr[data-member]")
        expect(members).to_have_count(2)
        a_row = page.locator('#cluster-members-table tr[data-member="a"]')
        b_row = page.locator('#cluster-members-table tr[data-member="b"]')
        expect(a_row.locator(".badge.master")).to_have_text("master")
        expect(a_row.locator(".badge.me")).to_have_text("this member")
        expect(b_row.locator(".badge")).to_have_count(0)
        expect(b_row).to_have_attribute("data-alive", "yes")
        expect(b_row.locator(".member-sessions")).to_have_text("2 / 50", timeout=10_000)
        expect(b_row.locator(".member-load")).to_have_text("4.0 %")
        expect(page.locator("#cluster-meta")).to_contain_text("held by a")
        expect(page.locator("#cluster-db")).to_have_attribute("data-state", "ok")

        # the cluster's sessions, each with its member (the page refreshes every 3 s)
        rows = page.locator("#cluster-sessions-table tr[data-session]")
        expect(rows).to_have_count(3, timeout=15_000)
        got = sorted(zip(rows.evaluate_all("rs => rs.map(r => r.dataset.member)"),
                         rows.evaluate_all("rs => rs.map(r => r.dataset.user)"), strict=True))
        assert got == [("a", "alice"), ("b", "bob"), ("b", "carol")]
        page.screenshot(path=str(artifacts / "cluster-1400.png"), full_page=True)
        # a phone's width: the tables scroll in their boxes, the page does not
        page.set_viewport_size({"width": 390, "height": 844})
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        logout = page.locator(f'#cluster-sessions-table tr[data-session="{bob}"] button.logout')
        box = logout.bounding_box()
        assert box is not None and box["x"] + box["width"] <= 390  # sticky: on screen
        page.screenshot(path=str(artifacts / "cluster-390.png"), full_page=True)
        page.set_viewport_size({"width": 1400, "height": 900})

        # Logout of b's session from a's page: asked, delivered to b, the row goes
        asked: list[str] = []
        page.once("dialog", lambda d: (asked.append(d.message), d.accept()))
        page.click(f'#cluster-sessions-table tr[data-session="{bob}"] button.logout')
        expect(page.locator("#action-result")).to_have_text(
            re.compile(r"^Logout sent to member b"), timeout=10_000)
        assert len(asked) == 1 and asked[0].startswith("Log out bob") and "member b" in asked[0]
        expect(page.locator(f'#cluster-sessions-table tr[data-session="{bob}"]')) \
            .to_have_count(0, timeout=15_000)
        expect(page.locator(f'#cluster-sessions-table tr[data-session="{carol}"]')) \
            .to_have_count(1)
        (key, by), = rig.b_asked
        assert key[0].hex() + key[1].hex() == bob and by == "admin on member a"
        assert rig.srv.run(lambda: len(rig.b_store)) == 1
        page.screenshot(path=str(artifacts / "cluster-logout-1400.png"), full_page=True)

        # PostgreSQL stopped: the banner says so, the tunnels are kept
        rig.pg.stop()
        banner = page.locator('#cluster-db[data-state="down"]')
        expect(banner).to_contain_text(re.compile(
            r"Cluster database unreachable since \w{3} \d\d \d\d:\d\d:\d\d .*: established"
            r" tunnels kept, new logins refused\."), timeout=15_000)
        expect(page.locator("#cluster-sessions-table tr.empty")).to_contain_text(
            "cannot be read")
        assert rig.srv.run(lambda: len(rig.srv.conc.sessions)) == 1  # alice still here
        page.screenshot(path=str(artifacts / "cluster-db-down-1400.png"), full_page=True)
        assert any("cluster database unreachable" in r.text
                   for r in rig.srv.log.query(_all()))

        # back: the banner goes
        rig.pg.start()
        until(lambda: rig.a.database_ok, "member a to reconnect", 30)
        expect(page.locator("#cluster-db")).to_have_attribute("data-state", "ok",
                                                              timeout=15_000)
        expect(rows).to_have_count(2, timeout=15_000)
    finally:
        context.close()


def _all() -> object:
    from vpnhub.eventlog import EventFilter

    return EventFilter(limit=1000)
