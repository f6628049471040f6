"""Phase 1 with certificates in memory (issue 14, ike/sigauth.py): Main Mode RSA
signatures + XAUTH and hybrid (Aggressive and Main Mode), both roles, and what the
responder refuses or never sends."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from ike_harness import GROUP, Lab

from vpnhub.config import PkiConfig
from vpnhub.ike import events as ev
from vpnhub.ike.sa import Datagram
from vpnhub.lab.testca import Authority, Issued, make_ca
from vpnhub.pki.credentials import Credentials, load_credentials
from vpnhub.pki.signer import PkiSigner
from vpnhub.wire.constants import AuthMethod, NotifyType
from vpnhub.wire.message import decode_header, decode_message
from vpnhub.wire.payloads import CertRequestPayload, HashPayload, NotifyPayload, SigPayload


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Authority, Issued, Path]:
    d = tmp_path_factory.mktemp("ca")
    ca = make_ca(d)
    return ca, ca.issue("concentrator", server=True), d


def _signer(ca: Authority, me: Issued | None = None) -> PkiSigner:
    cfg = PkiConfig(ca=ca.cert_path, certificate=me.cert if me else None,
                    key=me.key if me else None)
    return PkiSigner(load_credentials(cfg), time.time)


def _lab(ca: Authority, conc: Issued, *methods: int) -> tuple[Lab, list[bytes]]:
    """A concentrator with our certificate; every datagram it sends is recorded."""
    lab = Lab()
    lab.server_pki = _signer(ca, conc)
    lab.server_methods = methods
    sent: list[bytes] = []
    deliver = lab._deliver_to_client

    def record(d: Datagram) -> None:
        sent.append(d.data)
        deliver(d)

    lab._deliver_to_client = record  # type: ignore[method-assign]
    return lab, sent


def _established(lab: Lab) -> ev.Phase1Established:
    done = [e for _, e in lab.server_events if isinstance(e, ev.Phase1Established)]
    assert done, [e.text for _, e in lab.server_events if isinstance(e, ev.LogLine)][-5:]
    return done[0]


def _server_lines(lab: Lab) -> list[str]:
    return [e.text for _, e in lab.server_events if isinstance(e, ev.LogLine)]


@pytest.mark.parametrize("mode", ["aggressive", "main"])
def test_hybrid_signs_and_sends_no_hash(mode: str, pki: tuple[Authority, Issued, Path]) -> None:
    ca, conc, _ = pki
    lab, sent = _lab(ca, conc, AuthMethod.HYBRID_INIT_RSA)
    c = lab.add_client(auth="hybrid", pki=_signer(ca), mode=mode)
    c.sa.initiate(lab.now)
    lab.run()
    assert c.sa.established and len(c.children) == 1
    e = _established(lab)
    assert (e.auth_mode, e.auth_method) == ("hybrid", "RSA Hybrid-XAUTH")
    if mode == "aggressive":  # message 2 is in the clear: what ike-scan would see
        kinds = {type(p) for p in decode_message(sent[0]).payloads}
        assert SigPayload in kinds and HashPayload not in kinds  # nothing for psk-crack


@pytest.mark.parametrize("auth", ["hybrid", "rsa"])
def test_signatures_compute_g_xy_at_once(auth: str, pki: tuple[Authority, Issued, Path]) -> None:
    """SKEYID = prf(Ni_b | Nr_b, g^xy) with signatures (RFC 2409 5.1): nothing to defer
    to the shell's DH worker (ike.dhjob), whatever the endpoint offers."""
    ca, conc, _ = pki
    lab, _ = _lab(ca, conc, AuthMethod.HYBRID_INIT_RSA, AuthMethod.XAUTH_INIT_RSA)
    jobs: list[object] = []
    lab.endpoint.dh_offload = jobs.append
    me = ca.issue(f"vpnclient1-defer-{auth}", ou=GROUP) if auth == "rsa" else None
    c = lab.add_client(auth=auth, pki=_signer(ca, me))
    c.sa.initiate(lab.now)
    lab.run()
    assert c.sa.established and len(c.children) == 1 and jobs == []


def test_hybrid_only_group_refuses_psk_without_a_hash(
        pki: tuple[Authority, Issued, Path]) -> None:
    ca, conc, _ = pki
    lab, sent = _lab(ca, conc, AuthMethod.HYBRID_INIT_RSA)
    c = lab.add_client()  # ike-scan's probe: a PSK transform
    c.sa.initiate(lab.now)
    lab.run()
    assert not c.sa.established
    answers = [decode_message(d) for d in sent]
    assert answers and all(not any(isinstance(p, HashPayload) for p in m.payloads)
                           for m in answers)
    notes = [p.notify_type for m in answers for p in m.payloads if isinstance(p, NotifyPayload)]
    assert notes == [NotifyType.NO_PROPOSAL_CHOSEN]


@pytest.mark.parametrize("mode", ["aggressive", "main"])
def test_hybrid_and_rsa_in_a_group_without_a_psk(
        mode: str, pki: tuple[Authority, Issued, Path]) -> None:
    """A group that allows only "hybrid" / "rsa" has no key (config: psk optional); the
    responder knows it as a group, so hybrid's HASH_I is checked, not refused as the
    stand-in key of an unknown group (ike.standin)."""
    ca, conc, _ = pki
    for auth, method in (("hybrid", AuthMethod.HYBRID_INIT_RSA),
                         ("rsa", AuthMethod.XAUTH_INIT_RSA)):
        lab, _ = _lab(ca, conc, method)
        lab.server_keyless = True
        client_pki = _signer(ca, ca.issue("vpnuser1", ou=GROUP)) if auth == "rsa" \
            else _signer(ca)
        c = lab.add_client(auth=auth, pki=client_pki, mode=mode)
        c.sa.initiate(lab.now)
        lab.run()
        assert c.sa.established and len(c.children) == 1, _server_lines(lab)[-5:]
        assert _established(lab).auth_mode == auth
        assert not any("unknown_group" in line for line in _server_lines(lab))


def test_keyless_group_refuses_psk_and_unknown_group_stays_unknown(
        pki: tuple[Authority, Issued, Path]) -> None:
    """A PSK proposal to the keyless group gets NO-PROPOSAL-CHOSEN (its methods), never
    a hash; a hybrid client naming a group that does not exist still fails as
    "unknown_group" (only in our log) after the same message 2."""
    ca, conc, _ = pki
    lab, sent = _lab(ca, conc, AuthMethod.HYBRID_INIT_RSA)
    lab.server_keyless = True
    c = lab.add_client()
    c.sa.initiate(lab.now)
    lab.run()
    assert not c.sa.established
    notes = [p.notify_type for d in sent for p in decode_message(d).payloads
             if isinstance(p, NotifyPayload)]
    assert notes == [NotifyType.NO_PROPOSAL_CHOSEN]
    lab, sent = _lab(ca, conc, AuthMethod.HYBRID_INIT_RSA)
    lab.server_keyless = True
    c = lab.add_client(auth="hybrid", pki=_signer(ca))
    c.sa.config.group_name = "nosuchgroup"
    c.sa.initiate(lab.now)
    lab.run()  # the client sends message 3 and thinks itself done (the last message)
    assert not any(isinstance(e, ev.Phase1Established) for _, e in lab.server_events)
    assert any(SigPayload in {type(p) for p in decode_message(d).payloads} for d in sent)
    assert any("[unknown_group]" in line for line in _server_lines(lab)), _server_lines(lab)


@pytest.mark.parametrize("mode", ["main", "aggressive"])
def test_rsa_signatures_with_xauth(mode: str, pki: tuple[Authority, Issued, Path]) -> None:
    ca, conc, _ = pki
    lab, sent = _lab(ca, conc, AuthMethod.XAUTH_INIT_RSA, AuthMethod.XAUTH_INIT_PSK)
    me = ca.issue(f"vpnclient1-{mode}", ou=GROUP)
    c = lab.add_client(auth="rsa", mode=mode, pki=_signer(ca, me))
    c.sa.initiate(lab.now)
    lab.run()
    assert c.sa.established and len(c.children) == 1, _server_lines(lab)[-3:]
    e = _established(lab)
    assert (e.auth_mode, e.cert_group) == ("rsa", GROUP)
    assert f"CN=vpnclient1-{mode}" in e.cert_subject
    # the responder asked for the certificate of the CA it trusts (RFC 2408 3.10)
    clear = [decode_message(d) for d in sent if not decode_header(d).encrypted]
    crs = [p for m in clear for p in m.payloads if isinstance(p, CertRequestPayload)]
    assert [cr.data for cr in crs] == [ca.cert.subject.public_bytes()]


def test_main_mode_psk_unchanged_next_to_certificates(
        pki: tuple[Authority, Issued, Path]) -> None:
    ca, conc, _ = pki
    lab, _ = _lab(ca, conc, AuthMethod.XAUTH_INIT_RSA, AuthMethod.XAUTH_INIT_PSK)
    c = lab.add_client(mode="main")
    c.sa.initiate(lab.now)
    lab.run()
    assert c.sa.established
    assert _established(lab).auth_mode == "psk"


@pytest.mark.parametrize("kind", ["expired", "other_ca", "wrong_key"])
def test_refused_client_certificates_are_named(kind: str,
                                               pki: tuple[Authority, Issued, Path]) -> None:
    ca, conc, d = pki
    lab, _ = _lab(ca, conc, AuthMethod.XAUTH_INIT_RSA)
    if kind == "expired":
        signer = _signer(ca, ca.issue("old", ou=GROUP, days=(-9, -1)))
    elif kind == "other_ca":
        other = make_ca(d / "other", "other-ca")
        signer = _signer(ca, other.issue("stranger", ou=GROUP))
    else:  # a certificate presented with another key: SIG_I does not verify
        cert, key = ca.issue("thief", ou=GROUP), ca.issue("victim", ou=GROUP)
        creds = load_credentials(PkiConfig(ca=ca.cert_path, certificate=cert.cert,
                                           key=cert.key))
        other_key = load_credentials(PkiConfig(ca=ca.cert_path, certificate=key.cert,
                                               key=key.key)).key
        signer = PkiSigner(Credentials(creds.cas, (), creds.certificate, other_key), time.time)
    c = lab.add_client(auth="rsa", mode="main", pki=signer)
    c.sa.initiate(lab.now)
    lab.run()
    assert not c.sa.established
    failed = [e for _, e in lab.server_events if isinstance(e, ev.NegotiationFailed)]
    want = "signature_mismatch" if kind == "wrong_key" else "certificate_refused"
    assert [f.error for f in failed] == [want]
    if kind != "wrong_key":
        assert any(f"({kind}:" in line for line in _server_lines(lab)), _server_lines(lab)


def test_hybrid_client_refuses_a_concentrator_of_another_ca(
        pki: tuple[Authority, Issued, Path]) -> None:
    ca, conc, d = pki
    lab, _ = _lab(ca, conc, AuthMethod.HYBRID_INIT_RSA)
    other = make_ca(d / "other2", "other-ca")
    c = lab.add_client(auth="hybrid", pki=_signer(other))
    c.sa.initiate(lab.now)
    lab.run()
    assert not c.sa.established
    assert [e.error for e in c.events if isinstance(e, ev.NegotiationFailed)] == [
        "certificate_refused"]


class _Hostile:
    """A peer's credentials that send what an attacker would: junk DER in CERT, or a SIG
    of the wrong size; the rest is a real signer's."""

    def __init__(self, real: PkiSigner, *, certificate: bytes | None = None,
                 signature: bytes | None = None) -> None:
        self.real, self._cert, self._sig = real, certificate, signature
        self.subject_der, self.ca_names = real.subject_der, real.ca_names

    @property
    def certificate(self) -> bytes:
        return self.real.certificate if self._cert is None else self._cert

    def sign(self, data: bytes) -> bytes:
        return self.real.sign(data) if self._sig is None else self._sig

    def check_peer(self, certs: list[bytes], id_type: int, id_data: bytes) -> object:
        return self.real.check_peer(certs, id_type, id_data)


@pytest.mark.parametrize(("hostile", "error", "check"), [
    ({"certificate": b"\x30\x82\x01\x00junk"}, "certificate_refused", "(malformed:"),
    ({"signature": b"\x00\x01\x02"}, "signature_mismatch", "SIG_I does not verify"),
    ({"signature": bytes(4096)}, "signature_mismatch", "SIG_I does not verify"),
])
def test_hostile_cert_and_sig_payloads_are_named_refusals(
        hostile: dict[str, bytes], error: str, check: str,
        pki: tuple[Authority, Issued, Path]) -> None:
    ca, conc, _ = pki
    lab, _ = _lab(ca, conc, AuthMethod.XAUTH_INIT_RSA)
    signer = _Hostile(_signer(ca, ca.issue("hostile", ou=GROUP)), **hostile)
    c = lab.add_client(auth="rsa", mode="main", pki=signer)  # type: ignore[arg-type]
    c.sa.initiate(lab.now)
    lab.run()
    assert not c.sa.established
    failed = [e.error for _, e in lab.server_events if isinstance(e, ev.NegotiationFailed)]
    assert failed == [error]
    assert any(check in line for line in _server_lines(lab)), _server_lines(lab)
    assert not any("internal error" in line for line in _server_lines(lab))


@pytest.mark.parametrize("group", ["psk_only", "unknown"])
def test_main_mode_hybrid_needs_a_group_that_allows_hybrid(
        group: str, pki: tuple[Authority, Issued, Path]) -> None:
    """Main Mode offers every group's methods (no ID before message 5), so the ID of
    message 5 must name a configured group that allows hybrid: else a client without
    the group key would get the policy of a PSK-only group, or of a name nobody
    configured, by XAUTH alone (draft-ietf-ipsra-hybrid-auth-05 3.2: the initiator
    proves nothing in phase 1)."""
    ca, conc, _ = pki
    lab, _ = _lab(ca, conc, AuthMethod.HYBRID_INIT_RSA)
    psk, hybrid = (AuthMethod.XAUTH_INIT_PSK,), (AuthMethod.HYBRID_INIT_RSA,)
    lab._methods = lambda gid: (  # type: ignore[method-assign]
        (*psk, *hybrid) if gid is None else hybrid if gid == b"certs" else psk)
    c = lab.add_client(auth="hybrid", pki=_signer(ca), mode="main")
    if group == "unknown":
        c.sa.config.group_name = "nosuchgroup"
    c.sa.initiate(lab.now)
    lab.run()
    assert not any(isinstance(e, ev.Phase1Established) for _, e in lab.server_events)
    failed = [e.error for _, e in lab.server_events if isinstance(e, ev.NegotiationFailed)]
    assert failed == ["unknown_group" if group == "unknown" else "auth_method_not_allowed"], \
        _server_lines(lab)[-3:]


def test_aggressive_mode_rsa_methods_do_not_depend_on_the_dn(
        pki: tuple[Authority, Issued, Path]) -> None:
    """An RSA client's ID is its certificate's DN, never a group name: its group comes
    from the certificate (OU), so the proposal is checked against every group's
    methods, as in Main Mode. Looked up as a group name, a DN is an unknown group and
    plays the method set of one kind of configured group (certauth._persona), which
    can be PSK-only: then some certificates got NO-PROPOSAL-CHOSEN, others not."""
    ca, conc, _ = pki
    lab, _ = _lab(ca, conc, AuthMethod.XAUTH_INIT_RSA)
    rsa_psk, psk = (AuthMethod.XAUTH_INIT_RSA, AuthMethod.XAUTH_INIT_PSK), (
        AuthMethod.XAUTH_INIT_PSK,)
    lab._methods = lambda gid: rsa_psk if gid is None or gid == GROUP.encode() \
        else psk  # type: ignore[method-assign]
    c = lab.add_client(auth="rsa", mode="aggressive",
                       pki=_signer(ca, ca.issue("vpnclient-dn", ou=GROUP)))
    c.sa.initiate(lab.now)
    lab.run()
    assert c.sa.established and len(c.children) == 1, _server_lines(lab)[-3:]
    assert _established(lab).auth_mode == "rsa"


def test_aggressive_mode_refused_certificate_is_named(
        pki: tuple[Authority, Issued, Path]) -> None:
    """The DN of an RSA client is no configured group name; a refusal of its
    certificate must still name the check, not report an unknown group."""
    ca, conc, _ = pki
    lab, _ = _lab(ca, conc, AuthMethod.XAUTH_INIT_RSA)
    old = _signer(ca, ca.issue("old-am", ou=GROUP, days=(-9, -1)))
    c = lab.add_client(auth="rsa", mode="aggressive", pki=old)
    c.sa.initiate(lab.now)
    lab.run()  # the client sends message 3 and thinks itself done (the last message)
    assert not any(isinstance(e, ev.Phase1Established) for _, e in lab.server_events)
    failed = [e.error for _, e in lab.server_events if isinstance(e, ev.NegotiationFailed)]
    assert failed == ["certificate_refused"], _server_lines(lab)[-3:]
    assert any("(expired:" in line for line in _server_lines(lab)), _server_lines(lab)


def test_hybrid_client_refuses_a_user_certificate_as_the_concentrator(
        pki: tuple[Authority, Issued, Path]) -> None:
    """In hybrid mode the concentrator's certificate is all that authenticates phase 1,
    and the XAUTH password follows: a user certificate of the same CA (extendedKeyUsage
    clientAuth only) must not pass for a gateway, or any user could collect the
    others' passwords (RFC 4945 5.1.3.12; serverAuth, ipsecIKE or no EKU pass)."""
    ca, conc, _ = pki
    gateway_check = PkiSigner(load_credentials(PkiConfig(ca=ca.cert_path)), time.time,
                              peer_is_server=True)
    lab, _ = _lab(ca, conc, AuthMethod.HYBRID_INIT_RSA)  # serverAuth: the real gateway
    c = lab.add_client(auth="hybrid", pki=gateway_check)
    c.sa.initiate(lab.now)
    lab.run()
    assert c.sa.established
    user = ca.issue("mallory-user", ou=GROUP)  # clientAuth, as the lab's users
    lab, _ = _lab(ca, user, AuthMethod.HYBRID_INIT_RSA)
    c = lab.add_client(auth="hybrid", pki=gateway_check)
    c.sa.initiate(lab.now)
    lab.run()
    assert not c.sa.established
    failed = [e for e in c.events if isinstance(e, ev.NegotiationFailed)]
    assert [f.error for f in failed] == ["certificate_refused"]
    assert "(not_a_server:" in failed[0].detail
