"""EspSA codec: round trips, drops with their stable reasons, counters."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vpnhub.esp import (
    ESP_3DES,
    ESP_AES_CBC,
    ESP_AES_GCM_16,
    ESP_NULL,
    HMAC_MD5_96,
    HMAC_SHA1_96,
    HMAC_SHA2_256_128,
    HMAC_SHA2_384_192,
    HMAC_SHA2_512_256,
    EspDrop,
    EspSA,
    SaParams,
    UnsupportedSuite,
    check_inner_source,
    inner_source_reason,
    ipv4_bytes,
    key_lengths,
)
from vpnhub.esp.inner import describe_inner, refused_head, refused_text
from vpnhub.esp.sa import SEQ_MAX

SUITES = [
    (ESP_AES_CBC, 128, HMAC_SHA1_96),
    (ESP_AES_CBC, 192, HMAC_MD5_96),
    (ESP_AES_CBC, 256, HMAC_SHA2_256_128),
    (ESP_AES_CBC, 256, HMAC_SHA2_384_192),
    (ESP_AES_CBC, 128, HMAC_SHA2_512_256),
    (ESP_3DES, None, HMAC_MD5_96),
    (ESP_3DES, None, HMAC_SHA1_96),
    (ESP_AES_GCM_16, 128, None),
    (ESP_AES_GCM_16, 256, None),
    (ESP_NULL, None, HMAC_SHA1_96),
]
IDS = [f"{t}-{b}-{a}" for t, b, a in SUITES]


def params(transform: int, bits: int | None, auth: int | None, spi: int = 0xC0FFEE01) -> SaParams:
    enc_len, integ_len = key_lengths(transform, bits, auth)
    return SaParams.from_keymat(spi, transform, bits, auth, os.urandom(enc_len + integ_len))


def pair(transform: int, bits: int | None, auth: int | None) -> tuple[EspSA, EspSA]:
    p = params(transform, bits, auth)
    return p.build(), p.build()


def ipv4(payload_len: int, src: str = "10.40.1.1", dst: str = "192.168.2.10") -> bytes:
    total = 20 + payload_len
    header = bytes([0x45, 0, total >> 8, total & 0xFF, 0, 0, 0, 0, 64, 17, 0, 0])
    return header + ipv4_bytes(src) + ipv4_bytes(dst) + os.urandom(payload_len)


def reason(exc: pytest.ExceptionInfo[EspDrop]) -> str:
    return exc.value.reason


@pytest.mark.parametrize(("transform", "bits", "auth"), SUITES, ids=IDS)
def test_round_trip_all_sizes(transform: int, bits: int | None, auth: int | None) -> None:
    out, inb = pair(transform, bits, auth)
    for size in [*range(0, 40), 1380, 1400, 1480]:
        inner = ipv4(size)
        esp = out.encapsulate(inner)
        assert esp[:4] == out.spi_bytes
        assert int.from_bytes(esp[4:8], "big") == out.seq
        # RFC 4303 2.4: the ESP payload ends 4-byte aligned.
        assert (len(esp) - 8 - out.suite.icv_len) % 4 == 0
        assert len(esp) == len(inner) + out.suite.overhead(len(inner))
        assert inb.decapsulate(esp) == (inner, 4)
    assert out.packets_out == inb.packets_in == 43
    assert out.bytes_out == inb.bytes_in
    assert inb.drops == {}


@pytest.mark.parametrize(("transform", "bits", "auth"), SUITES, ids=IDS)
def test_any_modified_byte_fails_auth(transform: int, bits: int | None, auth: int | None) -> None:
    out, inb = pair(transform, bits, auth)
    esp = out.encapsulate(ipv4(100))
    for pos in range(4, len(esp)):  # SPI excluded: the demux would not find the SA
        bad = bytearray(esp)
        bad[pos] ^= 0x01
        with pytest.raises(EspDrop) as exc:
            inb.decapsulate(bytes(bad))
        # Flipping the low bit of seq 1 gives seq 0, which is never valid.
        assert reason(exc) == ("replay" if pos == 7 else "auth_failed"), pos
    # The window did not move: the genuine packet still passes.
    assert inb.decapsulate(esp)[1] == 4
    assert inb.drops == {"auth_failed": len(esp) - 5, "replay": 1}


@pytest.mark.parametrize(("transform", "bits", "auth"), SUITES, ids=IDS)
def test_replay_and_reorder(transform: int, bits: int | None, auth: int | None) -> None:
    out, inb = pair(transform, bits, auth)
    packets = [out.encapsulate(ipv4(50)) for _ in range(5)]
    for i in (4, 0, 2, 1, 3):  # any order inside the window
        inb.decapsulate(packets[i])
    with pytest.raises(EspDrop) as exc:
        inb.decapsulate(packets[2])
    assert reason(exc) == "replay"
    assert inb.drops == {"replay": 1}


def test_forged_high_seq_does_not_move_window() -> None:
    out, inb = pair(ESP_AES_CBC, 128, HMAC_SHA1_96)
    esp = out.encapsulate(ipv4(64))
    forged = esp[:4] + (10_000).to_bytes(4, "big") + esp[8:]
    with pytest.raises(EspDrop):
        inb.decapsulate(forged)
    assert inb.replay.top == 0
    inb.decapsulate(esp)


@pytest.mark.parametrize(("transform", "bits", "auth"), SUITES, ids=IDS)
def test_short_packets(transform: int, bits: int | None, auth: int | None) -> None:
    out, inb = pair(transform, bits, auth)
    esp = out.encapsulate(ipv4(0))
    for cut in range(0, 8 + out.suite.cipher.iv_len + out.suite.icv_len + 1):
        with pytest.raises(EspDrop) as exc:
            inb.decapsulate(esp[:cut])
        assert reason(exc) == "short_packet"


def test_cbc_misaligned_is_short_packet() -> None:
    out, inb = pair(ESP_AES_CBC, 128, HMAC_SHA1_96)
    esp = out.encapsulate(ipv4(100))
    with pytest.raises(EspDrop) as exc:
        inb.decapsulate(esp[:-13] + esp[-12:])
    assert reason(exc) == "short_packet"
    # The long-lived decryptor was not fed the odd length: still in step.
    assert inb.decapsulate(esp)[0][:1] == b"\x45"


def _gcm_forge(p: SaParams, seq: int, plaintext: bytes) -> bytes:
    """Build a GCM packet by hand around ``plaintext`` (pad, pad length, next header)."""
    key, salt = p.enc_key[:-4], p.enc_key[-4:]
    header = p.spi.to_bytes(4, "big") + seq.to_bytes(4, "big")
    iv = os.urandom(8)
    return header + iv + AESGCM(key).encrypt(salt + iv, plaintext, header)


@pytest.mark.parametrize(
    ("trailer", "expected"),
    [
        (b"\x01\x02\x02\x04", None),
        (b"\x01\x03\x02\x04", "bad_padding"),  # pad bytes must be 1, 2, ...
        (b"\x00\x00\x09\x04", "bad_padding"),  # pad length beyond the payload
        (b"\x01\x02\x02\x29", "bad_next_header"),  # IPv6 not carried by this SA
        (b"\x01\x02\x02\x3b", "dummy_packet"),  # next header 59 (RFC 4303 2.6)
    ],
)
def test_trailer_checks(trailer: bytes, expected: str | None) -> None:
    p = params(ESP_AES_GCM_16, 128, None)
    inb = p.build()
    inner = ipv4(16)  # 36 bytes + 4-byte trailer: 4-byte aligned
    esp = _gcm_forge(p, 1, inner + trailer)
    if expected is None:
        assert inb.decapsulate(esp) == (inner, 4)
    else:
        with pytest.raises(EspDrop) as exc:
            inb.decapsulate(esp)
        assert reason(exc) == expected
        assert inb.drops == {expected: 1}
        # Authentic, so the window moved even though the payload was refused.
        assert inb.replay.top == 1


def test_lenient_padding_accepts_other_pad_bytes() -> None:
    p = params(ESP_AES_GCM_16, 128, None)
    inb = EspSA(p.spi, p.transform, p.key_len_bits, p.auth, p.enc_key, p.integ_key,
                strict_padding=False)
    inner = ipv4(18)
    assert inb.decapsulate(_gcm_forge(p, 1, inner + b"\xaa\xbb\x02\x04")) == (inner, 4)


def test_sequence_numbers_and_exhaustion() -> None:
    out, inb = pair(ESP_AES_GCM_16, 128, None)
    first = out.encapsulate(ipv4(10))
    assert first[4:8] == b"\x00\x00\x00\x01"  # starts at 1 (RFC 4303 3.3.3)
    assert inb.decapsulate(first)[1] == 4
    out.seq = SEQ_MAX - 1
    last = out.encapsulate(ipv4(10))
    assert last[4:8] == b"\xff\xff\xff\xff"
    assert out.seq_remaining == 0
    with pytest.raises(EspDrop) as exc:
        out.encapsulate(ipv4(10))
    assert reason(exc) == "seq_exhausted"
    assert out.drops == {"seq_exhausted": 1}
    assert out.seq == SEQ_MAX  # the counter never wraps to 0
    assert inb.decapsulate(last)[1] == 4


def test_gcm_iv_is_prefix_and_seq() -> None:
    out, _ = pair(ESP_AES_GCM_16, 128, None)
    a = out.encapsulate(ipv4(10))
    b = out.encapsulate(ipv4(10))
    assert a[8:12] == b[8:12]
    assert a[12:16] == a[4:8] and b[12:16] == b[4:8]
    other, _ = pair(ESP_AES_GCM_16, 128, None)
    assert other.encapsulate(ipv4(10))[8:12] != a[8:12]  # 2^-32 flake chance


@pytest.mark.parametrize("transform", [ESP_AES_CBC, ESP_3DES])
def test_cbc_ivs_unpredictable_and_distinct(transform: int) -> None:
    out, _ = pair(transform, 128 if transform == ESP_AES_CBC else None, HMAC_SHA1_96)
    bs = out.suite.cipher.block_size
    inner = ipv4(100)
    ivs = {out.encapsulate(inner)[8 : 8 + bs] for _ in range(200)}
    assert len(ivs) == 200
    # Same plaintext, different IV => different ciphertext everywhere.
    x, y = out.encapsulate(inner), out.encapsulate(inner)
    assert x[8 + bs : 8 + 2 * bs] != y[8 + bs : 8 + 2 * bs]


def test_wrong_key_lengths_and_spi() -> None:
    with pytest.raises(UnsupportedSuite):
        EspSA(0x1000, ESP_AES_CBC, 128, HMAC_SHA1_96, bytes(16), bytes(16))
    with pytest.raises(ValueError):
        EspSA(0, ESP_AES_CBC, 128, HMAC_SHA1_96, bytes(16), bytes(20))
    with pytest.raises(ValueError):
        EspSA(255, ESP_AES_CBC, 128, HMAC_SHA1_96, bytes(16), bytes(20))  # reserved
    with pytest.raises(ValueError):
        SaParams.from_keymat(0x1000, ESP_AES_CBC, 128, HMAC_SHA1_96, bytes(35))


def test_keymat_split_order() -> None:
    keymat = bytes(range(36))
    p = SaParams.from_keymat(0x1000, ESP_AES_CBC, 128, HMAC_SHA1_96, keymat)
    assert p.enc_key == keymat[:16] and p.integ_key == keymat[16:]


def test_keys_never_in_repr() -> None:
    p = SaParams.from_keymat(0x1000, ESP_AES_CBC, 128, HMAC_SHA1_96, b"\xab" * 36)
    assert "ab" not in repr(p).lower().replace("0xab", "")
    assert "abab" not in repr(p)
    assert "abab" not in repr(p.build())


def test_stats() -> None:
    out, inb = pair(ESP_AES_CBC, 256, HMAC_SHA2_256_128)
    inb.decapsulate(out.encapsulate(ipv4(80)))
    inb.last_activity = 12.5
    st = inb.stats()
    assert st["packets_in"] == 1 and st["bytes_in"] == 100
    assert st["suite"] == "AES-256-CBC/HMAC-SHA2-256-128"
    assert st["last_activity"] == 12.5
    assert out.stats()["seq_out"] == 1


def test_inner_source_check() -> None:
    allowed = ipv4_bytes("10.40.1.1")
    check_inner_source(ipv4(8, src="10.40.1.1"), allowed)
    for packet, expected in [
        (ipv4(8, src="10.40.1.2"), "spoofed_source"),
        (ipv4(8, src="192.168.2.10"), "spoofed_source"),
        (b"\x45" + bytes(10), "bad_inner_packet"),
        (b"\x60" + bytes(60), "bad_inner_packet"),  # IPv6
    ]:
        with pytest.raises(EspDrop) as exc:
            check_inner_source(packet, allowed)
        assert reason(exc) == expected
        assert inner_source_reason(packet, allowed) == expected
    assert inner_source_reason(ipv4(8, src="10.40.1.1"), allowed) is None


@pytest.mark.parametrize("accelerated", [False, True], ids=["python", "c-if-built"])
def test_ipv6_with_the_assigned_address_in_bytes_12_to_15_is_not_let_through(
        accelerated: bool) -> None:
    """RFC 4301 5.2: the SA carries IPv4 from the assigned address. The check once
    compared bytes 12-15 first and looked at the version only on a mismatch, so an
    IPv6 packet whose source address held the client's IPv4 address in those bytes
    (fe80:0:a28:101:: for 10.40.1.1) went to the TUN, which takes it as IPv6."""
    p = params(ESP_AES_CBC, 128, HMAC_SHA1_96)
    out = p.build()
    inb = EspSA(p.spi, p.transform, p.key_len_bits, p.auth, p.enc_key, p.integ_key,
                accelerated=accelerated)
    allowed, peer = ipv4_bytes("10.40.1.1"), ("192.0.2.1", 4500)
    v6 = (bytes([0x60, 0, 0, 0, 0, 8, 17, 64]) + bytes.fromhex("fe800000") + allowed
          + bytes(8) + bytes.fromhex("ff02" + "00" * 13 + "01") + bytes(8))
    assert v6[12:16] == allowed
    assert inb.receive(out.encapsulate(v6), allowed) is None
    run = inb.receive_run([(out.encapsulate(v6), peer, 0)], 0, allowed, peer, 9, 20)
    assert run == (1, [], 1)
    assert inb.drops == {"bad_inner_packet": 2}
    assert inb.receive(out.encapsulate(ipv4(8)), allowed) is not None  # IPv4 still passes


def _header(proto: int, src: str, dst: str, after: bytes, frag: int = 0) -> bytes:
    total = 20 + len(after)
    return (bytes([0x45, 0, total >> 8, total & 0xFF, 0, 0, frag >> 8, frag & 0xFF, 64, proto,
                   0, 0]) + ipv4_bytes(src) + ipv4_bytes(dst) + after)


def test_a_refused_inner_packet_is_named_by_its_headers() -> None:
    """The words of the IPSECDBG drop line: what was refused and why, no payload."""
    assigned = ipv4_bytes("10.40.1.1")
    # the lab's: a ping bound to vpnc's TUN before the TUN had its address
    echo = _header(1, "10.10.10.2", "192.168.2.10", bytes([8, 0]) + b"\x11" * 62)
    assert refused_text(echo, assigned) == ("ICMP 10.10.10.2 -> 192.168.2.10 echo request,"
                                            " its source is not the assigned address 10.40.1.1")
    mdns = _header(17, "10.10.10.2", "224.0.0.251", bytes.fromhex("14e914e9") + b"secret")
    assert describe_inner(mdns) == "UDP 10.10.10.2:5353 -> 224.0.0.251:5353"
    tcp = _header(6, "10.40.1.9", "192.168.2.10", bytes.fromhex("9c400050") + b"x" * 16)
    assert describe_inner(tcp) == "TCP 10.40.1.9:40000 -> 192.168.2.10:80"
    later = _header(17, "10.40.1.9", "192.168.2.10", b"notports", frag=0x00B9)  # offset 185
    assert describe_inner(later) == "UDP 10.40.1.9 -> 192.168.2.10"
    igmp = _header(2, "10.10.10.2", "224.0.0.22", bytes([0x22, 0]) + bytes(6))
    assert describe_inner(igmp) == "IGMP 10.10.10.2 -> 224.0.0.22"
    unreachable = _header(1, "10.10.10.2", "192.168.2.10", bytes([3, 3]) + bytes(6))
    assert describe_inner(unreachable).endswith("destination unreachable code 3")
    ipv6 = (bytes([0x60, 0, 0, 0, 0, 16, 58, 255]) + bytes.fromhex("fe80" + "00" * 13 + "01")
            + bytes.fromhex("ff02" + "00" * 13 + "02") + bytes(16))
    assert refused_text(ipv6, assigned) == "IPv6 fe80::1 -> ff02::2 ICMPv6, not an IPv4 packet"
    assert refused_text(b"\x45" + bytes(10), assigned) == (
        "a truncated IPv4 header (11 bytes), not an IPv4 packet")
    assert refused_text(_header(17, "10.40.1.1", "192.168.2.10", b""), assigned) == (
        "UDP 10.40.1.1 -> 192.168.2.10, too short")
    assert refused_text(b"", None) == "a packet of IP version 0, not an IPv4 packet"
    # what the SA keeps says the same and holds no payload
    for packet in (echo, mdns, tcp, later, igmp, ipv6):
        assert describe_inner(refused_head(packet)) == describe_inner(packet)
    assert refused_head(mdns) == mdns[:24] and b"secret" not in refused_head(mdns)
    options = bytes([0x46]) + _header(6, "10.40.1.9", "192.168.2.10", b"")[1:] + bytes(4)
    assert refused_head(options + b"portpayload") == options + b"port"
    assert refused_head(ipv6 + b"payload") == ipv6[:44]
    assert refused_head(bytes([0x50]) * 900) == bytes([0x50]) * 20


@pytest.mark.parametrize(("transform", "bits", "auth"), [*SUITES, (ESP_AES_CBC, 128, None)],
                         ids=[*IDS, "aes-cbc-no-integrity"])
def test_garbage_only_raises_esp_drop(transform: int, bits: int | None, auth: int | None) -> None:
    """Fuzz: whatever arrives, decapsulate returns or raises EspDrop, nothing else."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    enc_len, integ_len = key_lengths(transform, bits, auth)
    key = os.urandom(enc_len + integ_len)
    inb = EspSA(0x1000, transform, bits, auth, key[:enc_len], key[enc_len:],
                allow_no_integrity=True)

    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=200))
    def check(tail: bytes) -> None:
        try:
            inb.decapsulate(b"\x00\x00\x10\x00" + tail)
        except EspDrop as exc:
            assert exc.reason in {"short_packet", "replay", "auth_failed", "bad_padding",
                                  "bad_next_header", "dummy_packet"}

    check()


@pytest.mark.parametrize(("transform", "bits", "auth"),
                         [(ESP_AES_CBC, 128, HMAC_SHA1_96), (ESP_3DES, None, HMAC_MD5_96)])
def test_a_cbc_sa_makes_only_the_cipher_context_of_its_direction(
        transform: int, bits: int | None, auth: int) -> None:
    """An SA carries one direction: the outbound one never decrypts, the inbound one
    never encrypts, so each OpenSSL context (~1.1 KiB) is made by its first packet
    (issue 13, memory per session). Packets after the first use the same context."""
    out, inb = pair(transform, bits, auth)
    # The C codec (when built) keeps its context in _cenc / _cdec instead.
    enc, dec = ("_cenc", "_cdec") if out.accelerated else ("_enc", "_dec")
    assert not hasattr(out, enc) and not hasattr(inb, dec)
    packets = [ipv4(n) for n in (0, 17, 1400)]
    for p in packets:
        assert inb.decapsulate(out.encapsulate(p))[0] == p
    assert hasattr(out, enc) and not hasattr(out, dec)
    assert hasattr(inb, dec) and not hasattr(inb, enc)
