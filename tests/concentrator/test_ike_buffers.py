"""The control plane's IKE sockets get 4 MiB buffers (issue 13, handshakes).

With the kernel's default receive buffer (net.core.rmem_default, 208 KiB) on
UDP 500, 128 handshakes in flight lost first messages: RcvbufErrors in
/proc/net/snmp rose by 66-144 per benchmark run, each loss a retransmission
timeout for that peer. With 1 MiB the IKE socket on UDP 4500 lost 61-475 of
the 6,000 DELETEs of 3,000 clients logging out at once (bench/handshake.py
--tunnels 3000; /proc/net/udp showed the drops on that socket), each an SA
left up until DPD. The kernel reports twice the value set (its own
bookkeeping, socket(7)); at least 4 MiB must be usable.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

import pytest

from vpnhub.concentrator.service import open_ike500
from vpnhub.net.dataplane import open_udp_socket
from vpnhub.net.ikesplit import IKE_BUFFER_BYTES, open_natt_group, open_natt_sockets
from vpnhub.net.udpencap import NON_ESP_MARKER


def _buffers(sock: socket.socket) -> tuple[int, int]:
    return (sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF))


def test_the_udp_500_socket_has_4_mib_buffers() -> None:
    assert IKE_BUFFER_BYTES == 4 << 20
    with open_ike500("127.0.0.1", 0) as sock:
        rcv, snd = _buffers(sock)
        assert rcv >= 4 << 20 and snd >= 4 << 20, (rcv, snd)
        assert not sock.getblocking()


@pytest.mark.skipif(os.geteuid() != 0, reason="SO_RCVBUFFORCE needs CAP_NET_ADMIN")
def test_as_root_the_buffers_are_not_capped_by_rmem_max() -> None:
    # 32 MiB: above this machine's net.core.rmem_max (4 MiB) and any usual one
    big = 32 << 20
    rmem_max = int(Path("/proc/sys/net/core/rmem_max").read_text())
    assert rmem_max < big, "rmem_max is at least 32 MiB: the test proves nothing"
    with open_udp_socket("127.0.0.1", 0, buffer_bytes=big) as sock:
        assert min(_buffers(sock)) >= big


def test_the_udp_4500_ike_socket_has_4_mib_buffers() -> None:
    esp, ike = open_natt_sockets("127.0.0.1", 0)
    try:
        assert ike is not None, "this kernel refused SO_ATTACH_REUSEPORT_CBPF"
        rcv, snd = _buffers(ike)
        assert rcv >= 4 << 20 and snd >= 4 << 20, (rcv, snd)
    finally:
        esp.close()
        if ike is not None:
            ike.close()


# An Informational DELETE as a client sends it on 4500: the marker, the ISAKMP
# header (28), then HASH and DELETE encrypted, padded to the 3DES/AES block.
_DELETE = NON_ESP_MARKER + bytes(28 + 64)
_LOGOUT_STORM = 6000  # 3,000 clients, a DELETE for the IPsec SA and one for IKE


@pytest.mark.skipif(os.geteuid() != 0, reason="SO_RCVBUFFORCE needs CAP_NET_ADMIN")
@pytest.mark.parametrize("workers", [1, 2])
def test_the_ike_socket_on_4500_holds_a_logout_storm_while_the_loop_is_busy(
        workers: int) -> None:
    # The worker processes' group (workers > 1) is what `vpnhub serve` opens by
    # default; it had its own 1 MiB default for the IKE socket.
    group = open_natt_group("127.0.0.1", 0, workers)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        ike = group.ike
        assert ike is not None, "this kernel refused SO_ATTACH_REUSEPORT_CBPF"
        to = ike.getsockname()
        for _ in range(_LOGOUT_STORM):  # nobody reads meanwhile: the loop is busy
            sender.sendto(_DELETE, to)
        held = 0
        with contextlib.suppress(BlockingIOError):
            while True:
                assert ike.recv(2048) == _DELETE
                held += 1
        assert held == _LOGOUT_STORM
    finally:
        sender.close()
        group.close()
