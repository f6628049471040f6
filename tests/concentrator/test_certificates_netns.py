"""Issue 14, certificates, with real peers behind the lab's PAT (marker ``netns``).

- vpnc ``--auth-mode hybrid`` with the lab CA: only the concentrator has a
  certificate (HybridInitRSA, Aggressive Mode), the group has no pre-shared key,
  the user logs in by XAUTH, and traffic passes; the session shows the
  authentication mode ``hybrid``.
- strongSwan's IKEv1 client with ``xauthrsa`` (Main Mode, its own certificate
  from the lab CA, XAUTH): connects; certificates from another CA, expired, or
  revoked are each refused with a log line naming the check.

The lab CA is made in the test's run directory (vpnhub.lab.testca).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from vpnhub_harness import VpnhubServer

from vpnhub.lab.peers import Charon, VpncClient, start_strongswan_client, start_vpnc
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
        # a hybrid-only group needs no pre-shared key: it has none (vpnc still sends
        # its PRESHARED_KEY_HASH notify, accepted and not checked)
        srv = vpnhub(topo, natt=True, extra={"pki": _pki(ca, conc)},
                     group_extra={"auth": ["hybrid"], "psk": None})
        topo.flush_pat_conntrack()
        c = start_vpnc(topo, topo.clients[0], dh="dh14",
                       extra_args=["--auth-mode", "hybrid", "--ca-file", str(ca.cert_path)])
        _usable(srv, c)
        assert topo.ping(c.host, LAN_HOST, interface=c.host.tun, count=3, interval=0.2,
                         timeout=2), srv.explain("no traffic through the hybrid tunnel", c)
        data = srv.wait_sessions(lambda d: d["summary"].get("active") == 1,
                                 "one hybrid session", logs=[c.log])
        s = data["sessions"][0]
        assert s["ike"]["auth_mode"] == s["auth"] == "hybrid", s
        assert srv.lines("RSA Hybrid-XAUTH"), srv.explain("no phase 1 line naming hybrid")
        assert not srv.lines("unknown_group"), srv.explain("the keyless group taken as unknown")


# ---------------------------------------------------------------- strongSwan xauthrsa
USER, PASSWORD = "vpnuser1", "userpass1"
SWAN_XAUTHRSA = """connections {
    home {
        version = 1
        remote_addrs = %(gateway)s
        vips = 0.0.0.0
        proposals = aes256-sha1-modp2048
        local {
            auth = pubkey
            certs = client.pem
        }
        local-xauth {
            auth = xauth
            xauth_id = %(user)s
        }
        remote {
            auth = pubkey
            id = %%any
        }
        children {
            lan {
                remote_ts = 0.0.0.0/0
                esp_proposals = aes256-sha1
            }
        }
    }
}
secrets {
    xauth-user {
        id = %(user)s
        secret = "%(password)s"
    }
}
"""


def _swan_xauthrsa(topo: Topology, host: str, ca: Authority, client: Issued) -> Charon:
    """charon as an IKEv1 Main Mode client with its certificate, then XAUTH."""
    swan = start_strongswan_client(topo, host, username=USER, password=PASSWORD)
    d = swan.swanctl_conf.parent
    shutil.copy(ca.cert_path, d / "x509ca" / "ca.pem")
    shutil.copy(client.cert, d / "x509" / "client.pem")
    shutil.copy(client.key, d / "private" / "client.key")
    swan.swanctl_conf.write_text(SWAN_XAUTHRSA % {"gateway": CONC_PUBLIC, "user": USER,
                                                  "password": PASSWORD})
    swan.load()
    return swan


def _lab_pki(lab_run_dir: Path) -> tuple[Authority, Issued, dict[str, Issued], Path]:
    """The lab CA, the concentrator's certificate, client certificates and a CRL."""
    ca = make_ca(lab_run_dir / "pki")
    conc = ca.issue("vpnhub concentrator", server=True, san_ip=(CONC_PUBLIC,))
    other = make_ca(lab_run_dir / "pki-other", "other-ca")
    clients = {
        "good": ca.issue("vpnuser1", ou="vpngroup"),
        "other": other.issue("vpnuser1-other", ou="vpngroup"),
        "expired": ca.issue("vpnuser1-expired", ou="vpngroup", days=(-30, -1)),
        "revoked": ca.issue("vpnuser1-revoked", ou="vpngroup"),
    }
    crl = ca.crl([clients["revoked"].cert], lab_run_dir / "pki" / "lab-ca.crl")
    return ca, conc, clients, crl


def test_strongswan_xauthrsa_and_refused_certificates(
        lab_prefix: str, lab_run_dir: Path, peer_tools: None, vpnhub: StartVpnhub) -> None:
    ca, conc, clients, crl = _lab_pki(lab_run_dir)
    with Topology(lab_prefix, clients=1, run_dir=lab_run_dir) as topo:
        srv = vpnhub(topo, natt=True, extra={"pki": _pki(ca, conc, [crl])},
                     group_extra={"auth": ["psk", "rsa"]})
        topo.flush_pat_conntrack()
        host = topo.clients[0]
        for kind, check in (("other", "other_ca"), ("expired", "expired"),
                            ("revoked", "revoked")):
            swan = _swan_xauthrsa(topo, host.role, ca, clients[kind])
            # the refusal sends no notify (the peer is not authenticated): swanctl
            # gives up after its time-out, the log has said why long before
            cp = swan.initiate(timeout=4)
            srv.wait_log("peer certificate refused", f"({check}:", timeout=10,
                         logs=[swan.log])
            assert cp.returncode != 0, srv.explain(f"the {kind} certificate was accepted")
            assert swan.established() == 0, srv.explain(f"{kind}: an IKE SA is up")
            swan.stop()
        swan = _swan_xauthrsa(topo, host.role, ca, clients["good"])
        cp = swan.initiate(timeout=20)
        assert cp.returncode == 0, srv.explain(f"swanctl --initiate: {cp.stdout[-2000:]}",
                                               swan.log)
        try:
            topo.wait_ping(host, LAN_HOST, interface=swan.tun, timeout=10)
        except (TimeoutError, RuntimeError) as e:
            raise AssertionError(srv.explain(f"{host.role}: {e}", swan.log)) from None
        data = srv.wait_sessions(lambda d: d["summary"].get("active") == 1,
                                 "one rsa session", logs=[swan.log])
        s = data["sessions"][0]
        assert (s["auth"], s["group"], s["user"]) == ("rsa", "vpngroup", USER), s
        assert "CN=vpnuser1" in s["ike"]["certificate"], s


# ------------------------------------------------------------------ ike-scan/psk-crack
def _ike_scan(topo: Topology, auth: int, out: Path) -> str:
    """ike-scan's Aggressive Mode probe of the lab group with one transform whose
    authentication method is `auth`, writing psk-crack's parameters to `out`."""
    argv = ["ike-scan", "--aggressive", "--multiline", "--id=vpngroup", "--idtype=11",
            "--dhgroup=14", f"--trans=(1=7,14=256,2=2,3={auth},4=14)",
            f"--pskcrack={out}", CONC_PUBLIC]
    return topo.exec("c1", argv, timeout=30).stdout


def test_ike_scan_gets_no_crackable_hash_from_a_hybrid_only_group(
        lab_prefix: str, lab_run_dir: Path, peer_tools: None, vpnhub: StartVpnhub) -> None:
    ca = make_ca(lab_run_dir / "pki")
    conc = ca.issue("vpnhub concentrator", server=True, san_ip=(CONC_PUBLIC,))
    with Topology(lab_prefix, clients=1, run_dir=lab_run_dir) as topo:
        srv = vpnhub(topo, natt=True, extra={"pki": _pki(ca, conc)},
                     group_extra={"auth": ["hybrid"]})
        psk_probe = _ike_scan(topo, 65001, lab_run_dir / "psk.txt")
        assert "NO-PROPOSAL-CHOSEN" in psk_probe, srv.explain(psk_probe)
        hybrid_probe = _ike_scan(topo, 64221, lab_run_dir / "hybrid.txt")
        assert "Aggressive Mode Handshake returned" in hybrid_probe, srv.explain(hybrid_probe)
        assert "Signature(" in hybrid_probe and "Hash(" not in hybrid_probe, hybrid_probe
        for f in ("psk.txt", "hybrid.txt"):
            p = lab_run_dir / f
            assert not p.exists() or not p.read_text().strip(), (f, p.read_text())
