"""A real exchange: vpnc 0.5.3 against strongSwan 5.9.8 (Aggressive Mode, XAUTH,
Mode Config, Quick Mode, DPD, Delete) through a PAT.

The .bin files were rebuilt from tests/wire/data/vpnc-labc1-debug3.log
by data/vpnc_trace.py: *_msg.bin are whole cleartext messages, *_plain.bin the
decrypted payload chains of E-flag messages (first payload HASH).
"""

from __future__ import annotations

import importlib.util
import sys
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from vpnhub.wire import (
    AttributePayload,
    AuthMethod,
    CfgAttr,
    CfgType,
    DeletePayload,
    EncapsulationMode,
    ExchangeType,
    HashPayload,
    IDPayload,
    IdType,
    IkeEncr,
    KEPayload,
    NatDPayload,
    NattVariant,
    NoncePayload,
    NotifyPayload,
    NotifyType,
    P1Attr,
    PayloadType,
    ProtocolId,
    SAPayload,
    SplitNetwork,
    VendorId,
    VendorIDPayload,
    XauthStatus,
    decode_message,
    decode_payloads,
    decode_split_networks,
    encode_message,
    encode_payloads,
    payload_body,
    select_natt_variant,
)

DATA = Path(__file__).parent / "data"
LOG = DATA / "vpnc-labc1-debug3.log"  # `vpnc --debug 3` of a lab connection (lab secrets only)
ICOOKIE = bytes.fromhex("172cb0d429b3c609")
RCOOKIE = bytes.fromhex("d38a78ed209d1529")


def _load(name: str) -> bytes:
    return (DATA / name).read_bytes()


MESSAGES = sorted(p.name for p in DATA.glob("*_msg.bin"))
PLAINS = sorted(p.name for p in DATA.glob("*_plain.bin"))


def test_the_capture_files_are_present():
    assert MESSAGES == ["01_send_aggressive_msg.bin", "02_recv_aggressive_msg.bin"]
    assert len(PLAINS) == 13


@pytest.mark.parametrize("name", MESSAGES)
def test_cleartext_messages_round_trip_bytewise(name):
    data = _load(name)
    msg = decode_message(data)
    assert encode_message(msg) == data
    assert b"".join(p.raw for p in msg.payloads) == data[28:]


@pytest.mark.parametrize("name", PLAINS)
def test_decrypted_bodies_round_trip_bytewise(name):
    data = _load(name)
    payloads = decode_payloads(PayloadType.HASH, data)
    assert isinstance(payloads[0], HashPayload)
    assert encode_payloads(payloads) == data


def test_am1_from_vpnc():
    msg = decode_message(_load("01_send_aggressive_msg.bin"))
    assert (msg.icookie, msg.rcookie) == (ICOOKIE, bytes(8))
    assert msg.exchange == ExchangeType.AGGRESSIVE
    assert msg.payload_names() == ["SA", "KE", "NON", "ID"] + ["VID"] * 9
    sa = msg.get(SAPayload)
    assert sa is not None and len(sa.proposals) == 1
    transforms = sa.proposals[0].transforms
    assert len(transforms) == 24
    assert [t.number for t in transforms] == list(range(24))
    first = transforms[0]
    assert first.value(P1Attr.ENCRYPTION_ALGORITHM) == IkeEncr.AES_CBC
    assert first.value(P1Attr.KEY_LENGTH) == 256
    assert first.value(P1Attr.AUTHENTICATION_METHOD) == AuthMethod.XAUTH_INIT_PSK
    assert first.value(P1Attr.LIFE_DURATION) == 2147483
    assert first.get(P1Attr.LIFE_DURATION).value == (2147483).to_bytes(4, "big")  # TLV kept
    assert transforms[12].value(P1Attr.AUTHENTICATION_METHOD) == AuthMethod.PSK
    ke = msg.get(KEPayload)
    assert ke is not None and len(ke.data) == 128
    assert ke.data.startswith(bytes.fromhex("b9eca218d999f75e"))
    idp = msg.get(IDPayload)
    assert idp is not None and idp.id_type == IdType.KEY_ID
    assert idp.text() == "vpngroup"
    assert (idp.protocol_id, idp.port) == (17, 500)


def test_am1_vendor_ids_by_name():
    msg = decode_message(_load("01_send_aggressive_msg.bin"))
    names = [p.name for p in msg.get_all(VendorIDPayload)]
    assert names == [
        "XAUTH",
        "Cisco Unity",
        "NAT-T RFC 3947",
        "NAT-T draft-03",
        "NAT-T draft-02\\n",
        "NAT-T draft-02",
        "NAT-T draft-01",
        "NAT-T draft-00",
        "DPD",
    ]
    assert VendorId.CISCO_UNITY in msg.vendor_ids()
    assert select_natt_variant(msg.vendor_ids()) is NattVariant.RFC3947


def test_am1_describe_is_one_cisco_style_line():
    msg = decode_message(_load("01_send_aggressive_msg.bin"))
    assert msg.cisco_summary() == "ISAKMP OAK AG (SA, KE, NON, ID, " + ", ".join(["VID"] * 9) + ")"
    line = msg.describe(detail=True)
    assert "\n" not in line
    assert "24 transforms: AES_CBC-256/SHA/MODP_1024/XAUTHInitPreShared, life 2147483s |" in line
    assert "3DES_CBC/MD5/MODP_1024/PreShared" in line
    assert "ID(KEY_ID 'vpngroup', proto=17 port=500)" in line
    assert "VID(Cisco Unity)" in line and "VID(DPD)" in line


def test_am2_from_strongswan():
    msg = decode_message(_load("02_recv_aggressive_msg.bin"))
    assert (msg.icookie, msg.rcookie) == (ICOOKIE, RCOOKIE)
    assert msg.describe() == (
        "AGGRESSIVE flags=00 msgid=00000000 SA KE NONCE ID VID VID VID NAT_D NAT_D HASH"
    )
    sa = msg.get(SAPayload)
    assert sa is not None
    assert sa.describe() == (
        "SA(doi=IPSEC, 1 proposal: #1 ISAKMP 1 transform: "
        "AES_CBC-128/SHA/MODP_1024/XAUTHInitPreShared, life 2147483s)"
    )
    assert sa.proposals[0].transforms[0].number == 4
    idp = msg.get(IDPayload)
    assert idp is not None and idp.address() == IPv4Address("203.0.113.50")
    natd = msg.get_all(NatDPayload)
    assert [n.payload_type for n in natd] == [20, 20]
    assert natd[0].data == bytes.fromhex("b4d590472372f396bc264755a15338a11da942b1")
    assert [p.name for p in msg.get_all(VendorIDPayload)] == ["XAUTH", "DPD", "NAT-T RFC 3947"]
    nonce = msg.get(NoncePayload)
    assert nonce is not None and len(nonce.data) == 32
    # SAr_b for HASH_R is the SA body exactly as received.
    assert payload_body(sa) == sa.raw[4:] and len(sa.raw) == 0x3C


def test_am3_initial_contact_and_natd():
    payloads = decode_payloads(PayloadType.HASH, _load("03_send_aggressive_plain.bin"))
    notify = payloads[1]
    assert isinstance(notify, NotifyPayload)
    assert notify.notify_type == NotifyType.INITIAL_CONTACT
    assert notify.spi == ICOOKIE + RCOOKIE
    assert [type(p).__name__ for p in payloads[2:]] == [
        "VendorIDPayload",
        "VendorIDPayload",
        "NatDPayload",
        "NatDPayload",
    ]
    assert payloads[2].describe() == "VID(Cisco client (vpnc))"


def test_xauth_request_and_status():
    request = decode_payloads(PayloadType.HASH, _load("04_recv_modecfg_transaction_plain.bin"))[1]
    assert isinstance(request, AttributePayload) and request.cfg_type == CfgType.REQUEST
    assert [a.type for a in request.attributes] == [
        CfgAttr.XAUTH_USER_NAME,
        CfgAttr.XAUTH_USER_PASSWORD,
    ]
    status = decode_payloads(PayloadType.HASH, _load("06_recv_modecfg_transaction_plain.bin"))[1]
    assert isinstance(status, AttributePayload) and status.cfg_type == CfgType.SET
    assert status.get(CfgAttr.XAUTH_STATUS).value == XauthStatus.OK
    assert status.describe() == "ATTR(CFG_SET id=0: XAUTH_STATUS=OK)"


def test_mode_config_request_and_reply():
    request = decode_payloads(PayloadType.HASH, _load("08_send_modecfg_transaction_plain.bin"))[1]
    assert isinstance(request, AttributePayload)
    version = request.get(CfgAttr.APPLICATION_VERSION)
    assert version.as_text() == "Cisco Systems VPN Client 0.5.3+git20220927-1:Linux"
    reply = decode_payloads(PayloadType.HASH, _load("09_recv_modecfg_transaction_plain.bin"))[1]
    assert isinstance(reply, AttributePayload) and reply.identifier == request.identifier == 20
    assert reply.get(CfgAttr.INTERNAL_IP4_ADDRESS).as_ipv4() == IPv4Address("10.40.1.1")
    assert reply.get(CfgAttr.INTERNAL_IP4_DNS).as_ipv4() == IPv4Address("192.168.2.10")
    split = decode_split_networks(reply.get(CfgAttr.UNITY_SPLIT_INCLUDE).as_bytes())
    assert split == [SplitNetwork(IPv4Network("192.168.2.0/24"))]
    assert reply.describe() == (
        "ATTR(CFG_REPLY id=20: INTERNAL_IP4_ADDRESS=10.40.1.1, "
        "INTERNAL_IP4_DNS=192.168.2.10, UNITY_SPLIT_INCLUDE=192.168.2.0/24)"
    )


def test_quick_mode_offer_and_answer():
    offer = decode_payloads(PayloadType.HASH, _load("10_send_ike_quick_plain.bin"))
    sa = offer[1]
    assert isinstance(sa, SAPayload)
    assert len(sa.proposals) == 12
    assert {p.spi for p in sa.proposals} == {bytes.fromhex("b74cb169")}
    assert {p.protocol_id for p in sa.proposals} == {ProtocolId.IPSEC_ESP}
    ids = [p for p in offer if isinstance(p, IDPayload)]
    assert ids[0].network() == IPv4Network("10.40.1.1/32")
    assert ids[1].network() == IPv4Network("0.0.0.0/0")
    answer = decode_payloads(PayloadType.HASH, _load("11_recv_ike_quick_plain.bin"))[1]
    assert isinstance(answer, SAPayload)
    (proposal,) = answer.proposals
    assert (proposal.number, proposal.spi) == (4, bytes.fromhex("cfc432ac"))
    (transform,) = proposal.transforms
    assert transform.value(4) == EncapsulationMode.UDP_TUNNEL  # IPsecAttr.ENCAPSULATION_MODE
    assert proposal.describe() == (
        "#4 ESP spi=cfc432ac 1 transform: AES_CBC-128/HMAC_SHA/UDP_TUNNEL, life 2147483s"
    )


def test_dpd_and_delete():
    ru = decode_payloads(PayloadType.HASH, _load("13_send_informational_plain.bin"))[1]
    ack = decode_payloads(PayloadType.HASH, _load("14_recv_informational_plain.bin"))[1]
    assert isinstance(ru, NotifyPayload) and isinstance(ack, NotifyPayload)
    assert (ru.notify_type, ack.notify_type) == (NotifyType.R_U_THERE, NotifyType.R_U_THERE_ACK)
    assert ru.dpd_sequence == ack.dpd_sequence == 0x0FE4395A
    esp = decode_payloads(PayloadType.HASH, _load("15_send_informational_plain.bin"))[1]
    assert isinstance(esp, DeletePayload)
    assert esp.spis == [bytes.fromhex("b74cb169"), bytes.fromhex("cfc432ac")]
    ike = decode_payloads(PayloadType.HASH, _load("16_send_informational_plain.bin"))[1]
    assert isinstance(ike, DeletePayload) and ike.spis == [ICOOKIE + RCOOKIE]
    assert ike.describe() == f"DELETE(ISAKMP, 1 SPI: {(ICOOKIE + RCOOKIE).hex()})"


def test_data_files_match_the_trace(monkeypatch):
    spec = importlib.util.spec_from_file_location("vpnc_trace", DATA / "vpnc_trace.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "vpnc_trace", module)  # dataclasses look it up
    spec.loader.exec_module(module)
    packets = module.parse_trace(LOG.read_text(errors="replace"))
    named = module.file_names(packets)
    assert sorted(name for name, _ in named) == sorted(MESSAGES + PLAINS)
    for name, packet in named:
        module.check_chain(packet)
        assert packet.wire_bytes() == _load(name), name
