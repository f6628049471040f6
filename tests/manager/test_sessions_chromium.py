"""The paged Sessions page in Chromium with 1,000 real sessions (issue 13).

The sessions are made by real IKE: 1,000 initiator `IkeSA`s (our engine as
the client, Aggressive Mode, XAUTH, Mode Config, Quick Mode) behind one
in-memory PAT, against the real `ConcentratorCore`, on the core rig of
tests/concentrator/core_harness.py (no sockets, no root). A quarter of them
log in to a second group; for a tenth of them the concentrator had NAT-T
turned off when they logged in, so their sessions carry the real diagnosis.

The rig runs on simulated time and serves no sockets, so: first it brings the
1,000 clients up in simulated time; then the real manager (vpnhub.manager,
`Manager` over that very core, as `vpnhub serve` makes it) is served on
127.0.0.1 from an asyncio loop in a thread, where a task moves the rig's
datagrams every 10 ms (a logout's DELETE reaches its client; simulated time
does not advance, so no timer fires and no session expires meanwhile).
Every use of the rig happens in that loop's thread.

Chromium (Debian's, driven by Playwright, the lab test's fixture) then checks:
paging (Next to the end and back, 100 per page of 1,000), sorting by user
both ways, the filters by user, group and diagnosis, both Export links (a
file of 1,000 lines, and the CSV header), and Logout of one session from the
page (the row goes, 999 left, the client got the DELETE).
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "concentrator"))

from core_harness import GROUP, PSK, CoreRig, config_text
from rig_manager import RigManager

from vpnhub.auth.users import hash_password
from vpnhub.ike import events as ev

N = 1000
PER_PAGE = 100
ADMIN, ADMIN_PASSWORD = "pageadmin", "paged-Manager-pw-9"
SALES = "sales"


def _group(i: int) -> str:
    return SALES if i % 4 == 0 else GROUP


def _config() -> str:
    text = config_text(users={}, pool="10.40.0.0/20")
    text += f'\n[[group]]\nname = "{SALES}"\npsk = "{PSK}"\naddress_pool = "10.41.0.0/20"\n'
    text += "".join(f'\n[[user]]\nname = "user{i:04d}"\npassword = "pw-{i:04d}"\n'
                    f'group = "{_group(i)}"\n' for i in range(N))
    return text + (f'\n[[admin.user]]\nname = "{ADMIN}"\npassword_hash = "'
                   f'{hash_password(ADMIN_PASSWORD, scheme="pbkdf2-sha256", iterations=1000)}"\n')


def _bring_up(rig: CoreRig) -> None:
    """N clients through the real handshakes, in simulated time."""
    for i in range(N):
        rig.core.natt_enabled = i % 10 != 0  # off: NAT-T refused, the session diagnosed
        pc = rig.add_pc(f"user{i:04d}", f"pw-{i:04d}", group=_group(i),
                        local_ip=f"10.10.{i // 250}.{i % 250 + 2}")
        rig.connect(pc)
        assert pc.up, i
    rig.core.natt_enabled = True


@pytest.fixture(scope="module")
def served() -> Iterator[RigManager]:
    rig = CoreRig.from_text(_config())
    _bring_up(rig)
    srv = RigManager(rig).start()
    yield srv
    srv.stop()
    assert not srv.errors, srv.errors


def _users(page: Any) -> list[str]:
    return list(page.locator("#remote-access-table tr[data-session]").evaluate_all(
        "rows => rows.map(r => r.dataset.user)"))


def _count(page: Any) -> str:
    return str(page.locator("#remote-access-pager .count").inner_text())


def _filter(page: Any, base: str, **fields: str) -> None:
    """Fill the filter form as a person would, and Apply."""
    page.goto(f"{base}/sessions")
    for name in ("user", "group"):
        page.fill(f"#session-filters input[name={name}]", fields.get(name, ""))
    for name in ("has_diagnosis", "sort", "order"):
        if name in fields:
            page.select_option(f"#session-filters select[name={name}]", fields[name])
    page.click("#session-filters button[type=submit]")
    page.wait_for_load_state()


def test_paged_sessions_page_with_1000_real_sessions(served: RigManager,
                                                     playwright_chromium: Any,
                                                     artifacts: Path) -> None:
    from playwright.sync_api import expect

    base = served.base
    everyone = sorted(f"user{i:04d}" for i in range(N))
    context = playwright_chromium.new_context(accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        page.goto(f"{base}/sessions")
        page.fill("input[name=username]", ADMIN)
        page.fill("input[name=password]", ADMIN_PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/sessions")
        assert page.locator(
            '#summary-table td[data-field="active_remote_access"]').inner_text() == f"{N:,}"

        # paging: Next to the last page, each of 100, every session once; then back
        pages: list[list[str]] = []
        while True:
            users = _users(page)
            assert len(users) == PER_PAGE, page.url
            assert _count(page) == f"{PER_PAGE} shown of {N} matching"
            pages.append(users)
            nxt = page.locator("#remote-access-pager a.next")
            if nxt.count() == 0:
                break
            nxt.click()
            page.wait_for_load_state()
        assert len(pages) == N // PER_PAGE
        assert sorted(u for p in pages for u in p) == everyone
        page.screenshot(path=str(artifacts / "paged-last.png"), full_page=True)
        for back in reversed(pages[:-1][-2:]):  # Previous twice: the same pages again
            page.click("#remote-access-pager a.prev")
            page.wait_for_load_state()
            assert _users(page) == back

        # sorting by user, both ways
        _filter(page, base, sort="user", order="asc")
        assert _users(page) == everyone[:PER_PAGE]
        page.click("#remote-access-pager a.next")
        page.wait_for_load_state()
        assert _users(page) == everyone[PER_PAGE:2 * PER_PAGE]
        _filter(page, base, sort="user", order="desc")
        assert _users(page) == everyone[::-1][:PER_PAGE]

        # filters: user, group, diagnosis
        _filter(page, base, user="user0123")
        assert _users(page) == ["user0123"] and _count(page) == "1 shown of 1 matching"
        _filter(page, base, group=SALES, sort="user")
        assert _count(page) == f"{PER_PAGE} shown of {N // 4} matching"
        assert set(page.locator("#remote-access-table tr[data-session] td:nth-child(3)")
                   .all_inner_texts()) == {SALES}
        assert _users(page) == [u for u in everyone if int(u[4:]) % 4 == 0][:PER_PAGE]
        _filter(page, base, has_diagnosis="true", sort="user")
        assert _count(page) == f"{PER_PAGE} shown of {N // 10} matching"
        assert _users(page) == [u for u in everyone if int(u[4:]) % 10 == 0]
        diagnoses = page.locator("#remote-access-table tr.diagnosis").all_inner_texts()
        assert len(diagnoses) == N // 10 and all("NAT-T" in d for d in diagnoses)
        _filter(page, base, has_diagnosis="false")
        assert _count(page) == f"{PER_PAGE} shown of {N - N // 10} matching"
        page.screenshot(path=str(artifacts / "paged-filtered.png"), full_page=True)

        # the Export links: every session, not the page
        page.goto(f"{base}/sessions")
        with page.expect_download() as got:
            page.click("#sessions-export a.export-csv")
        download = got.value
        assert re.fullmatch(r"vpnhub-sessions-\d{8}T\d{6}Z\.csv", download.suggested_filename)
        table = list(csv.reader(io.StringIO(Path(download.path()).read_text(), newline="")))
        assert table[0][:3] == ["id", "user", "group"] and len(table) == N + 1
        assert sorted(row[1] for row in table[1:]) == everyone
        with page.expect_download() as got:
            page.click("#sessions-export a.export-jsonl")
        text = Path(got.value.path()).read_text()
        assert len(text.splitlines()) == N
        assert sorted(json.loads(line)["user"] for line in text.splitlines()) == everyone

        # Logout of one session from the page
        # (asked first: the script's confirm(), accepted; the result shown in the page)
        _filter(page, base, user="user0500")
        asked: list[str] = []
        page.once("dialog", lambda d: (asked.append(d.message), d.accept()))
        page.click('#remote-access-table tr[data-user="user0500"] button.logout')
        expect(page.locator("#action-result")).to_have_text(
            re.compile(r"^user0500 logged out"), timeout=10_000)
        assert len(asked) == 1 and asked[0].startswith("Log out user0500"), asked
        expect(page.locator("#remote-access-table tr.empty")).to_contain_text(
            "No sessions match the filter", timeout=10_000)
        page.goto(f"{base}/sessions")
        expect(page.locator("#remote-access-pager .count")).to_have_text(
            f"{PER_PAGE} shown of {N - 1} matching", timeout=10_000)
        _filter(page, base, user="user0500")
        assert _users(page) == []
        page.screenshot(path=str(artifacts / "paged-logout.png"), full_page=True)

        def after_logout() -> tuple[list[str], list[ev.Event]]:
            left = [s.user for s in served.rig.core.sessions.all() if s.user == "user0500"]
            (pc,) = [p for p in served.rig.pcs if p.user == "user0500"]
            return left, list(pc.events)

        left, events = served.run(after_logout)
        assert left == []  # the session ended in the store
        assert any(isinstance(e, ev.SADeleted) and e.by_peer for e in events)  # DELETE seen
        assert served.run(lambda: len(served.rig.core.sessions)) == N - 1
    finally:
        context.close()
    assert not served.errors, served.errors
