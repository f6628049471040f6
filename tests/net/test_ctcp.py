"""The cTCP framer: layout (Wireshark's TCPENCAP, QuickSec's constants), streams, garbage."""

from __future__ import annotations

import os
import random
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vpnhub.net import ctcp
from vpnhub.net.ctcp import (
    BAD_PROTOCOL,
    FRAME_TOO_LONG,
    MAX_FRAME,
    ZERO_SPI,
    CtcpError,
    CtcpFramer,
    Frame,
    encode_esp,
    encode_ike,
)

# A syntactically valid ISAKMP header (RFC 2408 3.1): cookies, next payload 0,
# version 1.0, Aggressive Mode, no flags, message ID 0, length 28 + body.
ICOOKIE = bytes.fromhex("0123456789abcdef")


def isakmp(body: bytes = b"", exchange: int = 4) -> bytes:
    header = struct.pack("!BBBBII", 0, 0x10, exchange, 0, 0, 28 + len(body))
    return ICOOKIE + bytes(8) + header + body


def esp(spi: int = 0xC0FFEE01, size: int = 96) -> bytes:
    return spi.to_bytes(4, "big") + (1).to_bytes(4, "big") + os.urandom(size)


def feed_all(framer: CtcpFramer, stream: bytes, cuts: list[int]) -> list[Frame]:
    frames: list[Frame] = []
    pos = 0
    for cut in [*sorted(cuts), len(stream)]:
        frames += framer.feed(stream[pos:cut])
        pos = cut
    return frames


def test_trailer_layout() -> None:
    """packet-tcpencap.c field offsets; constants as QuickSec writes them."""
    t = ctcp.trailer(ctcp.PROTO_IKE, seq=0x1234, direction=ctcp.DIR_CLIENT_TO_SERVER)
    assert len(t) == ctcp.TRAILER_LEN == 16
    assert t[0:4] == b"\x00\x00\x00\x00"  # tcpencap.zero
    assert t[4:6] == b"\x12\x34"  # tcpencap.seq
    assert t[6:8] == b"\x40\x00"  # tcpencap.ikedirection: client to server
    assert t[8:13] == bytes.fromhex("21456c6910")  # tcpencap.magic
    assert t[13] == 0x11  # tcpencap.proto: ISAKMP
    assert t[14:16] == b"\x01\x00"  # tcpencap.magic2
    esp_trailer = bytes.fromhex("00000000 00000000 21456c6910 32 0100")
    assert esp_trailer == ctcp.ESP_TRAILER


def test_wireshark_heuristic_accepts_our_frames() -> None:
    """packet_is_tcpencap(): trailer zero, low 12 bits of offset 6 zero, proto 17 or 50."""
    for frame in (encode_ike(isakmp()), encode_esp(esp()),
                  CtcpFramer("server").encode_ike(isakmp())):
        t = frame[-16:]
        assert len(frame) > ctcp.TRAILER_LEN + 8
        assert t[:4] == bytes(4)
        assert int.from_bytes(t[6:8], "big") & 0xFFF == 0
        assert t[13] in (17, 50)


def test_ike_frame_carries_a_udp_header() -> None:
    msg = isakmp(b"body")
    frame = encode_ike(msg, seq=7)
    sport, dport, length, checksum = struct.unpack("!HHHH", frame[:8])
    # 0x01f401f4 is how the dissector tells ISAKMP from ESP
    assert frame[:4] == bytes.fromhex("01f401f4")
    assert (sport, dport, length, checksum) == (500, 500, 8 + len(msg), 0)
    assert frame[8:-16] == msg


def test_framer_directions_and_sequence() -> None:
    client, server = CtcpFramer("client"), CtcpFramer("server")
    a, b = client.encode_ike(isakmp()), client.encode_ike(isakmp())
    assert a[-12:-10] == b"\x00\x01" and b[-12:-10] == b"\x00\x02"
    assert a[-10:-8] == b"\x40\x00"
    assert server.encode_ike(isakmp())[-10:-8] == b"\x00\x00"
    assert client.encode_esp(b"12345678") == b"12345678" + ctcp.ESP_TRAILER


def test_stream_split_anywhere() -> None:
    msgs = [isakmp(b"x" * 40), esp(), isakmp(), esp(size=1400), esp(size=8), isakmp(b"y")]
    stream = b"".join(encode_ike(m) if m[:8] == ICOOKIE else encode_esp(m) for m in msgs)
    want = [Frame("ike" if m[:8] == ICOOKIE else "esp", m) for m in msgs]
    rng = random.Random(10000)
    for _ in range(200):
        cuts = rng.sample(range(1, len(stream)), rng.randrange(0, 12))
        framer = CtcpFramer("server")
        assert feed_all(framer, stream, cuts) == want
        assert framer.buffered == 0
    framer = CtcpFramer("server")
    one_by_one = [f for i in range(len(stream)) for f in framer.feed(stream[i:i + 1])]
    assert one_by_one == want


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.binary(min_size=0, max_size=300).map(lambda b: ("ike", b)),
                          st.binary(min_size=4, max_size=1500).map(lambda b: ("esp", b))),
                min_size=1, max_size=12),
       st.lists(st.integers(min_value=1, max_value=20000), max_size=8))
def test_round_trip_property(items: list[tuple[str, bytes]], cuts: list[int]) -> None:
    frames: list[Frame] = []
    stream = b""
    for kind, body in items:
        if kind == "ike":
            msg = isakmp(body)
            stream += encode_ike(msg)
            frames.append(Frame("ike", msg))
        else:
            packet = b"\xc0\x00\x00\x01" + body  # SPI never 0
            stream += encode_esp(packet)
            frames.append(Frame("esp", packet))
    framer = CtcpFramer()
    assert feed_all(framer, stream, [c for c in cuts if c < len(stream)]) == frames


def test_ike_containing_trailer_lookalikes_stays_one_frame() -> None:
    """IKE is length-delimited: a VID full of ESP trailers cannot split it."""
    msg = isakmp(ctcp.ESP_TRAILER * 3 + b"\x00" * 5 + ctcp.ESP_TRAILER)
    stream = encode_ike(msg) + encode_esp(esp())
    assert [f.kind for f in CtcpFramer().feed(stream)] == ["ike", "esp"]
    assert CtcpFramer().feed(stream)[0].payload == msg


def test_esp_whose_spi_reads_like_udp_ports_500() -> None:
    for seq_hi in (0x0000, 0x0100):  # a "UDP length" of 0, then of 256
        packet = bytes.fromhex("01f401f4") + seq_hi.to_bytes(2, "big") + os.urandom(300)
        stream = encode_esp(packet) + encode_ike(isakmp())
        frames = feed_all(CtcpFramer(), stream, [5, 100, 320])
        assert frames == [Frame("esp", packet), Frame("ike", isakmp())]


def test_ike_from_port_4500_loses_its_marker() -> None:
    msg = isakmp()
    frame = (struct.pack("!HHHH", 4500, 4500, 12 + len(msg), 0) + b"\x00" * 4 + msg
             + ctcp.trailer(ctcp.PROTO_IKE))
    assert CtcpFramer().feed(frame) == [Frame("ike", msg)]


def test_garbage_without_trailer_is_too_long() -> None:
    framer = CtcpFramer()
    rng = random.Random(1)
    with pytest.raises(CtcpError) as err:
        for _ in range(100):
            framer.feed(b"\x7f" + rng.randbytes(4095))
    assert err.value.reason == FRAME_TOO_LONG
    assert framer.buffered <= MAX_FRAME + 4096  # bounded


def test_zero_spi_and_bad_protocol() -> None:
    with pytest.raises(CtcpError) as err:
        CtcpFramer().feed(b"\x00\x00\x00\x00" + os.urandom(40))
    assert err.value.reason == ZERO_SPI
    bad = encode_ike(isakmp())
    bad = bad[:-3] + b"\x33" + bad[-2:]  # trailer protocol 51 (AH): not carried
    with pytest.raises(CtcpError) as err:
        CtcpFramer().feed(bad)
    assert err.value.reason == BAD_PROTOCOL


def test_encoders_refuse_oversize() -> None:
    with pytest.raises(ValueError):
        encode_esp(bytes(65536))
    with pytest.raises(ValueError):
        encode_ike(bytes(65530))


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_tshark_decodes_our_frames(tmp_path: Path) -> None:
    """Wireshark's own dissector reads what we write: TCPENCAP with ISAKMP / ESP inside."""
    scapy_all = pytest.importorskip("scapy.all")
    ether, ipl, tcp, wrpcap = scapy_all.Ether, scapy_all.IP, scapy_all.TCP, scapy_all.wrpcap
    client, server = CtcpFramer("client"), CtcpFramer("server")
    payloads = [client.encode_ike(isakmp()), server.encode_ike(isakmp(exchange=5)),
                client.encode_esp(esp(0xA1B2C3D4))]
    seq = {True: 1000, False: 5000}
    packets = []
    for i, p in enumerate(payloads):
        up = i != 1
        src, dst = ("198.51.100.1", "198.51.100.2") if up else ("198.51.100.2", "198.51.100.1")
        sport, dport = (40000, 10000) if up else (10000, 40000)
        packets.append(ether() / ipl(src=src, dst=dst)
                       / tcp(sport=sport, dport=dport, flags="PA", seq=seq[up]) / p)
        seq[up] += len(p)
    pcap = tmp_path / "ctcp.pcap"
    wrpcap(str(pcap), packets)
    out = subprocess.run(
        ["tshark", "-n", "-r", str(pcap), "-d", "tcp.port==10000,tcpencap", "-T", "fields",
         "-e", "frame.protocols", "-e", "tcpencap.proto", "-e", "tcpencap.ikedirection",
         "-e", "isakmp.exchangetype", "-e", "esp.spi"],
        capture_output=True, text=True, check=True, timeout=60).stdout.splitlines()
    assert len(out) == 3, out
    rows = [line.split("\t") for line in out]
    assert rows[0][0].endswith("tcpencap:udp:isakmp") and rows[0][1] == "0x11"
    assert rows[0][2] == "0x4000" and rows[0][3] == "4"
    assert rows[1][0].endswith("tcpencap:udp:isakmp") and rows[1][2] == "0x0000"
    assert rows[2][0].endswith("tcpencap:esp") and rows[2][1] == "0x32"
    assert "0xa1b2c3d4" in rows[2][4] or "2712847316" in rows[2][4]
