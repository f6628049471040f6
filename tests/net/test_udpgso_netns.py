"""UDP GSO from a real data plane on a real TUN, over a veth, to a peer without GRO.

```
 netns vhgso-a-<pid>                                 netns vhgso-b-<pid>
 UDP sender 10.98.1.1 -> 10.98.2.1 (into vhtun0)     peer: a plain UDP socket on
 Dataplane A: default SA -> 198.51.100.2:4500        198.51.100.2:4500, no UDP_GRO:
 198.51.100.1/24 veth vhga<pid> =================== veth vhgb<pid> 198.51.100.2/24
```

The burst is routed into the TUN by the kernel, read by the data plane in one
wake-up (polled by hand, so that it is one batch), encrypted and sent in
trains; the peer reads what the wire carried: each ESP datagram alone, which
it decrypts with the SA. Needs root (marker ``netns``); everything is named
after this process id and removed in ``finally``.
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from vpnhub.esp import ESP_AES_CBC, HMAC_SHA1_96, SaParams, key_lengths
from vpnhub.net.dataplane import Dataplane, open_udp_socket
from vpnhub.net.messages import AddOutbound, GetStats
from vpnhub.net.stats import DataplaneStats
from vpnhub.net.tun import TunDevice, enter_netns, ip

pytestmark = pytest.mark.netns

OUTER_A, OUTER_B = "198.51.100.1", "198.51.100.2"
INNER_A, INNER_B = "10.98.1.1", "10.98.2.1"
SPI = 0xA0000009


@dataclass
class Lab:
    ns_a: str
    dp: Dataplane
    peer: socket.socket
    sa: SaParams

    def stats(self) -> DataplaneStats:
        result = self.dp.call(GetStats())
        assert isinstance(result, DataplaneStats)
        return result


@contextmanager
def lab(tun_mtu: int) -> Iterator[Lab]:
    pid = os.getpid()
    ns_a, ns_b = f"vhgso-a-{pid}", f"vhgso-b-{pid}"
    created: list[str] = []
    closers: list[object] = []
    dp: Dataplane | None = None
    try:
        for ns in (ns_a, ns_b):
            ip("netns", "add", ns)
            created.append(ns)
            for key in ("all", "default"):  # no IPv6 router solicitations on the TUN
                subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw",
                                f"net.ipv6.conf.{key}.disable_ipv6=1"], check=True)
            ip("link", "set", "lo", "up", netns=ns)
        ip("link", "add", f"vhga{pid}", "netns", ns_a, "type", "veth",
           "peer", "name", f"vhgb{pid}", "netns", ns_b)
        for ns, dev, addr in ((ns_a, f"vhga{pid}", OUTER_A), (ns_b, f"vhgb{pid}", OUTER_B)):
            ip("addr", "add", f"{addr}/24", "dev", dev, netns=ns)
            ip("link", "set", dev, "up", netns=ns)
        tun = TunDevice("vhtun0", netns=ns_a)
        closers.append(tun)
        tun.configure(f"{INNER_A}/32", mtu=tun_mtu, routes=["10.98.2.0/24"])
        with enter_netns(ns_a):
            udp = open_udp_socket(OUTER_A, 4500)
        with enter_netns(ns_b):
            peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # no UDP_GRO
        closers += [udp, peer]
        peer.bind((OUTER_B, 4500))
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        dp = Dataplane(tun, udp=udp)
        enc_len, integ_len = key_lengths(ESP_AES_CBC, 128, HMAC_SHA1_96)
        sa = SaParams.from_keymat(SPI, ESP_AES_CBC, 128, HMAC_SHA1_96,
                                  os.urandom(enc_len + integ_len))
        dp.call(AddOutbound(sa, (OUTER_B, 4500)))
        yield Lab(ns_a, dp, peer, sa)
    finally:
        if dp is not None:
            dp.close()
        for obj in closers:
            obj.close()  # type: ignore[attr-defined]
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def burst(env: Lab, payloads: list[bytes]) -> list[bytes]:
    """Send `payloads` as UDP into the tunnel; the data plane handles them in one batch;
    the inner UDP payloads the peer decrypted, in order."""
    with enter_netns(env.ns_a):
        src = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with src:
        src.bind((INNER_A, 0))
        for p in payloads:
            src.sendto(p, (INNER_B, 9))
    env.dp.poll(0.5)
    inbound = env.sa.build()  # the peer's copy of the SA
    got: list[bytes] = []
    while len(got) < len(payloads) and select.select([env.peer], [], [], 1.0)[0]:
        esp = env.peer.recv(65535)
        inner = inbound.decapsulate(esp)[0]
        got.append(inner[28:])  # past the inner IPv4 and UDP headers
    return got


def test_a_burst_leaves_in_trains_and_the_peer_gets_every_datagram_intact() -> None:
    with lab(tun_mtu=1400) as env:
        payloads = [os.urandom(1000) for _ in range(150)] + [os.urandom(10)]
        assert burst(env, payloads) == payloads
        st = env.stats()
        assert st.udp_gso and st.gso_fallbacks == 0
        assert st.udp_tx_datagrams == 151
        assert st.udp_tx_calls <= 4 < st.udp_tx_datagrams  # 64 + 64 + 23 (+ the last)
        assert st.drops_total == {}


def test_a_train_the_kernel_cannot_segment_goes_out_one_by_one() -> None:
    """Segments above the veth's MTU (policy "none": the kernel fragments outer packets)
    cannot be a GSO train (EINVAL): they are sent one by one, fragmented, and counted."""
    with lab(tun_mtu=3000) as env:
        payloads = [os.urandom(2000) for _ in range(5)]
        assert burst(env, payloads) == payloads
        st = env.stats()
        assert st.gso_fallbacks == 1 and st.udp_tx_datagrams == 5
        assert st.drops_total == {}
        # the peer remembers: the next burst of that size does not try again
        assert burst(env, payloads[:3]) == payloads[:3]
        assert env.stats().gso_fallbacks == 1
