"""Informational exchange (RFC 2409 5.7): notifies, DELETE and DPD (RFC 3706).

After phase 1 every informational message is encrypted and starts with
HASH(1) = prf(SKEYID_a, M-ID | N/D). Before it, a peer's error notify comes
in cleartext and only ends the negotiation (it cannot be authenticated).
"""

from __future__ import annotations

import ipaddress

from vpnhub.crypto.keys import hashes_equal, info_hash
from vpnhub.ike import events as ev
from vpnhub.ike.errors import IkeError
from vpnhub.ike.lifetime import lifetime_from_notify, shorter_lifetime
from vpnhub.ike.state import Address, Role, SaState, State
from vpnhub.wire.constants import ExchangeType, NotifyType, ProtocolId
from vpnhub.wire.message import Message
from vpnhub.wire.payloads import (
    DeletePayload,
    HashPayload,
    NotifyPayload,
    Payload,
    encode_payloads,
)

INFO = ExchangeType.INFORMATIONAL
DPD_RETRY_SHARE = 0.2  # R-U-THERE retries come every fifth of the DPD interval (1-5 s)
# A redirected SA is kept this long to send the notify again when Aggressive Mode
# message 3 comes again (ours was lost), then forgotten without a DELETE
REDIRECT_LINGER = 10.0


def notify_name(t: int) -> str:
    try:
        return NotifyType(t).name
    except ValueError:
        return str(t)


# ------------------------------------------------------------------ receive
def receive(sa: SaState, msg: Message, remote: Address, local_port: int, now: float) -> None:
    if not msg.flags & 1:
        _cleartext(sa, msg, now)
        return
    assert sa.hash is not None
    p = msg.payloads
    if not p or not isinstance(p[0], HashPayload):
        raise IkeError("missing_payload", "informational message without HASH",
                       NotifyType.INVALID_HASH_INFORMATION, send_notify=False, fatal=False)
    rest = b"".join(x.raw for x in p[1:])
    if not hashes_equal(info_hash(sa.hash, sa.skeyid_a, msg.message_id, rest), p[0].data):
        if _carries_redirect(p[1:]):  # vpnc computes this HASH but does not check it
            _refuse_redirect(sa, "redirect_bad_hash", "its HASH(1) is wrong (RFC 2409 5.7)")
        raise IkeError("hash_mismatch", "informational message with a wrong HASH",
                       NotifyType.INVALID_HASH_INFORMATION, send_notify=False, fatal=False)
    for x in p[1:]:  # before anything counts: a replayed R-U-THERE proves nothing
        if isinstance(x, NotifyPayload) and x.notify_type == NotifyType.R_U_THERE \
                and len(x.data) >= 4:
            check_r_u_there_seq(sa, int.from_bytes(x.data[:4], "big"))
    sa.commit_iv()
    for x in p[1:]:
        if isinstance(x, NotifyPayload):
            _notify(sa, x, now)
        elif isinstance(x, DeletePayload):
            _delete(sa, x, now)
        if sa.state is State.DELETED:
            return


def check_r_u_there_seq(sa: SaState, seq: int) -> None:
    """RFC 3706 7: R-U-THERE sequence numbers guard against replay and false proof of
    liveliness. The sender increments its number per new R-U-THERE and repeats it when
    it retries an unanswered one (vpnc does, under a new message ID), so the same
    number is answered again; an older one (serial arithmetic, RFC 1982 3.2) is a
    replay: dropped and counted, and the peer is not believed alive. The same message
    again, while its message ID is among the SA's last ones, is dropped before this as
    a retransmission (RFC 2408 5; its answer went under a message ID of its own)."""
    last = sa.dpd_peer_seq
    if last is not None and (seq - last) & 0xFFFFFFFF >= 0x80000000:
        raise IkeError("dpd_stale_sequence", f"R-U-THERE with sequence {seq:#x}, older than"
                       f" {last:#x}: a replay", send_notify=False, fatal=False)
    sa.dpd_peer_seq = seq


def _cleartext(sa: SaState, msg: Message, now: float) -> None:
    """An unauthenticated notify: believe it only while negotiating phase 1."""
    if _carries_redirect(msg.payloads):  # anyone could send it: never followed
        _refuse_redirect(sa, "redirect_unencrypted", "it came unencrypted, without the"
                         " phase 1 SA's HASH (RFC 2409 5.7)")
        return
    if sa.state is State.ESTABLISHED:
        sa.drops["unauthenticated_informational"] += 1
        return
    for x in msg.payloads:
        if isinstance(x, NotifyPayload) and x.notify_type < 16384:
            name = notify_name(x.notify_type)
            sa.log("IKE", 3, f"peer refused the negotiation: {name}")
            sa.emit(ev.NegotiationFailed(f"peer_{name.lower()}",
                                         f"peer sent {name}", x.notify_type))
            terminate(sa, f"peer sent {name}", now, by_peer=True, notify_peer=False)
            return


def _notify(sa: SaState, n: NotifyPayload, now: float) -> None:
    t = n.notify_type
    if t == NotifyType.R_U_THERE:
        seq = int.from_bytes(n.data[:4], "big") if len(n.data) >= 4 else 0
        sa.log("DPD", 9, f"received DPD R-U-THERE (seq {seq:#x}); sending R-U-THERE-ACK")
        sa.emit(ev.KeepaliveReceived("dpd-r-u-there"))
        _send_info(sa, [NotifyPayload(NotifyType.R_U_THERE_ACK, ProtocolId.ISAKMP,
                                      sa.icookie + sa.rcookie, n.data[:4])], now)
    elif t == NotifyType.R_U_THERE_ACK:
        seq = int.from_bytes(n.data[:4], "big") if len(n.data) >= 4 else -1
        if seq == sa.dpd_seq:
            sa.dpd_outstanding = 0
            sa.log("DPD", 9, f"received DPD R-U-THERE-ACK (seq {seq:#x})")
            sa.emit(ev.DpdAck(seq))
        else:
            sa.drops["dpd_bad_sequence"] += 1
    elif t == NotifyType.UNITY_LOAD_BALANCE:
        _load_balance(sa, n)
    elif t == NotifyType.CISCO_KEEPALIVE:
        sa.log("DPD", 9, "received keep-alive of type Cisco/Altiga (40500)")
        sa.emit(ev.KeepaliveReceived("cisco-40500"))
    elif t == NotifyType.INITIAL_CONTACT:
        sa.initial_contact = True
    elif t == NotifyType.RESPONDER_LIFETIME:
        life = lifetime_from_notify(n)
        sa.log("IKE", 5, f"RESPONDER-LIFETIME notify has value of {life} seconds")
        if n.protocol_id == ProtocolId.ISAKMP and life:
            sa.lifetime = shorter_lifetime(sa.lifetime, life)
    else:
        sa.log("IKE", 4 if t < 16384 else 7, f"peer notify {notify_name(t)}")


def _carries_redirect(payloads: list[Payload]) -> bool:
    return any(isinstance(x, NotifyPayload) and x.notify_type == NotifyType.UNITY_LOAD_BALANCE
               for x in payloads)


def _waiting_for_xauth(sa: SaState) -> bool:
    """Initiator: phase 1 done, no XAUTH request yet: where the master's notify comes
    (it replaces the first XAUTH request, informational.send_redirect)."""
    return (sa.role is Role.INITIATOR and sa.config.xauth and sa.state is State.ESTABLISHED
            and not sa.xauth_done and not sa.xauth_user and sa.trans.xauth_mid is None
            and sa.modecfg is None and not sa.children)


def redirect_problem(data: bytes) -> str:
    """Why a 40501 notify's data is no address to go to ("" when it is one): vpnc insists
    on exactly 4 bytes ("malformed loadbalance target"); an address nobody can start
    Aggressive Mode with (unspecified, loopback, multicast, class E and the limited
    broadcast, RFC 1122 3.2.1.3 / RFC 5771) is refused too."""
    if len(data) != 4:
        return f"its data is {len(data)} bytes, not the 4 of an IPv4 address"
    a = ipaddress.IPv4Address(data)
    if a.is_unspecified or a.is_loopback or a.is_multicast or a.is_reserved:
        return f"{a} is not a unicast address a concentrator could have"
    return ""


def _load_balance(sa: SaState, n: NotifyPayload) -> None:
    """Initiator (issue 17): the cluster master's Cisco load-balance notify, HASH(1)
    already verified (`receive`). Followed only while we wait for XAUTH and only when
    the configuration says so; the SA then ends here without a DELETE (vpnc sends none
    and the master expects none), and the driver starts again at the address."""
    if not sa.config.follow_redirects or not _waiting_for_xauth(sa):
        _refuse_redirect(sa, "redirect_unexpected", "it came while we were not waiting for"
                         " XAUTH, or from a peer we do not follow")
        return
    problem = redirect_problem(n.data)
    if problem:
        _refuse_redirect(sa, "redirect_malformed", problem)
        return
    target = ipaddress.IPv4Address(n.data)
    # severity 6: the driver says it in its own words (the client's log and status)
    sa.log("IKE", 6, f"Cisco load-balance notify: the concentrator sends us to {target}")
    sa.emit(ev.RedirectRequested(target))
    sa.end(f"redirected by the concentrator to {target}", by_peer=False)


def _refuse_redirect(sa: SaState, reason: str, detail: str) -> None:
    """A 40501 not followed: dropped, counted under `reason`, said plainly."""
    sa.drops[reason] += 1
    text = f"load-balance redirect (Cisco notify 40501) refused: {detail}"
    sa._log("IKE", 3, text, reason=reason)
    sa.emit(ev.RedirectRefused(reason, text))


def _delete(sa: SaState, d: DeletePayload, now: float) -> None:
    if d.protocol_id == ProtocolId.ISAKMP:
        sa.log("IKE", 4, "peer deleted the IKE SA")
        terminate(sa, "deleted by peer", now, by_peer=True, notify_peer=False)
        return
    if d.protocol_id != ProtocolId.IPSEC_ESP:
        return
    # vpnc lists both SPIs of one SA (ours and its own): delete each child once.
    for spi_b in d.spis:
        c = sa.child_by_spi(int.from_bytes(spi_b, "big"))
        if c is None:
            continue
        sa.children.pop(c.spi_in, None)
        sa.log("IPSEC", 5, f"peer deleted IPsec SA in {c.spi_in:08x} / out {c.spi_out:08x}")
        sa.emit(ev.ChildSADeleted(c.spi_in, c.spi_out, by_peer=True))


# --------------------------------------------------------------------- send
def _send_info(sa: SaState, payloads: list[Payload], now: float) -> bytes:
    """One encrypted informational message with its own message ID (returned)."""
    assert sa.hash is not None
    mid = sa.new_message_id()
    h = info_hash(sa.hash, sa.skeyid_a, mid, encode_payloads(payloads))
    # Informational exchanges are one message: the IV comes from phase 1
    # and the message ID (appendix B) and is not kept afterwards.
    return sa.send(INFO, [HashPayload(h), *payloads], message_id=mid, encrypt=True,
                   expect_reply=False, now=now)


def send_notify(sa: SaState, notify: int, now: float) -> None:
    n = NotifyPayload(notify, ProtocolId.ISAKMP, sa.icookie + sa.rcookie)
    if sa.state is State.ESTABLISHED and sa.hash is not None:
        _send_info(sa, [n], now)
    else:
        # Before keys exist the notify can only go in cleartext (RFC 2408 5).
        sa.send(INFO, [n], expect_reply=False, now=now, message_id=0)


def send_redirect(sa: SaState, target: ipaddress.IPv4Address, now: float) -> None:
    """Responder (issue 17): send the client to another cluster member instead of
    starting XAUTH: the Cisco load-balance notify, as the VPN 3000 / ASA cluster
    master sends it and vpnc follows it.

    An informational exchange under the new phase 1 SA (RFC 2409 5.7: HDR*, HASH(1),
    N with HASH(1) = prf(SKEYID_a, M-ID | N)); the N payload (RFC 2408 3.14) has DOI
    IPsec, protocol ISAKMP, the cookies as SPI and exactly 4 bytes of data, the
    member's IPv4 address. vpnc (vpnc.c do_phase2_notice_check) looks at the payload
    after the HASH of the first message it gets instead of XAUTH, insists on 4 bytes,
    then starts Aggressive Mode again at that address, UDP 500, closing its socket:
    it sends no DELETE and expects none, so none is sent here and the SA ends quietly
    after REDIRECT_LINGER; meanwhile a repeated message 3 gets the notify again."""
    n = NotifyPayload(NotifyType.UNITY_LOAD_BALANCE, ProtocolId.ISAKMP,
                      sa.icookie + sa.rcookie, target.packed)
    sa.answer_again(0, _send_info(sa, [n], now))
    sa.redirected_to, sa.redirect_ends_at = target, now + REDIRECT_LINGER
    sa.log("IKE", 6, f"redirecting the client to cluster member {target} (Cisco"
           " load-balance notify) instead of XAUTH")
    sa.emit(ev.Redirected(target))


def send_delete_all(sa: SaState, now: float) -> None:
    """One message: the ISAKMP SA first, then its IPsec SAs.

    The order matters to vpnc: it answers an ESP DELETE that comes first by
    starting a new Quick Mode, and only ends on an ISAKMP DELETE it sees first.
    """
    payloads: list[Payload] = [DeletePayload(ProtocolId.ISAKMP, [sa.icookie + sa.rcookie])]
    # with the inbound SAs of Quick Modes still waiting for message 3: the initiator
    # may have sent it, and installed its side, already
    spis = [spi.to_bytes(4, "big") for spi in
            [*(c.spi_in for c in sa.children.values()), *sa.pending_quick_inbound()]]
    if spis:
        payloads.append(DeletePayload(ProtocolId.IPSEC_ESP, spis))
    _send_info(sa, payloads, now)


def terminate(sa: SaState, reason: str, now: float, *, by_peer: bool,
              notify_peer: bool) -> None:
    """End the SA: optionally DELETE the children and the ISAKMP SA at the peer."""
    if sa.state is State.DELETED:
        return
    if notify_peer and sa.state is State.ESTABLISHED:
        send_delete_all(sa, now)
    sa.end(reason, by_peer=by_peer)


def delete_spi(sa: SaState, spi_in: int, now: float) -> None:
    """DELETE (RFC 2408 3.15) of an inbound SA that never became a child: a Quick Mode
    abandoned after message 2, whose initiator may hold the SA (quick.py)."""
    if sa.state is State.ESTABLISHED:
        _send_info(sa, [DeletePayload(ProtocolId.IPSEC_ESP, [spi_in.to_bytes(4, "big")])], now)


def delete_child(sa: SaState, spi_in: int, now: float) -> None:
    c = sa.children.pop(spi_in, None)
    if c is None:
        return
    if sa.state is State.ESTABLISHED:
        _send_info(sa, [DeletePayload(ProtocolId.IPSEC_ESP, [spi_in.to_bytes(4, "big")])], now)
    sa.emit(ev.ChildSADeleted(c.spi_in, c.spi_out, by_peer=False))


# ---------------------------------------------------------------------- DPD
def send_r_u_there(sa: SaState, now: float) -> None:
    sa.dpd_seq = (sa.dpd_seq + 1) & 0xFFFFFFFF
    sa.dpd_outstanding += 1
    sa.log("DPD", 9, f"sending DPD R-U-THERE (seq {sa.dpd_seq:#x})")
    _send_info(sa, [NotifyPayload(NotifyType.R_U_THERE, ProtocolId.ISAKMP,
                                  sa.icookie + sa.rcookie, sa.dpd_seq.to_bytes(4, "big"))], now)


def check_dpd(sa: SaState, now: float) -> None:
    """RFC 3706 5.5: ask only when the peer has been quiet; give up after N tries."""
    if sa.dpd_next_at is None or now < sa.dpd_next_at:
        return
    interval = sa.config.dpd_interval
    quiet_until = sa.last_heard + interval
    # `now < quiet_until`, not `now - last_heard < interval`: the same float as the
    # deadline, so a timer run exactly at it probes instead of re-arming the same
    # deadline for ever (1030.6 - 1000.6 < 30 in floating point)
    if sa.dpd_outstanding == 0 and now < quiet_until:
        sa.dpd_next_at = quiet_until
        return
    if sa.dpd_outstanding >= sa.config.dpd_retries:
        reason = (f"dead peer: no answer to {sa.dpd_outstanding} DPD R-U-THERE messages"
                  f" in {now - sa.last_heard:.0f} s")
        sa.log("DPD", 3, reason)
        sa.emit(ev.DeadPeer(reason))
        terminate(sa, reason, now, by_peer=False, notify_peer=False)
        return
    send_r_u_there(sa, now)
    # a dead peer is declared about one DPD interval after the first probe
    sa.dpd_next_at = now + min(5.0, max(1.0, interval * DPD_RETRY_SHARE))
