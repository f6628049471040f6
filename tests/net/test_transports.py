"""The other ways through NAT, on loopback (no root): Cisco UDP, cTCP, fragmentation policy.

Two data planes over in-memory TUNs: A plays the client (inner 10.40.1.1,
default route into the tunnel), B the concentrator.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from vpnhub.esp import ESP_AES_CBC, HMAC_SHA1_96, SaParams, key_lengths
from vpnhub.ike.transport import Transport
from vpnhub.net import ctcp
from vpnhub.net.dataplane import (
    CTCP_NO_CONNECTION,
    Dataplane,
    open_cisco_udp_socket,
    open_ctcp_listener,
    open_udp_socket,
)
from vpnhub.net.fragment import IP_DF, IP_MF, ipv4_checksum
from vpnhub.net.messages import (
    CTCP_ESP_BEFORE_IKE,
    AddInbound,
    AddOutbound,
    CtcpClose,
    CtcpClosed,
    Event,
    GetStats,
    IkeDatagram,
    OuterFragmentation,
    PeerMoved,
    SetKeepalive,
    UpdatePeer,
)
from vpnhub.net.stats import DataplaneStats
from vpnhub.net.tun import FakeTun
from vpnhub.net.udpencap import CISCO_UDP_KEEPALIVE, NON_ESP_MARKER

CLIENT = "10.40.1.1"
LAN_HOST = "192.168.2.10"
SUITE = (ESP_AES_CBC, 128, HMAC_SHA1_96)


def ipv4(src: str, dst: str, payload: bytes = b"x" * 64, *, flags: int = 0,
         proto: int = 17) -> bytes:
    head = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0x77, flags, 64,
                                 proto, 0, socket.inet_aton(src), socket.inet_aton(dst)))
    head[10:12] = ipv4_checksum(head).to_bytes(2, "big")
    return bytes(head) + payload


def isakmp(tag: bytes = b"") -> bytes:
    body = tag.ljust(8, b"\x00")
    return bytes(16) + struct.pack("!BBBBII", 0, 0x10, 4, 0, 0, 28 + len(body)) + body


def params(spi: int) -> SaParams:
    enc_len, integ_len = key_lengths(*SUITE)
    return SaParams.from_keymat(spi, *SUITE, os.urandom(enc_len + integ_len))


def pump(*planes: Dataplane, until: Callable[[], object] | None = None,
         timeout: float = 5.0) -> None:
    """Poll the loops by hand until ``until()`` is true (or once round when None)."""
    deadline = time.monotonic() + timeout
    while True:
        for dp in planes:
            dp.poll(0.01)
        if until is None or until():
            return
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")


def stats(dp: Dataplane) -> dict[str, object]:
    result = dp.call(GetStats())
    assert isinstance(result, DataplaneStats)
    return result.as_dict()


@dataclass
class Pair:
    a: Dataplane
    b: Dataplane
    tun_a: FakeTun
    tun_b: FakeTun
    closers: list[object] = field(default_factory=list)
    events_a: list[Event] = field(default_factory=list)
    events_b: list[Event] = field(default_factory=list)

    def events(self) -> tuple[list[Event], list[Event]]:
        self.events_a += self.a.inbox.drain()
        self.events_b += self.b.inbox.drain()
        return self.events_a, self.events_b

    def a_sends(self, *packets: bytes, want: int | None = None) -> list[bytes]:
        for p in packets:
            self.tun_a.inject(p)
        got: list[bytes] = []
        n = len(packets) if want is None else want

        def arrived() -> bool:
            got.extend(self.tun_b.sent())
            return len(got) >= n

        if n:
            pump(self.a, self.b, until=arrived, timeout=2.0)
        else:
            pump(self.a, self.b)
            pump(self.a, self.b)
        return got

    def b_sends(self, *packets: bytes) -> list[bytes]:
        for p in packets:
            self.tun_b.inject(p)
        got: list[bytes] = []

        def arrived() -> bool:
            got.extend(self.tun_a.sent())
            return len(got) >= len(packets)

        pump(self.a, self.b, until=arrived, timeout=2.0)
        return got

    def close(self) -> None:
        for dp in (self.a, self.b):
            dp.close()
        for obj in self.closers:
            obj.close()  # type: ignore[attr-defined]
        self.tun_a.close()
        self.tun_b.close()


def install(pair: Pair, peer_of_b: tuple[str, int], peer_of_a: tuple[str, int],
            transport: str) -> None:
    a_to_b, b_to_a = params(0xA0000001), params(0xB0000001)
    pair.a.call(AddOutbound(a_to_b, peer_of_b, transport=transport))
    pair.a.call(AddInbound(b_to_a, peer_of_b, transport=transport))
    pair.b.call(AddInbound(a_to_b, peer_of_a, allowed_src=CLIENT, transport=transport))
    pair.b.call(AddOutbound(b_to_a, peer_of_a, dst=CLIENT, transport=transport))


# -- Cisco IPsec over UDP ------------------------------------------------------


@pytest.fixture
def cisco() -> Iterator[Pair]:
    sock_a = open_cisco_udp_socket("127.0.0.1", 0)
    sock_b = open_cisco_udp_socket("127.0.0.1", 0)
    tun_a, tun_b = FakeTun("a"), FakeTun("b")
    pair = Pair(Dataplane(tun_a, cisco_udp=sock_a), Dataplane(tun_b, cisco_udp=sock_b),
                tun_a, tun_b, [sock_a, sock_b])
    install(pair, sock_b.getsockname(), sock_a.getsockname(), "cisco-udp")
    yield pair
    pair.close()


def test_cisco_udp_forwarding_and_stats(cisco: Pair) -> None:
    up = [ipv4(CLIENT, LAN_HOST, os.urandom(n)) for n in (0, 100, 1300)]
    assert cisco.a_sends(*up) == up
    down = [ipv4(LAN_HOST, CLIENT, os.urandom(200))]
    assert cisco.b_sends(*down) == down
    st = stats(cisco.b)
    assert st["cisco_udp_rx"] == 3 and st["udp_rx"] == 0
    sas = {s["spi"]: s for s in st["sas"]}  # type: ignore[attr-defined]
    assert sas["a0000001"]["transport"] == "cisco-udp" and sas["a0000001"]["udp_encap"]
    assert st["drops_total"] == {}


def test_cisco_udp_esp_has_no_marker(cisco: Pair) -> None:
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(2)
    try:
        cisco.a.call(UpdatePeer(cisco.b.cisco_udp.getsockname(),  # type: ignore[union-attr]
                                sink.getsockname()))
        cisco.tun_a.inject(ipv4(CLIENT, LAN_HOST))
        pump(cisco.a)
        datagram = sink.recv(2048)
        assert datagram[:4] == (0xA0000001).to_bytes(4, "big")  # starts at the SPI
    finally:
        sink.close()


def test_cisco_udp_keepalive_form(cisco: Pair) -> None:
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(2)
    try:
        cisco.a.call(SetKeepalive(sink.getsockname(), 9.0, transport="cisco-udp"))
        cisco.a.tick(time.monotonic())
        assert sink.recv(64) == CISCO_UDP_KEEPALIVE == b"\x00\x00\x00\x00\xff"
        assert stats(cisco.a)["keepalive_tx"] == 1
    finally:
        sink.close()
    # B counts A's keepalive against the cisco-udp peer.
    peer_a = cisco.a.cisco_udp.getsockname()  # type: ignore[union-attr]
    cisco.b.call(SetKeepalive(peer_a, None, transport="cisco-udp"))
    cisco.a.cisco_udp.sendto(CISCO_UDP_KEEPALIVE,  # type: ignore[union-attr]
                             cisco.b.cisco_udp.getsockname())  # type: ignore[union-attr]
    pump(cisco.b, until=lambda: stats(cisco.b)["keepalive_rx"] == 1)
    peers = [p for p in stats(cisco.b)["peers"] if p["transport"] == "cisco-udp"]  # type: ignore[attr-defined]
    assert peers[0]["keepalives_rx"] == 1


def test_cisco_udp_refuses_ike_and_follows_nat_rebinding(cisco: Pair) -> None:
    other = open_udp_socket("127.0.0.1", 0)
    try:
        target = cisco.b.cisco_udp.getsockname()  # type: ignore[union-attr]
        other.sendto(NON_ESP_MARKER + isakmp(), target)  # no IKE on the Cisco UDP port
        other.sendto(b"\x01\x02", target)
        esp = params(0xA0000001)  # a different key: authentication fails
        other.sendto(esp.build().encapsulate(ipv4(CLIENT, LAN_HOST)), target)
        pump(cisco.b, until=lambda: stats(cisco.b)["cisco_udp_rx"] == 3)
        assert stats(cisco.b)["drops_total"] == {"cisco_udp_not_esp": 1, "short_datagram": 1,
                                                 "auth_failed": 1}
        assert cisco.b.inbox.drain() == []
    finally:
        other.close()
    # Authentic ESP from a new port: PeerMoved, as on 4500.
    moved = open_cisco_udp_socket("127.0.0.1", 0)
    try:
        old_a = cisco.a.cisco_udp
        cisco.a.cisco_udp = moved  # same SA, new source port (a NAT rebinding)
        peer = cisco.a._peers[("cisco-udp", cisco.b.cisco_udp.getsockname())]  # type: ignore[union-attr]
        peer.send = moved.sendto
        assert len(cisco.a_sends(ipv4(CLIENT, LAN_HOST))) == 1
        assert cisco.b.inbox.drain() == [PeerMoved(0xA0000001, old_a.getsockname(),  # type: ignore[union-attr]
                                                   moved.getsockname())]
    finally:
        moved.close()


def test_unknown_transport_refused() -> None:
    tun = FakeTun()
    dp = Dataplane(tun)
    try:
        with pytest.raises(ValueError):
            dp.call(AddInbound(params(0x1001), ("127.0.0.1", 1), transport="gre"))
        with pytest.raises(RuntimeError, match="no Cisco UDP socket"):
            dp.call(AddInbound(params(0x1001), ("127.0.0.1", 1), transport="cisco-udp"))
        with pytest.raises(ValueError):
            dp.send_ike(isakmp(), ("127.0.0.1", 1), transport=Transport.IKE)
        with pytest.raises(ConnectionError):
            dp.send_ike(isakmp(), ("127.0.0.1", 1), transport=Transport.CTCP)
        with pytest.raises(ValueError):
            Dataplane(tun, frag_policy="maybe")
        listeners = [open_ctcp_listener("127.0.0.1", 0) for _ in range(11)]
        try:
            with pytest.raises(ValueError, match="at most 10"):
                Dataplane(tun, ctcp_listeners=listeners)
        finally:
            for s in listeners:
                s.close()
    finally:
        dp.close()
        tun.close()


# -- IPsec over TCP ------------------------------------------------------------


@pytest.fixture
def tcp_pair() -> Iterator[Pair]:
    listener = open_ctcp_listener("127.0.0.1", 0)
    tun_a, tun_b = FakeTun("a"), FakeTun("b")
    pair = Pair(Dataplane(tun_a), Dataplane(tun_b, ctcp_listeners=[listener]), tun_a, tun_b,
                [listener])
    yield pair
    pair.close()


def connect(pair: Pair) -> tuple[tuple[str, int], tuple[str, int]]:
    """A connects to B and sends the first IKE message; returns (server addr, client addr)."""
    server = pair.b.ctcp_listeners[0].getsockname()
    connected = pair.a.ctcp_connect(server)
    pair.a.send_ike(isakmp(b"first"), server, transport=Transport.CTCP)  # queued while connecting
    pump(pair.a, pair.b, until=lambda: any(isinstance(e, IkeDatagram) for e in pair.events()[1]))
    local = connected.result(0)
    ike = [e for e in pair.events_b if isinstance(e, IkeDatagram)]
    assert ike == [IkeDatagram(isakmp(b"first"), local, Transport.CTCP)]
    return server, local


def test_ctcp_ike_both_ways_then_esp(tcp_pair: Pair) -> None:
    server, client = connect(tcp_pair)
    with pytest.raises(ConnectionError, match="already connected"):
        tcp_pair.a.ctcp_connect(server)
    tcp_pair.b.send_ike(isakmp(b"reply"), client, transport=Transport.CTCP)
    pump(tcp_pair.a, tcp_pair.b,
         until=lambda: any(isinstance(e, IkeDatagram) for e in tcp_pair.events()[0]))
    assert [e for e in tcp_pair.events_a if isinstance(e, IkeDatagram)] == [
        IkeDatagram(isakmp(b"reply"), server, Transport.CTCP)]
    install(tcp_pair, server, client, "ctcp")
    up = [ipv4(CLIENT, LAN_HOST, os.urandom(n)) for n in (0, 1, 500, 1400)] * 20
    assert tcp_pair.a_sends(*up) == up
    down = [ipv4(LAN_HOST, CLIENT, os.urandom(n)) for n in (10, 1400)]
    assert tcp_pair.b_sends(*down) == down
    st = stats(tcp_pair.b)
    conns = st["ctcp"]["connections"]  # type: ignore[index]
    assert len(conns) == 1 and conns[0]["addr"] == client and conns[0]["role"] == "server"
    assert conns[0]["esp_rx"] == 80 and conns[0]["esp_tx"] == 2 and conns[0]["ike_rx"] == 1
    assert st["ctcp"]["accepted"] == 1  # type: ignore[index]
    assert st["drops_total"] == {} and st["udp_rx"] == 0
    sas = {s["spi"]: s for s in st["sas"]}  # type: ignore[attr-defined]
    assert sas["b0000001"]["transport"] == "ctcp"


def test_ctcp_threaded_loops_and_close(tcp_pair: Pair) -> None:
    server, client = connect(tcp_pair)
    install(tcp_pair, server, client, "ctcp")
    tcp_pair.a.start()
    tcp_pair.b.start()
    try:
        packets = [ipv4(CLIENT, LAN_HOST, os.urandom(1000)) for _ in range(300)]
        for p in packets:
            tcp_pair.tun_a.inject(p)
        got: list[bytes] = []
        deadline = time.monotonic() + 10
        while len(got) < len(packets) and time.monotonic() < deadline:
            got += tcp_pair.tun_b.sent()
            time.sleep(0.01)
        assert got == packets
        assert tcp_pair.b.call(CtcpClose(client)) is True
        assert tcp_pair.b.call(CtcpClose(client)) is False
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if any(isinstance(e, CtcpClosed) for e in tcp_pair.events()[0]):
                break
            time.sleep(0.01)
        assert CtcpClosed(server, "ctcp_eof") in tcp_pair.events_a
        assert CtcpClosed(client, "ctcp_closed") in tcp_pair.events_b
        tcp_pair.tun_b.inject(ipv4(LAN_HOST, CLIENT))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if stats(tcp_pair.b)["drops"].get(CTCP_NO_CONNECTION):  # type: ignore[attr-defined]
                break
            time.sleep(0.01)
        assert stats(tcp_pair.b)["drops"][CTCP_NO_CONNECTION] == 1  # type: ignore[index]
    finally:
        tcp_pair.a.stop()
        tcp_pair.b.stop()


def raw_client(pair: Pair) -> socket.socket:
    sock = socket.create_connection(pair.b.ctcp_listeners[0].getsockname(), timeout=2)
    pump(pair.b, until=lambda: stats(pair.b)["ctcp"]["accepted"] >= 1)  # type: ignore[index]
    return sock


def closed_reason(pair: Pair) -> str:
    pump(pair.b, until=lambda: any(isinstance(e, CtcpClosed) for e in pair.events()[1]))
    return next(e.reason for e in pair.events_b if isinstance(e, CtcpClosed))


def test_ctcp_garbage_drops_the_connection(tcp_pair: Pair) -> None:
    sock = raw_client(tcp_pair)
    try:
        sock.sendall(b"\x00\x00\x00\x00 GET / HTTP/1.0\r\n\r\n" + bytes(40))
        assert closed_reason(tcp_pair) == ctcp.ZERO_SPI
        assert stats(tcp_pair.b)["drops"] == {ctcp.ZERO_SPI: 1}
        assert sock.recv(10) == b""  # closed by the data plane
    finally:
        sock.close()


def test_ctcp_server_wants_ike_first(tcp_pair: Pair) -> None:
    sock = raw_client(tcp_pair)
    try:
        sock.sendall(ctcp.encode_esp(params(0x5555).build().encapsulate(ipv4(CLIENT, LAN_HOST))))
        assert closed_reason(tcp_pair) == CTCP_ESP_BEFORE_IKE
    finally:
        sock.close()


def test_ctcp_setup_timeout_and_connection_limit(tcp_pair: Pair) -> None:
    tcp_pair.b.ctcp_max_connections = 1
    sock = raw_client(tcp_pair)
    extra = socket.create_connection(tcp_pair.b.ctcp_listeners[0].getsockname(), timeout=2)
    try:
        pump(tcp_pair.b, until=lambda: stats(tcp_pair.b)["drops"].get(  # type: ignore[attr-defined]
            "ctcp_too_many_connections"))
        assert extra.recv(10) == b""
        tcp_pair.b.ctcp_setup_timeout = 0.0  # no SA bound to it: closed at the next tick
        tcp_pair.b.tick(time.monotonic() + 1)
        assert closed_reason(tcp_pair) == "ctcp_setup_timeout"
    finally:
        sock.close()
        extra.close()


def test_ctcp_connect_refused() -> None:
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    addr = free.getsockname()
    free.close()  # nothing listens there now
    tun = FakeTun()
    dp = Dataplane(tun)
    try:
        future = dp.ctcp_connect(addr)
        pump(dp, until=future.done)
        with pytest.raises(ConnectionError, match="ctcp_connect_failed"):
            future.result(0)
        assert dp.inbox.drain() == [CtcpClosed(addr, "ctcp_connect_failed")]
    finally:
        dp.close()
        tun.close()


# -- fragmentation policy --------------------------------------------------------


def natt_pair(policy: str) -> Pair:
    udp_a, udp_b = open_udp_socket("127.0.0.1", 0), open_udp_socket("127.0.0.1", 0)
    tun_a, tun_b = FakeTun("a"), FakeTun("b")
    pair = Pair(Dataplane(tun_a, udp=udp_a, frag_policy=policy),
                Dataplane(tun_b, udp=udp_b, frag_policy=policy), tun_a, tun_b, [udp_a, udp_b])
    install(pair, udp_b.getsockname(), udp_a.getsockname(), "")
    return pair


def test_sockets_allow_outer_fragmentation() -> None:
    pair = natt_pair("none")
    try:
        assert pair.a.udp is not None
        assert pair.a.udp.getsockopt(socket.IPPROTO_IP, 10) == 0  # IP_PMTUDISC_DONT
    finally:
        pair.close()


def test_before_encryption_fragments_and_answers_df() -> None:
    pair = natt_pair("before-encryption")
    try:
        big = ipv4(CLIENT, LAN_HOST, os.urandom(1480))
        got = pair.a_sends(big, want=2)
        assert len(got) == 2 and all(len(p) <= 1422 for p in got)
        assert int.from_bytes(got[0][6:8], "big") & IP_MF
        assert got[0][20:] + got[1][20:] == big[20:]
        df = ipv4(CLIENT, LAN_HOST, os.urandom(1480), flags=IP_DF, proto=6)
        assert pair.a_sends(df, want=0) == []
        icmp = pair.tun_a.sent()
        assert len(icmp) == 1 and icmp[0][20:22] == b"\x03\x04"
        assert int.from_bytes(icmp[0][26:28], "big") == 1422
        assert icmp[0][16:20] == socket.inet_aton(CLIENT)
        frag = stats(pair.a)["frag"]
        assert frag == {"policy": "before-encryption", "packets_fragmented": 1,  # type: ignore[comparison-overlap]
                        "fragments_made": 2, "icmp_sent": 1, "icmp_suppressed": 0,
                        "df_cleared": 0, "outer_oversize": 0, "outer_mtu": 1500}
        assert stats(pair.a)["drops_total"] == {"frag_needed_df": 1}
        small = ipv4(CLIENT, LAN_HOST, os.urandom(1402), flags=IP_DF)  # exactly 1422
        assert pair.a_sends(small) == [small]
    finally:
        pair.close()


def test_clear_df_fragments_df_packets() -> None:
    pair = natt_pair("clear-df")
    try:
        df = ipv4(CLIENT, LAN_HOST, os.urandom(2000), flags=IP_DF)
        got = pair.a_sends(df, want=2)
        assert got[0][20:] + got[1][20:] == df[20:]
        assert not any(int.from_bytes(p[6:8], "big") & IP_DF for p in got)
        assert pair.tun_a.sent() == []
        assert stats(pair.a)["frag"]["df_cleared"] == 1  # type: ignore[index]
    finally:
        pair.close()


def test_policy_none_sends_whole_and_says_why() -> None:
    pair = natt_pair("none")
    try:
        big = ipv4(CLIENT, LAN_HOST, os.urandom(1480), flags=IP_DF)
        assert pair.a_sends(big, big) == [big, big]  # loopback: the kernel fragments nothing
        events = pair.a.inbox.drain()
        assert len(events) == 1 and isinstance(events[0], OuterFragmentation)
        assert events[0].message.startswith("outer packet needs fragmentation; policy none")
        assert events[0].outer_len == 28 + 8 + 16 + 1504 + 12 and events[0].outer_mtu == 1500
        assert stats(pair.a)["frag"]["outer_oversize"] == 2  # type: ignore[index]
        peers = stats(pair.a)["peers"]
        assert peers[0]["outer_oversize"] == 2  # type: ignore[index]
    finally:
        pair.close()
