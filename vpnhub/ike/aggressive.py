"""Aggressive Mode with pre-shared keys (RFC 2409 section 5.4), both halves; as
responder also hybrid and RSA signatures (ike/sigauth.py, issue 14).

    Initiator                          Responder
    HDR, SA, KE, Ni, IDii, VID...  -->
                                   <-- HDR, SA, KE, Nr, IDir, VID..., NAT-D, NAT-D, HASH_R
    HDR*, HASH_I, N(INITIAL-CONTACT), NAT-D, NAT-D  -->   (on UDP 4500 once NAT is seen)

Cisco clients and vpnc send the group name as ID_KEY_ID and expect exactly
one proposal with one transform back, XAUTHInitPreShared (65001), and no
notify but RESPONDER-LIFETIME in message 2 (interop README).
"""

from __future__ import annotations

import dataclasses

from vpnhub.ike import phase1, sigauth, transaction
from vpnhub.ike.lifetime import read_responder_lifetime, responder_lifetime
from vpnhub.ike.standin import stand_in_psk
from vpnhub.ike.state import Address, SaState, State
from vpnhub.secret import Secret
from vpnhub.wire import vendor
from vpnhub.wire.constants import (
    ExchangeType,
    IdType,
    NotifyType,
    ProtocolId,
)
from vpnhub.wire.message import Message
from vpnhub.wire.payloads import (
    HashPayload,
    IDPayload,
    KEPayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    SAPayload,
    VendorIDPayload,
    encode_before,
)

AM = ExchangeType.AGGRESSIVE
# the ID types a group name comes in (Cisco clients and vpnc: KEY_ID)
_GROUP_ID_TYPES = frozenset({IdType.KEY_ID, IdType.FQDN, IdType.USER_FQDN})


# ----------------------------------------------------------------- initiator
def initiate(sa: SaState, now: float) -> None:
    sap, sa.sai_b = phase1.our_sa(sa, phase1.initiator_auth(sa))
    kp = phase1.new_dh(sa, sa.config.policy.dh_group)
    n = phase1.nonce(sa)
    idp = phase1.our_id(sa) if sa.config.auth == "psk" else sigauth.initiator_id(sa)
    sa.nonce_i = n.data
    sa.p1.idii_b = idp.encode_body()
    rest: list[Payload] = [KEPayload(kp.public), n, idp, *sigauth.cert_requests(sa),
                           *phase1.our_vendor_ids(sa)]
    # the SA payload as encoded once for every SA with these offers (phase1.our_sa)
    sa.send(AM, [sap, *rest], now=now, body=encode_before(sap, sa.sai_b, rest))
    sa.state = State.AM_I_SENT1
    if sa.logs(5):
        sa.log("IKE", 5, f"initiating Aggressive Mode to {sa.remote[0]}:{sa.remote[1]}"
               f" as group {sa.config.group_name!r}")


def initiator_2(sa: SaState, msg: Message, remote: Address, local_port: int, now: float) -> None:
    p = msg.payloads
    sap = phase1.require(p, SAPayload, "SA")
    ke = phase1.require(p, KEPayload, "KE")
    nr = phase1.require(p, NoncePayload, "NONCE")
    idr = phase1.require(p, IDPayload, "ID")
    assert isinstance(sap, SAPayload) and isinstance(ke, KEPayload)
    assert isinstance(nr, NoncePayload) and isinstance(idr, IDPayload)
    phase1.check_nonce(nr)
    sa.rcookie = msg.rcookie
    suite = phase1.accept_initiator_choice(sa, sap)
    phase1.set_suite(sa, suite)
    phase1.read_vendor_ids(sa, p)
    phase1.settle_natt_variant(sa, p)
    read_responder_lifetime(sa, p)
    sa.nonce_r = nr.data
    phase1.compute_keys(sa, ke)
    signatures = sigauth.uses_signatures(suite.auth)
    if signatures:
        sigauth.check_responder_proof(sa, p, idr)
    else:
        phase1.check_hash(sa, p, initiator=False, id_body=phase1.body(idr))
    phase1.remember_peer_id(sa, idr)
    had_natd = phase1.detect_nat(sa, p)
    phase1.conclude_natt(sa)
    phase1.diagnose_nat_without_natt(sa, had_natd)
    phase1.float_to_natt_port(sa)  # message 3 already goes to 4500
    out: list[Payload]
    if signatures:
        out = sigauth.initiator_proof(sa, sa.p1.idii_b)
    else:
        out = [HashPayload(phase1.hash_of(sa, initiator=True, id_body=sa.p1.idii_b))]
    if sa.config.send_initial_contact:
        out.append(NotifyPayload(NotifyType.INITIAL_CONTACT, ProtocolId.ISAKMP,
                                 sa.icookie + sa.rcookie))
    if sa.natt_variant:
        out += phase1.natd_payloads(sa)
    if sa.config.follow_redirects:  # vpnc.c VID_UNKNOWN, sent in message 3 (issue 17)
        out.append(VendorIDPayload(vendor.VendorId.CISCO_CLIENT_MSG3))
    sa.answered(0)
    # Message 3 is the last of the exchange: no answer comes, and a lost one
    # is repaired when the responder retransmits message 2.
    sa.send(AM, out, encrypt=True, expect_reply=False, now=now)
    phase1.established(sa, "Aggressive", now)


# ----------------------------------------------------------------- responder
def responder_1(sa: SaState, msg: Message, remote: Address, local_port: int, now: float) -> None:
    p = msg.payloads
    sap = phase1.require(p, SAPayload, "SA")
    ke = phase1.require(p, KEPayload, "KE")
    ni = phase1.require(p, NoncePayload, "NONCE")
    idi = phase1.require(p, IDPayload, "ID")
    assert isinstance(sap, SAPayload) and isinstance(ke, KEPayload)
    assert isinstance(ni, NoncePayload) and isinstance(idi, IDPayload)
    phase1.check_nonce(ni)
    phase1.read_vendor_ids(sa, p)
    phase1.remember_peer_id(sa, idi)
    sa.p1.peer_id_b = phase1.body(idi)
    if sa.config.config_for_id is not None:  # e.g. a LAN-to-LAN peer known by its ID
        other = sa.config.config_for_id(idi.id_type, idi.data)
        if other is not None:
            sa.config = other
            sa.psk = other.psk
    sa.psk = _lookup_psk(sa, idi, remote)
    # the group's phase 1 methods (issue 14). A DN or an address is a certificate's
    # ID, never a group name: its group comes from the certificate (sigauth), so, as
    # in Main Mode, every group's methods (not an unknown name's stand-in set)
    sa.p1.auth_id = idi.data if idi.id_type in _GROUP_ID_TYPES else None
    if sa.config.policy_for is not None:  # the group may narrow the proposals
        group_policy = sa.config.policy_for(idi.data)
        if group_policy is not None:
            sa.config = dataclasses.replace(sa.config, policy=group_policy)
    chosen, suite = phase1.choose_proposal(sa, sap)
    phase1.set_suite(sa, suite)
    phase1.settle_natt_variant(sa, p)
    sa.nonce_i = ni.data
    sa.sai_b = phase1.body(sap)
    kp = phase1.new_dh(sa, suite.group)
    nr = phase1.nonce(sa)
    sa.nonce_r = nr.data
    phase1.compute_keys(sa, ke)
    signatures = sigauth.uses_signatures(suite.auth)
    idr = sigauth.our_id(sa) if signatures else phase1.our_id(sa)
    out: list[Payload] = [SAPayload([chosen]), KEPayload(kp.public), nr, idr,
                          *phase1.our_vendor_ids(sa)]
    if sa.natt_variant:
        out += phase1.natd_payloads(sa)  # after the SA, as vpnc requires
    if suite.lifetime > sa.lifetime:
        out.append(responder_lifetime(sa.lifetime, ProtocolId.ISAKMP, sa.icookie + sa.rcookie))
    if signatures:  # CERT and SIG_R, no hash of the group key (ike.sigauth)
        out += [*sigauth.cert_requests(sa), *sigauth.our_proof(sa, phase1.body(idr))]
    else:
        out.append(HashPayload(phase1.hash_of(sa, initiator=False, id_body=phase1.body(idr))))
    sa.send(AM, out, now=now)
    sa.state = State.AM_R_SENT2


def _lookup_psk(sa: SaState, idi: IDPayload, remote: Address) -> Secret | None:
    lookup = sa.config.psk_lookup
    psk = lookup(idi.id_type, idi.data, remote) if lookup else sa.config.psk
    keyless = sa.config.group_without_psk
    if psk is None and keyless is not None and keyless(idi.id_type, idi.data):
        # A certificate/hybrid group: known, but with no key. Its methods exclude the
        # PSK ones, so a PSK proposal gets NO-PROPOSAL-CHOSEN (choose_proposal) and a
        # signature one needs no key (RFC 2409 5); never the stand-in, whose hybrid
        # answer would fail message 3 as "unknown group"
        return None
    if psk is None:
        # Answer as a known group with a wrong key would be answered, so that
        # group names cannot be enumerated (see standin); message 3 then fails.
        sa.p1.unknown_group = phase1.describe_id(idi.id_type, idi.data)
        return stand_in_psk(bytes([idi.id_type]) + idi.data)
    return psk


def responder_3(sa: SaState, msg: Message, remote: Address, local_port: int, now: float) -> None:
    p = msg.payloads
    if not msg.flags & 1 and sa.cipher is not None:
        sa.log("IKE", 5, "Aggressive Mode message 3 arrived unencrypted (accepted, RFC 2409"
               " allows it)")
    assert sa.suite is not None
    if sigauth.uses_signatures(sa.suite.auth):
        sigauth.check_initiator_proof(sa, p, sa.peer_id_type, sa.peer_id_data,
                                      sa.p1.peer_id_b)
    else:
        phase1.check_hash(sa, p, initiator=True, id_body=sa.p1.peer_id_b)
    sa.commit_iv()
    # vpnc sends vendor IDs here too: one says "Cisco VPN client" (issue 17 decides
    # by it whether the client follows a load-balancing redirect)
    phase1.read_vendor_ids(sa, p)
    # Message 3 is authenticated: if it came from another port (the float to
    # 4500 through a PAT, RFC 3947 4), that is where the peer lives now.
    if remote != sa.remote or local_port != sa.local_port:
        if sa.logs(7):  # a debug line: not formatted for nobody (issue 13)
            sa.log("NATT", 7, f"peer floated from {sa.remote[0]}:{sa.remote[1]} to"
                   f" {remote[0]}:{remote[1]} (local port {local_port})")
        sa.remote = remote
        sa.local_port, sa.transport = local_port, sa.rx_transport
    had_natd = phase1.detect_nat(sa, p)
    phase1.conclude_natt(sa)
    phase1.diagnose_nat_without_natt(sa, had_natd)
    for n in p:
        if isinstance(n, NotifyPayload) and n.notify_type == NotifyType.INITIAL_CONTACT:
            sa.initial_contact = True
    phase1.established(sa, "Aggressive", now)
    transaction.after_phase1(sa, now)

