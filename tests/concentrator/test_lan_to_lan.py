"""LAN-to-LAN with NAT-T: strongSwan as the remote site, behind its own NAT (the
lab's PAT), Main Mode with a pre-shared key, network to network; the site's LAN
(192.168.3.0/24) and the private LAN (192.168.2.0/24) reach each other."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vpnhub.lab.peers import _start_charon, render
from vpnhub.lab.topology import LAN_HOST, Topology, wait_until

SITE_LAN = "192.168.3.0/24"
SITE_HOST = "192.168.3.1"
SITE_PSK = "site-to-site-secret"

SWANCTL_SITE = """
connections {
    site {
        version = 1
        aggressive = no
        remote_addrs = 203.0.113.50
        proposals = aes256-sha1-modp2048
        local { auth = psk
                id = 10.10.10.2 }
        remote { auth = psk
                 id = 203.0.113.50 }
        children {
            lan {
                local_ts = 192.168.3.0/24
                remote_ts = 192.168.2.0/24
                esp_proposals = aes256-sha1
            }
        }
    }
}
secrets {
    ike-site {
        id-1 = 203.0.113.50
        id-2 = 10.10.10.2
        secret = "%s"
    }
}
"""


def test_lan_to_lan_with_strongswan_site_behind_nat(lab_prefix: str, lab_run_dir: Path,
                                                     peer_tools: None, vpnhub: Any) -> None:
    with Topology(lab_prefix, clients=1, run_dir=lab_run_dir) as topo:
        topo.start_lan_services()
        site_gw = topo.clients[0]  # the remote site's gateway sits behind the PAT
        # its LAN: one address of 192.168.3.0/24 on the gateway itself (no dummy module here)
        topo.exec(site_gw, ["ip", "addr", "add", f"{SITE_HOST}/32", "dev", "lo"], check=True)
        # NAT-T off for remote access, on for this tunnel: its own switch decides
        srv = vpnhub(topo, natt=False, lan_to_lan=[{
            "name": "branch", "peer": "203.0.113.78", "psk": SITE_PSK,
            "local_networks": ["192.168.2.0/24"], "remote_networks": [SITE_LAN],
            "ipsec_over_natt": True}])
        sw = render("strongswan-client.conf", {"RUN": str(topo.run_dir / "charon-c1"),
                                               "FRAGSIZE": "1280"})
        charon = _start_charon(topo, site_gw, "site", sw, SWANCTL_SITE % SITE_PSK)
        cp = charon.swanctl("--initiate", "--child", "lan", check=False)
        assert cp.returncode == 0, cp.stdout[-2000:] + Path(charon.log).read_text()[-2000:]
        # both LANs reach each other: from the private LAN host to the site's LAN
        wait_until(lambda: topo.ping(topo.lan, SITE_HOST, timeout=1), 10, interval=0.2,
                   what="ping 192.168.2.10 -> 192.168.3.1 through the LAN-to-LAN tunnel")
        r = topo.exec(site_gw, ["ping", "-c", "3", "-i", "0.2", "-W", "2", "-I", SITE_HOST,
                                LAN_HOST])
        assert r.returncode == 0, r.stdout + srv.tail()
        sas = charon.list_sas()
        assert "TUNNEL-in-UDP" in sas, sas  # NAT-T although [nat_transparency] is off
        data = srv.sessions()
        assert data["summary"]["active_lan_to_lan"] == 1, data
        site = data["lan_to_lan"][0]
        assert site["lan_to_lan"] == "branch" and site["public_ip"] == "203.0.113.78"
        assert site["protocol"] == "IPsec/NAT-T"
        assert site["ipsec"][0]["remote_network"] == SITE_LAN
        assert srv.lines("Security negotiation complete")
