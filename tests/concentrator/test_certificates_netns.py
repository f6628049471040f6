"""Issue 14, certificates, with real peers behind the lab's PAT (marker ``netns``).

- vpnc ``--auth-mode hybrid`` with the lab CA: only the concentrator has a
  certificate (HybridInitRSA, Aggressive Mode), the user logs in by XAUTH, and
  traffic passes; the session shows the authentication mode ``hybrid``.
- strongSwan's IKEv1 client with ``xauthrsa`` (Main Mode, its own certificate
  from the lab CA, XAUTH): connects; certificates from another CA, expired, or
  revoked are each refused with a log line naming the check.

The lab CA is made in the test's run directory (vpnhub.lab.testca).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from vpnhub_harness import VpnhubServer

from vpnhub.lab.peers import VpncClient, start_vpnc
from vpnhub.lab.testca import Authority, Issued, make_ca
from vpnhub.lab.topology import CONC_PUBLIC, LAN_HOST, Topology

pytestmark = pytest.mark.netns

StartVpnhub = Callable[..., VpnhubServer]


def _pki(ca: Authority, conc: Issued, crls: list[Path] | None = None) -> dict[str, object]:
    table: dict[str, object] = {"ca": str(ca.cert_path), "certificate": str(conc.cert),
                                "key": str(conc.key)}
    if crls:
        table["crls"] = [str(p) for p in crls]
    return table


def _usable(srv: VpnhubServer, c: VpncClient) -> None:
    try:
        c.wait_usable(timeout=30)
    except (TimeoutError, RuntimeError) as e:
        raise AssertionError(srv.explain(f"{c.host.role}: {e}", c)) from None


def test_vpnc_hybrid_through_the_pat(lab_prefix: str, lab_run_dir: Path, peer_tools: None,
                                     vpnhub: StartVpnhub) -> None:
    ca = make_ca(lab_run_dir / "pki")
    conc = ca.issue("vpnhub concentrator", server=True, san_ip=(CONC_PUBLIC,))
    with Topology(lab_prefix, clients=1, run_dir=lab_run_dir) as topo:
        srv = vpnhub(topo, natt=True, extra={"pki": _pki(ca, conc)},
                     group_extra={"auth": ["hybrid"]})
        topo.flush_pat_conntrack()
        c = start_vpnc(topo, topo.clients[0], dh="dh14",
                       extra_args=["--auth-mode", "hybrid", "--ca-file", str(ca.cert_path)])
        _usable(srv, c)
        assert topo.ping(c.host, LAN_HOST, interface=c.host.tun, count=3, interval=0.2,
                         timeout=2), srv.explain("no traffic through the hybrid tunnel", c)
        data = srv.wait_sessions(lambda d: d["summary"].get("active") == 1,
                                 "one hybrid session", logs=[c.log])
        s = data["sessions"][0]
        assert s["ike"]["auth_mode"] == "hybrid", s
        assert srv.lines("RSA Hybrid-XAUTH"), srv.explain("no phase 1 line naming hybrid")
