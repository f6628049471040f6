"""The manager's HTTP layer against a fake concentrator: logins, refusals, CSRF, pages, API,
live tail, metrics."""

from __future__ import annotations

import ipaddress
import json
import platform
import re
import socket
import subprocess
import time
import urllib.parse
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from manager_fakes import ADMIN, ADMIN_PASSWORD, GROUP_PSK, USER_PASSWORD, ManagerServer

import vpnhub
from vpnhub.eventlog import EventFilter
from vpnhub.ike import events as ev
from vpnhub.ike.dhpool import DhPool
from vpnhub.manager import openapi
from vpnhub.manager.app import build_app
from vpnhub.manager.throttle import LoginThrottle
from vpnhub.net.stats import DataplaneStats, Traffic

SID = "0" * 32
JSON = {"Content-Type": "application/json"}


def routes(server: ManagerServer) -> list[tuple[str, str]]:
    """Every (method, path) the manager serves, with a real session id filled in."""
    assert server.manager is not None
    sid = server.manager.view.listed()[0].key
    real = sid[0].hex() + sid[1].hex()
    out = []
    for route in build_app(server.manager).router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter") or info.get("prefix")
        if route.method == "HEAD" or not path:
            continue
        out.append((route.method, str(path).replace("{sid}", real)))
    return out


def with_sessions(server: ManagerServer) -> ManagerServer:
    server.run(lambda: server.conc.add_session("vpnuser1", 1025))
    server.run(lambda: server.conc.add_session("vpnuser2", 1026))
    return server


def form_login(server: ManagerServer) -> tuple[str, str]:
    """Log in with the form like a browser; returns (cookie header, CSRF token)."""
    page = server.request("GET", "/login")
    token = re.search(r'name="login_token" value="([^"]+)"', page.text)
    assert token is not None
    login_cookie = page.headers["Set-Cookie"].split(";")[0]
    r = server.request("POST", "/login", body=urlencode({
        "login_token": token.group(1), "username": ADMIN, "password": ADMIN_PASSWORD,
        "next": "/events"}).encode(), headers={
        "Cookie": login_cookie, "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 303 and r.headers["Location"] == "/events", r.text
    cookie = r.headers["Set-Cookie"].split(";")[0]
    assert "HttpOnly" in r.headers["Set-Cookie"] and "SameSite=Strict" in r.headers["Set-Cookie"]
    page = server.request("GET", "/sessions", headers={"Cookie": cookie})
    assert page.status == 200
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    return cookie, csrf.group(1)


def test_nothing_without_a_login(server: ManagerServer) -> None:
    with_sessions(server)
    served = routes(server)
    assert len(served) >= 20
    for method, path in served:
        if path in ("/login", "/api/v1/login") or path.startswith("/static"):
            continue
        body = b"{}" if method in ("POST", "PUT") else None
        r = server.request(method, path, body=body, headers=JSON if body else None)
        if path.startswith("/api/") or path == "/metrics":
            assert r.status == 401, (method, path, r.status)
            assert r.json()["error"].startswith("authentication required")
            assert "Basic" not in r.headers.get("WWW-Authenticate", "")
        else:
            assert r.status == 303 and r.headers["Location"].startswith("/login"), (method, path)
    for path in ("/nonexistent", "/api/v1/nonexistent", "/sessions/" + SID):
        assert server.request("GET", path).status in (303, 401)
    bad = {"Authorization": "Bearer not-a-token"}
    assert server.request("GET", "/api/v1/sessions", headers=bad).status == 401
    assert server.request("GET", "/api/v1/sessions",
                          headers={"Authorization": "Basic !!!"}).status == 401
    assert server.manager is not None and server.manager.view.listed()  # nobody logged out


def test_wrong_password_refused_logged_and_slowed(tmp_path: Path) -> None:
    lockout = LoginThrottle(max_failures=3, lockout_seconds=60, retry_delay=0.3,
                            max_retry_delay=1.0)
    server = ManagerServer(tmp_path, lockout=lockout).start()
    try:
        wrong = json.dumps({"username": ADMIN, "password": "wrong-Password-1"}).encode()
        times = []
        for _ in range(3):
            t0 = time.monotonic()
            r = server.request("POST", "/api/v1/login", body=wrong, headers=JSON)
            times.append(time.monotonic() - t0)
            assert r.status == 401 and "token" not in r.json()
        assert times[0] >= 0.3 and times[1] >= 0.6 and times[2] >= 0.99, times
        # locked from this address: even the right password is refused now
        right = json.dumps({"username": ADMIN, "password": ADMIN_PASSWORD}).encode()
        assert server.request("POST", "/api/v1/login", body=right, headers=JSON).status == 401
        assert server.request("GET", "/api/v1/sessions",
                              basic=(ADMIN, ADMIN_PASSWORD)).status == 401
        # ... but only from this address
        assert server.request("POST", "/api/v1/login", body=right, headers=JSON,
                              source="127.0.0.2").status == 200
        failed = server.log.query(EventFilter(classes=frozenset({"AUTH"}), text="FAILED"))
        assert sum(r.repeat for r in failed) >= 4
        assert "wrong password" in failed[0].text and "127.0.0.1" in failed[0].text
        assert any("locked out" in r.text for r in failed)
        assert all("wrong-Password-1" not in r.text for r in server.log.records)
    finally:
        server.stop()


def test_attacker_elsewhere_cannot_lock_the_admin_out(tmp_path: Path) -> None:
    """Issue 11 point 9: five wrong passwords from one address used to lock the admin
    out everywhere. Now only the (name, address) pair is locked."""
    lockout = LoginThrottle(max_failures=5, lockout_seconds=300, retry_delay=0.01,
                            max_retry_delay=0.16)
    server = ManagerServer(tmp_path, lockout=lockout).start()
    try:
        wrong = json.dumps({"username": ADMIN, "password": "guess"}).encode()
        right = json.dumps({"username": ADMIN, "password": ADMIN_PASSWORD}).encode()
        for _ in range(8):  # the attacker, on 127.0.0.2
            r = server.request("POST", "/api/v1/login", body=wrong, headers=JSON,
                               source="127.0.0.2")
            assert r.status == 401
        # the attacker's own address is locked out of the name, even with the password
        assert server.request("POST", "/api/v1/login", body=right, headers=JSON,
                              source="127.0.0.2").status == 401
        # the real administrator, from another address, logs in at once: form and API
        assert server.request("POST", "/api/v1/login", body=right, headers=JSON).status == 200
        form_login(server)
        failed = server.log.query(EventFilter(classes=frozenset({"AUTH"}), text="FAILED"))
        assert any("127.0.0.2" in r.text and "locked out" in r.text for r in failed)
    finally:
        server.stop()


def test_form_login_csrf_and_logout(server: ManagerServer) -> None:
    with_sessions(server)
    cookie, csrf = form_login(server)
    sid = server.request("GET", "/api/v1/sessions", headers={"Cookie": cookie}).json()[
        "sessions"][0]["id"]
    form = {"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"}
    # a form without the token, or with another one, or from another site: refused
    for body, extra in ((b"", {}), (b"csrf=nope", {}),
                        (f"csrf={csrf}".encode(), {"Origin": "http://evil.example"})):
        r = server.request("POST", f"/sessions/{sid}/logout", body=body,
                           headers={**form, **extra})
        assert r.status == 403
    assert len(server.request("GET", "/api/v1/sessions", headers={"Cookie": cookie}).json()[
        "sessions"]) == 2
    # the API with the cookie needs the header too
    put = json.dumps({"ipsec_over_natt": False}).encode()
    assert server.request("PUT", "/api/v1/nat-transparency", body=put,
                          headers={"Cookie": cookie, **JSON}).status == 403
    r = server.request("PUT", "/api/v1/nat-transparency", body=put,
                       headers={"Cookie": cookie, "X-CSRF-Token": csrf, **JSON})
    assert r.status == 200 and r.json()["ipsec_over_natt"] is False and r.json()["changed"]
    assert server.conc.natt_enabled is False
    # the right token but not confirmed (no script): a confirmation page, nobody out
    r = server.request("POST", f"/sessions/{sid}/logout", body=f"csrf={csrf}".encode(),
                       headers=form)
    assert r.status == 200 and 'id="logout-confirm"' in r.text and "vpnuser1" in r.text
    assert 'name="confirm" value="1"' in r.text
    assert len(server.request("GET", "/api/v1/sessions", headers={"Cookie": cookie}).json()[
        "sessions"]) == 2
    # confirmed: the user is logged out, and the Sessions page says so, once
    r = server.request("POST", f"/sessions/{sid}/logout",
                       body=f"csrf={csrf}&confirm=1".encode(), headers=form)
    assert r.status == 303 and r.headers["Location"] == "/sessions"
    page = server.request("GET", "/sessions", headers={"Cookie": cookie}).text
    assert 'class="action-result ok"' in page and "vpnuser1 logged out" in page
    again = server.request("GET", "/sessions", headers={"Cookie": cookie}).text
    assert "action-result" not in again
    left = server.request("GET", "/api/v1/sessions", headers={"Cookie": cookie}).json()
    assert [s["user"] for s in left["sessions"]] == ["vpnuser2"]
    admin = [r.text for r in server.log.query(EventFilter(classes=frozenset({"ADMIN"})))]
    assert any("logout of vpnuser1 by administrator admin" in t for t in admin)
    assert any("NAT-T DISABLED by administrator admin" in t for t in admin)
    # sign out: the cookie is dead
    r = server.request("POST", "/logout", body=f"csrf={csrf}".encode(), headers=form)
    assert r.status == 303 and r.headers["Location"] == "/login"
    assert server.request("GET", "/sessions", headers={"Cookie": cookie}).status == 303


def test_login_form_needs_its_token(server: ManagerServer) -> None:
    body = urlencode({"login_token": "x" * 32, "username": ADMIN,
                      "password": ADMIN_PASSWORD}).encode()
    r = server.request("POST", "/login", body=body,
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 400 and "Set-Cookie" in r.headers and "vpnhub_session" not in str(
        r.headers)


@pytest.mark.parametrize("target", [
    "//evil.example/", "/%09/evil.example/", "/%0a/evil.example/", "/%0d%0a/evil.example/",
    "/\\evil.example/", "/%5Cevil.example/", "%2F%2Fevil.example/", "/%2509/evil.example/",
    "/%2F/evil.example/", "https://evil.example/", "javascript:alert(1)", "%20/sessions",
    "/%20/evil.example/", "/%e2%80%8b/evil.example/", "evil.example"])
def test_open_redirect_is_not_possible(server: ManagerServer, target: str) -> None:
    """`next` after the login: a path of this site only; anything a browser could read
    as another host (tabs and newlines stripped, backslash as slash) goes home."""
    page = server.request("GET", "/login?next=" + target)
    assert 'name="next" value="/sessions"' in page.text, target
    decoded = urllib.parse.unquote(target)
    r = form_post_login(server, decoded)
    assert r.status == 303 and r.headers["Location"] == "/sessions", (target, r.headers)


def test_same_site_next_is_kept(server: ManagerServer) -> None:
    page = server.request("GET", "/login?next=/events%3Fclass%3DAUTH")
    assert 'name="next" value="/events?class=AUTH"' in page.text
    r = form_post_login(server, "/sessions/" + SID)
    assert r.status == 303 and r.headers["Location"] == "/sessions/" + SID


def form_post_login(server: ManagerServer, next_url: str) -> Any:
    page = server.request("GET", "/login")
    token = re.search(r'name="login_token" value="([^"]+)"', page.text)
    assert token is not None
    return server.request("POST", "/login", body=urlencode({
        "login_token": token.group(1), "username": ADMIN, "password": ADMIN_PASSWORD,
        "next": next_url}).encode(), headers={
        "Cookie": page.headers["Set-Cookie"].split(";")[0],
        "Content-Type": "application/x-www-form-urlencoded"})


def test_hsts_only_over_tls(server: ManagerServer, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    (tmp_path / "tls").mkdir()
    tls = ManagerServer(tmp_path / "tls", tls=(cert, key)).start()
    try:
        assert tls.base.startswith("https://")
        for path in ("/login", "/api/v1/sessions", "/static/manager.css"):
            r = tls.request("GET", path)
            assert r.headers.get("Strict-Transport-Security") == "max-age=31536000", path
            assert r.headers["X-Frame-Options"] == "DENY"
            assert r.headers["X-Content-Type-Options"] == "nosniff"
            assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
    finally:
        tls.stop()
    # plain HTTP: an HSTS header there is ignored by browsers (RFC 6797 8.1), so none
    assert "Strict-Transport-Security" not in server.request("GET", "/login").headers


def test_sessions_page_shows_the_real_login_time(server: ManagerServer) -> None:
    """Issue 11 point 10: the Login Time column showed the time of the page view."""
    def old_login() -> float:
        # logged in 1 h 2 min 5 s ago
        s = server.conc.add_session("vpnuser1", 1025, login_time=time.time() - 3725)
        return s.login_time

    login = server.run(old_login)
    cookie, _ = form_login(server)
    shown = time.strftime("%b %d %H:%M:%S", time.localtime(int(login)))
    for _ in range(2):  # the same on every refresh
        page = server.request("GET", "/sessions?partial=1", headers={"Cookie": cookie})
        row = re.search(r'<tr data-session="[0-9a-f]+" data-user="vpnuser1">.*?</tr>', page.text)
        assert row is not None and shown in row.group(0), (shown, row)
        time.sleep(1.1)


def test_pages_render(server: ManagerServer) -> None:
    with_sessions(server)
    server.run(lambda: server.conc.add_session(
        "vpnuser3", 1027, nat_t=False, legacy=True,
        diagnosis="NAT-T is off: the client is behind NAT, no data will pass"))
    cookie, csrf = form_login(server)
    h = {"Cookie": cookie}
    page = server.request("GET", "/sessions", headers=h)
    assert page.status == 200
    assert page.text.count('class="public" data-ip="203.0.113.78"') == 3
    assert 'data-kind="legacy_crypto"' in page.text and "no data will pass" in page.text
    assert "Content-Security-Policy" in page.headers and "<script>" not in page.text
    sid = server.request("GET", "/api/v1/sessions", headers=h).json()["sessions"][0]["id"]
    detail = server.request("GET", f"/sessions/{sid}", headers=h)
    assert detail.status == 200 and 'data-field="udp_dst_port">4500<' in detail.text
    assert server.request("GET", f"/sessions/{sid}?partial=1", headers=h).status == 200
    assert server.request("GET", f"/sessions/{SID}", headers=h).status == 404
    ping = server.request("POST", f"/sessions/{sid}/ping", body=f"csrf={csrf}".encode(),
                          headers={**h, "Content-Type": "application/x-www-form-urlencoded"})
    assert ping.status == 200 and 'data-alive="yes"' in ping.text
    events = server.request("GET", "/events?class=ADMIN&severity_min=1&severity_max=13&peer="
                                   "&since=&text=ping", headers=h)
    assert events.status == 200 and "by administrator admin: 3 of 3 answered" in events.text
    bad = server.request("GET", "/events?severity_min=9&severity_max=2", headers=h)
    assert bad.status == 400 and "severity_min 9 is above severity_max 2" in bad.text
    natt = server.request("GET", "/settings/nat-transparency", headers=h)
    assert natt.status == 200 and 'id="natt" name="ipsec_over_natt" value="on" checked' in \
        natt.text
    # a LAN-to-LAN tunnel has its own table and detail page
    def site() -> str:
        s = server.conc.add_session("", 4500, lan_to_lan="branch-office")
        return s.key[0].hex() + s.key[1].hex()

    site_id = server.run(site)
    page = server.request("GET", "/sessions", headers=h)
    assert f'data-session="{site_id}" data-site="branch-office"' in page.text
    assert page.text.count("<tr data-session=") == 4
    api = server.request("GET", "/api/v1/sessions", headers=h).json()
    assert [x["lan_to_lan"] for x in api["lan_to_lan"]] == ["branch-office"]
    assert len(api["sessions"]) == 3
    assert "branch-office" in server.request("GET", f"/sessions/{site_id}", headers=h).text
    # values are escaped: a user name with markup stays text
    server.run(lambda: server.conc.add_session("<b>x</b>", 1030))
    assert "<b>x</b>" not in server.request("GET", "/sessions", headers=h).text
    assert server.request("GET", "/static/manager.js").status == 200


def test_bearer_api_and_ping(server: ManagerServer) -> None:
    with_sessions(server)
    auth = {"Authorization": f"Bearer {server.token()}"}
    data = server.request("GET", "/api/v1/sessions", headers=auth).json()
    assert data["summary"]["active_remote_access"] == 2
    s = data["sessions"][0]
    assert (s["public_ip"], s["protocol"], s["ipsec"][0]["udp_dst_port"]) == (
        "203.0.113.78", "IPsec/NAT-T", 4500)
    r = server.request("POST", f"/api/v1/sessions/{s['id']}/ping", headers=auth)
    assert r.status == 200 and r.json()["alive"] is True
    ipaddress.IPv4Address(r.json()["address"])
    assert server.request("POST", f"/api/v1/sessions/{SID}/logout", headers=auth).status == 404
    r = server.request("POST", f"/api/v1/sessions/{s['id']}/logout", headers=auth)
    assert r.json() == {"logged_out": True, "user": s["user"]}
    assert server.request("POST", "/api/v1/logout", headers=auth).json() == {"logged_out": True}
    assert server.request("GET", "/api/v1/sessions", headers=auth).status == 401


def test_events_api_filters_and_limits(server: ManagerServer) -> None:
    server.run(lambda: server.log.add("NATT", 4, "NAT-Traversal successfully negotiated",
                                      peer="203.0.113.78:1025", group="vpngroup"))
    auth = {"Authorization": f"Bearer {server.token()}"}
    r = server.request("GET", "/api/v1/events?class=natt,IKE&peer=203.0.113.78&limit=5",
                       headers=auth)
    assert r.status == 200
    [e] = r.json()["events"]
    assert (e["class"], e["peer_address"], e["peer_port"], e["repeat"]) == (
        "NATT", "203.0.113.78", 1025, 1)
    for bad in ("class=NOPE", "severity_min=0", "limit=0", "limit=x", "since=yesterday",
                "text=%01"):
        assert server.request("GET", f"/api/v1/events?{bad}", headers=auth).status == 400, bad


def test_live_tail(server: ManagerServer) -> None:
    token = server.token()
    host, port = server.base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"GET /api/v1/events/stream?class=ADMIN&severity_max=5 HTTP/1.1\r\n"
                     f"Host: {host}:{port}\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += sock.recv(4096)
        assert buf.startswith(b"HTTP/1.1 200") and b"text/event-stream" in buf
        server.run(lambda: server.log.add("ADMIN", 4, "tail me"))
        server.run(lambda: server.log.add("IKE", 4, "not this class"))
        deadline = time.monotonic() + 10
        while b"tail me" not in buf and time.monotonic() < deadline:
            buf += sock.recv(4096)
    events = [json.loads(line[6:]) for line in buf.decode().splitlines()
              if line.startswith("data: ")]
    assert events[-1]["text"] == "tail me"
    assert all(e["class"] == "ADMIN" for e in events)


def test_metrics(server: ManagerServer) -> None:
    with_sessions(server)
    assert server.manager is not None
    view = server.manager.view

    class SA:  # the view keeps its own per-SA marks: any object will do
        pass

    ok, failed, timeout = SA(), SA(), SA()
    p1 = ev.Phase1Established("AES-256", "SHA1", "MODP_2048", "PSK+XAUTH", "Aggressive",
                              86400, "vpngroup", ())

    def feed() -> None:
        for sa, e in ((ok, ev.LogLine("IKEDECODE", 8, "RECEIVED")), (ok, p1),
                      (failed, ev.NegotiationFailed("no_proposal_chosen", "no match")),
                      (failed, ev.SADeleted("no_proposal_chosen", False)),
                      (timeout, ev.SADeleted("negotiation timed out", False)),
                      (ok, ev.SADeleted("deleted by peer", True))):
            server.manager.on_ike_event(sa, e)  # type: ignore[union-attr]

    server.run(feed)
    assert (view.handshakes.started, view.handshakes.completed) == (3, 1)
    pool = DhPool({19: 4})  # the DH pool's level (issue 13): 3 made, 1 taken, 1 missed
    pool.fill(3)
    pool.take(19)
    pool.take(14)
    server.conc.endpoint.dh_pool = pool  # type: ignore[attr-defined]
    text = server.request("GET", "/metrics", basic=(ADMIN, ADMIN_PASSWORD))
    assert text.status == 200 and text.headers["Content-Type"].startswith("text/plain")
    body = text.text
    for line in ('vpnhub_sessions{protocol="IPsec/NAT-T"} 2',
                 "vpnhub_handshakes_started_total 3", "vpnhub_handshakes_completed_total 1",
                 'vpnhub_handshakes_failed_total{reason="no_proposal_chosen"} 1',
                 'vpnhub_handshakes_failed_total{reason="negotiation_timed_out"} 1',
                 'vpnhub_drops_total{layer="ike",reason="unknown_cookie"} 3',
                 'vpnhub_pool_addresses{group="vpngroup",state="in_use"} 2',
                 'vpnhub_pool_addresses{group="vpngroup",state="size"} 254',
                 'vpnhub_dh_pool_pairs{group="19",state="ready"} 2',
                 'vpnhub_dh_pool_pairs{group="19",state="size"} 4',
                 "vpnhub_dh_pool_taken_total 1", "vpnhub_dh_pool_missed_total 1",
                 "vpnhub_natt_enabled 1"):
        assert line in body.splitlines(), line
    for line in body.splitlines():  # the exposition format, line by line
        assert line.startswith("# ") or re.fullmatch(
            r'[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? -?\d+(\.\d+)?', line), line
    assert len(scrape(server)) >= 20  # and prometheus_client's parser takes it all


def scrape(server: ManagerServer) -> dict[str, Any]:
    """/metrics through prometheus_client's own parser: {family name: family}."""
    from prometheus_client.parser import text_string_to_metric_families

    r = server.request("GET", "/metrics", basic=(ADMIN, ADMIN_PASSWORD))
    assert r.status == 200
    return {f.name: f for f in text_string_to_metric_families(r.text)}


def test_metrics_counters_zeroed_failures_and_build_info(server: ManagerServer) -> None:
    """Issue 11 point 10: ESP traffic as counters (`_total`, for rate()), every known
    failure reason a series at 0 before the first failure, a build-info metric."""
    fams = scrape(server)
    info = fams["vpnhub_build_info"]
    assert [(s.labels, s.value) for s in info.samples] == [
        ({"version": vpnhub.__version__, "python": platform.python_version()}, 1.0)]
    failed = {s.labels["reason"]: s.value for s in fams["vpnhub_handshakes_failed"].samples}
    for reason in ("no_proposal_chosen", "hash_mismatch", "phase1_timeout"):
        assert failed.get(reason) == 0.0, (reason, failed)
    drops = {(s.labels["layer"], s.labels["reason"]): s.value
             for s in fams["vpnhub_drops"].samples}
    for key in (("ike", "half_open_per_source"), ("esp", "auth_failed"), ("esp", "replay"),
                ("esp", "unknown_spi")):
        assert drops.get(key) == 0.0, (key, drops)
    for name in ("vpnhub_esp_bytes", "vpnhub_esp_packets"):
        fam = fams[name]
        assert fam.type == "counter", (name, fam.type)
        assert {s.name for s in fam.samples} == {name + "_total"}
        assert {s.labels["direction"] for s in fam.samples} == {"rx", "tx"}
    # the data plane's running totals (live + ended SAs) are what is exported
    assert server.manager is not None
    server.manager.view.snapshot = DataplaneStats(esp_totals=Traffic(1500, 12, 700, 9))
    fams = scrape(server)
    got = {(s.name, s.labels["direction"]): s.value
           for n in ("vpnhub_esp_bytes", "vpnhub_esp_packets") for s in fams[n].samples}
    assert got == {("vpnhub_esp_bytes_total", "rx"): 1500, ("vpnhub_esp_bytes_total", "tx"): 700,
                   ("vpnhub_esp_packets_total", "rx"): 12,
                   ("vpnhub_esp_packets_total", "tx"): 9}


def test_metrics_system_calls_per_packet(server: ManagerServer) -> None:
    """Issue 16: the UDP calls and the datagrams they carried, by direction; GSO
    fallbacks, ESP handed over by the IKE socket, whether GRO and GSO are on."""
    assert server.manager is not None
    server.manager.view.snapshot = DataplaneStats(
        udp_rx_calls=10, udp_rx_datagrams=300, udp_tx_calls=5, udp_tx_datagrams=200,
        gso_fallbacks=1, esp_via_ike_socket=7, moderation_waits=5, udp_gro=True, udp_gso=False,
        tun_rx_calls=40, tun_rx=90, tun_tx_calls=30, tun_tx=300, tun_rx_super=3,
        tun_tx_super=25, tun_offload=True)
    fams = scrape(server)
    calls = {s.labels["direction"]: s.value for s in fams["vpnhub_dataplane_udp_calls"].samples}
    grams = {s.labels["direction"]: s.value
             for s in fams["vpnhub_dataplane_udp_datagrams"].samples}
    assert calls == {"rx": 10, "tx": 5} and grams == {"rx": 300, "tx": 200}
    assert fams["vpnhub_dataplane_gso_fallbacks"].samples[0].value == 1
    assert fams["vpnhub_dataplane_moderation_waits"].samples[0].value == 5
    assert fams["vpnhub_dataplane_esp_via_ike_socket"].samples[0].value == 7
    active = {s.labels["offload"]: s.value
              for s in fams["vpnhub_dataplane_offload_active"].samples}
    assert active == {"udp_gro": 1, "udp_gso": 0, "tun_vnet_hdr": 1}
    tun = {name: {s.labels["direction"]: s.value for s in fams[name].samples}
           for name in ("vpnhub_dataplane_tun_calls", "vpnhub_dataplane_tun_packets",
                        "vpnhub_dataplane_tun_super_packets")}
    assert tun == {"vpnhub_dataplane_tun_calls": {"rx": 40, "tx": 30},
                   "vpnhub_dataplane_tun_packets": {"rx": 90, "tx": 300},
                   "vpnhub_dataplane_tun_super_packets": {"rx": 3, "tx": 25}}


def test_pool_nearly_exhausted_banner(tmp_path: Path) -> None:
    server = ManagerServer(tmp_path, natt=True).start()
    try:
        pool = server.conc.pools["vpngroup"]
        server.run(lambda: [pool.allocate(("k", i)) for i in range(240)])
        auth = {"Authorization": f"Bearer {server.token()}"}
        kinds = [w["kind"] for w in server.request("GET", "/api/v1/warnings",
                                                   headers=auth).json()["warnings"]]
        assert kinds == ["pool_nearly_exhausted"]
    finally:
        server.stop()


def test_no_secret_in_any_answer(server: ManagerServer) -> None:
    with_sessions(server)
    cookie, _ = form_login(server)
    blobs = [server.request("GET", p, headers={"Cookie": cookie}).body
             for p in ("/sessions", "/events", "/api/v1/events", "/api/v1/sessions",
                       "/metrics", "/settings/nat-transparency")]
    for blob in blobs:
        for secret in (GROUP_PSK, USER_PASSWORD, ADMIN_PASSWORD):
            assert secret.encode() not in blob


def test_openapi_yaml_is_generated_from_the_code() -> None:
    pytest.importorskip("yaml")
    doc = Path(__file__).parents[2] / "docs" / "openapi.yaml"
    assert doc.read_text() == openapi.to_yaml(), \
        "docs/openapi.yaml is stale: python -m vpnhub.manager.openapi > docs/openapi.yaml"
