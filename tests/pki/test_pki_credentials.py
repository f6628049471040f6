"""[pki] files (vpnhub.pki.credentials): each bad file stops start-up, named."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from vpnhub.config import PkiConfig
from vpnhub.lab.testca import make_ca
from vpnhub.pki.credentials import PkiError, load_credentials
from vpnhub.pki.signer import build_signer


def test_credentials_and_signer(tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    me = ca.issue("concentrator", server=True)
    cfg = PkiConfig(ca=ca.cert_path, certificate=me.cert, key=me.key)
    creds = load_credentials(cfg)
    assert creds.certificate is not None and creds.key is not None
    signer = build_signer(cfg, time.time)
    assert signer is not None and signer.ca_names == (ca.cert.subject.public_bytes(),)
    assert build_signer(PkiConfig(ca=ca.cert_path), time.time) is None
    assert "RSAPrivateKey" not in repr(creds)  # the key never shows in a repr


def test_key_of_another_certificate(tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    a, b = ca.issue("a"), ca.issue("b")
    with pytest.raises(PkiError, match="is not the key of certificate"):
        load_credentials(PkiConfig(ca=ca.cert_path, certificate=a.cert, key=b.key))


def test_unreadable_and_non_pem_files(tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    with pytest.raises(PkiError, match="No such file"):
        load_credentials(PkiConfig(ca=tmp_path / "missing.pem"))
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(PkiError, match="no PEM certificate"):
        load_credentials(PkiConfig(ca=junk))
    me = ca.issue("me")
    with pytest.raises(PkiError, match="not an unencrypted PEM private key"):
        load_credentials(PkiConfig(ca=ca.cert_path, certificate=me.cert, key=junk))


def test_end_certificate_in_the_ca_bundle_and_foreign_crl(tmp_path: Path) -> None:
    ca = make_ca(tmp_path / "a")
    other = make_ca(tmp_path / "b", "other")
    leaf = ca.issue("leaf")
    with pytest.raises(PkiError, match="is not a CA certificate"):
        load_credentials(PkiConfig(ca=leaf.cert))
    crl = other.crl([], tmp_path / "other.crl")
    with pytest.raises(PkiError, match="not signed by a configured CA"):
        load_credentials(PkiConfig(ca=ca.cert_path, crls=(crl,)))


def test_serve_check_names_a_key_of_another_certificate(tmp_path: Path) -> None:
    import subprocess
    import sys

    ca = make_ca(tmp_path)
    a, b = ca.issue("a", server=True), ca.issue("b")
    conf = tmp_path / "c.toml"
    conf.write_text(
        '[concentrator]\npublic_address = "203.0.113.50"\nprivate_networks = ["192.168.2.0/24"]\n'
        f'[pki]\nca = "{ca.cert_path}"\ncertificate = "{a.cert}"\nkey = "{b.key}"\n'
        '[[group]]\nname = "g"\npsk = "k"\naddress_pool = "10.40.1.0/24"\nauth = ["hybrid"]\n')
    r = subprocess.run([sys.executable, "-m", "vpnhub", "serve", "--config", str(conf),
                        "--check"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "is not the key of certificate" in r.stderr and str(b.key) in r.stderr
    conf.write_text(conf.read_text().replace(str(b.key), str(a.key)))
    r = subprocess.run([sys.executable, "-m", "vpnhub", "serve", "--config", str(conf),
                        "--check"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
