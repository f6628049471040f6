"""Every page of the web console, in one table, and its screenshots (issue 15).

`PAGES` lists each page the manager serves to a browser: how to reach it
(a path, or the click or form that leads there), whether it shows the menu.
tests/manager/test_layout_chromium.py visits every entry at 1400 px and
390 px; this module, run as a script, takes the screenshots of
docs/MANAGER.md:

    python -m tests.manager.screens            # into docs/manager-screens/
    python -m tests.manager.screens --out DIR

A new page is one line in `PAGES` (and, for docs/MANAGER.md, one image line).

The data is realistic but made in memory: `demo_rig()` brings a handful of
clients up by real IKE (our engine as the client, Aggressive Mode, XAUTH,
Mode Config, Quick Mode) behind a PAT, in two groups, one of them logged in
while NAT-T was off (its session carries the diagnosis, and the banner
shows), on the core rig of tests/concentrator/core_harness.py; the manager
is the real one over that core (rig_manager.py), and five minutes of traffic
are counted on the rig's fake data plane and sampled (`_traffic`). The rig has no network, so
Ping answers from `demo_ping`, a stand-in with the output of the system's
ping for a tunnel address.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
for _dir in (HERE.parent, HERE.parent / "concentrator", HERE):  # as conftest.py has them
    sys.path.insert(0, str(_dir))

from core_harness import GROUP, PSK, CoreRig, config_text  # noqa: E402
from rig_manager import RigManager  # noqa: E402

from vpnhub.auth.users import hash_password  # noqa: E402
from vpnhub.manager.view import HISTORY_EVERY, SAMPLES, PingResult  # noqa: E402

ADMIN, ADMIN_PASSWORD = "admin", "screens-Manager-pw-7"
SALES = "sales"
# (user, group, NAT-T on when it logged in)
CLIENTS = [("alice", GROUP, True), ("bob", GROUP, True), ("carol", SALES, True),
           ("dave", SALES, True), ("erin", GROUP, False), ("frank", GROUP, True)]
WIDE, NARROW = 1400, 390
HEIGHT = 900  # the tests' viewport
# the docs' screenshots: one screen of each page (its top), so that every PNG stays
# under 150 KB without an image library
DOC_VIEW = {WIDE: 760, NARROW: 1000}
DOC_LIMIT = 150_000
DOCS = HERE.parents[1] / "docs" / "manager-screens"


@dataclass(frozen=True)
class Page:
    """One page of the console. `path` may name `{sid}` (the first session's id);
    `reach`, when given, goes there instead (a button or a form, from the signed-in
    browser at `base`) and returns the page's response."""

    name: str  # file name of its screenshots, and the test's id
    path: str
    menu: bool = True  # shows the header's menu (a signed-in HTML page)
    signed_in: bool = True
    reach: Callable[[Any, str, str], Any] | None = None  # -> the response
    status: int = 200  # the HTTP status it is served with
    doc: bool = True  # has a screenshot in docs/MANAGER.md


def _ping(page: Any, base: str, sid: str) -> Any:
    """Ping's result page: the form as posted without the script (with it, manager.js
    calls the API and shows the replies on the Sessions page instead)."""
    page.goto(f"{base}/sessions")
    with page.expect_navigation() as nav:
        page.locator(f'#remote-access-table tr[data-session="{sid}"] form[data-action=ping]'
                     ).evaluate("f => f.submit()")  # submit() skips the script's handler
    return nav.value


def _forbidden(page: Any, base: str, sid: str) -> Any:
    """A form sent with a stale CSRF token (another tab logged out and in again)."""
    page.goto(f"{base}/settings/nat-transparency")
    page.locator("#natt-form input[name=csrf]").evaluate("e => { e.value = 'stale' }")
    with page.expect_navigation() as nav:
        page.click("#natt-apply")
    return nav.value


def _logout_confirm(page: Any, base: str, sid: str) -> Any:
    """Logout without the script's confirm(): the form posts without confirm=1 and
    the answer is the confirmation page (Log out / Cancel); the session stays."""
    page.goto(f"{base}/sessions")
    with page.expect_navigation() as nav:
        page.locator(f'#remote-access-table tr[data-session="{sid}"] form[data-action=logout]'
                     ).evaluate("f => f.submit()")  # submit() skips the script's handler
    return nav.value


def _events_paged(page: Any, base: str, sid: str) -> Any:
    """An older page of the event log, through its pager (Previous from the last)."""
    page.goto(f"{base}/events?limit=10")
    with page.expect_navigation() as nav:
        page.click("#events-pager a.prev")
    return nav.value


PAGES = [
    Page("login", "/login", menu=False, signed_in=False),
    Page("sessions", "/sessions"),  # the home page: "/" leads here
    Page("session-detail", "/sessions/{sid}"),
    Page("ping", "/sessions/{sid}/ping", reach=_ping),
    Page("session-gone", "/sessions/" + "0" * 32, status=404),
    Page("logout-confirm", "/sessions/{sid}/logout", reach=_logout_confirm),
    Page("events", "/events"),
    Page("events-paged", "/events?limit=10&before_seq=...", reach=_events_paged),
    Page("events-clear", "/events/clear"),  # Clear Log's question (nothing cleared)
    Page("event-classes", "/config/events/classes"),
    Page("status", "/status"),
    Page("nat-transparency", "/settings/nat-transparency"),
    Page("forbidden", "/settings/nat-transparency", reach=_forbidden, status=403,
         menu=False),
    # Prometheus text, as the browser shows it (no screenshot in the docs)
    Page("metrics", "/metrics", menu=False, doc=False),
]


def named(name: str) -> Page:
    (entry,) = [p for p in PAGES if p.name == name]
    return entry


# the pages docs/MANAGER.md also shows at 390 px
DOC_NARROW = ("sessions", "session-detail", "events", "event-classes", "status")


def config() -> str:
    users = {name: f"pw-{name}-1" for name, _, _ in CLIENTS}
    text = config_text(users={u: p for u, p in users.items()}, pool="10.40.1.0/24")
    text += f'\n[[group]]\nname = "{SALES}"\npsk = "{PSK}"\naddress_pool = "10.41.1.0/24"\n'
    # config_text puts every user in GROUP: the sales users are moved by name
    for name, group, _ in CLIENTS:
        if group == SALES:
            text = text.replace(f'name = "{name}"\npassword = "{users[name]}"\n'
                                f'group = "{GROUP}"',
                                f'name = "{name}"\npassword = "{users[name]}"\n'
                                f'group = "{SALES}"')
    return text + (f'\n[[admin.user]]\nname = "{ADMIN}"\npassword_hash = "'
                   f'{hash_password(ADMIN_PASSWORD, scheme="pbkdf2-sha256", iterations=1000)}"\n')


def demo_rig() -> CoreRig:
    """The clients of CLIENTS up through the real handshakes, in simulated time."""
    rig = CoreRig.from_text(config())
    for i, (name, group, natt) in enumerate(CLIENTS):
        rig.core.natt_enabled = natt
        pc = rig.add_pc(name, f"pw-{name}-1", group=group, local_ip=f"10.10.10.{i + 20}",
                        application_version=f"Cisco Systems VPN Client 5.0.0{i}:Linux")
        rig.wall_skew = -60.0 * (len(CLIENTS) - i) * 7 - 13 * i  # logins minutes apart
        rig.connect(pc)
        assert pc.up, name
    rig.core.natt_enabled = True
    rig.wall_skew = 0.0
    return rig


async def _traffic(srv: RigManager) -> None:
    """Five minutes of throughput samples, every 10 s, from traffic counted on the
    fake data plane's SAs (the same counters and sampler as a real data plane's),
    on the view's clock set back for the while."""
    assert srv.manager is not None
    view, dp = srv.manager.view, srv.rig.dp
    real, start = view.clock, time.time() - HISTORY_EVERY * SAMPLES
    for n in range(SAMPLES):
        for k, spi in enumerate(sorted(dp.inbound)):
            rate = 4000 * (k + 1) * (1.6 + math.sin(n / 3 + k))  # bytes/s, a slow wave
            dp.count(spi, "in", packets=int(rate / 90), bytes_=int(rate * HISTORY_EVERY))
        for k, spi in enumerate(sorted(dp.outbound)):
            rate = 9000 * (k + 1) * (1.4 + math.cos(n / 4 + k))
            dp.count(spi, "out", packets=int(rate / 700), bytes_=int(rate * HISTORY_EVERY))
        view.clock = lambda t=start + HISTORY_EVERY * n: t
        await view.sample()
    view.clock = real


async def demo_ping(address: str, source: str) -> PingResult:
    """What `ping -n -c 3` prints for an answering tunnel address."""
    lines = [f"PING {address} ({address}) from {source or '192.168.2.1'} : 56(84) bytes of"
             " data."]
    lines += [f"64 bytes from {address}: icmp_seq={n} ttl=64 time={0.8 + n / 10:.2f} ms"
              for n in (1, 2, 3)]
    lines += ["", f"--- {address} ping statistics ---",
              "3 packets transmitted, 3 received, 0% packet loss, time 402ms",
              "rtt min/avg/max/mdev = 0.900/1.000/1.100/0.082 ms"]
    return PingResult(address, source, 3, 3, 1.0, "\n".join(lines))


@contextmanager
def served() -> Iterator[RigManager]:
    srv = RigManager(demo_rig(), pinger=demo_ping).start()
    try:
        srv.call(_traffic(srv))
        yield srv
    finally:
        srv.stop()
    assert not srv.errors, srv.errors


def first_session(srv: RigManager) -> str:
    """The id of the first session listed (the Sessions page's first row)."""
    def sid() -> str:
        assert srv.manager is not None
        v = srv.manager.view
        return str(v.session_json(v.listed()[0])["id"])
    return str(srv.run(sid))


def sign_in(page: Any, base: str) -> None:
    page.goto(f"{base}/login")
    page.fill("input[name=username]", ADMIN)
    page.fill("input[name=password]", ADMIN_PASSWORD)
    with page.expect_navigation():
        page.click("section.login button[type=submit]")


def visit(page: Any, base: str, entry: Page, sid: str) -> Any:
    """Opens `entry` in `page` (signed in or not, as the entry says); the response."""
    if entry.reach is not None:
        return entry.reach(page, base, sid)
    return page.goto(base + entry.path.format(sid=sid))


def take(browser: Any, out: Path) -> list[Path]:
    """Every page with `doc` at 1400 px (and DOC_NARROW at 390 px) into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []
    with served() as srv:
        sid = first_session(srv)
        for width in (WIDE, NARROW):
            context = browser.new_context(
                viewport={"width": width, "height": DOC_VIEW[width]})
            page = context.new_page()
            page.set_default_timeout(15_000)
            signed = False
            try:
                for entry in PAGES:
                    if not entry.doc or (width == NARROW and entry.name not in DOC_NARROW):
                        continue
                    if entry.signed_in and not signed:
                        sign_in(page, srv.base)
                    elif not entry.signed_in:
                        context.clear_cookies()
                    signed = entry.signed_in
                    visit(page, srv.base, entry, sid)
                    path = out / f"{entry.name}-{width}.png"
                    page.screenshot(path=str(path))
                    made.append(path)
            finally:
                context.close()
    return made


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DOCS, help="where the PNGs go")
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    # the browser the tests use, as tests/manager/conftest.py launches it (by its path:
    # tests/concentrator has a conftest module too)
    spec = importlib.util.spec_from_file_location("manager_conftest", HERE / "conftest.py")
    assert spec is not None and spec.loader is not None
    fixtures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixtures)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(fixtures.CHROMIUM), headless=True,
                                    args=fixtures.CHROMIUM_ARGS)
        try:
            made = take(browser, args.out)
        finally:
            browser.close()
    big = [p for p in made if p.stat().st_size >= DOC_LIMIT]
    for path in made:
        print(f"{path} {path.stat().st_size // 1000} kB")
    if big:
        print(f"over {DOC_LIMIT // 1000} kB: {', '.join(p.name for p in big)}", file=sys.stderr)
    return 1 if big else 0


if __name__ == "__main__":
    raise SystemExit(main())
