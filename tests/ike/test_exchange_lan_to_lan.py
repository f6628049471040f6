"""LAN-to-LAN: Main Mode with a PSK found by address, network-to-network Quick Mode,
no XAUTH and no Mode Config, selectors checked against the configured networks."""

from __future__ import annotations

import ipaddress

import pytest
from ike_harness import Lab

from vpnhub.ike import events as ev

LOCAL = ipaddress.IPv4Network("192.168.3.0/24")  # the remote site's LAN
REMOTE = ipaddress.IPv4Network("192.168.2.0/24")  # the concentrator's LAN


def _site(mode: str, **lab_kw: object) -> tuple[Lab, object]:
    lab = Lab(server_xauth=False, **lab_kw)  # type: ignore[arg-type]

    def ts_check(theirs: ipaddress.IPv4Network, ours: ipaddress.IPv4Network) -> str | None:
        return None if theirs.subnet_of(LOCAL) and ours.subnet_of(REMOTE) else "not allowed"

    lab.server_ts_check = ts_check
    c = lab.add_client(mode=mode, xauth=False)
    c.auto_quick_mode = False
    c.sa.initiate(lab.now)
    lab.run()
    return lab, c


@pytest.mark.parametrize("mode", ["main", "aggressive"])
def test_site_to_site_behind_nat(mode: str) -> None:
    lab, c = _site(mode)
    assert c.sa.established  # type: ignore[attr-defined]
    assert not [e for _, e in lab.server_events if isinstance(e, ev.XauthCredentials)]
    c.sa.start_quick_mode(lab.now, LOCAL, REMOTE)  # type: ignore[attr-defined]
    lab.run()
    srv = lab.server_children()
    assert len(srv) == 1 and srv[0].remote_ts == LOCAL and srv[0].local_ts == REMOTE
    assert c.children[0].encapsulation == 3  # type: ignore[attr-defined]  # NAT-T


def test_selectors_outside_the_tunnel_are_refused() -> None:
    lab, c = _site("main")
    c.sa.start_quick_mode(lab.now, ipaddress.IPv4Network("10.99.0.0/16"), REMOTE)  # type: ignore[attr-defined]
    lab.run()
    assert lab.server_children() == []
    srv = lab.server_sa_for(c)  # type: ignore[arg-type]
    assert srv is not None and srv.drops["ts_unacceptable"] == 1
    assert srv.established  # only the exchange failed
