"""ESP in UDP 4500 on the cluster's virtual address (issue 17, transport "natt-virtual").

The concentrator's data plane sends the ESP and NAT keepalives of such a peer from the
virtual address's socket (``udp_virtual``); that socket is the control plane's, read by
an ``IkeSocket`` that hands everything but IKE to the data plane. On loopback:
127.0.0.1 is the member's own address, 127.0.0.2 the virtual one. The client is
another ``Dataplane`` whose peer is the virtual address: an answer from any other
source would show as a ``PeerMoved`` there (and a PAT would drop it).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from vpnhub.esp import ESP_AES_CBC, HMAC_SHA1_96, SaParams, key_lengths
from vpnhub.net.dataplane import Dataplane, open_udp_socket
from vpnhub.net.ikesplit import IkeSocket
from vpnhub.net.messages import (
    TRANSPORT_NATT_VIRTUAL,
    AddInbound,
    AddOutbound,
    GetStats,
    SetKeepalive,
)
from vpnhub.net.stats import DataplaneStats
from vpnhub.net.tun import FakeTun

CLIENT = "10.40.1.1"
LAN_HOST = "192.168.2.10"
VIRTUAL = "127.0.0.2"
NOW = 1000.0  # the concentrator's clock: its keepalives are sent when the test says


def ipv4(src: str, dst: str, payload: bytes) -> bytes:
    total = 20 + len(payload)
    return (bytes([0x45, 0, total >> 8, total & 0xFF, 0, 0, 0, 0, 64, 17, 0, 0])
            + socket.inet_aton(src) + socket.inet_aton(dst) + payload)


def params(spi: int) -> SaParams:
    enc, integ = key_lengths(ESP_AES_CBC, 128, HMAC_SHA1_96)
    return SaParams.from_keymat(spi, ESP_AES_CBC, 128, HMAC_SHA1_96, os.urandom(enc + integ))


@dataclass
class Rig:
    client: Dataplane
    conc: Dataplane
    ctun: FakeTun
    tun: FakeTun
    vip: IkeSocket
    ike: list[tuple[bytes, tuple[str, int]]]
    client_addr: tuple[str, int]
    vip_addr: tuple[str, int]

    def stats(self, dp: Dataplane) -> DataplaneStats:
        s = dp.call(GetStats())
        assert isinstance(s, DataplaneStats)
        return s


@pytest.fixture
def rig() -> Iterator[Rig]:
    try:
        vsock = open_udp_socket(VIRTUAL, 0)
    except OSError:
        pytest.skip("no 127.0.0.2 on loopback")
    ctun, tun = FakeTun("client"), FakeTun("conc")
    csock = open_udp_socket("127.0.0.1", 0)
    own = open_udp_socket("127.0.0.1", 0)  # the member's own 4500: never used here
    client = Dataplane(ctun, udp=csock)
    conc = Dataplane(tun, udp=own, udp_virtual=vsock, clock=lambda: NOW)
    ike: list[tuple[bytes, tuple[str, int]]] = []
    vip = IkeSocket(vsock, lambda m, a: ike.append((m, a)), handover=conc.hand_over)
    up, down = params(0xC0000001), params(0xC0000002)
    caddr, vaddr = csock.getsockname(), vsock.getsockname()
    client.call(AddOutbound(up, vaddr))
    client.call(AddInbound(down, vaddr))
    conc.call(AddInbound(up, caddr, allowed_src=CLIENT, transport=TRANSPORT_NATT_VIRTUAL))
    conc.call(AddOutbound(down, caddr, dst=CLIENT, transport=TRANSPORT_NATT_VIRTUAL))
    yield Rig(client, conc, ctun, tun, vip, ike, caddr, vaddr)
    for dp, t, s in ((client, ctun, csock), (conc, tun, own)):
        dp.close()
        s.close()
        t.close()
    vsock.close()


def test_esp_both_ways_through_the_virtual_address(rig: Rig) -> None:
    up = [ipv4(CLIENT, LAN_HOST, os.urandom(n)) for n in (10, 500)]
    for p in up:
        rig.ctun.inject(p)
    rig.client.poll(0.5)
    rig.vip.read()  # the control plane reads the virtual address's socket
    rig.conc.poll(0.5)  # and hands the ESP over
    assert rig.tun.sent() == up
    # a train: datagrams of one size to one peer leave in one send (GSO) from the VIP
    down = [ipv4(LAN_HOST, CLIENT, bytes(1000)) for _ in range(4)]
    for p in down:
        rig.tun.inject(p)
    rig.conc.poll(0.5)
    got: list[bytes] = []
    for _ in range(20):
        rig.client.poll(0.2)
        got += rig.ctun.sent()
        if len(got) == len(down):
            break
    assert got == down
    assert rig.client.inbox.drain() == []  # no PeerMoved: it all came from the VIP
    s = rig.stats(rig.conc)
    assert s.esp_via_ike_socket == 2 and rig.vip.handed_over == 2 and not rig.vip.drops
    assert s.udp_tx_datagrams == 4
    assert {p.transport for p in s.peers} == {TRANSPORT_NATT_VIRTUAL}


def test_keepalives_and_ike_on_the_virtual_address(rig: Rig) -> None:
    rig.conc.call(SetKeepalive(rig.client_addr, 20.0, TRANSPORT_NATT_VIRTUAL))
    rig.conc.tick(NOW)  # nothing sent yet: due now, from the virtual address
    rig.client.poll(0.5)
    peers = {(p.transport, p.addr): p for p in rig.stats(rig.client).peers}
    assert peers[("natt", rig.vip_addr)].keepalives_rx == 1
    # the client's keepalive and an IKE message to the virtual address
    rig.client.send_ike(b"I" * 28, rig.vip_addr)
    rig.client.udp.sendto(b"\xff", rig.vip_addr)  # type: ignore[union-attr]
    for _ in range(20):
        rig.vip.read()
        if rig.ike and rig.vip.handed_over:
            break
    rig.conc.poll(0.5)
    assert rig.ike == [(b"I" * 28, rig.client_addr)]
    s = rig.stats(rig.conc)
    assert s.keepalive_tx == 1 and s.keepalive_rx == 1
    peer = next(p for p in s.peers if p.transport == TRANSPORT_NATT_VIRTUAL)
    assert peer.keepalives_rx == 1 and peer.keepalives_tx == 1


def test_no_virtual_socket_refuses_the_transport() -> None:
    tun = FakeTun("x")
    sock = open_udp_socket("127.0.0.1", 0)
    dp = Dataplane(tun, udp=sock)
    try:
        with pytest.raises(RuntimeError, match="virtual address"):
            dp.call(AddInbound(params(0xC0000003), ("127.0.0.1", 9),
                               transport=TRANSPORT_NATT_VIRTUAL))
    finally:
        dp.close()
        sock.close()
        tun.close()
