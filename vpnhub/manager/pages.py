"""The web console's pages: server-rendered HTML, escaped by construction.

Every value from the concentrator goes through `h()` (html.escape); the only
script is /static/manager.js (the Content-Security-Policy allows no inline
script or style), which polls the live regions and runs the event log tail.
The layout follows the VPN 3000 Concentrator Manager: Session Summary,
LAN-to-LAN, Remote Access and Management Sessions, a detail page per session
with its IKE and IPsec/NAT-T SAs, the Filterable Event Log, NAT Transparency.
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple
from urllib.parse import urlencode

from vpnhub.eventlog import CLASSES, MAX_SEVERITY, SEVERITY_MEANING, EventFilter, Record
from vpnhub.manager import human
from vpnhub.manager.view import PingResult, Warning_

MANAGER = "vpnhub Manager"


def h(value: object) -> str:
    return html.escape(str(value), quote=True)


def stamp(t: float) -> str:
    return time.strftime("%b %d %H:%M:%S", time.localtime(t))


class Shown(NamedTuple):
    """A readable value and the exact one, shown on hover (vpnhub.manager.human)."""

    text: str
    exact: str


def shown(value: Shown, cls: str = "") -> str:
    """`value` as HTML: the readable text, the exact value in its title."""
    c = f' class="{cls}"' if cls else ""
    return f'<span{c} title="{h(value.exact)}">{h(value.text)}</span>'


def sized(n: object) -> Shown:
    """Bytes: "1.2 MiB", exactly "1,258,291 bytes"."""
    v = int(n) if isinstance(n, int | float | str) else 0
    return Shown(human.size(v), human.exact_bytes(v))


def lasted(seconds: object) -> Shown:
    """A duration: "1 d 2 h 3 min", exactly "93784 s"."""
    v = float(seconds) if isinstance(seconds, int | float) else 0.0
    return Shown(human.duration(v), human.exact_seconds(v))


def counted(n: object) -> Shown:
    """A count: "1,234,567", exactly "1234567"."""
    v = int(n) if isinstance(n, int | float) else 0
    return Shown(human.count(v), str(v))


def layout(title: str, body: str, *, user: str = "", csrf: str = "", public: str = "",
           warnings: Sequence[Warning_] = (), active: str = "", cluster: bool = False) -> str:
    nav = ""
    if user:
        links = [("sessions", "/sessions", "Sessions"),
                 *([("cluster", "/cluster", "Cluster")] if cluster else []),
                 ("events", "/events", "Filterable Event Log"),
                 ("classes", "/config/events/classes", "Event Classes"),
                 ("natt", "/settings/nat-transparency", "NAT Transparency"),
                 ("status", "/status", "Status")]
        items = "".join(
            f'<a href="{href}"{" class=active" if key == active else ""}>{h(label)}</a>'
            for key, href, label in links)
        nav = (f'<nav>{items}</nav><form method="post" action="/logout" class="whoami">'
               f'<input type="hidden" name="csrf" value="{h(csrf)}">'
               f'<span>{h(user)}</span> <button type="submit" id="sign-out">Log out</button>'
               "</form>")
    host = f'<span class="host">Concentrator {h(public)}</span>' if public else ""
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{h(title)} | {MANAGER}</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        '<link rel="stylesheet" href="/static/manager.css">'
        '<script src="/static/manager.js" defer></script></head><body>'
        f'<header><span class="brand">{MANAGER}</span>{host}{nav}</header>'
        f'<div id="banners">{banners(warnings)}</div>'
        f"<main>{body}</main></body></html>\n"
    )


def banners(warnings: Iterable[Warning_]) -> str:
    return "".join(
        f'<div class="banner" data-kind="{h(w.kind)}"><strong>Warning:</strong> {h(w.text)}'
        f'<br><strong>Fix:</strong> {h(w.fix)}</div>' for w in warnings)


def login_page(token: str, message: str = "", next_url: str = "/sessions",
               no_accounts: bool = False) -> str:
    note = f'<p class="error" role="alert">{h(message)}</p>' if message else ""
    if no_accounts:
        note += ('<p class="error">No manager accounts are configured: add [[admin.user]]'
                 " with a password_hash to the configuration (python -m vpnhub.auth.users"
                 " makes one).</p>")
    body = (
        '<section class="login"><h1>Login</h1>' + note +
        '<form method="post" action="/login">'
        f'<input type="hidden" name="login_token" value="{h(token)}">'
        f'<input type="hidden" name="next" value="{h(next_url)}">'
        '<label>Login <input name="username" autocomplete="username" required autofocus>'
        "</label>"
        '<label>Password <input name="password" type="password"'
        ' autocomplete="current-password" required></label>'
        '<button type="submit">Login</button></form></section>')
    return layout("Login", body)


# ----------------------------------------------------------------------------- sessions
def _table(caption_id: str, caption: str, head: Sequence[str], rows: Sequence[str],
           empty: str) -> str:
    th = "".join(f"<th>{x}</th>" for x in head)
    body = "".join(rows) or f'<tr class="empty"><td colspan="{len(head)}">{h(empty)}</td></tr>'
    return (f'<h2 id="{caption_id}">{h(caption)}</h2><div class="scroll">'
            f'<table class="grid" id="{caption_id}-table">'
            f"<thead><tr>{th}</tr></thead><tbody>{body}</tbody></table></div>")


def summary_table(s: dict[str, int]) -> str:
    cols = [("active_lan_to_lan", "Active LAN-to-LAN Sessions"),
            ("active_remote_access", "Active Remote Access Sessions"),
            ("active_management", "Active Management Sessions"),
            ("total_active", "Total Active Sessions"), ("peak", "Peak Concurrent Sessions"),
            ("concurrent_limit", "Concurrent Sessions Limit"),
            ("cumulative", "Total Cumulative Sessions")]
    head = "".join(f"<th>{h(label)}</th>" for _, label in cols)
    row = "".join(f'<td data-field="{k}">{shown(counted(s.get(k, 0)))}</td>' for k, _ in cols)
    return (f'<h2 id="summary">Session Summary</h2><div class="scroll">'
            f'<table class="grid" id="summary-table">'
            f"<thead><tr>{head}</tr></thead><tbody><tr>{row}</tr></tbody></table></div>")


def _action(url: str, label: str, csrf: str, cls: str, question: str = "") -> str:
    """A button posting to `url`; manager.js asks `question` first, shows it busy while
    the request runs, and the result page or line says how it went (issue 15)."""
    ask = f' data-confirm="{h(question)}"' if question else ""
    return (f'<form method="post" action="{h(url)}" class="inline" data-action="{cls}"{ask}>'
            f'<input type="hidden" name="csrf" value="{h(csrf)}">'
            f'<button type="submit" class="{cls}">{h(label)}</button></form>')


def _ask_logout(d: dict[str, Any]) -> str:
    name = d.get("user") or d.get("lan_to_lan", "")
    return f"Log out {name} ({d['public_ip']}:{d['public_port']})? The tunnel closes."


def remote_row(d: dict[str, Any], csrf: str, now: float) -> str:
    sid = d["id"]
    login = datetime.fromisoformat(d["login_time"]).timestamp()  # the session's, not `now`
    cells = [
        f'<a href="/sessions/{h(sid)}" class="user">{h(d["user"])}</a>',
        f'<span class="assigned">{h(d.get("assigned_ip") or "-")}</span><br>'
        f'<span class="public" data-ip="{h(d["public_ip"])}" data-port="{h(d["public_port"])}">'
        f'{h(d["public_ip"])}:{h(d["public_port"])}</span>',
        h(d["group"]),
        f'<span class="protocol">{h(d["protocol"])}</span><br>{h(d["encryption"])}'
        f'<br><span class="auth">{h(d.get("auth", "psk"))}</span>',
        f"{h(stamp(login))}<br>{shown(lasted(d['duration']), 'duration')}",
        h(d["client"] or "-"),
        f'{shown(sized(d["bytes_tx"]), "bytes-tx")}<br>'
        f'{shown(sized(d["bytes_rx"]), "bytes-rx")}',
        _action(f"/sessions/{sid}/logout", "Logout", csrf, "logout", _ask_logout(d))
        + _action(f"/sessions/{sid}/ping", "Ping", csrf, "ping"),
    ]
    row = (f'<tr data-session="{h(sid)}" data-user="{h(d["user"])}">'
           + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    if d.get("diagnosis"):
        row += (f'<tr class="diagnosis" data-user="{h(d["user"])}"><td colspan="8">'
                f'<span class="said">{h(d["diagnosis"])}</span></td></tr>')
    return row


def site_row(d: dict[str, Any], csrf: str) -> str:
    sid = d["id"]
    cells = [
        f'<a href="/sessions/{h(sid)}" class="site">{h(d.get("lan_to_lan", ""))}</a>',
        f'<span class="public" data-ip="{h(d["public_ip"])}" data-port="{h(d["public_port"])}">'
        f'{h(d["public_ip"])}:{h(d["public_port"])}</span>',
        f'<span class="protocol">{h(d["protocol"])}</span>', h(d["encryption"]),
        h(d["login_time"].replace("T", " ")[:19]), shown(lasted(d["duration"]), "duration"),
        shown(sized(d["bytes_tx"]), "bytes-tx"),
        shown(sized(d["bytes_rx"]), "bytes-rx"),
        _action(f"/sessions/{sid}/logout", "Logout", csrf, "logout", _ask_logout(d)),
    ]
    return (f'<tr data-session="{h(sid)}" data-site="{h(d.get("lan_to_lan", ""))}">'
            + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")


def pager(query: dict[str, str], shown: int, total: int, next_cursor: str | None,
          previous_cursor: str | None) -> str:
    """Previous / Next under the Remote Access Sessions (cursors: vpnhub.manager.paging);
    the filters and sort of `query` are kept."""
    rest = {k: v for k, v in query.items() if k != "cursor"}

    def link(cursor: str, label: str, rel: str) -> str:
        target = urlencode({**rest, **({"cursor": cursor} if cursor else {})})
        return f'<a href="/sessions?{h(target)}" rel="{rel}" class="{rel}">{label}</a>'

    parts = [f'<span class="count">{shown} shown of {total} matching</span>']
    if previous_cursor is not None:
        parts.insert(0, link(previous_cursor, "&lsaquo; Previous", "prev"))
    if next_cursor is not None:
        parts.append(link(next_cursor, "Next &rsaquo;", "next"))
    return f'<p class="pager" id="remote-access-pager">{" ".join(parts)}</p>'


def sessions_filters(query: dict[str, str], sorts: Iterable[str],
                     protocols: Iterable[str]) -> str:
    """Filter and sort the Remote Access Sessions (a GET form: the page's URL says it)."""
    def text(name: str, label: str) -> str:
        return (f'<label>{h(label)} <input type="text" name="{name}" maxlength="64"'
                f' value="{h(query.get(name, ""))}"></label>')

    def select(name: str, label: str, options: Iterable[tuple[str, str]]) -> str:
        chosen = query.get(name, "")
        opts = "".join(f'<option value="{h(v)}"{" selected" if v == chosen else ""}>'
                       f"{h(t)}</option>" for v, t in options)
        return f'<label>{h(label)} <select name="{name}">{opts}</select></label>'

    return (
        '<form method="get" action="/sessions" class="filters" id="session-filters">'
        f'<fieldset><legend>Remote Access Sessions</legend>{text("user", "User")}'
        f'{text("group", "Group")}{text("public_ip", "Public IP")}'
        + select("protocol", "Protocol", [("", "any"), *((p, p) for p in protocols)])
        + select("has_diagnosis", "Diagnosis", [("", "any"), ("true", "with"),
                                                ("false", "without")])
        + select("sort", "Sort by", [(k, k.replace("_", " ")) for k in sorts])
        + select("order", "Order", [("asc", "ascending"), ("desc", "descending")])
        + '<button type="submit">Apply</button> <a href="/sessions">Reset</a>'
        "</fieldset></form>")


def sessions_live(summary: dict[str, int], sessions: Sequence[dict[str, Any]],
                  sites: Sequence[dict[str, Any]],
                  management: Sequence[tuple[str, str, str, float]], csrf: str,
                  warnings: Sequence[Warning_], nav: str = "",
                  empty_remote: str = "No sessions: no client is connected.",
                  empty_sites: str = "No LAN-to-LAN sessions: no tunnel is up.") -> str:
    now = time.time()
    remote = [remote_row(d, csrf, now) for d in sessions]
    l2l = [site_row(d, csrf) for d in sites]
    mgmt = [f'<tr><td>{h(u)}</td><td>{h(src)}</td><td>{h(proto)}</td>'
            f"<td>{h(stamp(t))}<br>{shown(lasted(now - t), 'duration')}</td></tr>"
            for u, src, proto, t in management]
    return (
        f'<div class="live-banners">{banners(warnings)}</div>' + summary_table(summary)
        + _table("lan-to-lan", "LAN-to-LAN Sessions",
                 ["Connection Name", "IP Address", "Protocol", "Encryption",
                  "Login Time", "Duration", "Bytes Tx", "Bytes Rx", "Actions"], l2l,
                 empty_sites)
        + _table("remote-access", "Remote Access Sessions",
                 ["Username", "Assigned IP Address<br>Public IP Address", "Group",
                  "Protocol<br>Encryption<br>Authentication", "Login Time<br>Duration",
                  "Client Type<br>Version", "Bytes Tx<br>Bytes Rx", "Actions"], remote,
                 empty_remote)
        + nav
        + _table("management", "Management Sessions",
                 ["Administrator", "IP Address", "Protocol", "Login Time<br>Duration"], mgmt,
                 "No management sessions: nobody is logged in to the web console (API"
                 " tokens and HTTP Basic are not listed)."))


def empty_remote(query: dict[str, str], total: int, cursor: bool) -> str:
    """Why the Remote Access Sessions table is empty (issue 15): nobody is connected,
    the filter matches nobody, or the page is past the end."""
    filters = {k: v for k, v in query.items()
               if k not in ("cursor", "limit", "sort", "order", "partial")}
    if filters:
        said = ", ".join(f"{k.replace('_', ' ')} {v!r}" for k, v in sorted(filters.items()))
        return (f"No sessions match the filter ({said}); Reset shows every session"
                f" ({total} connected).")
    if cursor and total:
        return f"No sessions on this page: the list changed ({total} connected); go back."
    return "No sessions: no client is connected."


def empty_sites(configured: int) -> str:
    """Why the LAN-to-LAN table is empty."""
    if not configured:
        return "No LAN-to-LAN sessions: none is configured ([[lan_to_lan]])."
    return f"No LAN-to-LAN sessions: none of the {configured} configured tunnel(s) is up."



def sessions_page(live: str, query: dict[str, str], filters: str, error: str = "",
                  notice: tuple[bool, str] | None = None) -> str:
    """The live region refreshes this very page of sessions (same filters and cursor)."""
    url = "/sessions?" + urlencode({"partial": "1", **query})
    problem = f'<div class="banner error">{h(error)}</div>' if error else ""
    return ("<h1>Administration | Sessions</h1>" + action_result(notice) + refresh_line(3)
            + f"{filters}{export_links(query)}{problem}"
            f'<div id="live" data-live="{h(url)}" data-interval="3000">{live}</div>')


def refresh_line(seconds: int) -> str:
    """Where the script says when the page was last updated, or since when it was not
    (manager.js; without the script it stays this sentence)."""
    return (f'<p class="refresh-state" id="refresh-state" role="status">This page refreshes'
            f" every {seconds} seconds.</p>")


def action_result(notice: tuple[bool, str] | None) -> str:
    """The result of the last Logout (shown once)."""
    if notice is None:
        return ""
    ok, text = notice
    return (f'<p class="action-result {"ok" if ok else "error"}" role="status"'
            f' data-ok="{_yes(ok)}">{h(text)}</p>')


def logout_confirm_page(d: dict[str, Any], csrf: str) -> str:
    """Logout asked before it is done, for a browser without the script (issue 15)."""
    sid, name = d["id"], d["user"] or d.get("lan_to_lan", "")
    return (f'<h1>Log out {h(name)}?</h1><p id="logout-question">The session of {h(name)}'
            f" (group {h(d['group'])}, {h(d.get('assigned_ip') or '-')}, from"
            f" {h(d['public_ip'])}:{h(d['public_port'])}) will be ended: the client is sent a"
            " DELETE and its tunnel closes.</p>"
            f'<form method="post" action="/sessions/{h(sid)}/logout" class="inline">'
            f'<input type="hidden" name="csrf" value="{h(csrf)}">'
            '<input type="hidden" name="confirm" value="1">'
            '<button type="submit" class="logout" id="logout-confirm">Log out</button></form>'
            ' <a href="/sessions" id="logout-cancel">Cancel</a>')


def export_links(query: dict[str, str]) -> str:
    """Download every session the filters match, in the chosen order (all pages:
    GET /api/v1/sessions/export takes no cursor and no limit)."""
    rest = {k: v for k, v in query.items() if k not in ("cursor", "limit")}

    def link(fmt: str, label: str) -> str:
        target = urlencode({**rest, "format": fmt})
        return (f'<a href="/api/v1/sessions/export?{h(target)}" class="export-{fmt}"'
                f" download>{label}</a>")

    return (f'<p class="export" id="sessions-export">{link("csv", "Export CSV")} '
            f'{link("jsonl", "Export JSON lines")}</p>')


# ----------------------------------------------------------------------------- detail
def _kv(title: str, pairs: Sequence[tuple[str, str, object]], cls: str = "") -> str:
    """A two-column-pairs table like the VPN 3000's session detail."""
    cells = [f'<th>{h(label)}</th><td data-field="{h(key)}">'
             f'{shown(value) if isinstance(value, Shown) else h(value)}</td>'
             for key, label, value in pairs]
    rows = "".join("<tr>" + "".join(cells[i:i + 2]) + "</tr>" for i in range(0, len(cells), 2))
    return (f'<table class="kv {cls}"><caption>{h(title)}</caption><tbody>{rows}</tbody>'
            "</table>")


def _yes(flag: object) -> str:
    return "yes" if flag else "no"


def _interval(seconds: object) -> Shown | str:
    """A rekey interval: 86400 -> "1 day" (exactly "86400 s"); "-" when unknown."""
    return lasted(seconds) if isinstance(seconds, int | float) else "-"


def detail_live(d: dict[str, Any], chart: str) -> str:
    ike = d.get("ike") or {}
    parts = []
    if d.get("diagnosis"):
        parts.append(f'<div class="banner diagnosis">{h(d["diagnosis"])}</div>')
    parts.append(_kv("IKE Session", [
        ("session_id", "Session ID", 1),
        ("encryption", "Encryption Algorithm", ike.get("encryption", "-")),
        ("hash", "Hashing Algorithm", ike.get("hash", "-")),
        ("dh_group", "Diffie-Hellman Group", ike.get("dh_group", "-")),
        ("authentication", "Authentication Mode", ike.get("authentication", "-")),
        ("certificate", "Peer Certificate", ike.get("certificate") or "-"),
        ("mode", "IKE Negotiation Mode", ike.get("mode", "-")),
        ("rekey_interval", "Rekey Time Interval", _interval(ike.get("rekey_interval"))),
        ("peer", "Peer (public)", f"{d['public_ip']}:{d['public_port']}"),
        ("local_behind_nat", "NAT detected: concentrator behind NAT",
         _yes(ike.get("local_behind_nat"))),
        ("peer_behind_nat", "NAT detected: client behind NAT", _yes(ike.get("peer_behind_nat"))),
        ("nat_keepalives", "NAT keepalives rx / tx",
         f"{human.count(d.get('nat_keepalives_rx', 0))} /"
         f" {human.count(d.get('nat_keepalives_tx', 0))}"),
        ("client", "Client Type / Version", d.get("client") or "-"),
    ], "ike"))
    for n, sa in enumerate(d.get("ipsec", []), start=2):
        title = "IPsec/NAT-T Session" if d.get("nat_t") else "IPsec Session"
        parts.append(_kv(title, [
            ("session_id", "Session ID", n),
            ("remote_address", "Remote Address", sa.get("remote_address") or "-"),
            ("local_address", "Local Address", sa.get("local_address", "-")),
            ("remote_network", "Remote Network", sa.get("remote_network", "-")),
            ("local_network", "Local Network", sa.get("local_network", "-")),
            ("encryption", "Encryption Algorithm", sa.get("encryption", "-")),
            ("hashing", "Hashing Algorithm", sa.get("hashing", "-")),
            ("idle", "Idle Time", lasted(sa.get("idle_seconds", 0))),
            ("encapsulation", "Encapsulation Mode", sa.get("encapsulation", "-")),
            ("pfs", "Perfect Forward Secrecy", sa.get("pfs", "-")),
            ("spis", "SPI in / out", f"{sa.get('spi_in')} / {sa.get('spi_out')}"),
            ("udp_src_port", "UDP Source Port", sa.get("udp_src_port", 0)),
            ("udp_dst_port", "UDP Destination Port", sa.get("udp_dst_port", 0)),
            ("rekey_interval", "Rekey Time Interval", _interval(sa.get("rekey_interval"))),
            ("packets", "Packets Received / Transmitted",
             f"{human.count(sa.get('packets_rx', 0))} / {human.count(sa.get('packets_tx', 0))}"),
            ("bytes_rx", "Bytes Received", sized(sa.get("bytes_rx", 0))),
            ("bytes_tx", "Bytes Transmitted", sized(sa.get("bytes_tx", 0))),
        ], "ipsec"))
    parts.append(_kv("Counters", [
        ("decrypt_failures", "Decrypt failures", counted(d.get("decrypt_failures", 0))),
        ("replays", "Replayed packets", counted(d.get("replays", 0))),
        ("bytes_rx_total", "Bytes Rx (session)", sized(d.get("bytes_rx", 0))),
        ("bytes_tx_total", "Bytes Tx (session)", sized(d.get("bytes_tx", 0))),
    ], "counters"))
    parts.append(f'<h2>Throughput, last minutes</h2><div class="chart">{chart}</div>')
    return "".join(parts)


def detail_page(d: dict[str, Any], live: str, csrf: str) -> str:
    sid = d["id"]
    actions = (_action(f"/sessions/{sid}/logout", "Logout", csrf, "logout", _ask_logout(d))
               + _action(f"/sessions/{sid}/ping", "Ping", csrf, "ping"))
    return (f'<p><a href="/sessions">&larr; Sessions</a></p>'
            f'<h1>Session of <span class="user">{h(d["user"] or d.get("lan_to_lan", ""))}'
            f"</span></h1>{refresh_line(3)}"
            f'<p class="meta">group {h(d["group"])}, assigned {h(d.get("assigned_ip") or "-")},'
            f" protocol {h(d['protocol'])} {actions}</p>"
            f'<div id="live" data-live="/sessions/{h(sid)}?partial=1" data-interval="3000">'
            f"{live}</div>")


def gone_page(sid: str) -> str:
    return (f"<h1>Session not found</h1><p>No session {h(sid)}: it ended or was logged out."
            ' <a href="/sessions">Back to the sessions</a>.</p>')


def ping_page(user: str, r: PingResult | None) -> str:
    if r is None:
        return (f"<h1>Ping</h1><p>{h(user)} has no assigned address to ping.</p>"
                '<p><a href="/sessions">Back</a></p>')
    verdict = "is alive" if r.received else "did not answer"
    return (f'<h1>Ping</h1><p class="ping-result" data-alive="{_yes(r.received)}">'
            f"{h(r.address)} ({h(user)}) {verdict}: {r.received} of {r.sent} replies"
            f"{f', average {r.rtt_avg_ms:.2f} ms' if r.rtt_avg_ms is not None else ''}"
            f"{f', from {h(r.source)}' if r.source else ''}.</p>"
            f"<pre>{h(r.output)}</pre><p><a href=\"/sessions\">Back to the sessions</a></p>")


def throughput_svg(points: Sequence[tuple[float, float, float]], width: int = 640,
                   height: int = 180) -> str:
    """Transmit and receive rates as two polylines; inline SVG, no script."""
    pad_l, pad_b, pad_t = 64, 22, 10
    w, hgt = width - pad_l - 8, height - pad_b - pad_t
    # the viewBox lets CSS shrink the chart to a narrow screen's width, drawing and all
    box = f' viewBox="0 0 {width} {height}"'
    if len(points) < 2:
        return (f'<svg class="chart" width="{width}" height="{height}"{box} role="img"'
                ' aria-label="throughput"><text x="10" y="40" fill="#555">Collecting'
                " samples (one every 10 s)...</text></svg>")
    t0, t1 = points[0][0], points[-1][0]
    span = max(t1 - t0, 1.0)
    top = max(max(p[1], p[2]) for p in points) or 1.0

    def line(idx: int) -> str:
        return " ".join(f"{pad_l + (p[0] - t0) / span * w:.1f},"
                        f"{pad_t + hgt - p[idx] / top * hgt:.1f}" for p in points)

    return (
        f'<svg class="chart" width="{width}" height="{height}"{box} role="img"'
        ' aria-label="throughput in bytes per second">'
        f'<rect x="{pad_l}" y="{pad_t}" width="{w}" height="{hgt}" fill="#f7f9fc"'
        ' stroke="#b8c4d6"/>'
        f'<text x="4" y="{pad_t + 10}" font-size="11" fill="#333">{h(human.byte_rate(top))}'
        "</text>"
        f'<text x="4" y="{pad_t + hgt}" font-size="11" fill="#333">0</text>'
        f'<text x="{pad_l}" y="{height - 6}" font-size="11" fill="#333">'
        f"-{h(human.duration(span))}</text>"
        f'<text x="{width - 40}" y="{height - 6}" font-size="11" fill="#333">now</text>'
        f'<polyline fill="none" stroke="#1f5fbf" stroke-width="2" points="{line(1)}"/>'
        f'<polyline fill="none" stroke="#c0392b" stroke-width="2" points="{line(2)}"/>'
        f'<text x="{pad_l + 8}" y="{pad_t + 14}" font-size="11" fill="#1f5fbf">tx</text>'
        f'<text x="{pad_l + 30}" y="{pad_t + 14}" font-size="11" fill="#c0392b">rx</text>'
        "</svg>")


# ----------------------------------------------------------------------------- event log
def events_page(f: EventFilter, records: Sequence[Record], query: dict[str, str | list[str]],
                error: str = "", nav: str = "") -> str:
    boxes = "".join(
        f'<label class="cls" title="{h(desc)}"><input type="checkbox" name="class"'
        f' value="{h(name)}"{" checked" if name in f.classes else ""}> {h(name)}</label>'
        for name, desc in CLASSES.items())

    def sev_select(name: str, chosen: int) -> str:
        opts = "".join(f'<option value="{n}"{" selected" if n == chosen else ""}>{n}</option>'
                       for n in range(1, MAX_SEVERITY + 1))
        return f'<select name="{name}" id="{name}">{opts}</select>'

    def text_input(name: str, label: str, kind: str = "text") -> str:
        value = query.get(name, "")
        return (f'<label>{h(label)} <input type="{kind}" name="{name}"'
                f' value="{h(value if isinstance(value, str) else "")}"></label>')

    legend = " ".join(f"{n} {h(m)};" for n, m in SEVERITY_MEANING.items())
    form = (
        '<form method="get" action="/events" class="filters" id="event-filters">'
        f'<fieldset><legend>Event Classes</legend>{boxes}'
        '<p class="hint">None checked: all classes.</p></fieldset>'
        f'<fieldset><legend>Severities</legend><label for="severity_min">from</label>'
        f'{sev_select("severity_min", f.severity_min)}<label for="severity_max">to</label>'
        f'{sev_select("severity_max", f.severity_max)}'
        f'<p class="hint" title="{legend}">1 fault ... 5 milestones ... 9 full decode ...'
        " 13 everything</p></fieldset>"
        "<fieldset><legend>Who and when</legend>"
        + text_input("peer", "Peer (address or address:port)") + text_input("user", "User")
        + text_input("group", "Group") + text_input("since", "From", "datetime-local")
        + text_input("until", "To", "datetime-local") + "</fieldset>"
        "<fieldset><legend>Text</legend>" + text_input("text", "Contains")
        + f'<label>Events/page <input type="number" name="limit" min="1" max="5000"'
        f' value="{f.limit}"></label></fieldset>'
        '<button type="submit" id="get-log">Get Log</button>'
        ' <label class="tail"><input type="checkbox" id="live-tail-toggle"> Live tail</label>'
        "</form>")
    err = f'<p class="error" role="alert">{h(error)}</p>' if error else ""
    api_query = urlencode([(k, v) for k, vs in query.items()
                           for v in ([vs] if isinstance(vs, str) else vs)
                           if k not in ("limit", "before_seq", "after_seq", "order")])
    rows = "".join(event_row(r) for r in records) or (
        '<tr class="empty"><td colspan="9">No events match the filter: change it, or turn on'
        " Live tail to see new ones as they are logged.</td></tr>")
    last = records[-1].seq if records else 0
    table = (
        f'<p class="hint">{shown(counted(len(records)))} event(s), oldest first.</p>{nav}'
        '<div class="scroll">'
        f'<table class="grid events" id="events-table" data-stream="/api/v1/events/stream?'
        f'{h(api_query)}" data-last="{last}"><thead><tr><th>#</th><th>Time</th><th>Sev</th>'
        "<th>Class</th><th>RPT</th><th>Peer</th><th>Group</th><th>User</th><th>Text</th>"
        f'</tr></thead><tbody id="events">{rows}</tbody></table></div>')
    return "<h1>Monitoring | Filterable Event Log</h1>" + form + err + table


def event_row(r: Record) -> str:
    t = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.time))
    return (f'<tr data-seq="{r.seq}" data-class="{h(r.cls)}" class="sev{r.severity}">'
            f'<td class="seq">{r.seq}</td><td>{h(t)}</td><td class="sev">{r.severity}</td>'
            f'<td>{h(r.cls)}</td><td class="rpt">{r.repeat}</td><td>{h(r.peer)}</td>'
            f"<td>{h(r.group)}</td><td>{h(r.user)}</td>"
            f'<td class="text">{"" if r.authenticated else "[unauthenticated] "}{h(r.text)}'
            "</td></tr>")


# ----------------------------------------------------------------------------- settings
def natt_page(natt: dict[str, Any], csrf: str, message: str = "") -> str:
    checked = " checked" if natt["ipsec_over_natt"] else ""
    note = f'<p class="ok" role="status">{h(message)}</p>' if message else ""
    udp = "enabled" if natt["ipsec_over_udp"] else "disabled"
    tcp = "enabled" if natt["ipsec_over_tcp"] else "disabled"
    ports = ", ".join(str(p) for p in natt["ipsec_over_tcp_ports"])
    return (
        "<h1>Configuration | System | Tunneling Protocols | IPsec | NAT Transparency</h1>"
        + note +
        '<form method="post" action="/settings/nat-transparency" id="natt-form">'
        f'<input type="hidden" name="csrf" value="{h(csrf)}">'
        '<input type="hidden" name="submitted" value="1">'
        '<table class="kv"><tbody>'
        f'<tr><th><label for="natt">IPsec over NAT-T</label></th><td><input type="checkbox"'
        f' id="natt" name="ipsec_over_natt" value="on"{checked}> Check to let NAT-T'
        f" compatible IPsec peers establish IPsec sessions through a NAT device (UDP"
        f" {h(natt['natt_port'])}, RFC 3947/3948).</td></tr>"
        f"<tr><th>IPsec over UDP</th><td>{udp} (port {h(natt['ipsec_over_udp_port'])}; set in"
        " the configuration file)</td></tr>"
        f"<tr><th>IPsec over TCP</th><td>{tcp} (ports {h(ports)}; set in the configuration"
        " file)</td></tr></tbody></table>"
        '<p class="hint">The change applies to new IKE SAs at once, without a restart;'
        " sessions already up keep what they negotiated. It is not written to the"
        " configuration file: set [nat_transparency] ipsec_over_natt there to keep it.</p>"
        '<button type="submit" id="natt-apply">Apply</button></form>')
