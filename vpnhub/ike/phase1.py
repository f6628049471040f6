"""What Aggressive and Main Mode share: proposals, vendor IDs, NAT-D, keys, IDs.

strongSwan keeps this in `phase1.c`; the two modes call these helpers.
"""

from __future__ import annotations

import functools
import ipaddress

from vpnhub.crypto.cipher import ike_cipher
from vpnhub.crypto.dh import DHKeyPair, ModpGroup, ModpKeyPair, dh_group
from vpnhub.crypto.errors import CryptoError
from vpnhub.crypto.keys import (
    derive_skeyids,
    expand_key,
    hash_i,
    hash_r,
    hashes_equal,
    natd_hash,
    phase1_iv,
    skeyid_psk,
    skeyid_sig,
)
from vpnhub.crypto.prf import hash_alg
from vpnhub.crypto.suites import ike_suite_name
from vpnhub.ike import events as ev
from vpnhub.ike.dhjob import DhOffload, SharedSecretJob
from vpnhub.ike.errors import IkeError
from vpnhub.ike.lifetime import shorter_lifetime
from vpnhub.ike.policy import P1Suite, decode_p1, encode_p1
from vpnhub.ike.state import Role, SaState, State
from vpnhub.ike.transport import Transport
from vpnhub.text import printable
from vpnhub.wire import vendor
from vpnhub.wire.constants import AuthMethod, IdType, NotifyType, PayloadType, ProtocolId
from vpnhub.wire.payloads import (
    HashPayload,
    IDPayload,
    KEPayload,
    NatDPayload,
    NoncePayload,
    Payload,
    Proposal,
    SAPayload,
    VendorIDPayload,
    payload_body,
)

NONCE_LEN = 32
# issue 14 (ike.sigauth): both ends sign (RFC 2409 5.1, XAUTH-06 5), or only the
# responder (draft-ietf-ipsra-hybrid-auth-05 3.2); either way SKEYID is the signature one
RSA_METHODS = frozenset({AuthMethod.RSA_SIG, AuthMethod.XAUTH_INIT_RSA})
HYBRID_METHODS = frozenset({AuthMethod.HYBRID_INIT_RSA})
# Preference when the peer announces several NAT-T versions: the RFC first,
# then the drafts that float to 4500 (draft-00/01 never float, RFC 3947 4).
NATT_PREFERENCE = ("RFC 3947", "draft-03", "draft-02N", "draft-02")


def first(payloads: list[Payload], cls: type[Payload]) -> Payload | None:
    for p in payloads:
        if isinstance(p, cls):
            return p
    return None


def require(payloads: list[Payload], cls: type[Payload], what: str) -> Payload:
    p = first(payloads, cls)
    if p is None:
        raise IkeError("missing_payload", f"message lacks the {what} payload",
                       NotifyType.PAYLOAD_MALFORMED)
    return p


# ---------------------------------------------------------------- proposals
def auth_methods(sa: SaState) -> tuple[int, ...]:
    """What the responder accepts: XAUTH over PSK for remote access (vpnc needs 65001),
    or what the group of the ID allows (issue 14: certificates, ike.sigauth)."""
    pick = sa.config.auth_methods_for
    if pick is not None and sa.role is Role.RESPONDER:
        return pick(sa.p1.auth_id)
    if sa.config.xauth:
        return (AuthMethod.XAUTH_INIT_PSK,)
    return (AuthMethod.PSK,)


def choose_proposal(sa: SaState, sap: SAPayload) -> tuple[Proposal, P1Suite]:
    """Responder: the first acceptable transform of the initiator, echoed unchanged.

    vpnc wants exactly one proposal with one transform back (interop README).
    """
    reasons: list[str] = []
    for prop in sap.proposals:
        if prop.protocol_id != ProtocolId.ISAKMP:
            continue
        for t in prop.transforms:
            suite = decode_p1(t)
            if suite is None:
                reasons.append(f"transform {t.number}: malformed attributes")
                continue
            why = sa.config.policy.accept_p1(suite, auth_methods(sa))
            if why is None:
                chosen = Proposal(prop.number, prop.protocol_id, prop.spi, [t])
                return chosen, suite
            reasons.append(why)
    detail = "no acceptable phase 1 proposal"
    if reasons:
        detail += " (" + "; ".join(sorted(set(reasons))[:6]) + ")"
    raise IkeError("no_proposal_chosen", detail, NotifyType.NO_PROPOSAL_CHOSEN)


def initiator_auth(sa: SaState) -> int:
    """The method an initiator offers: PSK (+XAUTH), or with certificates (issue 14)."""
    if sa.config.auth == "hybrid":
        return AuthMethod.HYBRID_INIT_RSA
    if sa.config.auth == "rsa":
        return AuthMethod.XAUTH_INIT_RSA if sa.config.xauth else AuthMethod.RSA_SIG
    return AuthMethod.XAUTH_INIT_PSK if sa.config.xauth else AuthMethod.PSK


def our_sa_payload(sa: SaState, auth: int) -> SAPayload:
    return our_sa(sa, auth)[0]


def our_sa(sa: SaState, auth: int) -> tuple[SAPayload, bytes]:
    """Our phase 1 SA payload (one proposal, a transform per suite) and its body, SAi_b
    of RFC 2409 section 5. Both are shared by every SA with the same offers and never
    changed: an initiator proposes the same in every exchange."""
    return _sa_of(tuple(sa.config.policy.p1_offers(auth)))


@functools.lru_cache(maxsize=64)
def _sa_of(offers: tuple[P1Suite, ...]) -> tuple[SAPayload, bytes]:
    transforms = [encode_p1(i + 1, s) for i, s in enumerate(offers)]
    sap = SAPayload([Proposal(1, ProtocolId.ISAKMP, b"", transforms)])
    return sap, sap.encode_body()


def accept_initiator_choice(sa: SaState, sap: SAPayload) -> P1Suite:
    """Initiator: the responder must pick one of ours."""
    if len(sap.proposals) != 1 or len(sap.proposals[0].transforms) != 1:
        raise IkeError("bad_proposal_syntax", "responder returned more than one transform",
                       NotifyType.BAD_PROPOSAL_SYNTAX)
    suite = decode_p1(sap.proposals[0].transforms[0])
    offered = sa.config.policy.p1_offers(initiator_auth(sa))
    if suite is None or not any(_same_suite(suite, o) for o in offered):
        raise IkeError("no_proposal_chosen", "responder chose a transform we did not offer",
                       NotifyType.NO_PROPOSAL_CHOSEN)
    return suite


def _same_suite(a: P1Suite, b: P1Suite) -> bool:
    return (a.encr, a.key_length, a.hash, a.group, a.auth) == (
        b.encr, b.key_length, b.hash, b.group, b.auth)


def set_suite(sa: SaState, suite: P1Suite) -> None:
    try:
        sa.hash = hash_alg(suite.hash)
        sa.cipher = ike_cipher(suite.encr, suite.key_length or None)
    except CryptoError as e:
        raise IkeError("no_proposal_chosen", str(e), NotifyType.NO_PROPOSAL_CHOSEN) from e
    sa.suite = suite
    ours = sa.config.policy.ike_lifetime
    sa.lifetime = shorter_lifetime(suite.lifetime, ours)


# ---------------------------------------------------------------- vendor IDs
def read_vendor_ids(sa: SaState, payloads: list[Payload]) -> None:
    """Remember what the peer can do, and log each vendor ID by name."""
    natt: set[str] = set()
    seen = sa.peer_vendor_ids
    for p in payloads:
        if not isinstance(p, VendorIDPayload):
            continue
        data = p.data
        name = vendor.identify(data) or f"unknown ({data[:16].hex()})"
        if name in seen:  # Aggressive Mode message 3 repeats some
            continue
        seen.append(name)
        if sa.config.log_severity >= 7:  # ~9 per login: no line built that nobody keeps
            sa.log("IKEDBG", 7, f"received vendor ID: {name}")
        label = _NATT_LABELS.get(data)
        if label is not None:
            natt.add(label)
        elif data == vendor.VendorId.XAUTH:
            sa.peer_xauth = True
        elif data == vendor.VendorId.DPD:
            sa.peer_dpd = True
        elif data.startswith(_UNITY_PREFIX):
            sa.peer_unity = True
        elif data[:16] == vendor.VendorId.CISCO_FRAGMENTATION:
            sa.peer_frag = True
        elif data in (vendor.VendorId.CISCO_CLIENT_MSG3, vendor.VendorId.CISCO_VPN3000_CLIENT):
            sa.peer_cisco_client = True
    if natt:
        for label in NATT_PREFERENCE:
            if label in natt:
                sa.p1.peer_natt = label
                break


def _variant_label(variant: object) -> str:
    name = getattr(variant, "name", str(variant))
    return {
        "RFC3947": "RFC 3947",
        "DRAFT_03": "draft-03",
        "DRAFT_02N": "draft-02N",
        "DRAFT_02": "draft-02",
        "DRAFT_01": "draft-01",
        "DRAFT_00": "draft-00",
    }.get(name, name)


# each NAT-T vendor ID's label, made once (the peer's ~4 of them are read per login)
_NATT_LABELS: dict[bytes, str] = {vid: _variant_label(v) for vid, v in vendor.NATT_VIDS.items()}
# Cisco Unity: MD5("CISCO-UNITY") cut to 14 bytes, then a version the peer chooses
_UNITY_PREFIX = vendor.VendorId.CISCO_UNITY[:14]

_NATT_VID = {
    "RFC 3947": "NAT_T_RFC3947",
    "draft-03": "NAT_T_DRAFT_03",
    "draft-02N": "NAT_T_DRAFT_02N",
    "draft-02": "NAT_T_DRAFT_02",
}


def our_vendor_ids(sa: SaState) -> list[Payload]:
    """Initiator: everything we speak. Responder: what matches the peer's list."""
    out: list[Payload] = []
    responder = sa.role is Role.RESPONDER
    if sa.config.xauth:
        out.append(VendorIDPayload(vendor.VendorId.XAUTH))
    if sa.config.dpd:
        out.append(VendorIDPayload(vendor.VendorId.DPD))
    if sa.config.unity and (not responder or sa.peer_unity):
        out.append(VendorIDPayload(vendor.VendorId.CISCO_UNITY))
    if sa.config.natt:
        if responder:
            label = sa.p1.peer_natt
            if label:
                out.append(VendorIDPayload(getattr(vendor.VendorId, _NATT_VID[label])))
        else:
            out += [VendorIDPayload(getattr(vendor.VendorId, _NATT_VID[v]))
                    for v in sa.config.natt_versions if v in _NATT_VID]
    if sa.config.fragmentation and (not responder or sa.peer_frag):
        out.append(VendorIDPayload(vendor.VendorId.CISCO_FRAGMENTATION))
    out.append(VendorIDPayload(vendor.VendorId.VPNHUB))
    out += [VendorIDPayload(v) for v in sa.config.extra_vendor_ids]
    return out


def settle_natt_variant(sa: SaState, peer_payloads: list[Payload]) -> None:
    """Both ends announced NAT-T: settle on the version (RFC 3947 section 3.1)."""
    label = sa.p1.peer_natt
    if not sa.config.natt or not label:
        sa.natt_variant = ""
        return
    sa.natt_variant = label
    sa.natd_type = PayloadType.NAT_D if label == "RFC 3947" else PayloadType.NAT_D_DRAFT
    if sa.logs(7):  # a debug line: not formatted for nobody (issue 13)
        sa.log("NATT", 7, f"NAT-Traversal version agreed: {label}")


# ---------------------------------------------------------------------- NAT-D
def natd_payloads(sa: SaState) -> list[Payload]:
    """RFC 3947 3.2: the first hashes the destination, the next our own address."""
    assert sa.hash is not None
    remote = natd_hash(sa.hash, sa.icookie, sa.rcookie, sa.remote[0], sa.remote[1])
    local = natd_hash(sa.hash, sa.icookie, sa.rcookie, sa.config.local_address, sa.local_port)
    return [NatDPayload(remote, sa.natd_type), NatDPayload(local, sa.natd_type)]


def detect_nat(sa: SaState, payloads: list[Payload]) -> bool:
    """Compare the peer's NAT-D hashes with ours; False if none were sent.

    Several candidate ports are accepted for each side because clients hash
    the port they started on even after floating to 4500 (vpnc, pitfall 10).
    """
    natd = [p for p in payloads if isinstance(p, NatDPayload)]
    if not natd or sa.hash is None:
        return False
    h = sa.hash

    def hashes(ip: str, ports: set[int]) -> set[bytes]:
        return {natd_hash(h, sa.icookie, sa.rcookie, ip, port) for port in ports}

    ours = hashes(sa.config.local_address, {sa.local_port, 500, 4500})
    theirs = hashes(sa.remote[0], {sa.remote[1], sa.first_remote[1]}) | hashes(
        sa.first_remote[0], {sa.first_remote[1]})
    sa.local_behind_nat = natd[0].data not in ours
    sa.remote_behind_nat = not any(p.data in theirs for p in natd[1:])
    if sa.logs(5):
        sa.log("NATT", 5, f"NAT detection: this end {'IS' if sa.local_behind_nat else 'is NOT'}"
               f" behind a NAT device; the peer {'IS' if sa.remote_behind_nat else 'is NOT'}"
               " behind a NAT device")
    return True


def conclude_natt(sa: SaState) -> None:
    """Decide whether ESP goes in UDP 4500, and tell the driver (RFC 3947 4, 5)."""
    nat = sa.local_behind_nat or sa.remote_behind_nat
    sa.natt_in_use = bool(sa.natt_variant) and (nat or sa.config.force_natt)
    if sa.natt_in_use:
        sa.log("NATT", 4, f"NAT-Traversal successfully negotiated ({sa.natt_variant}):"
               " IPsec/NAT-T over UDP 4500")
    sa.emit(ev.NatDetected(sa.local_behind_nat, sa.remote_behind_nat, sa.natt_in_use,
                           sa.natt_variant or "none"))


def float_to_natt_port(sa: SaState) -> None:
    """Initiator: once NAT-T is in use, this message and every later one go from and to
    UDP 4500 (RFC 3947 section 4)."""
    if sa.natt_in_use:
        sa.local_port, sa.transport = 4500, Transport.NATT
        sa.remote = (sa.remote[0], 4500)
        sa.log("NATT", 5, "floating to UDP port 4500 (RFC 3947 section 4)")


def diagnose_nat_without_natt(sa: SaState, had_natd: bool) -> None:
    """The source document's failure: a NATed peer, and NAT-T not negotiated.

    With NAT-T off we send no NAT-T vendor ID, so a client never sends NAT-D;
    the tell-tale is then its source port: a PAT rewrote port 500 (as the PIX
    did, `show xlate` 10.10.10.2:500 -> :4). A peer that sent NAT-D shows it directly.
    """
    if sa.natt_in_use or sa.config.transport == "tcp":
        return
    # Only a responder can read a NAT from the port: the initiator chose its peer's.
    nat_by_port = sa.role is Role.RESPONDER and sa.first_remote[1] != 500
    if not (sa.remote_behind_nat or sa.local_behind_nat or nat_by_port):
        return
    peer_can = sa.p1.peer_natt
    if sa.role is Role.RESPONDER and not sa.config.natt:
        why = ("NAT-T is disabled on this concentrator ([nat_transparency] ipsec_over_natt ="
               " false) but the peer")
        why += (f" {sa.remote[0]}:{sa.remote[1]} is behind a NAT device"
                f" (its IKE source port is {sa.first_remote[1]}, not 500)" if nat_by_port
                else f" {sa.remote[0]}:{sa.remote[1]} is behind a NAT device (NAT-D)")
        why += ("; the tunnel will come up but no data will pass (ESP cannot cross the PAT)."
                " Set ipsec_over_natt = true")
        if peer_can:
            why += f" (the client supports NAT-T: {peer_can})"
    elif sa.role is Role.RESPONDER:
        why = (f"the peer {sa.remote[0]}:{sa.remote[1]} is behind a NAT device (its IKE source"
               f" port is {sa.first_remote[1]}, not 500) but did not offer NAT-T: the tunnel"
               " will come up but no data will pass. Enable transparent tunneling"
               " (EnableNat=1 / IPsec over UDP) on the client")
    elif sa.role is Role.INITIATOR:
        why = ("this end IS behind a NAT device but the concentrator did not offer NAT-T:"
               " the tunnel would come up but no data would pass. Enable IPsec over NAT-T"
               " on the concentrator (or transparent tunneling on this client)")
        if not sa.config.natt:
            why = ("transparent tunneling is off on this client but a NAT device is in the"
                   " path: ESP cannot cross it. Enable transparent tunneling (EnableNat=1)")
    else:
        return
    if had_natd or nat_by_port:
        sa.p1.nat_without_natt = why
        sa.log("NATT", 3, why)
        sa.emit(ev.NatTraversalRefused(why))


# ------------------------------------------------------------------ keys
def new_dh(sa: SaState, group: int) -> DHKeyPair:
    # the endpoint lends a pair computed ahead (ike.dhpool) or, under a flood, a
    # briefly shared one (ike.dhreuse)
    source, sa.p1.dh_source = sa.p1.dh_source, None
    try:
        kp = source(group) if source is not None else dh_group(group).generate()
    except CryptoError as e:
        raise IkeError("no_proposal_chosen", f"DH group {group}: {e}",
                       NotifyType.NO_PROPOSAL_CHOSEN) from e
    sa.p1.dh = kp
    return kp


def compute_keys(sa: SaState, peer_ke: KEPayload) -> None:
    """SKEYID for pre-shared keys and the rest of RFC 2409 section 5 / appendix B."""
    assert sa.hash is not None and sa.cipher is not None and sa.suite is not None
    kp = sa.p1.dh
    assert kp is not None
    sa.p1.dh = None  # the private value is not needed any more after this
    if sa.role is Role.INITIATOR:
        sa.dh_public_i, sa.dh_public_r = kp.public, peer_ke.data
    else:
        sa.dh_public_i, sa.dh_public_r = peer_ke.data, kp.public
    offload = sa.endpoint_marks.dh_offload
    if offload is not None and isinstance(kp, ModpKeyPair) and sa.suite.auth not in \
            RSA_METHODS and sa.suite.auth not in HYBRID_METHODS:
        _defer_keys(sa, kp, peer_ke, offload)
        return
    g_xy = _shared_secret(kp, peer_ke.data)
    sa.skeyid = _skeyid(sa, g_xy)
    # keys.derive_phase1, with SKEYID keyed once for its three prfs and HASH_I, HASH_R
    sa.skeyid_d, sa.skeyid_a, sa.skeyid_e = derive_skeyids(
        sa.hash, sa.keyed(sa.skeyid), g_xy, sa.icookie, sa.rcookie)
    sa.enc_key = expand_key(sa.hash, sa.skeyid_e, sa.cipher.key_len)
    sa.p1_iv = phase1_iv(sa.hash, sa.dh_public_i, sa.dh_public_r, sa.cipher.block_size)


def _shared_secret(kp: DHKeyPair, peer_public: bytes) -> bytes:
    try:
        return kp.shared_secret(peer_public)
    except CryptoError as e:
        raise IkeError("invalid_ke", f"peer's KE payload: {e}",
                       NotifyType.INVALID_KEY_INFORMATION) from e


def _defer_keys(sa: SaState, kp: ModpKeyPair, peer_ke: KEPayload, offload: DhOffload) -> None:
    """Pre-shared key: SKEYID, HASH_R and the phase 1 IV now, g^xy on another thread
    (ike.dhjob); SKEYID_d/a/e and the key when the first encrypted message needs them."""
    assert sa.hash is not None and sa.cipher is not None
    group = kp.group
    assert isinstance(group, ModpGroup)
    try:  # refused now, in answer to the message that carried it
        group.check_public(peer_ke.data)
    except CryptoError as e:
        raise IkeError("invalid_ke", f"peer's KE payload: {e}",
                       NotifyType.INVALID_KEY_INFORMATION) from e
    sa.skeyid = _skeyid(sa, b"")  # prf(pre-shared-key, Ni_b | Nr_b): no g^xy in it
    sa.p1_iv = phase1_iv(sa.hash, sa.dh_public_i, sa.dh_public_r, sa.cipher.block_size)
    job = SharedSecretJob(kp, peer_ke.data, sa.icookie + sa.rcookie)
    h, cipher, cky_i, cky_r = sa.hash, sa.cipher, sa.icookie, sa.rcookie
    skeyid = sa.keyed(sa.skeyid)  # HASH_R, these three prfs and HASH_I

    def derive() -> tuple[bytes, bytes, bytes, bytes]:
        d, a, e = derive_skeyids(h, skeyid, job.result(), cky_i, cky_r)
        return d, a, e, expand_key(h, e, cipher.key_len)

    sa.defer_keys(derive)
    offload(job)


def _skeyid(sa: SaState, g_xy: bytes) -> bytes:
    """RFC 2409 5: prf(pre-shared-key, Ni_b | Nr_b), or prf(Ni_b | Nr_b, g^xy) for
    signatures (and hybrid, whose initiator has no key of its own)."""
    assert sa.hash is not None and sa.suite is not None
    if sa.suite.auth in RSA_METHODS or sa.suite.auth in HYBRID_METHODS:
        return skeyid_sig(sa.hash, sa.nonce_i, sa.nonce_r, g_xy)
    if sa.psk is None:
        raise IkeError("no_psk", "no pre-shared key for this peer",
                       NotifyType.AUTHENTICATION_FAILED)
    return skeyid_psk(sa.hash, sa.psk.reveal(), sa.nonce_i, sa.nonce_r)


def auth_mode(method: int) -> str:
    """The name the manager and `vpnhub sessions` show: psk, rsa or hybrid."""
    if method in RSA_METHODS:
        return "rsa"
    return "hybrid" if method in HYBRID_METHODS else "psk"


def hash_of(sa: SaState, *, initiator: bool, id_body: bytes) -> bytes:
    assert sa.hash is not None
    f = hash_i if initiator else hash_r
    return f(sa.hash, sa.keyed(sa.skeyid), sa.dh_public_i, sa.dh_public_r, sa.icookie, sa.rcookie,
             sa.sai_b, id_body)


def check_hash(sa: SaState, payloads: list[Payload], *, initiator: bool, id_body: bytes) -> None:
    """HASH_I or HASH_R must match (constant time); a mismatch is a wrong PSK."""
    hp = require(payloads, HashPayload, "HASH")
    assert isinstance(hp, HashPayload)
    if not hashes_equal(hash_of(sa, initiator=initiator, id_body=id_body), hp.data):
        raise IkeError("hash_mismatch", "phase 1 hash check failed: the pre-shared key"
                       " (group password) does not match", NotifyType.AUTHENTICATION_FAILED,
                       send_notify=False)


# ---------------------------------------------------------------------- IDs
def our_id(sa: SaState) -> IDPayload:
    """Initiator: the group name as KEY_ID (Cisco clients, vpnc). Responder:
    our public address as ID_IPV4_ADDR, as Cisco concentrators do."""
    if sa.role is Role.INITIATOR and sa.config.group_name:
        return IDPayload(IdType.KEY_ID, sa.config.group_name.encode(), 17, 500)
    return IDPayload(IdType.IPV4_ADDR, _packed(sa.config.local_address), 17, 500)


@functools.lru_cache(maxsize=16)
def _packed(address: str) -> bytes:
    """Our own address (configuration, never a peer's), parsed once, not per SA."""
    return ipaddress.IPv4Address(address).packed


def describe_id(id_type: int, data: bytes) -> str:
    if id_type in (IdType.KEY_ID, IdType.FQDN, IdType.USER_FQDN):
        return printable(data)  # the group name: peer text, shown and logged
    if id_type == IdType.IPV4_ADDR and len(data) == 4:
        return str(ipaddress.IPv4Address(data))
    return data.hex()


def remember_peer_id(sa: SaState, idp: IDPayload) -> None:
    sa.peer_id_type, sa.peer_id_data = idp.id_type, idp.data


def nonce(sa: SaState) -> NoncePayload:
    return NoncePayload(sa.config.rng(NONCE_LEN))


def check_nonce(p: NoncePayload) -> None:
    # RFC 2409 5: nonces of 8 to 256 bytes
    if not 8 <= len(p.data) <= 256:
        raise IkeError("bad_nonce", f"nonce of {len(p.data)} bytes",
                       NotifyType.PAYLOAD_MALFORMED)


# the phase 1 authentication as the Cisco client's log names it
_AUTH_NAMES: dict[int, str] = {AuthMethod.PSK: "Preshared Keys",
                               AuthMethod.XAUTH_INIT_PSK: "Preshared Keys-XAUTH",
                               AuthMethod.RSA_SIG: "RSA Digital Certificate",
                               AuthMethod.XAUTH_INIT_RSA: "RSA Digital Certificate-XAUTH",
                               AuthMethod.HYBRID_INIT_RSA: "RSA Hybrid-XAUTH"}


def established(sa: SaState, mode: str, now: float) -> None:
    assert sa.suite is not None
    sa.state = State.ESTABLISHED
    sa.established_at = now
    sa.p1_last_block = sa.p1_iv
    sa.answered(0)
    if sa.config.dpd and sa.peer_dpd:
        sa.dpd_next_at = now + sa.config.dpd_interval
    s = sa.suite
    name = ike_suite_name(s.encr, s.key_length, s.hash, s.group)
    parts = name.split("/")
    auth = _AUTH_NAMES.get(s.auth, str(s.auth))
    peer_id = describe_id(sa.peer_id_type, sa.peer_id_data)
    if sa.logs(5):
        sa.log("IKE", 5, f"IKE SA established ({mode} Mode, {name}, {auth},"
               f" lifetime {sa.lifetime} s) with {peer_id} at {sa.remote[0]}:{sa.remote[1]}")
    sa.emit(ev.Phase1Established(
        encryption=parts[0], hash=parts[1] if len(parts) > 1 else "",
        group=parts[2] if len(parts) > 2 else "", auth_method=auth, mode=mode,
        lifetime=sa.lifetime, peer_id=peer_id,
        peer_vendor_ids=tuple(sa.peer_vendor_ids), auth_mode=auth_mode(s.auth),
        cert_subject=sa.p1.peer_key.subject if sa.p1.peer_key else "",
        cert_group=sa.p1.cert_group))


def body(p: Payload) -> bytes:
    return payload_body(p)
