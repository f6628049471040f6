"""The C codec (vpnhub/esp/_espfast.c) against the pure-Python reference (sa.py).

Same IV and sequence number in, same bytes out; each path decapsulates the
other's packets; hostile input (truncations, flipped bits, forged trailers,
replays, huge packets) ends in the same drop reason, counters and window on
both.  docs/ARCHITECTURE.md "C accelerators": under CI=true the accelerator
must be there.
"""

from __future__ import annotations

import importlib
import os

import pytest
from cryptography.hazmat.primitives import hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from vpnhub.esp import (
    ESP_AES_CBC,
    ESP_AES_GCM_16,
    HMAC_MD5_96,
    HMAC_SHA1_96,
    HMAC_SHA2_256_128,
    HMAC_SHA2_384_192,
    HMAC_SHA2_512_256,
    EspDrop,
    EspSA,
    IvPool,
    SaParams,
    key_lengths,
)
from vpnhub.esp import sa as sa_module


def test_accelerator_present_under_ci() -> None:
    """CI builds the C codec: a missing one must fail, not pass on the fallback."""
    if os.environ.get("CI") != "true":
        pytest.skip("only enforced under CI=true")
    module = importlib.import_module("vpnhub.esp._espfast")
    assert hasattr(module, "Codec") and hasattr(module, "Window")
    if os.environ.get("VPNHUB_PURE_PYTHON", "") in ("", "0"):
        assert sa_module._espfast is module


# Not built, or VPNHUB_PURE_PYTHON set (then the guard above still imports it under CI).
needs_c = pytest.mark.skipif(sa_module._espfast is None, reason="C accelerator not in use")

SUITES = [
    (ESP_AES_CBC, 128, HMAC_SHA1_96),
    (ESP_AES_CBC, 192, HMAC_MD5_96),
    (ESP_AES_CBC, 256, HMAC_SHA2_256_128),
    (ESP_AES_CBC, 128, HMAC_SHA2_384_192),
    (ESP_AES_CBC, 256, HMAC_SHA2_512_256),
    (ESP_AES_GCM_16, 128, None),
    (ESP_AES_GCM_16, 192, None),
    (ESP_AES_GCM_16, 256, None),
]
IDS = [f"{t}-{b}-{a}" for t, b, a in SUITES]
ALL_NH = tuple(range(256))
Outcome = tuple[str, bytes, int]


class _Served(IvPool):
    """Serves the blocks it is given, in order (the IVs of the Python path's packets)."""

    def __init__(self) -> None:
        self.blocks: list[bytes] = []

    def take(self, n: int) -> bytes:
        block = self.blocks.pop(0)
        assert len(block) == n
        return block


def _params(suite: tuple[int, int | None, int | None]) -> SaParams:
    transform, bits, auth = suite
    enc_len, integ_len = key_lengths(transform, bits, auth)
    return SaParams.from_keymat(0xC0FFEE01, transform, bits, auth,
                                os.urandom(enc_len + integ_len))


def _sa(p: SaParams, accelerated: bool, **kw: object) -> EspSA:
    sa = EspSA(p.spi, p.transform, p.key_len_bits, p.auth, p.enc_key, p.integ_key,
               accelerated=accelerated, **kw)  # type: ignore[arg-type]
    assert sa.accelerated == accelerated
    return sa


def _twins(p: SaParams, **kw: object) -> tuple[EspSA, EspSA]:
    """(Python SA, C SA) with the same keys, GCM IV prefix and settings."""
    py, c = _sa(p, False, **kw), _sa(p, True, **kw)
    if p.transform == ESP_AES_GCM_16:
        c._iv_prefix = py._iv_prefix
    return py, c


def _outcome(sa: EspSA, esp: bytes) -> Outcome:
    try:
        inner, nh = sa.decapsulate(esp)
    except EspDrop as exc:
        return (exc.reason, b"", -1)
    return ("ok", inner, nh)


def _state(sa: EspSA) -> tuple[object, ...]:
    return (sa.drops, sa.replay.top, sa.packets_in, sa.bytes_in, sa.refused)


def _same(py: EspSA, c: EspSA, esp: bytes) -> Outcome:
    """Both inbound SAs give the same result and end in the same state."""
    got = _outcome(py, esp)
    assert _outcome(c, esp) == got
    assert _state(c) == _state(py)
    return got


def _forge(p: SaParams, seq: int, plaintext: bytes) -> bytes:
    """An authentic packet around any plaintext (payload, padding, pad length, NH)."""
    header = p.spi.to_bytes(4, "big") + seq.to_bytes(4, "big")
    if p.transform == ESP_AES_GCM_16:
        key, salt, iv = p.enc_key[:-4], p.enc_key[-4:], os.urandom(8)
        return header + iv + AESGCM(key).encrypt(salt + iv, plaintext, header)
    iv = os.urandom(16)
    enc = Cipher(algorithms.AES(p.enc_key), modes.CBC(iv)).encryptor()
    body = header + iv + enc.update(plaintext) + enc.finalize()
    suite = sa_module.get_suite(p.transform, p.key_len_bits, p.auth)
    assert suite.integ is not None
    mac = hmac.HMAC(p.integ_key, suite.integ.hash_algorithm())
    mac.update(body)
    return body + mac.finalize()[: suite.icv_len]


@needs_c
@pytest.mark.parametrize("suite", SUITES, ids=IDS)
def test_same_bytes_and_cross_decapsulation(suite: tuple[int, int | None, int | None]) -> None:
    p = _params(suite)
    pool = _Served()
    py_out = _sa(p, False)
    c_out = _sa(p, True, iv_pool=pool)
    if p.transform == ESP_AES_GCM_16:
        c_out._iv_prefix = py_out._iv_prefix
    py_in, c_in = _twins(p, next_headers=ALL_NH)

    @settings(max_examples=60, deadline=None)
    @given(st.binary(max_size=1500), st.integers(0, 255), st.integers(0, 2**32 - 2))
    def check(inner: bytes, nh: int, seq: int) -> None:
        py_out.seq = c_out.seq = seq
        expected = py_out.encapsulate(inner, nh)
        pool.blocks.append(expected[8:24])  # the CBC IV the Python path chose
        assert c_out.encapsulate(inner, nh) == expected
        py_in.replay.top = c_in.replay.top = 0
        assert c_in.decapsulate(expected) == (inner, nh)

    check()
    # Fresh IVs from a real pool: the Python path reads what the C path wrote.
    fresh = _sa(p, True)
    for size in (0, 1, 15, 16, 17, 1400, 1480):
        inner = os.urandom(size)
        assert py_in.decapsulate(fresh.encapsulate(inner, 41)) == (inner, 41)
    assert (c_out.packets_out, c_out.bytes_out, c_out.seq) == (
        py_out.packets_out, py_out.bytes_out, py_out.seq)


@needs_c
@pytest.mark.parametrize("suite", SUITES, ids=IDS)
def test_truncated_and_flipped_give_the_same_drop(
        suite: tuple[int, int | None, int | None]) -> None:
    p = _params(suite)
    py, c = _twins(p)
    esp = _sa(p, False).encapsulate(os.urandom(60))
    for cut in range(len(esp)):
        assert _same(py, c, esp[:cut])[0] != "ok"
    for pos in range(len(esp)):
        for bit in (0x01, 0x80):
            bad = bytearray(esp)
            bad[pos] ^= bit
            assert _same(py, c, bytes(bad))[0] != "ok"
    assert _same(py, c, esp)[0] == "ok"
    assert _same(py, c, esp)[0] == "replay"
    for junk in (b"", bytes(65535), os.urandom(65535), esp + bytes(64 * 1024)):
        assert _same(py, c, junk)[0] != "ok"


@needs_c
@pytest.mark.parametrize("suite", SUITES, ids=IDS)
@pytest.mark.parametrize("strict", [True, False])
def test_forged_trailers_give_the_same_result(
        suite: tuple[int, int | None, int | None], strict: bool) -> None:
    """Authentic packets with any trailer: padding, pad length, next header."""
    p = _params(suite)
    py, c = _twins(p, strict_padding=strict, next_headers=(4, 41))
    align = 4 if p.transform == ESP_AES_GCM_16 else 16
    inner = os.urandom(2 * align - 4)
    trailers = [b"\x01\x02\x02\x04", b"\x01\x03\x02\x04", b"\x00\x00\x09\x04",
                b"\x00\x00\xff\x29", b"\x01\x02\x02\x11", b"\x01\x02\x02\x3b"]
    for seq, trailer in enumerate(trailers, 1):
        _same(py, c, _forge(p, seq, inner + trailer))

    @settings(max_examples=80, deadline=None)
    @given(st.integers(1, 6).flatmap(lambda n: st.binary(min_size=n * align, max_size=n * align)),
           st.integers(1, 2**32 - 1))
    def check(plaintext: bytes, seq: int) -> None:
        _same(py, c, _forge(p, seq, plaintext))

    check()


@needs_c
@pytest.mark.parametrize("suite", [SUITES[0], SUITES[-1]], ids=[IDS[0], IDS[-1]])
def test_replays_and_reordering_the_same(suite: tuple[int, int | None, int | None]) -> None:
    p = _params(suite)
    out = _sa(p, True)
    packets = [out.encapsulate(os.urandom(40)) for _ in range(2100)]
    py, c = _twins(p)
    order = [5, 3, 5, 1, 0, 2099, 4, 1074, 1075, 1076, 1077, 6, 2099, 2098, 1500, 1077]
    outcomes = [_same(py, c, packets[i])[0] for i in order]
    # seq = index + 1; window 1024: after top 2100, seq 1076 is out and 1077 in.
    assert " ".join(outcomes) == ("ok ok replay ok ok ok replay replay replay ok ok replay "
                                  "replay ok ok replay")
    # A worker that resumes an SA sets replay.top (SaParams.replay_top): both honour it.
    py.replay.top = c.replay.top = 4000
    assert _same(py, c, out.encapsulate(b"\x45" * 30))[0] == "replay"


@needs_c
def test_codec_refuses_misuse() -> None:
    fast = sa_module._espfast
    assert fast is not None
    p = _params(SUITES[0])
    outbound = fast.Codec(p.spi, p.transform, p.enc_key, "SHA1", p.integ_key, 12, True, True)
    with pytest.raises(ValueError):
        outbound.decap(b"x" * 64, 0)
    with pytest.raises(ValueError):
        outbound.encap(b"x", 4, 1, b"short iv")
    with pytest.raises(ValueError):
        outbound.encap(b"x", 256, 1, bytes(16))
    with pytest.raises(ValueError):
        outbound.encap(b"x", 4, 2**32, bytes(16))
    with pytest.raises(ValueError):
        fast.Codec.__new__(fast.Codec).encap(b"x", 4, 1, bytes(16))  # never initialised
    with pytest.raises(ValueError):
        fast.Codec(p.spi, p.transform, bytes(15), "SHA1", p.integ_key, 12, True, True)
    with pytest.raises(ValueError):
        fast.Codec(p.spi, p.transform, p.enc_key, "NOPE", p.integ_key, 12, True, True)
    with pytest.raises(ValueError):
        fast.Codec(p.spi, 3, bytes(24), "SHA1", p.integ_key, 12, True, True)  # 3DES


# -- receive(): decapsulation, window and inner source check in one C call ----------

def _received(py: EspSA, c: EspSA, esp: bytes, allowed: bytes | None) -> bytes | None:
    """Both SAs' receive() give the same inner packet (or drop) and end in the same state."""
    got = py.receive(esp, allowed)
    assert c.receive(esp, allowed) == got
    assert _state(c) == _state(py)
    return got


def test_the_c_window_follows_replay_window() -> None:
    fast = sa_module._espfast
    if fast is None:
        pytest.skip("C accelerator not in use")
    import random

    from vpnhub.esp import ReplayWindow
    rng = random.Random(16)
    for size in (64, 128, 1024):
        py, c = ReplayWindow(size), fast.Window(size)
        assert c.size == size and c.top == 0
        for _ in range(6000):
            op = rng.randrange(10)
            near = min(2**32 - 1, max(0, py.top + rng.randrange(-size - 70, 140)))
            seq = rng.choice((near, near, 0, 2**32 - 1, rng.randrange(2**32)))
            if op < 4:
                assert c.check(seq) == py.check(seq)
            elif op < 8:
                c.update(seq)
                py.update(seq)
            elif op < 9:
                assert c.check_and_update(seq) == py.check_and_update(seq)
            elif rng.random() < 0.05:  # a worker resumes the SA: top set, bits kept
                py.top = c.top = seq
            assert c.top == py.top
    for bad in (-1, 2**32, 2**70):
        with pytest.raises((ValueError, OverflowError)):
            c.check(bad)
        with pytest.raises((ValueError, OverflowError)):
            c.top = bad
    for bad_size in (0, 63, 100):
        with pytest.raises(ValueError):
            fast.Window(bad_size)


@needs_c
@pytest.mark.parametrize("suite", [SUITES[0], SUITES[2], SUITES[5]], ids=[IDS[0], IDS[2], IDS[5]])
def test_receive_hostile_input_gives_the_same_drops(
        suite: tuple[int, int | None, int | None]) -> None:
    """Truncations, flipped bits, replays, reordering, forged trailers and inner
    packets (spoofed, short, not IPv4), with and without a source to check."""
    p = _params(suite)
    allowed = bytes([10, 40, 1, 2])
    for src in (allowed, None):
        py, c = _twins(p, next_headers=(4, 41))
        assert isinstance(c.replay, sa_module._espfast.Window)  # type: ignore[union-attr]
        out = _sa(p, False)
        good = bytes([0x45, 0, 0, 40]) + bytes(8) + allowed + bytes([192, 168, 2, 1]) + bytes(20)
        esp = out.encapsulate(good)
        for cut in range(len(esp)):
            assert _received(py, c, esp[:cut], src) is None
        for pos in range(0, len(esp), 3):
            bad = bytearray(esp)
            bad[pos] ^= 1 << (pos % 8)
            assert _received(py, c, bytes(bad), src) is None
        assert _received(py, c, esp, src) == good
        assert _received(py, c, esp, src) is None  # replay
        packets = [out.encapsulate(good) for _ in range(1100)]
        for i in (5, 3, 5, 1, 0, 1099, 4, 74, 75, 76, 6, 1098, 500, 76):
            _received(py, c, packets[i], src)
        inners = [good, good[:19], good[:16], good[:12], b"", bytes([0x65]) + good[1:],
                  good[:12] + bytes([10, 40, 1, 3]) + good[16:], bytes([0x45]) + bytes(39)]
        for inner in inners:
            for nh in (4, 41, 59, 17):
                _received(py, c, out.encapsulate(inner, nh), src)
        align = 4 if p.transform == ESP_AES_GCM_16 else 16
        seq = out.seq
        for trailer in (b"\x01\x02\x02\x04", b"\x01\x03\x02\x04", b"\x00\x00\xff\x04",
                        b"\x01\x02\x02\x3b"):
            seq += 1
            _received(py, c, _forge(p, seq, good[:2 * align - 4] + trailer), src)
        for junk in (b"", bytes(65535), os.urandom(2000)):
            assert _received(py, c, junk, src) is None
        py.replay.top = c.replay.top = out.seq + 10  # a resumed SA: the window honours it
        assert _received(py, c, out.encapsulate(good), src) is None
        assert _received(py, c, packets[-2], src) is None  # received before
        assert sum(py.drops.values()) > 50 and py.drops == c.drops
        assert c.refused == py.refused and bool(c.refused) == (src is not None)


@needs_c
def test_receive_run_keeps_the_headers_of_the_last_refused_inner_packet() -> None:
    """The C receive_run hands back the last packet its inner checks refused; the SA
    keeps its headers (and ports), not the payload."""
    p = _params(SUITES[0])
    py, c = _twins(p)
    out = _sa(p, False)
    src, allowed = ("192.0.2.1", 4500), bytes([10, 40, 1, 1])
    payload = b"a private payload " * 20
    good = bytes([0x45, 0, 1, 124]) + bytes(8) + allowed + bytes([192, 168, 2, 10]) + payload
    spoofed = good[:12] + bytes([10, 10, 10, 2]) + good[16:]
    batch = [(out.encapsulate(x), src, 0) for x in (spoofed, good, spoofed[:60] + b"!", good)]
    for sa in (py, c):
        assert sa.receive_run(batch, 0, allowed, src, 9, 20) == (4, [good, good], 4)
        assert sa.drops == {"spoofed_source": 2}
    assert c.refused == py.refused == spoofed[:24]
    assert b"private" not in c.refused


@needs_c
def test_receive_refuses_misuse() -> None:
    fast = sa_module._espfast
    assert fast is not None
    p = _params(SUITES[0])
    inbound = fast.Codec(p.spi, p.transform, p.enc_key, "SHA1", p.integ_key, 12, False, True)
    w, nh = fast.Window(), bytes(256)
    for args in ((b"x" * 64, object(), nh, None), (b"x" * 64, w, bytes(255), None),
                 (b"x" * 64, w, nh, b"abc"), (b"x" * 64, w, nh), (b"x", w, nh, "text")):
        with pytest.raises(TypeError):
            inbound.receive(*args)
    with pytest.raises(ValueError):
        inbound.receive(b"x" * 64, fast.Window.__new__(fast.Window), nh, None)
    outbound = fast.Codec(p.spi, p.transform, p.enc_key, "SHA1", p.integ_key, 12, True, True)
    with pytest.raises(ValueError):
        outbound.receive(b"x" * 64, w, nh, None)
    assert inbound.receive(b"x" * 64, w, nh, None) == fast.ERR_SHORT
    assert inbound.receive(b"x" * 52, w, nh, None) == fast.ERR_AUTH and w.top == 0


def test_a_built_sa_resumes_its_window_on_either_path() -> None:
    p = _params(SUITES[0])
    resumed = SaParams(p.spi, p.transform, p.key_len_bits, p.auth, p.enc_key, p.integ_key,
                       replay_top=77)
    assert resumed.build().replay.top == 77


@needs_c
def test_receive_run_limits_and_misuse() -> None:
    p = _params(SUITES[0])
    py, c = _twins(p)
    out = _sa(p, False)
    src = ("192.0.2.1", 4500)
    good = bytes([0x45]) + bytes(39)
    batch = [(out.encapsulate(good), src, 0) for _ in range(5)]
    batch.insert(3, (b"\x00\x00\x00\x00ike", src, 0))
    for sa in (py, c):
        assert sa.receive_run(batch, 0, None, src, 2, 20)[0] == 2  # the limit
        assert sa.receive_run(batch, 2, None, src, 0, 20) == (2, [], 0)
        assert sa.receive_run(batch, 2, None, src, 9, 20) == (3, [good], 1)  # stops at IKE
        assert sa.receive_run(batch, 4, None, ("192.0.2.2", 4500), 9, 20) == (4, [], 0)
        assert sa.receive_run(batch, 4, None, src, 9, 41) == (6, [], 2)  # too short: dropped
        assert sa.receive_run(batch, 9, None, src, 9, 20) == (9, [], 0)
    assert _state(py) == _state(c) and py.drops == {"bad_inner_packet": 2}
    assert c.refused == good[:24]  # what the IPSECDBG drop line names
    codec = c._inbound_codec()
    for bad in ((tuple(batch), 0), (batch, -1)):
        with pytest.raises((TypeError, ValueError)):
            codec.receive_run(bad[0], bad[1], c._cwin, c._nh_map, None, c.spi_bytes, src, 9, 0)
    with pytest.raises(TypeError):
        codec.receive_run(batch, 0, c._cwin, c._nh_map, None, b"abc", src, 9, 0)
    odd = [[b"x"], (b"x" * 64,), (bytearray(64), src)]
    assert codec.receive_run(odd, 0, c._cwin, c._nh_map, None, c.spi_bytes, src, 9, 0)[0] == 0
