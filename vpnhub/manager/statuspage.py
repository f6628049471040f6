"""The Status page (Monitoring | Status, issue 15): the concentrator over the last hour.

The server renders the current values (readable, exact on hover) and one
empty chart per figure; /static/manager.js draws the charts as inline SVG
from GET /api/v1/status/history (vpnhub.manager.statushistory) and redraws
them when a new sample is there (the answer carries an ETag: between two
samples the poll is answered 304, no body). No script library and no CDN:
the manager works offline. Machines read /metrics (linked here) instead.
"""

from __future__ import annotations

from vpnhub.manager import human
from vpnhub.manager.pages import Shown, counted, h, shown, sized
from vpnhub.manager.statushistory import KEEP, STATUS_EVERY, Reading

HISTORY_URL = "/api/v1/status/history"
POLL_MS = 5000  # the page asks every 5 s; a new sample comes every STATUS_EVERY

# (id, title, series keys, unit of the values, why it can be empty)
CHARTS = (
    ("sessions", "Sessions", "sessions", "count", ""),
    ("throughput", "Throughput (inner bytes through IPsec SAs)", "rx_bps,tx_bps", "bps", ""),
    ("handshakes", "Phase 1 handshakes per second", "handshakes_per_s,"
     "handshake_failures_per_s", "per_s", ""),
    ("half-open", "Half-open IKE SAs", "half_open", "count", ""),
    ("drops", "Drops per interval, by reason", "drops", "count",
     "No packet dropped in the last hour."),
)
LABELS = {"sessions": "sessions", "rx_bps": "in (rx)", "tx_bps": "out (tx)",
          "handshakes_per_s": "completed", "handshake_failures_per_s": "failed",
          "half_open": "half-open"}


def current_table(r: Reading, taken: int) -> str:
    """The values now, as /metrics exports them."""
    drops = sum(r.drops.values())
    rows: list[tuple[str, str, Shown]] = [
        ("sessions", "Sessions with an IPsec SA", counted(r.sessions)),
        ("half_open", "Half-open IKE SAs", counted(r.half_open)),
        ("rx_bytes", "Bytes received through IPsec SAs", sized(r.rx_bytes)),
        ("tx_bytes", "Bytes sent through IPsec SAs", sized(r.tx_bytes)),
        ("handshakes_completed", "Phase 1 handshakes completed", counted(
            r.handshakes_completed)),
        ("handshakes_failed", "Phase 1 handshakes failed", counted(r.handshakes_failed)),
        ("drops", "Packets dropped (all reasons)", counted(drops)),
    ]
    body = "".join(f'<tr><th>{h(label)}</th><td data-field="{key}">{shown(value)}</td></tr>'
                   for key, label, value in rows)
    kept = human.duration(KEEP * STATUS_EVERY)
    return (f'<table class="kv status-now" id="status-now"><caption>Now (counters since'
            f' start)</caption><tbody>{body}</tbody></table>'
            f'<p class="hint"><span id="status-samples">{taken}</span> sample(s) taken so far,'
            f" one every {h(human.duration(STATUS_EVERY))}; the charts keep the last"
            f" {h(kept)}.</p>")


def _figure(key: str, title: str, series: str, unit: str, empty: str) -> str:
    why = empty or "Collecting samples: a chart needs two, one every" \
        f" {human.duration(STATUS_EVERY)}."
    return (f'<figure class="status-chart" id="chart-{key}" data-series="{h(series)}"'
            f' data-unit="{unit}" data-empty="{h(why)}"><figcaption>{h(title)}</figcaption>'
            f'<div class="plot"><p class="hint">{h(why)}</p></div></figure>')


def status_page(r: Reading, taken: int) -> str:
    """The whole page; the table of values now is a live region (?partial=1)."""
    labels = ";".join(f"{k}={v}" for k, v in LABELS.items())
    charts = "".join(_figure(*c) for c in CHARTS)
    return (
        "<h1>Monitoring | Status</h1>"
        '<p class="refresh-state" id="refresh-state" role="status">This page refreshes'
        f" every {POLL_MS // 1000} seconds.</p>"
        f'<div id="live" data-live="/status?partial=1" data-interval="{POLL_MS}">'
        + current_table(r, taken) + "</div>"
        + f'<div id="status-charts" data-history="{HISTORY_URL}" data-interval="{POLL_MS}"'
        f' data-labels="{h(labels)}">{charts}</div>'
        '<noscript><p class="hint">The charts are drawn by the page\'s script; without it,'
        f' read <a href="{HISTORY_URL}">{HISTORY_URL}</a>.</p></noscript>'
        '<h2>For machines</h2><p class="hint">The same counters for a monitoring system:'
        ' <a href="/metrics" id="metrics-link">/metrics</a> (Prometheus text format),'
        f' <a href="{HISTORY_URL}">{HISTORY_URL}</a> (this page\'s data, JSON).</p>')
