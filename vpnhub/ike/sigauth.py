"""Phase 1 with RSA signatures and hybrid authentication (issue 14).

RFC 2409 5.1: with signatures SKEYID = prf(Ni_b | Nr_b, g^xy) (phase1.compute_keys)
and each side proves itself with SIG_I / SIG_R, its signature over HASH_I /
HASH_R, PKCS#1 v1.5 without DigestInfo (crypto/rsasig.py), usually with its
certificate in a CERT payload (RFC 2408 3.9, encoding 4 = X.509 signature):

    Main Mode      ... <-- HDR, KE, Nr, CR, NAT-D       (we ask for the peer's certificate)
                   HDR*, IDii, CERT, SIG_I -->
                   <-- HDR*, IDir, CERT, SIG_R

XAUTHInitRSA (65005, draft-ietf-ipsec-isakmp-xauth-06 5) is RSA signatures with
XAUTH after phase 1 (strongSwan `xauthrsa`). HybridInitRSA (64221,
draft-ietf-ipsra-hybrid-auth-05 3.2): only the responder signs; the initiator's
HASH_I (keyed by the signature SKEYID) proves only that it knows the DH secret,
and the user is authenticated by XAUTH (vpnc --auth-mode hybrid, Aggressive Mode).
A hybrid exchange carries no hash derived from the group key, so an ike-scan
capture gives psk-crack nothing.

The X.509 side (chain, validity, CRL, ID binding) is behind `SigCredentials`
(ike/pkiseam.py), implemented by vpnhub.pki.
"""

from __future__ import annotations

from vpnhub.ike import phase1
from vpnhub.ike.errors import IkeError
from vpnhub.ike.pkiseam import PeerKey, SigCredentials
from vpnhub.ike.state import Role, SaState
from vpnhub.wire.constants import CertEncoding, IdType, NotifyType
from vpnhub.wire.payloads import (
    CertPayload,
    CertRequestPayload,
    HashPayload,
    IDPayload,
    Payload,
    SigPayload,
)

MAX_CERT_PAYLOADS = 8


def uses_signatures(method: int) -> bool:
    return method in phase1.RSA_METHODS or method in phase1.HYBRID_METHODS


def peer_signs(sa: SaState) -> bool:
    """Does the initiator prove itself with SIG_I (not with HASH_I)?"""
    assert sa.suite is not None
    return sa.suite.auth in phase1.RSA_METHODS


def credentials(sa: SaState) -> SigCredentials:
    creds = sa.config.pki
    if creds is None:  # only reachable if a signature method was accepted without [pki]
        raise IkeError("no_certificate", "signature authentication without a certificate"
                       " ([pki] certificate)", NotifyType.CERTIFICATE_UNAVAILABLE)
    return creds


def cert_requests(sa: SaState) -> list[Payload]:
    """CR payloads naming each CA we trust (RFC 2408 3.10), when the peer must sign:
    strongSwan sends its certificate only when asked (send_cert = ifasked). A
    responder always signs, so an initiator with certificates always asks."""
    if sa.role is Role.INITIATOR and sa.config.auth == "psk":
        return []
    if sa.role is Role.RESPONDER and not peer_signs(sa):
        return []
    return [CertRequestPayload(CertEncoding.X509_SIG, name)
            for name in credentials(sa).ca_names]


def our_id(sa: SaState) -> IDPayload:
    """ID_DER_ASN1_DN of our certificate's subject: the peer binds our ID to the
    certificate (RFC 4945 3.1), as strongSwan does."""
    return IDPayload(IdType.DER_ASN1_DN, credentials(sa).subject_der, 17, 500)


def our_proof(sa: SaState, id_body: bytes) -> list[Payload]:
    """CERT and SIG over our HASH (SIG_R for a responder), RFC 2409 5.1."""
    creds = credentials(sa)
    h = phase1.hash_of(sa, initiator=sa.role is Role.INITIATOR, id_body=id_body)
    return [CertPayload(CertEncoding.X509_SIG, creds.certificate), SigPayload(creds.sign(h))]


def initiator_id(sa: SaState) -> IDPayload:
    """Our DN with a certificate of our own (RSA); the group name otherwise (hybrid)."""
    return our_id(sa) if sa.config.auth == "rsa" else phase1.our_id(sa)


def initiator_proof(sa: SaState, id_body: bytes) -> list[Payload]:
    """SIG_I with our certificate (RSA), or HASH_I keyed by the signature SKEYID (hybrid:
    the initiator has no key, draft-ietf-ipsra-hybrid-auth-05 3.2)."""
    if peer_signs(sa):
        return our_proof(sa, id_body)
    return [HashPayload(phase1.hash_of(sa, initiator=True, id_body=id_body))]


def check_responder_proof(sa: SaState, payloads: list[Payload], idr: IDPayload) -> None:
    """Initiator: the concentrator's CERT and SIG_R, its ID bound to the certificate."""
    key = _verified_peer(sa, payloads, idr.id_type, idr.data)
    h = phase1.hash_of(sa, initiator=False, id_body=phase1.body(idr))
    sig = phase1.require(payloads, SigPayload, "SIG")
    assert isinstance(sig, SigPayload)
    if not key.verify(h, sig.data):
        raise IkeError("signature_mismatch", f"SIG_R does not verify with the key of"
                       f" {key.subject}", NotifyType.INVALID_SIGNATURE, send_notify=False)
    sa.p1.peer_key = key


def _verified_peer(sa: SaState, payloads: list[Payload], id_type: int,
                   id_data: bytes) -> PeerKey:
    certs = [p.data for p in payloads
             if isinstance(p, CertPayload) and p.encoding == CertEncoding.X509_SIG]
    peer = credentials(sa).check_peer(certs[:MAX_CERT_PAYLOADS], id_type, id_data)
    if isinstance(peer, str):
        raise IkeError("certificate_refused", f"peer certificate refused ({peer})",
                       NotifyType.INVALID_CERTIFICATE, send_notify=False)
    return peer


def check_initiator_proof(sa: SaState, payloads: list[Payload], id_type: int, id_data: bytes,
                          id_body: bytes) -> None:
    """Responder: SIG_I with a certificate that passes every check (RSA), or, in hybrid
    mode, HASH_I keyed by the signature SKEYID."""
    if not peer_signs(sa):
        if sa.p1.unknown_group is not None:  # IkeSA._fail names the cause (ike.standin)
            raise IkeError("hash_mismatch", "unknown group", NotifyType.AUTHENTICATION_FAILED,
                           send_notify=False)
        _check_hybrid_group(sa, id_type, id_data)
        phase1.check_hash(sa, payloads, initiator=True, id_body=id_body)
        return
    # The ID is the certificate's (a DN), no group name; the group comes from the
    # certificate. Aggressive Mode marked it an unknown group (no key for it), which
    # would make IkeSA._fail report any refusal below as "unknown_group"
    sa.p1.unknown_group = None
    sig = phase1.require(payloads, SigPayload, "SIG")
    assert isinstance(sig, SigPayload)
    peer = _verified_peer(sa, payloads, id_type, id_data)
    h = phase1.hash_of(sa, initiator=True, id_body=id_body)
    if not peer.verify(h, sig.data):
        raise IkeError("signature_mismatch", f"SIG_I does not verify with the key of"
                       f" {peer.subject}", NotifyType.INVALID_SIGNATURE, send_notify=False)
    sa.p1.peer_key = peer
    _choose_group(sa, peer.groups, peer.subject)


def _check_hybrid_group(sa: SaState, id_type: int, id_data: bytes) -> None:
    """The ID must name a configured group that allows hybrid. A hybrid initiator
    proves nothing in phase 1 (draft-ietf-ipsra-hybrid-auth-05 3.2) and Main Mode
    offers every group's methods before the ID (phase1.auth_methods); without this,
    XAUTH alone would put a client without the group key in a PSK-only group, or in
    a group nobody configured. Aggressive Mode checks it with the proposal already."""
    allowed = sa.config.auth_methods_for
    if allowed is None or sa.role is not Role.RESPONDER:
        return
    assert sa.suite is not None
    lookup, keyless = sa.config.psk_lookup, sa.config.group_without_psk
    known = (lookup is not None and lookup(id_type, id_data, sa.remote) is not None) or (
        keyless is not None and keyless(id_type, id_data))
    if not known:  # IkeSA._fail names the cause, only in our log (ike.standin)
        sa.p1.unknown_group = phase1.describe_id(id_type, id_data)
        raise IkeError("hash_mismatch", "unknown group", NotifyType.AUTHENTICATION_FAILED,
                       send_notify=False)
    if sa.suite.auth not in allowed(id_data):
        raise IkeError("auth_method_not_allowed", f"group"
                       f" {phase1.describe_id(id_type, id_data)!r} does not allow hybrid"
                       " authentication ([[group]] auth)", NotifyType.AUTHENTICATION_FAILED,
                       send_notify=False)


def _choose_group(sa: SaState, ous: tuple[str, ...], subject: str) -> None:
    """The group of a certificate: its OU names a group that allows the method (the
    VPN 3000 took the group from the OU), or the only group that allows it."""
    assert sa.suite is not None
    pick = sa.config.group_for_cert
    group = pick(ous, sa.suite.auth) if pick is not None else None
    if group is None:
        raise IkeError("certificate_no_group", f"no group allows certificate login for"
                       f" {subject} (OU {', '.join(ous) or 'none'})",
                       NotifyType.AUTHENTICATION_FAILED, send_notify=False)
    sa.p1.cert_group = group
