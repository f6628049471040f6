"""Peer certificate checks (vpnhub.pki.verify): each refusal names its check."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from vpnhub.config import PkiConfig
from vpnhub.lab.testca import Authority, Issued, make_ca
from vpnhub.pki.credentials import Credentials, load_credentials
from vpnhub.pki.verify import CertificateRefused, verify_peer
from vpnhub.wire.constants import IdType

NOW = dt.datetime.now(dt.UTC)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> tuple[Authority, Authority, Path]:
    d = tmp_path_factory.mktemp("pki")
    return make_ca(d / "ca"), make_ca(d / "other", "other-ca"), d


def _der(issued: Issued) -> bytes:
    return x509.load_pem_x509_certificate(issued.cert.read_bytes()).public_bytes(
        serialization.Encoding.DER)


def _dn(issued: Issued) -> bytes:
    return x509.load_pem_x509_certificate(issued.cert.read_bytes()).subject.public_bytes()


def _creds(ca: Authority, crls: tuple[Path, ...] = ()) -> Credentials:
    return load_credentials(PkiConfig(ca=ca.cert_path, crls=crls))


def _refused(creds: Credentials, ders: list[bytes], id_type: int, data: bytes) -> str:
    with pytest.raises(CertificateRefused) as e:
        verify_peer(creds, ders, id_type, data, NOW)
    return e.value.check


def test_good_certificate_by_dn_gives_its_key_and_ou(
        lab: tuple[Authority, Authority, Path]) -> None:
    ca, _, _ = lab
    u = ca.issue("alice", ou="vpngroup")
    peer = verify_peer(_creds(ca), [_der(u)], IdType.DER_ASN1_DN, _dn(u), NOW)
    assert peer.organizational_units == ("vpngroup",)
    assert "CN=alice" in peer.subject


def test_ids_bound_to_subject_alt_names(lab: tuple[Authority, Authority, Path]) -> None:
    ca, _, _ = lab
    u = ca.issue("host", san_dns=("gw.example.net",), san_ip=("198.51.100.7",))
    creds = _creds(ca)
    verify_peer(creds, [_der(u)], IdType.FQDN, b"GW.example.net", NOW)
    verify_peer(creds, [_der(u)], IdType.IPV4_ADDR,
                ipaddress.IPv4Address("198.51.100.7").packed, NOW)
    assert _refused(creds, [_der(u)], IdType.FQDN, b"other.example.net") == "id_mismatch"
    assert _refused(creds, [_der(u)], IdType.IPV4_ADDR, bytes(4)) == "id_mismatch"
    assert _refused(creds, [_der(u)], IdType.KEY_ID, b"vpngroup") == "id_mismatch"
    other = ca.issue("bob")
    assert _refused(creds, [_der(u)], IdType.DER_ASN1_DN, _dn(other)) == "id_mismatch"


def test_other_ca_expired_not_yet_valid_revoked(lab: tuple[Authority, Authority, Path]) -> None:
    ca, other, d = lab
    foreign = other.issue("mallory")
    expired = ca.issue("old", days=(-30, -1))
    future = ca.issue("future", days=(2, 30))
    revoked = ca.issue("gone")
    crl = ca.crl([revoked.cert], d / "ca.crl")
    creds = _creds(ca, (crl,))
    for issued, check in ((foreign, "other_ca"), (expired, "expired"),
                          (future, "not_yet_valid"), (revoked, "revoked")):
        assert _refused(creds, [_der(issued)], IdType.DER_ASN1_DN, _dn(issued)) == check


def test_hostile_certificate_bytes(lab: tuple[Authority, Authority, Path]) -> None:
    ca, _, _ = lab
    creds = _creds(ca)
    assert _refused(creds, [], IdType.DER_ASN1_DN, b"") == "no_certificate"
    assert _refused(creds, [b"\x30\x03\x02\x01\x01"], IdType.DER_ASN1_DN, b"") == "malformed"
    assert _refused(creds, [bytes(2000)], IdType.DER_ASN1_DN, b"") == "malformed"


def test_a_self_signed_copy_of_the_ca_name_is_not_the_ca(
        lab: tuple[Authority, Authority, Path]) -> None:
    ca, _, d = lab
    fake = make_ca(d / "fake", "lab-ca")  # same subject, another key
    u = fake.issue("eve")
    assert _refused(_creds(ca), [_der(u)], IdType.DER_ASN1_DN, _dn(u)) == "other_ca"


# pytest resets warning filters per test; vpnhub.pki.verify's own filter is for the service
@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
def test_mutated_certificates_are_refused_by_name(lab: tuple[Authority, Authority, Path]) -> None:
    """Hostile bytes: every mutation of a good certificate is accepted or refused with a
    named check, never another exception (a seeded run, like a short fuzz pass)."""
    import random

    ca, _, _ = lab
    u = ca.issue("fuzzed", ou="vpngroup", san_dns=("a.example",))
    good, dn = _der(u), _dn(u)
    creds = _creds(ca)
    rng = random.Random(14)
    checks: set[str] = set()
    for _ in range(1000):
        data = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.2:
            data = data[: rng.randrange(len(data))]
        try:
            verify_peer(creds, [bytes(data)], IdType.DER_ASN1_DN, dn, NOW)
        except CertificateRefused as e:
            checks.add(e.check)
    assert checks <= {"malformed", "other_ca", "id_mismatch", "expired", "not_yet_valid",
                      "key_type"}, checks
    assert "malformed" in checks and "other_ca" in checks


def _ku(*, sign: bool = False, cert_sign: bool = False, encipher: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=sign, content_commitment=False,
                         key_encipherment=encipher, data_encipherment=False, key_agreement=False,
                         key_cert_sign=cert_sign, crl_sign=cert_sign, encipher_only=False,
                         decipher_only=False)


def _signed_by(issuer: x509.Certificate, issuer_key: object, cn: str, *, ca: bool,
               ku: x509.KeyUsage | None, path_length: int | None = None
               ) -> tuple[x509.Certificate, object]:
    """A certificate of a fresh key issued by `issuer`, with these extensions."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
         .issuer_name(issuer.subject).public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=9))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length),
                        critical=True))
    if ku is not None:
        b = b.add_extension(ku, critical=True)
    return b.sign(issuer_key, hashes.SHA256()), key  # type: ignore[arg-type]


def _pem_der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def test_end_certificate_key_usage_must_allow_signatures(
        lab: tuple[Authority, Authority, Path]) -> None:
    """RFC 4945 5.1.3.2: a KeyUsage without digitalSignature or nonRepudiation (e.g. an
    encryption-only certificate of the same CA) cannot sign IKE; none at all is fine."""
    ca, _, _ = lab
    creds = _creds(ca)
    for ku, ok in ((None, True), (_ku(sign=True), True), (_ku(encipher=True), False)):
        cert, _ = _signed_by(ca.cert, ca.key, "leaf", ca=False, ku=ku)
        dn = cert.subject.public_bytes()
        if ok:
            verify_peer(creds, [_pem_der(cert)], IdType.DER_ASN1_DN, dn, NOW)
        else:
            assert _refused(creds, [_pem_der(cert)], IdType.DER_ASN1_DN, dn) == "key_usage"


def test_intermediate_must_be_a_ca_allowed_to_sign_certificates(
        lab: tuple[Authority, Authority, Path]) -> None:
    """RFC 5280 6.1.4 (k), (n): an intermediate the peer sends chains only if it is a
    CA (basicConstraints) whose KeyUsage, if any, has keyCertSign."""
    ca, _, _ = lab
    creds = _creds(ca)
    for is_ca, ku, ok in ((True, _ku(cert_sign=True), True), (True, None, True),
                          (False, None, False), (True, _ku(sign=True), False)):
        inter, inter_key = _signed_by(ca.cert, ca.key, "intermediate", ca=is_ca, ku=ku)
        leaf, _ = _signed_by(inter, inter_key, "leaf-below", ca=False, ku=None)
        ders, dn = [_pem_der(leaf), _pem_der(inter)], leaf.subject.public_bytes()
        if ok:
            verify_peer(creds, ders, IdType.DER_ASN1_DN, dn, NOW)
        else:
            assert _refused(creds, ders, IdType.DER_ASN1_DN, dn) == "other_ca", (is_ca, ku)


def test_critical_extensions_the_checks_do_not_process_are_refused(
        lab: tuple[Authority, Authority, Path]) -> None:
    """RFC 5280 4.2: a critical extension that is not recognized MUST make the
    certificate be rejected; name constraints on an intermediate (not enforced
    here) are refused the same way rather than ignored."""
    from cryptography.hazmat.primitives import hashes

    ca, _, _ = lab
    creds = _creds(ca)
    odd = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x05\x00")
    leaf, _ = _signed_by(ca.cert, ca.key, "odd-leaf", ca=False, ku=None)
    builder = (x509.CertificateBuilder().subject_name(leaf.subject).issuer_name(leaf.issuer)
               .public_key(leaf.public_key()).serial_number(leaf.serial_number)
               .not_valid_before(leaf.not_valid_before_utc)
               .not_valid_after(leaf.not_valid_after_utc))
    odd_leaf = builder.add_extension(odd, critical=True).sign(ca.key, hashes.SHA256())
    plain = builder.add_extension(odd, critical=False).sign(ca.key, hashes.SHA256())
    dn = leaf.subject.public_bytes()
    verify_peer(creds, [_pem_der(plain)], IdType.DER_ASN1_DN, dn, NOW)  # not critical: fine
    assert _refused(creds, [_pem_der(odd_leaf)], IdType.DER_ASN1_DN, dn) == \
        "critical_extension"
    inter, inter_key = _signed_by(ca.cert, ca.key, "constrained", ca=True, ku=None)
    constrained = (x509.CertificateBuilder().subject_name(inter.subject)
                   .issuer_name(inter.issuer).public_key(inter.public_key())
                   .serial_number(inter.serial_number)
                   .not_valid_before(inter.not_valid_before_utc)
                   .not_valid_after(inter.not_valid_after_utc)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
                   .add_extension(x509.NameConstraints(
                       [x509.DNSName("example.com")], None), critical=True)
                   .sign(ca.key, hashes.SHA256()))
    below, _ = _signed_by(constrained, inter_key, "below-constrained", ca=False, ku=None)
    assert _refused(creds, [_pem_der(below), _pem_der(constrained)], IdType.DER_ASN1_DN,
                    below.subject.public_bytes()) == "critical_extension"


def test_path_length_constraint_of_an_intermediate(
        lab: tuple[Authority, Authority, Path]) -> None:
    """RFC 5280 4.2.1.9, 6.1.4 (m): an intermediate with pathLenConstraint 0 may issue
    end certificates only, not another CA whose certificates then chain."""
    ca, _, _ = lab
    creds = _creds(ca)
    for limit, ok in ((0, False), (1, True), (None, True)):
        upper, upper_key = _signed_by(ca.cert, ca.key, "upper", ca=True, ku=None,
                                      path_length=limit)
        lower, lower_key = _signed_by(upper, upper_key, "lower", ca=True, ku=None)
        leaf, _ = _signed_by(lower, lower_key, "deep-leaf", ca=False, ku=None)
        ders = [_pem_der(leaf), _pem_der(lower), _pem_der(upper)]
        dn = leaf.subject.public_bytes()
        if ok:
            verify_peer(creds, ders, IdType.DER_ASN1_DN, dn, NOW)
        else:
            assert _refused(creds, ders, IdType.DER_ASN1_DN, dn) == "other_ca"
