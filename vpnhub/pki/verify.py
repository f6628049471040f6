"""A peer's certificate checked for IKEv1 (RFC 2408 3.9, RFC 4945 3 and 5).

The checks, in order, each refusal naming its own: the certificate parses
(`malformed`), it chains to a configured CA with valid signatures (`other_ca`),
every certificate of the chain is in its validity period (`expired`,
`not_yet_valid`), none is on a CRL of its issuer (`revoked`), and the identity
the peer sent in its ID payload is the subject or a subjectAltName of the end
certificate (`id_mismatch`, RFC 4945 3.1: "the ID MUST match the certificate"),
and its keyUsage, if any, allows signatures (`key_usage`, RFC 4945 5.1.3.2);
a gateway's certificate (checked by a client) has no extendedKeyUsage or one
with a gateway use (`not_a_server`). A certificate from the peer with a critical
extension these checks do not process (name constraints, policies, unknown ones)
is refused (`critical_extension`, RFC 5280 4.2).
An intermediate from the peer's CERTs must be a CA (basicConstraints) whose
keyUsage, if any, has keyCertSign, and no CA's pathLenConstraint may be
exceeded (RFC 5280 6.1.4 (k), (m), (n)), or the chain does not reach a
configured CA (`other_ca`).

Sans-I/O: the time of the check (wall clock, UTC) is passed in.
"""

from __future__ import annotations

import ipaddress
import itertools
import warnings
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from vpnhub.pki.credentials import Credentials
from vpnhub.text import printable
from vpnhub.wire.constants import IdType

# what `cryptography` raises on bytes it cannot parse (found by the mutation test)
_MALFORMED = (ValueError, TypeError, UnsupportedAlgorithm, x509.InvalidVersion,
              x509.DuplicateExtension, x509.UnsupportedGeneralNameType)
# A peer's certificate with, e.g., a negative serial number is refused by the checks
# or accepted as before; the library's warning about it must not reach stderr once
# per hostile packet.
warnings.filterwarnings("ignore", category=CryptographyDeprecationWarning, module=__name__)
MAX_CHAIN = 4  # end certificate + intermediates up to a configured CA
MAX_CERTS = 8  # CERT payloads considered from one message


class CertificateRefused(Exception):
    """A peer's certificate failed one check; `check` is its stable name."""

    def __init__(self, check: str, detail: str) -> None:
        super().__init__(f"{check}: {detail}")
        self.check = check
        self.detail = detail


@dataclass(frozen=True)
class PeerCertificate:
    """What a verified end certificate tells: its key, its subject, its OU values."""

    public_key: rsa.RSAPublicKey
    subject: str
    organizational_units: tuple[str, ...]


def parse_chain(ders: list[bytes]) -> list[x509.Certificate]:
    if not ders:
        raise CertificateRefused("no_certificate", "the peer sent no X.509 certificate")
    out = []
    for der in ders[:MAX_CERTS]:
        try:
            out.append(x509.load_der_x509_certificate(der))
        except _MALFORMED as exc:
            raise CertificateRefused("malformed", f"a certificate does not parse: {exc}") from exc
    return out


def verify_peer(creds: Credentials, ders: list[bytes], id_type: int, id_data: bytes,
                at: datetime, *, server: bool = False) -> PeerCertificate:
    """The peer's end certificate (the first CERT payload, RFC 4945 3.2), verified;
    `server`: the peer is the gateway we connect to (`not_a_server` below).

    The bytes are the peer's: `cryptography` parses names and extensions lazily, so
    a malformed one may only raise while being checked; that is `malformed` too."""
    try:
        return _verify(creds, ders, id_type, id_data, at, server)
    except _MALFORMED as exc:
        raise CertificateRefused("malformed", f"a certificate does not parse: {exc}") from exc


def _verify(creds: Credentials, ders: list[bytes], id_type: int, id_data: bytes,
            at: datetime, server: bool) -> PeerCertificate:
    certs = parse_chain(ders)
    leaf = certs[0]
    who = _name(leaf)
    chain = _chain_to_ca(creds, leaf, certs[1:], who)
    for cert in chain[:-1]:  # the configured CA is a trust anchor (RFC 5280 6.1)
        _check_critical(cert, who)
    for cert in chain:
        _check_validity(cert, at, who)
    for cert, issuer in itertools.pairwise(chain):
        _check_revocation(creds, cert, issuer, who)
    _check_id(leaf, id_type, id_data, who)
    if not _may_sign(leaf):
        raise CertificateRefused("key_usage", f"{who}: its keyUsage allows neither"
                                 " digitalSignature nor nonRepudiation (RFC 4945 5.1.3.2)")
    if server and not _may_serve(leaf):
        raise CertificateRefused("not_a_server", f"{who}: its extendedKeyUsage names no"
                                 " gateway use (serverAuth, ipsecIKE): a user's certificate")
    key = leaf.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise CertificateRefused("key_type", f"{who}: not an RSA key (only RSA signatures"
                                 " are supported)")
    ous = tuple(str(a.value) for a in leaf.subject.get_attributes_for_oid(
        NameOID.ORGANIZATIONAL_UNIT_NAME))
    return PeerCertificate(key, leaf.subject.rfc4514_string(), ous)


def _name(cert: x509.Certificate) -> str:
    return printable(cert.subject.rfc4514_string())


def _chain_to_ca(creds: Credentials, leaf: x509.Certificate,
                 extra: list[x509.Certificate], who: str) -> list[x509.Certificate]:
    """[leaf, intermediates..., configured CA]; intermediates from the peer's CERTs."""
    chain = [leaf]
    current = leaf
    for _ in range(MAX_CHAIN):
        below = len(chain) - 1  # intermediates between this issuer and the leaf
        ca = next((c for c in creds.cas if _path_allows(c, below) and _issued_by(current, c)),
                  None)
        if ca is not None:
            return [*chain, ca]
        nxt = next((c for c in extra if c not in chain and _is_ca(c) and _may_issue(c)
                    and _path_allows(c, below) and _issued_by(current, c)), None)
        if nxt is None:
            break
        chain.append(nxt)
        current = nxt
    issuer = printable(current.issuer.rfc4514_string())
    raise CertificateRefused("other_ca", f"{who}: issued by {issuer}, which is not a"
                             " configured CA ([pki] ca) or its signature does not verify")


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    if cert.issuer != ca.subject:
        return False
    try:
        cert.verify_directly_issued_by(ca)
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        return False
    return True


def _path_allows(ca: x509.Certificate, below: int) -> bool:
    """RFC 5280 4.2.1.9, 6.1.4 (m): at most pathLenConstraint intermediate CAs may
    follow this one down to the end certificate."""
    try:
        limit = ca.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length
    except x509.ExtensionNotFound:
        return True
    return limit is None or below <= limit


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


# The extensions these checks act on (or that only identify keys); a critical one of
# any other type, name constraints and policies included, is not processed here
_PROCESSED = (x509.BasicConstraints, x509.KeyUsage, x509.ExtendedKeyUsage,
              x509.SubjectAlternativeName, x509.SubjectKeyIdentifier,
              x509.AuthorityKeyIdentifier)


def _check_critical(cert: x509.Certificate, who: str) -> None:
    """RFC 5280 4.2: a certificate with a critical extension the checks do not
    process MUST be rejected (ignoring an intermediate's name constraints would
    accept what its issuer forbade)."""
    for ext in cert.extensions:
        if ext.critical and not isinstance(ext.value, _PROCESSED):
            which = who if _name(cert) == who else f"{who}: its CA {_name(cert)}"
            raise CertificateRefused("critical_extension", f"{which} has a critical"
                                     f" extension {ext.oid.dotted_string} that is not"
                                     " supported")


def _key_usage(cert: x509.Certificate) -> x509.KeyUsage | None:
    try:
        return cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None


def _may_sign(cert: x509.Certificate) -> bool:
    """RFC 4945 5.1.3.2: no keyUsage, or one with digitalSignature or nonRepudiation."""
    ku = _key_usage(cert)
    return ku is None or ku.digital_signature or ku.content_commitment


def _may_issue(cert: x509.Certificate) -> bool:
    """RFC 5280 6.1.4 (n): an intermediate's keyUsage, if present, has keyCertSign."""
    ku = _key_usage(cert)
    return ku is None or ku.key_cert_sign


# RFC 4945 5.1.3.12 names ipsecIKE and anyExtendedKeyUsage; gateways' certificates
# carry serverAuth in practice (Windows and macOS ask for it), and RFC 2459's
# ipsecEndSystem / ipsecTunnel predate ipsecIKE
_GATEWAY_USES = frozenset({
    ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.IPSEC_IKE,
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
    x509.ObjectIdentifier("1.3.6.1.5.5.7.3.5"), x509.ObjectIdentifier("1.3.6.1.5.5.7.3.6"),
})


def _may_serve(cert: x509.Certificate) -> bool:
    """A gateway's certificate: no extendedKeyUsage, or one with a gateway use. In
    hybrid mode it is all that authenticates phase 1 and the XAUTH password follows,
    so a user's certificate of the same CA (clientAuth) must not pass for one."""
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return any(oid in _GATEWAY_USES for oid in eku)


def _check_validity(cert: x509.Certificate, at: datetime, who: str) -> None:
    which = who if _name(cert) == who else f"{who}: its CA {_name(cert)}"
    if at > cert.not_valid_after_utc:
        raise CertificateRefused("expired", f"{which} expired on"
                                 f" {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC")
    if at < cert.not_valid_before_utc:
        raise CertificateRefused("not_yet_valid", f"{which} is valid only from"
                                 f" {cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC")


def _check_revocation(creds: Credentials, cert: x509.Certificate, issuer: x509.Certificate,
                      who: str) -> None:
    for crl in creds.crls:
        if crl.issuer != issuer.subject:
            continue
        entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        if entry is not None:
            raise CertificateRefused("revoked", f"{who}: serial {cert.serial_number:x} was"
                                     f" revoked on {entry.revocation_date_utc:%Y-%m-%d} (CRL of"
                                     f" {printable(crl.issuer.rfc4514_string())})")


def _check_id(cert: x509.Certificate, id_type: int, id_data: bytes, who: str) -> None:
    if id_type == IdType.DER_ASN1_DN:
        if id_data == cert.subject.public_bytes():
            return
        raise CertificateRefused("id_mismatch", f"{who}: the peer's ID (a DN) is not the"
                                 " certificate's subject")
    names = _san(cert)
    wanted = _id_value(id_type, id_data)
    if wanted is not None and wanted in names:
        return
    shown = _show_id(wanted) if wanted is not None else f"of type {id_type}"
    raise CertificateRefused("id_mismatch", f"{who}: the peer's ID {shown} is neither the"
                             " subject nor a subjectAltName of its certificate")


def _id_value(id_type: int, data: bytes) -> object | None:
    if id_type == IdType.IPV4_ADDR and len(data) == 4:
        return ipaddress.IPv4Address(data)
    if id_type == IdType.FQDN:
        return ("dns", data.decode("ascii", "replace").lower())
    if id_type == IdType.USER_FQDN:
        return ("email", data.decode("ascii", "replace").lower())
    return None


def _show_id(value: object) -> str:
    if isinstance(value, tuple):  # ("dns", name) / ("email", address)
        return f"{value[0]}:{printable(str(value[1]))}"
    return f"ip:{value}"


def _san(cert: x509.Certificate) -> set[object]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    out: set[object] = set(san.get_values_for_type(x509.IPAddress))
    out |= {("dns", v.lower()) for v in san.get_values_for_type(x509.DNSName)}
    out |= {("email", v.lower()) for v in san.get_values_for_type(x509.RFC822Name)}
    return out
