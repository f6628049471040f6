"""Main Mode (identity protection) with pre-shared keys (RFC 2409 section 5), and
as responder with RSA signatures or hybrid authentication (ike/sigauth.py, issue 14).

    Initiator                        Responder
    HDR, SA, VID...              -->
                                 <-- HDR, SA, VID...
    HDR, KE, Ni, NAT-D, NAT-D    -->
                                 <-- HDR, KE, Nr, NAT-D, NAT-D
    HDR*, IDii, HASH_I           -->  (from UDP 4500 when a NAT was found, RFC 3947 4)
                                 <-- HDR*, IDir, HASH_R

With a pre-shared key the responder must pick the key before it sees the
(encrypted) identity, so it can only look it up by the peer's address
(RFC 2409 5.4): the PSK lookup is called with id type 0.
"""

from __future__ import annotations

from vpnhub.ike import phase1, sigauth, transaction
from vpnhub.ike.errors import IkeError
from vpnhub.ike.lifetime import read_responder_lifetime, responder_lifetime
from vpnhub.ike.state import Address, SaState, State
from vpnhub.wire.constants import ExchangeType, NotifyType, ProtocolId
from vpnhub.wire.message import Message
from vpnhub.wire.payloads import (
    HashPayload,
    IDPayload,
    KEPayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    SAPayload,
    encode_payloads,
)

MM = ExchangeType.IDENTITY_PROTECTION


# ----------------------------------------------------------------- initiator
def initiate(sa: SaState, now: float) -> None:
    sap = phase1.our_sa_payload(sa, phase1.initiator_auth(sa))
    sa.sai_b = encode_payloads([sap])[4:]
    sa.send(MM, [sap, *phase1.our_vendor_ids(sa)], now=now)
    sa.state = State.MM_I_SENT1
    sa.log("IKE", 5, f"initiating Main Mode to {sa.remote[0]}:{sa.remote[1]}")


def initiator_2(sa: SaState, msg: Message, remote: Address, local_port: int, now: float) -> None:
    p = msg.payloads
    sap = phase1.require(p, SAPayload, "SA")
    assert isinstance(sap, SAPayload)
    sa.rcookie = msg.rcookie
    suite = phase1.accept_initiator_choice(sa, sap)
    phase1.set_suite(sa, suite)
    phase1.read_vendor_ids(sa, p)
    phase1.settle_natt_variant(sa, p)
    read_responder_lifetime(sa, p)
    kp = phase1.new_dh(sa, suite.group)
    n = phase1.nonce(sa)
    sa.nonce_i = n.data
    out: list[Payload] = [KEPayload(kp.public), n, *sigauth.cert_requests(sa)]
    if sa.natt_variant:
        out += phase1.natd_payloads(sa)
    sa.answered(0)
    sa.send(MM, out, now=now)
    sa.state = State.MM_I_SENT3


def initiator_4(sa: SaState, msg: Message, remote: Address, local_port: int, now: float) -> None:
    p = msg.payloads
    ke = phase1.require(p, KEPayload, "KE")
    nr = phase1.require(p, NoncePayload, "NONCE")
    assert isinstance(ke, KEPayload) and isinstance(nr, NoncePayload)
    phase1.check_nonce(nr)
    sa.nonce_r = nr.data
    phase1.compute_keys(sa, ke)
    had_natd = phase1.detect_nat(sa, p)
    phase1.conclude_natt(sa)
    phase1.diagnose_nat_without_natt(sa, had_natd)
    phase1.float_to_natt_port(sa)  # message 5 already goes to 4500
    out: list[Payload]
    if sa.suite is not None and sigauth.uses_signatures(sa.suite.auth):
        idp = sigauth.initiator_id(sa)
        out = [idp, *sigauth.initiator_proof(sa, phase1.body(idp))]
    else:
        idp = phase1.our_id(sa)
        out = [idp, HashPayload(phase1.hash_of(sa, initiator=True, id_body=phase1.body(idp)))]
    sa.p1.idii_b = phase1.body(idp)
    if sa.config.send_initial_contact:
        out.append(NotifyPayload(NotifyType.INITIAL_CONTACT, ProtocolId.ISAKMP,
                                 sa.icookie + sa.rcookie))
    sa.answered(0)
    sa.send(MM, out, encrypt=True, now=now)
    sa.state = State.MM_I_SENT5


def initiator_6(sa: SaState, msg: Message, remote: Address, local_port: int, now: float) -> None:
    p = msg.payloads
    idr = phase1.require(p, IDPayload, "ID")
    assert isinstance(idr, IDPayload) and sa.suite is not None
    if sigauth.uses_signatures(sa.suite.auth):
        sigauth.check_responder_proof(sa, p, idr)
    else:
        phase1.check_hash(sa, p, initiator=False, id_body=phase1.body(idr))
    sa.commit_iv()
    phase1.remember_peer_id(sa, idr)
    sa.answered(0)
    phase1.established(sa, "Main", now)


# ----------------------------------------------------------------- responder
def responder_1(sa: SaState, msg: Message, remote: Address, local_port: int, now: float) -> None:
    p = msg.payloads
    sap = phase1.require(p, SAPayload, "SA")
    assert isinstance(sap, SAPayload)
    phase1.read_vendor_ids(sa, p)
    chosen, suite = phase1.choose_proposal(sa, sap)
    phase1.set_suite(sa, suite)
    phase1.settle_natt_variant(sa, p)
    sa.sai_b = phase1.body(sap)
    if sigauth.uses_signatures(suite.auth):  # no key to pick: certificates (issue 14)
        sigauth.credentials(sa)
    else:
        _lookup_psk(sa, remote)
    out: list[Payload] = [SAPayload([chosen]), *phase1.our_vendor_ids(sa)]
    if suite.lifetime > sa.lifetime:
        out.append(responder_lifetime(sa.lifetime, ProtocolId.ISAKMP, sa.icookie + sa.rcookie))
    sa.send(MM, out, now=now)
    sa.state = State.MM_R_SENT2


def _lookup_psk(sa: SaState, remote: Address) -> None:
    lookup = sa.config.psk_lookup
    sa.psk = lookup(0, b"", remote) if lookup else sa.config.psk
    if sa.psk is None:
        raise IkeError("unknown_peer", f"no pre-shared key for Main Mode peer {remote[0]}",
                       NotifyType.AUTHENTICATION_FAILED)


def responder_3(sa: SaState, msg: Message, remote: Address, local_port: int, now: float) -> None:
    p = msg.payloads
    ke = phase1.require(p, KEPayload, "KE")
    ni = phase1.require(p, NoncePayload, "NONCE")
    assert isinstance(ke, KEPayload) and isinstance(ni, NoncePayload)
    phase1.check_nonce(ni)
    assert sa.suite is not None
    sa.nonce_i = ni.data
    kp = phase1.new_dh(sa, sa.suite.group)
    nr = phase1.nonce(sa)
    sa.nonce_r = nr.data
    phase1.compute_keys(sa, ke)
    sa.p1.natd3 = [x for x in p if x.payload_type in (20, 130)]
    out: list[Payload] = [KEPayload(kp.public), nr, *sigauth.cert_requests(sa)]
    if sa.natt_variant:
        out += phase1.natd_payloads(sa)
    sa.send(MM, out, now=now)
    sa.state = State.MM_R_SENT4


def responder_5(sa: SaState, msg: Message, remote: Address, local_port: int, now: float) -> None:
    p = msg.payloads
    idi = phase1.require(p, IDPayload, "ID")
    assert isinstance(idi, IDPayload) and sa.suite is not None
    signatures = sigauth.uses_signatures(sa.suite.auth)
    if signatures:
        sigauth.check_initiator_proof(sa, p, idi.id_type, idi.data, phase1.body(idi))
    else:
        phase1.check_hash(sa, p, initiator=True, id_body=phase1.body(idi))
    sa.commit_iv()
    phase1.remember_peer_id(sa, idi)
    if remote != sa.remote or local_port != sa.local_port:
        sa.remote, sa.local_port, sa.transport = remote, local_port, sa.rx_transport
    natd, sa.p1.natd3 = sa.p1.natd3, []
    had_natd = phase1.detect_nat(sa, natd)
    phase1.conclude_natt(sa)
    phase1.diagnose_nat_without_natt(sa, had_natd)
    out: list[Payload]
    if signatures:
        idr = sigauth.our_id(sa)
        out = [idr, *sigauth.our_proof(sa, phase1.body(idr))]
    else:
        idr = phase1.our_id(sa)
        out = [idr, HashPayload(phase1.hash_of(sa, initiator=False, id_body=phase1.body(idr)))]
    sa.send(MM, out, encrypt=True, expect_reply=False, now=now)
    phase1.established(sa, "Main", now)
    transaction.after_phase1(sa, now)
