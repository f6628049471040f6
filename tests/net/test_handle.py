"""The data-plane seam: ``Dataplane`` and ``FakeDataplane`` are ``DataplaneHandle``s,
the typed stats, and the fake's bookkeeping."""

from __future__ import annotations

import asyncio
import os
import socket

from vpnhub.esp import ESP_AES_CBC, HMAC_SHA1_96, SaParams, key_lengths
from vpnhub.ike.transport import Transport
from vpnhub.net.dataplane import Dataplane, open_udp_socket
from vpnhub.net.fake_dataplane import FakeDataplane, SentIke
from vpnhub.net.handle import DataplaneHandle, DataplaneStats, PeerStats, SaStats
from vpnhub.net.messages import (
    AddInbound,
    CtcpClosed,
    IkeDatagram,
    RemoveSA,
    SaExhausted,
    UpdatePeer,
)
from vpnhub.net.tun import FakeTun

PEER = ("198.51.100.7", 4500)
MOVED = ("198.51.100.7", 61000)


def params(spi: int) -> SaParams:
    enc_len, integ_len = key_lengths(ESP_AES_CBC, 128, HMAC_SHA1_96)
    return SaParams.from_keymat(spi, ESP_AES_CBC, 128, HMAC_SHA1_96,
                                os.urandom(enc_len + integ_len))


def install(dp: DataplaneHandle) -> None:
    """What a control plane does when a child SA comes up (written against the seam)."""
    dp.add_inbound(params(0x1001), PEER, allowed_src="10.40.1.1")
    dp.add_outbound(params(0x2001), PEER, dst="10.40.1.1")
    dp.set_keepalive(PEER, 20.0)


def test_both_are_handles() -> None:
    # mypy checks these assignments: the Protocol is satisfied structurally.
    tun = FakeTun()
    real: DataplaneHandle = Dataplane(tun)
    fake: DataplaneHandle = FakeDataplane()
    assert real is not fake
    real_dp = real
    assert isinstance(real_dp, Dataplane)
    real_dp.close()
    tun.close()


def test_dataplane_stats_typed_and_dict() -> None:
    tun = FakeTun()
    udp = open_udp_socket("127.0.0.1", 0)
    dp = Dataplane(tun, udp=udp)
    try:
        install(dp)
        dp.apply_commands()  # no loop thread: run the queued commands here
        typed = dp.stats_now()
        assert isinstance(typed, DataplaneStats)
        inbound = typed.sa(0x1001, "in")
        outbound = typed.sa(0x2001, "out")
        assert isinstance(inbound, SaStats) and isinstance(outbound, SaStats)
        assert inbound.peer == PEER and inbound.transport == "natt" and inbound.udp_encap
        assert outbound.dst == "10.40.1.1/32" and outbound.tunnel_mtu is not None
        peer = typed.peer(PEER)
        assert isinstance(peer, PeerStats) and peer.keepalive_interval == 20.0
        # The JSON-ready shape, built from the typed one in one place (stats.py).
        snap = typed.as_dict()
        assert {s["spi"] for s in snap["sas"]} == {"00001001", "00002001"}  # type: ignore[attr-defined]
        assert set(snap) >= {"tun_rx", "udp_rx", "drops_total", "esp_totals", "frag", "ctcp"}
        dp.remove_sa(0x1001)
        dp.apply_commands()
        assert dp.stats_now().sa(0x1001, "in") is None
    finally:
        dp.close()
        udp.close()
        tun.close()


def test_dataplane_stats_from_asyncio() -> None:
    tun = FakeTun()
    dp = Dataplane(tun)
    dp.start()
    try:
        stats = asyncio.run(dp.stats())
        assert isinstance(stats, DataplaneStats) and stats.sas == ()
    finally:
        dp.close()
        tun.close()


def test_dataplane_send_ike_takes_the_enum() -> None:
    tun = FakeTun()
    udp = open_udp_socket("127.0.0.1", 0)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    dp = Dataplane(tun, udp=udp)
    try:
        dp.send_ike(b"\x01" * 28, sink.getsockname(), Transport.NATT)
        assert sink.recv(100) == b"\x00" * 4 + b"\x01" * 28  # non-ESP marker, RFC 3948 2.2
        for wrong in (Transport.IKE, "udp"):
            try:
                dp.send_ike(b"\x01" * 28, sink.getsockname(), wrong)
            except ValueError:
                continue
            raise AssertionError(f"{wrong!r} accepted")
    finally:
        dp.close()
        udp.close()
        sink.close()
        tun.close()


def test_fake_records_commands() -> None:
    fake = FakeDataplane()
    install(fake)
    assert set(fake.inbound) == {0x1001} and set(fake.outbound) == {0x2001}
    assert fake.inbound[0x1001].allowed_src == "10.40.1.1"
    assert fake.keepalives == {PEER: (20.0, "natt")}
    fake.update_peer(PEER, MOVED)
    assert fake.inbound[0x1001].peer == MOVED and fake.outbound[0x2001].peer == MOVED
    assert MOVED in fake.keepalives
    fake.add_outbound(params(0x2002), MOVED, dst="10.40.1.1")  # a rekey takes the route
    assert set(fake.outbound) == {0x2002}
    fake.remove_sa(0x1001)
    assert fake.inbound == {}
    assert isinstance(fake.commands[0], AddInbound)
    assert UpdatePeer(PEER, MOVED) in fake.commands and RemoveSA(0x1001) in fake.commands


def test_fake_ike_per_transport() -> None:
    fake = FakeDataplane()
    fake.send_ike(b"a", PEER)
    fake.send_ike(b"b", ("203.0.113.9", 10000), Transport.CTCP)
    assert fake.sent_on(Transport.NATT) == [(b"a", PEER)]
    assert fake.sent_on(Transport.CTCP) == [(b"b", ("203.0.113.9", 10000))]
    assert fake.take_sent()[0] == SentIke(b"a", PEER, Transport.NATT) and fake.sent == []
    fake.send_error = ConnectionError("no IPsec over TCP connection")
    try:
        fake.send_ike(b"c", PEER)
    except OSError:
        pass
    else:
        raise AssertionError("send_error not raised")


def test_fake_events_and_notify() -> None:
    woken: list[int] = []
    fake = FakeDataplane(notify=lambda: woken.append(1))
    fake.inject(IkeDatagram(b"x", PEER), SaExhausted(0x2001))
    fake.inject(CtcpClosed(("203.0.113.9", 10000), "ctcp_eof"))
    assert woken == [1]  # once per burst, as the real inbox
    assert fake.events() == [IkeDatagram(b"x", PEER), SaExhausted(0x2001),
                             CtcpClosed(("203.0.113.9", 10000), "ctcp_eof")]
    assert fake.events() == []


def test_fake_stats() -> None:
    fake = FakeDataplane()
    install(fake)
    fake.count(0x1001, "in", packets=3, bytes_=300, drops={"replay": 1})
    fake.count(0x2001, "out", packets=2, bytes_=200)
    stats = asyncio.run(fake.stats())
    inbound = stats.sa(0x1001, "in")
    outbound = stats.sa(0x2001, "out")
    assert inbound is not None and outbound is not None
    assert (inbound.packets_in, inbound.bytes_in, dict(inbound.drops)) == (3, 300, {"replay": 1})
    assert (outbound.packets_out, outbound.bytes_out) == (2, 200)
    assert inbound.suite == outbound.suite and "AES" in inbound.suite.upper()
    assert stats.drops_total == {"replay": 1}
    peer = stats.peer(PEER)
    assert peer is not None and peer.keepalive_interval == 20.0
    fixed = DataplaneStats(tun_rx=7)
    fake.set_stats(fixed)
    assert asyncio.run(fake.stats()) is fixed


def test_dataplane_stats_without_a_loop_thread() -> None:
    # No start(): the answer comes from here instead of a queue nobody reads.
    tun = FakeTun()
    udp = open_udp_socket("127.0.0.1", 0)
    dp = Dataplane(tun, udp=udp)
    try:
        dp.add_inbound(params(0x1001), PEER)
        stats = asyncio.run(asyncio.wait_for(dp.stats(), 5))
        inbound = stats.sa(0x1001, "in")
        assert inbound is not None and inbound.transport == "natt"
    finally:
        dp.close()
        udp.close()
        tun.close()
