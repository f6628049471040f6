"""The Status page's ring and its JSON (vpnhub.manager.statushistory, issue 15)."""

from __future__ import annotations

import json
import re
from collections import Counter

from manager_fakes import ManagerServer
from test_manager_http import form_login, with_sessions

from vpnhub.manager.statushistory import KEEP, Reading, StatusRing, read
from vpnhub.net.stats import DataplaneStats, Traffic


def _r(sessions: int, rx: int, tx: int = 0, done: int = 0, drops: dict[str, int] | None = None,
       ) -> Reading:
    return Reading(sessions=sessions, rx_bytes=rx, tx_bytes=tx, handshakes_completed=done,
                   drops=drops or {})


def test_the_ring_keeps_gauges_and_turns_counters_into_rates() -> None:
    ring = StatusRing(keep=4)
    ring.add(100.0, _r(1, 0, done=1))
    ring.add(110.0, _r(2, 12_500, 25_000, done=3, drops={"ike/unknown_cookie": 2}))
    ring.add(120.0, _r(2, 12_500, 25_000, done=3, drops={"ike/unknown_cookie": 5}))
    h = ring.history()
    assert h["times"] == [100.0, 110.0, 120.0] and h["sessions"] == [1, 2, 2]
    assert h["rx_bps"] == [None, 10_000.0, 0.0]  # 12,500 bytes in 10 s: 10 kbit/s
    assert h["tx_bps"] == [None, 20_000.0, 0.0]
    assert h["handshakes_per_s"] == [None, 0.2, 0.0]
    # a reason first seen at the second sample was 0 before it
    assert h["drops"] == {"ike/unknown_cookie": [0, 2, 3]}
    assert h["samples"] == 3 and h["keep"] == 4 and h["interval"] == 10.0


def test_the_ring_is_fixed_size_and_forgets_the_oldest() -> None:
    ring = StatusRing(keep=3)
    for i in range(7):
        ring.add(float(i), _r(i, 100 * i))
    h = ring.history()
    assert len(ring) == 3 and ring.taken == 7
    assert h["times"] == [4.0, 5.0, 6.0] and h["sessions"] == [4, 5, 6]
    assert h["rx_bps"] == [None, 800.0, 800.0]


def test_a_counter_that_went_down_is_no_traffic_and_quiet_reasons_are_left_out() -> None:
    ring = StatusRing(keep=2)
    ring.add(0.0, _r(0, 5000, drops={"esp/replay": 1}))
    ring.add(10.0, _r(0, 100, drops={"esp/replay": 1}))  # the data plane restarted
    h = ring.history()
    assert h["rx_bps"] == [None, 0.0]
    # the first sample's drops are those since start (the manager's first tick)
    assert h["drops"] == {"esp/replay": [1, 0]}
    ring.add(20.0, _r(0, 100, drops={"esp/replay": 1}))  # wrapped: the first is gone
    assert ring.history()["drops"] == {}  # no drop in the window: nothing to draw


def test_the_default_ring_is_an_hour_of_10_s_samples() -> None:
    assert KEEP == 360


def test_status_history_http_etag_and_the_metrics_agree(server: ManagerServer) -> None:
    with_sessions(server)
    m = server.manager
    assert m is not None
    token = server.token()
    auth = {"Authorization": f"Bearer {token}"}
    assert server.request("GET", "/api/v1/status/history").status == 401
    assert m._ticker is not None
    server.run(m._ticker.cancel)  # only this test's samples in the ring

    def sample(now: float) -> None:
        assert m is not None
        m.view.snapshot = DataplaneStats(esp_totals=Traffic(int(now) * 1000, 1, 500, 1))
        m.view.handshakes.completed = int(now)
        m.view.handshakes.failed = Counter({"hash_mismatch": 1})
        m.status.add(now, read(m.view))

    server.run(lambda: sample(1000.0))
    server.run(lambda: sample(1010.0))
    r = server.request("GET", "/api/v1/status/history", headers=auth)
    assert r.status == 200 and r.headers["Content-Type"].startswith("application/json")
    h = r.json()
    assert h["sessions"] == [2, 2]
    assert h["rx_bps"] == [None, 8000.0] and h["handshakes_per_s"] == [None, 1.0]
    # the fake endpoint's 3 unknown_cookie drops, there at the first sample
    assert h["drops"] == {"ike/unknown_cookie": [3, 0]}
    etag = r.headers["ETag"]
    assert etag == '"2"'
    again = server.request("GET", "/api/v1/status/history", headers={**auth,
                                                                      "If-None-Match": etag})
    assert again.status == 304 and again.body == b""
    server.run(lambda: sample(1020.0))
    fresh = server.request("GET", "/api/v1/status/history", headers={**auth,
                                                                      "If-None-Match": etag})
    assert fresh.status == 200 and len(fresh.json()["times"]) == 3
    # the ring read what /metrics exports, no second bookkeeping
    text = server.request("GET", "/metrics", headers=auth).text
    reading = server.run(lambda: read(m.view))
    assert f'vpnhub_esp_bytes_total{{direction="rx"}} {reading.rx_bytes}' in text
    assert f"vpnhub_handshakes_completed_total {reading.handshakes_completed}" in text
    assert f"vpnhub_ike_half_open {reading.half_open}" in text
    assert reading.drops == {"ike/unknown_cookie": 3}
    assert 'vpnhub_drops_total{layer="ike",reason="unknown_cookie"} 3' in text
    sessions = sum(int(n) for n in re.findall(r'^vpnhub_sessions\{protocol="[^"]+"\} (\d+)$',
                                               text, re.M))
    assert reading.sessions == sessions


def test_the_status_page_and_the_menu(server: ManagerServer) -> None:
    with_sessions(server)
    cookie, _ = form_login(server)
    page = server.request("GET", "/status", headers={"Cookie": cookie})
    assert page.status == 200
    text = page.text
    assert "<h1>Monitoring | Status</h1>" in text
    assert '<a href="/status" class=active>Status</a>' in text
    assert 'href="/metrics"' not in text.split("<main>")[0]  # not in the menu any more
    assert 'id="metrics-link"' in text  # but linked from the page, for machines
    for chart in ("sessions", "throughput", "handshakes", "half-open", "drops"):
        assert f'id="chart-{chart}"' in text
    assert 'data-history="/api/v1/status/history"' in text
    assert 'id="refresh-state"' in text
    assert json.dumps("No packet dropped in the last hour.")[1:-1] in text
    # the table of values now is the page's live region
    part = server.request("GET", "/status?partial=1", headers={"Cookie": cookie})
    assert part.status == 200 and part.text.startswith('<table class="kv status-now"')
    assert '<td data-field="sessions"><span title="2">2</span></td>' in part.text
    assert 'data-live="/status?partial=1"' in text


def test_the_menu_reaches_every_page_and_marks_the_one_shown(server: ManagerServer) -> None:
    """The merged console (issue 15): one menu on every signed-in page, with the
    Event Classes (Configuration | System | Events | Classes) and the Status page."""
    with_sessions(server)
    cookie, _ = form_login(server)
    menu = {"/sessions": "Sessions", "/events": "Filterable Event Log",
            "/config/events/classes": "Event Classes",
            "/settings/nat-transparency": "NAT Transparency", "/status": "Status"}
    for path, label in menu.items():
        page = server.request("GET", path, headers={"Cookie": cookie})
        assert page.status == 200, path
        nav = page.text.split("<nav>")[1].split("</nav>")[0]
        assert re.findall(r'<a href="([^"]+)"', nav) == list(menu), path
        assert f'<a href="{path}" class=active>{label}</a>' in nav, path
