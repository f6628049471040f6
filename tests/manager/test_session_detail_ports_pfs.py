"""The session detail shows IPsec over UDP's real ports and PFS per IPsec SA (issue 11, 7c/7d).

Before, a Cisco-UDP session showed UDP port 0 and PFS appeared nowhere. The
session is built as the concentrator builds it (model.Session + ChildInfo);
the page is the manager's own detail renderer.
"""

from __future__ import annotations

import re
import time

from vpnhub.manager.pages import detail_live
from vpnhub.session.model import ChildInfo, Session


def field(html: str, name: str) -> list[str]:
    return re.findall(rf'<td data-field="{name}">([^<]*)</td>', html)


def session(transport: str, pfs_group: int) -> Session:
    s = Session((b"i" * 8, b"r" * 8), "203.0.113.78", 500, group="g", user="u",
                transport=transport, nat_t=transport == "natt")
    if transport == "cisco-udp":
        s.udp_port, s.udp_server_port = 31909, 10000  # learnt from its first ESP
    # ESP AES-CBC 256 / HMAC-SHA1, tunnel (1) or UDP tunnel (3)
    s.children[0x1234] = ChildInfo(0x1234, 0x5678, 12, 256, 2, 3 if s.nat_t else 1,
                                   "0.0.0.0/0", "10.40.1.1/32", 28800, time.time(),
                                   pfs_group=pfs_group)
    return s


def test_cisco_udp_ports_and_pfs_group() -> None:
    d = session("cisco-udp", 14).as_dict(time.time())
    sa = d["ipsec"][0]
    assert (sa["udp_src_port"], sa["udp_dst_port"]) == (31909, 10000)
    assert (sa["pfs"], sa["pfs_group"]) == ("MODP_2048 (group 14)", 14)
    html = detail_live(d, "")
    assert field(html, "udp_src_port") == ["31909"] and field(html, "udp_dst_port") == ["10000"]
    assert field(html, "pfs") == ["MODP_2048 (group 14)"]


def test_nat_t_ports_and_no_pfs() -> None:
    d = session("natt", 0).as_dict(time.time())
    sa = d["ipsec"][0]
    assert (sa["udp_src_port"], sa["udp_dst_port"]) == (500, 4500)
    assert sa["pfs"] == "none"
    assert field(detail_live(d, ""), "pfs") == ["none"]
