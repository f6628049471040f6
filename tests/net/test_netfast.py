"""The C accelerator of vpnhub/net (_netfast.c) against its Python reference.

docs/ARCHITECTURE.md, "C accelerators": same results on any input; under
``CI=true`` the accelerator must be built (a missing one fails, not skips).
"""

from __future__ import annotations

import errno
import os
import random
import select
import socket
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st
from netns_util import in_ci

from vpnhub.esp import ESP_AES_CBC, HMAC_SHA1_96, SaParams, key_lengths
from vpnhub.net import tun, udpgso
from vpnhub.net import tunoffload as t
from vpnhub.net.accel import NETFAST
from vpnhub.net.dataplane import Dataplane, open_udp_socket
from vpnhub.net.messages import AddInbound, GetStats
from vpnhub.net.stats import DataplaneStats
from vpnhub.net.tun import FakeTun
from vpnhub.net.udpencap import NAT_KEEPALIVE


@pytest.fixture(scope="module")
def fast() -> ModuleType:
    if NETFAST is None:
        if in_ci():
            pytest.fail("vpnhub.net._netfast is not built (CI=true: the accelerator is required)")
        pytest.skip("vpnhub.net._netfast not built, or VPNHUB_PURE_PYTHON=1")
    return NETFAST


def test_under_ci_the_accelerator_is_built_and_used() -> None:
    if not in_ci():
        pytest.skip("only under CI=true")
    assert NETFAST is not None, "vpnhub.net._netfast is not built"
    assert t.ones_sum is NETFAST.ones_sum
    assert t.coalesce is NETFAST.coalesce
    assert tun.read_frames is NETFAST.read_frames


def test_vpnhub_pure_python_switches_it_off() -> None:
    code = ("from vpnhub.net import tunoffload as t, accel, tun;"
            "print(accel.NETFAST is None, t.ones_sum is t.ones_sum_py,"
            " tun.read_frames is tun.read_frames_py)")
    env = dict(os.environ, VPNHUB_PURE_PYTHON="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout
    assert out.split() == ["True", "True", "True"]


@given(data=st.binary(max_size=3000), initial=st.integers(-2**80, 2**80),
       start=st.integers(0, 3100), kind=st.sampled_from(["bytes", "bytearray", "memoryview"]))
def test_ones_sum_equals_the_reference(fast: ModuleType, data: bytes, initial: int,
                                       start: int, kind: str) -> None:
    buf: bytes | bytearray | memoryview = {
        "bytes": data, "bytearray": bytearray(data), "memoryview": memoryview(data)[1:],
    }[kind]
    assert fast.ones_sum(buf) == t.ones_sum_py(buf)
    assert fast.ones_sum(buf, initial) == t.ones_sum_py(buf, initial)
    assert fast.ones_sum(buf, initial, start) == t.ones_sum_py(buf, initial, start)


def test_ones_sum_edges(fast: ModuleType) -> None:
    s = fast.ones_sum
    assert s(b"") == 0 and s(b"\xff\xff") == 0 and s(b"\xff\xff" * 999) == 0  # 0, not 0xFFFF
    assert s(b"\x01") == 0x100 and s(b"\x12\x34\x56") == 0x1234 + 0x5600  # odd: padded
    assert s(b"\xff\xfe", 1) == 0 and s(b"", -1) == 0xFFFE and s(b"", 2**70) == 2**70 % 0xFFFF
    assert s(b"\x00\x01\x00\x02", start=2) == 2 and s(b"ab", 0, 99) == 0
    assert s(data=b"\x00\x05", initial=1) == 6
    for bad in ((), ("text",), (b"", 1.5), (b"", 0, -1), (b"", 0, 0, 0)):
        with pytest.raises((TypeError, ValueError)):
            s(*bad)
    with pytest.raises(TypeError):
        s(b"", nope=1)
    with pytest.raises(BufferError):  # not contiguous: refused, never read past it
        s(memoryview(b"abcdef")[::2])


# -- recv_batch (udpgso.BatchReader): real sockets on loopback ---------------------

@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    rx.bind(("127.0.0.1", 0))
    tx.bind(("127.0.0.1", 0))
    rx.setblocking(False)
    yield rx, tx
    rx.close()
    tx.close()


def drain(reader: udpgso.BatchReader) -> list[tuple[bytes, tuple[str, int], int]]:
    got: list[tuple[bytes, tuple[str, int], int]] = []
    while True:
        try:
            got += reader.read()
        except BlockingIOError:
            return got


def test_a_burst_is_drained_in_few_calls_with_its_sources(
        fast: ModuleType, pair: tuple[socket.socket, socket.socket]) -> None:
    rx, tx = pair
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.bind(("127.0.0.2", 0))
    sent = []
    for i in range(100):
        s = other if i % 7 == 3 else tx
        data = os.urandom(i * 14) if i != 50 else b""  # a zero-length datagram too
        s.sendto(data, rx.getsockname())
        sent.append((data, s.getsockname(), 0))
    other.close()
    select.select([rx], [], [], 1.0)
    reader = udpgso.BatchReader(rx)
    assert drain(reader) == sent
    assert reader.datagrams == 100 and reader.calls <= 4  # 64 a call at most: 2 here


def test_a_gro_train_comes_back_split_with_its_size_among_odd_control_messages(
        fast: ModuleType, pair: tuple[socket.socket, socket.socket]) -> None:
    rx, tx = pair
    assert udpgso.enable_gro(rx)
    rx.setsockopt(socket.IPPROTO_IP, 8, 1)  # IP_PKTINFO (linux/in.h): more control messages
    rx.setsockopt(socket.SOL_SOCKET, 35, 1)  # SO_TIMESTAMPNS (asm-generic/socket.h)
    segments = [os.urandom(1000) for _ in range(5)] + [os.urandom(37)]
    udpgso.send_train(tx, segments, 1000, rx.getsockname())
    tx.sendto(b"alone", rx.getsockname())
    select.select([rx], [], [], 1.0)
    reader = udpgso.BatchReader(rx)
    src = tx.getsockname()
    assert drain(reader) == [(s, src, 1000) for s in segments] + [(b"alone", src, 0)]
    assert (reader.calls, reader.datagrams) == (1, 7)


def test_a_datagram_longer_than_its_slot_is_cut_as_recvfrom_cuts_it(
        fast: ModuleType, pair: tuple[socket.socket, socket.socket]) -> None:
    rx, tx = pair
    for data in (bytes(range(150)), b"next", bytes(100)):
        tx.sendto(data, rx.getsockname())
    select.select([rx], [], [], 1.0)
    area = bytearray(2 * 100)  # two slots of 100 bytes
    got = fast.recv_batch(rx.fileno(), area, 2)
    src = tx.getsockname()
    assert got == [(bytes(range(100)), src, 0), (b"next", src, 0)]  # MSG_TRUNC: cut
    assert fast.recv_batch(rx.fileno(), area, 2) == [(bytes(100), src, 0)]


def test_errors_are_raised_as_recvfrom_raises_them(
        fast: ModuleType, pair: tuple[socket.socket, socket.socket]) -> None:
    rx, tx = pair
    area = bytearray(64 * 1024)
    with pytest.raises(BlockingIOError):
        fast.recv_batch(rx.fileno(), area, 1)
    # an ICMP port unreachable reported on a connected socket, once (then nothing)
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    tx.connect(("127.0.0.1", port))
    tx.setblocking(False)
    tx.send(b"x")
    select.select([tx], [], [], 1.0)
    with pytest.raises(ConnectionRefusedError):
        fast.recv_batch(tx.fileno(), area, 4)
    with pytest.raises(BlockingIOError):
        fast.recv_batch(tx.fileno(), area, 4)
    with pytest.raises(OSError):
        fast.recv_batch(99999, area, 4)  # EBADF
    for bad in ((rx.fileno(), area, 0), (rx.fileno(), area, 129), (-1, area, 1),
                (rx.fileno(), bytearray(3), 4)):
        with pytest.raises(ValueError):
            fast.recv_batch(*bad)
    with pytest.raises(BufferError):
        fast.recv_batch(rx.fileno(), b"read-only", 1)
    with pytest.raises(TypeError):
        fast.recv_batch(rx.fileno(), area)


def test_the_data_plane_takes_a_burst_in_few_receives_as_it_did_one_by_one(
        fast: ModuleType, pair: tuple[socket.socket, socket.socket],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """100 ESP datagrams, an empty one, a short one and a keepalive: the same packets
    out and the same drops with recvmmsg as with recvfrom, in fewer receives."""
    _, tx = pair
    results = []
    inner = [_ipv4(os.urandom(40 + i)) for i in range(100)]
    for netfast in (fast, None):
        monkeypatch.setattr(udpgso, "NETFAST", netfast)
        tun = FakeTun("n")
        udp = open_udp_socket("127.0.0.1", 0)
        dp = Dataplane(tun, udp=udp, gro=False)
        try:
            sa = _params(0xE0000001)
            dp.call(AddInbound(sa, tx.getsockname()))
            out = sa.build()
            for p in inner:
                tx.sendto(out.encapsulate(p), udp.getsockname())
            for junk in (b"", b"\x01\x02\x03", NAT_KEEPALIVE):
                tx.sendto(junk, udp.getsockname())
            for _ in range(4):
                dp.poll(0.2)
            st = dp.call(GetStats())
            assert isinstance(st, DataplaneStats)
            results.append((tun.sent(), st.drops, st.keepalive_rx, st.udp_rx,
                            st.udp_rx_datagrams))
            calls = st.udp_rx_calls
        finally:
            dp.close()
            udp.close()
            tun.close()
        if netfast is not None:
            assert calls <= 10
        else:
            assert calls == 103
    assert results[0] == results[1]
    assert len(results[0][0]) == 100 and results[0][3] == results[0][4] == 103


def _params(spi: int) -> SaParams:
    enc_len, integ_len = key_lengths(ESP_AES_CBC, 128, HMAC_SHA1_96)
    return SaParams.from_keymat(spi, ESP_AES_CBC, 128, HMAC_SHA1_96,
                                os.urandom(enc_len + integ_len))


def _ipv4(payload: bytes) -> bytes:
    total = 20 + len(payload)
    return (bytes([0x45, 0, total >> 8, total & 0xFF, 0, 0, 0, 0, 64, 17, 0, 0])
            + socket.inet_aton("10.40.1.1") + socket.inet_aton("192.168.2.10") + payload)


def test_the_start_line_says_whether_the_per_packet_work_runs_in_c(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # what vpnhub serve logs at start (IPSEC): an operator whose install has no
    # compiled accelerators learns it, and what to run
    from vpnhub.esp import sa
    from vpnhub.net import accel

    monkeypatch.delenv("VPNHUB_PURE_PYTHON", raising=False)
    monkeypatch.setattr(accel, "NETFAST", object())
    monkeypatch.setattr(sa, "ACCELERATED", True)
    assert accel.describe() == (True, "C accelerators on: ESP codec, checksums, recvmmsg"
                                      " and sendmmsg")
    monkeypatch.setattr(sa, "ACCELERATED", False)
    on, text = accel.describe()
    assert not on and text.startswith("C accelerators not built: ESP codec in Python")
    assert "scripts/setup" in text
    monkeypatch.setenv("VPNHUB_PURE_PYTHON", "1")
    monkeypatch.setattr(accel, "NETFAST", None)
    assert accel.describe() == (
        False, "C accelerators off (VPNHUB_PURE_PYTHON): ESP codec, checksums, recvmmsg"
               " and sendmmsg in Python")


# -- coalesce (tunoffload.coalesce_py) -------------------------------------------

def _segment(rng: random.Random, flow: int, seq: int, size: int, flags: int,
             opts: bytes, ip_opts: bytes) -> bytes:
    """A TCPv4 segment of flow `flow` with right checksums (the Python reference's)."""
    ihl = 20 + len(ip_opts)
    thl = 20 + len(opts)
    total = ihl + thl + size
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x40 | ihl // 4, 0, total, rng.randrange(1 << 16),
                               0x4000, 63, 6, 0, bytes([10, 40, 1, 2 + flow % 2]),
                               bytes([192, 168, 50, 10])) + ip_opts)
    struct.pack_into("!H", ip, 10, t.ip_checksum(ip))
    tcp = bytearray(struct.pack("!HHIIBBHHH", 40000 + flow // 2, 5201, seq, 7,
                                (thl // 4) << 4, flags, 502, 0, 0) + opts)
    seg = bytes(ip) + bytes(tcp) + rng.randbytes(size)
    csum = t.ones_sum_py(seg, t.pseudo_sum(seg, 6, total - ihl), ihl)
    return seg[:ihl + 16] + struct.pack("!H", 0xFFFF - csum) + seg[ihl + 18:]


def _hostile(rng: random.Random, pkt: bytes) -> bytes:
    """`pkt`, or sometimes `pkt` truncated, padded, bit-flipped or with fields changed."""
    kind = rng.randrange(12)
    if kind == 0 and pkt:
        return pkt[:rng.randrange(len(pkt))]
    if kind == 1:
        return pkt + rng.randbytes(rng.randrange(1, 9))
    if kind in (2, 3) and pkt:
        buf = bytearray(pkt)
        at = rng.randrange(min(len(buf), 64) if kind == 2 else len(buf))
        buf[at] ^= 1 << rng.randrange(8)
        return bytes(buf)
    if kind == 4:
        return rng.randbytes(rng.randrange(60))
    return pkt


def _batch(rng: random.Random) -> list[bytes]:
    """A few flows' segments, mostly in order, with PSH, FIN, SYN, short ones, options,
    IP options, duplicates, reordering and hostile packets."""
    flows = rng.randrange(1, 5)
    seqs = [rng.randrange(1 << 32) for _ in range(flows)]
    size = rng.choice((1, 100, 1448, 1460))
    opts = rng.choice((b"", b"\x01\x01\x08\x0a" + bytes(8)))
    ip_opts = rng.choice((b"", b"", b"\x01\x01\x01\x00"))
    out: list[bytes] = []
    for _ in range(rng.randrange(1, 48)):
        f = rng.randrange(flows)
        n = size if rng.random() < 0.85 else rng.randrange(0, size + 2)
        flags = rng.choice((0x10,) * 12 + (0x18, 0x11, 0x02, 0x12, 0x90))
        seg = _segment(rng, f, seqs[f], n, flags, opts, ip_opts)
        seqs[f] = (seqs[f] + n) & 0xFFFFFFFF
        out.append(_hostile(rng, seg) if rng.random() < 0.15 else seg)
        if rng.random() < 0.03:
            out.append(out[-1])
    if rng.random() < 0.2 and len(out) > 2:
        i = rng.randrange(len(out) - 1)
        out[i], out[i + 1] = out[i + 1], out[i]
    return out


def test_coalesce_makes_the_frames_of_the_reference_on_hostile_batches(
        fast: ModuleType) -> None:
    rng = random.Random(1604)
    joined = 0
    for _ in range(400):
        batch = _batch(rng)
        want = t.coalesce_py(batch)
        assert fast.coalesce(batch) == want
        joined += sum(1 for f in want if f[1])
    assert joined > 100  # the batches did make super-packets, not only lone packets
    assert fast.coalesce([]) == [] and fast.coalesce(()) == []
    big = [_segment(rng, 0, 1000 + i * 1448, 1448, 0x10, b"", b"") for i in range(60)]
    assert fast.coalesce(big) == t.coalesce_py(big)  # the 64 KiB cap cuts the run
    for bad in ([b"x", "text"], [bytearray(50)], None, 5):
        with pytest.raises(TypeError):
            fast.coalesce(bad)


def test_coalesce_is_the_c_one_unless_pure_python() -> None:
    if NETFAST is None:
        assert t.coalesce is t.coalesce_py
    else:
        assert t.coalesce is NETFAST.coalesce


def test_the_data_plane_receives_hostile_esp_alike_with_the_c_and_the_python_sa(
        pair: tuple[socket.socket, socket.socket]) -> None:
    """EspSA.receive in C (Codec.receive) and in Python behind a real Dataplane: the
    same packets reach the TUN and the same drops are counted (unknown SPI, truncated,
    flipped, replayed, spoofed inner source)."""
    from vpnhub.esp import EspSA
    _, tx = pair
    p = _params(0xE0000002)
    out = p.build()
    rng = random.Random(5)
    good = [_ipv4(rng.randbytes(40 + i)) for i in range(30)]
    spoofed = _ipv4(b"x" * 30)[:12] + socket.inet_aton("10.40.1.9") + _ipv4(b"x" * 30)[16:]
    wire = [out.encapsulate(g) for g in good]
    wire += [wire[3], wire[0], out.encapsulate(spoofed), out.encapsulate(b"\x45" * 10),
             b"\x00\x00\x01\x00" + wire[5][4:], wire[7][:30], out.encapsulate(good[0])]
    flipped = bytearray(out.encapsulate(good[1]))
    flipped[40] ^= 4
    wire.append(bytes(flipped))
    results = []
    for accelerated in (True, False):
        sa = EspSA(p.spi, p.transform, p.key_len_bits, p.auth, p.enc_key, p.integ_key,
                   accelerated=accelerated)
        tun = FakeTun("n")
        udp = open_udp_socket("127.0.0.1", 0)
        dp = Dataplane(tun, udp=udp, gro=False)
        try:
            dp.call(AddInbound(sa, tx.getsockname(), allowed_src="10.40.1.1"))
            for esp in wire:
                tx.sendto(esp, udp.getsockname())
            for _ in range(4):
                dp.poll(0.2)
            st = dp.call(GetStats())
            assert isinstance(st, DataplaneStats)
            results.append((tun.sent(), st.drops, sa.drops, sa.packets_in, sa.bytes_in,
                            sa.replay.top))
        finally:
            dp.close()
            udp.close()
            tun.close()
    assert results[0] == results[1]
    assert len(results[0][0]) == 31 and set(results[0][2]) == {
        "replay", "spoofed_source", "bad_inner_packet", "short_packet", "auth_failed"}
    assert results[0][1].get("unknown_spi") == 1


class _Batches:
    """A stand-in BatchReader: the batches given, then EAGAIN."""

    count = 64

    def __init__(self, batches: list[list[tuple[bytes, tuple[str, int], int]]]) -> None:
        self.batches = list(batches)

    def read(self, _count: int = 0) -> list[tuple[bytes, tuple[str, int], int]]:
        if not self.batches:
            raise BlockingIOError
        return self.batches.pop(0)


def test_runs_of_one_sa_give_what_one_packet_at_a_time_gives(
        pair: tuple[socket.socket, socket.socket]) -> None:
    """Dataplane._deliver_batch (EspSA.receive_run, in C and in Python) against one
    _deliver per datagram: the same TUN frames, drops, counters, windows and peer
    moves on batches of two SAs, two sources, keepalives, IKE, unknown SPIs,
    truncated, flipped, replayed, spoofed and short inner packets."""
    from vpnhub.esp import EspSA
    rng = random.Random(7)
    params = [_params(0xE0000003), _params(0xE0000004)]
    outs = [p.build() for p in params]
    a, b = ("127.0.0.1", 40001), ("127.0.0.1", 40002)
    flows = [_segment(rng, 0, 1000 + i * 200, 200, 0x10, b"", b"") for i in range(300)]
    flows = [f[:12] + socket.inet_aton("10.40.1.1") + f[16:] for f in flows]  # csum: bad
    datagrams: list[tuple[bytes, tuple[str, int], int]] = []
    for k in range(600):
        which = 0 if rng.random() < 0.8 else 1
        esp = outs[which].encapsulate(flows[k % 300] if rng.random() < 0.95 else b"\x45" * 12)
        kind = rng.randrange(40)
        if kind == 0:
            esp = esp[:rng.randrange(len(esp))]
        elif kind == 1:
            esp = bytes([esp[0] ^ 1]) + esp[1:]  # unknown SPI
        elif kind == 2:
            flip = bytearray(esp)
            flip[rng.randrange(len(flip))] ^= 0x10
            esp = bytes(flip)
        elif kind == 3 and datagrams:
            esp = rng.choice(datagrams)[0]  # a replay
        elif kind == 4:
            esp = rng.choice((b"\xff", b"\x00\x00\x00\x00junk", NAT_KEEPALIVE))
        src = a if rng.random() < 0.9 else b
        datagrams.append((esp, src, 0))
    batches = [datagrams[i:i + 64] for i in range(0, len(datagrams), 64)]
    results = []
    for mode in ("c", "python", "one by one"):
        tun = FakeTun("r")
        udp = open_udp_socket("127.0.0.1", 0)
        dp = Dataplane(tun, udp=udp, gro=False)
        dp.vnet_hdr = True
        if mode == "one by one":
            def single(now: float, control: object,
                       batch: list[tuple[bytes, tuple[str, int], int]],
                       dp: Dataplane = dp) -> None:
                for data, addr, _ in batch:
                    if len(data) >= 8 and data[:4] != b"\0\0\0\0":
                        dp._deliver(data, addr, now)
                    else:
                        dp._udp_control(data, addr)
            dp._deliver_batch = single  # type: ignore[method-assign]
        try:
            sas = [EspSA(p.spi, p.transform, p.key_len_bits, p.auth, p.enc_key, p.integ_key,
                         accelerated=mode == "c") for p in params]
            for sa in sas:
                dp.call(AddInbound(sa, a, allowed_src="10.40.1.1"))
            dp._from_udp_batches(_Batches(batches), 5.0, dp._udp_control)  # type: ignore[arg-type]
            dp._flush_tun()
            st = dp.call(GetStats())
            assert isinstance(st, DataplaneStats)
            results.append((tun.sent(), st.drops, st.keepalive_rx, st.ike_rx,
                            [(sa.drops, sa.packets_in, sa.bytes_in, sa.replay.top,
                              sa.last_activity) for sa in sas],
                            [e.seen for e in dp._in.values()], dp.inbox.drain()))
        finally:
            dp.close()
            udp.close()
            tun.close()
    assert results[0] == results[2] and results[1] == results[2]
    frames, drops, _, _, per_sa, _, moved = results[0]
    assert len(frames) > 10 and drops.get("unknown_spi") and moved
    assert {"auth_failed", "replay", "bad_inner_packet"} <= set(per_sa[0][0])


# -- read_frames: a wake-up's TUN reads (issue 16) ----------------------------


def _queue_of(frames: list[bytes]) -> tuple[socket.socket, socket.socket]:
    """A packet socketpair (what FakeTun is) with `frames` queued on its reading end."""
    dev, kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    dev.setblocking(False)
    for s in (dev, kernel):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    for frame in frames:
        kernel.send(frame)
    return dev, kernel


@given(frames=st.lists(st.binary(max_size=300), max_size=12),
       size=st.integers(1, 400), count=st.integers(1, 64))
def test_read_frames_reads_what_the_reference_reads(fast: ModuleType, frames: list[bytes],
                                                    size: int, count: int) -> None:
    """Any frames (empty ones, longer than `size`: cut as read(2) cuts them), any count:
    the C reads give the reference's list, call after call, until EAGAIN."""
    got = {}
    for name, read in (("c", fast.read_frames), ("py", tun.read_frames_py)):
        dev, kernel = _queue_of(frames)
        try:
            calls = [read(dev.fileno(), size, count) for _ in range(len(frames) // count + 2)]
        finally:
            dev.close()
            kernel.close()
        got[name] = calls
    assert got["c"] == got["py"]
    assert [f for call in got["c"] for f in call] == [f[:size] for f in frames]
    assert got["c"][-1] == []  # EAGAIN: an empty list, no exception


def test_read_frames_raises_an_error_that_comes_first_and_refuses_bad_arguments(
        fast: ModuleType) -> None:
    dev, kernel = _queue_of([b"x"])
    fd = dev.fileno()
    try:
        for read in (fast.read_frames, tun.read_frames_py):
            for bad in ((fd, 0, 1), (fd, 1, 0), (fd, 1, 65), (fd, (1 << 20) + 1, 1), (-1, 1, 1)):
                with pytest.raises(ValueError):
                    read(*bad)
        # a socket that is not connected: ENOTCONN as os.read gives it, from both
        lone = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        lone.setblocking(False)
        try:
            errors = []
            for read in (fast.read_frames, tun.read_frames_py):
                with pytest.raises(OSError) as info:
                    read(lone.fileno(), 100, 4)
                errors.append(info.value.errno)
            assert errors[0] == errors[1]
        finally:
            lone.close()
        closed = os.dup(fd)
        os.close(closed)
        with pytest.raises(OSError):
            fast.read_frames(closed, 100, 4)  # EBADF
        assert fast.read_frames(fd, 100, 4) == [b"x"]
    finally:
        dev.close()
        kernel.close()


def test_the_data_plane_reads_a_burst_of_tun_frames_and_a_hostile_one() -> None:
    """The vnet_hdr path reads TUN_READS frames a call: a burst longer than that, a
    frame too short for its header and one whose header the kernel never writes are
    handled (routed or dropped and counted) as when each was read alone."""
    from vpnhub.net import dataplane as dpm

    tun_dev = FakeTun()
    tun_dev.vnet_hdr = True  # type: ignore[attr-defined]
    dp = Dataplane(tun_dev, udp=None)
    try:
        ack = bytes(10) + bytes([0x45]) + bytes(19)  # header + an IPv4 packet, no route
        burst = [ack] * (dpm.TUN_READS * 2 + 3) + [b"\x00" * 5, b"\x07" + bytes(60)]
        for frame in burst:
            tun_dev.inject(frame)
        dp.poll(0.0)
        assert dp.tun_rx_calls == len(burst)
        assert dp.drops.get(dpm.NO_SA) == dpm.TUN_READS * 2 + 3
        assert sum(dp.drops.values()) == len(burst)  # the two hostile ones too
    finally:
        dp.close()
        tun_dev.close()


# -- send_batch (sendmmsg) against send_batch_py (a sendto loop) ----------------

def _udp_pair() -> tuple[socket.socket, list[socket.socket]]:
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.setblocking(False)
    sinks = []
    for _ in range(2):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        sinks.append(s)
    return sender, sinks


def _received(sinks: list[socket.socket]) -> list[list[bytes]]:
    out: list[list[bytes]] = []
    for s in sinks:
        got = []
        while True:
            try:
                got.append(s.recv(70000))
            except BlockingIOError:
                break
        out.append(got)
    return out


def _send_all(send: Callable[[list[tuple[bytes, tuple[str, int]]], int], int],
              items: list[tuple[bytes, tuple[str, int]]]) -> list[object]:
    """Call `send(items, start)` until every item went or failed: what each call gave
    (a count, or the exception's type and errno)."""
    calls: list[object] = []
    i = 0
    while i < len(items):
        try:
            n = send(items, i)
        except socket.gaierror:  # sendto's resolver refuses a host the C finds no IPv4 in:
            calls.append(("OSError", errno.EINVAL))  # both an OSError for this datagram
            i += 1
            continue
        except OSError as e:
            calls.append((type(e).__name__, e.errno))
            i += 1
            continue
        calls.append(n)
        i += n
    return calls


@pytest.mark.parametrize("prefix", [b"", b"\0\0\0\0"])
def test_send_batch_sends_as_the_sendto_loop(fast: ModuleType, prefix: bytes) -> None:
    """Same datagrams to the same sockets in the same order; a datagram the kernel
    refuses (too long: EMSGSIZE) ends a call, which returns the count before it, and
    the next call raises its error; a host that is not IPv4 too; 256 at most a call."""
    results = []
    for kind in ("c", "py"):
        sender, sinks = _udp_pair()
        for s in sinks:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        a, b = (s.getsockname() for s in sinks)
        items = [(b"m%d" % i, a if i % 3 else b) for i in range(300)]
        items[5] = (b"x" * 70000, a)  # longer than a UDP datagram
        items[290] = (b"to nowhere", ("2001:db8::1", 500))
        rng = random.Random(7)
        items += [(rng.randbytes(rng.randrange(0, 1500)), b) for _ in range(40)]
        fd = sender.fileno()

        def c_send(it: list[tuple[bytes, tuple[str, int]]], i: int, fd: int = fd) -> int:
            n: int = fast.send_batch(fd, it, i, prefix)
            return n

        def py_send(it: list[tuple[bytes, tuple[str, int]]], i: int,
                    s: socket.socket = sender) -> int:
            return udpgso.send_batch_py(s, it, i, prefix)
        calls = _send_all(c_send if kind == "c" else py_send, items)
        results.append((calls, _received(sinks)))
        for s in (sender, *sinks):
            s.close()
    (c_calls, c_got), (py_calls, py_got) = results
    assert c_calls == py_calls
    assert c_calls[:3] == [5, ("OSError", errno.EMSGSIZE), 256]
    assert c_got == py_got
    assert sum(map(len, c_got)) == len(items) - 2
    assert c_got[0][0] == prefix + b"m1" and c_got[1][0] == prefix + b"m0"


def test_send_batch_edges(fast: ModuleType) -> None:
    sender, sinks = _udp_pair()
    to = sinks[0].getsockname()
    try:
        for start in (0, 3):
            assert fast.send_batch(sender.fileno(), [], start, b"") == 0
            assert udpgso.send_batch_py(sender, [], start) == 0
        assert fast.send_batch(sender.fileno(), [(b"a", to)], 1, b"") == 0
        for bad in [(b"a", ("127.0.0.1", 70000)), (b"a", ("127.0.0.1", -1))]:
            with pytest.raises(OverflowError):
                fast.send_batch(sender.fileno(), [bad], 0, b"")
            with pytest.raises(OverflowError):
                udpgso.send_batch_py(sender, [bad], 0)
        for junk in [[b"a"], [(b"a", "127.0.0.1")], [("a", to)], [(b"a", (1, 2))]]:
            with pytest.raises(TypeError):
                fast.send_batch(sender.fileno(), junk, 0, b"")
        with pytest.raises(ValueError):
            fast.send_batch(-1, [(b"a", to)], 0, b"")
        with pytest.raises(OSError):
            fast.send_batch(sinks[1].fileno() + 1000, [(b"a", to)], 0, b"")  # not an fd
        assert _received(sinks) == [[], []]
    finally:
        for s in (sender, *sinks):
            s.close()
