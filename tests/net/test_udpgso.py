"""UDP GRO and GSO on the data plane's sockets (issue 16), with real sockets on loopback.

Loopback carries a UDP_SEGMENT send as one GSO packet, and a socket with
UDP_GRO takes it whole with the segment size in a control message: the
trains these tests build are the kernel's own, not simulated.
"""

from __future__ import annotations

import asyncio
import os
import select
import socket
from collections.abc import Iterator

import pytest
from netns_util import in_ci

from vpnhub.esp import ESP_AES_CBC, HMAC_SHA1_96, SaParams, key_lengths
from vpnhub.net import udpgso
from vpnhub.net.dataplane import (
    HANDOVER_MAX,
    HANDOVER_QUEUE_FULL,
    Dataplane,
    open_cisco_udp_socket,
    open_udp_socket,
)
from vpnhub.net.fake_dataplane import FakeDataplane
from vpnhub.net.ikesplit import (
    NOT_IKE,
    IkeSocket,
    SplitDataplane,
    open_keepalive_socket,
    open_natt_sockets,
)
from vpnhub.net.messages import AddInbound, AddOutbound, GetStats, IkeDatagram
from vpnhub.net.stats import DataplaneStats
from vpnhub.net.tun import FakeTun
from vpnhub.net.udpencap import NAT_KEEPALIVE, NON_ESP_MARKER
from vpnhub.net.udpgso import GroReader, enable_gro, send_train

CLIENT = "10.40.1.1"
LAN_HOST = "192.168.2.10"
IKE_MSG = bytes(range(8)) * 2 + bytes(12) + b"payload"  # a 28-byte header and a body


def ipv4(src: str, dst: str, payload: bytes) -> bytes:
    total = 20 + len(payload)
    return (bytes([0x45, 0, total >> 8, total & 0xFF, 0, 0, 0, 0, 64, 17, 0, 0])
            + socket.inet_aton(src) + socket.inet_aton(dst) + payload)


def params(spi: int) -> SaParams:
    enc_len, integ_len = key_lengths(ESP_AES_CBC, 128, HMAC_SHA1_96)
    return SaParams.from_keymat(spi, ESP_AES_CBC, 128, HMAC_SHA1_96,
                                os.urandom(enc_len + integ_len))


def stats(dp: Dataplane) -> DataplaneStats:
    result = dp.call(GetStats())
    assert isinstance(result, DataplaneStats)
    return result


@pytest.fixture(autouse=True, params=["recvmmsg", "recvmsg"])
def batched(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Every test twice: the data plane reading with recvmmsg (udpgso.BatchReader, the
    C accelerator) and as without it (GroReader, recvfrom: VPNHUB_PURE_PYTHON=1)."""
    if request.param == "recvmsg":
        monkeypatch.setattr(udpgso, "NETFAST", None)
        return False
    if udpgso.NETFAST is None:
        if in_ci():
            pytest.fail("vpnhub.net._netfast is not built (CI=true: the accelerator is required)")
        pytest.skip("vpnhub.net._netfast not built, or VPNHUB_PURE_PYTHON=1")
    return True


@pytest.fixture
def sender() -> Iterator[socket.socket]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    yield s
    s.close()


def test_a_gso_train_on_loopback_comes_back_split_in_one_receive(
        sender: socket.socket) -> None:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    assert enable_gro(receiver)
    segments = [os.urandom(1000) for _ in range(5)] + [os.urandom(37)]
    send_train(sender, segments, 1000, receiver.getsockname())
    sender.sendto(b"alone", receiver.getsockname())
    select.select([receiver], [], [], 1.0)
    reader = GroReader(receiver)
    got, addr = reader.read()
    assert got == segments and addr == sender.getsockname()
    assert reader.read()[0] == [b"alone"]
    assert (reader.calls, reader.datagrams) == (2, 7)
    receiver.close()


def test_the_data_plane_decrypts_every_segment_of_a_train_and_counts_fewer_receives(
        sender: socket.socket, batched: bool) -> None:
    """ESP, an IKE message and a NAT keepalive in one train (the kernel steers a train
    by its first segment): each is handled as if it had come alone."""
    tun = FakeTun("b")
    udp = open_udp_socket("127.0.0.1", 0)
    dp = Dataplane(tun, udp=udp)
    try:
        sa = params(0xA0000001)
        dp.call(AddInbound(sa, sender.getsockname(), allowed_src=CLIENT))
        out = sa.build()
        inner = [ipv4(CLIENT, LAN_HOST, os.urandom(200)) for _ in range(20)]
        esp = [out.encapsulate(p) for p in inner]
        assert len({len(e) for e in esp}) == 1
        size = len(esp[0])
        for i in range(0, 20, 10):
            send_train(sender, esp[i:i + 10], size, udp.getsockname())
        ike = (NON_ESP_MARKER + IKE_MSG).ljust(size, b"\x00")  # fills a whole segment
        send_train(sender, [out.encapsulate(inner[0]), ike, NAT_KEEPALIVE],
                   size, udp.getsockname())
        for _ in range(5):
            dp.poll(0.2)
        assert tun.sent() == [*inner, inner[0]]
        events = [e for e in dp.events() if isinstance(e, IkeDatagram)]
        assert [e.message[:len(IKE_MSG)] for e in events] == [IKE_MSG]
        st = stats(dp)
        assert st.udp_gro and st.keepalive_rx == 1 and st.ike_rx == 1
        assert st.udp_rx == st.udp_rx_datagrams == 23
        assert st.udp_rx_calls == (1 if batched else 3)  # the 3 trains in one recvmmsg
        assert st.drops_total == {}
    finally:
        dp.close()
        udp.close()
        tun.close()


def test_without_gro_the_data_plane_reads_one_datagram_a_call_or_a_batch(
        sender: socket.socket, batched: bool) -> None:
    tun = FakeTun("b")
    udp = open_udp_socket("127.0.0.1", 0)
    dp = Dataplane(tun, udp=udp, gro=False)
    try:
        sa = params(0xA0000002)
        dp.call(AddInbound(sa, sender.getsockname()))
        out = sa.build()
        inner = [ipv4(CLIENT, LAN_HOST, bytes(100)) for _ in range(4)]
        esp = [out.encapsulate(p) for p in inner]
        send_train(sender, esp, len(esp[0]), udp.getsockname())  # segmented for us
        for _ in range(3):
            dp.poll(0.2)
        assert tun.sent() == inner
        st = stats(dp)
        assert not st.udp_gro and st.udp_rx_datagrams == 4
        assert st.udp_rx_calls == (1 if batched else 4)
    finally:
        dp.close()
        udp.close()
        tun.close()


def test_a_burst_to_one_peer_leaves_in_trains_and_arrives_intact() -> None:
    """A's TUN burst to one peer: one sendmsg per train; B (GRO off, so it reads what
    the wire would carry) gets every datagram, decrypts every packet in order."""
    tun_a, tun_b = FakeTun("a"), FakeTun("b")
    udp_a, udp_b = open_udp_socket("127.0.0.1", 0), open_udp_socket("127.0.0.1", 0)
    a = Dataplane(tun_a, udp=udp_a)
    b = Dataplane(tun_b, udp=udp_b, gro=False)
    try:
        sa = params(0xB0000001)
        a.call(AddOutbound(sa, udp_b.getsockname()))
        b.call(AddInbound(sa, udp_a.getsockname(), allowed_src=CLIENT))
        # 100 of one size (two trains: at most 64 segments), then two of other sizes
        burst = [ipv4(CLIENT, LAN_HOST, os.urandom(500)) for _ in range(100)]
        burst += [ipv4(CLIENT, LAN_HOST, os.urandom(60)), ipv4(CLIENT, LAN_HOST, b"z" * 900)]
        for p in burst:
            tun_a.inject(p)
        a.poll(0.2)
        got: list[bytes] = []
        for _ in range(10):
            b.poll(0.2)
            got += tun_b.sent()
            if len(got) >= len(burst):
                break
        assert got == burst
        st = stats(a)
        assert st.udp_gso and st.udp_tx_datagrams == 102 and st.gso_fallbacks == 0
        # 64 + (36 + the shorter last) + the 900-byte one alone
        assert st.udp_tx_calls == 3
        assert stats(b).udp_rx_datagrams == 102
    finally:
        for dp in (a, b):
            dp.close()
        for sock in (udp_a, udp_b):
            sock.close()


@pytest.fixture
def group() -> Iterator[tuple[socket.socket, socket.socket, socket.socket]]:
    """The concentrator's split group on 4500 (ikesplit), on an ephemeral port."""
    esp, ike = open_natt_sockets("127.0.0.1", 0)
    if ike is None:
        esp.close()
        pytest.fail("this kernel refused SO_ATTACH_REUSEPORT_CBPF")
    keepalives = open_keepalive_socket(esp)
    assert keepalives is not None
    yield esp, ike, keepalives
    for s in (esp, ike, keepalives):
        s.close()


def wait_readable(sock: socket.socket) -> None:
    assert select.select([sock], [], [], 1.0)[0], "nothing arrived"


def test_a_train_led_by_ike_reaches_the_ike_socket_which_hands_the_esp_on(
        group: tuple[socket.socket, socket.socket, socket.socket],
        sender: socket.socket) -> None:
    esp_sock, ike_sock, keepalives = group
    tun = FakeTun("c")
    dp = Dataplane(tun, udp=esp_sock, keepalive_sock=keepalives)
    got: list[tuple[bytes, tuple[str, int]]] = []
    reader = IkeSocket(ike_sock, lambda m, a: got.append((m, a)))
    split = SplitDataplane(dp, reader)  # wires the IKE socket's hand-over
    try:
        sa = params(0xC0000001)
        dp.call(AddInbound(sa, sender.getsockname(), allowed_src=CLIENT))
        out = sa.build()
        inner = [ipv4(CLIENT, LAN_HOST, os.urandom(300)) for _ in range(5)]
        esp = [out.encapsulate(p) for p in inner]
        size = len(esp[0])
        ike = (NON_ESP_MARKER + IKE_MSG).ljust(size, b"\x00")
        send_train(sender, [ike, *esp], size, esp_sock.getsockname())
        wait_readable(ike_sock)
        reader.read()
        assert [(m[:len(IKE_MSG)], a) for m, a in got] == [(IKE_MSG, sender.getsockname())]
        assert reader.handed_over == 5 and reader.rx_calls == 1 and reader.rx_datagrams == 6
        dp.poll(0.5)  # woken by hand_over
        assert tun.sent() == inner
        st = asyncio.run(split.stats())
        assert st.esp_via_ike_socket == 5 and st.drops_total == {}
        assert st.udp_rx_calls == 1 and st.udp_rx_datagrams == 6
        # and the reverse: a train led by ESP reaches the data plane with IKE inside
        esp2 = [out.encapsulate(p) for p in inner[:2]]
        send_train(sender, [esp2[0], ike, esp2[1]], size, esp_sock.getsockname())
        wait_readable(esp_sock)
        dp.poll(0.5)
        assert tun.sent() == inner[:2]
        events = [e for e in dp.events() if isinstance(e, IkeDatagram)]
        assert [(e.message[:len(IKE_MSG)], e.addr) for e in events] == \
            [(IKE_MSG, sender.getsockname())]
        assert not select.select([ike_sock], [], [], 0.1)[0]  # nothing went there
    finally:
        dp.close()
        tun.close()


def test_the_ike_socket_drops_what_it_cannot_hand_over(
        group: tuple[socket.socket, socket.socket, socket.socket],
        sender: socket.socket) -> None:
    esp_sock, ike_sock, _ = group
    reader = IkeSocket(ike_sock, lambda m, a: None)
    assert reader.gro
    ike = NON_ESP_MARKER + IKE_MSG
    send_train(sender, [ike, b"\x12\x34\x56\x78" + bytes(len(ike) - 4)], len(ike),
               esp_sock.getsockname())
    wait_readable(ike_sock)
    reader.read()
    assert reader.rx == 1 and reader.drops == {NOT_IKE: 1}
    fake = FakeDataplane()
    SplitDataplane(fake, reader)
    send_train(sender, [ike, b"\x12\x34\x56\x78" + bytes(len(ike) - 4)], len(ike),
               esp_sock.getsockname())
    wait_readable(ike_sock)
    reader.read()
    assert fake.handed_over == [(b"\x12\x34\x56\x78" + bytes(len(ike) - 4),
                                 sender.getsockname())]


def test_hand_over_is_bounded(sender: socket.socket) -> None:
    tun = FakeTun("d")
    udp = open_udp_socket("127.0.0.1", 0)
    dp = Dataplane(tun, udp=udp)
    try:
        dp.hand_over([b"\x12\x34\x56\x78" + bytes(20)] * (HANDOVER_MAX + 3),
                     sender.getsockname())
        dp.poll(0.5)
        st = stats(dp)
        assert st.esp_via_ike_socket == HANDOVER_MAX
        assert st.drops == {HANDOVER_QUEUE_FULL: 3, "unknown_spi": HANDOVER_MAX}
    finally:
        dp.close()
        udp.close()
        tun.close()


def test_a_train_of_keepalives_reaches_the_data_plane_which_counts_each(
        group: tuple[socket.socket, socket.socket, socket.socket],
        sender: socket.socket) -> None:
    """The group's program sees a train's whole length: three one-byte keepalives are
    three bytes to it, not a keepalive, and too short for the marker test, so the
    train goes to index 0, the data plane's socket (not the keepalive socket)."""
    esp_sock, _, keepalives = group
    now = [100.0]
    dp = Dataplane(FakeTun("e"), udp=esp_sock, keepalive_sock=keepalives, clock=lambda: now[0])
    try:
        send_train(sender, [NAT_KEEPALIVE] * 3, 1, esp_sock.getsockname())
        wait_readable(esp_sock)
        assert not select.select([keepalives], [], [], 0)[0]
        dp.poll(0.5)
        st = stats(dp)
        assert st.keepalive_rx == 3 and st.udp_rx == 3
        assert st.udp_rx_calls == 1 and st.udp_rx_datagrams == 3
    finally:
        dp.close()


def test_cisco_udp_trains_are_split_too(sender: socket.socket) -> None:
    tun = FakeTun("f")
    cisco = open_cisco_udp_socket("127.0.0.1", 0)
    dp = Dataplane(tun, cisco_udp=cisco)
    try:
        sa = params(0xD0000001)
        dp.call(AddInbound(sa, sender.getsockname(), transport="cisco-udp"))
        out = sa.build()
        inner = [ipv4(CLIENT, LAN_HOST, bytes(80)) for _ in range(8)]
        esp = [out.encapsulate(p) for p in inner]
        send_train(sender, esp, len(esp[0]), cisco.getsockname())
        wait_readable(cisco)
        dp.poll(0.5)
        assert tun.sent() == inner
        st = stats(dp)
        assert st.cisco_udp_rx == 8 and (st.udp_rx_calls, st.udp_rx_datagrams) == (1, 8)
    finally:
        dp.close()
        cisco.close()
        tun.close()


class _Reads:
    """A socket's receives, scripted: each item a batch or an exception to raise;
    EAGAIN when they run out. ``asked``: the count of each call."""

    def __init__(self, *items: list[udpgso.Datagram] | OSError) -> None:
        self.items = list(items)
        self.asked: list[int] = []

    def __call__(self, count: int) -> list[udpgso.Datagram]:
        self.asked.append(count)
        if not self.items:
            raise BlockingIOError
        item = self.items.pop(0)
        if isinstance(item, OSError):
            raise item
        return item[:count]


def _dgrams(n: int) -> list[udpgso.Datagram]:
    return [(bytes([i % 256]) * 8, ("192.0.2.1", 4500), 0) for i in range(n)]


def test_read_budgeted_stops_at_the_budget_and_never_asks_past_it() -> None:
    reads = _Reads(_dgrams(4), _dgrams(4), _dgrams(4), _dgrams(4))
    got: list[udpgso.Datagram] = []
    assert udpgso.read_budgeted(reads, 4, 10, got.extend) == 10
    assert reads.asked == [4, 4, 2]  # the last receive asks only for what is left
    assert len(got) == 10 and len(reads.items) == 1  # the rest waits in the socket


def test_read_budgeted_stops_at_a_short_batch_without_a_call_for_eagain() -> None:
    reads = _Reads(_dgrams(4), _dgrams(3), _dgrams(4))
    batches: list[list[udpgso.Datagram]] = []
    assert udpgso.read_budgeted(reads, 4, 100, batches.append) == 7
    assert [len(b) for b in batches] == [4, 3] and reads.asked == [4, 4]


def test_read_budgeted_skips_a_reported_error_and_ends_at_eagain() -> None:
    reads = _Reads(ConnectionRefusedError(), _dgrams(1), OSError(), _dgrams(1))
    got: list[udpgso.Datagram] = []
    assert udpgso.read_budgeted(reads, 1, 100, got.extend) == 2  # count 1: one train
    assert len(got) == 2 and reads.asked == [1, 1, 1, 1, 1]  # the 5th: EAGAIN


def test_read_budgeted_stops_at_its_deadline() -> None:
    now = [0.0]

    def handle(batch: list[udpgso.Datagram]) -> None:
        now[0] += 0.004  # each batch's handling takes 4 ms

    reads = _Reads(*[_dgrams(2) for _ in range(10)])
    assert udpgso.read_budgeted(reads, 2, 100, handle, until=0.01,
                                clock=lambda: now[0]) == 6  # 3 batches: 12 ms >= 10
