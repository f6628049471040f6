"""NAT detection and traversal (RFC 3947) in every placement, and clients behind one PAT."""

from __future__ import annotations

import pytest
from ike_harness import SERVER_IP, Lab

from vpnhub.ike import events as ev
from vpnhub.wire.constants import EncapsulationMode


def _nat(events: list[ev.Event]) -> ev.NatDetected:
    found = [e for e in events if isinstance(e, ev.NatDetected)]
    assert found, "no NAT detection result"
    return found[0]


@pytest.mark.parametrize("mode", ["aggressive", "main"])
@pytest.mark.parametrize(
    ("client_nat", "server_nat"), [(True, False), (False, True), (True, True), (False, False)])
def test_nat_placements(mode: str, client_nat: bool, server_nat: bool) -> None:
    lab = Lab(server_local_ip="10.0.0.50" if server_nat else SERVER_IP)
    c = lab.add_client(mode=mode, pat_ip="203.0.113.78" if client_nat else None,
                       local_ip="10.10.10.2" if client_nat else "198.51.100.7")
    c.sa.initiate(lab.now)
    lab.run()
    assert c.sa.established and len(c.children) == 1
    cn = _nat(c.events)
    sn = _nat([e for _, e in lab.server_events])
    assert (cn.local_behind_nat, cn.remote_behind_nat) == (client_nat, server_nat)
    assert (sn.local_behind_nat, sn.remote_behind_nat) == (server_nat, client_nat)
    any_nat = client_nat or server_nat
    assert cn.natt_in_use == sn.natt_in_use == any_nat
    # the float to 4500 happens exactly when a NAT is in the path
    assert c.sa.local_port == (4500 if any_nat else 500)
    srv = lab.server_sa_for(c)
    assert srv is not None and srv.local_port == (4500 if any_nat else 500)
    want = EncapsulationMode.UDP_TUNNEL if any_nat else EncapsulationMode.TUNNEL
    assert c.children[0].encapsulation == want
    assert lab.server_children()[0].encapsulation == want


def test_force_natt_without_nat() -> None:
    lab = Lab()
    c = lab.add_client(pat_ip=None, local_ip="198.51.100.7", force_natt=True)
    c.sa.initiate(lab.now)
    lab.run()
    assert c.children[0].encapsulation == EncapsulationMode.UDP_TUNNEL
    assert c.sa.local_port == 4500


def test_two_clients_behind_one_pat_at_the_same_time() -> None:
    """The document's network: one public address, told apart only by ports."""
    lab = Lab()
    c1 = lab.add_client(user="vpnclient1", local_ip="10.10.10.2")
    c2 = lab.add_client(user="vpnclient2", local_ip="10.10.10.3")
    c1.sa.initiate(lab.now)
    c2.sa.initiate(lab.now)  # both first messages are in flight together
    lab.run()
    assert c1.sa.established and c2.sa.established
    assert len(c1.children) == len(c2.children) == 1
    s1, s2 = lab.server_sa_for(c1), lab.server_sa_for(c2)
    assert s1 is not None and s2 is not None and s1 is not s2
    assert s1.remote[0] == s2.remote[0] == "203.0.113.78"
    assert s1.remote[1] != s2.remote[1]
    assert s1.assigned_address != s2.assigned_address
    assert {s1.xauth_user, s2.xauth_user} == {"vpnclient1", "vpnclient2"}
    # each client's keys match its own server SA only
    k1 = {e.enc_key_in for e in lab.server_children()}
    assert {c1.children[0].enc_key_out, c2.children[0].enc_key_out} == k1


def test_same_initiator_cookie_from_two_ports_are_two_peers() -> None:
    """Before the responder cookie exists, (address, port, cookie) tells peers apart."""
    lab = Lab()
    c1 = lab.add_client(user="vpnclient1", local_ip="10.10.10.2")
    c2 = lab.add_client(user="vpnclient2", local_ip="10.10.10.3")
    c2.sa.icookie = c1.sa.icookie
    c1.sa.initiate(lab.now)
    c2.sa.initiate(lab.now)
    lab.run()
    assert len(lab.endpoint) == 2
    assert c1.sa.established and c2.sa.established


def test_natt_off_on_concentrator_is_diagnosed() -> None:
    """The source document's failure: NAT in the path, NAT-T disabled."""
    lab = Lab(server_natt=False)
    c = lab.add_client()
    c.sa.initiate(lab.now)
    lab.run()
    # the tunnel still comes up, as on the VPN 3000 ...
    assert c.sa.established and len(c.children) == 1
    assert c.children[0].encapsulation == EncapsulationMode.TUNNEL
    assert c.sa.local_port == 500
    # ... but both ends say plainly why no data will pass
    refused = [e for _, e in lab.server_events if isinstance(e, ev.NatTraversalRefused)]
    assert len(refused) == 1
    assert "ipsec_over_natt" in refused[0].reason
    assert "no data will pass" in refused[0].reason
    logs = [e for _, e in lab.server_events if isinstance(e, ev.LogLine) and e.severity == 3]
    assert any("NAT-T is disabled" in e.text for e in logs)
    srv = lab.server_sa_for(c)
    assert srv is not None and srv.p1.nat_without_natt


def test_client_without_transparent_tunneling_behind_nat_is_warned() -> None:
    lab = Lab()
    c = lab.add_client(natt=False)
    c.sa.initiate(lab.now)
    lab.run()
    # the client cannot see the NAT without NAT-D; the concentrator can (the
    # PAT rewrote port 500) and names the setting to change
    refused = [e for _, e in lab.server_events if isinstance(e, ev.NatTraversalRefused)]
    assert refused and "transparent tunneling" in refused[0].reason


@pytest.mark.parametrize("version", ["draft-02", "draft-02N", "draft-03"])
def test_draft_natt_versions(version: str) -> None:
    """Clients in the field send the drafts: NAT-D 130 and encapsulation mode 61443."""
    lab = Lab()
    c = lab.add_client()
    c.sa.config.natt_versions = (version,)
    c.sa.initiate(lab.now)
    lab.run()
    assert c.sa.natt_variant == version and c.sa.natd_type == 130
    assert c.children[0].encapsulation == EncapsulationMode.UDP_TUNNEL_DRAFT
    assert lab.server_children()[0].encapsulation == EncapsulationMode.UDP_TUNNEL_DRAFT
    assert c.sa.local_port == 4500


def test_old_drafts_do_not_float() -> None:
    """draft-00/01 peers never float to 4500 (RFC 3947 4): NAT-T is not used with them."""
    lab = Lab()
    c = lab.add_client()
    c.sa.config.natt_versions = ()
    c.sa.initiate(lab.now)
    lab.run()
    assert c.sa.natt_variant == "" and c.sa.local_port == 500
