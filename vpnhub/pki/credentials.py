"""The [pki] files read and checked: CA bundle, our certificate and key, CRLs.

Each mistake an operator makes (a missing file, a key of another certificate, a
CRL no configured CA signed) stops start-up with the file and the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from vpnhub.config import PkiConfig


class PkiError(Exception):
    """A [pki] file that cannot be used; the message names the file."""


@dataclass(frozen=True)
class Credentials:
    """The trusted CAs, the CRLs they signed, and (if configured) our own identity."""

    cas: tuple[x509.Certificate, ...]
    crls: tuple[x509.CertificateRevocationList, ...] = ()
    certificate: x509.Certificate | None = None
    key: rsa.RSAPrivateKey | None = field(default=None, repr=False)


def load_credentials(cfg: PkiConfig) -> Credentials:
    cas = _certificates(cfg.ca, "ca")
    for ca in cas:
        if not _is_ca(ca):
            raise PkiError(f"[pki] ca {cfg.ca}: {ca.subject.rfc4514_string()} is not a CA"
                           " certificate (basicConstraints CA:TRUE missing)")
    crls = tuple(_crl(p, cas) for p in cfg.crls)
    if cfg.certificate is None or cfg.key is None:
        return Credentials(cas, crls)
    certs = _certificates(cfg.certificate, "certificate")
    key = _private_key(cfg.key)
    cert = certs[0]
    if cert.public_key().public_numbers() != key.public_key().public_numbers():  # type: ignore[union-attr]
        raise PkiError(f"[pki] key {cfg.key} is not the key of certificate {cfg.certificate}"
                       f" ({cert.subject.rfc4514_string()})")
    return Credentials(cas, crls, cert, key)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise PkiError(f"[pki] {what} {path}: {exc.strerror or exc}") from exc


def _certificates(path: Path, what: str) -> tuple[x509.Certificate, ...]:
    data = _read(path, what)
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise PkiError(f"[pki] {what} {path}: no PEM certificate in it ({exc})") from exc
    return tuple(certs)


def _private_key(path: Path) -> rsa.RSAPrivateKey:
    data = _read(path, "key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise PkiError(f"[pki] key {path}: not an unencrypted PEM private key ({exc})") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise PkiError(f"[pki] key {path}: an RSA key is needed (IKEv1 RSA signatures,"
                       " RFC 2409 5.1)")
    return key


def _crl(path: Path, cas: tuple[x509.Certificate, ...]) -> x509.CertificateRevocationList:
    data = _read(path, "crls")
    try:
        crl = (x509.load_pem_x509_crl(data) if b"-----BEGIN" in data
               else x509.load_der_x509_crl(data))
    except ValueError as exc:
        raise PkiError(f"[pki] crls {path}: not a CRL ({exc})") from exc
    issuer = next((ca for ca in cas if ca.subject == crl.issuer), None)
    if issuer is None or not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
        raise PkiError(f"[pki] crls {path}: not signed by a configured CA"
                       f" (issuer {crl.issuer.rfc4514_string()})")
    return crl


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    return bc.ca
