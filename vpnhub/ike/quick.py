"""Quick Mode (RFC 2409 section 5.5): ESP SAs in tunnel mode, with or without PFS.

    Initiator                                     Responder
    HDR*, HASH(1), SA, Ni [, KE] [, IDci, IDcr] -->
                         <-- HDR*, HASH(2), SA, Nr [, KE] [, IDci, IDcr] [, N(RESPONDER-LIFETIME)]
    HDR*, HASH(3)                               -->

vpnc wants the reply's SA right after the HASH with one proposal and one
transform. The initiator may use the new SA once it sent message 3 (RFC 2409
5.5; vpnc starts ESP 10 ms after it, strongSwan at once), so the responder
hands its inbound SA to the driver with message 2 (`ChildSAInboundReady`:
KEYMAT needs only the nonces of messages 1 and 2), and its outbound SA only
once message 3 checks out (`ChildSAEstablished`): it must not send on an SA
the initiator has not confirmed. strongSwan and libreswan do the same. A
Quick Mode whose message 3 never checks out (a wrong HASH(3), our message 2
unanswered until the retransmissions run out, the IKE SA gone) withdraws that
inbound SA (`ChildSAAbandoned`); at most `IkeConfig.max_pending_quick_modes`
wait at a time, and a message 1 under the message ID of one we answered
starts no second one.
The side behind the data (the concentrator) also rekeys children that its
peer does not rekey: vpnc never starts a rekey but answers one.
"""

from __future__ import annotations

import functools
import ipaddress

from vpnhub.crypto.dh import DHKeyPair, dh_group
from vpnhub.crypto.errors import CryptoError
from vpnhub.crypto.keys import hashes_equal, keymat, qm_hash1, qm_hash2, qm_hash3
from vpnhub.crypto.suites import esp_suite_name
from vpnhub.ike import events as ev
from vpnhub.ike import informational
from vpnhub.ike.errors import IkeError
from vpnhub.ike.lifetime import lifetime_from_notify, responder_lifetime, shorter_lifetime
from vpnhub.ike.policy import EspSuite, decode_esp, encode_esp
from vpnhub.ike.state import Address, ChildSA, Exchange, QuickScratch, Role, SaState
from vpnhub.wire.constants import (
    EncapsulationMode,
    ExchangeType,
    IdType,
    NotifyType,
    ProtocolId,
)
from vpnhub.wire.message import Message
from vpnhub.wire.payloads import (
    GENERIC_HEADER_LEN,
    HashPayload,
    IDPayload,
    KEPayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    Proposal,
    SAPayload,
    encode_before,
    encode_hashed,
    encode_payloads,
)

QM = ExchangeType.QUICK_MODE
ANY = ipaddress.IPv4Network("0.0.0.0/0")
NONCE_LEN = 20
# Initiators rekey at 85 % of the lifetime; a responder steps in at 92 % for
# peers that never rekey (vpnc), so both never start at the same moment.
REKEY_INITIATOR = 0.85
REKEY_RESPONDER = 0.92


def encapsulation(sa: SaState) -> int:
    """RFC 3947 5.1 (3 = UDP-Encapsulated-Tunnel) or the drafts' 61443."""
    if not sa.natt_in_use:
        return EncapsulationMode.TUNNEL
    if sa.natt_variant == "RFC 3947":
        return EncapsulationMode.UDP_TUNNEL
    return EncapsulationMode.UDP_TUNNEL_DRAFT


def id_for(net: ipaddress.IPv4Network) -> IDPayload:
    if net.prefixlen == 32:
        return IDPayload(IdType.IPV4_ADDR, net.network_address.packed)
    return IDPayload(IdType.IPV4_ADDR_SUBNET, net.network_address.packed + net.netmask.packed)


def network_of(idp: IDPayload) -> ipaddress.IPv4Network:
    d = idp.data
    try:
        if idp.id_type == IdType.IPV4_ADDR and len(d) == 4:
            return ipaddress.IPv4Network((d, 32))
        if idp.id_type == IdType.IPV4_ADDR_SUBNET and len(d) == 8:
            # the address as an int and the mask's prefix: no text made and parsed
            # again per Quick Mode (issue 13); the same networks, the same refusals
            return ipaddress.IPv4Network((int.from_bytes(d[:4], "big"), _prefix_of(d[4:])),
                                         strict=False)
        if idp.id_type == IdType.IPV4_ADDR_RANGE and len(d) == 8:
            nets = list(ipaddress.summarize_address_range(ipaddress.IPv4Address(d[:4]),
                                                          ipaddress.IPv4Address(d[4:])))
            if len(nets) == 1:
                return nets[0]
    except ValueError:
        pass
    raise IkeError("bad_id", f"unsupported Quick Mode identity (type {idp.id_type})",
                   NotifyType.INVALID_ID_INFORMATION, fatal=False)


@functools.lru_cache(maxsize=64)
def _prefix_of(mask: bytes) -> int:
    """The prefix length of a 4-byte netmask (or host mask), as `IPv4Network` reads
    "address/mask" text; ValueError if it is neither. A peer can only send a few
    masks that mean anything, and the cache is bounded."""
    return ipaddress.IPv4Network(f"0.0.0.0/{ipaddress.IPv4Address(mask)}").prefixlen


@functools.lru_cache(maxsize=64)
def _esp_sa_of(offers: tuple[EspSuite, ...]) -> tuple[tuple[Proposal, ...], tuple[bytes, ...]]:
    """Our Quick Mode SA payload for these offers, built and encoded once: one proposal
    per suite, one transform each (the form vpnc and Cisco send). Only the SPI changes
    from one Quick Mode to the next, so the body is kept cut around it:
    ``spi.join(cut)`` is the body with that 4-byte SPI in every proposal."""
    proposals = tuple(Proposal(i + 1, ProtocolId.IPSEC_ESP, _SPI_MARK, [encode_esp(1, s)])
                      for i, s in enumerate(offers))
    body = SAPayload(list(proposals)).encode_body()
    cut: list[bytes] = []
    start = _SA_HEAD_LEN
    head = body[:start]
    for p in proposals:
        spi_at = start + GENERIC_HEADER_LEN + _PROPOSAL_HEAD_LEN
        end = start + GENERIC_HEADER_LEN + len(p.encode_body())
        cut.append(head + body[start:spi_at])
        head = body[spi_at + len(_SPI_MARK):end]
        start = end
    cut.append(head)
    return proposals, tuple(cut)


_SPI_MARK = bytes(4)  # a stand-in SPI, cut out again (`_esp_sa_of`)
_SA_HEAD_LEN = 8  # RFC 2407 4.6.1: DOI and situation
_PROPOSAL_HEAD_LEN = 4  # RFC 2408 3.5: number, protocol, SPI size, transform count


# ----------------------------------------------------------------- initiator
def initiate(sa: SaState, now: float, local_ts: ipaddress.IPv4Network | None,
             remote_ts: ipaddress.IPv4Network | None, rekey_of: int | None,
             suites: list[EspSuite] | None = None) -> int:
    assert sa.hash is not None
    if local_ts is None:
        if sa.assigned_address is None:
            raise ValueError("no local traffic selector and no Mode Config address")
        # the /32 of the Mode Config address (from its int: a third of the tuple's cost)
        local_ts = ipaddress.IPv4Network(int(sa.assigned_address))
    remote_ts = remote_ts or ANY
    x = sa.start_exchange("quick", sa.new_message_id(), True, "sent1")
    spi_in = sa.new_spi()
    offers = suites or sa.config.policy.esp_offers(encapsulation(sa))
    spi_b = spi_in.to_bytes(4, "big")
    proposals, cut = _esp_sa_of(tuple(offers))
    sap = SAPayload([Proposal(p.number, p.protocol_id, spi_b, p.transforms) for p in proposals])
    ni = NoncePayload(sa.config.rng(NONCE_LEN))
    after: list[Payload] = [ni]
    pfs = offers[0].group if offers else 0
    kp: DHKeyPair | None = None
    if pfs:
        kp = _pfs_key_pair(sa, pfs)
        after.append(KEPayload(kp.public))
    after += [id_for(local_ts), id_for(remote_ts)]
    payloads: list[Payload] = [sap, *after]
    rest = encode_before(sap, spi_b.join(cut), after)
    x.quick = QuickScratch(local_ts, remote_ts, spi_in, ni.data, offers=offers, dh=kp,
                           rekey_of=rekey_of)
    hp = HashPayload(qm_hash1(sa.hash, sa.keyed(sa.skeyid_a), x.message_id, rest))
    sa.send(QM, [hp, *payloads], message_id=x.message_id, encrypt=True, now=now,
            body=encode_hashed(hp, payloads, rest))
    if sa.logs(7):
        sa.log("IKE", 7, f"Quick Mode started: {local_ts} <-> {remote_ts}, SPI in {spi_in:08x}"
               + (f" (rekey of {rekey_of:08x})" if rekey_of is not None else ""))
    return x.message_id


def receive(sa: SaState, msg: Message, remote: Address, local_port: int, now: float) -> None:
    x = sa.exchanges.get(msg.message_id)
    if x is None:
        _responder_1(sa, msg, now)
    elif x.kind == "quick" and x.we_started and x.state == "sent1":
        _initiator_2(sa, x, msg, now)
    elif x.kind == "quick" and not x.we_started and x.state == "sent2":
        _responder_3(sa, x, msg, now)
    else:
        raise IkeError("unexpected_exchange", "Quick Mode message in the wrong state",
                       NotifyType.INVALID_EXCHANGE_TYPE, send_notify=False, fatal=False)


def _hash_first(msg: Message) -> HashPayload:
    if not msg.payloads or not isinstance(msg.payloads[0], HashPayload):
        raise IkeError("missing_payload", "Quick Mode message without HASH first",
                       NotifyType.INVALID_HASH_INFORMATION, send_notify=False, fatal=False)
    return msg.payloads[0]


def _rest(msg: Message) -> bytes:
    return b"".join([p.raw for p in msg.payloads[1:]])


def _initiator_2(sa: SaState, x: Exchange, msg: Message, now: float) -> None:
    assert sa.hash is not None
    hp = _hash_first(msg)
    q = _scratch(x)
    ni = q.ni
    if not hashes_equal(qm_hash2(sa.hash, sa.keyed(sa.skeyid_a), x.message_id, ni, _rest(msg)),
                        hp.data):
        raise IkeError("hash_mismatch", "Quick Mode HASH(2) mismatch",
                       NotifyType.INVALID_HASH_INFORMATION, send_notify=False, fatal=False)
    sa.commit_iv()
    p = msg.payloads
    sap = next((q for q in p if isinstance(q, SAPayload)), None)
    nr = next((q for q in p if isinstance(q, NoncePayload)), None)
    if sap is None or nr is None or len(sap.proposals) != 1 or \
            len(sap.proposals[0].transforms) != 1:
        _abort(sa, x, "bad_proposal_syntax", "Quick Mode reply must hold one SA and a nonce")
        return
    prop = sap.proposals[0]
    suite = decode_esp(prop.transforms[0].transform_id, prop.transforms[0])
    if suite is None or not any(_same(suite, o) for o in q.offers) or len(prop.spi) != 4:
        _abort(sa, x, "no_proposal_chosen", "the responder chose an ESP transform we did"
               " not offer")
        return
    g_qm = _pfs_secret(sa, x, p, suite)
    lifetime = _lifetime(sa, suite, p)
    spi_out = int.from_bytes(prop.spi, "big")
    h3 = qm_hash3(sa.hash, sa.keyed(sa.skeyid_a), x.message_id, ni, nr.data)
    sa.send(QM, [HashPayload(h3)], message_id=x.message_id, encrypt=True, expect_reply=False,
            now=now)
    _install(sa, x, suite, q.spi_in, spi_out, ni, nr.data, g_qm, lifetime, now,
             we_initiated=True)
    sa.end_exchange(x.message_id)


def _same(a: EspSuite, b: EspSuite) -> bool:
    return (a.transform, a.key_length, a.auth, a.encapsulation) == (
        b.transform, b.key_length, b.auth, b.encapsulation)


def _abort(sa: SaState, x: Exchange, reason: str, detail: str) -> None:
    sa.end_exchange(x.message_id)
    sa.emit(ev.NegotiationFailed(reason, detail))
    raise IkeError(reason, detail, None, send_notify=False, fatal=False)


# ----------------------------------------------------------------- responder
def _responder_1(sa: SaState, msg: Message, now: float) -> None:
    assert sa.hash is not None
    hp = _hash_first(msg)
    if not hashes_equal(qm_hash1(sa.hash, sa.keyed(sa.skeyid_a), msg.message_id, _rest(msg)),
                        hp.data):
        raise IkeError("hash_mismatch", "Quick Mode HASH(1) mismatch",
                       NotifyType.INVALID_HASH_INFORMATION, send_notify=False, fatal=False)
    _check_room(sa, msg.message_id)
    x = sa.start_exchange("quick", msg.message_id, False, "got1")
    sa.commit_iv()
    try:
        _answer_1(sa, x, msg, now)
    except IkeError:
        sa.end_exchange(x.message_id)
        raise


def _check_room(sa: SaState, message_id: int) -> None:
    """An authentic message 1 may start a Quick Mode: not under the ID of one we
    answered (a replay, or a retransmission the answer cache no longer knows: a second
    inbound SA), and not beyond the pending ones' bound (each holds an inbound SA)."""
    if message_id in sa.quick_answered:
        raise IkeError("quick_mode_replay", f"Quick Mode message 1 under message ID"
                       f" {message_id:08x}, already answered: dropped",
                       NotifyType.INVALID_MESSAGE_ID, send_notify=False, fatal=False)
    pending = sum(1 for x in sa.exchanges.values() if x.kind == "quick" and not x.we_started)
    if pending >= sa.config.max_pending_quick_modes:
        raise IkeError("quick_mode_limit", f"Quick Mode message 1 dropped: {pending} Quick"
                       " Modes of this peer already wait for their message 3",
                       None, send_notify=False, fatal=False)


def _answer_1(sa: SaState, x: Exchange, msg: Message, now: float) -> None:
    assert sa.hash is not None
    p = msg.payloads
    if sa.role is Role.RESPONDER and sa.config.xauth and not sa.xauth_done:
        raise IkeError("quick_mode_before_xauth", "Quick Mode before XAUTH completed",
                       NotifyType.AUTHENTICATION_FAILED, fatal=False)
    sap = next((q for q in p if isinstance(q, SAPayload)), None)
    ni = next((q for q in p if isinstance(q, NoncePayload)), None)
    ids = [q for q in p if isinstance(q, IDPayload)]
    if sap is None or ni is None or len(ids) not in (0, 2):
        raise IkeError("missing_payload", "Quick Mode message 1 lacks SA, nonce or IDs",
                       NotifyType.PAYLOAD_MALFORMED, fatal=False)
    remote_ts, local_ts = _selectors(sa, ids)
    prop, suite = _choose(sa, sap)
    kp: DHKeyPair | None = None
    out_ke: list[Payload] = []
    g_qm = None
    if suite.group:
        ke = next((q for q in p if isinstance(q, KEPayload)), None)
        if ke is None:
            raise IkeError("missing_payload", "PFS proposed without KE",
                           NotifyType.INVALID_KEY_INFORMATION, fatal=False)
        try:
            kp = _pfs_key_pair(sa, suite.group)
            g_qm = kp.shared_secret(ke.data)
        except CryptoError as e:
            raise IkeError("invalid_ke", f"Quick Mode KE: {e}",
                           NotifyType.INVALID_KEY_INFORMATION, fatal=False) from e
        out_ke = [KEPayload(kp.public)]
    spi_in = sa.new_spi()
    spi_out = int.from_bytes(prop.spi, "big")
    nr = NoncePayload(sa.config.rng(NONCE_LEN))
    chosen = Proposal(prop.number, ProtocolId.IPSEC_ESP, spi_in.to_bytes(4, "big"),
                      [prop.transforms[0]])
    payloads: list[Payload] = [SAPayload([chosen]), nr, *out_ke, *ids]
    ours = sa.config.policy.ipsec_lifetime
    lifetime = shorter_lifetime(suite.lifetime, ours)
    if suite.lifetime > ours or (suite.life_kb and not suite.lifetime):
        payloads.append(responder_lifetime(ours, ProtocolId.IPSEC_ESP, prop.spi))
    rest = encode_payloads(payloads)
    hp = HashPayload(qm_hash2(sa.hash, sa.keyed(sa.skeyid_a), x.message_id, ni.data, rest))
    q = x.quick = QuickScratch(local_ts, remote_ts, spi_in, ni.data, nr=nr.data,
                               spi_out=spi_out, suite=suite, g_qm=g_qm, lifetime=lifetime)
    sa.send(QM, [hp, *payloads], message_id=x.message_id, encrypt=True, now=now,
            body=encode_hashed(hp, payloads, rest))
    x.state = "sent2"
    sa.quick_answered.add(x.message_id)
    _inbound_early(sa, x, q, suite)


def _inbound_early(sa: SaState, x: Exchange, q: QuickScratch, suite: EspSuite) -> None:
    """Hand our inbound SA over with message 2 (the module's docstring: the initiator
    may send on it right after message 3). Emitted after the message is queued, but
    the driver dispatches events before it sends datagrams: installed first."""
    enc_len, _ = suite.key_lengths()
    q.k_in = _keymat(sa, suite, q.spi_in, q.ni, q.nr, q.g_qm)
    q.inbound_early = True
    sa.emit(ev.ChildSAInboundReady(
        message_id=x.message_id, spi_in=q.spi_in, transform=suite.transform,
        key_length=suite.key_length, auth=suite.auth, enc_key_in=q.k_in[:enc_len],
        auth_key_in=q.k_in[enc_len:], encapsulation=suite.encapsulation,
        local_ts=q.local_ts, remote_ts=q.remote_ts))
    if sa.logs(7):  # a debug line: not formatted for nobody (issue 13)
        sa.log("IPSEC", 7, f"inbound SPI {q.spi_in:08x} loaded with Quick Mode message 2;"
               " the outbound one waits for message 3")


def _selectors(sa: SaState, ids: list[IDPayload]) -> tuple[ipaddress.IPv4Network,
                                                        ipaddress.IPv4Network]:
    """(the initiator's selector, ours). A client may only claim its own address."""
    if not ids:
        remote = ipaddress.IPv4Network((sa.remote[0], 32))
        return remote, ipaddress.IPv4Network((sa.config.local_address, 32))
    idci, idcr = network_of(ids[0]), network_of(ids[1])
    check = sa.config.ts_check if sa.role is Role.RESPONDER else None
    why = check(idci, idcr) if check is not None else None
    if why is not None:
        raise IkeError("ts_unacceptable", f"Quick Mode selectors {idci} <-> {idcr} refused:"
                       f" {why}", NotifyType.INVALID_ID_INFORMATION, fatal=False)
    if sa.role is Role.RESPONDER and sa.assigned_address is not None and \
            (idci.prefixlen != 32 or idci.network_address != sa.assigned_address):
        raise IkeError("ts_unacceptable", f"client asked for {idci}, but was assigned"
                       f" {sa.assigned_address}", NotifyType.INVALID_ID_INFORMATION,
                       fatal=False)
    return idci, idcr


def _choose(sa: SaState, sap: SAPayload) -> tuple[Proposal, EspSuite]:
    reasons: list[str] = []
    for prop in sap.proposals:
        if prop.protocol_id != ProtocolId.IPSEC_ESP or len(prop.spi) != 4:
            reasons.append(f"protocol {prop.protocol_id}")
            continue
        for t in prop.transforms:
            suite = decode_esp(t.transform_id, t)
            if suite is None:
                continue
            why = sa.config.policy.accept_esp(suite)
            if why is None:
                return Proposal(prop.number, prop.protocol_id, prop.spi, [t]), suite
            reasons.append(why)
    detail = "no acceptable ESP proposal"
    if reasons:
        detail += " (" + "; ".join(sorted(set(reasons))[:6]) + ")"
    raise IkeError("no_proposal_chosen", detail, NotifyType.NO_PROPOSAL_CHOSEN, fatal=False)


def _responder_3(sa: SaState, x: Exchange, msg: Message, now: float) -> None:
    assert sa.hash is not None
    hp = _hash_first(msg)
    q = _scratch(x)
    ni, nr = q.ni, q.nr
    if any(isinstance(p, SAPayload) for p in msg.payloads):
        # message 1 again, but not the bytes the answer cache holds: no message 3;
        # our retransmitted message 2 still answers the peer
        raise IkeError("unexpected_exchange", "Quick Mode message 1 again while we wait for"
                       " message 3: dropped", None, send_notify=False, fatal=False)
    if not hashes_equal(qm_hash3(sa.hash, sa.keyed(sa.skeyid_a), x.message_id, ni, nr),
                        hp.data):
        # authenticated by nobody: a peer that got our message 2 and answered it
        # wrongly, so the Quick Mode fails (libreswan too) and its inbound SA goes;
        # the DELETE tells an initiator that installed its SAs anyway
        sa.end_exchange(x.message_id, "its HASH(3) did not verify")
        informational.delete_spi(sa, q.spi_in, now)
        raise IkeError("hash_mismatch", "Quick Mode HASH(3) mismatch",
                       NotifyType.INVALID_HASH_INFORMATION, send_notify=False, fatal=False)
    sa.commit_iv()
    sa.answered(x.message_id)
    assert q.suite is not None
    _install(sa, x, q.suite, q.spi_in, q.spi_out, ni, nr, q.g_qm, q.lifetime, now,
             we_initiated=False)
    q.inbound_early = False  # established: nothing to withdraw
    sa.end_exchange(x.message_id)


# ------------------------------------------------------------------- shared
def _pfs_secret(sa: SaState, x: Exchange, payloads: list[Payload], suite: EspSuite) -> bytes | None:
    kp = _scratch(x).dh
    if not suite.group:
        return None
    ke = next((q for q in payloads if isinstance(q, KEPayload)), None)
    if kp is None or ke is None:
        _abort(sa, x, "invalid_ke", "PFS negotiated but no KE exchanged")
        return None
    try:
        return kp.shared_secret(ke.data)
    except CryptoError as e:
        _abort(sa, x, "invalid_ke", f"Quick Mode KE: {e}")
        return None


def _lifetime(sa: SaState, suite: EspSuite, payloads: list[Payload]) -> int:
    life = suite.lifetime or sa.config.policy.ipsec_lifetime
    for n in payloads:
        if isinstance(n, NotifyPayload) and n.notify_type == NotifyType.RESPONDER_LIFETIME:
            r = lifetime_from_notify(n)
            if r:
                sa.log("IKE", 5, f"RESPONDER-LIFETIME notify has value of {r} seconds")
                life = min(life, r)
    return life


def _install(sa: SaState, x: Exchange, suite: EspSuite, spi_in: int, spi_out: int, ni: bytes,
             nr: bytes, g_qm: bytes | None, lifetime: int, now: float, *,
             we_initiated: bool) -> None:
    enc_len, _ = suite.key_lengths()
    q = _scratch(x)
    k_in = q.k_in or _keymat(sa, suite, spi_in, ni, nr, g_qm)
    k_out = _keymat(sa, suite, spi_out, ni, nr, g_qm)
    local_ts, remote_ts, rekey_of = q.local_ts, q.remote_ts, q.rekey_of
    sa.children[spi_in] = ChildSA(spi_in, spi_out, suite, local_ts, remote_ts, now, lifetime,
                                  we_initiated)
    if rekey_of is None:
        rekey_of = _replaces(sa, spi_in, local_ts, remote_ts)
    sa.emit(ev.ChildSAEstablished(
        message_id=x.message_id, spi_in=spi_in, spi_out=spi_out, transform=suite.transform,
        key_length=suite.key_length, auth=suite.auth,
        enc_key_in=k_in[:enc_len], auth_key_in=k_in[enc_len:],
        enc_key_out=k_out[:enc_len], auth_key_out=k_out[enc_len:],
        encapsulation=suite.encapsulation, local_ts=local_ts, remote_ts=remote_ts,
        lifetime=lifetime, pfs_group=suite.group, rekey_of=rekey_of,
        inbound_early=q.inbound_early, we_initiated=we_initiated))
    if sa.logs(5):
        sa.log("IPSEC", 5, f"Security negotiation complete: {local_ts} <-> {remote_ts},"
               f" {esp_suite_name(suite.transform, suite.key_length, suite.auth)},"
               f" {_encap_name(suite.encapsulation)}, lifetime {lifetime} s")
        sa.log("IPSEC", 5, f"Loading SPIs: inbound {spi_in:08x}, outbound {spi_out:08x}")


def _keymat(sa: SaState, suite: EspSuite, spi: int, ni: bytes, nr: bytes,
            g_qm: bytes | None) -> bytes:
    """KEYMAT of one direction (RFC 2409 5.5: the SPI of the receiving end)."""
    assert sa.hash is not None
    enc_len, auth_len = suite.key_lengths()
    return keymat(sa.hash, sa.keyed(sa.skeyid_d), ProtocolId.IPSEC_ESP, spi.to_bytes(4, "big"),
                  ni, nr, enc_len + auth_len, g_qm)


def _replaces(sa: SaState, spi_in: int, local_ts: ipaddress.IPv4Network,
              remote_ts: ipaddress.IPv4Network) -> int | None:
    """A peer-started rekey: an older child with the same selectors."""
    for c in sa.children.values():
        if c.spi_in != spi_in and c.local_ts == local_ts and c.remote_ts == remote_ts \
                and not c.rekeyed:
            c.rekeyed = True
            return c.spi_in
    return None


def _encap_name(mode: int) -> str:
    return {1: "Tunnel", 3: "UDP-Encapsulated-Tunnel (NAT-T)",
            61443: "UDP-Encapsulated-Tunnel (NAT-T draft)"}.get(mode, str(mode))


def _scratch(x: Exchange) -> QuickScratch:
    # every Quick Mode exchange gets its scratch with its first message
    assert x.quick is not None
    return x.quick


def check_child_lifetimes(sa: SaState, now: float) -> None:
    """Rekey before expiry (RFC 2409 leaves it to policy); delete at expiry."""
    for c in list(sa.children.values()):
        if c.lifetime and now >= c.established + c.lifetime:
            sa.log("IPSEC", 5, f"IPsec SA {c.spi_in:08x} lifetime expired")
            informational.delete_child(sa, c.spi_in, now)
            continue
        share = REKEY_INITIATOR if c.we_initiated else REKEY_RESPONDER
        if c.lifetime and not c.rekeyed and now >= c.established + c.lifetime * share:
            rekey_child(sa, c, now)


def rekey_child(sa: SaState, c: ChildSA, now: float) -> int:
    """A Quick Mode that replaces child `c`, offering its own suite again; either
    role starts it (the lifetime shares above, or a responder whose outbound
    sequence numbers ran out, RFC 4303 3.3.3). Marks `c` rekeyed, so that its
    lifetime does not start a second one; returns the new message ID."""
    c.rekeyed = True
    suite = EspSuite(c.suite.transform, c.suite.key_length, c.suite.auth,
                     c.suite.encapsulation, c.suite.group, sa.config.policy.ipsec_lifetime)
    return initiate(sa, now, c.local_ts, c.remote_ts, c.spi_in, [suite])


def _pfs_key_pair(sa: SaState, group: int) -> DHKeyPair:
    """PFS's own g^x (RFC 2409 5.5): one computed ahead if the endpoint has it (used
    once, ike.dhpool), else a fresh one; never phase 1's, never another child's."""
    pool = sa.endpoint_marks.dh_pool
    kp = pool.take(group) if pool is not None else None
    return kp if kp is not None else dh_group(group).generate()
