"""A Quick Mode's inbound SA is on its worker's link before the message that lets the
peer use it leaves, and a reader's turn hands its SAs over as one message per worker.

The pool is a real ``WorkerPool`` whose links end in this process (the worker's ends
are read here); the IKE socket records, for each datagram it sends, what the workers'
links held at that moment. RFC 2409 5.5: the peer may send ESP on the SA as soon as
it read our message 2, so the SA must already be waiting for the worker then.
"""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from core_harness import SHELL_CONFIG

from vpnhub.concentrator.service import Concentrator
from vpnhub.config import parse_config
from vpnhub.esp import ESP_AES_CBC, HMAC_SHA1_96, SaParams, key_lengths
from vpnhub.eventlog import EventLog
from vpnhub.ike.sa import Datagram
from vpnhub.ike.transport import Transport
from vpnhub.net.messages import AddInbound, Address
from vpnhub.net.workerlink import Batch, Link, link_pair
from vpnhub.net.workers import WorkerFds, WorkerPool

PEERS = [("198.51.100.7", 500), ("198.51.100.8", 500), ("198.51.100.9", 500)]


def params(spi: int) -> SaParams:
    enc, integ = key_lengths(ESP_AES_CBC, 128, HMAC_SHA1_96)
    return SaParams.from_keymat(spi, ESP_AES_CBC, 128, HMAC_SHA1_96, os.urandom(enc + integ))


class Rig:
    """A concentrator whose pool's two workers are the ends of links read here."""

    def __init__(self, tmp_path: Path) -> None:
        self.out = io.StringIO()
        self.conc = Concentrator(parse_config(SHELL_CONFIG.format(sock=tmp_path / "a.sock")),
                                 EventLog(out=self.out))
        self.pool = WorkerPool([WorkerFds(tun=-1), WorkerFds(tun=-1)])
        self.workers: list[Link] = []  # the workers' ends
        # per datagram sent: (its data, the SPIs installed on each link by then)
        self.sent: list[tuple[bytes, list[list[int]]]] = []
        self.installed: list[list[int]] = [[], []]
        self.fail: set[bytes] = set()  # datagrams whose sendto raises (no route)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.pool._loop = loop
        for w in self.pool.workers:
            parent, child = link_pair()
            w.link = Link(parent)
            self.workers.append(Link(child))
        self.conc.pool = self.pool
        self.conc.sock500 = self  # type: ignore[assignment]
        self.conc._open_send_queues(loop)

    def fileno(self) -> int:
        return 0  # never watched: the send buffer is never full here

    def sendto(self, data: bytes, addr: Address) -> int:
        self.read_links()
        if data in self.fail:
            raise OSError(101, "Network is unreachable")
        self.sent.append((data, [list(spis) for spis in self.installed]))
        return len(data)

    def read_links(self) -> None:
        for k, link in enumerate(self.workers):
            for m in link.receive():
                for cmd in m.commands if isinstance(m, Batch) else (m,):
                    if isinstance(cmd, AddInbound):
                        self.installed[k].append(cmd.sa.spi)

    def run(self, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
        async def closing() -> None:
            try:
                await main()
            finally:  # in the loop: the pool stops watching its links
                for link in self.workers:
                    link.close()
                self.pool.close()

        asyncio.run(closing())


def message(text: str, peer: Address) -> Datagram:
    return Datagram(text.encode(), peer, 500, Transport.IKE)


def test_a_turns_inbound_sas_go_as_one_message_per_worker_before_its_replies(
        tmp_path: Path) -> None:
    rig = Rig(tmp_path)

    async def main() -> None:
        rig.start(asyncio.get_running_loop())
        sa = object()  # no virtual address: nothing asks what it is
        with rig.conc._turn():  # one turn of a reader: three Quick Modes' message 1
            for n, peer in enumerate(PEERS):
                rig.pool.add_inbound(params(0x1000 + n), peer)  # ChildSAInboundReady
                rig.conc._send_for(sa, message(f"message 2 to {n}", peer))  # type: ignore[arg-type]
            assert rig.sent == []  # they wait for the turn's end
        await asyncio.sleep(0)  # and then for the send queue's flush (net/sendqueue.py)
        # every message 2 left after all the SAs were on the links, in their order
        every = [[0x1000, 0x1002], [0x1001]]  # the peers alternate between the workers
        assert rig.sent == [(f"message 2 to {n}".encode(), every) for n in range(3)]
        # one message (one wake-up) per worker for the turn, not one per tunnel
        assert [w.link.sent for w in rig.pool.workers] == [1, 1]  # type: ignore[union-attr]

    rig.run(main)


def test_messages_before_the_first_install_leave_at_once(tmp_path: Path) -> None:
    """Only from the first message that needs an SA handed over on do they wait (the
    others go to the send queue at once, which sends the turn's messages together)."""
    rig = Rig(tmp_path)

    async def main() -> None:
        rig.start(asyncio.get_running_loop())
        sa = object()
        out = rig.conc.out500
        assert out is not None
        with rig.conc._turn():
            rig.conc._send_for(sa, message("XAUTH request", PEERS[0]))  # type: ignore[arg-type]
            assert rig.conc._held == [] and len(out) == 1
            rig.pool.add_inbound(params(0x2000), PEERS[1])
            rig.conc._send_for(sa, message("message 2", PEERS[1]))  # type: ignore[arg-type]
            rig.conc._send_for(sa, message("XAUTH set", PEERS[0]))  # type: ignore[arg-type]
            assert len(rig.conc._held) == 2 and len(out) == 1
        assert len(out) == 3 and rig.sent == []
        await asyncio.sleep(0)  # the send queue's flush
        assert rig.sent == [(b"XAUTH request", [[0x2000], []]), (b"message 2", [[0x2000], []]),
                            (b"XAUTH set", [[0x2000], []])]

    rig.run(main)


def test_outside_a_turn_the_sa_is_handed_over_before_the_message(tmp_path: Path) -> None:
    """A Quick Mode answered outside a reader's turn (after a DH job, a timer): the SA
    goes on its link at once, then the message."""
    rig = Rig(tmp_path)

    async def main() -> None:
        rig.start(asyncio.get_running_loop())
        rig.pool.add_inbound(params(0x3000), PEERS[0])
        rig.conc._send_for(object(), message("message 2", PEERS[0]))  # type: ignore[arg-type]
        await asyncio.sleep(0)  # the send queue's flush
        assert rig.sent == [(b"message 2", [[0x3000], []])]

    rig.run(main)


def test_an_action_after_a_held_message_runs_once_it_left(tmp_path: Path) -> None:
    """Issue 16: our outbound SA of a Quick Mode we initiated goes to the data plane
    only once our message 3 left; held by the turn, that is at the turn's end. A held
    message that cannot be sent is logged as the driver logs it; the others go."""
    rig = Rig(tmp_path)
    order: list[str] = []

    async def main() -> None:
        rig.start(asyncio.get_running_loop())
        sa = object()
        rig.fail.add(b"message 2")
        with rig.conc._turn():
            rig.pool.add_inbound(params(0x4000), PEERS[0])
            rig.conc._send_for(sa, message("message 2", PEERS[0]))  # type: ignore[arg-type]
            m3 = message("message 3", PEERS[1])
            rig.conc._send_for(sa, m3)  # type: ignore[arg-type]
            rig.conc._when_sent(sa, m3, lambda: order.append(  # type: ignore[arg-type]
                f"outbound SA after {len(rig.sent)} sent"))
            assert order == []
        assert order == []  # message 3 is in the send queue: it leaves with the flush
        await asyncio.sleep(0)
        assert order == ["outbound SA after 1 sent"]
        assert [d for d, _ in rig.sent] == [b"message 3"]

    rig.run(main)
    assert "Network is unreachable" in rig.out.getvalue()
