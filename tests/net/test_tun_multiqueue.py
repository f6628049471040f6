"""A multi-queue TUN (IFF_MULTI_QUEUE) with one queue per data-plane worker (issue 16).

In a namespace of the test's own, as root: UDP flows from the namespace's stack
into the TUN are each read from exactly one queue, and enough flows use both;
a packet written on either queue is delivered to the stack; and the reply to
a flow a queue wrote comes back on that queue (tun_automq_select_queue and
tun_flow_update, drivers/net/tun.c), the fact the worker pool relies on.
"""

from __future__ import annotations

import os
import select
import socket
from collections import defaultdict
from collections.abc import Iterator

import pytest

from vpnhub.net.tun import TunDevice, TunQueue, enter_netns, ip

LOCAL = "10.99.6.1"  # the namespace's address on the TUN
REMOTE = "10.99.6.2"  # "a client" behind the TUN
FLOWS = 24  # all on one queue by chance: 2**-23


def _csum(data: bytes) -> int:
    total = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _udp(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    """An IPv4 UDP packet (UDP checksum 0: none, allowed over IPv4, RFC 768)."""
    udp = sport.to_bytes(2, "big") + dport.to_bytes(2, "big") + \
        (8 + len(payload)).to_bytes(2, "big") + bytes(2) + payload
    header = bytearray(b"\x45\x00" + (20 + len(udp)).to_bytes(2, "big") +
                       b"\x00\x01\x40\x00\x40\x11\x00\x00" +
                       socket.inet_aton(src) + socket.inet_aton(dst))
    header[10:12] = _csum(bytes(header)).to_bytes(2, "big")
    return bytes(header) + udp


def _drain(queues: list[TunQueue], timeout: float = 0.5) -> dict[int, list[bytes]]:
    """The IPv4 UDP packets each queue has (IPv6 router solicitations skipped)."""
    got: dict[int, list[bytes]] = defaultdict(list)
    while ready := select.select(queues, [], [], timeout)[0]:
        for q in ready:
            try:
                packet = q.read()
            except BlockingIOError:
                continue
            if packet[0] >> 4 == 4 and packet[9] == 17:
                got[queues.index(q)].append(packet)
    return got


@pytest.fixture
def tun() -> Iterator[tuple[str, TunDevice]]:
    ns = f"vhesp-mq-{os.getpid()}"
    ip("netns", "add", ns)
    try:
        with TunDevice("vhmq%d", netns=ns, queues=2) as dev:
            dev.configure(f"{LOCAL}/24")
            yield ns, dev
    finally:
        ip("netns", "del", ns)


def _socket_in(ns: str, port: int = 0) -> socket.socket:
    with enter_netns(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((LOCAL, port))
    return s


@pytest.mark.netns
def test_two_queues_on_one_interface(tun: tuple[str, TunDevice]) -> None:
    ns, dev = tun
    assert len(dev.queues) == 2 and dev.multi_queue
    assert all(q.name == dev.name for q in dev.queues)
    assert len({q.fileno() for q in dev.queues}) == 2 and dev.fileno() == dev.queues[0].fileno()
    assert "multi_queue" in ip("-d", "link", "show", "dev", dev.name, netns=ns)


@pytest.mark.netns
def test_each_flow_from_the_stack_is_read_from_exactly_one_queue(
        tun: tuple[str, TunDevice]) -> None:
    ns, dev = tun
    socks = [_socket_in(ns) for _ in range(FLOWS)]
    try:
        for n, s in enumerate(socks):
            for i in range(3):
                s.sendto(b"flow%02d-%d" % (n, i), (REMOTE, 5000 + n))
        got = _drain(dev.queues)
    finally:
        for s in socks:
            s.close()
    where: dict[bytes, list[int]] = defaultdict(list)
    for q, packets in got.items():
        for p in packets:
            where[p[28:]].append(q)
    sent = {b"flow%02d-%d" % (n, i) for n in range(FLOWS) for i in range(3)}
    assert set(where) == sent
    assert all(len(qs) == 1 for qs in where.values())  # no packet on two queues
    for n in range(FLOWS):  # a flow stays on its queue
        assert len({where[b"flow%02d-%d" % (n, i)][0] for i in range(3)}) == 1
    assert set(got) == {0, 1}, "with this many flows both queues are used"


@pytest.mark.netns
def test_a_write_on_either_queue_is_delivered_and_the_reply_comes_back_on_it(
        tun: tuple[str, TunDevice]) -> None:
    ns, dev = tun
    server = _socket_in(ns, 4242)
    try:
        for n in range(8):
            q = n % 2
            dev.queues[q].write(_udp(REMOTE, LOCAL, 6000 + n, 4242, b"to-stack-%d" % n))
            assert select.select([server], [], [], 2.0)[0]
            data, addr = server.recvfrom(100)
            assert (data, addr) == (b"to-stack-%d" % n, (REMOTE, 6000 + n))
            server.sendto(b"reply-%d" % n, addr)
            got = _drain(dev.queues, 0.3)
            replies = [(i, p[28:]) for i, ps in got.items() for p in ps]
            assert replies == [(q, b"reply-%d" % n)]  # the queue that wrote the flow
    finally:
        server.close()
