"""The C accelerator of vpnhub/net (_netfast.c) against its Python reference.

docs/ARCHITECTURE.md, "C accelerators": same results on any input; under
``CI=true`` the accelerator must be built (a missing one fails, not skips).
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
from collections.abc import Iterator
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st
from netns_util import in_ci

from vpnhub.esp import ESP_AES_CBC, HMAC_SHA1_96, SaParams, key_lengths
from vpnhub.net import tunoffload as t
from vpnhub.net import udpgso
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


def test_vpnhub_pure_python_switches_it_off() -> None:
    code = ("from vpnhub.net import tunoffload as t, accel;"
            "print(accel.NETFAST is None, t.ones_sum is t.ones_sum_py)")
    env = dict(os.environ, VPNHUB_PURE_PYTHON="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout
    assert out.split() == ["True", "True"]


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
    assert accel.describe() == (True, "C accelerators on: ESP codec, checksums and recvmmsg")
    monkeypatch.setattr(sa, "ACCELERATED", False)
    on, text = accel.describe()
    assert not on and text.startswith("C accelerators not built: ESP codec in Python")
    assert "scripts/setup" in text
    monkeypatch.setenv("VPNHUB_PURE_PYTHON", "1")
    monkeypatch.setattr(accel, "NETFAST", None)
    assert accel.describe() == (
        False, "C accelerators off (VPNHUB_PURE_PYTHON): ESP codec, checksums and recvmmsg"
               " in Python")
