"""`CertAuthPolicy` (issue 14): each group's phase 1 methods, and what an unknown group
name is answered with, so that a prober cannot list the groups (ike.standin)."""

from __future__ import annotations

from pathlib import Path

from vpnhub.concentrator.certauth import CertAuthPolicy
from vpnhub.config import parse_config
from vpnhub.wire.constants import AuthMethod

HEAD = '[concentrator]\npublic_address = "203.0.113.50"\nprivate_networks = ["192.168.2.0/24"]\n'
PSK = (AuthMethod.XAUTH_INIT_PSK,)
HYBRID = (AuthMethod.HYBRID_INIT_RSA,)


def _policy(tmp_path: Path, groups: str) -> CertAuthPolicy:
    for f in ("ca.pem", "c.pem", "c.key"):
        (tmp_path / f).write_text("-----BEGIN X-----\n")
    pki = '[pki]\nca = "ca.pem"\ncertificate = "c.pem"\nkey = "c.key"\n'
    return CertAuthPolicy(parse_config(HEAD + pki + groups, base_dir=tmp_path))


def test_unknown_names_play_one_kind_of_configured_group(tmp_path: Path) -> None:
    """A PSK group and a keyless hybrid-only group: every unknown name answers as one
    of the two (the same each time), and both kinds occur, so a PSK probe's
    NO-PROPOSAL-CHOSEN does not single out the certificate-only group."""
    policy = _policy(tmp_path, '[[group]]\nname = "staff"\npsk = "k"\n'
                     'address_pool = "10.40.1.0/24"\n'
                     '[[group]]\nname = "certs"\naddress_pool = "10.40.2.0/24"\n'
                     'auth = ["hybrid"]\n')
    assert policy.methods_for(b"staff") == PSK and policy.methods_for(b"certs") == HYBRID
    assert set(policy.methods_for(None)) == {*PSK, *HYBRID}  # Main Mode: before the ID
    names = [f"guess{i}".encode() for i in range(200)]
    played = [policy.methods_for(n) for n in names]
    assert set(played) == {PSK, HYBRID}
    assert played == [policy.methods_for(n) for n in names]  # stable per name


def test_one_kind_of_group_is_answered_as_before(tmp_path: Path) -> None:
    policy = _policy(tmp_path, '[[group]]\nname = "a"\npsk = "k"\naddress_pool = "10.40.1.0/24"\n'
                     'auth = ["psk", "hybrid"]\n[[group]]\nname = "b"\npsk = "j"\n'
                     'address_pool = "10.40.2.0/24"\nauth = ["psk", "hybrid"]\n')
    assert {policy.methods_for(f"x{i}".encode()) for i in range(50)} == {(*PSK, *HYBRID)}
