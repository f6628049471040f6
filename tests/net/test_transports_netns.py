"""The other ways through NAT, between two real data planes in network namespaces.

```
 {p}-a  "client"                     {p}-r  router = PAT + filters             {p}-b  "server"
 ping / TCP / iperf3 client                                                    TCP / iperf3 server
 10.99.1.1/32 on TUN vhtun0                                                    10.99.2.1/32 on TUN
 route 10.99.2.0/24 -> TUN                                                     route 10.99.1.0/24
   |  Dataplane A                                                                 |  Dataplane B
 10.98.1.2/24 {p}a ======= {p}ra 10.98.1.1/24   {p}rb 198.51.100.1/24 ======= {p}b 198.51.100.2/24
                            nft: masquerade random out of {p}rb (a PAT), and per test
                            "udp"   : forward, drop every UDP packet
                            "frags" : prerouting before conntrack's defrag, drop every
                                      IP fragment (offset != 0, or MF set)
```

- Cisco IPsec over UDP: ESP in UDP 10000 <-> 10000 through the PAT; B learns
  A's translated port from its first authentic ESP (PeerMoved -> UpdatePeer,
  as the concentrator does).
- IPsec over TCP: the router drops all UDP; IKE and ESP share one TCP
  connection to B:10000; tshark decodes the capture as TCPENCAP carrying
  ISAKMP and ESP.
- Fragmentation policy: NAT-T through a router that drops IP fragments, TUN
  MTU 1500: a 1472-byte ping and an iperf3 transfer pass with
  "before-encryption" (and "clear-df") and fail with "none", which counts and
  says why.

Needs root (marker ``netns``).  Everything is named after the test's lab
prefix, recorded as owned by this process, and removed in ``finally``
whatever happens.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from netns_util import require_tools

from vpnhub.esp import ESP_AES_CBC, HMAC_SHA1_96, SaParams, key_lengths
from vpnhub.ike.transport import Transport
from vpnhub.lab import procs, topology
from vpnhub.net.dataplane import (
    Dataplane,
    open_cisco_udp_socket,
    open_ctcp_listener,
    open_udp_socket,
)
from vpnhub.net.messages import (
    AddInbound,
    AddOutbound,
    Event,
    GetStats,
    IkeDatagram,
    OuterFragmentation,
    PeerMoved,
    SetKeepalive,
    UpdatePeer,
)
from vpnhub.net.stats import DataplaneStats
from vpnhub.net.tun import TunDevice, enter_netns, ip

pytestmark = pytest.mark.netns

A_LAN, R_LAN = "10.98.1.2", "10.98.1.1"
R_OUT, B_OUT = "198.51.100.1", "198.51.100.2"
INNER_A, INNER_B = "10.99.1.1", "10.99.2.1"
SUITE = (ESP_AES_CBC, 128, HMAC_SHA1_96)
CISCO_PORT = 10000


def isakmp(exchange: int, tag: bytes) -> bytes:
    """A well-formed ISAKMP header (RFC 2408 3.1) + a VID payload, for tshark to decode."""
    vid = struct.pack("!BBH", 0, 0, 4 + len(tag)) + tag
    return (os.urandom(8) + bytes(8) + struct.pack("!BBBBII", 13, 0x10, exchange, 0, 0,
                                                   28 + len(vid)) + vid)


def params(spi: int) -> SaParams:
    enc_len, integ_len = key_lengths(*SUITE)
    return SaParams.from_keymat(spi, *SUITE, os.urandom(enc_len + integ_len))


def sh(ns: str, *argv: str, timeout: float = 30.0, check: bool = False,
       input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True,
                          timeout=timeout, check=check, input=input)


@dataclass
class Lab:
    prefix: str
    a: Dataplane
    b: Dataplane
    closers: list[object] = field(default_factory=list)
    events_b: list[Event] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def ns_a(self) -> str:
        return f"{self.prefix}-a"

    @property
    def ns_r(self) -> str:
        return f"{self.prefix}-r"

    @property
    def ns_b(self) -> str:
        return f"{self.prefix}-b"

    def stats(self, dp: Dataplane) -> dict[str, object]:
        snap = dp.call(GetStats())
        assert isinstance(snap, DataplaneStats)
        return snap.as_dict()

    def follow_nat(self) -> None:
        """B's control plane, reduced to what these tests need: follow PeerMoved."""
        def run() -> None:
            while not self.stop.is_set():
                event = self.b.inbox.get(0.1)
                if event is None:
                    continue
                self.events_b.append(event)
                if isinstance(event, PeerMoved):
                    self.b.submit(UpdatePeer(event.old, event.new))

        threading.Thread(target=run, name="follow-nat", daemon=True).start()

    def nft_counter(self, comment: str) -> int:
        out = sh(self.ns_r, "nft", "-j", "list", "ruleset", check=True).stdout
        for item in json.loads(out)["nftables"]:
            rule = item.get("rule")
            if rule and rule.get("comment") == comment:
                for expr in rule["expr"]:
                    if "counter" in expr:
                        return int(expr["counter"]["packets"])
        raise KeyError(comment)

    def ping(self, size: int = 56, count: int = 3, pmtu: str | None = None,
             ) -> subprocess.CompletedProcess[str]:
        extra = ("-M", pmtu) if pmtu else ()
        return sh(self.ns_a, "ping", "-n", "-c", str(count), "-i", "0.3", "-W", "2",
                  "-s", str(size), *extra, "-I", INNER_A, INNER_B)


def _nft(prefix: str, filters: str) -> str:
    rules = {
        "": "",
        "udp": ("  chain forward {\n    type filter hook forward priority filter; policy accept;\n"
                '    meta l4proto udp counter drop comment "udp"\n  }\n'),
        # Before nf_defrag_ipv4 (priority -400), or conntrack would reassemble them first.
        "frags": ("  chain frags {\n    type filter hook prerouting priority -500;"
                  " policy accept;\n"
                  '    ip frag-off & 0x1fff != 0 counter drop comment "frag-offset"\n'
                  '    ip frag-off & 0x2000 != 0 counter drop comment "frag-mf"\n  }\n'),
    }[filters]
    return (f"table ip {prefix}t {{\n{rules}"
            "  chain postrouting {\n    type nat hook postrouting priority srcnat;"
            " policy accept;\n"
            f'    oifname "{prefix}rb" masquerade random\n  }}\n}}\n')


def _build(prefix: str, filters: str) -> None:
    ns_a, ns_r, ns_b = f"{prefix}-a", f"{prefix}-r", f"{prefix}-b"
    for ns in (ns_a, ns_r, ns_b):
        topology.record_netns(prefix, ns)  # topology.cleanup(prefix) removes what is recorded
        ip("netns", "add", ns)
        sh(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
           "net.ipv6.conf.default.disable_ipv6=1", check=True)
        ip("link", "set", "lo", "up", netns=ns)
    sh(ns_r, "sysctl", "-qw", "net.ipv4.ip_forward=1", check=True)
    ip("link", "add", f"{prefix}a", "netns", ns_a, "type", "veth",
       "peer", "name", f"{prefix}ra", "netns", ns_r)
    ip("link", "add", f"{prefix}rb", "netns", ns_r, "type", "veth",
       "peer", "name", f"{prefix}b", "netns", ns_b)
    for ns, dev, addr in ((ns_a, f"{prefix}a", A_LAN), (ns_r, f"{prefix}ra", R_LAN),
                          (ns_r, f"{prefix}rb", R_OUT), (ns_b, f"{prefix}b", B_OUT)):
        ip("addr", "add", f"{addr}/24", "dev", dev, netns=ns)
        ip("link", "set", dev, "up", netns=ns)
    ip("route", "add", "default", "via", R_LAN, netns=ns_a)
    sh(ns_r, "nft", "-f", "-", input=_nft(prefix, filters), check=True)


@contextmanager
def lab(prefix: str, *, filters: str = "", tun_mtu: int = 1400,
        **dataplane_args: object) -> Iterator[Lab]:
    """Namespaces, TUNs and two running data planes (sockets are added by the test)."""
    procs.write_owner(prefix)  # a concurrent test session must not reap this lab
    closers: list[object] = []
    planes: list[Dataplane] = []
    env: Lab | None = None
    try:
        _build(prefix, filters)
        tun_a = TunDevice("vhtun0", netns=f"{prefix}-a")
        tun_b = TunDevice("vhtun0", netns=f"{prefix}-b")
        closers += [tun_a, tun_b]
        tun_a.configure(f"{INNER_A}/32", mtu=tun_mtu, routes=["10.99.2.0/24"])
        tun_b.configure(f"{INNER_B}/32", mtu=tun_mtu, routes=["10.99.1.0/24"])
        sockets = dataplane_args.pop("sockets", {})
        assert isinstance(sockets, dict)
        args_a, args_b = {}, {}
        for side, ns, args in (("a", f"{prefix}-a", args_a), ("b", f"{prefix}-b", args_b)):
            with enter_netns(ns):
                for kind, opener in sockets.get(side, {}).items():
                    sock = opener()
                    closers.append(sock)
                    if kind == "ctcp_listeners":
                        args[kind] = [sock]
                    else:
                        args[kind] = sock
        a = Dataplane(tun_a, **args_a, **dataplane_args)  # type: ignore[arg-type]
        b = Dataplane(tun_b, **args_b, **dataplane_args)  # type: ignore[arg-type]
        planes += [a, b]
        a.start()
        b.start()
        env = Lab(prefix, a, b, closers)
        yield env
    finally:
        if env is not None:
            env.stop.set()
        for dp in planes:
            dp.close()
        for obj in closers:
            with contextlib.suppress(Exception):
                obj.close()  # type: ignore[attr-defined]
        topology.cleanup(prefix)


def install(env: Lab, peer_of_a: tuple[str, int], peer_of_b: tuple[str, int],
            transport: str) -> None:
    a_to_b, b_to_a = params(0xA0000001), params(0xB0000001)
    env.a.call(AddOutbound(a_to_b, peer_of_b, transport=transport))
    env.a.call(AddInbound(b_to_a, peer_of_b, transport=transport))
    env.b.call(AddInbound(a_to_b, peer_of_a, allowed_src=INNER_A, transport=transport))
    env.b.call(AddOutbound(b_to_a, peer_of_a, dst=INNER_A, transport=transport))


def tcp_transfer(env: Lab, size: int, timeout: float = 30.0) -> float:
    """``size`` random bytes A -> B over TCP through the tunnel, hash-checked; Mbit/s."""
    data = os.urandom(size)
    with enter_netns(env.ns_b):
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind((INNER_B, 0))
    server.listen(1)
    server.settimeout(timeout)
    digest: list[str] = []

    def serve() -> None:
        conn, _ = server.accept()
        conn.settimeout(timeout)
        h = hashlib.sha256()
        with conn:
            while chunk := conn.recv(1 << 16):
                h.update(chunk)
        digest.append(h.hexdigest())

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with enter_netns(env.ns_a):
            client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        with client:
            client.settimeout(timeout)
            client.bind((INNER_A, 0))
            client.connect(server.getsockname())
            start = time.monotonic()
            client.sendall(data)
            client.shutdown(socket.SHUT_WR)
            thread.join(timeout)
            elapsed = time.monotonic() - start
    finally:
        thread.join(5)
        server.close()
    assert digest == [hashlib.sha256(data).hexdigest()]
    return size * 8 / elapsed / 1e6


def iperf3(env: Lab, seconds: int = 2) -> tuple[int, int]:
    """iperf3 A -> B through the tunnel: (exit status, bytes the server received)."""
    port = 5201
    server = subprocess.Popen(
        ["ip", "netns", "exec", env.ns_b, "iperf3", "-s", "-1", "-B", INNER_B, "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        topology.wait_until(lambda: sh(env.ns_b, "ss", "-Hltn", f"sport = :{port}").stdout,
                            10, what="iperf3 server listening")
        res = sh(env.ns_a, "timeout", "20", "iperf3", "-c", INNER_B, "-B", INNER_A,
                 "-p", str(port), "-t", str(seconds), "-J", "--connect-timeout", "3000",
                 timeout=40)
        received = 0
        with contextlib.suppress(ValueError, KeyError, TypeError):
            received = int(json.loads(res.stdout)["end"]["sum_received"]["bytes"])
        return res.returncode, received
    finally:
        if server.poll() is None:
            server.terminate()
        try:
            server.wait(5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)


@pytest.fixture
def tools() -> None:
    require_tools("nft", "ping", "iperf3")


# -- Cisco IPsec over UDP ----------------------------------------------------------


@pytest.mark.usefixtures("tools")
def test_cisco_udp_through_pat(lab_prefix: str) -> None:
    sockets = {"a": {"cisco_udp": lambda: open_cisco_udp_socket("0.0.0.0", CISCO_PORT)},
               "b": {"cisco_udp": lambda: open_cisco_udp_socket(B_OUT, CISCO_PORT)}}
    with lab(lab_prefix, sockets=sockets) as env:
        # B does not know A's translated port yet: authentic ESP will tell it.
        install(env, (R_OUT, CISCO_PORT), (B_OUT, CISCO_PORT), "cisco-udp")
        env.follow_nat()
        env.a.call(SetKeepalive((B_OUT, CISCO_PORT), 1.0, transport="cisco-udp"))
        env.ping(count=1)  # its reply goes to the guessed port; B moves the peer
        topology.wait_until(lambda: any(isinstance(e, PeerMoved) for e in env.events_b), 5,
                            what="PeerMoved on B")
        result = env.ping(count=3)
        assert result.returncode == 0, result.stdout + result.stderr
        mbit = tcp_transfer(env, 4 << 20)
        print(f"TCP through Cisco IPsec over UDP: {mbit:.0f} Mbit/s")
        topology.wait_until(lambda: env.stats(env.b)["keepalive_rx"], 5,
                            what="Cisco UDP keepalive on B")
        st = env.stats(env.b)
        assert st["cisco_udp_rx"] > 1000 and st["udp_rx"] == 0
        assert st["drops_total"] == {}
        peer = next(p for p in st["peers"] if p["transport"] == "cisco-udp")  # type: ignore[attr-defined]
        assert peer["addr"][0] == R_OUT  # followed to the PAT's translated port
        assert env.stats(env.a)["keepalive_tx"] >= 1


# -- IPsec over TCP --------------------------------------------------------------


@pytest.mark.usefixtures("tools")
def test_ctcp_through_a_pat_that_drops_udp(lab_prefix: str, tmp_path: Path) -> None:
    require_tools("tshark")
    sockets = {"b": {"ctcp_listeners": lambda: open_ctcp_listener(B_OUT, CISCO_PORT)},
               "a": {"udp": lambda: open_udp_socket("0.0.0.0", 4500)}}
    with lab(lab_prefix, filters="udp", sockets=sockets) as env:
        # UDP really is dropped: a NAT-T probe never gets through.
        assert env.a.udp is not None
        env.a.send_ike(isakmp(4, b"probe"), (B_OUT, 4500))
        topology.wait_until(lambda: env.nft_counter("udp"), 5, what="UDP dropped by the router")

        pcap = tmp_path / "ctcp.pcap"
        capture = subprocess.Popen(
            ["ip", "netns", "exec", env.ns_b, "tshark", "-n", "-i", f"{lab_prefix}b",
             "-f", f"tcp port {CISCO_PORT}", "-w", str(pcap)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            assert capture.stderr is not None
            deadline = time.monotonic() + 20
            while "Capturing on" not in capture.stderr.readline():
                assert time.monotonic() < deadline and capture.poll() is None, "tshark"
            time.sleep(1.0)  # dumpcap announces itself a moment before it captures
            server = (B_OUT, CISCO_PORT)
            with enter_netns(env.ns_a):
                connected = env.a.ctcp_connect(server)
            first = isakmp(4, b"vpnhub cTCP test: initiator")
            env.a.send_ike(first, server, transport=Transport.CTCP)
            local = connected.result(5)
            event = env.b.inbox.get(5)
            assert isinstance(event, IkeDatagram) and event.transport is Transport.CTCP
            assert event.message == first
            client = event.addr
            assert client[0] == R_OUT  # translated by the PAT
            assert local[0] == A_LAN
            env.b.send_ike(isakmp(4, b"vpnhub cTCP test: responder"), client,
                           transport=Transport.CTCP)
            reply = env.a.inbox.get(5)
            assert isinstance(reply, IkeDatagram) and reply.addr == server
            install(env, client, server, "ctcp")
            result = env.ping(count=3)
            assert result.returncode == 0, result.stdout + result.stderr
            time.sleep(0.5)
        finally:
            capture.send_signal(signal.SIGINT)
            try:
                capture.wait(10)
            except subprocess.TimeoutExpired:
                capture.kill()
                capture.wait(5)
        mbit = tcp_transfer(env, 8 << 20)
        print(f"TCP through IPsec over TCP: {mbit:.0f} Mbit/s")
        st = env.stats(env.b)
        conn = st["ctcp"]["connections"][0]  # type: ignore[index]
        assert conn["addr"] == client and conn["esp_rx"] > 1000 and conn["ike_rx"] == 1
        assert st["udp_rx"] == 0 and st["drops_total"] == {}

        decoded = subprocess.run(
            ["tshark", "-n", "-r", str(pcap), "-d", f"tcp.port=={CISCO_PORT},tcpencap",
             "-T", "fields", "-e", "frame.protocols", "-e", "tcpencap.proto",
             "-e", "isakmp.ispi", "-e", "esp.spi"],
            capture_output=True, text=True, timeout=60, check=True).stdout.splitlines()
        protocols = [line.split("\t")[0] for line in decoded]
        isakmp_rows = [line for line in decoded if line.split("\t")[0].endswith(
            "tcpencap:udp:isakmp")]
        esp_rows = [line for line in decoded if line.split("\t")[0].endswith("tcpencap:esp")]
        assert len(isakmp_rows) == 2, protocols
        assert first[:8].hex() in isakmp_rows[0]
        assert len(esp_rows) >= 6, protocols  # 3 echo requests and 3 replies
        assert any("0xa0000001" in row for row in esp_rows)
        assert any("0xb0000001" in row for row in esp_rows)


# -- fragmentation policy --------------------------------------------------------


@pytest.mark.usefixtures("tools")
@pytest.mark.parametrize("policy", ["before-encryption", "clear-df", "none"])
def test_fragment_dropping_router(lab_prefix: str, policy: str,
                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="vpnhub.net.dataplane")
    sockets = {"a": {"udp": lambda: open_udp_socket("0.0.0.0", 4500)},
               "b": {"udp": lambda: open_udp_socket(B_OUT, 4500)}}
    with lab(lab_prefix, filters="frags", tun_mtu=1500, sockets=sockets,
             frag_policy=policy) as env:
        install(env, (R_OUT, 4500), (B_OUT, 4500), "natt")
        env.follow_nat()
        env.ping(count=1)
        topology.wait_until(lambda: any(isinstance(e, PeerMoved) for e in env.events_b), 5,
                            what="PeerMoved on B")
        assert env.ping(count=2).returncode == 0  # small packets pass with every policy

        # In this order: once A's kernel has learnt the tunnel MTU from an ICMP
        # error, it fragments by itself and the data plane has nothing to do.
        dont = env.ping(size=1472, count=3, pmtu="dont")
        status, received = iperf3(env)
        do = env.ping(size=1472, count=2, pmtu="do")
        frag_a = env.stats(env.a)["frag"]
        dropped = env.nft_counter("frag-offset") + env.nft_counter("frag-mf")
        print(f"{policy}: iperf3 rc {status}, {received} bytes; frag A {frag_a};"
              f" router dropped {dropped} fragments")
        if policy == "none":
            assert dont.returncode != 0 and " 0 received" in dont.stdout, dont.stdout
            assert do.returncode != 0
            assert received < 1 << 20  # stalled: full-size segments never arrive
            assert dropped > 0
            assert frag_a["outer_oversize"] > 0  # type: ignore[index]
            warnings = [e for e in env.a.inbox.drain() if isinstance(e, OuterFragmentation)]
            assert warnings and warnings[0].message.startswith(
                "outer packet needs fragmentation; policy none")
            assert "outer packet needs fragmentation; policy none" in caplog.text
            return
        assert dont.returncode == 0, dont.stdout + dont.stderr  # reassembled by B's kernel
        assert status == 0 and received > 1 << 20, (status, received)
        assert dropped == 0
        assert frag_a["fragments_made"] >= 6  # type: ignore[index]
        assert env.stats(env.b)["frag"]["fragments_made"] >= 6  # type: ignore[index]
        if policy == "before-encryption":
            # DF set: the sender hears "fragmentation needed" with the tunnel MTU.
            assert "mtu = 1422" in do.stdout or "mtu=1422" in do.stdout + do.stderr, do
            assert frag_a["icmp_sent"] >= 1  # type: ignore[index]
        else:
            assert do.returncode == 0, do.stdout + do.stderr  # DF cleared and fragmented
            assert frag_a["df_cleared"] >= 2  # type: ignore[index]
        mbit = tcp_transfer(env, 4 << 20)
        print(f"TCP with {policy}: {mbit:.0f} Mbit/s")

