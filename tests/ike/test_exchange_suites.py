"""Complete exchanges initiator <-> responder in memory, for every supported suite."""

from __future__ import annotations

import pytest
from ike_harness import Lab

from vpnhub.ike import events as ev
from vpnhub.ike.policy import Policy
from vpnhub.wire.constants import EncapsulationMode, EspTransform, IkeEncr, IkeHash, IPsecAuth


def _established(lab: Lab, c: object) -> tuple[ev.ChildSAEstablished, ev.ChildSAEstablished]:
    client = c  # type: ignore[assignment]
    assert client.sa.established, _tail(client.events)
    assert len(client.children) == 1, _tail(client.events)
    srv = lab.server_children()
    assert len(srv) == 1, lab.server_event_types()
    cc, sc = client.children[0], srv[0]
    # both ends derived the same keys for each direction (RFC 2409 5.5 KEYMAT)
    assert (sc.spi_in, sc.spi_out) == (cc.spi_out, cc.spi_in)
    assert sc.enc_key_in == cc.enc_key_out and sc.auth_key_in == cc.auth_key_out
    assert sc.enc_key_out == cc.enc_key_in and sc.auth_key_out == cc.auth_key_in
    assert sc.enc_key_in != sc.enc_key_out
    return cc, sc


def _tail(events: list[ev.Event]) -> list[str]:
    return [e.text for e in events if isinstance(e, ev.LogLine)][-6:]


IKE_SUITES = [
    # (encryption, key length, hash, group)
    (IkeEncr.AES_CBC, 128, IkeHash.SHA, 14),
    (IkeEncr.AES_CBC, 192, IkeHash.SHA2_256, 14),
    (IkeEncr.AES_CBC, 256, IkeHash.SHA2_384, 15),
    (IkeEncr.AES_CBC, 256, IkeHash.SHA2_512, 19),
    (IkeEncr.AES_CBC, 128, IkeHash.SHA2_256, 20),
    (IkeEncr.TRIPLE_DES_CBC, 0, IkeHash.MD5, 2),
    (IkeEncr.TRIPLE_DES_CBC, 0, IkeHash.SHA, 5),
    (IkeEncr.AES_CBC, 256, IkeHash.MD5, 2),
]
ESP_SUITES = [
    (EspTransform.AES_CBC, 128, IPsecAuth.HMAC_SHA),
    (EspTransform.AES_CBC, 192, IPsecAuth.HMAC_SHA2_384),
    (EspTransform.AES_CBC, 256, IPsecAuth.HMAC_SHA2_256),
    (EspTransform.AES_CBC, 256, IPsecAuth.HMAC_SHA2_512),
    (EspTransform.AES_GCM_16, 128, 0),
    (EspTransform.AES_GCM_16, 256, 0),
    (EspTransform.TRIPLE_DES, 0, IPsecAuth.HMAC_MD5),
]


@pytest.mark.parametrize("mode", ["aggressive", "main"])
@pytest.mark.parametrize(("encr", "bits", "hash_", "group"), IKE_SUITES)
def test_every_ike_suite(mode: str, encr: int, bits: int, hash_: int, group: int) -> None:
    legacy = encr == IkeEncr.TRIPLE_DES_CBC or hash_ == IkeHash.MD5 or group in (2, 5)
    lab = Lab(Policy(allow_legacy=True))
    client_policy = Policy(allow_legacy=legacy, dh_group=group,
                           ike_encryptions=((encr, bits),) if encr == IkeEncr.AES_CBC else (),
                           ike_hashes=(hash_,) if hash_ != IkeHash.MD5 else ())
    c = lab.add_client(policy=client_policy, mode=mode)
    c.sa.initiate(lab.now)
    lab.run()
    _established(lab, c)
    suite = c.sa.suite
    assert suite is not None and (suite.encr, suite.hash, suite.group) == (encr, hash_, group)
    p1 = [e for _, e in lab.server_events if isinstance(e, ev.Phase1Established)]
    assert p1[0].mode == ("Aggressive" if mode == "aggressive" else "Main")


@pytest.mark.parametrize(("transform", "bits", "auth"), ESP_SUITES)
def test_every_esp_suite(transform: int, bits: int, auth: int) -> None:
    legacy = transform == EspTransform.TRIPLE_DES
    lab = Lab(Policy(allow_legacy=True))
    c = lab.add_client(policy=Policy(
        allow_legacy=legacy, esp_ciphers=((transform, bits),) if not legacy else (),
        esp_auths=(auth,) if auth and not legacy else ()))
    c.sa.initiate(lab.now)
    lab.run()
    cc, _ = _established(lab, c)
    assert (cc.transform, cc.key_length) == (transform, bits)
    if transform == EspTransform.AES_GCM_16:
        assert cc.auth == 0 and len(cc.enc_key_in) == bits // 8 + 4  # RFC 4106 salt
        assert cc.auth_key_in == b""
    else:
        assert cc.auth == auth


@pytest.mark.parametrize("pfs_group", [14, 19])
def test_quick_mode_with_pfs(pfs_group: int) -> None:
    lab = Lab()
    c = lab.add_client(policy=Policy(pfs_group=pfs_group))
    c.sa.initiate(lab.now)
    lab.run()
    cc, sc = _established(lab, c)
    assert cc.pfs_group == sc.pfs_group == pfs_group


def test_legacy_suites_refused_by_default() -> None:
    """Secure by default: a 3DES/MD5/group 2 client gets NO-PROPOSAL-CHOSEN."""
    lab = Lab()  # server without allow_legacy
    c = lab.add_client(policy=Policy(allow_legacy=True, dh_group=2, ike_encryptions=(),
                                     ike_hashes=()))
    c.sa.initiate(lab.now)
    lab.run()
    assert not c.sa.established
    failed = [e for e in c.events if isinstance(e, ev.NegotiationFailed)]
    assert failed and failed[0].error == "peer_no_proposal_chosen"
    srv_fail = [e for _, e in lab.server_events if isinstance(e, ev.NegotiationFailed)]
    assert srv_fail[0].error == "no_proposal_chosen"
    assert "allow_legacy_crypto" in srv_fail[0].detail
    assert len(lab.endpoint) == 0  # nothing left behind


def test_several_children_per_ike_sa() -> None:
    """The document shows two phase 2 SAs per client (host and 0.0.0.0/0)."""
    import ipaddress

    lab = Lab()
    c = lab.add_client()
    c.sa.initiate(lab.now)
    lab.run()
    host = ipaddress.IPv4Network("192.168.2.10/32")
    c.sa.start_quick_mode(lab.now, None, host)
    lab.run()
    assert len(c.children) == 2
    assert {ch.remote_ts for ch in c.children} == {ipaddress.IPv4Network("0.0.0.0/0"), host}
    assert len(lab.server_children()) == 2
    assert all(ch.encapsulation == EncapsulationMode.UDP_TUNNEL for ch in c.children)


def test_group_proposals_narrow_the_choice() -> None:
    """A group's ike_proposals / esp_proposals: the document's 3DES/MD5/group 2 suite
    is chosen although the client offers AES first."""
    server = Policy(allow_legacy=True)
    group = Policy(allow_legacy=True, ike_only=((IkeEncr.TRIPLE_DES_CBC, 0, IkeHash.MD5, 2),),
                   esp_only=((EspTransform.TRIPLE_DES, 0, IPsecAuth.HMAC_MD5, -1),))
    lab = Lab(server, group_policy=group)
    c = lab.add_client(policy=Policy(allow_legacy=True, dh_group=2))
    c.sa.initiate(lab.now)
    lab.run()
    cc, _ = _established(lab, c)
    assert c.sa.suite is not None
    assert (c.sa.suite.encr, c.sa.suite.hash, c.sa.suite.group) == (
        IkeEncr.TRIPLE_DES_CBC, IkeHash.MD5, 2)
    assert (cc.transform, cc.auth) == (EspTransform.TRIPLE_DES, IPsecAuth.HMAC_MD5)


@pytest.mark.parametrize("mode", ["aggressive", "main"])
def test_dh_group_1_refused_even_with_allow_legacy_crypto(mode: str) -> None:
    """768-bit MODP is never accepted: allow_legacy_crypto means 3DES, MD5, groups 2/5."""
    lab = Lab(Policy(allow_legacy=True))
    c = lab.add_client(policy=Policy(allow_legacy=True, dh_group=1), mode=mode)
    c.sa.initiate(lab.now)
    lab.run()
    assert not c.sa.established
    failed = [e for e in c.events if isinstance(e, ev.NegotiationFailed)]
    assert failed and failed[0].error == "peer_no_proposal_chosen"
    assert failed[0].notify == 14  # NO-PROPOSAL-CHOSEN
    srv_fail = [e for _, e in lab.server_events if isinstance(e, ev.NegotiationFailed)]
    assert "DH group 1" in srv_fail[0].detail


def test_pfs_group_1_refused_even_with_allow_legacy_crypto() -> None:
    lab = Lab(Policy(allow_legacy=True))
    c = lab.add_client(policy=Policy(allow_legacy=True, pfs_group=1))
    c.sa.initiate(lab.now)
    lab.run()
    assert c.sa.established  # phase 1 is fine ...
    assert not c.children and not lab.server_children()  # ... Quick Mode with PFS group 1 is not
