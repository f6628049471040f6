"""The state of one ISAKMP SA, below every exchange (the task split of strongSwan).

`SaState` holds what the exchanges share: cookies, role, the peer's address,
port and transport, keys, the CBC chains of RFC 2409 appendix B (phase 1 and
one per phase 2 exchange), message IDs, the send / retransmit queue and the
events queue. It also holds each exchange's typed scratch (`Phase1Scratch`,
`TransactionState`, `QuickScratch`). It imports no exchange module: the
exchanges (`phase1`, `aggressive`, `main_mode`, `transaction`, `quick`,
`informational`) take a `SaState` and sit on top of it, and `sa.IkeSA`, the
facade the drivers use, sits on top of them.
"""

from __future__ import annotations

import enum
import hashlib
import ipaddress
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, overload

from vpnhub.crypto.cipher import IkeCipher, KeyedCbc
from vpnhub.crypto.dh import DHKeyPair
from vpnhub.crypto.keys import phase2_iv
from vpnhub.crypto.prf import HashAlg, KeyedPrf
from vpnhub.crypto.randpool import random_bytes
from vpnhub.ike import events as ev
from vpnhub.ike.dhjob import DhOffload
from vpnhub.ike.dhpool import DhPool
from vpnhub.ike.errors import IkeError
from vpnhub.ike.fragment import Reassembler
from vpnhub.ike.fragment import split as fragment_split
from vpnhub.ike.msgids import MessageIdWindow
from vpnhub.ike.pkiseam import PeerKey, SigCredentials
from vpnhub.ike.policy import EspSuite, P1Suite, Policy
from vpnhub.ike.transport import Transport, transport_for_port
from vpnhub.secret import Secret
from vpnhub.wire.constants import ExchangeType, Flag, NotifyType
from vpnhub.wire.errors import WireError
from vpnhub.wire.message import HEADER_LEN, Header, Message, encode_message
from vpnhub.wire.payloads import (
    Payload,
    decode_payloads,
    encode_payloads,
)

Address = tuple[str, int]
# The transport ESP goes by, as far as the engine knows, from the one IKE goes by
# (the names of the data plane and the session record). IKE on UDP 500 means bare
# ESP (IP protocol 50) or Cisco IPsec over UDP, which only Mode Config decides:
# the concentrator tells them apart (ConcentratorCore._inbound_spi).
_ESP_TRANSPORT: Final = {Transport.IKE: "esp", Transport.NATT: "natt", Transport.CTCP: "ctcp"}
# the E flag as a plain int: `int & Flag.ENCRYPTION` runs IntFlag's Python-level
# __rand__ and builds a Flag (~2 us per received message, issue 13)
_ENCRYPTED: Final = int(Flag.ENCRYPTION)
IKE_PORT = 500
NATT_PORT = 4500

# Looks up the group PSK for an identity (id type, id data) seen from `remote`;
# Main Mode calls it with id_type 0 before the identity is known (RFC 2409 5.4).
PskLookup = Callable[[int, bytes, Address], Secret | None]


class Role(enum.Enum):
    INITIATOR = "initiator"
    RESPONDER = "responder"

    # members are singletons compared by identity: hashed by it too, in C (Enum's own
    # __hash__ is a Python call, paid twice per message by the transitions table)
    __hash__ = object.__hash__


class State(enum.Enum):
    INITIAL = "initial"
    AM_I_SENT1 = "aggressive: initiator sent message 1"
    AM_R_SENT2 = "aggressive: responder sent message 2"
    MM_I_SENT1 = "main: initiator sent message 1"
    MM_R_SENT2 = "main: responder sent message 2"
    MM_I_SENT3 = "main: initiator sent message 3"
    MM_R_SENT4 = "main: responder sent message 4"
    MM_I_SENT5 = "main: initiator sent message 5"
    ESTABLISHED = "established"
    DELETED = "deleted"

    __hash__ = object.__hash__  # as Role's


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
    # Quick Modes the peer started that wait for their message 3, each holding an
    # inbound ESP SA installed at message 2 (events.ChildSAInboundReady): beyond this a
    # message 1 is dropped (counted "quick_mode_limit"; the peer retransmits it once
    # one finished). A peer that authenticated could otherwise pile up inbound SAs in
    # the data plane; each one goes when its message 2 is no longer answered (the
    # retransmissions run out) at the latest. LAN-to-LAN peers start one Quick Mode
    # per pair of networks at once (strongSwan), so it is not 1.
    max_pending_quick_modes: int = 16
    phase1_timeout: float = 30.0  # a half-open SA is dropped after this
    # idle deadlines (DPD, lifetimes, rekeys; not retransmissions) are rounded up to a
    # multiple of this many seconds, so one timer wake serves every SA due in that
    # slot (issue 13, bench/idle_timers.py); 0 = exact deadlines
    idle_timer_grid: float = 1.0
    # seconds of silence beyond `dpd_interval` before the first R-U-THERE. The
    # concentrator sets one grid step: a client asking on the same interval rounds
    # its deadline up to the same slot of the same clock, and both then asked at
    # once, each answering the other; with the grace the client's R-U-THERE comes
    # first and proves the peer alive (RFC 3706 5.5 leaves the idle period to each
    # peer; a silent one is asked at most that much later). Issue 13.
    dpd_grace: float = 0.0
    # responder: phase 1 done, but XAUTH and Mode Config (the address) not after this:
    # the SA is deleted (a client that never finishes would linger, answering DPD;
    # Cisco IOS "crypto isakmp xauth timeout" defaults to 60 s for a user typing)
    xauth_timeout: float = 60.0
    application_version: str = "vpnhub"
    # the most detailed severity the driver keeps or prints: lines above it (the
    # IKEDECODE decodes at 8 and 9 cost real time per message) are not even built
    log_severity: int = 13
    send_initial_contact: bool = True
    # initiator (issue 17): follow the Cisco load-balance notify (40501) a cluster's
    # virtual address sends instead of XAUTH (events.RedirectRequested), and say so
    # the way vpnc does: its Cisco client vendor ID in Aggressive Mode message 3, by
    # which the concentrator tells a client that follows the notify
    follow_redirects: bool = False
    extra_vendor_ids: tuple[bytes, ...] = ()
    # IKE fragmentation: messages larger than this go in fragments when the peer
    # announced the FRAGMENTATION vendor ID (0 = never); `fragmentation` announces it.
    fragmentation: bool = True
    fragment_size: int = 0
    # the SPI of each new inbound ESP SA (Quick Mode, both roles), from the peer's
    # address and the transport name ESP goes by ("natt", "esp", "cisco-udp",
    # "ctcp"); None: a random one. With several data-plane workers the SPI names
    # the worker that owns the SA (issue 16, vpnhub/esp/spi.py)
    spi_allocator: Callable[[Address, str], int] | None = None
    # cookies, nonces, message IDs, SPIs: the kernel's CSPRNG, drawn in blocks
    rng: Callable[[int], bytes] = random_bytes
    # issue 14, signature authentication (ike.sigauth): our certificate, key and peer
    # checks; the phase 1 methods a group allows, by its ID (None: Main Mode, before
    # the ID, so every group's); the group of a certificate's OU values for a method
    pki: SigCredentials | None = None
    auth: str = "psk"  # initiator: "psk", "hybrid" (HybridInitRSA) or "rsa" (XAUTHInitRSA)
    auth_methods_for: Callable[[bytes | None], tuple[int, ...]] | None = None
    group_for_cert: Callable[[tuple[str, ...], int], str | None] | None = None
    # responder: is this ID a configured group that has no pre-shared key (it allows
    # only "rsa" / "hybrid")? Then a missing key is no unknown group (ike.standin):
    # auth_methods_for offers it no PSK method, so no key is ever needed
    group_without_psk: Callable[[int, bytes], bool] | None = None
    # responder (issue 17, a cluster's virtual address): asked once phase 1 is
    # established, before XAUTH starts; an address sends the client there with the
    # Cisco load-balance notify (informational.send_redirect) instead of the first
    # XAUTH request; None: XAUTH as usual
    redirect_for: Callable[[SaState], ipaddress.IPv4Address | None] | None = None


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
    # transactions: the ATTR identifier to answer with (draft-dukes-ike-mode-cfg 3.2),
    # the attributes a Mode Config request asked for, the XAUTH status we SET
    identifier: int = 0
    requested: tuple[int, ...] = ()
    xauth_ok: bool = False
    quick: QuickScratch | None = None  # Quick Mode only


@dataclass
class QuickScratch:
    """What a Quick Mode keeps between its messages (RFC 2409 5.5)."""

    local_ts: ipaddress.IPv4Network
    remote_ts: ipaddress.IPv4Network
    spi_in: int
    ni: bytes
    nr: bytes = b""
    spi_out: int = 0
    offers: list[EspSuite] = field(default_factory=list)  # initiator: what we proposed
    suite: EspSuite | None = None  # responder: what we chose
    dh: DHKeyPair | None = None  # initiator with PFS: our KE's key pair
    g_qm: bytes | None = None  # responder with PFS: the shared secret
    lifetime: int = 0
    rekey_of: int | None = None  # initiator: the inbound SPI of the child this rekeys
    # responder: KEYMAT of our inbound SA, handed to the driver with message 2
    # (events.ChildSAInboundReady, `inbound_early`): it must be removed if no
    # message 3 checks out (SaState.abandon_quick_mode)
    k_in: bytes = field(default=b"", repr=False)
    inbound_early: bool = False


@dataclass
class Phase1Scratch:
    """What phase 1 (Aggressive or Main Mode) keeps between its messages."""

    dh: DHKeyPair | None = None  # until SKEYID is computed: the private value goes then
    # the endpoint lends a pair computed ahead (ike.dhpool) or, under a flood, a
    # briefly shared one (ike.dhreuse)
    dh_source: Callable[[int], DHKeyPair] | None = None
    idii_b: bytes = b""  # initiator: the body of our ID payload, for HASH_I (RFC 2409 5)
    peer_id_b: bytes = b""  # Aggressive responder: the initiator's ID body, for HASH_I
    natd3: list[Payload] = field(default_factory=list)  # Main responder: message 3's NAT-D
    peer_natt: str = ""  # the best NAT-T version the peer announced ("RFC 3947", ...)
    nat_without_natt: str = ""  # why NAT-T is missing although a NAT is in the path
    unknown_group: str | None = None  # answered with a stand-in key (ike.standin)
    # issue 14 (ike.sigauth): the ID whose group's methods apply (Aggressive responder),
    # the peer's verified certificate, the group it selected, its subject for the log
    auth_id: bytes | None = None
    peer_key: PeerKey | None = None
    cert_group: str = ""


@dataclass
class TransactionState:
    """XAUTH and Mode Config calls that wait for the driver (or the user)."""

    xauth_pending: bool = False  # server: credentials out, the driver's verdict not yet in
    xauth_mid: int | None = None  # client: the XAUTH request that waits for the user
    modecfg_pending: int | None = None  # server: the Mode Config request that waits
    ddns_hostname: str = ""  # server: the hostname a Unity client sent


@dataclass
class EndpointMarks:
    """What `IkeEndpoint` notes on an SA it holds: its half-open key (RFC 4987 3.4
    bounds), whether the peer answered, and the deadline queued in its timer heap."""

    half_open_key: tuple[bytes, Address] | None = None
    verified: bool = False
    timer_at: float | None = None
    # the endpoint's pool of DH pairs computed ahead, for Quick Mode PFS (ike.dhpool)
    dh_pool: DhPool | None = None
    # the shell's worker for phase 1's g^xy, if it has one (ike.dhjob)
    dh_offload: DhOffload | None = None


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


class _PendingKey:
    """SKEYID_d, SKEYID_a, SKEYID_e or the phase 1 key, while the SA holds no value of
    its own: b"" before phase 1 derived it; while g^xy is still on its way
    (`SaState.defer_keys`, ike.dhjob) the first read derives all four.

    A non-data descriptor: an assigned key is a plain instance attribute, which
    Python finds before this, so the ~20 reads of a handshake cost no call (issue 13);
    `defer_keys` removes the instance attributes so that reads come here again."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, sa: None, owner: type) -> _PendingKey: ...
    @overload
    def __get__(self, sa: SaState, owner: type) -> bytes: ...

    def __get__(self, sa: SaState | None, owner: type) -> bytes | _PendingKey:
        if sa is None:
            return self
        if sa.keys_pending is None:
            return b""  # not derived yet
        sa._resolve_keys()
        value: bytes = sa.__dict__[self.name]
        return value


def message_digest(data: bytes) -> bytes:
    """What the answer cache knows a received message by (RFC 2408 5)."""
    return hashlib.sha256(data).digest()[:16]


# `SaState._open` -> `commit_iv`: (exchange, message ID, the message's last CBC block)
IvCommit = tuple[int, int, bytes]


class SaState:
    """One ISAKMP SA's state and its send machinery, for either role."""

    # the message being handled: (its source, our port, now, its IV commit: the
    # exchange, message ID and last CBC block `commit_iv` moves that chain to, None
    # for a message in the clear); set by the facade's receive for the length of one
    # handler call
    _current: tuple[Address, int, float, IvCommit | None]

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
        # SKEYID_d/a/e and the encryption key (`_PendingKey`: b"" until set) while
        # g^xy is still being computed (ike.dhjob): the first read of any of the four
        # derives them
        self.keys_pending: Callable[[], tuple[bytes, bytes, bytes, bytes]] | None = None
        # `cipher` with `enc_key`, made once for the messages of a negotiation and let go
        # when the SA falls idle (`release_cbc`): its OpenSSL context is ~1 KiB, and an
        # idle session must stay small (issue 13)
        self._cbc: KeyedCbc | None = None
        self._cbc_key = b""
        # SKEYID, SKEYID_a, SKEYID_d made ready for the prf calls of a negotiation
        # (`keyed`), let go with the cipher
        self._keyed: dict[bytes, KeyedPrf] = {}
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
        # each exchange's state between its messages, and the endpoint's marks
        self.p1 = Phase1Scratch()
        self.trans = TransactionState()
        self.endpoint_marks = EndpointMarks()
        self.initial_contact = False  # the peer sent INITIAL-CONTACT (RFC 2407 4.6.3.3)
        self.rekey_announced = False  # initiator: Phase1RekeyDue was emitted
        # peer capabilities (from vendor IDs)
        self.peer_vendor_ids: list[str] = []
        self.peer_xauth = self.peer_dpd = self.peer_unity = self.peer_frag = False
        self.peer_cisco_client = False  # a Cisco VPN client's own vendor ID (vpnc sends it)
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
        # issue 17: where the Cisco load-balance notify sent this client, and when the
        # SA, kept meanwhile to repeat the notify, is forgotten (sa.IkeSA timers)
        self.redirected_to: ipaddress.IPv4Address | None = None
        self.redirect_ends_at: float | None = None
        # phase 2
        self.exchanges: dict[int, Exchange] = {}
        self.children: dict[int, ChildSA] = {}
        self._pending: dict[int, Pending] = {}
        self._last_in: OrderedDict[int, tuple[bytes, bytes | None]] = OrderedDict()
        # recent message IDs, so a new exchange never reuses one (RFC 2408 3.1); a
        # bounded window: with DPD every 30 s an unbounded set grows for ever; a fixed
        # array, not a dict: it is per-session memory once full (msgids.py, issue 13)
        self._used_message_ids = MessageIdWindow()
        # the message IDs of the Quick Modes we answered (sent message 2): a message 1
        # under one of them that is not a retransmission the answer cache caught (its
        # 8 entries long gone, or other bytes) must not start, and install, a second
        # Quick Mode (quick.py); 16 slots, allocated on the first answer
        self.quick_answered = MessageIdWindow(16)
        # liveness (RFC 3706)
        self.last_heard = now
        self.dpd_seq = int.from_bytes(rng(4), "big") & 0x7FFFFFFF
        self.dpd_outstanding = 0
        self.dpd_next_at: float | None = None
        # the newest R-U-THERE sequence number the peer sent (RFC 3706 7: an older one
        # is a replay, dropped; informational.check_r_u_there_seq)
        self.dpd_peer_seq: int | None = None
        # made by the first fragment (`reassembler`): few peers fragment, every SA
        # would carry an empty one
        self._reassembler: Reassembler | None = None
        self._sent_now: dict[int, bytes] = {}
        # the source of the message being received until it authenticates (commit_iv)
        self._unauth_source: Address | None = None

    # ------------------------------------------------------- phase 1 keys
    # RFC 2409 5: these need g^xy, which may still be on its way (ike.dhjob)
    def _resolve_keys(self) -> None:
        derive, self.keys_pending = self.keys_pending, None
        assert derive is not None
        self.skeyid_d, self.skeyid_a, self.skeyid_e, self.enc_key = derive()

    def defer_keys(self, derive: Callable[[], tuple[bytes, bytes, bytes, bytes]]) -> None:
        """SKEYID_d, SKEYID_a, SKEYID_e and the key come from `derive`, on first read."""
        for name in ("skeyid_d", "skeyid_a", "skeyid_e", "enc_key"):
            self.__dict__.pop(name, None)  # else a read finds that, not the descriptor
        self.keys_pending = derive

    skeyid_d = _PendingKey()
    skeyid_a = _PendingKey()
    skeyid_e = _PendingKey()
    enc_key = _PendingKey()

    # ------------------------------------------------------------- outputs
    def datagrams_to_send(self) -> list[Datagram]:
        out, self._out = self._out, []
        return out

    def next_event(self) -> ev.Event | None:
        return self._events.popleft() if self._events else None

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

    # ------------------------------------------------- a received message
    def _open(self, hdr: Header, data: bytes) -> tuple[Message, IvCommit | None]:
        """Decrypt (if E is set) and decode; the IV advances only via `commit_iv`, to
        the block returned here (RFC 2409 appendix B), once the message authenticated."""
        body = data[HEADER_LEN:]
        if not hdr.flags & _ENCRYPTED:
            payloads = decode_payloads(hdr.next_payload, body)
            return self._message(hdr, payloads), None
        if self.cipher is None:
            raise IkeError("encrypted_before_keys", "encrypted message before keys exist",
                           NotifyType.INVALID_FLAGS, send_notify=False)
        bs = self.cipher.block_size
        if not body or len(body) % bs:
            raise IkeError("bad_ciphertext_length", f"encrypted body of {len(body)} bytes",
                           NotifyType.PAYLOAD_MALFORMED, send_notify=False)
        iv = self._iv_for(hdr.exchange, hdr.message_id)
        plain = self._keyed_cbc().decrypt(iv, body)
        try:
            payloads = decode_payloads(hdr.next_payload, plain, trailing_ok=True)
        except WireError as e:
            # Wrong keys (a wrong PSK) decrypt to garbage: say so (RFC 2409 5).
            raise IkeError("decryption_failed", f"cannot decode decrypted body ({e.reason}):"
                           " wrong pre-shared key?", NotifyType.PAYLOAD_MALFORMED,
                           send_notify=False) from e
        return self._message(hdr, payloads), (hdr.exchange, hdr.message_id, body[-bs:])

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
        if commit is not None:
            self._set_iv(*commit)
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

    def _keyed_cbc(self) -> KeyedCbc:
        """The phase 1 cipher keyed with `enc_key` (made again if either changed)."""
        assert self.cipher is not None
        k = self._cbc
        if k is None or k.cipher is not self.cipher or self._cbc_key is not self.enc_key:
            k = self._cbc = self.cipher.keyed(self.enc_key)
            self._cbc_key = self.enc_key
        return k

    def release_cbc(self) -> None:
        """Let the keyed cipher and prfs go (the SA waits for nothing: the next message,
        a DPD probe 30 s on, makes the cipher again)."""
        self._cbc, self._cbc_key = None, b""
        self._keyed = {}

    def keyed(self, key: bytes) -> KeyedPrf:
        """This SA's `key` (SKEYID, SKEYID_a or SKEYID_d) as a prf for the HASHes and
        keys of a negotiation (`HashAlg.keyed`): the key's padded blocks are hashed
        once, not per call (issue 13: ~18 prf calls per handshake under 3 keys). Let
        go with the cipher when the SA falls idle (`release_cbc`)."""
        assert self.hash is not None
        k = self._keyed.get(key)
        if k is None:
            k = self._keyed[key] = self.hash.keyed(key)
        return k

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
             encrypt: bool = False, expect_reply: bool = True, now: float = 0.0,
             body: bytes | None = None) -> bytes:
        """Encode (and encrypt) a message, queue it and remember it for retransmission.
        `body`: the payloads already encoded (`wire.payloads.encode_hashed`)."""
        msg = Message(self.icookie, self.rcookie, exchange,
                      Flag.ENCRYPTION if encrypt else 0, message_id, payloads)
        if body is None:
            body = encode_payloads(payloads)
        if encrypt:
            body = self._encrypt(exchange, message_id, body)
        data = encode_message(msg, body)
        if self.config.log_severity >= 8:  # nobody keeps decodes: no call either
            self._log_decode("SENDING >>>", msg, self.remote)
        self.queue_sent(message_id, data, expect_reply=expect_reply, now=now)
        return data

    def queue_sent(self, message_id: int, data: bytes, *, expect_reply: bool,
                   now: float) -> None:
        """Queue an encoded message and remember it: for retransmission (`expect_reply`)
        and as the answer to a retransmitted request (RFC 2408 5)."""
        self._sent_now[message_id] = data
        self._emit(data)
        self.stats["messages_sent"] += 1
        if expect_reply:
            self._pending[message_id] = Pending(data, now + self.config.retransmit_interval)
        else:
            self._pending.pop(message_id, None)
        if message_id in self._last_in:
            self._last_in[message_id] = (self._last_in[message_id][0], data)

    def _encrypt(self, exchange: int, message_id: int, body: bytes) -> bytes:
        assert self.cipher is not None
        bs = self.cipher.block_size
        # RFC 2409 5.3 / 2408 3.5: pad to the block size (zero bytes; the
        # payload chain tells the receiver where the real data ends).
        pad = (-len(body)) % bs
        ct = self._keyed_cbc().encrypt(self._iv_for(exchange, message_id), body + bytes(pad))
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

    def reassembler(self) -> Reassembler:
        """This SA's IKE fragments being joined (a few messages at a time)."""
        if self._reassembler is None:
            self._reassembler = Reassembler(max_messages=4)
        return self._reassembler

    def _next_fragment_id(self) -> int:
        self._frag_id = (getattr(self, "_frag_id", 0) % 0xFFFF) + 1
        return self._frag_id

    def answered(self, message_id: int) -> None:
        self._pending.pop(message_id, None)

    def _is_retransmission(self, hdr: Header, digest: bytes, remote: Address) -> bool:
        """`digest`: the message's `message_digest`."""
        seen = self._last_in.get(hdr.message_id)
        if seen is None or seen[0] != digest:
            return False
        # RFC 2408 5 / 2409 5: a duplicate gets our last answer again, once.
        self.drops["retransmission"] += 1
        if seen[1] is not None and (remote == self.remote or not hdr.flags & _ENCRYPTED):
            self._emit(seen[1])
            self.stats["retransmissions_answered"] += 1
        return True

    def answer_again(self, message_id: int, data: bytes) -> None:
        """`data` is what a retransmission of the peer's message `message_id` gets
        (RFC 2408 5), though it went out under a message ID of its own (the redirect
        that answers Aggressive Mode message 3, informational.send_redirect), unless
        that message already has an answer (Main Mode's message 6)."""
        self._sent_now.setdefault(message_id, data)

    def _remember_in(self, message_id: int, data: bytes, digest: bytes | None = None) -> None:
        """Note the message (`digest`: its `message_digest`, if the caller has it) and the
        answer it got, for retransmissions of it (RFC 2408 5)."""
        if digest is None:
            digest = message_digest(data)
        prev = self._last_in.get(message_id)
        reply = prev[1] if prev is not None and prev[0] == digest else None
        if reply is None:
            reply = self._sent_now.get(message_id)
        self._last_in[message_id] = (digest, reply)
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
        """Our SPI for a new inbound ESP SA: what the peer puts on its packets to us."""
        if self.config.spi_allocator is not None:
            return self.config.spi_allocator(self.remote, _ESP_TRANSPORT[self.transport])
        while True:
            spi = int.from_bytes(self.config.rng(4), "big")
            if spi >= 256:  # 1..255 are reserved by IANA (RFC 4303 2.1)
                return spi

    def _remember_message_id(self, mid: int) -> None:
        self._used_message_ids.add(mid)

    def start_exchange(self, kind: str, message_id: int, we_started: bool, state: str) -> Exchange:
        assert self.hash is not None and self.cipher is not None
        iv = phase2_iv(self.hash, self.p1_last_block, message_id, self.cipher.block_size)
        x = Exchange(kind, message_id, we_started, state, iv)
        self.exchanges[message_id] = x
        self._remember_message_id(message_id)
        return x

    def end_exchange(self, message_id: int, why: str = "the exchange ended") -> None:
        """Forget a phase 2 exchange; a Quick Mode we answered whose child was not
        established withdraws its inbound SA (`abandon_quick_mode`)."""
        x = self.exchanges.pop(message_id, None)
        if x is not None:
            self.abandon_quick_mode(x, why)
        self._pending.pop(message_id, None)

    def emit(self, event: ev.Event) -> None:
        self._events.append(event)

    def _log(self, cls: str, severity: int, text: str, reason: str = "") -> None:
        if severity <= self.config.log_severity:
            source = self._unauth_source
            if source is None and self.established_at is None:
                source = self.remote  # phase 1 never authenticated: a timeout, a retransmit
            self._events.append(ev.LogLine(cls, severity, text, source, reason))

    # the exchanges' way to log (`reason` names a per-packet failure): `_log` itself,
    # not a call that makes a second one (~10 lines per handshake)
    log = _log

    def logs(self, severity: int) -> bool:
        """Whether a line of this severity is kept: a caller whose text is dear to build
        (addresses, names, several fields) asks first. A client that keeps no lines (the
        load generator, issue 13) builds none."""
        return severity <= self.config.log_severity

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

    # -------------------------------------------------------------- the end
    def end(self, reason: str, *, by_peer: bool) -> None:
        """Mark the SA deleted without a word to the peer; its children go with it.

        Telling the peer (RFC 2408 3.15 DELETE) is the informational exchange's
        part: `informational.terminate` sends the DELETE, then calls this."""
        if self.state is State.DELETED:
            return
        for child in list(self.children.values()):
            self.emit(ev.ChildSADeleted(child.spi_in, child.spi_out, by_peer))
        self.children.clear()
        for x in list(self.exchanges.values()):
            self.abandon_quick_mode(x, reason)
        self.state = State.DELETED
        self._pending.clear()
        self.exchanges.clear()
        self.emit(ev.SADeleted(reason, by_peer))

    def abandon_quick_mode(self, x: Exchange, why: str,
                           reason: str = "quick_mode_abandoned") -> None:
        """A Quick Mode we answered ends without a valid message 3: the inbound SA
        handed over with message 2 is withdrawn (events.ChildSAAbandoned), counted
        under `reason` and said at the severity of the other Quick Mode failures."""
        q = x.quick
        if q is None or not q.inbound_early:
            return
        q.inbound_early = False  # withdrawn once
        self.drops[reason] += 1
        self._log("IKE", 4, f"Quick Mode {x.message_id:08x} abandoned before its message 3"
                  f" ({why}): inbound IPsec SA {q.spi_in:08x} removed", reason=reason)
        self.emit(ev.ChildSAAbandoned(x.message_id, q.spi_in, reason))

    def pending_quick_inbound(self) -> list[int]:
        """The inbound SPIs handed over with a message 2 whose message 3 is awaited."""
        return [x.quick.spi_in for x in self.exchanges.values()
                if x.quick is not None and x.quick.inbound_early]

    def child_by_spi(self, spi: int) -> ChildSA | None:
        """The child with this inbound or outbound SPI (a peer's DELETE may name either)."""
        c = self.children.get(spi)
        if c is not None:
            return c
        return next((c for c in self.children.values() if c.spi_out == spi), None)

    # --------------------------------------------------------- retransmit
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
                self.end(reason, by_peer=False)
                return
            p.tries += 1
            # bounded exponential back-off (RFC 2408 leaves it to us)
            p.next_at = now + self.config.retransmit_interval * (2 ** min(p.tries, 4))
            self._emit(p.datagram_data)
            self.stats["retransmissions"] += 1

    def protocol_spi(self) -> bytes:
        return self.icookie + self.rcookie


def _exchange_short(exchange: int) -> str:
    names: dict[int, str] = {
        ExchangeType.AGGRESSIVE: "AG",
        ExchangeType.IDENTITY_PROTECTION: "MM",
        ExchangeType.QUICK_MODE: "QM",
        ExchangeType.INFORMATIONAL: "INFO",
        ExchangeType.TRANSACTION: "TRANS",
    }
    return names.get(exchange, str(exchange))
