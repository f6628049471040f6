"""IKE on the cluster's virtual address (issue 17): its own UDP 500 and 4500 sockets.

The VRRP master holds the virtual address and answers IKE on it: a client with
Cisco Unity is redirected after phase 1 (the core's `_redirect_for`), one without
is served there. The sockets are opened on every member with IP_FREEBIND (Linux
ip(7): bind to an address that is not, or not yet, local), so a backup that becomes
master needs no restart: the kernel delivers to them only while the address is on
one of this host's interfaces.

A client behind a PAT must get its answers from the address it sent to, or the PAT
has no mapping for them; so an SA that began here (its `IkeConfig.local_address` is
the virtual address) sends from these sockets: UDP 500 as is, UDP 4500 after the
non-ESP marker (RFC 3948 2.2), each through a `SendQueue` like the member's own.

ESP in UDP of the clients served here (those that follow no redirect: strongSwan):
everything on 4500 that is not IKE (ESP, NAT keepalives) is handed to the data plane
(`hand_esp_to`, the data plane's or the worker pool's `hand_over`, bounded, by SPI
to the worker that owns it), which sends that peer's ESP and keepalives from this
same socket (transport "natt-virtual": the socket, or its fd in every worker, is
given to the data plane to send from). Why a hand-over and not sockets of the data
plane's own on this address: only the clients that follow no redirect land here,
so the crossing costs little, and the control plane's one socket keeps IKE and ESP
of the address in one place that needs no reuseport group or steering program.
Before `hand_esp_to` (no data plane) it is dropped and counted
(`not_ike_on_ike_socket`). Raw ESP (IP protocol 50, a client not behind a NAT) to
the virtual address is not carried: the raw socket is bound to the member's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import Any, Final

from vpnhub.ike.sa import Datagram, IkeSA
from vpnhub.ike.transport import Transport
from vpnhub.net.ikesplit import IKE_BUFFER_BYTES, IkeSocket
from vpnhub.net.sendqueue import SendQueue
from vpnhub.net.udpgso import batch_sender

Address = tuple[str, int]
# Receive(message, source, transport), the core's receive with virtual=True
Deliver = Callable[[bytes, Address, Transport], None]
IP_FREEBIND: Final = getattr(socket, "IP_FREEBIND", 15)  # linux/in.h
BUDGET: Final = 256  # datagrams per wake-up, as on the member's UDP 500


def open_freebind_udp(host: str, port: int, *,
                      buffer_bytes: int = IKE_BUFFER_BYTES) -> socket.socket:
    """A non-blocking UDP socket on `host`:`port`, bound even while `host` is not
    one of this host's addresses (IP_FREEBIND)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, opt, buffer_bytes)
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class VirtualListener:
    """The virtual address's IKE sockets, their readers and send queues."""

    def __init__(self, address: str, ike_port: int, natt_port: int, deliver: Deliver,
                 on_drops: Callable[[int, int], None], *,
                 on_error: Callable[[bytes, Address, Exception], None] | None = None
                 ) -> None:
        self.address = address
        self._deliver = deliver
        self._on_drops = on_drops
        self._on_error = on_error  # a message the kernel refused in a turn's flush
        self.ike_port, self.natt_port = ike_port, natt_port
        self.sock500 = open_freebind_udp(address, ike_port)
        try:
            natt = open_freebind_udp(address, natt_port)
        except OSError:
            self.sock500.close()
            raise
        self.ike4500 = IkeSocket(natt, lambda m, a: deliver(m, a, Transport.NATT))
        self.rx500 = 0
        self.out500: SendQueue | None = None
        self.out4500: SendQueue | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        loop.add_reader(self.sock500.fileno(), self._on_udp500)
        loop.add_reader(self.ike4500.fileno(), self.ike4500.read)
        # a turn's messages leave together, as from the member's own sockets
        self.out500 = SendQueue(loop, self.sock500.fileno(), self.sock500.sendto,
                                send_batch=batch_sender(self.sock500),
                                on_error=self._on_error,
                                on_drops=lambda n: self._on_drops(self.ike_port, n))
        self.out4500 = SendQueue(loop, self.ike4500.fileno(), self.ike4500.send,
                                 send_batch=self.ike4500.send_batch,
                                 on_error=self._on_error,
                                 on_drops=lambda n: self._on_drops(self.natt_port, n))

    def hand_esp_to(self, handover: Callable[[list[bytes], Address], None]) -> None:
        """Everything on 4500 that is not IKE goes to `handover` (the data plane)."""
        self.ike4500.handover = handover

    def owns(self, sa: IkeSA) -> bool:
        """The SA began on the virtual address: its answers leave from it."""
        return sa.config.local_address == self.address

    def send(self, d: Datagram) -> None:
        """One IKE message of such an SA, by its transport (no cTCP here)."""
        self.queue_for(d).send(d.data, d.remote)

    def queue_for(self, d: Datagram) -> SendQueue:
        """The send queue that `send` gives `d` to."""
        q = self.out4500 if d.transport is Transport.NATT else self.out500
        assert q is not None, "start() first"
        return q

    def queues(self) -> list[SendQueue]:
        return [q for q in (self.out500, self.out4500) if q is not None]

    def _on_udp500(self) -> None:
        for _ in range(BUDGET):
            try:
                data, addr = self.sock500.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            self.rx500 += 1
            self._deliver(data, (addr[0], addr[1]), Transport.IKE)

    def stats(self) -> dict[str, Any]:
        i = self.ike4500
        return {"address": self.address, "rx_500": self.rx500, "rx_4500": i.rx,
                "tx_4500": i.tx, "esp_handed_over": i.handed_over,
                "drops_4500": dict(i.drops)}

    def close(self) -> None:
        for q in self.queues():
            q.close()
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self.sock500.fileno())
                self._loop.remove_reader(self.ike4500.fileno())
        self.sock500.close()
        self.ike4500.close()
