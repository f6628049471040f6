"""Fuzz target (b): the IKE responder, `IkeEndpoint.receive` and its timers.

One input is a sequence of records (`records.py`): datagrams from a client
behind a PAT (on port 500, or floated to 4500 after NAT-T), datagrams from a
second source, and clock advances that run `handle_timer`. The endpoint is
configured as the concentrator runs it: a group PSK, XAUTH, Mode Config,
NAT-T, DPD, legacy crypto allowed (vpnc proposes MODP 1024).

So that the fuzzer gets past message 1, everything random in the responder
(cookies, nonces, message IDs, SPIs, DH private values) comes from a
generator reset for every input: replaying a recorded initiator exchange
(`make_seeds.py`) then meets exactly the responder it was recorded against,
and a mutation of message 3 or of a Quick Mode reaches the code behind the
HASH checks.

Invariants (any violation raises, which libFuzzer reports as a crash):
- no exception escapes receive(), handle_timer(), datagrams_to_send(),
  next_event();
- the engine's catch-alls never fire: an "internal error" LogLine or an
  `internal_error` drop is a bug that a catch-all hid from the concentrator;
- state stays bounded: SAs, half-open entries and timers are few for one
  input's few datagrams;
- an inbound SA handed over with Quick Mode message 2 (`ChildSAInboundReady`)
  is handed over once, then established (`ChildSAEstablished`, `inbound_early`)
  or withdrawn (`ChildSAAbandoned`) before its IKE SA ends, and no more than
  `max_pending_quick_modes` wait at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from records import split

from vpnhub.crypto.dh import EcpGroup, EcpKeyPair, ModpGroup, ModpKeyPair
from vpnhub.ike import events as ev
from vpnhub.ike.endpoint import IkeEndpoint
from vpnhub.ike.policy import Policy
from vpnhub.ike.sa import Address, Datagram, IkeConfig, IkeSA
from vpnhub.secret import Secret

SERVER_IP = "203.0.113.50"
PAT_IP = "203.0.113.78"  # the client's PAT: port 500 and 4500 map to these
CLIENT_500: Address = (PAT_IP, 1025)
CLIENT_4500: Address = (PAT_IP, 1026)
OTHER: Address = ("198.51.100.7", 500)  # a second source, sending whatever it likes
GROUP = "vpngroup"  # the lab's group: vpnc's recorded message 1 names it
PSK = "labgroupsecret"
USERS = {"vpnclient1": "userpass1"}
START = 1000.0

# op % 4 of a record
OP_FROM_500, OP_FROM_4500, OP_FROM_OTHER, OP_ADVANCE = range(4)


class DetRng:
    """A deterministic stand-in for os.urandom (SHA-256 in counter mode)."""

    def __init__(self, seed: bytes = b"vpnhub-fuzz") -> None:
        self._seed = seed
        self._n = 0

    def __call__(self, size: int) -> bytes:
        out = b""
        while len(out) < size:
            self._n += 1
            out += hashlib.sha256(self._seed + self._n.to_bytes(8, "big")).digest()
        return out[:size]


_DH_RNG: list[Callable[[int], bytes]] = []  # the innermost deterministic_dh's source


@contextlib.contextmanager
def deterministic_dh(rng: Callable[[int], bytes]) -> Iterator[None]:
    """DH key pairs from `rng` instead of the OS CSPRNG, for the duration only.

    Nested uses switch the source (make_seeds.py gives the recorded initiator
    its own, so that it does not consume the responder's stream).
    """
    _DH_RNG.append(rng)
    modp_gen, ecp_gen = ModpGroup.generate, EcpGroup.generate

    def modp(self: ModpGroup) -> ModpKeyPair:
        x = int.from_bytes(_DH_RNG[-1](self.exponent_bits // 8), "big")
        return ModpKeyPair(self, x | (1 << (self.exponent_bits - 1)))

    def ecp(self: EcpGroup) -> EcpKeyPair:
        # below 2^200 < the order of every NIST curve IKE uses (RFC 5903)
        d = int.from_bytes(_DH_RNG[-1](25), "big") | 1
        return self.from_private(d)

    ModpGroup.generate = modp  # type: ignore[method-assign]
    EcpGroup.generate = ecp  # type: ignore[method-assign]
    try:
        yield
    finally:
        ModpGroup.generate = modp_gen  # type: ignore[method-assign]
        EcpGroup.generate = ecp_gen  # type: ignore[method-assign]
        _DH_RNG.pop()


class InvariantViolation(AssertionError):
    """An invariant of the target failed: a finding, reported as a crash."""


def server_config(rng: Callable[[int], bytes]) -> Callable[[Address, int], IkeConfig]:
    policy = Policy(allow_legacy=True)

    def lookup(id_type: int, data: bytes, remote: Address) -> Secret | None:
        if id_type == 0 or data == GROUP.encode():
            return Secret(PSK)
        return None

    def config_for(remote: Address, local_port: int) -> IkeConfig:
        # log_severity 9: the IKEDECODE lines (describe() of every message) run too
        return IkeConfig(local_address=SERVER_IP, policy=policy, psk_lookup=lookup,
                         natt=True, xauth=True, policy_for=lambda group: None,
                         log_severity=9, rng=rng, fragment_size=576)

    return config_for


@dataclass
class Responder:
    """The endpoint and a driver that answers its events as the concentrator does."""

    rng: DetRng = field(default_factory=DetRng)
    now: float = START
    pool: Iterator[ipaddress.IPv4Address] = field(
        default_factory=lambda: iter(ipaddress.IPv4Network("10.40.1.0/24").hosts()))

    def __post_init__(self) -> None:
        self.endpoint = IkeEndpoint(server_config(self.rng))
        self.sas: dict[int, IkeSA] = {}  # every SA ever made, to drain the deleted ones
        self.established = 0
        self.children = 0
        self.early: dict[int, set[int]] = {}  # per SA: inbound SPIs awaiting message 3
        self.early_seen: set[int] = set()  # every inbound SPI handed over early

    def deliver(self, data: bytes, remote: Address, local_port: int) -> list[Datagram]:
        sa = self.endpoint.receive(data, remote, local_port, self.now)
        if sa is not None:
            self.sas[id(sa)] = sa
        return self._drain()

    def advance(self, seconds: float) -> list[Datagram]:
        self.now += seconds
        for sa in self.endpoint.handle_timer(self.now):
            self.sas[id(sa)] = sa
        return self._drain()

    def _drain(self) -> list[Datagram]:
        out: list[Datagram] = []
        for sa in list(self.sas.values()):
            out += sa.datagrams_to_send()
            self._events(sa)
            out += sa.datagrams_to_send()  # answers the driver's calls queued
            if sa.drops["internal_error"]:
                raise InvariantViolation(f"internal_error drop: {dict(sa.drops)}")
        if len(self.sas) > 64 or self.endpoint.half_open_count() > 64:
            raise InvariantViolation("state grows beyond one SA per datagram")
        return out

    def _events(self, sa: IkeSA) -> None:
        while (e := sa.next_event()) is not None:
            if isinstance(e, ev.LogLine):
                if "internal error" in e.text:
                    raise InvariantViolation(e.text)
            elif isinstance(e, ev.XauthCredentials):
                ok = e.user in USERS and e.password.equals(USERS[e.user])
                sa.xauth_result(ok, self.now)
            elif isinstance(e, ev.ModeConfigRequested):
                sa.modecfg_reply(ev.ModeConfig(
                    address=next(self.pool, None), dns=[ipaddress.IPv4Address("192.168.2.10")],
                    split_include=[ipaddress.IPv4Network("192.168.2.0/24")],
                    banner="Welcome", save_password=False, pfs=False), self.now)
            elif isinstance(e, ev.Phase1Established):
                self.established += 1
            elif isinstance(e, ev.ChildSAEstablished):
                self.children += 1
                if e.inbound_early:
                    self._settle_early(sa, e.spi_in, "established")
            elif isinstance(e, (ev.ChildSAInboundReady, ev.ChildSAAbandoned, ev.SADeleted)):
                self._early(sa, e)
        if sa.state.name != "DELETED":
            self.endpoint.touch(sa)


    def _early(self, sa: IkeSA, e: ev.ChildSAInboundReady | ev.ChildSAAbandoned
               | ev.SADeleted) -> None:
        """The inbound SAs of Quick Mode message 2: once each, bounded, never left over."""
        pending = self.early.setdefault(id(sa), set())
        if isinstance(e, ev.ChildSAInboundReady):
            if e.spi_in in self.early_seen:
                raise InvariantViolation(f"inbound SA {e.spi_in:08x} handed over twice")
            self.early_seen.add(e.spi_in)
            pending.add(e.spi_in)
            if len(pending) > sa.config.max_pending_quick_modes:
                raise InvariantViolation(f"{len(pending)} Quick Modes wait for message 3")
        elif isinstance(e, ev.ChildSAAbandoned):
            self._settle_early(sa, e.spi_in, "withdrawn")
        elif pending:
            raise InvariantViolation(f"IKE SA ended, inbound SAs left installed: {pending}")

    def _settle_early(self, sa: IkeSA, spi: int, how: str) -> None:
        pending = self.early.setdefault(id(sa), set())
        if spi not in pending:
            raise InvariantViolation(f"inbound SA {spi:08x} {how} but not pending")
        pending.discard(spi)


def run(data: bytes) -> Responder:
    """Feed one input to a fresh responder; raises on an invariant violation."""
    r = Responder()
    with deterministic_dh(r.rng):
        for op, body in split(data):
            kind = op % 4
            if kind == OP_FROM_500:
                r.deliver(body, CLIENT_500, 500)
            elif kind == OP_FROM_4500:
                r.deliver(body, CLIENT_4500, 4500)
            elif kind == OP_FROM_OTHER:
                r.deliver(body, OTHER, 500 if op & 0x80 else 4500)
            else:
                # up to 2^16 s: retransmissions, phase 1 timeout, DPD, lifetimes
                r.advance(float(int.from_bytes(body[:2].rjust(2, b"\0"), "big")))
    return r


def one_input(data: bytes) -> None:
    run(data)
