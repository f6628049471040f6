"""Readable numbers of the pages (vpnhub.manager.human, issue 15)."""

from __future__ import annotations

import pytest

from vpnhub.manager import human
from vpnhub.manager.pages import detail_live, empty_remote, remote_row, sized


@pytest.mark.parametrize(("n", "text"), [
    (0, "0 B"), (512, "512 B"), (1023, "1023 B"), (1024, "1.0 KiB"),
    (1258291, "1.2 MiB"), (3 * 2**30 + 400 * 2**20, "3.4 GiB"), (2**40, "1.0 TiB"),
    (2**60, "1024.0 PiB"),
])
def test_size(n: int, text: str) -> None:
    assert human.size(n) == text


@pytest.mark.parametrize(("bps", "text"), [
    (0, "0 bit/s"), (800, "800 bit/s"), (1000, "1.0 kbit/s"), (3_400_000, "3.4 Mbit/s"),
    (2.5e9, "2.5 Gbit/s"),
])
def test_rate(bps: float, text: str) -> None:
    assert human.rate(bps) == text


def test_byte_rate_is_in_bits() -> None:
    assert human.byte_rate(125_000) == "1.0 Mbit/s"


@pytest.mark.parametrize(("s", "text"), [
    (0, "0 s"), (-5, "0 s"), (45, "45 s"), (60, "1 min"), (200, "3 min 20 s"),
    (3600, "1 h"), (3661, "1 h 1 min"), (86400, "1 day"), (172800, "2 days"),
    (93784, "1 d 2 h 3 min"), (90000, "1 d 1 h"), (28800, "8 h"),
])
def test_duration(s: float, text: str) -> None:
    assert human.duration(s) == text


def test_count_and_exact() -> None:
    assert human.count(1234567) == "1,234,567"
    assert human.exact_bytes(1258291) == "1,258,291 bytes"
    assert human.exact_seconds(86400.7) == "86400 s"


def _session() -> dict[str, object]:
    return {"id": "ab" * 16, "user": "vpnuser1", "group": "g", "public_ip": "203.0.113.78",
            "public_port": 4500, "assigned_ip": "10.1.0.2", "protocol": "IPsec/NAT-T",
            "encryption": "AES-256", "login_time": "2026-12-03T10:00:00+00:00",
            "duration": 93784, "client": "vpnc", "bytes_tx": 1258291, "bytes_rx": 512,
            "ike": {"rekey_interval": 86400}, "ipsec": [{"rekey_interval": 28800,
                                                         "bytes_rx": 2**30, "idle_seconds": 75}]}


def test_pages_show_readable_values_and_the_exact_on_hover() -> None:
    row = remote_row(_session(), "csrf", 0.0)
    assert '<span class="bytes-tx" title="1,258,291 bytes">1.2 MiB</span>' in row
    assert '<span class="bytes-rx" title="512 bytes">512 B</span>' in row
    assert '<span class="duration" title="93784 s">1 d 2 h 3 min</span>' in row
    detail = detail_live(_session(), "")
    assert '<td data-field="rekey_interval"><span title="86400 s">1 day</span></td>' in detail
    assert '<span title="28800 s">8 h</span>' in detail
    assert '<span title="1,073,741,824 bytes">1.0 GiB</span>' in detail
    assert '<span title="75 s">1 min 15 s</span>' in detail
    assert sized(0).text == "0 B"


def test_an_empty_sessions_table_says_why() -> None:
    assert empty_remote({}, 0, False) == "No sessions: no client is connected."
    text = empty_remote({"user": "bob", "sort": "user"}, 7, False)
    assert text.startswith("No sessions match the filter (user 'bob')") and "7 connected" in text
    assert "the list changed" in empty_remote({"cursor": "x"}, 3, True)


def test_an_empty_event_log_table_says_why() -> None:
    from vpnhub.eventlog import EventFilter
    from vpnhub.manager.pages import events_page

    html = events_page(EventFilter(), [], {})
    assert '<tr class="empty"><td colspan="9">No events match the filter' in html
