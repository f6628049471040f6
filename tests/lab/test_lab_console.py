"""`vpnhub lab up` gives the web console from this machine in one step (issue 11 point 11).

The lab makes a manager account with a random password, forwards a port of this
machine's loopback to the manager inside the concentrator's namespace, and
prints both; `vpnhub lab console` prints them again. The test logs in like a
browser from the ROOT namespace, at the printed URL with the printed
credentials, and reads the lab's sessions; `lab down` leaves nothing behind.
"""

from __future__ import annotations

import http.cookiejar
import re
import socket
import stat
import urllib.error
import urllib.parse
import urllib.request

import pytest
from netns_util import assert_nothing_left, require_tools
from test_lab_cli import LAB_TOOLS, daemon_of, lab, new_in_root, reap_orphans, root_state, show
from test_topology import subreaper

from vpnhub.lab.labctl import STATE_FILE, run_dir_for

CONSOLE = re.compile(r"^  open +(?P<url>\S+)\n  user +(?P<user>\S+)\n  password +(?P<pw>\S+)$",
                     re.MULTILINE)


def browser_login(url: str, user: str, password: str) -> tuple[int, str, str]:
    """The login form as a browser submits it; returns (status, final URL, page)."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(url, timeout=30) as r:  # -> /sessions -> /login?next=/sessions
        form = r.read().decode()
    token = re.search(r'name="login_token" value="([^"]+)"', form)
    assert token is not None, form[:500]
    body = urllib.parse.urlencode({"login_token": token.group(1), "username": user,
                                   "password": password, "next": "/sessions"}).encode()
    try:
        with opener.open(urllib.parse.urljoin(url, "/login"), data=body, timeout=30) as r:
            return r.status, r.geturl(), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.geturl(), e.read().decode()


@pytest.mark.netns
def test_console_of_the_running_lab_from_this_machine(lab_prefix: str) -> None:
    require_tools(*LAB_TOOLS)
    p = ["--prefix", lab_prefix]
    before = root_state()
    daemon = (0, 0)
    with subreaper():
        try:
            up = lab("up", *p)
            if run_dir_for(lab_prefix).exists():
                daemon = daemon_of(lab_prefix)
            assert up.returncode == 0, show(up)
            printed = CONSOLE.search(up.stdout)
            assert printed is not None, up.stdout
            url, user, password = printed["url"], printed["user"], printed["pw"]
            assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", url), url
            port = int(url.rsplit(":", 1)[1].rstrip("/"))

            again = lab("console", *p)
            assert again.returncode == 0, show(again)
            shown = CONSOLE.search(again.stdout)
            assert shown is not None and (shown["url"], shown["user"], shown["pw"]) == (
                url, user, password), again.stdout
            secret = run_dir_for(lab_prefix) / "console.json"
            assert stat.S_IMODE(secret.stat().st_mode) == 0o600
            assert password not in (run_dir_for(lab_prefix) / STATE_FILE).read_text()

            status, final, page = browser_login(url, user, password)
            assert status == 200 and final == urllib.parse.urljoin(url, "/sessions"), final
            assert "Remote Access Sessions" in page
            for u in ("vpnuser1", "vpnuser2"):
                assert f'data-user="{u}"' in page, page[:2000]
            assert page.count('class="public" data-ip="203.0.113.78"') == 2
            # a wrong password does not get in
            status, _, page = browser_login(url, user, password + "x")
            assert status == 401 and "Login failed." in page
        finally:
            down = lab("down", *p)
            reap_orphans()
    assert down.returncode == 0, show(down)
    with pytest.raises(OSError):  # the forwarded port is closed with the lab
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert not run_dir_for(lab_prefix).exists()
    assert not new_in_root(before, lab_prefix)
    assert_nothing_left(lab_prefix, (daemon[0],))
