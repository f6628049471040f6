"""What an initiator sends alike in every exchange is built once (issue 13: the load
generator's thousands of clients): its phase 1 and Quick Mode offers, their SA
payloads, and no log text nobody keeps. The bytes on the wire are those of the
payloads encoded one by one, and each SA still offers its own SPI."""

from __future__ import annotations

import dataclasses

import pytest
from ike_harness import Lab

from vpnhub.ike import events as ev
from vpnhub.ike import phase1
from vpnhub.ike.policy import Policy, encode_esp
from vpnhub.ike.quick import _esp_sa_of
from vpnhub.wire.constants import AuthMethod, EncapsulationMode, ExchangeType, ProtocolId
from vpnhub.wire.message import decode_message
from vpnhub.wire.payloads import (
    KEPayload,
    NoncePayload,
    Proposal,
    SAPayload,
    encode_before,
    encode_payloads,
)

POLICIES = [Policy(), Policy(allow_legacy=True, dh_group=2), Policy(pfs_group=14),
            Policy(esp_ciphers=((3, 0),), esp_auths=(2,), allow_legacy=True)]


def test_encode_before_is_the_chain_encoded_whole() -> None:
    sap = SAPayload([Proposal(1, ProtocolId.ISAKMP, b"", [])])
    rest = [KEPayload(b"\x01" * 256), NoncePayload(b"\x02" * 32)]
    assert encode_before(sap, sap.encode_body(), rest) == encode_payloads([sap, *rest])
    assert encode_before(sap, sap.encode_body(), []) == encode_payloads([sap])


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("encapsulation", [EncapsulationMode.TUNNEL,
                                           EncapsulationMode.UDP_TUNNEL])
def test_quick_mode_sa_cut_around_the_spi_is_the_payload_with_that_spi(
        policy: Policy, encapsulation: int) -> None:
    offers = tuple(policy.esp_offers(encapsulation))
    _, cut = _esp_sa_of(offers)
    for spi in (b"\x12\x34\x56\x78", b"\x00\x00\x00\x00", b"\xff" * 4):
        whole = SAPayload([Proposal(i + 1, ProtocolId.IPSEC_ESP, spi, [encode_esp(1, s)])
                           for i, s in enumerate(offers)])
        assert spi.join(cut) == whole.encode_body()


def test_offers_are_built_once_and_each_caller_gets_its_own_list() -> None:
    p = Policy()
    a, b = p.p1_offers(AuthMethod.XAUTH_INIT_PSK), p.p1_offers(AuthMethod.XAUTH_INIT_PSK)
    assert a == b and a is not b
    a.clear()  # a caller's list is its own: the next one still gets every suite
    assert len(p.p1_offers(AuthMethod.XAUTH_INIT_PSK)) == 4
    assert p.esp_offers(1) == Policy().esp_offers(1)
    assert p.esp_offers(1) != p.esp_offers(3)  # the encapsulation is part of the key
    assert Policy(pfs_group=14).esp_offers(1)[0].group == 14


def test_aggressive_mode_message_1_offers_the_same_sa_it_hashes() -> None:
    lab = Lab()
    clients = [lab.add_client(), lab.add_client(local_ip="10.10.10.3")]
    for c in clients:
        c.sa.initiate(lab.now)
        c.driver.service(c.sa, lab.now)
    sent = [d for _, d in lab._to_server]
    assert len(sent) == 2
    for c, d in zip(clients, sent, strict=True):
        msg = decode_message(d.data)
        assert msg.exchange == ExchangeType.AGGRESSIVE
        sap = msg.payloads[0]
        assert isinstance(sap, SAPayload)
        # SAi_b of RFC 2409 5 (in HASH_I and HASH_R) is the body as sent
        assert c.sa.sai_b == sap.raw[4:]
        assert c.sa.sai_b == phase1.our_sa(c.sa, AuthMethod.XAUTH_INIT_PSK)[1]
    assert decode_message(sent[0].data).icookie != decode_message(sent[1].data).icookie
    lab.run()
    assert all(c.sa.established for c in clients)


def test_every_quick_mode_offers_its_own_spi_and_both_ends_agree() -> None:
    lab = Lab()
    clients = [lab.add_client(), lab.add_client(local_ip="10.10.10.3")]
    for c in clients:
        c.sa.initiate(lab.now)
    lab.run()
    assert [len(c.children) for c in clients] == [1, 1]
    spis = {c.children[0].spi_in for c in clients}
    assert len(spis) == 2
    assert {s.spi_out for s in lab.server_children()} == spis


def test_a_client_that_keeps_no_lines_builds_none_and_one_that_does_gets_them() -> None:
    lab = Lab()
    c = lab.add_client()
    quiet = lab.add_client(local_ip="10.10.10.3")
    quiet.sa.config = dataclasses.replace(quiet.sa.config, log_severity=0)
    for x in (c, quiet):
        x.sa.initiate(lab.now)
    lab.run()
    assert c.children and quiet.children
    texts = [e.text for e in c.events if isinstance(e, ev.LogLine)]
    for start in ("initiating Aggressive Mode", "NAT detection", "IKE SA established",
                  "Quick Mode started", "Security negotiation complete", "Loading SPIs"):
        assert any(t.startswith(start) for t in texts), (start, texts)
    assert not [e for e in quiet.events if isinstance(e, ev.LogLine)]
    # the event that carries the peer's ID is built either way
    (p1,) = [e for e in quiet.events if isinstance(e, ev.Phase1Established)]
    assert p1.peer_id
    assert quiet.sa.logs(0) and not quiet.sa.logs(1)
