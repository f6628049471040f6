"""`vpnhub connect` with certificates (issue 14) against the strongSwan concentrator
(kernel-libipsec) through the lab's PAT: Main Mode RSA signatures (XAUTHInitRSA,
its own certificate from the lab CA, the concentrator's checked against the CA),
then XAUTH, Mode Config and traffic."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from client_harness import TUN, _connect, _profile, _status, _wait_connected

from vpnhub.lab.peers import USERS, start_strongswan_concentrator
from vpnhub.lab.testca import make_ca
from vpnhub.lab.topology import CONC_PUBLIC, LAN_HOST, POOL, PRIVATE_LAN, Topology

pytestmark = pytest.mark.netns

SWAN_CONCENTRATOR = """connections {
    rw-cert {
        version = 1
        local_addrs = %(addr)s
        pools = labpool
        proposals = aes256-sha1-modp2048
        encap = no
        unique = never
        local {
            auth = pubkey
            certs = concentrator.pem
        }
        remote {
            auth = pubkey
        }
        remote-xauth {
            auth = xauth
        }
        children {
            lan {
                local_ts = %(lan)s
                esp_proposals = aes256-sha1
                rekey_time = 0
            }
        }
    }
}
pools {
    labpool {
        addrs = %(pool)s
    }
}
secrets {
    xauth-1 {
        id = vpnuser1
        secret = "%(password)s"
    }
}
"""


def test_vpnhub_client_with_certificate_to_strongswan(lab_prefix: str,
                                                      lab_run_dir: Path) -> None:
    ca = make_ca(lab_run_dir / "pki")
    conc = ca.issue("strongswan concentrator", server=True, san_ip=(CONC_PUBLIC,))
    me = ca.issue("vpnuser1", ou="vpngroup")
    with Topology(lab_prefix, clients=1, run_dir=lab_run_dir) as topo:
        charon = start_strongswan_concentrator(topo)
        d = charon.swanctl_conf.parent
        shutil.copy(ca.cert_path, d / "x509ca" / "ca.pem")
        shutil.copy(conc.cert, d / "x509" / "concentrator.pem")
        shutil.copy(conc.key, d / "private" / "concentrator.key")
        charon.swanctl_conf.write_text(SWAN_CONCENTRATOR % {
            "addr": topo.conc.addr, "lan": PRIVATE_LAN, "pool": POOL,
            "password": USERS["vpnuser1"]})
        charon.load()
        c = topo.clients[0]
        profile = _profile(topo, "cert", auth="rsa", ike_mode="main",
                           ca_file=str(ca.cert_path), certificate=str(me.cert),
                           key=str(me.key))
        proc = _connect(topo, c, "vpnuser1", USERS["vpnuser1"], profile)
        try:
            _wait_connected(topo, c, proc)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{charon.log.read_text()[-3000:]}") from None
        assert topo.ping(c, LAN_HOST, count=2, timeout=2, interface=TUN)
        st = _status(topo, c)
        assert "RSA Digital Certificate" in st["authentication"], st
        assert st["tunnel_port"] == 4500, st
        assert "CN=vpnuser1" in charon.list_sas(), charon.list_sas()
        assert proc.stop(10) == 0
