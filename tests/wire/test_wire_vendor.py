"""Vendor IDs: every hardcoded constant is recomputed from its documented source."""

from __future__ import annotations

import hashlib

import pytest

from vpnhub import __version__
from vpnhub.wire import (
    NATT_SEND_VIDS,
    NATT_VIDS,
    EncapsulationMode,
    NattVariant,
    PayloadType,
    VendorId,
    identify,
    select_natt_variant,
)
from vpnhub.wire.vendor import KNOWN_VENDOR_IDS, cisco_concentrator_vid, vpnhub_vid


def md5(text: bytes) -> bytes:
    return hashlib.md5(text).digest()


@pytest.mark.parametrize(
    ("constant", "text"),
    [
        (VendorId.NAT_T_RFC3947, b"RFC 3947"),  # RFC 3947 3.1
        (VendorId.NAT_T_DRAFT_00, b"draft-ietf-ipsec-nat-t-ike-00"),
        (VendorId.NAT_T_DRAFT_01, b"draft-ietf-ipsec-nat-t-ike-01"),
        (VendorId.NAT_T_DRAFT_02, b"draft-ietf-ipsec-nat-t-ike-02"),
        (VendorId.NAT_T_DRAFT_02N, b"draft-ietf-ipsec-nat-t-ike-02\n"),
        (VendorId.NAT_T_DRAFT_03, b"draft-ietf-ipsec-nat-t-ike-03"),
        (VendorId.CISCO_FRAGMENTATION, b"FRAGMENTATION"),
        (VendorId.CISCO_VPN3000_CLIENT, b"ALTIGA NETWORKS"),
        (VendorId.VPNHUB, f"vpnhub {__version__}".encode()),
        (VendorId.VPNHUB_GENERIC, b"vpnhub"),
    ],
)
def test_full_md5_vendor_ids(constant, text):
    assert constant == md5(text)


def test_truncated_md5_vendor_ids():
    # Cisco Unity and DPD: 14 bytes of MD5, then major 1, minor 0 (RFC 3706 6).
    assert md5(b"CISCO-UNITY")[:14] + b"\x01\x00" == VendorId.CISCO_UNITY
    assert md5(b"CISCO-DEAD-PEER-DETECTION")[:14] + b"\x01\x00" == VendorId.DPD
    assert md5(b"draft-ietf-ipsra-isakmp-xauth-06.txt")[:8] == VendorId.XAUTH
    assert md5(b"ALTIGA GATEWAY")[:14] == VendorId.CISCO_CONCENTRATOR


def test_brief_hex_values():
    # The values the issue lists, as hex, agree with the constants.
    assert VendorId.CISCO_UNITY.hex() == "12f5f28c457168a9702d9fe274cc0100"
    assert VendorId.XAUTH.hex() == "09002689dfd6b712"
    assert VendorId.DPD.hex() == "afcad71368a1f1c96b8696fc77570100"
    assert VendorId.NAT_T_RFC3947.hex() == "4a131c81070358455c5728f20e95452f"
    assert VendorId.NAT_T_DRAFT_02.hex() == "cd60464335df21f87cfdb2fc68b6a448"
    assert VendorId.NAT_T_DRAFT_02N.hex() == "90cb80913ebb696e086381b5ec427b1f"
    assert VendorId.NAT_T_DRAFT_03.hex() == "7d9419a65310ca6f2c179d9215529d56"
    assert VendorId.NAT_T_DRAFT_00.hex() == "4485152d18b6bbcd0be8a8469579ddcc"
    assert VendorId.NAT_T_DRAFT_01.hex() == "16f6ca16e4a4066d83821a0f0aeaa862"
    assert VendorId.CISCO_FRAGMENTATION.hex() == "4048b7d56ebce88525e7de7f00d6c2d3"
    assert cisco_concentrator_vid(1, 0).hex() == "1f07f70eaa6514d3b0fa96542a500100"


@pytest.mark.parametrize(
    ("vid", "name"),
    [
        (VendorId.CISCO_UNITY, "Cisco Unity"),
        (VendorId.XAUTH, "XAUTH"),
        (VendorId.DPD, "DPD"),
        (VendorId.NAT_T_RFC3947, "NAT-T RFC 3947"),
        (VendorId.NAT_T_DRAFT_02N, "NAT-T draft-02\\n"),
        (VendorId.CISCO_FRAGMENTATION, "Cisco IKE Fragmentation"),
        (VendorId.CISCO_FRAGMENTATION + bytes.fromhex("c0000000"), "Cisco IKE Fragmentation"),
        (VendorId.VPNHUB, f"vpnhub {__version__}"),
        (VendorId.VPNHUB_GENERIC, "vpnhub"),
        (cisco_concentrator_vid(4, 7), "Cisco VPN Concentrator 4.0.7"),
        (cisco_concentrator_vid(1, 0), "Cisco VPN Concentrator"),
        (md5(b"CISCO-UNITY")[:14] + b"\x01\x01", "Cisco Unity"),
        (md5(b"strongSwan"), "strongSwan"),
        (md5(b"KAME/racoon"), "KAME/racoon"),
        (md5(b"MS NT5 ISAKMPOAKLEY") + bytes.fromhex("00000005"), "Windows Vista"),
        (md5(b"MS NT5 ISAKMPOAKLEY") + bytes.fromhex("00000099"), "Microsoft Windows"),
        (md5(b"Vid-Initial-Contact"), "Microsoft Initial-Contact"),
        (bytes.fromhex("4f53577e7b6566787577466d"), "Openswan"),
        (bytes.fromhex("4f454e5f52685050487b645e"), "Libreswan 3.5"),
        (bytes.fromhex("4f454e" + "41" * 9), "FreeS/WAN, Openswan or Libreswan"),
        (bytes.fromhex("1d6e178f6c2c0be284985465450fe9d4"), "FortiGate"),
        (bytes.fromhex("299ee8289f40a8973bc78687e2e7226b532c3b76"), "Juniper NetScreen"),
        (bytes.fromhex("f4ed19e0c114eb516faaac0ee37daf2807b4381f"), "Check Point Firewall-1"),
        (bytes.fromhex("126e1f577291153b20485f7f155b4bc8"), "Cisco client (vpnc)"),
        (bytes.fromhex("4df37928e9fc4fd1b3262170d515c662"), "NAT-T draft (unnumbered)"),
        (md5(b"draft-ietf-ipsec-nat-t-ike-04"), "NAT-T draft-04"),
    ],
)
def test_identify(vid, name):
    assert identify(vid) == name


@pytest.mark.parametrize(
    "vid",
    [b"", b"\x00" * 16, VendorId.XAUTH[:7], bytes.fromhex("4f5357" + "41" * 10)],
)
def test_identify_unknown(vid):
    assert identify(vid) is None


def test_md5_named_ike_scan_entries():
    # A sample of ike-scan entries whose comments give the hashed text.
    for text, name in [
        (b"NETGEAR", "Netgear"),
        (b"ESPThruNAT", "ESPThruNAT"),
        (b"draft-ietf-ipsec-nat-t-ike-09", "NAT-T draft-09"),
    ]:
        assert identify(md5(text)) == name


def test_known_table_is_well_formed():
    for pattern in KNOWN_VENDOR_IDS:
        assert pattern.prefix and pattern.name
        assert pattern.length is None or pattern.length >= len(pattern.prefix)


def test_natt_table():
    assert set(NATT_VIDS.values()) == set(NattVariant)
    assert NATT_VIDS[VendorId.NAT_T_DRAFT_02N] is NattVariant.DRAFT_02N
    assert NATT_SEND_VIDS[0] == VendorId.NAT_T_RFC3947
    assert NattVariant.RFC3947.natd_payload_type == PayloadType.NAT_D
    assert NattVariant.DRAFT_02.natd_payload_type == PayloadType.NAT_D_DRAFT
    assert NattVariant.DRAFT_03.natoa_payload_type == PayloadType.NAT_OA_DRAFT
    assert NattVariant.RFC3947.udp_tunnel_mode == EncapsulationMode.UDP_TUNNEL
    assert NattVariant.DRAFT_02N.udp_tunnel_mode == EncapsulationMode.UDP_TUNNEL_DRAFT
    assert NattVariant.DRAFT_02N.udp_transport_mode == EncapsulationMode.UDP_TRANSPORT_DRAFT


@pytest.mark.parametrize(
    ("vids", "variant"),
    [
        ([VendorId.NAT_T_DRAFT_02, VendorId.NAT_T_RFC3947], NattVariant.RFC3947),
        ([VendorId.NAT_T_DRAFT_02, VendorId.NAT_T_DRAFT_02N], NattVariant.DRAFT_02N),
        ([VendorId.NAT_T_DRAFT_00, VendorId.NAT_T_DRAFT_03], NattVariant.DRAFT_03),
        ([VendorId.NAT_T_DRAFT_00], NattVariant.DRAFT_00),
        ([VendorId.XAUTH, VendorId.DPD], None),
    ],
)
def test_select_natt_variant(vids, variant):
    assert select_natt_variant(vids) is variant


def test_vpnhub_vid_for_other_versions():
    assert vpnhub_vid(__version__) == VendorId.VPNHUB
    assert vpnhub_vid("9.9.9") == md5(b"vpnhub 9.9.9")


def test_identify_does_not_pin_large_unknown_vendor_ids() -> None:
    """Found by the fuzz campaign's memory check (bench/fuzz.py --plain): identify()'s
    cache kept up to 512 attacker-chosen vendor IDs of any size. 512 first messages
    with a 60 KB vendor ID each pinned ~30 MB until evicted; only IDs of a length a
    known vendor ID can have (<= 64 bytes) are cached now."""
    import gc
    import tracemalloc

    from vpnhub.wire.vendor import identify

    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(512):
        assert identify(i.to_bytes(4, "big") + bytes(60_000)) is None
    gc.collect()
    kept = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert kept < 1_000_000, f"{kept} bytes kept after 512 unknown vendor IDs"
    known = next(p for p in KNOWN_VENDOR_IDS if p.length in (None, len(p.prefix)))
    assert identify(known.prefix) is not None  # short IDs still identified (and cached)
