"""Dataplane over in-memory TUNs and real UDP sockets on loopback (no root needed).

A is a client (default route into the tunnel, inner address 10.40.1.1);
B is the concentrator (routes 10.40.1.1 back to A, checks inner sources).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass

import pytest

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
from vpnhub.net.dataplane import (
    ControlInbox,
    Dataplane,
    open_udp_socket,
)
from vpnhub.net.messages import (
    AddInbound,
    AddOutbound,
    GetCounters,
    GetStats,
    IkeDatagram,
    PeerMoved,
    RemoveSA,
    SaExhausted,
    SetKeepalive,
    UpdatePeer,
)
from vpnhub.net.stats import DataplaneStats, SaCounters
from vpnhub.net.tun import FakeTun
from vpnhub.net.udpencap import NON_ESP_MARKER

CLIENT = "10.40.1.1"
LAN_HOST = "192.168.2.10"


def ipv4(src: str, dst: str, payload: bytes = b"x" * 64, proto: int = 17) -> bytes:
    total = 20 + len(payload)
    return (bytes([0x45, 0, total >> 8, total & 0xFF, 0, 0, 0, 0, 64, proto, 0, 0])
            + socket.inet_aton(src) + socket.inet_aton(dst) + payload)


def params(spi: int, suite: tuple[int, int | None, int | None]) -> SaParams:
    transform, bits, auth = suite
    enc_len, integ_len = key_lengths(transform, bits, auth)
    return SaParams.from_keymat(spi, transform, bits, auth, os.urandom(enc_len + integ_len))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Pair:
    a: Dataplane
    b: Dataplane
    tun_a: FakeTun
    tun_b: FakeTun
    addr_a: tuple[str, int]
    addr_b: tuple[str, int]
    a_to_b: SaParams
    b_to_a: SaParams
    clock: Clock

    def a_sends(self, *packets: bytes) -> list[bytes]:
        for p in packets:
            self.tun_a.inject(p)
        self.a.poll(0.5)
        self.b.poll(0.5)
        return self.tun_b.sent()

    def b_sends(self, *packets: bytes) -> list[bytes]:
        for p in packets:
            self.tun_b.inject(p)
        self.b.poll(0.5)
        self.a.poll(0.5)
        return self.tun_a.sent()


def stats(dp: Dataplane) -> dict[str, object]:
    result = dp.call(GetStats())
    assert isinstance(result, DataplaneStats)
    return result.as_dict()


def drops(dp: Dataplane) -> dict[str, int]:
    total = stats(dp)["drops_total"]
    assert isinstance(total, dict)
    return total


def make_pair(suite: tuple[int, int | None, int | None] = (ESP_AES_CBC, 128, HMAC_SHA1_96),
              ) -> Pair:
    clock = Clock()
    tun_a, tun_b = FakeTun("a"), FakeTun("b")
    udp_a = open_udp_socket("127.0.0.1", 0)
    udp_b = open_udp_socket("127.0.0.1", 0)
    addr_a, addr_b = udp_a.getsockname(), udp_b.getsockname()
    a = Dataplane(tun_a, udp=udp_a, clock=clock)
    b = Dataplane(tun_b, udp=udp_b, clock=clock)
    a_to_b, b_to_a = params(0xA0000001, suite), params(0xB0000001, suite)
    a.call(AddOutbound(a_to_b, addr_b))  # default route
    a.call(AddInbound(b_to_a, addr_b))
    b.call(AddInbound(a_to_b, addr_a, allowed_src=CLIENT))
    b.call(AddOutbound(b_to_a, addr_a, dst=CLIENT))
    return Pair(a, b, tun_a, tun_b, addr_a, addr_b, a_to_b, b_to_a, clock)


def close_pair(p: Pair) -> None:
    for dp, tun in ((p.a, p.tun_a), (p.b, p.tun_b)):
        dp.close()
        assert dp.udp is not None
        dp.udp.close()
        tun.close()


@pytest.fixture
def pair() -> Iterator[Pair]:
    p = make_pair()
    yield p
    close_pair(p)


SUITES = [(ESP_AES_CBC, 128, HMAC_SHA1_96), (ESP_AES_CBC, 256, HMAC_SHA2_256_128),
          (ESP_3DES, None, HMAC_MD5_96), (ESP_AES_GCM_16, 128, None)]


@pytest.mark.parametrize("suite", SUITES, ids=["aes128-sha1", "aes256-sha256", "3des-md5", "gcm"])
def test_forwarding_both_ways(suite: tuple[int, int | None, int | None]) -> None:
    p = make_pair(suite)
    up = [ipv4(CLIENT, LAN_HOST, os.urandom(n)) for n in (0, 1, 100, 1380)]
    assert p.a_sends(*up) == up
    down = [ipv4(LAN_HOST, CLIENT, os.urandom(n)) for n in (5, 1000)]
    assert p.b_sends(*down) == down
    st = stats(p.b)
    sas = {s["spi"]: s for s in st["sas"]}  # type: ignore[attr-defined]
    assert sas["a0000001"]["packets_in"] == 4 and sas["a0000001"]["direction"] == "in"
    assert sas["b0000001"]["packets_out"] == 2 and sas["b0000001"]["dst"] == f"{CLIENT}/32"
    assert sas["a0000001"]["last_activity"] == 1000.0
    assert st["drops_total"] == {}
    close_pair(p)


def test_spoofed_source_dropped(pair: Pair) -> None:
    assert pair.a_sends(ipv4("10.40.1.2", LAN_HOST)) == []
    assert pair.a_sends(ipv4(LAN_HOST, LAN_HOST)) == []
    assert drops(pair.b) == {"spoofed_source": 2}
    assert pair.a_sends(ipv4(CLIENT, LAN_HOST)) != []


def test_tun_drops(pair: Pair) -> None:
    pair.tun_b.inject(b"\x60" + bytes(39))  # IPv6
    pair.tun_b.inject(b"\x45" + bytes(5))  # runt
    pair.tun_b.inject(ipv4(LAN_HOST, "10.40.1.77"))  # no SA for that client
    pair.b.poll(0.2)
    assert drops(pair.b) == {"not_ipv4": 2, "no_sa": 1}


def test_unknown_spi_replay_and_garbage(pair: Pair) -> None:
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    raw.bind((pair.addr_a[0], 0))
    try:
        forger = pair.a_to_b.build()
        esp = forger.encapsulate(ipv4(CLIENT, LAN_HOST))
        raw.sendto(esp, pair.addr_b)
        raw.sendto(esp, pair.addr_b)  # replayed
        raw.sendto(b"\xde\xad\xbe\xef" + esp[4:], pair.addr_b)  # unknown SPI
        raw.sendto(b"\x01\x02\x03", pair.addr_b)
        raw.sendto(b"", pair.addr_b)
        raw.sendto(NON_ESP_MARKER + b"\x00", pair.addr_b)
        pair.b.poll(0.5)
        assert len(pair.tun_b.sent()) == 1
        assert drops(pair.b) == {"replay": 1, "unknown_spi": 1, "short_datagram": 1,
                                 "empty_datagram": 1, "short_ike": 1}
        events = pair.b.inbox.drain()
        # The packet came from another port than the configured peer.
        assert events == [PeerMoved(0xA0000001, pair.addr_a, raw.getsockname())]
    finally:
        raw.close()


def test_ike_and_keepalive_on_4500(pair: Pair) -> None:
    ike = bytes(range(28)) + b"payloads"
    pair.a.send_ike(ike, pair.addr_b)
    pair.clock.now = 1000.0
    pair.a.call(SetKeepalive(pair.addr_b, 20.0))
    pair.a.tick(1000.0)  # nothing ever sent to B: keepalive due now
    pair.b.poll(0.5)
    assert pair.b.inbox.drain() == [IkeDatagram(ike, pair.addr_a)]
    st = stats(pair.b)
    assert st["ike_rx"] == 1 and st["keepalive_rx"] == 1
    peers = {tuple(p["addr"]): p for p in st["peers"]}  # type: ignore[attr-defined]
    assert peers[pair.addr_a]["keepalives_rx"] == 1
    assert stats(pair.a)["keepalive_tx"] == 1 and stats(pair.a)["ike_tx"] == 1


def test_keepalive_only_after_silence(pair: Pair) -> None:
    pair.a.call(SetKeepalive(pair.addr_b, 20.0))
    pair.a.tick(1000.0)
    pair.a.tick(1019.0)
    assert stats(pair.a)["keepalive_tx"] == 1
    pair.clock.now = 1015.0  # ESP at 1015 resets the silence timer
    pair.a_sends(ipv4(CLIENT, LAN_HOST))
    pair.a.tick(1030.0)
    assert stats(pair.a)["keepalive_tx"] == 1
    pair.a.tick(1035.0)
    assert stats(pair.a)["keepalive_tx"] == 2
    pair.a.call(SetKeepalive(pair.addr_b, None))
    pair.a.tick(2000.0)
    assert stats(pair.a)["keepalive_tx"] == 2


def test_remove_sa(pair: Pair) -> None:
    assert pair.b.call(RemoveSA(0xA0000001)) == 1
    assert pair.a_sends(ipv4(CLIENT, LAN_HOST)) == []
    assert drops(pair.b) == {"unknown_spi": 1}
    assert pair.a.call(RemoveSA(0xA0000001)) == 1  # A's outbound (default route)
    assert pair.a_sends(ipv4(CLIENT, LAN_HOST)) == []
    assert drops(pair.a) == {"no_sa": 1}
    assert pair.a.call(RemoveSA(0x12345678)) == 0


def esp_totals(dp: Dataplane) -> dict[str, int]:
    totals = stats(dp)["esp_totals"]
    assert isinstance(totals, dict)
    return totals


def test_esp_totals_never_go_down(pair: Pair) -> None:
    """Issue 11 point 10: byte and packet totals (the manager's Prometheus counters) keep
    what ended SAs carried, through a rekey (the new SA takes the route) and a delete."""
    assert len(pair.a_sends(*[ipv4(CLIENT, LAN_HOST, b"x" * 100)] * 3)) == 3
    assert len(pair.b_sends(ipv4(LAN_HOST, CLIENT, b"y" * 50))) == 1
    before = esp_totals(pair.b)
    assert before["packets_in"] == 3 and before["packets_out"] == 1
    assert before["bytes_in"] > 300 and before["bytes_out"] > 50
    # rekey: B's new inbound and outbound SAs, A switches; then the old ones go
    new_ab = params(0xA0000002, (ESP_AES_GCM_16, 256, None))
    new_ba = params(0xB0000002, (ESP_AES_GCM_16, 256, None))
    pair.b.call(AddInbound(new_ab, pair.addr_a, allowed_src=CLIENT))
    pair.b.call(AddOutbound(new_ba, pair.addr_a, dst=CLIENT))  # replaces B's old route
    pair.a.call(AddOutbound(new_ab, pair.addr_b))
    pair.a.call(AddInbound(new_ba, pair.addr_b))
    pair.b.call(RemoveSA(0xA0000001))
    pair.b.call(RemoveSA(0xB0000001))
    assert esp_totals(pair.b) == before
    assert len(pair.a_sends(ipv4(CLIENT, LAN_HOST, b"z" * 10))) == 1
    after = esp_totals(pair.b)
    assert after["packets_in"] == 4 and after["bytes_in"] > before["bytes_in"]
    # every SA gone: nothing is lost
    pair.b.call(RemoveSA(0xA0000002))
    pair.b.call(RemoveSA(0xB0000002))
    assert esp_totals(pair.b) == after and stats(pair.b)["sas"] == []


def totals_only(dp: Dataplane) -> DataplaneStats:
    result = dp.call(GetCounters(False))
    assert isinstance(result, SaCounters)
    return result.totals


def test_totals_summed_again_only_after_traffic(pair: Pair) -> None:
    """Issue 13: the 2 s totals reuse the live SAs' sums while no packet went through
    an SA and no SA came or went; any of those makes them summed again."""
    first = totals_only(pair.b)
    sums = pair.b._live_sums_at
    assert totals_only(pair.b) == first and pair.b._live_sums_at is sums  # idle: reused
    assert len(pair.a_sends(ipv4(CLIENT, LAN_HOST, b"x" * 100))) == 1
    moved = totals_only(pair.b).esp_totals
    assert moved.packets_in == first.esp_totals.packets_in + 1
    assert pair.a_sends(ipv4("10.40.1.2", LAN_HOST)) == []  # a drop on the SA
    assert totals_only(pair.b).drops_total == {"spoofed_source": 1}
    assert len(pair.b_sends(ipv4(LAN_HOST, CLIENT, b"y" * 50))) == 1
    assert totals_only(pair.b).esp_totals.packets_out == first.esp_totals.packets_out + 1
    assert totals_only(pair.b).as_dict() == {k: v for k, v in stats(pair.b).items()
                                             if k not in ("sas", "peers")} | {
        "sas": [], "peers": []}
    last = totals_only(pair.b).esp_totals
    pair.b.call(RemoveSA(0xA0000001))  # ended: kept in the totals, as before
    assert totals_only(pair.b).esp_totals == last


def test_rekey_keeps_traffic_flowing(pair: Pair) -> None:
    new_ab = params(0xA0000002, (ESP_AES_GCM_16, 256, None))
    pair.b.call(AddInbound(new_ab, pair.addr_a, allowed_src=CLIENT))
    # Old SA still accepted while the new one is installed.
    assert len(pair.a_sends(ipv4(CLIENT, LAN_HOST))) == 1
    pair.a.call(AddOutbound(new_ab, pair.addr_b))
    assert len(pair.a_sends(ipv4(CLIENT, LAN_HOST))) == 1
    pair.b.call(RemoveSA(0xA0000001))
    assert len(pair.a_sends(ipv4(CLIENT, LAN_HOST))) == 1
    sas = {s["spi"]: s for s in stats(pair.b)["sas"]}  # type: ignore[attr-defined]
    assert sas["a0000002"]["packets_in"] == 2
    assert "a0000001" not in sas


def test_longest_prefix_routing() -> None:
    tun = FakeTun()
    udp = open_udp_socket("127.0.0.1", 0)
    sink = open_udp_socket("127.0.0.1", 0)
    dp = Dataplane(tun, udp=udp)
    suite = (ESP_AES_CBC, 128, HMAC_SHA1_96)
    try:
        for spi, dst in [(0x1001, None), (0x1002, "192.168.0.0/16"),
                         (0x1003, "192.168.2.0/24"), (0x1004, "192.168.2.10")]:
            dp.call(AddOutbound(params(spi, suite), sink.getsockname(), dst=dst))
        for dst, spi in [("192.168.2.10", 0x1004), ("192.168.2.11", 0x1003),
                         ("192.168.3.1", 0x1002), ("8.8.8.8", 0x1001)]:
            tun.inject(ipv4(CLIENT, dst))
            dp.poll(0.2)
            assert int.from_bytes(sink.recv(2048)[:4], "big") == spi
    finally:
        dp.close()
        udp.close()
        sink.close()
        tun.close()


def test_update_peer_follows_nat_rebinding(pair: Pair) -> None:
    moved = open_udp_socket("127.0.0.1", 0)
    try:
        assert pair.b.call(UpdatePeer(pair.addr_a, moved.getsockname())) is True
        pair.tun_b.inject(ipv4(LAN_HOST, CLIENT))
        pair.b.poll(0.2)
        esp = moved.recv(2048)
        assert esp[:4] == (0xB0000001).to_bytes(4, "big")
    finally:
        moved.close()


def test_seq_exhausted_event(pair: Pair) -> None:
    sa = pair.a.call(AddOutbound(params(0xA0000009, (ESP_AES_CBC, 128, HMAC_SHA1_96)),
                                 pair.addr_b))
    assert isinstance(sa, EspSA)
    sa.seq = 0xFFFFFFFF
    pair.tun_a.inject(ipv4(CLIENT, LAN_HOST))
    pair.a.poll(0.2)
    assert pair.a.inbox.drain() == [SaExhausted(0xA0000009)]
    assert drops(pair.a) == {"seq_exhausted": 1}


def test_threaded_loop_and_submit(pair: Pair) -> None:
    pair.clock.now = 0.0
    pair.b.start()
    try:
        # Commands from this thread go through the eventfd to the loop thread.
        assert pair.b.call(RemoveSA(0x0BADBAD0)) == 0
        packets = [ipv4(CLIENT, LAN_HOST, os.urandom(200)) for _ in range(50)]
        for pkt in packets:
            pair.tun_a.inject(pkt)
        pair.a.poll(0.5)
        got: list[bytes] = []
        for _ in range(100):
            got += pair.tun_b.sent()
            if len(got) == len(packets):
                break
            time.sleep(0.01)
        assert got == packets
        future = pair.b.submit(GetStats())
        result = future.result(5)
        assert isinstance(result, DataplaneStats) and result.udp_rx == 50
    finally:
        pair.b.stop()


def test_submit_burst_from_threads_never_strands_a_command(pair: Pair) -> None:
    """submit() writes the eventfd once per batch (a flag the loop clears before it
    drains): 4 threads x 500 commands against the running loop all complete (a
    command stranded by a lost wake-up would wait for the next submit, for ever here)."""
    pair.b.start()
    futures: list[Future[object]] = []
    lock = threading.Lock()

    def burst() -> None:
        for i in range(500):
            f = pair.b.submit(RemoveSA(0x0BAD0000 + i))
            with lock:
                futures.append(f)

    try:
        threads = [threading.Thread(target=burst) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for f in futures:
            assert f.result(5) == 0
    finally:
        pair.b.stop()


def test_a_submit_racing_the_wake_up_is_not_stranded(pair: Pair,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The interleaving that once stranded a command, made deterministic: another
    thread's submit() lands while the loop is reading the eventfd. Every later
    command must still wake the loop (a lost wake-up hung the admin socket's
    `sessions` with 10,000 sessions in bench/scale.py)."""
    dp = pair.b
    real_read = os.eventfd_read
    raced: list[Future[object]] = []

    def read_with_a_racing_submit(fd: int) -> int:
        if not raced:
            raced.append(dp.submit(RemoveSA(0x0BAD0001)))
        return real_read(fd)

    monkeypatch.setattr("vpnhub.net.dataplane.os.eventfd_read", read_with_a_racing_submit)
    first = dp.submit(RemoveSA(0x0BAD0000))
    dp.poll(0.5)
    assert first.done() and raced and raced[0].done()
    later = dp.submit(RemoveSA(0x0BAD0002))
    dp.poll(0.5)
    assert later.done() and later.result() == 0


def test_batch_wakes_the_loop_once_at_its_end(pair: Pair) -> None:
    """Commands submitted inside batch() write the eventfd once, on exit (a tunnel's
    two SA commands: one wake-up of the data-plane thread; issue 13)."""
    dp = pair.b
    with dp.batch():
        first = dp.submit(RemoveSA(0x0BAD0001))
        with dp.batch():  # nested: joins the outer batch
            second = dp.submit(RemoveSA(0x0BAD0002))
        with pytest.raises(BlockingIOError):  # nothing written yet
            os.eventfd_read(dp._wake)
    assert os.eventfd_read(dp._wake) == 1
    dp.apply_commands()
    assert first.result(0) == 0 and second.result(0) == 0


def test_call_inside_a_batch_does_not_wait_for_its_end(pair: Pair) -> None:
    """call() waits for its answer: inside a batch it wakes the running loop itself."""
    pair.b.start()
    try:
        with pair.b.batch():
            queued = pair.b.submit(RemoveSA(0x0BAD0003))
            assert pair.b.call(RemoveSA(0x0BAD0004), timeout=5) == 0
        assert queued.result(5) == 0
    finally:
        pair.b.stop()


def test_budget_does_not_starve(pair: Pair) -> None:
    pair.a.budget = 4
    packets = [ipv4(CLIENT, LAN_HOST, bytes([i])) for i in range(10)]
    for pkt in packets:
        pair.tun_a.inject(pkt)
    pair.a.poll(0.2)
    assert stats(pair.a)["tun_rx"] == 4
    pair.a.poll(0.2)
    pair.a.poll(0.2)
    pair.b.poll(0.2)
    assert pair.tun_b.sent() == packets


def test_control_inbox_bounded_and_notify() -> None:
    calls: list[int] = []
    inbox = ControlInbox(maxlen=2, notify=lambda: calls.append(1))
    ev = IkeDatagram(b"x", ("203.0.113.78", 1025))
    assert inbox.put(ev) and inbox.put(ev)
    assert not inbox.put(ev)
    assert inbox.dropped == 1
    assert calls == [1]  # one wake-up per burst
    assert inbox.drain() == [ev, ev]
    inbox.put(ev)
    assert calls == [1, 1]
    assert inbox.get(0.01) == ev
    assert inbox.get(0.01) is None


def test_random_datagrams_never_escape(pair: Pair) -> None:
    """Garbage on 4500 (random, or behind a valid SPI) is counted, never raised."""
    import random

    rng = random.Random(4500)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    spi = (0xA0000001).to_bytes(4, "big")
    try:
        sent = 0
        for i in range(400):
            body = rng.randbytes(rng.randrange(0, 120))
            datagram = spi + body if i % 2 else body
            if datagram[:4] == NON_ESP_MARKER and len(datagram) >= 32:
                continue  # well-formed IKE framing goes to the inbox, not a drop
            if datagram == b"\xff":
                continue
            sender.sendto(datagram, pair.addr_b)
            sent += 1
            if sent % 50 == 0:
                pair.b.poll(0.2)
        for _ in range(5):
            pair.b.poll(0.1)
        assert sum(drops(pair.b).values()) == sent
        assert pair.tun_b.sent() == []
    finally:
        sender.close()


def test_threaded_loop_with_moderation_forwards_everything(pair: Pair) -> None:
    """The moderated loop (what [dataplane] moderation_us runs) loses and reorders
    nothing, and its waits do happen under a stream of small batches."""
    pair.b.moderation = 0.0002
    pair.clock.now = 0.0  # every epoll "slept" 0 s: all wake-ups count as a stream
    pair.b.start()
    try:
        assert pair.b.call(RemoveSA(0x0BADBAD0)) == 0  # the loop runs
        packets = [ipv4(CLIENT, LAN_HOST, os.urandom(200)) for _ in range(40)]
        got: list[bytes] = []
        for k in range(0, len(packets), 2):  # batches of 2, each after the last arrived
            for pkt in packets[k:k + 2]:
                pair.tun_a.inject(pkt)
            pair.a.poll(0.5)
            for _ in range(500):
                got += pair.tun_b.sent()
                if len(got) >= k + 2:
                    break
                time.sleep(0.001)
        assert got == packets
        assert pair.b.call(RemoveSA(0x0BADBAD0)) == 0  # commands still answered
    finally:
        pair.b.stop()
    assert pair.b.moderated >= 1
    assert pair.b.stats_now().moderation_waits == pair.b.moderated


def test_esp_read_before_its_waiting_add_inbound_is_delivered(pair: Pair) -> None:
    """A rekey's AddInbound is queued before the message that lets the peer use the
    SA leaves (RFC 2409 5.5), but the loop can read the peer's first ESP packet in the
    same wake-up and handle the socket first: the waiting commands are applied before
    the SPI is called unknown."""
    new = params(0xA0000002, (ESP_AES_CBC, 128, HMAC_SHA1_96))
    packet = ipv4(CLIENT, LAN_HOST, b"first on the new SA")
    with pair.b.batch():  # queued, the loop not woken: it sees only the ESP
        pair.b.submit(AddInbound(new, pair.addr_a, allowed_src=CLIENT))
        pair.a.call(RemoveSA(0xA0000001))
        pair.a.call(AddOutbound(new, pair.addr_b))
        assert pair.a_sends(packet) == [packet]
    assert drops(pair.b) == {}


def test_unknown_spis_look_at_the_waiting_commands_once_per_wake_up(pair: Pair) -> None:
    looked: list[int] = []
    pair.b.late_commands = lambda: looked.append(1)
    forger = pair.a_to_b.build()
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    raw.bind((pair.addr_a[0], 0))
    try:
        for n in range(5):  # a flood of unknown SPIs: one look, not five
            raw.sendto(bytes([0xDE, 0xAD, 0, n]) + forger.encapsulate(ipv4(CLIENT, LAN_HOST))[4:],
                       pair.addr_b)
        time.sleep(0.05)
        pair.b.poll(0.5)
    finally:
        raw.close()
    assert looked == [1]
    assert drops(pair.b) == {"unknown_spi": 5}


def test_flush_batch_hands_the_commands_over_and_goes_on_batching(pair: Pair) -> None:
    new = params(0xA0000003, (ESP_AES_CBC, 128, HMAC_SHA1_96))
    with pair.b.batch():
        future = pair.b.submit(AddInbound(new, pair.addr_a, allowed_src=CLIENT))
        pair.b.flush_batch()  # the eventfd is written: the next poll applies it
        pair.b.poll(0.5)
        assert future.done()
        later = pair.b.submit(RemoveSA(0xA0000003))
        pair.b.flush_batch()  # no inbound SA waits: nothing to hurry (a shutdown's DELETEs)
        pair.b.poll(0.05)
        assert not later.done()  # still batching: woken only at the end
    pair.b.poll(0.5)
    assert later.result() == 1
