"""A throw-away CA for the lab and the tests (issue 14): the concentrator's
certificate, client certificates (good, expired, revoked, from another CA) and a CRL.

Made with `cryptography` in a directory of the caller's; docs/PKI.md gives the
same with openssl. Keys are 2048-bit RSA, written 0600.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class Issued:
    """A certificate and its key, as files."""

    cert: Path
    key: Path
    subject: str  # RFC 4514, e.g. "CN=vpnuser1,OU=vpngroup,O=vpnhub lab"


@dataclass
class Authority:
    """One CA: its certificate and key, in memory and as files."""

    name: str
    cert: x509.Certificate
    key: rsa.RSAPrivateKey
    dir: Path

    @property
    def cert_path(self) -> Path:
        return self.dir / f"{self.name}.pem"

    def issue(self, cn: str, *, ou: str = "", san_dns: tuple[str, ...] = (),
              san_ip: tuple[str, ...] = (), days: tuple[int, int] = (-1, 365),
              server: bool = False) -> Issued:
        """An end certificate valid from now+days[0] to now+days[1] (negative: past)."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "vpnhub lab")]
        if ou:
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
        now = dt.datetime.now(dt.UTC)
        eku = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        b = (x509.CertificateBuilder().subject_name(x509.Name(attrs))
             .issuer_name(self.cert.subject).public_key(key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(now + days[0] * DAY).not_valid_after(now + days[1] * DAY)
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.ExtendedKeyUsage([eku]), critical=False))
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in san_dns]
        names += [x509.IPAddress(_ip(a)) for a in san_ip]
        if names:
            b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = b.sign(self.key, hashes.SHA256())
        stem = self.dir / cn.replace(" ", "_")
        return Issued(_write_cert(stem.with_suffix(".pem"), cert),
                      _write_key(stem.with_suffix(".key"), key), cert.subject.rfc4514_string())

    def crl(self, revoked: list[Path], path: Path) -> Path:
        """A CRL of this CA listing the certificates in `revoked` (PEM files)."""
        now = dt.datetime.now(dt.UTC)
        b = (x509.CertificateRevocationListBuilder().issuer_name(self.cert.subject)
             .last_update(now - DAY).next_update(now + 30 * DAY))
        for p in revoked:
            serial = x509.load_pem_x509_certificate(p.read_bytes()).serial_number
            b = b.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial)
                .revocation_date(now - DAY).build())
        path.write_bytes(b.sign(self.key, hashes.SHA256()).public_bytes(
            serialization.Encoding.PEM))
        return path


def make_ca(directory: Path, name: str = "lab-ca") -> Authority:
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "vpnhub lab"),
                         x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - DAY).not_valid_after(now + 3650 * DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False),
                           critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    ca = Authority(name, cert, key, directory)
    _write_cert(ca.cert_path, cert)
    _write_key(directory / f"{name}.key", key)
    return ca


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


def _write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _write_key(path: Path, key: rsa.RSAPrivateKey) -> Path:
    data = key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path
