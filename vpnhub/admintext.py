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
