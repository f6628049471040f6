"""UDP 4500 and the Cisco IPsec-over-UDP port shared by N data-plane workers (issue 16).

Real sockets on 127.0.0.1: the kernel runs the group's classic BPF program on
every datagram, and each one must land on the socket the program names:
ESP on worker SPI mod N, IKE (after the non-ESP marker, RFC 3948 2.2) on the
control plane's socket, the one-byte NAT keepalive (RFC 3948 2.3) on the
keepalive socket. A hash spread would put some of 20 datagrams per class on
the wrong socket, so every count below is exact.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Iterator

import pytest

from vpnhub.esp.spi import spi_for_worker
from vpnhub.net.ikesplit import NattGroup, open_cisco_udp_group, open_natt_group
from vpnhub.net.udpencap import NON_ESP_MARKER

IKE_MSG = bytes(range(8)) * 2 + bytes(12) + b"payload"
PER_CLASS = 20


def _esp(spi: int, seq: int) -> bytes:
    return spi.to_bytes(4, "big") + seq.to_bytes(4, "big") + b"ciphertext"


def _recv_all(sock: socket.socket) -> list[bytes]:
    out = []
    while select.select([sock], [], [], 0.2)[0]:
        out.append(sock.recv(65535))
    return out


@pytest.fixture
def peer() -> Iterator[socket.socket]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    yield s
    s.close()


def _group(workers: int) -> NattGroup:
    group = open_natt_group("127.0.0.1", 0, workers)
    if group.ike is None:
        group.close()
        pytest.fail("this kernel refused the workers' reuseport program")
    return group


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_each_datagram_lands_on_the_socket_of_its_class_and_worker(
        workers: int, peer: socket.socket) -> None:
    group = _group(workers)
    try:
        assert len(group.esp) == workers and group.keepalive is not None
        port = group.esp[0].getsockname()
        assert all(s.getsockname() == port for s in (*group.esp, group.ike, group.keepalive))
        spis = {k: [spi_for_worker(k, workers) for _ in range(PER_CLASS)]
                for k in range(workers)}
        for k in range(workers):
            for i, spi in enumerate(spis[k]):
                peer.sendto(_esp(spi, i), port)
        for i in range(PER_CLASS):
            peer.sendto(NON_ESP_MARKER + IKE_MSG + bytes([i]), port)
            peer.sendto(b"\xff", port)
        for k in range(workers):
            got = _recv_all(group.esp[k])
            assert sorted(got) == sorted(_esp(spi, i) for i, spi in enumerate(spis[k])), k
        to_ike = _recv_all(group.ike)
        assert len(to_ike) == PER_CLASS and all(d.startswith(NON_ESP_MARKER) for d in to_ike)
        assert _recv_all(group.keepalive) == [b"\xff"] * PER_CLASS
    finally:
        group.close()


@pytest.mark.parametrize("workers", [2, 3])
def test_runts_and_near_keepalives_go_to_worker_0(workers: int, peer: socket.socket) -> None:
    """Shorter than four bytes and not a keepalive: the program's load fails and it
    returns 0, as with one worker (the data plane counts and drops them)."""
    group = _group(workers)
    try:
        port = group.esp[0].getsockname()
        for runt in (b"\xfe", b"\xff\xff", b"\x00\x00", b"\x01\x02\x03"):
            peer.sendto(runt, port)
        assert sorted(_recv_all(group.esp[0])) == sorted(
            [b"\xfe", b"\xff\xff", b"\x00\x00", b"\x01\x02\x03"])
        assert not any(_recv_all(s) for s in (*group.esp[1:], group.ike, group.keepalive))
    finally:
        group.close()


def test_a_refused_program_leaves_one_socket_that_gets_everything(
        monkeypatch: pytest.MonkeyPatch, peer: socket.socket) -> None:
    def refused(_sock: socket.socket, _program: object = None) -> None:
        raise OSError(92, "Protocol not available")

    monkeypatch.setattr("vpnhub.net.ikesplit._attach_split", refused)
    group = open_natt_group("127.0.0.1", 0, 3)
    try:
        assert len(group.esp) == 1 and group.ike is None and group.keepalive is None
        port = group.esp[0].getsockname()
        peer.sendto(NON_ESP_MARKER + IKE_MSG, port)
        peer.sendto(_esp(spi_for_worker(2, 3), 1), port)
        peer.sendto(b"\xff", port)
        assert len(_recv_all(group.esp[0])) == 3
    finally:
        group.close()


def test_only_the_final_program_refused_closes_the_others(
        monkeypatch: pytest.MonkeyPatch, peer: socket.socket) -> None:
    """An old kernel without BPF_MOD refuses the last program, not the first: the
    sockets that joined are closed and the first gets everything."""
    import vpnhub.net.ikesplit as ikesplit

    real = ikesplit._attach_split

    def no_mod(sock: socket.socket, program: tuple[tuple[int, int, int, int], ...]
               = ikesplit._PROGRAM) -> None:
        if any(ins[0] == 0x94 for ins in program):
            raise OSError(22, "Invalid argument")
        real(sock, program)

    monkeypatch.setattr(ikesplit, "_attach_split", no_mod)
    group = open_natt_group("127.0.0.1", 0, 2)
    try:
        assert len(group.esp) == 1 and group.ike is None
        port = group.esp[0].getsockname()
        for i in range(PER_CLASS):
            peer.sendto(NON_ESP_MARKER + IKE_MSG, port)
            peer.sendto(_esp(spi_for_worker(1, 2), i), port)
        assert len(_recv_all(group.esp[0])) == 2 * PER_CLASS
    finally:
        group.close()


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_cisco_udp_esp_lands_on_worker_spi_mod_n(workers: int, peer: socket.socket) -> None:
    socks = open_cisco_udp_group("127.0.0.1", 0, workers)
    try:
        assert len(socks) == workers, "this kernel refused the Cisco UDP program"
        port = socks[0].getsockname()
        spis = {k: [spi_for_worker(k, workers) for _ in range(PER_CLASS)]
                for k in range(workers)}
        for k in range(workers):
            for i, spi in enumerate(spis[k]):
                peer.sendto(_esp(spi, i), port)
        keepalive = bytes(4) + b"\xff"  # vpnc's in cisco-udp mode: "SPI" 0
        peer.sendto(keepalive, port)
        peer.sendto(b"\x01\x02", port)  # too short for an SPI: worker 0
        for k in range(workers):
            want = [_esp(spi, i) for i, spi in enumerate(spis[k])]
            if k == 0:
                want += [keepalive, b"\x01\x02"]
            assert sorted(_recv_all(socks[k])) == sorted(want), k
    finally:
        for s in socks:
            s.close()


def test_one_worker_runs_the_issue_13_programs_unchanged() -> None:
    import vpnhub.net.ikesplit as ikesplit

    assert ikesplit.natt_program(1, keepalive=False) == ikesplit._PROGRAM
    assert ikesplit.natt_program(1) == ikesplit._PROGRAM_KEEPALIVE
