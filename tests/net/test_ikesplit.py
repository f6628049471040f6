"""IKE on UDP 4500 split from ESP by the kernel (issue 13, point 4).

Two sockets in one SO_REUSEPORT group on the same port; a classic BPF program
sends datagrams starting with the non-ESP marker (RFC 3948 2.2) to the control
plane's socket and everything else (ESP, the one-byte keepalive of RFC 3948
2.3) to the data plane's, which then never sees IKE.
"""

from __future__ import annotations

import asyncio
import select
import socket
import time
from collections.abc import Iterator

import pytest

from vpnhub.net.dataplane import Dataplane
from vpnhub.net.fake_dataplane import FakeDataplane
from vpnhub.net.ikesplit import (
    IKE_BATCH,
    NOT_IKE,
    IkeSocket,
    SplitDataplane,
    open_keepalive_socket,
    open_natt_sockets,
)
from vpnhub.net.messages import IkeDatagram
from vpnhub.net.tun import FakeTun
from vpnhub.net.udpencap import NON_ESP_MARKER, SHORT_IKE

IKE_MSG = bytes(range(8)) * 2 + bytes(12) + b"payload"  # 28-byte header and a body
ESP = b"\x12\x34\x56\x78" + bytes(4) + b"ciphertext"
IP_RECVERR = 11  # linux/in.h; not in `socket`


@pytest.fixture
def split() -> Iterator[tuple[socket.socket, socket.socket, socket.socket]]:
    esp, ike = open_natt_sockets("127.0.0.1", 0)
    if ike is None:
        esp.close()
        pytest.fail("this kernel refused SO_ATTACH_REUSEPORT_CBPF")
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    yield esp, ike, peer
    for s in (esp, ike, peer):
        s.close()


def _recv_all(sock: socket.socket) -> list[bytes]:
    out = []
    while select.select([sock], [], [], 0.2)[0]:
        out.append(sock.recv(65535))
    return out


def test_the_kernel_sends_ike_to_one_socket_and_esp_and_keepalives_to_the_other(
        split: tuple[socket.socket, socket.socket, socket.socket]) -> None:
    esp, ike, peer = split
    port = esp.getsockname()
    assert ike.getsockname() == port  # one address and port: peers see no difference
    for i in range(50):  # enough that a hash spread would have put some on each side
        peer.sendto(NON_ESP_MARKER + IKE_MSG + bytes([i]), port)
        peer.sendto(ESP + bytes([i]), port)
    peer.sendto(b"\xff", port)
    peer.sendto(b"\x00\x00", port)
    to_ike, to_esp = _recv_all(ike), _recv_all(esp)
    assert len(to_ike) == 50 and all(d.startswith(NON_ESP_MARKER) for d in to_ike)
    assert len(to_esp) == 52 and not any(d.startswith(NON_ESP_MARKER) for d in to_esp)
    assert b"\xff" in to_esp and b"\x00\x00" in to_esp


def test_the_ike_socket_delivers_messages_without_the_marker_and_counts_drops(
        split: tuple[socket.socket, socket.socket, socket.socket]) -> None:
    esp, ike, peer = split
    got: list[tuple[bytes, tuple[str, int]]] = []
    reader = IkeSocket(ike, lambda m, a: got.append((m, a)))
    peer.sendto(NON_ESP_MARKER + IKE_MSG, esp.getsockname())
    peer.sendto(NON_ESP_MARKER + b"short", esp.getsockname())  # no room for a header
    select.select([ike], [], [], 1.0)
    reader.read()
    assert got == [(IKE_MSG, peer.getsockname())]
    assert reader.rx == 1 and reader.drops == {SHORT_IKE: 1}
    reader.send(b"answer", peer.getsockname())
    data, src = peer.recvfrom(100)
    assert data == NON_ESP_MARKER + b"answer" and src == esp.getsockname()
    assert reader.tx == 1


def test_a_datagram_without_the_marker_on_the_ike_socket_is_dropped() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    got: list[bytes] = []
    reader = IkeSocket(a, lambda m, _addr: got.append(m))
    b.send(ESP)
    a.setblocking(False)
    reader.read()
    assert got == [] and reader.drops == {NOT_IKE: 1}
    a.close()
    b.close()


def test_the_data_plane_never_sees_ike_and_a_budget_bounds_one_read(
        split: tuple[socket.socket, socket.socket, socket.socket]) -> None:
    esp, ike, peer = split
    dp = Dataplane(FakeTun("a"), udp=esp)
    try:
        got: list[bytes] = []
        reader = IkeSocket(ike, lambda m, _a: got.append(m), budget=10)
        for i in range(25):
            peer.sendto(NON_ESP_MARKER + IKE_MSG + bytes([i]), esp.getsockname())
        peer.sendto(b"\xff", esp.getsockname())
        select.select([ike], [], [], 1.0)
        reader.read()
        assert len(got) == 10  # the loop's other readers get their turn
        reader.read()
        reader.read()
        assert len(got) == 25
        dp.poll(0.5)
        assert dp.keepalive_rx == 1 and dp.ike_rx == 0
        assert not [e for e in dp.events() if isinstance(e, IkeDatagram)]
    finally:
        dp.close()


def test_a_turn_of_the_ike_reader_ends_after_its_time(
        split: tuple[socket.socket, socket.socket, socket.socket]) -> None:
    """The timers wait for the turn: it stops at `turn_time` even under its budget (a
    clock that moves 6 ms per look: one batch, or one datagram without recvmmsg)."""
    esp, ike, peer = split
    ticks = iter(range(10_000))
    got: list[bytes] = []
    reader = IkeSocket(ike, lambda m, _a: got.append(m), turn_time=0.01,
                       clock=lambda: next(ticks) * 0.006)
    for i in range(25):
        peer.sendto(NON_ESP_MARKER + IKE_MSG + bytes([i]), esp.getsockname())
    select.select([ike], [], [], 1.0)
    reader.read()
    assert 0 < len(got) <= IKE_BATCH
    for _ in range(25):
        reader.read()
    assert len(got) == 25


def test_keepalives_go_to_a_third_socket_that_the_data_plane_reads_once_a_tick(
        split: tuple[socket.socket, socket.socket, socket.socket]) -> None:
    esp, ike, peer = split
    keepalives = open_keepalive_socket(esp)
    assert keepalives is not None, "this kernel refused the three-way program"
    now = [100.0]
    dp = Dataplane(FakeTun("a"), udp=esp, keepalive_sock=keepalives, clock=lambda: now[0])
    try:
        port = esp.getsockname()
        assert keepalives.getsockname() == port
        dp.tick(now[0])  # the first tick: nothing waiting yet
        for i in range(20):
            peer.sendto(b"\xff", port)
            peer.sendto(NON_ESP_MARKER + IKE_MSG + bytes([i]), port)
            peer.sendto(ESP + bytes([i]), port)
        # one byte that is not 0xFF, and 0xFF followed by more, are not keepalives
        peer.sendto(b"\xfe", port)
        peer.sendto(b"\xff\xff", port)
        to_ike = _recv_all(ike)
        assert len(to_ike) == 20 and all(d.startswith(NON_ESP_MARKER) for d in to_ike)
        dp.poll(0.2)  # the 4500 socket's datagrams; keepalives wait for the tick
        assert dp.keepalive_rx == 0 and dp.udp_rx == 22  # ESP and the two non-keepalives
        now[0] += 1.0
        dp.tick(now[0])
        assert dp.keepalive_rx == 20 and dp.ike_rx == 0 and dp.udp_rx == 42
        assert not _recv_all(keepalives)
    finally:
        dp.close()
        keepalives.close()


@pytest.mark.parametrize("mode", ["recvmmsg", "gro", "recvfrom"])
def test_a_tick_reads_the_keepalive_socket_within_its_budget_with_any_reader(
        split: tuple[socket.socket, socket.socket, socket.socket], mode: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The keepalive socket is read by the one budgeted loop (udpgso.read_budgeted)
    whichever receive the socket has: a tick takes at most KEEPALIVE_BUDGET, the next
    tick the rest, and the receive counters count what was read."""
    from vpnhub.net import dataplane, udpgso
    from vpnhub.net.accel import NETFAST

    if mode == "recvmmsg" and NETFAST is None:
        pytest.skip("no accelerator (VPNHUB_PURE_PYTHON)")
    if mode != "recvmmsg":
        monkeypatch.setattr(udpgso, "NETFAST", None)
    monkeypatch.setattr(dataplane, "KEEPALIVE_BUDGET", 5)
    esp, _, peer = split
    keepalives = open_keepalive_socket(esp)
    assert keepalives is not None, "this kernel refused the three-way program"
    now = [100.0]
    dp = Dataplane(FakeTun("k"), udp=esp, keepalive_sock=keepalives, clock=lambda: now[0],
                   gro=mode == "gro")
    try:
        for _ in range(8):
            peer.sendto(b"\xff", esp.getsockname())
        assert select.select([keepalives], [], [], 1.0)[0]
        time.sleep(0.05)  # all eight queued
        now[0] += 1.0
        dp.tick(now[0])
        assert dp.keepalive_rx == 5 and dp.udp_rx == 5  # the budget
        now[0] += 1.0
        dp.tick(now[0])
        assert dp.keepalive_rx == 8 and dp.udp_rx == 8
        st = asyncio.run(dp.stats())
        assert st.udp_rx_datagrams == 8
        if mode == "recvmmsg":
            assert st.udp_rx_calls <= 3
        else:
            assert st.udp_rx_calls == 8  # one datagram a receive
    finally:
        dp.close()
        keepalives.close()


def test_without_the_filter_one_socket_gets_everything_as_before(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(_sock: socket.socket) -> None:
        raise OSError(92, "Protocol not available")

    monkeypatch.setattr("vpnhub.net.ikesplit._attach_split", refused)
    esp, ike = open_natt_sockets("127.0.0.1", 0)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        assert ike is None  # the data plane hands IKE over through its inbox
        peer.sendto(NON_ESP_MARKER + IKE_MSG, esp.getsockname())
        peer.sendto(ESP, esp.getsockname())
        assert len(_recv_all(esp)) == 2
    finally:
        esp.close()
        peer.close()


def test_the_split_data_planes_counters_include_the_ike_socket(
        split: tuple[socket.socket, socket.socket, socket.socket]) -> None:
    """/metrics and the admin stats read ike_rx/ike_tx/udp_rx and drops from the data
    plane; with the split, SplitDataplane adds the IKE socket's counts to both of its
    answers (GetStats and GetCounters), keeping a reason at 0 listed."""
    esp, ike, peer = split
    reader = IkeSocket(ike, lambda m, a: None)
    peer.sendto(NON_ESP_MARKER + IKE_MSG, esp.getsockname())
    peer.sendto(NON_ESP_MARKER + b"short", esp.getsockname())
    select.select([ike], [], [], 1.0)
    reader.read()
    if reader.rx + reader.drops.total() < 2:  # the second may lag the first
        select.select([ike], [], [], 1.0)
        reader.read()
    wrapped = SplitDataplane(FakeDataplane(), reader)
    wrapped.send_ike(b"answer", peer.getsockname())
    assert peer.recvfrom(100)[0] == NON_ESP_MARKER + b"answer"
    base = asyncio.run(FakeDataplane().stats())
    for totals in (asyncio.run(wrapped.stats()), asyncio.run(wrapped.counters()).totals):
        assert (totals.ike_rx, totals.ike_tx) == (base.ike_rx + 1, base.ike_tx + 1)
        assert totals.udp_rx == base.udp_rx + 2
        assert totals.drops_total.get(SHORT_IKE, 0) == base.drops_total.get(SHORT_IKE, 0) + 1
        assert set(base.drops_total) <= set(totals.drops_total)


@pytest.mark.parametrize("batched", [True, False], ids=["recvmmsg", "one-per-call"])
def test_a_storm_of_messages_is_read_in_batches_in_order_within_the_budget(
        batched: bool) -> None:
    """Issue 13: with the accelerator the IKE socket reads up to IKE_BATCH datagrams per
    system call (recvmmsg); without it one per call. Either way every message arrives
    in order with its source, what is not IKE goes to the hand-over grouped by source
    in a row, and one read takes no more than the budget."""
    from vpnhub.net.dataplane import open_udp_socket
    from vpnhub.net.ikesplit import IKE_BATCH
    from vpnhub.net.udpgso import NETFAST

    if batched and NETFAST is None:
        pytest.skip("no accelerator (VPNHUB_PURE_PYTHON)")
    sock = open_udp_socket("127.0.0.1", 0)
    peers = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    got: list[tuple[bytes, tuple[str, int]]] = []
    handed: list[tuple[list[bytes], tuple[str, int]]] = []
    try:
        for p in peers:
            p.bind(("127.0.0.1", 0))
        reader = IkeSocket(sock, lambda m, a: got.append((m, a)), budget=30,
                           handover=lambda d, a: handed.append((d, a)))
        if not batched:
            reader._in._batch = None  # the accelerator's absence, on a socket it could read
        sent: list[tuple[bytes, tuple[str, int]]] = []
        for i in range(40):
            p = peers[i % 2]
            if i in (5, 6, 7):  # not IKE, all from peers[1] and peers[0] in turn
                p.sendto(ESP + bytes([i]), sock.getsockname())
                continue
            p.sendto(NON_ESP_MARKER + IKE_MSG + bytes([i]), sock.getsockname())
            sent.append((IKE_MSG + bytes([i]), p.getsockname()))
        select.select([sock], [], [], 1.0)
        reader.read()
        assert reader.rx_datagrams == 30  # the budget
        if batched:
            assert reader.rx_calls <= -(-30 // IKE_BATCH) + 1
        else:
            assert reader.rx_calls == 30
        while select.select([sock], [], [], 0.2)[0]:
            reader.read()
        assert got == sent
        assert reader.rx == 37 and reader.handed_over == 3
        assert [(d, a) for d, a in handed] == [
            ([ESP + bytes([5])], peers[1].getsockname()),
            ([ESP + bytes([6])], peers[0].getsockname()),
            ([ESP + bytes([7])], peers[1].getsockname())]
    finally:
        sock.close()
        for p in peers:
            p.close()


@pytest.mark.parametrize("batched", [True, False], ids=["recvmmsg", "one-per-call"])
def test_udp500_is_read_in_batches_in_order_within_the_budget(batched: bool) -> None:
    """Issue 13: UDP 500 (each login's first message) is read as the IKE socket on 4500
    is: up to IKE_BATCH datagrams a system call with the accelerator, one without;
    every datagram reaches `deliver` in order with its source, nothing is set apart
    (no marker on 500), and one read takes no more than the budget."""
    from vpnhub.net.dataplane import open_udp_socket
    from vpnhub.net.ikesplit import IkeReader
    from vpnhub.net.udpgso import NETFAST

    if batched and NETFAST is None:
        pytest.skip("no accelerator (VPNHUB_PURE_PYTHON)")
    sock = open_udp_socket("127.0.0.1", 0)
    peers = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    got: list[tuple[bytes, tuple[str, int]]] = []
    try:
        for p in peers:
            p.bind(("127.0.0.1", 0))
        reader = IkeReader(sock, lambda b: got.extend((d, a) for d, a, _s in b), budget=30)
        if not batched:
            reader._batch = None  # the accelerator's absence, on a socket it could read
        sent = []
        for i in range(40):
            p = peers[i % 2]
            data = (ESP if i == 5 else IKE_MSG) + bytes([i])  # 500 hands on anything
            p.sendto(data, sock.getsockname())
            sent.append((data, p.getsockname()))
        select.select([sock], [], [], 1.0)
        assert reader.read() == 30 and reader.rx_datagrams == 30  # the budget
        if batched:
            assert reader.rx_calls <= -(-30 // IKE_BATCH) + 1
        else:
            assert reader.rx_calls == 30
        while select.select([sock], [], [], 0.2)[0]:
            reader.read()
        assert got == sent
    finally:
        sock.close()
        for p in peers:
            p.close()


@pytest.mark.parametrize("batched", [True, False], ids=["recvmmsg", "one-per-call"])
def test_an_icmp_error_on_udp500_does_not_end_the_turn(batched: bool) -> None:
    """An error the socket reports (ICMP port unreachable for an answer we sent, with
    IP_RECVERR) is skipped as on 4500: the messages queued behind it are read in the
    same turn, not left for the next wake-up."""
    from vpnhub.net.dataplane import open_udp_socket
    from vpnhub.net.ikesplit import IkeReader
    from vpnhub.net.udpgso import NETFAST

    if batched and NETFAST is None:
        pytest.skip("no accelerator (VPNHUB_PURE_PYTHON)")
    sock = open_udp_socket("127.0.0.1", 0)
    sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.bind(("127.0.0.1", 0))
    gone = closed.getsockname()
    closed.close()  # nobody listens there: the kernel answers port unreachable
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    got: list[bytes] = []
    try:
        peer.bind(("127.0.0.1", 0))
        reader = IkeReader(sock, lambda b: got.extend(d for d, _a, _s in b))
        if not batched:
            reader._batch = None
        sock.sendto(b"answer", gone)
        time.sleep(0.05)  # the ICMP error is on the socket first
        for i in range(5):
            peer.sendto(IKE_MSG + bytes([i]), sock.getsockname())
        select.select([sock], [], [], 1.0)
        reader.read()
        assert got == [IKE_MSG + bytes([i]) for i in range(5)]
    finally:
        sock.close()
        peer.close()
