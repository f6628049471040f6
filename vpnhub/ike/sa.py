"""The sans-I/O IKEv1 SA: bytes and events in, bytes and events out.

One `IkeSA` is one ISAKMP SA (phase 1) with the exchanges that run under it
(XAUTH and Mode Config transactions, Quick Modes, informational messages).
Shape as in aioquic: `receive(data, remote, local_port, now)`,
`datagrams_to_send()`, `next_event()`, `get_timer()`, `handle_timer(now)`.
No sockets, no clocks: the driver passes `now` and moves the bytes.

The exchanges themselves live in one module each (`aggressive`, `main_mode`,
`transaction`, `quick`, `informational`); this module holds the state they
share, the encryption of message bodies (RFC 2409 appendix B IVs),
retransmission, timers and the table of allowed transitions (`transitions`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import os
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from vpnhub.crypto.cipher import IkeCipher
from vpnhub.crypto.errors import CryptoError
from vpnhub.crypto.keys import phase2_iv
from vpnhub.crypto.prf import HashAlg
from vpnhub.ike import events as ev
from vpnhub.ike.errors import IkeError
from vpnhub.ike.fragment import FragmentError, Reassembler, is_fragment
from vpnhub.ike.fragment import split as fragment_split
from vpnhub.ike.policy import EspSuite, P1Suite, Policy
from vpnhub.ike.secret import Secret
from vpnhub.ike.transitions import Role, State, handler_for
from vpnhub.ike.transport import Transport, transport_for_port
from vpnhub.wire.constants import ExchangeType, Flag, NotifyType
from vpnhub.wire.errors import WireError
from vpnhub.wire.message import HEADER_LEN, Header, Message, decode_header, encode_message
from vpnhub.wire.payloads import (
    Payload,
    decode_payloads,
    encode_payloads,
)

Address = tuple[str, int]
IKE_PORT = 500
NATT_PORT = 4500
PHASE1_REKEY_AT = 0.9
USED_MESSAGE_IDS = 64  # share of the IKE SA lifetime after which the initiator rekeys

# Looks up the group PSK for an identity (id type, id data) seen from `remote`;
# Main Mode calls it with id_type 0 before the identity is known (RFC 2409 5.4).
PskLookup = Callable[[int, bytes, Address], Secret | None]


@dataclass(frozen=True)
class Datagram:
    """An IKE message to send. On port 4500 the driver prepends the non-ESP marker."""

    data: bytes
    remote: Address
    local_port: int
    transport: Transport


@dataclass
class IkeConfig:
    """Everything the engine needs to know about this end."""

    local_address: str
    policy: Policy = field(default_factory=Policy)
    mode: str = "aggressive"  # initiator: "aggressive" or "main"
    # initiator: the group name sent as KEY_ID (Cisco clients, vpnc) and its PSK
    group_name: str = ""
    psk: Secret | None = None
    # responder: PSK per identity, and the policy of that identity's group
    psk_lookup: PskLookup | None = None
    policy_for: Callable[[bytes], Policy | None] | None = None
    # responder: a whole other configuration for an identity seen in Aggressive
    # Mode message 1 (a LAN-to-LAN peer with a dynamic address, RFC 2409 5.4)
    config_for_id: Callable[[int, bytes], IkeConfig | None] | None = None
    # responder: may the peer have these Quick Mode selectors? (initiator's, ours)
    # -> None if yes, else why not
    ts_check: Callable[[ipaddress.IPv4Network, ipaddress.IPv4Network], str | None] | None = None
    natt: bool = True  # responder: offer NAT-T; initiator: transparent tunneling
    force_natt: bool = False  # encapsulate even without NAT (vpnc --natt-mode force)
    # "udp" (500/4500) or "tcp" (Cisco IPsec over TCP: NAT is crossed, no NAT-T)
    transport: str = "udp"
    # initiator: the NAT-T versions announced (RFC 3947 and the drafts clients still send)
    natt_versions: tuple[str, ...] = ("RFC 3947", "draft-03", "draft-02N", "draft-02")
    xauth: bool = True
    unity: bool = True
    dpd: bool = True
    dpd_interval: float = 30.0
    dpd_retries: int = 5
    retransmit_interval: float = 2.0
    retransmit_tries: int = 5
    phase1_timeout: float = 30.0  # a half-open SA is dropped after this
    # responder: phase 1 done, but XAUTH and Mode Config (the address) not after this:
    # the SA is deleted (a client that never finishes would linger, answering DPD;
    # Cisco IOS "crypto isakmp xauth timeout" defaults to 60 s for a user typing)
    xauth_timeout: float = 60.0
    application_version: str = "vpnhub"
    # the most detailed severity the driver keeps or prints: lines above it (the
    # IKEDECODE decodes at 8 and 9 cost real time per message) are not even built
    log_severity: int = 13
    send_initial_contact: bool = True
    extra_vendor_ids: tuple[bytes, ...] = ()
    # IKE fragmentation: messages larger than this go in fragments when the peer
    # announced the FRAGMENTATION vendor ID (0 = never); `fragmentation` announces it.
    fragmentation: bool = True
    fragment_size: int = 0
    spi_allocator: Callable[[], int] | None = None
    rng: Callable[[int], bytes] = os.urandom


@dataclass
class Pending:
    """Our last message of an exchange that still waits for an answer."""

    datagram_data: bytes
    next_at: float
    tries: int = 0


@dataclass
class Exchange:
    """A phase 2 exchange (Quick Mode, transaction) keyed by its message ID."""

    kind: str  # "xauth", "modecfg", "quick"
    message_id: int
    we_started: bool
    state: str
    iv: bytes
    data: dict[str, object] = field(default_factory=dict)


@dataclass
class ChildSA:
    """What the SA remembers of an installed child (for DELETE and rekeys)."""

    spi_in: int
    spi_out: int
    suite: EspSuite
    local_ts: ipaddress.IPv4Network
    remote_ts: ipaddress.IPv4Network
    established: float
    lifetime: int
    we_initiated: bool
    rekeyed: bool = False


def _digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()[:16]


class IkeSA:
    """One ISAKMP SA and its phase 2 exchanges, for either role."""

    def __init__(
        self,
        config: IkeConfig,
        role: Role,
        remote: Address,
        now: float,
        *,
        local_port: int = IKE_PORT,
        icookie: bytes | None = None,
        transport: Transport | None = None,
    ) -> None:
        self.config = config
        self.role = role
        self.remote: Address = remote
        self.first_remote: Address = remote  # msg 1's source, for NAT-D (RFC 3947 3.2)
        self.local_port = local_port
        # the transport our datagrams go out on; follows the peer like local_port
        self.transport = transport or transport_for_port(
            local_port, over_tcp=config.transport == "tcp")
        self.rx_transport = self.transport  # the one the message being received came by
        self.created = now
        self.state = State.INITIAL
        rng = config.rng
        self.icookie = icookie if icookie is not None else rng(8)
        self.rcookie = bytes(8) if role is Role.INITIATOR else rng(8)
        self._events: deque[ev.Event] = deque()
        self._out: list[Datagram] = []
        self.drops: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()
        # phase 1 negotiation and keys
        self.suite: P1Suite | None = None
        self.hash: HashAlg | None = None
        self.cipher: IkeCipher | None = None
        self.skeyid = b""
        self.skeyid_d = b""
        self.skeyid_a = b""
        self.skeyid_e = b""
        self.enc_key = b""
        self.p1_iv = b""  # running CBC chain of phase 1
        self.p1_last_block = b""  # last CBC block of phase 1 (base of phase 2 IVs)
        self.dh_public_i = b""
        self.dh_public_r = b""
        self.nonce_i = b""
        self.nonce_r = b""
        self.sai_b = b""
        self.peer_id_type = 0
        self.peer_id_data = b""
        self.psk: Secret | None = config.psk
        self.lifetime = 0
        self.established_at: float | None = None
        self.data: dict[str, object] = {}  # per-exchange scratch (DH key pair, ...)
        # peer capabilities (from vendor IDs)
        self.peer_vendor_ids: list[str] = []
        self.peer_xauth = self.peer_dpd = self.peer_unity = self.peer_frag = False
        self.natt_variant = ""  # "", "RFC 3947", "draft-02", ...
        self.natd_type = 20
        self.local_behind_nat = False
        self.remote_behind_nat = False
        self.natt_in_use = False
        # XAUTH / Mode Config outcome
        self.xauth_user = ""
        self.xauth_done = False
        self.modecfg: ev.ModeConfig | None = None
        self.assigned_address: ipaddress.IPv4Address | None = None
        self.peer_application_version = ""
        # phase 2
        self.exchanges: dict[int, Exchange] = {}
        self.children: dict[int, ChildSA] = {}
        self._pending: dict[int, Pending] = {}
        self._last_in: OrderedDict[int, tuple[bytes, bytes | None]] = OrderedDict()
        # recent message IDs, so a new exchange never reuses one (RFC 2408 3.1); a
        # bounded window: with DPD every 30 s an unbounded set grows for ever
        self._used_message_ids: OrderedDict[int, None] = OrderedDict()
        # liveness (RFC 3706)
        self.last_heard = now
        self.dpd_seq = int.from_bytes(rng(4), "big") & 0x7FFFFFFF
        self.dpd_outstanding = 0
        self.dpd_next_at: float | None = None
        self._reassembler = Reassembler(max_messages=4)
        self._sent_now: dict[int, bytes] = {}
        # the source of the message being received until it authenticates (commit_iv)
        self._unauth_source: Address | None = None

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

    def datagrams_to_send(self) -> list[Datagram]:
        out, self._out = self._out, []
        return out

    def next_event(self) -> ev.Event | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        times = [p.next_at for p in self._pending.values()]
        if self.state is State.ESTABLISHED:
            deadline = self._xauth_deadline()
            if self.dpd_next_at is not None and deadline is None:
                times.append(self.dpd_next_at)
            times += self._child_deadlines()
            if deadline is not None:
                times.append(deadline)
            if self.lifetime and self.established_at is not None:
                times.append(self.established_at + self.lifetime)
                if self.role is Role.INITIATOR and not self.data.get("rekey_announced"):
                    times.append(self.established_at + self.lifetime * PHASE1_REKEY_AT)
        elif self.state is not State.DELETED:
            times.append(self.created + self.config.phase1_timeout)
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        try:
            self._handle_timer(now)
        except Exception as e:
            self.drops["internal_error"] += 1
            self._log("IKE", 1, f"internal error in timer: {type(e).__name__}: {e}")

    @property
    def established(self) -> bool:
        return self.state is State.ESTABLISHED

    @property
    def cookies(self) -> tuple[bytes, bytes]:
        return self.icookie, self.rcookie

    def note_traffic(self, now: float) -> None:
        """The data plane decrypted a packet from this peer: it is alive (RFC 3706 5.5)."""
        self.last_heard = now
        self.dpd_outstanding = 0
        if self.dpd_next_at is not None:
            self.dpd_next_at = now + self.config.dpd_interval

    # -------------------------------------------------------------- receive
    def _receive(self, data: bytes, remote: Address, local_port: int, now: float) -> None:
        if self.state is State.DELETED:
            self.drops["sa_deleted"] += 1
            return
        self._sent_now = {}
        if is_fragment(data):
            try:
                whole = self._reassembler.feed(data, remote, now)
            except FragmentError as e:
                self.drops[e.reason] += 1
                return
            if whole is None:
                return
            data = whole
        hdr = decode_header(data)
        if hdr.icookie != self.icookie:
            self.drops["wrong_cookie"] += 1
            return
        if self._is_retransmission(hdr, data, remote, local_port):
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
        msg, commit_iv = self._open(hdr, data)
        self._log_decode("RECEIVED <<<", msg, remote)
        self._current = (remote, local_port, now, commit_iv)
        try:
            handler(self, msg, remote, local_port, now)
        finally:
            # commit_iv's closure refers to this SA: keeping it would make every SA
            # a reference cycle, freed only by a full GC pass long after a flood
            del self._current
        self._remember_in(hdr.message_id, data)
        self.last_heard = now

    def _open(self, hdr: Header, data: bytes) -> tuple[Message, Callable[[], None]]:
        """Decrypt (if E is set) and decode; the IV advances only via commit."""
        body = data[HEADER_LEN:]

        def nothing() -> None:
            return None

        if not hdr.flags & Flag.ENCRYPTION:
            payloads = decode_payloads(hdr.next_payload, body)
            return self._message(hdr, payloads), nothing
        if self.cipher is None:
            raise IkeError("encrypted_before_keys", "encrypted message before keys exist",
                           NotifyType.INVALID_FLAGS, send_notify=False)
        bs = self.cipher.block_size
        if not body or len(body) % bs:
            raise IkeError("bad_ciphertext_length", f"encrypted body of {len(body)} bytes",
                           NotifyType.PAYLOAD_MALFORMED, send_notify=False)
        iv = self._iv_for(hdr.exchange, hdr.message_id)
        plain = self.cipher.decrypt(self.enc_key, iv, body)
        try:
            payloads = decode_payloads(hdr.next_payload, plain, trailing_ok=True)
        except WireError as e:
            # Wrong keys (a wrong PSK) decrypt to garbage: say so (RFC 2409 5).
            raise IkeError("decryption_failed", f"cannot decode decrypted body ({e.reason}):"
                           " wrong pre-shared key?", NotifyType.PAYLOAD_MALFORMED,
                           send_notify=False) from e
        last = body[-bs:]

        def commit() -> None:
            self._set_iv(hdr.exchange, hdr.message_id, last)

        return self._message(hdr, payloads), commit

    @staticmethod
    def _message(hdr: Header, payloads: list[Payload]) -> Message:
        return Message(hdr.icookie, hdr.rcookie, hdr.exchange, hdr.flags, hdr.message_id,
                       payloads)

    def commit_iv(self) -> None:
        """Handlers call this once a message is authenticated (its HASH checked).

        From then on the message counts: the CBC chain moves on, and a peer
        whose NAT mapping changed is followed to its new port (RFC 3947 5).
        """
        remote, local_port, _, commit = self._current
        commit()
        self._unauth_source = None  # from here on the lines are the authenticated peer's
        if self.state is State.ESTABLISHED:
            self._follow_peer(remote, local_port)

    # ------------------------------------------------------- IV management
    def _iv_for(self, exchange: int, message_id: int) -> bytes:
        assert self.cipher is not None and self.hash is not None
        if message_id == 0 and exchange in (ExchangeType.AGGRESSIVE,
                                            ExchangeType.IDENTITY_PROTECTION):
            return self.p1_iv
        x = self.exchanges.get(message_id)
        if x is not None:
            return x.iv
        # RFC 2409 appendix B: a new exchange starts from the last phase 1
        # block and its message ID. vpnc's 8-bit DELETE IDs may be 0: that is
        # still an informational exchange, not phase 1 (interop README, pitfall 11).
        return phase2_iv(self.hash, self.p1_last_block, message_id, self.cipher.block_size)

    def _set_iv(self, exchange: int, message_id: int, last_block: bytes) -> None:
        if message_id == 0 and exchange in (ExchangeType.AGGRESSIVE,
                                            ExchangeType.IDENTITY_PROTECTION):
            self.p1_iv = last_block
            return
        x = self.exchanges.get(message_id)
        if x is not None:
            x.iv = last_block

    # ---------------------------------------------------------------- send
    def send(self, exchange: int, payloads: list[Payload], *, message_id: int = 0,
             encrypt: bool = False, expect_reply: bool = True, now: float = 0.0) -> bytes:
        """Encode (and encrypt) a message, queue it and remember it for retransmission."""
        msg = Message(self.icookie, self.rcookie, exchange,
                      Flag.ENCRYPTION if encrypt else 0, message_id, payloads)
        body = encode_payloads(payloads)
        if encrypt:
            body = self._encrypt(exchange, message_id, body)
        data = encode_message(msg, body)
        self._sent_now[message_id] = data
        self._log_decode("SENDING >>>", msg, self.remote)
        self._emit(data)
        self.stats["messages_sent"] += 1
        if expect_reply:
            self._pending[message_id] = Pending(data, now + self.config.retransmit_interval)
        else:
            self._pending.pop(message_id, None)
        if message_id in self._last_in:
            self._last_in[message_id] = (self._last_in[message_id][0], data)
        return data

    def _encrypt(self, exchange: int, message_id: int, body: bytes) -> bytes:
        assert self.cipher is not None
        bs = self.cipher.block_size
        # RFC 2409 5.3 / 2408 3.5: pad to the block size (zero bytes; the
        # payload chain tells the receiver where the real data ends).
        pad = (-len(body)) % bs
        ct = self.cipher.encrypt(self.enc_key, self._iv_for(exchange, message_id),
                                 body + bytes(pad))
        self._set_iv(exchange, message_id, ct[-bs:])
        return ct

    def _emit(self, data: bytes) -> None:
        """Queue one message, in IKE fragments when the peer takes them and it is large."""
        size = self.config.fragment_size
        if self.peer_frag and size and len(data) > size:
            for piece in fragment_split(data, size, self._next_fragment_id()):
                self._out.append(Datagram(piece, self.remote, self.local_port,
                                          self.transport))
            self.stats["fragmented_messages"] += 1
            return
        self._out.append(Datagram(data, self.remote, self.local_port, self.transport))

    def _next_fragment_id(self) -> int:
        self._frag_id = (getattr(self, "_frag_id", 0) % 0xFFFF) + 1
        return self._frag_id

    def answered(self, message_id: int) -> None:
        self._pending.pop(message_id, None)

    def _is_retransmission(self, hdr: Header, data: bytes, remote: Address,
                           local_port: int) -> bool:
        seen = self._last_in.get(hdr.message_id)
        if seen is None or seen[0] != _digest(data):
            return False
        # RFC 2408 5 / 2409 5: a duplicate gets our last answer again, once.
        self.drops["retransmission"] += 1
        if seen[1] is not None and (remote == self.remote or not hdr.flags & Flag.ENCRYPTION):
            self._emit(seen[1])
            self.stats["retransmissions_answered"] += 1
        return True

    def _remember_in(self, message_id: int, data: bytes) -> None:
        prev = self._last_in.get(message_id)
        reply = prev[1] if prev is not None and prev[0] == _digest(data) else None
        if reply is None:
            reply = self._sent_now.get(message_id)
        self._last_in[message_id] = (_digest(data), reply)
        self._last_in.move_to_end(message_id)
        while len(self._last_in) > 8:
            self._last_in.popitem(last=False)

    # ------------------------------------------------------------- helpers
    def new_message_id(self) -> int:
        while True:
            mid = int.from_bytes(self.config.rng(4), "big")
            if mid and mid not in self._used_message_ids and mid not in self.exchanges:
                self._remember_message_id(mid)
                return mid

    def new_spi(self) -> int:
        if self.config.spi_allocator is not None:
            return self.config.spi_allocator()
        while True:
            spi = int.from_bytes(self.config.rng(4), "big")
            if spi >= 256:  # 1..255 are reserved by IANA (RFC 4303 2.1)
                return spi

    def _remember_message_id(self, mid: int) -> None:
        self._used_message_ids[mid] = None
        if len(self._used_message_ids) > USED_MESSAGE_IDS:
            self._used_message_ids.popitem(last=False)

    def start_exchange(self, kind: str, message_id: int, we_started: bool, state: str) -> Exchange:
        assert self.hash is not None and self.cipher is not None
        iv = phase2_iv(self.hash, self.p1_last_block, message_id, self.cipher.block_size)
        x = Exchange(kind, message_id, we_started, state, iv)
        self.exchanges[message_id] = x
        self._remember_message_id(message_id)
        return x

    def end_exchange(self, message_id: int) -> None:
        self.exchanges.pop(message_id, None)
        self._pending.pop(message_id, None)

    def emit(self, event: ev.Event) -> None:
        self._events.append(event)

    def _log(self, cls: str, severity: int, text: str, reason: str = "") -> None:
        if severity <= self.config.log_severity:
            source = self._unauth_source
            if source is None and self.established_at is None:
                source = self.remote  # phase 1 never authenticated: a timeout, a retransmit
            self._events.append(ev.LogLine(cls, severity, text, source, reason))

    def log(self, cls: str, severity: int, text: str) -> None:
        self._log(cls, severity, text)

    def _log_decode(self, direction: str, msg: Message, remote: Address) -> None:
        # Cisco client style: "SENDING >>> ISAKMP OAK AG (SA, KE, NON, ID, VID)"
        if self.config.log_severity < 8:  # nobody keeps decodes: do not build them
            return
        names = ", ".join(msg.payload_names())
        self._log("IKEDECODE", 8, f"{direction} ISAKMP OAK {_exchange_short(msg.exchange)}"
                  f" ({names}) {'to' if direction.startswith('S') else 'from'}"
                  f" {remote[0]}:{remote[1]}")
        self._log("IKEDECODE", 9, msg.describe(detail=True))

    def _follow_peer(self, remote: Address, local_port: int) -> None:
        if remote != self.remote:
            old = self.remote
            self.remote = remote
            self.emit(ev.PeerEndpointChanged(old, remote))
            self._log("NATT", 4, f"peer moved from {old[0]}:{old[1]} to {remote[0]}:{remote[1]}"
                      " (authenticated message from a new NAT mapping, RFC 3947 section 5)")
        if local_port != self.local_port or self.rx_transport is not self.transport:
            self.local_port, self.transport = local_port, self.rx_transport

    # -------------------------------------------------------------- failure
    def _fail(self, e: IkeError, now: float) -> None:
        unknown = self.data.get("unknown_group")
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
        from vpnhub.ike import informational

        informational.send_notify(self, notify, now)

    def terminate(self, reason: str, now: float, *, by_peer: bool, notify_peer: bool) -> None:
        """End the SA: optionally DELETE the children and the ISAKMP SA at the peer."""
        if self.state is State.DELETED:
            return
        from vpnhub.ike import informational

        if notify_peer and self.state is State.ESTABLISHED:
            informational.send_delete_all(self, now)
        for child in list(self.children.values()):
            self.emit(ev.ChildSADeleted(child.spi_in, child.spi_out, by_peer))
        self.children.clear()
        self.state = State.DELETED
        self._pending.clear()
        self.exchanges.clear()
        self.emit(ev.SADeleted(reason, by_peer))

    def delete(self, now: float, reason: str = "deleted by administrator") -> None:
        """Tear the SA down, telling the peer (RFC 2408 3.15 DELETE)."""
        self.terminate(reason, now, by_peer=False, notify_peer=True)

    # --------------------------------------------------------------- timers
    def _child_deadlines(self) -> list[float]:
        from vpnhub.ike.quick import REKEY_INITIATOR, REKEY_RESPONDER

        out = []
        for c in self.children.values():
            if c.lifetime:
                out.append(c.established + c.lifetime)
                if not c.rekeyed:
                    share = REKEY_INITIATOR if c.we_initiated else REKEY_RESPONDER
                    out.append(c.established + c.lifetime * share)
        return out

    def _handle_timer(self, now: float) -> None:
        if self.state is State.DELETED:
            return
        if self.state is not State.ESTABLISHED and now >= self.created + self.config.phase1_timeout:
            self.drops["phase1_timeout"] += 1
            detail = f"phase 1 did not complete within {self.config.phase1_timeout:.0f} s"
            unknown = self.data.get("unknown_group")
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
        from vpnhub.ike import informational, quick

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
        if self.role is not Role.INITIATOR or self.data.get("rekey_announced"):
            return
        if self.lifetime and self.established_at is not None and \
                now >= self.established_at + self.lifetime * PHASE1_REKEY_AT:
            self.data["rekey_announced"] = True
            left = self.established_at + self.lifetime - now
            self._log("IKE", 5, f"IKE SA lifetime nearly over ({left:.0f} s left): rekeying")
            self.emit(ev.Phase1RekeyDue(left))

    def _retransmit(self, now: float) -> None:
        for mid, p in list(self._pending.items()):
            if now < p.next_at:
                continue
            if p.tries >= self.config.retransmit_tries:
                self._pending.pop(mid, None)
                reason = "no answer to our message after "
                reason += f"{p.tries} retransmissions"
                self.drops["retransmit_exhausted"] += 1
                self._log("IKE", 3, f"peer {self.remote[0]}:{self.remote[1]}: {reason}")
                self.emit(ev.DeadPeer(reason))
                self.terminate(reason, now, by_peer=False, notify_peer=False)
                return
            p.tries += 1
            # bounded exponential back-off (RFC 2408 leaves it to us)
            p.next_at = now + self.config.retransmit_interval * (2 ** min(p.tries, 4))
            self._emit(p.datagram_data)
            self.stats["retransmissions"] += 1

    # ------------------------------------------------------------ actions
    def initiate(self, now: float) -> None:
        """Initiator: send the first phase 1 message."""
        from vpnhub.ike import aggressive, main_mode

        if self.config.mode == "main":
            main_mode.initiate(self, now)
        else:
            aggressive.initiate(self, now)

    def xauth_reply(self, user: str, password: Secret, now: float) -> None:
        from vpnhub.ike import transaction

        transaction.client_xauth_reply(self, user, password, now)

    def xauth_result(self, ok: bool, now: float, message: str = "") -> None:
        from vpnhub.ike import transaction

        transaction.server_xauth_result(self, ok, now, message)

    def request_modecfg(self, now: float) -> None:
        from vpnhub.ike import transaction

        transaction.client_modecfg_request(self, now)

    def modecfg_reply(self, cfg: ev.ModeConfig, now: float) -> None:
        from vpnhub.ike import transaction

        transaction.server_modecfg_reply(self, cfg, now)

    def modecfg_push(self, cfg: ev.ModeConfig, now: float) -> None:
        from vpnhub.ike import transaction

        transaction.server_modecfg_set(self, cfg, now)

    def start_quick_mode(self, now: float, local_ts: ipaddress.IPv4Network | None = None,
                         remote_ts: ipaddress.IPv4Network | None = None,
                         rekey_of: int | None = None) -> int:
        from vpnhub.ike import quick

        return quick.initiate(self, now, local_ts, remote_ts, rekey_of)

    def send_dpd(self, now: float) -> None:
        from vpnhub.ike import informational

        informational.send_r_u_there(self, now)

    def delete_child(self, spi_in: int, now: float) -> None:
        from vpnhub.ike import informational

        informational.delete_child(self, spi_in, now)

    def notify_peer(self, notify: NotifyType, now: float) -> None:
        from vpnhub.ike import informational

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
        new.data["replaces"] = self
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

    def protocol_spi(self) -> bytes:
        return self.icookie + self.rcookie


def _exchange_name(exchange: int) -> str:
    try:
        return ExchangeType(exchange).name
    except ValueError:
        return f"exchange {exchange}"


def _exchange_short(exchange: int) -> str:
    names: dict[int, str] = {
        ExchangeType.AGGRESSIVE: "AG",
        ExchangeType.IDENTITY_PROTECTION: "MM",
        ExchangeType.QUICK_MODE: "QM",
        ExchangeType.INFORMATIONAL: "INFO",
        ExchangeType.TRANSACTION: "TRANS",
    }
    return names.get(exchange, str(exchange))
