"""TUN offloads (vpnhub/net/tunoffload.py): split and coalesce, checked with scapy."""

from __future__ import annotations

import os
import random
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from netns_util import in_ci
from scapy.layers.inet import IP, TCP, UDP

from vpnhub.esp import ESP_AES_CBC, HMAC_SHA1_96, SaParams, key_lengths
from vpnhub.net import dataplane
from vpnhub.net import tunoffload as t
from vpnhub.net.accel import NETFAST
from vpnhub.net.dataplane import Dataplane, open_udp_socket
from vpnhub.net.messages import AddInbound, AddOutbound, GetStats
from vpnhub.net.stats import DataplaneStats
from vpnhub.net.tun import FakeTun

SRC, DST = "10.40.1.2", "192.168.50.10"


@pytest.fixture(autouse=True, params=["c", "python"])
def summer(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test twice: with the C ``ones_sum`` and ``coalesce`` (_netfast.c) and with
    the Python references (as under VPNHUB_PURE_PYTHON=1; tests/net/test_netfast.py
    checks that switch itself)."""
    if request.param == "python":
        monkeypatch.setattr(t, "ones_sum", t.ones_sum_py)
        monkeypatch.setattr(t, "coalesce", t.coalesce_py)
        monkeypatch.setattr(dataplane, "coalesce", t.coalesce_py)
    elif NETFAST is None:
        if in_ci():
            pytest.fail("vpnhub.net._netfast is not built (CI=true: the accelerator is required)")
        pytest.skip("vpnhub.net._netfast not built, or VPNHUB_PURE_PYTHON=1")
    else:
        monkeypatch.setattr(t, "ones_sum", NETFAST.ones_sum)
        monkeypatch.setattr(t, "coalesce", NETFAST.coalesce)
        monkeypatch.setattr(dataplane, "coalesce", NETFAST.coalesce)
    return str(request.param)


def _partial(pkt: bytes, proto: int) -> bytes:
    """`pkt` as the kernel hands it with NEEDS_CSUM: the pseudo-header sum in the field."""
    buf = bytearray(pkt)
    at = 20 + (16 if proto == 6 else 6)
    struct.pack_into("!H", buf, at, t.pseudo_sum(buf, proto, len(buf) - 20))
    return bytes(buf)


def _hdr(flags: int, gso: int, hdr_len: int, size: int, start: int, off: int) -> bytes:
    return struct.pack("<BBHHHH", flags, gso, hdr_len, size, start, off)


def _valid(seg: bytes) -> bool:
    """Whether scapy computes the same IP and L4 checksums as in `seg`."""
    p = IP(seg)
    q = p.copy()
    del q.chksum
    del q.payload.chksum
    q = IP(bytes(q))
    return bool(p.chksum == q.chksum and p.payload.chksum == q.payload.chksum)


def _tcp(seq: int, payload: bytes, flags: str = "A", ack: int = 7, ipid: int = 100,
         options: list[tuple[str, object]] | None = None, sport: int = 40000) -> bytes:
    return bytes(IP(src=SRC, dst=DST, id=ipid, flags="DF", ttl=63)
                 / TCP(sport=sport, dport=5201, seq=seq, ack=ack, flags=flags, window=502,
                       options=options or []) / payload)


def test_a_tcp_super_packet_is_cut_into_valid_segments() -> None:
    data = random.randbytes(4 * 1448 + 300)
    opts = [("NOP", None), ("NOP", None), ("Timestamp", (1, 2))]
    big = _partial(_tcp(1000, data, "FPA", ipid=5, options=opts), 6)
    segs = t.from_kernel(_hdr(t.F_NEEDS_CSUM, t.GSO_TCPV4, 52, 1448, 20, 16) + big)
    assert len(segs) == 5
    got = b""
    for i, seg in enumerate(segs):
        assert _valid(seg)
        p = IP(seg)
        assert p.id == 5 + i and p.len == len(seg) and p.flags == "DF"
        assert p[TCP].seq == 1000 + i * 1448
        assert str(p[TCP].flags) == ("FPA" if i == 4 else "A")
        assert p[TCP].options == IP(big)[TCP].options
        got += bytes(p[TCP].payload)
    assert got == data and len(segs[-1]) == 20 + 32 + 300


def test_cwr_only_on_the_first_segment() -> None:
    big = _partial(_tcp(1, bytes(3000), "CA"), 6)
    segs = t.from_kernel(_hdr(1, t.GSO_TCPV4 | t.GSO_ECN, 40, 1000, 20, 16) + big)
    assert [str(IP(s)[TCP].flags) for s in segs] == ["AC", "A", "A"]
    assert all(_valid(s) for s in segs)


def test_a_udp_super_packet_is_cut_into_valid_datagrams() -> None:
    data = random.randbytes(3 * 1200 + 1)
    big = _partial(bytes(IP(src=SRC, dst=DST, id=9) / UDP(sport=5000, dport=53) / data), 17)
    segs = t.from_kernel(_hdr(1, t.GSO_UDP_L4, 28, 1200, 20, 6) + big)
    assert len(segs) == 4 and all(_valid(s) for s in segs)
    assert b"".join(bytes(IP(s)[UDP].payload) for s in segs) == data
    assert [IP(s)[UDP].len for s in segs] == [1208, 1208, 1208, 9]


def test_a_partial_checksum_is_completed_and_a_plain_packet_passes_as_it_is() -> None:
    pkt = _tcp(5, b"hello")
    out = t.from_kernel(_hdr(1, 0, 0, 0, 20, 16) + _partial(pkt, 6))
    assert out == [pkt]
    assert t.from_kernel(t.ZERO_HDR + pkt) == [pkt]


def test_a_flow_is_coalesced_into_one_super_packet_the_kernel_would_cut_back() -> None:
    size = 1000
    segs = [_tcp(1 + i * size, random.randbytes(size), ipid=i) for i in range(5)]
    segs.append(_tcp(1 + 5 * size, b"tail", "PA", ipid=5))
    frames = t.coalesce(segs)
    assert len(frames) == 1
    flags, gso, hdr_len, gso_size, start, off = t.parse_header(frames[0])
    assert (flags, gso, hdr_len, gso_size, start, off) == (1, 1, 40, size, 20, 16)
    sup = frames[0][10:]
    p = IP(sup)
    assert p.len == len(sup) == 40 + 5 * size + 4 and str(p[TCP].flags) == "PA"
    assert IP(_ip_fixed(sup)).chksum == p.chksum
    assert struct.unpack_from("!H", sup, 36)[0] == t.pseudo_sum(sup, 6, len(sup) - 20)
    # what the kernel does with it: cut at gso_size, each segment a valid packet
    back = t.split_tcp(sup, gso_size)
    assert [bytes(IP(b)[TCP].payload) for b in back] == [bytes(IP(s)[TCP].payload)
                                                         for s in segs]
    assert all(_valid(b) for b in back)


def _ip_fixed(pkt: bytes) -> bytes:
    q = IP(pkt)
    del q.chksum
    return bytes(q)


def test_what_may_not_be_coalesced_goes_alone_with_a_zero_header() -> None:
    a = _tcp(1, bytes(100))
    gap = _tcp(500, bytes(100))  # not the next sequence number
    other = _tcp(101, bytes(100), sport=40001)  # another flow
    bad = bytearray(_tcp(101, bytes(100)))
    bad[-1] ^= 1  # a wrong checksum: the kernel must see it and drop it
    syn = _tcp(101, b"", "S")
    frames = t.coalesce([a, gap, other, bytes(bad), syn, b"\x45junk"])
    assert [f[:10] for f in frames] == [t.ZERO_HDR] * 6
    assert [f[10:] for f in frames] == [a, gap, other, bytes(bad), syn, b"\x45junk"]


def test_runs_end_at_push_short_segments_options_ack_and_a_fin() -> None:
    s = 100
    pushed = [_tcp(1, bytes(s), "PA"), _tcp(1 + s, bytes(s))]
    assert len(t.coalesce(pushed)) == 2
    short = [_tcp(1, bytes(s)), _tcp(1 + s, bytes(50)), _tcp(1 + s + 50, bytes(50))]
    assert [t.parse_header(f)[1] for f in t.coalesce(short)] == [1, 0]
    ts = [_tcp(1, bytes(s), options=[("Timestamp", (1, 0))]),
          _tcp(1 + s, bytes(s), options=[("Timestamp", (2, 0))])]
    assert len(t.coalesce(ts)) == 2
    acks = [_tcp(1, bytes(s), ack=1), _tcp(1 + s, bytes(s), ack=2)]
    assert len(t.coalesce(acks)) == 2
    fin = [_tcp(1, bytes(s)), _tcp(1 + s, b"", "FA"), _tcp(1 + s, bytes(s))]
    assert len(t.coalesce(fin)) == 3  # nothing of the flow overtakes the FIN
    two = [_tcp(1, bytes(s)), _tcp(1, bytes(s), sport=1), _tcp(1 + s, bytes(s)),
           _tcp(1 + s, bytes(s), sport=1)]
    assert [t.parse_header(f)[1] for f in t.coalesce(two)] == [1, 1]


def test_a_run_stops_below_the_ipv4_length_limit() -> None:
    segs = [_tcp(1 + i * 1400, bytes(1400)) for i in range(60)]
    frames = t.coalesce(segs)
    assert len(frames) == 2 and all(len(f) - 10 <= 65535 for f in frames)
    assert sum(len(t.split_tcp(f[10:], 1400)) for f in frames) == 60


@pytest.mark.parametrize("frame", [
    b"", bytes(9), t.ZERO_HDR[:-1] + b"\x45",
    _hdr(0, 2, 0, 0, 0, 0) + _tcp(1, b"x"),  # an unknown GSO type
    _hdr(0, t.GSO_UDP, 0, 100, 0, 0) + _tcp(1, bytes(300)),  # UFO: never offered
    _hdr(0, t.GSO_TCPV4, 40, 0, 20, 16) + _tcp(1, bytes(300)),  # gso_size 0
    _hdr(0, t.GSO_TCPV4, 40, 100, 20, 16) + _tcp(1, b""),  # nothing to cut
    _hdr(0, t.GSO_TCPV4, 40, 100, 20, 16) + _tcp(1, bytes(300))[:200],  # length lies
    _hdr(0, t.GSO_UDP_L4, 28, 100, 20, 6) + _tcp(1, bytes(300)),  # TCP said to be UDP
    _hdr(1, 0, 0, 0, 20, 60000) + _tcp(1, b"x"),  # checksum beyond the packet
    _hdr(1, 0, 0, 0, 2, 0) + _tcp(1, b"x"),  # checksum inside the IP header
])
def test_hostile_reads_raise_offload_error(frame: bytes) -> None:
    with pytest.raises(t.OffloadError):
        t.from_kernel(frame)


def test_random_reads_and_batches_never_raise_anything_else() -> None:
    rng = random.Random(16)
    base = _tcp(1, bytes(3000))
    for _ in range(3000):
        frame = bytearray(_hdr(rng.choice((0, 1)), rng.choice((0, 1, 4, 5, 0x81)),
                               rng.randrange(80), rng.randrange(2000), rng.randrange(80),
                               rng.randrange(40)) + base[:rng.randrange(len(base) + 1)])
        for _ in range(rng.randrange(4)):
            if len(frame) > 10:
                frame[rng.randrange(10, len(frame))] = rng.randrange(256)
        try:
            out = t.from_kernel(bytes(frame))
        except t.OffloadError:
            continue
        assert sum(len(p) for p in out) >= 0
        t.coalesce([*out, bytes(frame[10:])])


# -- the data plane over a FakeTun that says it carries virtio_net_hdrs ----------------


@dataclass
class Rig:
    """A (client) -> B (concentrator), both TUNs with headers; the tests play the kernels."""

    a: Dataplane
    b: Dataplane
    tun_a: FakeTun
    tun_b: FakeTun

    def a_reads(self, *frames: bytes) -> list[bytes]:
        """Frames `a`'s kernel hands it; what `b` writes to its TUN."""
        for f in frames:
            self.tun_a.inject(f)
        self.a.poll(0.5)
        self.b.poll(0.5)
        return self.tun_b.sent()

    def stats(self, dp: Dataplane) -> DataplaneStats:
        st = dp.call(GetStats())
        assert isinstance(st, DataplaneStats)
        return st


def _sa(spi: int) -> SaParams:
    enc, integ = key_lengths(ESP_AES_CBC, 128, HMAC_SHA1_96)
    return SaParams.from_keymat(spi, ESP_AES_CBC, 128, HMAC_SHA1_96, os.urandom(enc + integ))


@pytest.fixture
def rig() -> Iterator[Rig]:
    tun_a, tun_b = FakeTun("a"), FakeTun("b")
    tun_a.vnet_hdr = tun_b.vnet_hdr = True  # type: ignore[attr-defined]
    udp_a, udp_b = open_udp_socket("127.0.0.1", 0), open_udp_socket("127.0.0.1", 0)
    a, b = Dataplane(tun_a, udp=udp_a), Dataplane(tun_b, udp=udp_b)
    up, down = _sa(0xA1000001), _sa(0xB1000001)
    a.call(AddOutbound(up, udp_b.getsockname()))
    b.call(AddInbound(up, udp_a.getsockname(), allowed_src=SRC))
    b.call(AddOutbound(down, udp_a.getsockname(), dst=SRC))
    yield Rig(a, b, tun_a, tun_b)
    for dp, tun, sock in ((a, tun_a, udp_a), (b, tun_b, udp_b)):
        dp.close()
        sock.close()
        tun.close()


def test_the_data_plane_splits_what_it_reads_and_coalesces_what_it_writes(rig: Rig) -> None:
    data = random.randbytes(20 * 1000)
    big = _partial(_tcp(1, data), 6)
    got = rig.a_reads(_hdr(1, t.GSO_TCPV4, 40, 1000, 20, 16) + big)
    assert len(got) == 1 and t.parse_header(got[0])[:2] == (t.F_NEEDS_CSUM, t.GSO_TCPV4)
    segs = t.split_tcp(got[0][10:], t.parse_header(got[0])[3])
    assert b"".join(bytes(IP(s)[TCP].payload) for s in segs) == data
    a, b = rig.stats(rig.a), rig.stats(rig.b)
    assert (a.tun_rx_calls, a.tun_rx, a.tun_rx_super) == (1, 20, 1)
    assert (b.tun_tx_calls, b.tun_tx, b.tun_tx_super) == (1, 20, 1) and b.tun_offload
    ping = bytes(IP(src=SRC, dst=DST) / b"ping")  # not TCP: alone, behind a zero header
    assert rig.a_reads(t.ZERO_HDR + ping) == [t.ZERO_HDR + ping]


def test_bad_reads_are_dropped_and_counted_and_the_data_plane_goes_on(rig: Rig) -> None:
    bad = [b"\x01", _hdr(0, 2, 0, 0, 0, 0) + _tcp(1, b"x"),
           _hdr(0, t.GSO_TCPV4, 40, 100, 20, 16) + _tcp(1, bytes(300))[:200],
           _hdr(1, 0, 0, 0, 20, 60000) + _tcp(1, b"x")]
    assert rig.a_reads(*bad) == []
    drops = rig.stats(rig.a).drops
    assert drops == {"bad_vnet_header": 3, "bad_super_packet": 1}
    pkt = _tcp(1, b"after")
    assert rig.a_reads(t.ZERO_HDR + pkt) == [t.ZERO_HDR + pkt]
