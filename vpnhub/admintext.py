"""Admin socket replies as text for a terminal.

`vpnhub sessions` prints the Session Summary and Remote Access Sessions with
this, and so do the lab's report and its scenarios' evidence: the lab imports
it from here, not from the CLI (which imports the lab for `vpnhub lab`).
"""

from __future__ import annotations

import time
from typing import Any

from vpnhub.text import printable


def format_sessions(reply: dict[str, Any]) -> str:
    s = reply.get("summary", {})
    lines = [
        "Session Summary",
        f"  Active LAN-to-LAN {s.get('active_lan_to_lan', 0)}   Active Remote Access"
        f" {s.get('active_remote_access', 0)}   Active Management {s.get('active_management', 0)}"
        f"   Total Active {s.get('total_active', 0)}",
        f"  Peak Concurrent {s.get('peak', 0)}   Concurrent Limit"
        f" {s.get('concurrent_limit', 0)}   Total Cumulative {s.get('cumulative', 0)}",
        "",
        "Remote Access Sessions",
    ]
    head = ("Username", "Assigned IP", "Public IP:Port", "Group", "Auth", "Protocol",
            "Encryption", "Login Time", "Duration", "Client", "Bytes Tx", "Bytes Rx")
    rows: list[tuple[str, ...]] = [head]
    for x in reply.get("sessions", []):
        d = int(x.get("duration", 0))
        row = (x["user"], str(x.get("assigned_ip") or "-"),
               f"{x['public_ip']}:{x['public_port']}", x.get("group", ""),
               x.get("auth", "psk"), x.get("protocol", ""), x.get("encryption", ""),
               str(x.get("login_time", "")).replace("T", " "),
               time.strftime("%H:%M:%S", time.gmtime(d)), printable(x.get("client", ""), 32),
               str(x.get("bytes_tx", 0)), str(x.get("bytes_rx", 0)))
        # user names, groups and client versions are the peer's text: never raw to a tty
        rows.append(tuple(printable(str(c)) for c in row))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    for r in rows:
        lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    for x in reply.get("sessions", []):
        if x.get("protocol") == "IPsec/UDP":  # the IKE port above; ESP has its own
            ports = [(sa.get("udp_src_port", 0), sa.get("udp_dst_port", 0))
                     for sa in x.get("ipsec", [])]
            src, dst = ports[0] if ports else (0, 0)
            lines.append(f"  {x['user']}: IPsec over UDP from {x['public_ip']}:"
                         f"{src or '(no ESP yet)'} to port {dst}")
        if x.get("diagnosis"):
            lines.append(f"  ! {printable(str(x['user']))}: {printable(str(x['diagnosis']))}")
    if len(rows) == 1:
        lines.append("  (no remote access sessions)")
    return "\n".join(lines)


def format_cluster_sessions(reply: dict[str, Any]) -> str:
    """`vpnhub sessions --cluster`: every member's sessions (the cluster directory)."""
    lines = [f"Cluster Sessions ({len(reply.get('members', []))} member(s))", ""]
    head = ("Member", "Session ID", "Username", "Assigned IP", "Public IP:Port", "Group",
            "Protocol", "Login Time", "Duration", "Client")
    rows: list[tuple[str, ...]] = [head]
    for x in reply.get("sessions", []):
        d = int(x.get("duration", 0))
        row = (x.get("member", ""), x.get("id", ""), x.get("user", ""),
               str(x.get("assigned_ip") or "-"), f"{x.get('public_ip')}:{x.get('public_port')}",
               x.get("group", ""), x.get("protocol", ""),
               str(x.get("login_time", "")).replace("T", " "),
               time.strftime("%H:%M:%S", time.gmtime(d)), printable(x.get("client", ""), 32))
        rows.append(tuple(printable(str(c)) for c in row))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    for r in rows:
        lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    if len(rows) == 1:
        lines.append("  (no remote access sessions in the cluster)")
    return "\n".join(lines)


def format_cluster(status: dict[str, Any]) -> str:
    """`vpnhub cluster`: the members, their load, the database as this member sees it."""
    db = "reachable" if status.get("database_ok") else \
        f"UNREACHABLE ({printable(str(status.get('last_error', '')))})"
    vip = "holds" if status.get("holds_virtual_address") else "does not hold"
    lines = [f"Cluster member {printable(str(status.get('member', '')))}: database {db};"
             f" {vip} the virtual address {status.get('virtual_address', '')}", "",
             "Members"]
    head = ("Name", "Address", "Sessions", "Limit", "Load", "Alive", "Heartbeat", "Version")
    rows: list[tuple[str, ...]] = [head]
    for m in status.get("members", []):
        rows.append(tuple(printable(str(c)) for c in (
            m.get("name", "") + (" *" if m.get("me") else ""), m.get("public_address", ""),
            m.get("sessions", 0), m.get("max_sessions", 0),
            f"{100 * float(m.get('load', 0)):.1f} %", "yes" if m.get("alive") else "NO",
            f"{m.get('heartbeat_age', 0)} s ago", m.get("version", ""))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    for r in rows:
        lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    lines.append("")
    lines.append("Address blocks of this member")
    for name, p in status.get("pools", {}).items():
        blocks = ", ".join(p.get("blocks", [])) or "none"
        lines.append(f"  {printable(str(name))}: {blocks} ({p.get('in_use', 0)} of"
                     f" {p.get('size', 0)} in use)")
    return "\n".join(lines)
