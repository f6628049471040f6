"""LAN-side hand-over between data-plane workers.

With several workers each reads its own queue of an ``IFF_MULTI_QUEUE`` TUN.  The
kernel picks the queue a packet from the LAN is read on by flow: a flow whose
first packet was written to the TUN by worker k (the client spoke first) comes
back on k's queue (drivers/net/tun.c, ``tun_flow_update`` on write and
``tun_automq_select_queue`` on transmit), but a flow the LAN host starts lands on
the queue its hash picks, usually not the worker that owns the client's SA.

So every worker knows, for each client inner address, which worker owns it (its
"foreign routes", installed by the pool as the owner's outbound SAs come and go),
and a packet it has no SA for but a foreign route is passed, raw, to the owner
over an ``AF_UNIX`` ``SOCK_DGRAM`` socketpair (one per pair of workers, made by the
parent), which encrypts it as if it had read it.  A full peer socket drops the
packet (counted ``handover_dropped``): the data path never blocks.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Callable
from typing import Final

MAX_PACKET: Final = 65535
MESH_BUFFER: Final = 2 << 20
BUDGET: Final = 256  # packets read from one peer per wake-up (as Dataplane.budget)


def mesh(n: int) -> list[dict[int, socket.socket]]:
    """For each of ``n`` workers, its socket to each other worker (by index)."""
    out: list[dict[int, socket.socket]] = [{} for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
            for s in (a, b):
                s.setblocking(False)
                with contextlib.suppress(OSError):
                    s.setsockopt(socket.SOL_SOCKET, 32, MESH_BUFFER)  # SO_SNDBUFFORCE
            out[i][j], out[j][i] = a, b
    return out


class Handover:
    """One worker's side: its foreign routes and its sockets to the other workers.

    ``encrypt(packet, now)``: the worker's ``Dataplane.encrypt_inner``.
    """

    def __init__(self, peers: dict[int, socket.socket],
                 encrypt: Callable[[bytes, float], bool]) -> None:
        self.peers = peers
        self.encrypt = encrypt
        self._exact: dict[bytes, int] = {}
        self._prefixes: list[tuple[int, int, int, str]] = []  # net, mask, worker, dst
        self.handed_over = 0
        self.handed_in = 0
        self.handover_dropped = 0

    def set_route(self, dst: str, worker: int) -> None:
        net = ipaddress.IPv4Network(dst)
        if net.prefixlen == 32:
            self._exact[net.network_address.packed] = worker
            return
        rest = [p for p in self._prefixes if p[3] != str(net)]
        rest.append((int(net.network_address), int(net.netmask), worker, str(net)))
        rest.sort(key=lambda p: -p[1])  # longest prefix first
        self._prefixes = rest

    def drop_route(self, dst: str) -> None:
        net = ipaddress.IPv4Network(dst)
        if net.prefixlen == 32:
            self._exact.pop(net.network_address.packed, None)
        else:
            self._prefixes = [p for p in self._prefixes if p[3] != str(net)]

    def owner(self, packet: bytes) -> int | None:
        worker = self._exact.get(packet[16:20])
        if worker is not None or not self._prefixes:
            return worker
        dst = int.from_bytes(packet[16:20], "big")
        return next((p[2] for p in self._prefixes if dst & p[1] == p[0]), None)

    def take(self, packet: bytes) -> bool:
        """The ``Dataplane.no_route`` hook: pass ``packet`` to its owner, if another."""
        worker = self.owner(packet)
        sock = self.peers.get(worker) if worker is not None else None
        if sock is None:
            return False
        try:
            sock.send(packet)
            self.handed_over += 1
        except OSError:  # BlockingIOError: the owner is behind; never wait for it
            self.handover_dropped += 1
        return True

    def reader(self, sock: socket.socket) -> Callable[[float], None]:
        """The handler for the socket from one other worker."""
        def read(now: float) -> None:
            for _ in range(BUDGET):
                try:
                    packet = sock.recv(MAX_PACKET)
                except OSError:  # BlockingIOError: drained
                    return
                self.handed_in += 1
                self.encrypt(packet, now)  # no foreign route here: never handed on again
        return read

    def figures(self) -> dict[str, int]:
        return {"handed_over": self.handed_over, "handed_in": self.handed_in,
                "handover_dropped": self.handover_dropped}
