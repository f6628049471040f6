"""The sans-I/O IKEv1 SA: bytes and events in, bytes and events out.

One `IkeSA` is one ISAKMP SA (phase 1) with the exchanges that run under it
(XAUTH and Mode Config transactions, Quick Modes, informational messages).
Shape as in aioquic: `receive(data, remote, local_port, now)`,
`datagrams_to_send()`, `next_event()`, `get_timer()`, `handle_timer(now)`.
No sockets, no clocks: the driver passes `now` and moves the bytes.

Three layers, each importing only the ones below it (strongSwan's ike_sa and
tasks): `state.SaState` holds what the exchanges share (keys, IVs, message
IDs, the send / retransmit queue, events); the exchanges live in one module
each (`phase1`, `aggressive`, `main_mode`, `transaction`, `quick`,
`informational`) and take a `SaState`; this facade dispatches received
messages through the table of `transitions`, runs the timers and offers the
calls the drivers make.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math

from vpnhub.crypto.errors import CryptoError
from vpnhub.ike import aggressive, dpdanswer, informational, main_mode, quick, transaction
from vpnhub.ike import events as ev
from vpnhub.ike.errors import IkeError
from vpnhub.ike.fragment import FragmentError, is_fragment
from vpnhub.ike.state import (
    IKE_PORT,
    NATT_PORT,
    Address,
    ChildSA,
    Datagram,
    Exchange,
    IkeConfig,
    Pending,
    PskLookup,
    Role,
    SaState,
    State,
    message_digest,
)
from vpnhub.ike.transitions import handler_for
from vpnhub.ike.transport import Transport, transport_for_port
from vpnhub.secret import Secret
from vpnhub.wire.constants import ExchangeType, NotifyType
from vpnhub.wire.errors import WireError
from vpnhub.wire.message import decode_header

# The drivers, tools and tests import these from here, as before the state moved.
__all__ = ["IKE_PORT", "NATT_PORT", "PHASE1_REKEY_AT", "Address", "ChildSA", "Datagram",
           "Exchange", "IkeConfig", "IkeSA", "Pending", "PskLookup", "Role", "State"]

PHASE1_REKEY_AT = 0.9  # share of the IKE SA lifetime after which the initiator rekeys


class IkeSA(SaState):
    """One ISAKMP SA and its phase 2 exchanges, for either role: the facade the
    drivers use over the state (`SaState`) and the exchange modules."""

    def __init__(self, config: IkeConfig, role: Role, remote: Address, now: float, *,
                 local_port: int = IKE_PORT, icookie: bytes | None = None,
                 transport: Transport | None = None) -> None:
        super().__init__(config, role, remote, now, local_port=local_port, icookie=icookie,
                         transport=transport)
        # a phase 1 rekey (rekey_phase1): the SA whose children this one takes over
        self.replaces: IkeSA | None = None

    # ------------------------------------------------------------------ API
    def receive(self, data: bytes, remote: Address, local_port: int, now: float,
                transport: Transport | None = None) -> None:
        """Take one IKE message (the non-ESP marker already stripped). `transport`: the
        way it came (derived from the default ports when not given)."""
        self.rx_transport = transport or transport_for_port(
            local_port, over_tcp=self.config.transport == "tcp")
        # Until a handler checks its HASH (commit_iv), the message is anyone's: lines it
        # causes name its source, not this SA's peer and user (LogLine.source).
        self._unauth_source = remote
        try:
            self._receive(data, remote, local_port, now)
        except IkeError as e:
            self._fail(e, now)
        except (WireError, CryptoError) as e:
            self._fail(IkeError(getattr(e, "reason", "crypto_error"), str(e)), now)
        except Exception as e:  # never let anything escape the receive path
            self.drops["internal_error"] += 1
            self._log("IKE", 1, f"internal error on received message: {type(e).__name__}: {e}")
        finally:
            self._unauth_source = None

    def get_timer(self) -> float | None:
        """The next deadline. Negotiation deadlines (retransmissions, the phase 1 and
        XAUTH time-outs) are exact; idle ones (DPD, lifetimes, rekeys) are rounded up
        to `config.idle_timer_grid`, so that one wake of the driver serves every SA
        due in that slot instead of one wake per SA (issue 13: 10,000 SAs with DPD
        every 30 s woke the driver 653 times a second, bench/idle_timers.py; now once
        a second). Late by less than a grid step is harmless: RFC 3706 5.5 leaves the
        idle period to the implementation, and a lifetime ends a little later, never
        earlier.

        Called after every message and every timer run of every SA (twice: by the
        table and by the driver), so it builds no lists (issue 13, bench/dpd_cost.py)."""
        t: float | None = None
        for p in self._pending.values():
            if t is None or p.next_at < t:
                t = p.next_at
        if self.redirect_ends_at is not None and self.state is not State.DELETED:
            # redirected (issue 17): no XAUTH, DPD or lifetime here, only the end
            end = self.redirect_ends_at
            return end if t is None or end < t else t
        if self.state is State.ESTABLISHED:
            deadline = self._xauth_deadline()
            if deadline is not None and (t is None or deadline < t):
                t = deadline
            idle = self._idle_deadline(deadline is None)
            if idle is not None:
                grid = self.config.idle_timer_grid
                if grid > 0:  # rounded up to the grid (0: exact). Multiples of a power
                    # of two such as 0.5 or 1.0 are exact floats: SAs in one slot
                    # share one deadline
                    idle = math.ceil(idle / grid) * grid
                if t is None or idle < t:
                    t = idle
        elif self.state is not State.DELETED:
            t0 = self.created + self.config.phase1_timeout
            if t is None or t0 < t:
                t = t0
        return t

    def _idle_deadline(self, dpd: bool) -> float | None:
        """The earliest idle deadline of an established SA (before the grid): DPD
        (`dpd`: not while the XAUTH deadline bounds the SA), the children's lifetimes
        and rekeys, the ISAKMP SA's lifetime and the initiator's rekey."""
        t = self.dpd_next_at if dpd else None
        if t is not None and self.dpd_outstanding == 0:
            t += self.config.dpd_grace  # the first probe only, not the retries
        for c in self.children.values():
            if c.lifetime:
                end = c.established + c.lifetime
                if not c.rekeyed:
                    share = quick.REKEY_INITIATOR if c.we_initiated else quick.REKEY_RESPONDER
                    end = min(end, c.established + c.lifetime * share)
                if t is None or end < t:
                    t = end
        if self.lifetime and self.established_at is not None:
            end = self.established_at + self.lifetime
            if self.role is Role.INITIATOR and not self.rekey_announced:
                end = min(end, self.established_at + self.lifetime * PHASE1_REKEY_AT)
            if t is None or end < t:
                t = end
        return t

    def handle_timer(self, now: float) -> None:
        try:
            self._handle_timer(now)
        except Exception as e:
            self.drops["internal_error"] += 1
            self._log("IKE", 1, f"internal error in timer: {type(e).__name__}: {e}")

    # -------------------------------------------------------------- receive
    def _receive(self, data: bytes, remote: Address, local_port: int, now: float) -> None:
        if self.state is State.DELETED:
            self.drops["sa_deleted"] += 1
            return
        self._sent_now = {}
        if is_fragment(data):
            try:
                whole = self.reassembler().feed(data, remote, now)
            except FragmentError as e:
                self.drops[e.reason] += 1
                return
            if whole is None:
                return
            data = whole
        # the idle load: 333 R-U-THEREs a second at 10,000 sessions (issue 13)
        if dpdanswer.answer(self, data, remote, local_port, now):
            return
        hdr = decode_header(data)
        if hdr.icookie != self.icookie:
            self.drops["wrong_cookie"] += 1
            return
        digest = message_digest(data)
        if self._is_retransmission(hdr, digest, remote):
            return
        handler = handler_for(self.state, hdr.exchange, self.role)
        if handler is None:
            self.drops["unexpected_exchange"] += 1
            self._log(
                "IKE", 3,
                f"unexpected {_exchange_name(hdr.exchange)} message in state {self.state.name}"
                " dropped", reason="unexpected_exchange",
            )
            return
        msg, commit = self._open(hdr, data)
        if self.config.log_severity >= 8:  # nobody keeps decodes: no call either
            self._log_decode("RECEIVED <<<", msg, remote)
        self._current = (remote, local_port, now, commit)
        try:
            handler(self, msg, remote, local_port, now)
        finally:
            del self._current  # the message's, for its handler only
        self._remember_in(hdr.message_id, data, digest)
        self.last_heard = now
        if not self._pending and self.children:
            self.release_cbc()  # negotiation over (Quick Mode done): idle SAs stay small
        if self.dpd_next_at is not None and self.dpd_outstanding == 0:
            # RFC 3706 5.5: the idle period starts again. Only the attribute moves: the
            # timer entry queued for the old deadline finds itself stale when it fires
            # and is queued again, without running the SA (issue 13: no timer work per
            # message, one cheap re-queue per DPD interval)
            self.dpd_next_at = now + self.config.dpd_interval

    # -------------------------------------------------------------- failure
    def _fail(self, e: IkeError, now: float) -> None:
        unknown = self.p1.unknown_group
        if unknown is not None and self.state is not State.ESTABLISHED:
            # Answered with a stand-in key (ike.standin): message 3 fails as with a
            # wrong key (same notify or silence); only our log names the cause.
            e = IkeError("unknown_group", f"no group {unknown!r} is configured (peer"
                         f" {self.remote[0]}:{self.remote[1]}); it was answered as a known"
                         " group with a wrong key would be, so that group names cannot be"
                         " enumerated", e.notify, send_notify=e.send_notify, fatal=e.fatal)
        self.drops[e.reason] += 1
        self.stats["errors"] += 1
        phase1 = self.state is not State.ESTABLISHED
        self._log("IKE", 3 if phase1 else 4, f"{e.detail} [{e.reason}]", reason=e.reason)
        if e.send_notify and e.notify is not None:
            self._send_error_notify(e.notify, now)
        if phase1 and e.fatal:
            self.emit(ev.NegotiationFailed(e.reason, e.detail, e.notify))
            self.terminate(e.reason, now, by_peer=False, notify_peer=False)

    def _send_error_notify(self, notify: int, now: float) -> None:
        informational.send_notify(self, notify, now)

    def terminate(self, reason: str, now: float, *, by_peer: bool, notify_peer: bool) -> None:
        """End the SA: optionally DELETE the children and the ISAKMP SA at the peer."""
        informational.terminate(self, reason, now, by_peer=by_peer, notify_peer=notify_peer)

    def delete(self, now: float, reason: str = "deleted by administrator") -> None:
        """Tear the SA down, telling the peer (RFC 2408 3.15 DELETE)."""
        self.terminate(reason, now, by_peer=False, notify_peer=True)

    # --------------------------------------------------------------- timers
    def _handle_timer(self, now: float) -> None:
        if self.state is State.DELETED:
            return
        if self.state is not State.ESTABLISHED and now >= self.created + self.config.phase1_timeout:
            self.drops["phase1_timeout"] += 1
            detail = f"phase 1 did not complete within {self.config.phase1_timeout:.0f} s"
            unknown = self.p1.unknown_group
            if unknown is not None:  # answered with a stand-in key (ike.standin)
                detail += (f": the client asked for group {unknown!r}, which is not"
                           " configured (a mistyped group name, or a scan for group names)")
            elif self.state is State.AM_R_SENT2:
                # The client checks our HASH_R first and gives up silently when the
                # group passwords differ (vpnc: "hash comparison failed").
                detail += (": no Aggressive Mode message 3 came after our message 2; most"
                           " likely the client has a wrong group password (pre-shared key)")
            self._log("IKE", 3, detail)
            self.emit(ev.NegotiationFailed("phase1_timeout", detail))
            self.terminate("phase 1 timeout", now, by_peer=False, notify_peer=False)
            return
        self._retransmit(now)
        if self.state is not State.ESTABLISHED:
            return
        if self.redirect_ends_at is not None:
            if now >= self.redirect_ends_at:  # the client went elsewhere: no DELETE
                self.end(f"redirected to cluster member {self.redirected_to}",
                         by_peer=False)
            return
        if self.lifetime and self.established_at is not None and \
                now >= self.established_at + self.lifetime:
            self._log("IKE", 4, f"IKE SA lifetime of {self.lifetime} s expired")
            self.terminate("IKE SA lifetime expired", now, by_peer=False, notify_peer=True)
            return
        deadline = self._xauth_deadline()
        if deadline is not None and now >= deadline:
            self._xauth_timed_out(now)
            return
        quick.check_child_lifetimes(self, now)
        # DPD watches a tunnel; until XAUTH and Mode Config made one, the XAUTH
        # deadline bounds the SA (a client stuck in setup, e.g. vpnc --vendor
        # netscreen, does not answer R-U-THERE and would be blamed as "dead")
        if deadline is None:
            informational.check_dpd(self, now)
        self._check_phase1_rekey(now)

    def _xauth_deadline(self) -> float | None:
        """Responder: when a remote access SA still without XAUTH + Mode Config is given up.

        Phase 1 alone holds a slot but gives the client nothing; a client set up
        for another vendor (vpnc --vendor netscreen) answers XAUTH or not, but never
        asks for its address. A session that has IPsec SAs is never cut here."""
        if self.role is not Role.RESPONDER or not self.config.xauth \
                or self.established_at is None or self.modecfg is not None or self.children:
            return None
        return self.established_at + self.config.xauth_timeout

    def _xauth_timed_out(self, now: float) -> None:
        self.drops["xauth_timeout"] += 1
        within = f"within {self.config.xauth_timeout:.0f} s of phase 1"
        if not self.xauth_user:
            what = (f"no XAUTH reply {within}: the client does not do XAUTH (most likely"
                    " a wrong client vendor setting, or a client without XAUTH)")
        else:
            what = (f"no Mode Config request {within} (XAUTH of {self.xauth_user!r}"
                    f" {'done' if self.xauth_done else 'not completed'}): the client"
                    " does not ask for its address (most likely a wrong client vendor"
                    " setting, e.g. vpnc --vendor netscreen)")
        self._log("XAUTH", 3, what + "; deleting the IKE SA")
        self.emit(ev.NegotiationFailed("xauth_timeout", what))
        self.terminate("XAUTH / Mode Config not completed", now, by_peer=False,
                       notify_peer=True)

    def _check_phase1_rekey(self, now: float) -> None:
        if self.role is not Role.INITIATOR or self.rekey_announced:
            return
        if self.lifetime and self.established_at is not None and \
                now >= self.established_at + self.lifetime * PHASE1_REKEY_AT:
            self.rekey_announced = True
            left = self.established_at + self.lifetime - now
            self._log("IKE", 5, f"IKE SA lifetime nearly over ({left:.0f} s left): rekeying")
            self.emit(ev.Phase1RekeyDue(left))

    # ------------------------------------------------------------ actions
    def initiate(self, now: float) -> None:
        """Initiator: send the first phase 1 message."""
        if self.config.mode == "main":
            main_mode.initiate(self, now)
        else:
            aggressive.initiate(self, now)

    def xauth_reply(self, user: str, password: Secret, now: float) -> None:
        transaction.client_xauth_reply(self, user, password, now)

    def xauth_result(self, ok: bool, now: float, message: str = "") -> None:
        transaction.server_xauth_result(self, ok, now, message)

    def request_modecfg(self, now: float) -> None:
        transaction.client_modecfg_request(self, now)

    def modecfg_reply(self, cfg: ev.ModeConfig, now: float) -> None:
        transaction.server_modecfg_reply(self, cfg, now)

    def modecfg_push(self, cfg: ev.ModeConfig, now: float) -> None:
        transaction.server_modecfg_set(self, cfg, now)

    def start_quick_mode(self, now: float, local_ts: ipaddress.IPv4Network | None = None,
                         remote_ts: ipaddress.IPv4Network | None = None,
                         rekey_of: int | None = None) -> int:
        return quick.initiate(self, now, local_ts, remote_ts, rekey_of)

    def rekey_child(self, spi: int, now: float) -> int | None:
        """Start the rekey of the child with this inbound or outbound SPI, offering its
        suite again (as its lifetime rekey does); None if there is no such child."""
        c = self.child_by_spi(spi)
        return quick.rekey_child(self, c, now) if c is not None else None

    def send_dpd(self, now: float) -> None:
        informational.send_r_u_there(self, now)

    def delete_child(self, spi_in: int, now: float) -> None:
        informational.delete_child(self, spi_in, now)

    def notify_peer(self, notify: NotifyType, now: float) -> None:
        informational.send_notify(self, notify, now)

    # ------------------------------------------------------- phase 1 rekey
    def rekey_phase1(self, now: float) -> IkeSA:
        """Initiator: a new phase 1 to the same peer that will take over our children.

        The new SA authenticates again (XAUTH too: the concentrator wants a
        login for every phase 1) but skips Mode Config: the address stays.
        """
        # no INITIAL-CONTACT: the peer must keep the SAs this one carries over
        cfg = dataclasses.replace(self.config, send_initial_contact=False)
        new = IkeSA(cfg, Role.INITIATOR, (self.remote[0], IKE_PORT), now)
        new.replaces = self
        new.modecfg, new.assigned_address = self.modecfg, self.assigned_address
        new.initiate(now)
        return new

    def adopt(self, old: IkeSA, now: float) -> None:
        """Take over the children (and Mode Config) of an IKE SA this one replaces.

        Both ends call it: IPsec SAs outlive the ISAKMP SA that made them,
        so the old one can then be deleted alone (`delete(..., children=False)`).
        """
        self.children.update(old.children)
        old.children.clear()
        if self.modecfg is None:
            self.modecfg, self.assigned_address = old.modecfg, old.assigned_address
        self._log("IKE", 5, f"IKE SA replaces {old.icookie.hex()}/{old.rcookie.hex()}"
                  f" and carries {len(self.children)} IPsec SA(s) over")


def _exchange_name(exchange: int) -> str:
    try:
        return ExchangeType(exchange).name
    except ValueError:
        return f"exchange {exchange}"
