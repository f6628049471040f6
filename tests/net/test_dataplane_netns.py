"""Two real data planes in two network namespaces, forwarding ping and TCP.

```
 netns vhesp-a-<pid>                                  netns vhesp-b-<pid>
 ping / TCP client                                    TCP server
 10.99.1.1/32 on TUN vhtun0                           10.99.2.1/32 on TUN vhtun0
 route 10.99.2.0/24 -> vhtun0                         route 10.99.1.0/24 -> vhtun0
        |  Dataplane A (thread, "client")                    |  Dataplane B (thread, "concentrator":
        |  default SA -> B                                   |   inner source must be 10.99.1.1)
 198.51.100.1/24 veth vhea<pid> ==================== veth vheb<pid> 198.51.100.2/24
            ESP in UDP, port 4500 <-> 4500 (RFC 3948)   or   raw ESP (IP protocol 50)
```

Needs root (namespaces, TUN, raw sockets: marker ``netns``); everything
created here is named after this process id and removed in ``finally``
whatever happens (deleting a namespace takes its veth and TUN with it).
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from vpnhub.esp import (
    ESP_AES_CBC,
    ESP_AES_GCM_16,
    HMAC_SHA1_96,
    SaParams,
    key_lengths,
)
from vpnhub.net.dataplane import (
    Dataplane,
    open_esp_socket,
    open_udp_socket,
)
from vpnhub.net.messages import (
    AddInbound,
    AddOutbound,
    GetStats,
)
from vpnhub.net.stats import DataplaneStats
from vpnhub.net.tun import TunDevice, enter_netns, ip

# tests/conftest.py skips (or, with CI=true, fails) "netns" tests when not root.
pytestmark = pytest.mark.netns

OUTER_A, OUTER_B = "198.51.100.1", "198.51.100.2"
INNER_A, INNER_B = "10.99.1.1", "10.99.2.1"


@dataclass
class Lab:
    ns_a: str
    ns_b: str
    a: Dataplane
    b: Dataplane
    tun_a: TunDevice

    def sa_stats(self, dp: Dataplane, spi: int) -> dict[str, object]:
        stats = dp.call(GetStats())
        assert isinstance(stats, DataplaneStats)
        for sa in stats.sas:
            if sa.spi == spi:
                return sa.as_dict()
        raise KeyError(spi)


def _params(spi: int, suite: tuple[int, int | None, int | None]) -> SaParams:
    enc_len, integ_len = key_lengths(*suite)
    return SaParams.from_keymat(spi, *suite, os.urandom(enc_len + integ_len))


@contextmanager
def lab(udp_encap: bool, suite: tuple[int, int | None, int | None],
        offload: bool = False) -> Iterator[Lab]:
    pid = os.getpid()
    ns_a, ns_b = f"vhesp-a-{pid}", f"vhesp-b-{pid}"
    created: list[str] = []
    closers: list[object] = []
    planes: list[Dataplane] = []
    try:
        for ns in (ns_a, ns_b):
            ip("netns", "add", ns)
            created.append(ns)
            for key in ("all", "default"):
                subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw",
                                f"net.ipv6.conf.{key}.disable_ipv6=1"], check=True)
            ip("link", "set", "lo", "up", netns=ns)
        ip("link", "add", f"vhea{pid}", "netns", ns_a, "type", "veth",
           "peer", "name", f"vheb{pid}", "netns", ns_b)
        for ns, dev, addr in ((ns_a, f"vhea{pid}", OUTER_A), (ns_b, f"vheb{pid}", OUTER_B)):
            ip("addr", "add", f"{addr}/24", "dev", dev, netns=ns)
            ip("link", "set", dev, "up", netns=ns)

        tun_a = TunDevice("vhtun0", netns=ns_a, offload=offload)
        tun_b = TunDevice("vhtun0", netns=ns_b, offload=offload)
        closers += [tun_a, tun_b]
        tun_a.configure(f"{INNER_A}/32", mtu=1400, routes=["10.99.2.0/24"])
        tun_b.configure(f"{INNER_B}/32", mtu=1400, routes=["10.99.1.0/24"])

        socks = []
        for ns, addr in ((ns_a, OUTER_A), (ns_b, OUTER_B)):
            with enter_netns(ns):
                socks.append(open_udp_socket(addr, 4500) if udp_encap else open_esp_socket(addr))
        closers += socks
        port = 4500 if udp_encap else 0
        if udp_encap:
            a = Dataplane(tun_a, udp=socks[0])
            b = Dataplane(tun_b, udp=socks[1])
        else:
            a = Dataplane(tun_a, esp=socks[0])
            b = Dataplane(tun_b, esp=socks[1])
        planes += [a, b]
        a_to_b, b_to_a = _params(0xA0000001, suite), _params(0xB0000001, suite)
        a.call(AddOutbound(a_to_b, (OUTER_B, port), udp_encap=udp_encap))
        a.call(AddInbound(b_to_a, (OUTER_B, port), udp_encap=udp_encap))
        b.call(AddInbound(a_to_b, (OUTER_A, port), udp_encap=udp_encap, allowed_src=INNER_A))
        b.call(AddOutbound(b_to_a, (OUTER_A, port), udp_encap=udp_encap, dst=INNER_A))
        a.start()
        b.start()
        yield Lab(ns_a, ns_b, a, b, tun_a)
    finally:
        for dp in planes:
            dp.close()
        for obj in closers:
            obj.close()  # type: ignore[attr-defined]
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def ping(ns: str, src: str, dst: str, count: int = 3) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, "ping", "-n", "-c", str(count), "-i", "0.2", "-W", "2",
         "-I", src, dst],
        capture_output=True, text=True, check=False, timeout=30)


def tcp_transfer(lab: Lab, size: int, *, reverse: bool = False) -> float:
    """Send ``size`` random bytes A -> B (B -> A if `reverse`) over TCP through the
    tunnel; return Mbit/s."""
    data = os.urandom(size)
    (ns_from, src), (ns_to, dst) = ((lab.ns_a, INNER_A), (lab.ns_b, INNER_B))[::-1 if reverse
                                                                              else 1]
    with enter_netns(ns_to):
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind((dst, 0))
    server.listen(1)
    server.settimeout(30)
    digest: list[str] = []

    def serve() -> None:
        conn, _ = server.accept()
        conn.settimeout(30)
        h = hashlib.sha256()
        with conn:
            while chunk := conn.recv(1 << 16):
                h.update(chunk)
        digest.append(h.hexdigest())

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with enter_netns(ns_from):
            client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        with client:
            client.settimeout(30)
            client.bind((src, 0))
            client.connect(server.getsockname())
            start = time.monotonic()
            client.sendall(data)
            client.shutdown(socket.SHUT_WR)
            thread.join(60)
            elapsed = time.monotonic() - start
    finally:
        thread.join(5)
        server.close()
    assert digest == [hashlib.sha256(data).hexdigest()]
    return size * 8 / elapsed / 1e6


@pytest.mark.parametrize(
    "suite", [(ESP_AES_CBC, 128, HMAC_SHA1_96), (ESP_AES_GCM_16, 128, None)],
    ids=["aes128-sha1", "aes128-gcm"])
def test_udp_encap_ping_and_tcp(suite: tuple[int, int | None, int | None]) -> None:
    with lab(True, suite) as env:
        result = ping(env.ns_a, INNER_A, INNER_B)
        assert result.returncode == 0, result.stdout + result.stderr
        assert env.sa_stats(env.b, 0xA0000001)["packets_in"] == 3
        assert env.sa_stats(env.a, 0xB0000001)["packets_in"] == 3
        mbit = tcp_transfer(env, 8 << 20)
        print(f"TCP through ESP-in-UDP ({suite}): {mbit:.0f} Mbit/s")
        stats_b = env.b.call(GetStats())
        assert isinstance(stats_b, DataplaneStats)
        assert stats_b.drops_total.get("auth_failed", 0) == 0
        assert stats_b.udp_rx > 1000


def test_udp_encap_drops_spoofed_inner_source() -> None:
    with lab(True, (ESP_AES_CBC, 128, HMAC_SHA1_96)) as env:
        ip("addr", "add", "10.99.1.9/32", "dev", env.tun_a.name, netns=env.ns_a)
        result = ping(env.ns_a, "10.99.1.9", INNER_B, count=2)
        assert result.returncode != 0
        drops = env.sa_stats(env.b, 0xA0000001)["drops"]
        assert drops == {"spoofed_source": 2}
        assert ping(env.ns_a, INNER_A, INNER_B, count=1).returncode == 0


def test_raw_esp_ping_and_tcp() -> None:
    with lab(False, (ESP_AES_CBC, 128, HMAC_SHA1_96)) as env:
        result = ping(env.ns_a, INNER_A, INNER_B)
        assert result.returncode == 0, result.stdout + result.stderr
        stats_b = env.b.call(GetStats())
        assert isinstance(stats_b, DataplaneStats)
        assert stats_b.esp_rx >= 3 and stats_b.udp_rx == 0
        mbit = tcp_transfer(env, 4 << 20)
        print(f"TCP through raw ESP: {mbit:.0f} Mbit/s")


def _stats(dp: Dataplane) -> DataplaneStats:
    stats = dp.call(GetStats())
    assert isinstance(stats, DataplaneStats)
    return stats


@pytest.mark.parametrize("udp_encap", [True, False], ids=["natt", "raw-esp"])
def test_tun_offload_tcp_both_ways(udp_encap: bool) -> None:
    """Issue 16: TUNs with IFF_VNET_HDR and TSO. The sender's stack hands its TUN TCP
    super-packets (split by its data plane), the receiver's data plane coalesces the
    segments of a batch into super-packets the kernel takes; the data arrive intact."""
    with lab(udp_encap, (ESP_AES_CBC, 128, HMAC_SHA1_96), offload=True) as env:
        assert env.tun_a.vnet_hdr and env.tun_a.offloads & 0x03 == 0x03  # CSUM | TSO4
        assert ping(env.ns_a, INNER_A, INNER_B, count=1).returncode == 0
        for reverse in (False, True):
            mbit = tcp_transfer(env, 8 << 20, reverse=reverse)
            print(f"TCP with TUN offloads ({'B -> A' if reverse else 'A -> B'}):"
                  f" {mbit:.0f} Mbit/s")
        for dp in (env.a, env.b):
            st = _stats(dp)
            assert st.tun_offload
            assert st.tun_rx_super > 0 and st.tun_rx > st.tun_rx_calls  # split
            assert st.tun_tx_super > 0 and st.tun_tx > st.tun_tx_calls  # coalesced
            assert st.drops_total.get("tun_write_error", 0) == 0
            assert st.drops_total.get("bad_super_packet", 0) == 0
