"""The event log an operator navigates, saves and clears, and live class severities (issue 15):
keyset paging over 10,000 records, Save Log of a filtered range (text and CSV), Clear Log
(admin role, confirmed, logged), the Classes page (next event, kept across a restart)."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from manager_fakes import ADMIN, ADMIN_PASSWORD, ManagerServer
from test_manager_http import form_login

from vpnhub.auth.users import hash_password

T0 = 1_700_000_000.0
RECORDS = 10_000
MONITOR, MONITOR_PASSWORD = "watcher", "monitor-Pa55word"
MONITOR_USER = f"""
[[admin.user]]
name = "{MONITOR}"
password_hash = "{hash_password(MONITOR_PASSWORD, scheme="pbkdf2-sha256", iterations=1000)}"
role = "monitor"
"""
JSON = {"Content-Type": "application/json"}


class Clock:
    """One second per event from T0: record n (of the fill) was logged at T0 + n."""

    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


def iso(t: float) -> str:
    return datetime.fromtimestamp(t).astimezone().isoformat()


def fill(server: ManagerServer, n: int = RECORDS) -> list[int]:
    """`n` IKE records at T0+1 ... T0+n (one per second); their sequence numbers."""
    server.log.clock = Clock()

    def add() -> list[int]:
        out = []
        for i in range(1, n + 1):
            r = server.log.add("IKE", 4 + i % 3, f"phase 1 event {i}", peer=f"203.0.113.78:{i}")
            assert r is not None
            out.append(r.seq)
        server.log.flush()
        return out
    return list(server.run(add))


@pytest.fixture
def big(tmp_path: Path) -> Any:
    srv = ManagerServer(tmp_path, max_events=50_000, extra=MONITOR_USER).start()
    yield srv
    srv.stop()


def api(server: ManagerServer, path: str, **kw: Any) -> Any:
    r = server.request("GET", path, basic=(ADMIN, ADMIN_PASSWORD), **kw)
    assert r.status == 200, r.text
    return r.json()


def walk(server: ManagerServer, start: dict[str, Any], direction: str) -> list[list[int]]:
    """Follow the API's `direction` cursor ("next" or "previous") from `start` to the end."""
    base = {"class": "IKE", "limit": "500"}
    pages, query = [], start
    while query is not None:
        body = api(server, "/api/v1/events?" + urlencode({**base, **query}))
        pages.append([e["seq"] for e in body["events"]])
        query = body["cursors"][direction]
        assert len(pages) <= 25
    return pages


def test_paging_reaches_first_and_last_of_10000_both_ways(big: ManagerServer) -> None:
    seqs = fill(big)
    forward = walk(big, {"order": "oldest"}, "next")
    assert len(forward) == 20 and forward[0][:2] == seqs[:2] and forward[-1][-1] == seqs[-1]
    assert [s for page in forward for s in page] == seqs  # nothing lost, nothing twice
    backward = walk(big, {}, "previous")
    assert [s for page in reversed(backward) for s in page] == seqs
    last = api(big, "/api/v1/events?class=IKE&limit=500")
    assert last["cursors"] == {"previous": {"before_seq": seqs[-500]}, "next": None}
    first = api(big, "/api/v1/events?class=IKE&limit=500&order=oldest")
    assert first["cursors"]["previous"] is None
    assert first["cursors"]["next"] == {"after_seq": seqs[499], "order": "oldest"}


def test_cursor_round_trip_and_time_range(big: ManagerServer) -> None:
    seqs = fill(big, 2000)
    rng = {"class": "IKE", "since": iso(T0 + 101), "until": iso(T0 + 300), "limit": "50"}
    first = api(big, "/api/v1/events?" + urlencode({**rng, "order": "oldest"}))
    assert [e["seq"] for e in first["events"]] == seqs[100:150]
    second = api(big, "/api/v1/events?" + urlencode({**rng, **first["cursors"]["next"]}))
    assert [e["seq"] for e in second["events"]] == seqs[150:200]
    back = api(big, "/api/v1/events?" + urlencode({**rng, **second["cursors"]["previous"]}))
    assert back["events"] == first["events"]  # Next then Previous: the same page
    last = api(big, "/api/v1/events?" + urlencode(rng))
    assert [e["seq"] for e in last["events"]] == seqs[250:300]
    assert last["cursors"]["next"] is None


def test_the_page_keeps_filters_in_its_links(big: ManagerServer) -> None:
    seqs = fill(big, 1200)
    cookie, _ = form_login(big)
    page = big.request("GET", "/events?class=IKE&severity_min=4&limit=100&order=oldest",
                       headers={"Cookie": cookie}).text
    assert f'data-seq="{seqs[0]}"' in page and f'data-seq="{seqs[100]}"' not in page
    assert 'class="first off"' in page and 'class="prev off"' in page
    nxt = re.search(r'href="/events\?([^"]+)" class="next"', page)
    assert nxt is not None
    query = nxt.group(1).replace("&amp;", "&")
    assert "class=IKE" in query and "severity_min=4" in query and "limit=100" in query
    page2 = big.request("GET", "/events?" + query, headers={"Cookie": cookie}).text
    assert f'data-seq="{seqs[100]}"' in page2 and f'data-seq="{seqs[99]}"' not in page2
    last = big.request("GET", "/events?class=IKE&limit=100", headers={"Cookie": cookie}).text
    assert f'data-seq="{seqs[-1]}"' in last and 'class="next off"' in last
    assert 'id="save-text"' in last and 'id="clear-log"' in last
    assert big.request("GET", "/events?bogus=1", headers={"Cookie": cookie}).status == 400
    assert big.request("GET", "/api/v1/events?bogus=1",
                       basic=(ADMIN, ADMIN_PASSWORD)).status == 400


@pytest.mark.parametrize("fmt", ["text", "csv"])
def test_save_log_is_exactly_the_filtered_range(big: ManagerServer, fmt: str) -> None:
    seqs = fill(big, 3000)
    # severities 4, 5, 6 in turn: severity 5 to 6 of T0+401 .. T0+2000 is 1067 records,
    # more than two chunks of logsave.CHUNK
    rng = {"class": "IKE", "severity_min": "5", "since": iso(T0 + 401),
           "until": iso(T0 + 2000)}
    want = [s for i, s in enumerate(seqs, 1) if 401 <= i <= 2000 and 4 + i % 3 >= 5]
    r = big.request("GET", "/api/v1/events/save?" + urlencode({**rng, "format": fmt}),
                    basic=(ADMIN, ADMIN_PASSWORD))
    assert r.status == 200, r.text
    disposition = r.headers["Content-Disposition"]
    ext = "txt" if fmt == "text" else "csv"
    assert re.fullmatch(rf'attachment; filename="vpnhub-events-\d{{8}}T\d{{6}}Z\.{ext}"',
                        disposition), disposition
    if fmt == "text":
        heads = re.findall(r"^(\d+) \d\d/\d\d/\d{4} \d\d:\d\d:\d\d\.\d{3} SEV=(\d+) IKE/0"
                           r" RPT=1 203\.0\.113\.78$", r.text, re.M)
        got = [int(seq) for seq, _ in heads]
        assert {int(sev) for _, sev in heads} == {5, 6}
        assert r.text.count("\n") == 2 * len(want)  # head line and text, nothing else
    else:
        rows = list(csv.DictReader(io.StringIO(r.text)))
        got = [int(row["seq"]) for row in rows]
        assert rows[0]["text"].startswith("phase 1 event")
    assert got == want


def test_clear_log_admin_only_confirmed_and_logged(big: ManagerServer) -> None:
    fill(big, 500)
    monitor = (MONITOR, MONITOR_PASSWORD)
    r = big.request("POST", "/api/v1/events/clear", body=b'{"confirm": true}', headers=JSON,
                    basic=monitor)
    assert r.status == 403
    assert big.request("GET", "/api/v1/events?class=IKE&limit=1",
                       basic=monitor).json()["count"] == 1  # a monitor still reads
    refused = api(big, "/api/v1/events?class=ADMIN&text=refused")
    assert any(MONITOR in e["text"] for e in refused["events"])
    r = big.request("POST", "/api/v1/events/clear", body=b'{}', headers=JSON,
                    basic=(ADMIN, ADMIN_PASSWORD))
    assert r.status == 400 and "confirm" in r.json()["error"]
    r = big.request("POST", "/api/v1/events/clear", body=b'{"confirm": true}', headers=JSON,
                    basic=(ADMIN, ADMIN_PASSWORD))
    assert r.status == 200, r.text
    [left] = api(big, "/api/v1/events")["events"]
    assert left == r.json()["record"]
    assert re.fullmatch(r"event log cleared by admin from 127\.0\.0\.1: \d+ record\(s\)"
                        r" removed", left["text"]) and left["user"] == ADMIN
    assert int(left["text"].split(": ")[1].split()[0]) >= 500


def test_clear_log_form_asks_first(big: ManagerServer) -> None:
    fill(big, 10)
    cookie, csrf = form_login(big)
    form = {"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"}
    ask = big.request("GET", "/events/clear", headers={"Cookie": cookie})
    assert ask.status == 200 and 'name="confirm" value="yes"' in ask.text
    r = big.request("POST", "/events/clear", body=urlencode({"csrf": csrf}).encode(),
                    headers=form)
    assert r.status == 400 and api(big, "/api/v1/events?class=IKE")["count"] == 10
    r = big.request("POST", "/events/clear", body=urlencode(
        {"csrf": csrf, "confirm": "yes"}).encode(), headers=form)
    assert r.status == 303
    [left] = api(big, "/api/v1/events")["events"]
    assert left["text"].startswith("event log cleared by admin from 127.0.0.1: ")


def test_a_class_change_applies_to_the_next_event_and_survives_a_restart(
        tmp_path: Path) -> None:
    srv = ManagerServer(tmp_path, extra=MONITOR_USER).start()
    try:
        put = json.dumps({"console_severity": 1, "keep_severity": 2}).encode()
        r = srv.request("PUT", "/api/v1/events/classes/NATT", body=put, headers=JSON,
                        basic=(MONITOR, MONITOR_PASSWORD))
        assert r.status == 403
        r = srv.request("PUT", "/api/v1/events/classes/NATT", body=put, headers=JSON,
                        basic=(ADMIN, ADMIN_PASSWORD))
        assert r.status == 200 and r.json()["changed"] and r.json()["keep_severity"] == 2
        assert srv.run(lambda: srv.log.add("NATT", 4, "not kept any more")) is None
        assert srv.run(lambda: srv.log.add("NATT", 2, "still kept")) is not None
        [change] = api(srv, "/api/v1/events?class=ADMIN&text=event%20class")["events"]
        assert change["text"] == ("event class NATT changed by admin from 127.0.0.1: kept"
                                  " 1-9 -> 1-2, console 1 -> 1")
    finally:
        srv.stop()
    again = ManagerServer(tmp_path, extra=MONITOR_USER).start()
    try:
        classes = {c["class"]: c for c in api(again, "/api/v1/events/classes")["classes"]}
        assert (classes["NATT"]["keep_severity"], classes["NATT"]["set_at_run_time"]) == (2, True)
        assert (classes["IKE"]["keep_severity"], classes["IKE"]["set_at_run_time"]) == (9, False)
        assert again.run(lambda: again.log.add("NATT", 4, "after the restart")) is None
        cookie, csrf = form_login(again)
        page = again.request("GET", "/config/events/classes", headers={"Cookie": cookie}).text
        assert 'name="keep.NATT"' in page
        r = again.request("POST", "/config/events/classes", body=urlencode(
            {"csrf": csrf, "keep.NATT": "5", "console.NATT": "1"}).encode(), headers={
            "Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
        assert r.status == 303 and r.headers["Location"].endswith("changed=1")
        assert again.run(lambda: again.log.add("NATT", 4, "kept again")) is not None
    finally:
        again.stop()


def test_a_monitor_reads_but_changes_nothing(big: ManagerServer) -> None:
    monitor = (MONITOR, MONITOR_PASSWORD)
    s = big.run(lambda: big.conc.add_session("vpnuser1", 1025))
    sid = s.key[0].hex() + s.key[1].hex()
    assert big.request("GET", "/api/v1/sessions", basic=monitor).status == 200
    assert big.request("POST", f"/api/v1/sessions/{sid}/ping", basic=monitor).status == 200
    for method, path, body in (
            ("PUT", "/api/v1/nat-transparency", b'{"ipsec_over_natt": false}'),
            ("POST", f"/api/v1/sessions/{sid}/logout", b""),
            ("PUT", "/api/v1/events/classes/IKE", b'{"console_severity": 1,'
             b' "keep_severity": 1}'),
            # only a session's own ping route is open to a monitor, not any "/ping" path
            ("PUT", "/api/v1/events/classes/ping", b'{"console_severity": 1}'),
            ("POST", "/api/v1/logout/ping", b"")):
        r = big.request(method, path, body=body, headers=JSON, basic=monitor)
        assert r.status == 403 and "monitor" in r.json()["error"], (path, r.text)
    assert big.run(lambda: big.conc.natt_enabled) and big.log.levels("IKE") == (1, 9)
    assert len(big.run(lambda: big.conc.sessions.all())) == 1
    page = big.request("GET", "/config/events/classes", basic=monitor).text
    assert "<select" not in page and 'id="classes-form"' not in page
    assert 'id="clear-log"' not in big.request("GET", "/events", basic=monitor).text
