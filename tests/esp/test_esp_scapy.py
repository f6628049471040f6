"""Interop with an implementation nobody here wrote: scapy's SecurityAssociation.

Each suite both ways: scapy encrypts and we decapsulate, we encapsulate and
scapy decrypts (tunnel mode; plain ESP and ESP-in-UDP per RFC 3948).
"""

from __future__ import annotations

import os
import warnings

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from scapy.layers.inet import ICMP, IP, UDP
    from scapy.layers.ipsec import ESP, SecurityAssociation
    from scapy.packet import Raw, raw

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
    EspSA,
    SaParams,
    key_lengths,
)
from vpnhub.net.udpencap import Esp, classify

SCAPY_CRYPT = {ESP_AES_CBC: "AES-CBC", ESP_3DES: "3DES", ESP_AES_GCM_16: "AES-GCM",
               ESP_NULL: "NULL"}
SCAPY_AUTH = {None: None, HMAC_MD5_96: "HMAC-MD5-96", HMAC_SHA1_96: "HMAC-SHA1-96",
              HMAC_SHA2_256_128: "SHA2-256-128", HMAC_SHA2_384_192: "SHA2-384-192",
              HMAC_SHA2_512_256: "SHA2-512-256"}

SUITES = [
    (ESP_AES_CBC, 128, HMAC_SHA1_96),
    (ESP_AES_CBC, 256, HMAC_SHA1_96),
    (ESP_AES_CBC, 128, HMAC_SHA2_256_128),
    (ESP_AES_CBC, 256, HMAC_SHA2_256_128),
    (ESP_AES_CBC, 192, HMAC_SHA2_384_192),
    (ESP_AES_CBC, 256, HMAC_SHA2_512_256),
    (ESP_3DES, None, HMAC_MD5_96),
    (ESP_3DES, None, HMAC_SHA1_96),
    (ESP_AES_GCM_16, 128, None),
    (ESP_AES_GCM_16, 256, None),
    (ESP_NULL, None, HMAC_SHA1_96),
]
IDS = [f"{SCAPY_CRYPT[t]}-{b}-{SCAPY_AUTH[a]}" for t, b, a in SUITES]

OUTER = IP(src="203.0.113.78", dst="203.0.113.50")


def _ours_and_scapy(transform: int, bits: int | None, auth: int | None,
                    nat_t: bool = False) -> tuple[SaParams, SecurityAssociation]:
    enc_len, integ_len = key_lengths(transform, bits, auth)
    p = SaParams.from_keymat(0x8A3F0011, transform, bits, auth, os.urandom(enc_len + integ_len))
    scapy_sa = SecurityAssociation(
        ESP, spi=p.spi,
        crypt_algo=SCAPY_CRYPT[transform], crypt_key=p.enc_key or None,
        auth_algo=SCAPY_AUTH[auth], auth_key=p.integ_key or None,
        tunnel_header=OUTER,
        nat_t_header=UDP(sport=4500, dport=4500) if nat_t else None,
    )
    return p, scapy_sa


def _inner(n: int) -> IP:
    return IP(src="10.40.1.1", dst="192.168.2.10") / ICMP(id=7, seq=n) / Raw(os.urandom(n))


@pytest.mark.parametrize(("transform", "bits", "auth"), SUITES, ids=IDS)
def test_scapy_encrypts_we_decapsulate(transform: int, bits: int | None,
                                       auth: int | None) -> None:
    p, scapy_sa = _ours_and_scapy(transform, bits, auth)
    ours = p.build()
    for n in (0, 1, 13, 100, 1372):
        inner = _inner(n)
        outer = scapy_sa.encrypt(inner)
        assert outer[IP].proto == 50
        got, nh = ours.decapsulate(raw(outer[ESP]))
        assert nh == 4
        assert got == raw(inner)
    assert ours.packets_in == 5


@pytest.mark.parametrize(("transform", "bits", "auth"), SUITES, ids=IDS)
def test_we_encapsulate_scapy_decrypts(transform: int, bits: int | None,
                                       auth: int | None) -> None:
    p, scapy_sa = _ours_and_scapy(transform, bits, auth)
    ours: EspSA = p.build()
    for n in (0, 1, 13, 100, 1372):
        inner = _inner(n)
        esp = ours.encapsulate(raw(inner))
        packet = IP(raw(OUTER.copy() / Raw(esp)))
        packet[IP].proto = 50
        packet = IP(raw(packet))
        assert packet[ESP].seq == ours.seq
        decrypted = scapy_sa.decrypt(packet)
        assert raw(decrypted) == raw(inner)


@pytest.mark.parametrize(("transform", "bits", "auth"),
                         [SUITES[0], SUITES[6], SUITES[8]], ids=[IDS[0], IDS[6], IDS[8]])
def test_nat_t_udp_encapsulation_with_scapy(transform: int, bits: int | None,
                                            auth: int | None) -> None:
    """RFC 3948: scapy's ESP-in-UDP datagram classifies as ESP and decrypts."""
    p, scapy_sa = _ours_and_scapy(transform, bits, auth, nat_t=True)
    ours = p.build()
    inner = _inner(200)
    outer = scapy_sa.encrypt(inner)
    assert outer[UDP].dport == 4500
    kind = classify(bytes(outer[UDP].payload))
    assert isinstance(kind, Esp)
    assert ours.decapsulate(kind.packet) == (raw(inner), 4)
    # And back: our packet inside scapy's UDP header.
    esp = ours.encapsulate(raw(inner))
    dgram = IP(raw(OUTER.copy() / UDP(sport=4500, dport=4500) / Raw(esp)))
    assert raw(scapy_sa.decrypt(dgram)) == raw(inner)
