"""TUN device: the in-memory fake everywhere, the real one in a namespace as root."""

from __future__ import annotations

import os
import select
import subprocess

import pytest

from vpnhub.net.tun import FakeTun, TunDevice, ip


def test_fake_tun_packets_keep_boundaries() -> None:
    tun = FakeTun()
    try:
        tun.inject(b"\x45" + bytes(27))
        tun.inject(b"\x45" + bytes(1399))
        assert tun.read() == b"\x45" + bytes(27)
        assert len(tun.read()) == 1400
        with pytest.raises(BlockingIOError):
            tun.read()
        tun.write(b"abc")
        tun.write(b"defg")
        assert tun.sent() == [b"abc", b"defg"]
        assert tun.sent() == []
        # Pollable like the real device.
        ep = select.epoll()
        ep.register(tun.fileno(), select.EPOLLIN)
        assert ep.poll(0) == []
        tun.inject(b"x")
        assert ep.poll(0) == [(tun.fileno(), select.EPOLLIN)]
        ep.close()
    finally:
        tun.close()


def _icmp_echo(src: bytes, dst: bytes) -> bytes:
    def csum(data: bytes) -> int:
        total = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
        while total >> 16:
            total = (total & 0xFFFF) + (total >> 16)
        return ~total & 0xFFFF

    icmp = bytearray(b"\x08\x00\x00\x00\x12\x34\x00\x01" + b"vpnhub!!")
    icmp[2:4] = csum(bytes(icmp)).to_bytes(2, "big")
    header = bytearray(b"\x45\x00" + (20 + len(icmp)).to_bytes(2, "big") +
                       b"\x00\x01\x00\x00\x40\x01\x00\x00" + src + dst)
    header[10:12] = csum(bytes(header)).to_bytes(2, "big")
    return bytes(header + icmp)


def _read_ipv4(tun: TunDevice, timeout: float = 2.0) -> bytes:
    """Next IPv4 packet from the TUN (skipping e.g. IPv6 router solicitations)."""
    ep = select.epoll()
    ep.register(tun.fileno(), select.EPOLLIN)
    try:
        while ep.poll(timeout):
            packet = tun.read()
            if packet[0] >> 4 == 4:
                return packet
        raise AssertionError("no IPv4 packet from the TUN")
    finally:
        ep.close()


@pytest.mark.netns  # skipped by tests/conftest.py when not root
def test_real_tun_in_namespace() -> None:
    ns = f"vhesp-t-{os.getpid()}"
    ip("netns", "add", ns)
    try:
        with TunDevice("vhtun%d", netns=ns) as tun:
            assert tun.name.startswith("vhtun")
            tun.configure("10.99.9.1/24", mtu=1400)
            out = ip("-o", "link", "show", "dev", tun.name, netns=ns)
            assert "mtu 1400" in out
            # The kernel answers an echo request written into the TUN...
            tun.write(_icmp_echo(bytes([10, 99, 9, 2]), bytes([10, 99, 9, 1])))
            reply = _read_ipv4(tun)
            assert reply[9] == 1  # ICMP
            assert reply[12:16] == bytes([10, 99, 9, 1]) and reply[20] == 0  # echo reply
            # ... and packets routed to it come out of the fd (no PI header).
            subprocess.run(["ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "0.2",
                            "10.99.9.7"], capture_output=True, check=False)
            packet = _read_ipv4(tun)
            assert packet[16:20] == bytes([10, 99, 9, 7])
    finally:
        ip("netns", "del", ns)


@pytest.mark.netns
def test_multi_queue_tun() -> None:
    """IFF_MULTI_QUEUE: several fds on one interface, one per future worker."""
    ns = f"vhesp-q-{os.getpid()}"
    ip("netns", "add", ns)
    try:
        first = TunDevice("vhmq0", multi_queue=True, netns=ns)
        second = first.add_queue()
        try:
            assert second.name == first.name == "vhmq0"
            assert second.fileno() != first.fileno()
            first.configure("10.99.8.1/24")
            out = ip("-d", "link", "show", "dev", "vhmq0", netns=ns)
            assert "multi_queue" in out
        finally:
            second.close()
            first.close()
        with TunDevice("vhsq0", netns=ns) as single, pytest.raises(ValueError):
            single.add_queue()
    finally:
        ip("netns", "del", ns)
