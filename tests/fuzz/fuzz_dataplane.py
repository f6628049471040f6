"""Fuzz target (c): the UDP 4500 demultiplexer and the ESP receive path.

The real `Dataplane` methods run on in-memory sockets: `_from_udp` (the UDP
4500 loop: the inline ESP test, then `udpencap.classify` for the NAT
keepalive 0xFF, the non-ESP marker and garbage), `_from_cisco_udp`,
`_from_raw_esp`, `_ctcp_readable` (cTCP stream framing, `CtcpFramer`) and
`_from_tun` (outbound: routing, the fragmentation policy). Four inbound SAs
are installed, one per transport and suite, so ESP reaches decryption, the
ICV check, the replay window, padding and next-header checks and the inner
source check; records can also carry an inner packet that the harness
encrypts with the peer's keys (then optionally corrupts or replays), so the
fuzzer reaches the code behind the ICV check.

Invariants: nothing raises out of the data plane; only inner packets with
the SA's allowed source (the client's Mode Config address) reach the TUN;
the IKE inbox never holds more than its bound.
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass

from records import join, split

from vpnhub.esp import (
    ESP_3DES,
    ESP_AES_CBC,
    ESP_AES_GCM_16,
    HMAC_MD5_96,
    HMAC_SHA1_96,
    HMAC_SHA2_256_128,
    EspSA,
    SaParams,
    key_lengths,
)
from vpnhub.net.ctcp import ESP_TRAILER, encode_ike
from vpnhub.net.dataplane import (
    Dataplane,
    _CtcpConn,
)
from vpnhub.net.messages import (
    AddInbound,
    AddOutbound,
)
from vpnhub.net.tun import FakeTun
from vpnhub.net.udpencap import CISCO_UDP_KEEPALIVE, NON_ESP_MARKER

Address = tuple[str, int]
PEER_NATT: Address = ("203.0.113.78", 4500)
PEER_CISCO: Address = ("203.0.113.79", 10000)
PEER_CTCP: Address = ("203.0.113.80", 41000)
PEER_ESP: Address = ("198.51.100.9", 0)
ELSEWHERE: Address = ("198.51.100.66", 4500)


class InvariantViolation(AssertionError):
    """An invariant of the target failed: a finding, reported as a crash."""


@dataclass(frozen=True)
class Sa:
    spi: int
    suite: tuple[int, int | None, int | None]
    transport: str
    peer: Address
    allowed_src: str | None

    def params(self) -> SaParams:
        transform, bits, auth = self.suite
        enc, integ = key_lengths(transform, bits, auth)
        keymat = hashlib.shake_256(self.spi.to_bytes(4, "big")).digest(enc + integ)
        return SaParams.from_keymat(self.spi, transform, bits, auth, keymat)


SAS = (
    Sa(0xC0000001, (ESP_AES_CBC, 128, HMAC_SHA1_96), "natt", PEER_NATT, "10.40.1.1"),
    Sa(0xC0000002, (ESP_AES_GCM_16, 128, None), "cisco-udp", PEER_CISCO, "10.40.1.2"),
    Sa(0xC0000003, (ESP_3DES, None, HMAC_MD5_96), "ctcp", PEER_CTCP, "10.40.1.3"),
    Sa(0xC0000004, (ESP_AES_CBC, 256, HMAC_SHA2_256_128), "esp", PEER_ESP, None),
)

# op % 8 of a record
(OP_UDP4500, OP_CISCO_UDP, OP_CTCP, OP_RAW_ESP, OP_SEAL, OP_SEAL_CORRUPT, OP_REPLAY,
 OP_FROM_TUN) = range(8)


class FakeDatagramSocket:
    """recvfrom() from a queue (then BlockingIOError, as a drained socket); sendto() kept."""

    def __init__(self) -> None:
        self.rx: deque[tuple[bytes, Address]] = deque()
        self.tx = 0

    def recvfrom(self, _size: int) -> tuple[bytes, Address]:
        if not self.rx:
            raise BlockingIOError
        return self.rx.popleft()

    def sendto(self, data: bytes, _addr: Address) -> int:
        self.tx += 1
        return len(data)

    def fileno(self) -> int:
        return -1


class FakeStream:
    """The accepted cTCP connection's socket: recv() from a queue, send() accepted."""

    def __init__(self) -> None:
        self.rx: deque[bytes] = deque()

    def recv(self, _size: int) -> bytes:
        if not self.rx:
            raise BlockingIOError
        return self.rx.popleft()

    def send(self, data: bytes) -> int:
        return len(data)

    def getsockname(self) -> Address:
        return ("203.0.113.50", 10000)

    def fileno(self) -> int:
        return -1

    def close(self) -> None:
        pass


class Harness:
    """One data plane for the whole run; its SAs and connection are renewed per input."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.tun = FakeTun("fuzz")
        self.dp = Dataplane(self.tun, clock=lambda: self.now)
        self.udp, self.cisco, self.raw = (FakeDatagramSocket(), FakeDatagramSocket(),
                                          FakeDatagramSocket())
        # set after construction: the fakes have no fd to register with epoll
        self.dp.udp, self.dp.cisco_udp, self.dp.esp = (self.udp, self.cisco,  # type: ignore[assignment]
                                                       self.raw)
        self.senders: list[EspSA] = []  # the peers' ends of the inbound SAs
        self.outbound: list[EspSA] = []
        self.last_sealed: tuple[Sa, bytes] | None = None
        self.stream = FakeStream()
        self.conn: _CtcpConn | None = None

    def reset(self) -> None:
        """Fresh SAs (replay windows, sequence numbers) and cTCP connection where used.

        Only what the last input touched is rebuilt: building an SA (cipher
        contexts) costs more than most inputs.
        """
        if not self.senders:
            self.senders = [sa.params().build() for sa in SAS]
        for i, sa in enumerate(SAS):
            entry = self.dp._in.get(sa.spi.to_bytes(4, "big"))
            if entry is None or entry.sa.packets_in or self.senders[i].seq:
                self.dp.call(AddInbound(sa.params(), sa.peer, sa.transport != "esp",
                                        sa.allowed_src, sa.transport))
                self.senders[i] = sa.params().build()
        if not self.outbound or any(sa.seq for sa in self.outbound):
            self.outbound = []
            for sa, dst in ((SAS[0], "10.40.1.1"), (SAS[3], "192.168.50.0/24")):
                built = self.dp.call(AddOutbound(sa.params(), sa.peer, sa.transport != "esp",
                                                 dst, sa.transport))
                assert isinstance(built, EspSA)
                self.outbound.append(built)
        self.last_sealed = None
        if self.conn is None or self.conn.closed or self.conn.ike_seen or \
                self.conn.framer.buffered:
            self._new_conn()
        self.dp.inbox.drain()
        self.tun.sent()

    def _new_conn(self) -> None:
        if self.conn is not None and not self.conn.closed:
            self.dp._ctcp_close(self.conn, "ctcp_closed")
        self.stream = FakeStream()
        self.conn = _CtcpConn(self.stream, PEER_CTCP, "server", self.now)  # type: ignore[arg-type]
        self.dp._ctcp[PEER_CTCP] = self.conn

    # ---------------------------------------------------------------- ops
    def udp4500(self, data: bytes, addr: Address = PEER_NATT) -> None:
        self.udp.rx.append((data, addr))
        self.dp._from_udp(self.now)

    def cisco_udp(self, data: bytes, addr: Address = PEER_CISCO) -> None:
        self.cisco.rx.append((data, addr))
        self.dp._from_cisco_udp(self.now)

    def ctcp(self, data: bytes) -> None:
        assert self.conn is not None
        if self.conn.closed:
            self._new_conn()
        self.stream.rx.append(data)
        self.dp._ctcp_readable(self.conn, self.now)

    def raw_esp(self, data: bytes) -> None:
        self.raw.rx.append((data, (PEER_ESP[0], 0)))
        self.dp._from_raw_esp(self.now)

    def send_esp(self, sa: Sa, esp: bytes) -> None:
        """An ESP packet the way `sa`'s peer sends it on its transport."""
        if sa.transport == "natt":
            self.udp4500(esp, sa.peer)
        elif sa.transport == "cisco-udp":
            self.cisco_udp(esp, sa.peer)
        elif sa.transport == "ctcp":
            self.ctcp(esp + ESP_TRAILER)
        else:
            self.raw_esp(bytes([0x45]) + bytes(19) + esp)

    def seal(self, which: int, inner: bytes, corrupt: int | None = None) -> None:
        sa = SAS[which % len(SAS)]
        esp = self.senders[which % len(SAS)].encapsulate(inner)
        if corrupt is not None and esp:
            i = corrupt % len(esp)
            esp = esp[:i] + bytes([esp[i] ^ 0x01]) + esp[i + 1:]
        self.last_sealed = (sa, esp)
        self.send_esp(sa, esp)

    def check(self) -> None:
        allowed = {sa.allowed_src for sa in SAS}
        for packet in self.tun.sent():
            src = ".".join(str(b) for b in packet[12:16])
            if None not in allowed and src not in allowed:
                raise InvariantViolation(f"inner source {src} reached the TUN")
        if len(self.dp.inbox) > 1024:
            raise InvariantViolation("control inbox above its bound")
        self.dp.inbox.drain()


_HARNESS: Harness | None = None


def harness() -> Harness:
    global _HARNESS
    if _HARNESS is None:
        _HARNESS = Harness()
    return _HARNESS


def one_input(data: bytes) -> None:
    h = harness()
    h.reset()
    for op, body in split(data):
        kind, arg = op % 8, op >> 3
        if kind == OP_UDP4500:
            h.udp4500(body, ELSEWHERE if arg & 1 else PEER_NATT)
        elif kind == OP_CISCO_UDP:
            h.cisco_udp(body)
        elif kind == OP_CTCP:
            h.ctcp(body)
        elif kind == OP_RAW_ESP:
            h.raw_esp(body)
        elif kind == OP_SEAL:
            h.seal(arg, body)
        elif kind == OP_SEAL_CORRUPT:
            h.seal(arg, body[2:], int.from_bytes(body[:2].rjust(2, b"\0"), "big"))
        elif kind == OP_REPLAY:
            if h.last_sealed is not None:
                h.send_esp(*h.last_sealed)
        else:
            h.now += 1.0 + arg
            h.tun.inject(body)
            h.dp._from_tun(h.now)
            h.dp.tick(h.now)
        h.check()


def _ipv4(src: str, dst: str, payload: bytes = b"x" * 40, proto: int = 17) -> bytes:
    total = 20 + len(payload)
    return (bytes([0x45, 0, total >> 8, total & 0xFF, 0, 0, 0x40, 0, 64, proto, 0, 0])
            + bytes(int(x) for x in src.split(".")) + bytes(int(x) for x in dst.split("."))
            + payload)


def seeds() -> dict[str, bytes]:
    """Each way into the data plane once, and a mixed burst."""
    ike = bytes(8) + bytes(8) + bytes([1, 0x10, 4, 0]) + bytes(4) + (28).to_bytes(4, "big")
    lan = "192.168.2.10"
    good = [(OP_SEAL | i << 3, _ipv4(SAS[i].allowed_src or "192.168.60.1", lan))
            for i in range(len(SAS))]
    out = {
        "keepalive": join([(OP_UDP4500, b"\xff")]),
        "ike-after-marker": join([(OP_UDP4500, NON_ESP_MARKER + ike)]),
        "short-ike": join([(OP_UDP4500, NON_ESP_MARKER + ike[:10])]),
        "cisco-keepalive": join([(OP_CISCO_UDP, CISCO_UDP_KEEPALIVE)]),
        "ctcp-ike-then-esp": join([(OP_CTCP, encode_ike(ike)), good[2]]),
        "esp-each-sa": join(good),
        "esp-replayed": join([good[0], (OP_REPLAY, b""), (OP_REPLAY, b"")]),
        "esp-spoofed-inner": join([(OP_SEAL, _ipv4("10.40.1.99", lan))]),
        "esp-corrupt": join([(OP_SEAL_CORRUPT, b"\x00\x10" + _ipv4("10.40.1.1", lan))]),
        "raw-esp-unknown-spi": join([(OP_RAW_ESP, _ipv4("198.51.100.9", "203.0.113.50",
                                                        b"\x12\x34\x56\x78" + bytes(40), 50))]),
        "tun-out": join([(OP_FROM_TUN, _ipv4("192.168.2.10", "10.40.1.1", bytes(1600))),
                         (OP_FROM_TUN, _ipv4("192.168.2.10", "192.168.50.3"))]),
        "mixed": join([(OP_UDP4500, b"\xff"), good[0], (OP_CTCP, encode_ike(ike)[:20]),
                       (OP_CTCP, encode_ike(ike)[20:]), good[2], good[1],
                       (OP_UDP4500 | 8, b"\x01\x02\x03\x04" + bytes(30))]),
    }
    return out
