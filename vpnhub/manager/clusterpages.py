"""The Cluster page's HTML (issue 17): the database banner, the members, the
cluster-wide sessions with Logout. Escaped by construction, as pages.py."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from vpnhub.manager import human
from vpnhub.manager.pages import (
    _action,
    _table,
    action_result,
    counted,
    h,
    lasted,
    refresh_line,
    shown,
    sized,
    stamp,
)


def database_banner(st: Mapping[str, Any]) -> str:
    """The database's state: a red banner while it is unreachable."""
    if st.get("database_ok"):
        return ('<p class="cluster-db ok" id="cluster-db" data-state="ok">Cluster database'
                f" reachable (connected for {h(human.duration(st.get('connected_for') or 0))})."
                "</p>")
    since = st.get("down_since")
    when = (f" since {h(stamp(datetime.fromisoformat(since).timestamp()))}"
            f" ({h(human.duration(st.get('down_for') or 0))})") if since else ""
    err = st.get("last_error") or ""
    return ('<div class="banner error cluster-db" id="cluster-db" data-state="down"'
            ' role="alert"><strong>Cluster database unreachable'
            f"{when}:</strong> established tunnels kept, new logins refused."
            + (f"<br>Last error: {h(err)}" if err else "") + "</div>")


def _state(m: Mapping[str, Any]) -> str:
    if m.get("me"):  # it serves this page; the member module calls it dead to the balancer
        # while it has no database (no client is sent to it then)
        return ('<span class="member-state alive">alive</span>' if m.get("alive") else
                '<span class="member-state alive">alive</span>, no database')
    if m.get("state") == "gone":
        return '<span class="member-state gone">gone</span>'
    if m.get("alive"):
        return '<span class="member-state alive">alive</span>'
    return '<span class="member-state dead">dead</span>'


def member_row(m: Mapping[str, Any]) -> str:
    name = h(m["name"])
    tags = ""
    if m.get("holds_virtual_address"):
        tags += ' <span class="badge master" title="holds the virtual address">master</span>'
    if m.get("me"):
        tags += ' <span class="badge me">this member</span>'
    cells = [
        f'<span class="member-name">{name}</span>{tags}',
        h(m.get("public_address", "")),
        f'<span class="member-sessions">{shown(counted(m.get("sessions", 0)))} /'
        f' {shown(counted(m.get("max_sessions", 0)))}</span>',
        f'<span class="member-load">{float(m.get("load", 0)) * 100:.1f} %</span>',
        _state(m),
        shown(lasted(m.get("heartbeat_age", 0)), "heartbeat-age") + " ago",
        h(m.get("version", "")),
        h(str(m.get("started", "")).replace("T", " ")),
    ]
    flags = (f' data-alive="{"yes" if m.get("alive") else "no"}"'
             f' data-master="{"yes" if m.get("holds_virtual_address") else "no"}"'
             f' data-me="{"yes" if m.get("me") else "no"}"')
    return (f'<tr data-member="{name}"{flags}>' + "".join(f"<td>{c}</td>" for c in cells)
            + "</tr>")


def _ask(d: Mapping[str, Any]) -> str:
    return (f"Log out {d.get('user', '')} ({d.get('public_ip')}:{d.get('public_port')}) on"
            f" member {d.get('member')}? The tunnel closes.")


def session_row(d: Mapping[str, Any], csrf: str, me: str) -> str:
    sid, member = str(d.get("id", "")), str(d.get("member", ""))
    user = h(d.get("user", ""))
    who = (f'<a href="/sessions/{h(sid)}" class="user">{user}</a>' if member == me
           else f'<span class="user">{user}</span>')
    cells = [
        f'<span class="member">{h(member)}</span>',
        who,
        f'<span class="assigned">{h(d.get("assigned_ip") or "-")}</span><br>'
        f'<span class="public">{h(d.get("public_ip", ""))}:{h(d.get("public_port", ""))}</span>',
        h(d.get("group", "")),
        f'<span class="protocol">{h(d.get("protocol", ""))}</span><br>'
        f'{h(d.get("encryption", ""))}',
        f'{h(str(d.get("login_time", "")).replace("T", " ")[:19])}<br>'
        f'{shown(lasted(d.get("duration", 0)), "duration")}',
        f'{shown(sized(d.get("bytes_tx", 0)), "bytes-tx")}<br>'
        f'{shown(sized(d.get("bytes_rx", 0)), "bytes-rx")}',
        _action(f"/cluster/sessions/{member}/{sid}/logout", "Logout", csrf, "logout",
                _ask(d)),
    ]
    return (f'<tr data-session="{h(sid)}" data-member="{h(member)}" data-user="{user}">'
            + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")


def pager(query: Mapping[str, str], shown_n: int, total: int, next_cursor: str | None) -> str:
    """Next (keyset, as the directory pages) and back to the first page."""
    rest = {k: v for k, v in query.items() if k != "cursor"}
    parts = [f'<span class="count">{shown_n} shown of {total} in the cluster</span>']
    if query.get("cursor"):
        target = urlencode(rest)
        parts.insert(0, f'<a href="/cluster?{h(target)}" class="first">&laquo; First</a>')
    if next_cursor:
        target = urlencode({**rest, "cursor": next_cursor})
        parts.append(f'<a href="/cluster?{h(target)}" rel="next" class="next">Next &rsaquo;'
                     "</a>")
    return f'<p class="pager" id="cluster-sessions-pager">{" ".join(parts)}</p>'


def cluster_live(st: Mapping[str, Any], sessions: Mapping[str, Any],
                 query: Mapping[str, str], csrf: str) -> str:
    """The live region: refreshed every 3 s (manager.js)."""
    members = [member_row(m) for m in st.get("members", [])]
    if not st.get("database_ok") and members:
        # the snapshot stops with the database: loads and heartbeats are as last read
        members.append('<tr class="note"><td colspan="8">The other members as last read from'
                       " the cluster database, before it became unreachable.</td></tr>")
    master = st.get("master")
    said = (f'<p class="cluster-meta" id="cluster-meta">Virtual address'
            f" {h(st.get('virtual_address', ''))}, held by"
            f" <strong>{h(master) if master else 'no live member'}</strong>;"
            f" this member is {h(st.get('member', ''))}; load balancing"
            f" {'on' if st.get('load_balancing') else 'off'}.</p>")
    out = database_banner(st) + said + _table(
        "cluster-members", "Members",
        ["Member", "Public Address", "Sessions / Max", "Load", "State", "Heartbeat",
         "Version", "Started (UTC)"], members,
        "No members listed yet: the member has not read the cluster database.")
    head = ["Member", "Username", "Assigned IP Address<br>Public IP Address", "Group",
            "Protocol<br>Encryption", "Login Time<br>Duration", "Bytes Tx<br>Bytes Rx",
            "Actions"]
    if "error" in sessions:
        return out + _table("cluster-sessions", "Cluster Sessions", head, [],
                            f"The cluster-wide sessions cannot be read: {sessions['error']}."
                            " The Sessions page lists this member's own.")
    listed: Sequence[Mapping[str, Any]] = sessions.get("sessions", [])
    total = int(sessions.get("summary", {}).get("remote_access", len(listed)))
    rows = [session_row(d, csrf, str(st.get("member", ""))) for d in listed]
    empty = ("No sessions on this page: the list changed; go back to the first page."
             if query.get("cursor") else "No sessions: no client is connected to any member.")
    return (out + _table("cluster-sessions", "Cluster Sessions", head, rows, empty)
            + pager(query, len(listed), total, sessions.get("next_cursor")))


def cluster_page(live: str, query: Mapping[str, str], error: str = "",
                 notice: tuple[bool, str] | None = None) -> str:
    url = "/cluster?" + urlencode({"partial": "1", **query})
    problem = f'<div class="banner error">{h(error)}</div>' if error else ""
    return ("<h1>Monitoring | Cluster</h1>" + action_result(notice) + refresh_line(3)
            + problem + f'<div id="live" data-live="{h(url)}" data-interval="3000">{live}'
            "</div>")


def logout_confirm_page(member: str, sid: str, csrf: str) -> str:
    """Logout asked before it is done, for a browser without the script."""
    return (f"<h1>Log out session {h(sid)}?</h1><p id=\"logout-question\">The session {h(sid)}"
            f" on member {h(member)} will be ended: the member sends the client a DELETE and"
            " its tunnel closes.</p>"
            f'<form method="post" action="/cluster/sessions/{h(member)}/{h(sid)}/logout"'
            ' class="inline">'
            f'<input type="hidden" name="csrf" value="{h(csrf)}">'
            '<input type="hidden" name="confirm" value="1">'
            '<button type="submit" class="logout" id="logout-confirm">Log out</button></form>'
            ' <a href="/cluster" id="logout-cancel">Cancel</a>')


def logged_out_text(body: Mapping[str, Any]) -> str:
    if body.get("delivered") == "notify":
        return (f"Logout sent to member {body.get('member')}: it sends the client a DELETE"
                " and closes its tunnel.")
    return f"{body.get('user') or 'The session'} logged out: the client was sent a DELETE" \
           " and its tunnel is closed."

