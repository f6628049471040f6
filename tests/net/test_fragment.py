"""Fragmentation policy core: checksums, fragment offsets and flags, ICMP, decisions.

Reassembly is checked against scapy's independent ``defragment`` here and by
the Linux stack in tests/net/test_transports_netns.py.
"""

from __future__ import annotations

import os
import socket
import struct

import pytest

from vpnhub.esp import (
    ESP_3DES,
    ESP_AES_CBC,
    ESP_AES_GCM_16,
    HMAC_MD5_96,
    HMAC_SHA1_96,
    HMAC_SHA2_256_128,
    SaParams,
    get_suite,
    key_lengths,
)
from vpnhub.net.fragment import (
    CANNOT_FRAGMENT,
    DF_TOO_BIG,
    FRAG_BEFORE_ENCRYPTION,
    FRAG_CLEAR_DF,
    FRAG_NONE,
    IP_DF,
    IP_MF,
    OUTER_HEADERS,
    FragmentError,
    FragmentPolicy,
    frag_needed,
    fragment,
    ipv4_checksum,
    max_inner_len,
    may_answer_with_icmp,
)

SUITES = [(ESP_AES_CBC, 128, HMAC_SHA1_96), (ESP_AES_CBC, 256, HMAC_SHA2_256_128),
          (ESP_3DES, None, HMAC_MD5_96), (ESP_AES_GCM_16, 128, None)]


def ipv4(src: str = "10.99.1.1", dst: str = "10.99.2.1", payload: bytes = b"", *,
         proto: int = 17, flags: int = 0, ident: int = 0x1234, options: bytes = b"") -> bytes:
    hlen = 20 + len(options)
    head = bytearray(struct.pack("!BBHHHBBH4s4s", 0x40 | hlen // 4, 0, hlen + len(payload),
                                 ident, flags, 64, proto, 0, socket.inet_aton(src),
                                 socket.inet_aton(dst)) + options)
    head[10:12] = ipv4_checksum(head).to_bytes(2, "big")
    return bytes(head) + payload


def fields(p: bytes) -> tuple[int, int, int, int]:
    """(header length, flags+offset, total length, ID)."""
    return ((p[0] & 15) * 4, int.from_bytes(p[6:8], "big"), int.from_bytes(p[2:4], "big"),
            int.from_bytes(p[4:6], "big"))


def reassemble(pieces: list[bytes]) -> bytes:
    data = bytearray()
    for p in sorted(pieces, key=lambda p: int.from_bytes(p[6:8], "big") & 0x1FFF):
        hlen, fo, total, _ = fields(p)
        assert (fo & 0x1FFF) * 8 == len(data)
        data += p[hlen:total]
    return bytes(data)


def test_checksum_rfc1071() -> None:
    # RFC 1071 section 3 example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
    assert ipv4_checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0xFFFF - 0xDDF2
    header = ipv4(payload=b"abc")
    assert ipv4_checksum(header[:20]) == 0  # a valid header sums to all ones
    assert ipv4_checksum(b"\x01") == 0xFEFF  # odd length padded with a zero byte


@pytest.mark.parametrize("size", [1, 7, 8, 1000, 1480, 1481, 3000, 8000])
@pytest.mark.parametrize("mtu", [68, 576, 1422])
def test_fragment_offsets_flags_checksums(size: int, mtu: int) -> None:
    payload = os.urandom(size)
    packet = ipv4(payload=payload, flags=IP_DF)
    pieces = fragment(packet, mtu)
    assert len(pieces) == max(1, -(-size // ((mtu - 20) & ~7)))
    for i, p in enumerate(pieces):
        hlen, fo, total, ident = fields(p)
        assert total == len(p) <= mtu
        assert ipv4_checksum(p[:hlen]) == 0
        assert ident == 0x1234
        assert not fo & IP_DF  # DF never survives fragmentation
        last = i == len(pieces) - 1
        assert bool(fo & IP_MF) == (not last)
        if not last:
            assert (total - hlen) % 8 == 0
        assert p[9] == 17 and p[12:20] == packet[12:20]
    assert reassemble(pieces) == payload


def test_fragmenting_a_fragment_keeps_offset_and_last_mf() -> None:
    payload = os.urandom(1600)
    first, rest = fragment(ipv4(payload=payload), 820)[0], fragment(ipv4(payload=payload), 820)[1:]
    again = fragment(first, 300)
    assert all(fields(p)[1] & IP_MF for p in again)  # the original fragment had MF
    assert reassemble(again + rest) == payload
    tail = fragment(rest[-1], 100)
    assert not fields(tail[-1])[1] & IP_MF
    assert fields(tail[0])[1] & 0x1FFF == fields(rest[-1])[1] & 0x1FFF


def test_options_copied_only_when_flagged() -> None:
    # Security (type 130, copied) and record route (type 7, not copied), then EOL padding.
    security = bytes([130, 11]) + bytes(9)
    record_route = bytes([7, 7, 4]) + bytes(4)
    options = security + record_route + b"\x00\x00"
    packet = ipv4(payload=os.urandom(600), options=options)
    pieces = fragment(packet, 300)
    assert pieces[0][20:40] == options
    for p in pieces[1:]:
        hlen = fields(p)[0]
        assert hlen == 32 and p[20:31] == security and p[31:32] == b"\x00"
        assert ipv4_checksum(p[:hlen]) == 0
    assert reassemble(pieces) == packet[40:]


def test_new_id_and_errors() -> None:
    pieces = fragment(ipv4(payload=bytes(100), ident=0), 60, ident=0xBEEF)
    assert {fields(p)[3] for p in pieces} == {0xBEEF}
    with pytest.raises(FragmentError):
        fragment(b"\x60" + bytes(39), 1280)  # IPv6
    with pytest.raises(FragmentError):
        fragment(ipv4(payload=bytes(100))[:50], 60)  # total length beyond the bytes
    with pytest.raises(FragmentError):
        fragment(ipv4(payload=bytes(100)), 27)  # no room for 8 data bytes


def test_scapy_reassembles_our_fragments() -> None:
    scapy = pytest.importorskip("scapy.all")
    payload = os.urandom(4000)
    packet = ipv4(payload=payload, proto=17)
    frags = [scapy.IP(p) for p in fragment(packet, 1422)]
    whole = scapy.defragment(frags)
    assert len(whole) == 1
    assert bytes(whole[0])[20:] == payload


@pytest.mark.parametrize("suite", SUITES, ids=["aes128-sha1", "aes256-sha256", "3des-md5", "gcm"])
@pytest.mark.parametrize("transport", sorted(OUTER_HEADERS))
def test_max_inner_len_is_tight(suite: tuple[int, int | None, int | None],
                                transport: str) -> None:
    s = get_suite(*suite)
    outer = OUTER_HEADERS[transport]
    limit = max_inner_len(s, 1500, outer)
    assert limit + s.overhead(limit) + outer <= 1500
    assert limit + 1 + s.overhead(limit + 1) + outer > 1500
    enc_len, integ_len = key_lengths(*suite)
    sa = SaParams.from_keymat(0x1000, *suite, os.urandom(enc_len + integ_len)).build()
    assert len(sa.encapsulate(ipv4(payload=bytes(limit - 20)))) + outer <= 1500


def test_max_inner_len_known_values() -> None:
    cbc_sha1 = get_suite(ESP_AES_CBC, 128, HMAC_SHA1_96)
    assert max_inner_len(cbc_sha1, 1500, OUTER_HEADERS["natt"]) == 1422
    assert max_inner_len(cbc_sha1, 1500, OUTER_HEADERS["esp"]) == 1438


def test_frag_needed_icmp() -> None:
    original = ipv4(payload=os.urandom(1480), flags=IP_DF, proto=6)
    icmp_packet = frag_needed(original, 1422)
    hlen, fo, total, _ = fields(icmp_packet)
    assert hlen == 20 and total == len(icmp_packet) == 576
    assert ipv4_checksum(icmp_packet[:20]) == 0
    assert icmp_packet[9] == 1 and fo == 0
    assert icmp_packet[12:16] == original[16:20]  # from the original destination
    assert icmp_packet[16:20] == original[12:16]  # to the original source
    icmp = icmp_packet[20:]
    assert icmp[0] == 3 and icmp[1] == 4  # destination unreachable, fragmentation needed
    assert ipv4_checksum(icmp) == 0
    assert int.from_bytes(icmp[6:8], "big") == 1422  # next-hop MTU (RFC 1191)
    assert icmp[8:28] == original[:20] and icmp[28:36] == original[20:28]
    source = socket.inet_aton("192.0.2.1")
    assert frag_needed(original, 1400, source)[12:16] == source


def test_no_icmp_about_icmp_errors_or_later_fragments() -> None:
    assert may_answer_with_icmp(ipv4(payload=bytes(100), proto=6))
    assert not may_answer_with_icmp(ipv4(payload=bytes([3, 4]) + bytes(98), proto=1))
    assert may_answer_with_icmp(ipv4(payload=bytes([8, 0]) + bytes(98), proto=1))  # echo
    assert not may_answer_with_icmp(ipv4(payload=bytes(100), flags=IP_MF | 10))
    assert not may_answer_with_icmp(ipv4("0.0.0.0", payload=bytes(100)))
    assert not may_answer_with_icmp(ipv4("224.0.0.5", payload=bytes(100)))


def test_policy_none() -> None:
    policy = FragmentPolicy(FRAG_NONE)
    packet = ipv4(payload=bytes(1480), flags=IP_DF)
    decision = policy.apply(packet, 1422, 0.0)
    assert decision.encrypt == [packet] and decision.outer_fragmented
    assert policy.stats()["outer_oversize"] == 1


def test_policy_before_encryption() -> None:
    policy = FragmentPolicy(FRAG_BEFORE_ENCRYPTION)
    df = ipv4(payload=bytes(1480), flags=IP_DF)
    decision = policy.apply(df, 1422, 0.0)
    assert decision.encrypt == [] and decision.drop == DF_TOO_BIG
    assert decision.to_sender is not None and decision.to_sender[20] == 3
    no_df = ipv4(payload=os.urandom(1480))
    decision = policy.apply(no_df, 1422, 0.0)
    assert len(decision.encrypt) == 2 and decision.to_sender is None
    assert reassemble(decision.encrypt) == no_df[20:]
    stats = policy.stats()
    assert stats["icmp_sent"] == 1 and stats["packets_fragmented"] == 1
    assert stats["fragments_made"] == 2 and stats["df_cleared"] == 0


def test_policy_clear_df_and_fresh_id() -> None:
    policy = FragmentPolicy(FRAG_CLEAR_DF)
    df = ipv4(payload=os.urandom(3000), flags=IP_DF, ident=0)
    decision = policy.apply(df, 1422, 0.0)
    assert len(decision.encrypt) == 3 and decision.to_sender is None
    ids = {fields(p)[3] for p in decision.encrypt}
    assert len(ids) == 1 and ids != {0}  # Linux sends DF packets with ID 0
    assert all(not fields(p)[1] & IP_DF for p in decision.encrypt)
    assert policy.stats()["df_cleared"] == 1 and policy.stats()["icmp_sent"] == 0


def test_icmp_rate_limit_and_bad_packets() -> None:
    policy = FragmentPolicy(FRAG_BEFORE_ENCRYPTION, icmp_per_second=3)
    df = ipv4(payload=bytes(1480), flags=IP_DF)
    sent = [policy.apply(df, 1422, 10.0 + i * 0.01).to_sender is not None for i in range(5)]
    assert sent == [True, True, True, False, False]
    assert policy.apply(df, 1422, 11.5).to_sender is not None
    assert policy.stats()["icmp_suppressed"] == 2
    assert policy.apply(ipv4(payload=bytes(100))[:30], 24, 0.0).drop == CANNOT_FRAGMENT
    with pytest.raises(ValueError):
        FragmentPolicy("sometimes")
