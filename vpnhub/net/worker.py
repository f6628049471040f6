"""A data-plane worker process: ``python -m vpnhub.net.worker '<spec JSON>'``.

Started by :class:`vpnhub.net.workers.WorkerPool` with its file descriptors
inherited (``pass_fds``): its queue of the multi-queue TUN, its ESP socket on 4500
and on the Cisco UDP port (the kernel gives it the ESP of the SPIs it owns,
net/ikesplit.py), its control link (net/workerlink.py), its hand-over sockets to
the other workers (net/handover.py); worker 0 also the raw ESP socket, the cTCP
listeners and the NAT keepalive socket; with [cluster], every worker the UDP 4500
socket of the virtual address, to send the ESP of clients served there from it
("natt-virtual", issue 17; the control plane reads it).  It runs today's ``Dataplane`` on them, in
its main thread, with no IKE socket: IKE it sees (cTCP, or UDP 4500 when the
kernel cannot split it off) goes to the parent as ``IkeDatagram`` events.

It dies with the concentrator (``PR_SET_PDEATHSIG``, set by the parent) and when
its link closes.
"""

from __future__ import annotations

import faulthandler
import json
import os
import signal
import socket
import sys
from dataclasses import dataclass, field
from typing import Any

from vpnhub.net.dataplane import ControlInbox, Dataplane
from vpnhub.net.handover import Handover
from vpnhub.net.messages import Command, GetCounters, GetStats
from vpnhub.net.tunoffload import READ_SIZE
from vpnhub.net.workerlink import (
    Batch,
    DropForeignRoute,
    HandOver,
    Link,
    LinkClosed,
    LinkFull,
    Reply,
    Request,
    SendIke,
    SetDebug,
    SetForeignRoute,
    WorkerError,
)

INBOX: int = 4096


@dataclass
class WorkerSpec:
    """What a worker is given: its index and the numbers of its inherited fds."""

    index: int
    workers: int
    link: int
    tun: int
    udp: int | None = None
    cisco_udp: int | None = None
    esp: int | None = None
    keepalive: int | None = None
    ctcp: list[int] = field(default_factory=list)
    mesh: dict[int, int] = field(default_factory=dict)  # other worker -> fd
    frag_policy: str = "none"
    outer_mtu: int = 1500
    debug_severity: int = 0
    vnet_hdr: bool = False  # the TUN queue carries a virtio_net_hdr (net/tunoffload.py)
    udp_virtual: int | None = None  # UDP 4500 on the cluster's virtual address, send only
    moderation: float = 0.0  # Dataplane(moderation=): seconds, 0 for none

    def fds(self) -> list[int]:
        single = (self.link, self.tun, self.udp, self.cisco_udp, self.esp, self.keepalive,
                  self.udp_virtual)
        return [fd for fd in single if fd is not None] + self.ctcp + list(self.mesh.values())

    def to_json(self) -> str:
        d: dict[str, Any] = dict(self.__dict__)
        d["mesh"] = {str(k): v for k, v in self.mesh.items()}
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str) -> WorkerSpec:
        d = json.loads(text)
        d["mesh"] = {int(k): v for k, v in d["mesh"].items()}
        return cls(**d)


class FdDevice:
    """The worker's TUN queue, from its inherited fd (a ``PacketDevice``)."""

    def __init__(self, fd: int, name: str = "tun-queue", vnet_hdr: bool = False) -> None:
        self.fd = fd
        self.name = name
        self.vnet_hdr = vnet_hdr

    def fileno(self) -> int:
        return self.fd

    def read(self) -> bytes:
        return os.read(self.fd, READ_SIZE)

    def write(self, packet: bytes) -> int:
        return os.write(self.fd, packet)

    def close(self) -> None:
        os.close(self.fd)


def _sock(fd: int | None) -> socket.socket | None:
    return None if fd is None else socket.socket(fileno=fd)


class Worker:
    """The loop of one worker: a ``Dataplane`` plus its link and hand-over sockets."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.link = Link(socket.socket(fileno=spec.link))
        self.events_dropped = 0
        inbox = ControlInbox(maxlen=INBOX, notify=self._flush)
        self.inbox = inbox
        self.dp = Dataplane(
            FdDevice(spec.tun, vnet_hdr=spec.vnet_hdr), udp=_sock(spec.udp),
            esp=_sock(spec.esp), inbox=inbox,
            cisco_udp=_sock(spec.cisco_udp),
            ctcp_listeners=[socket.socket(fileno=fd) for fd in spec.ctcp],
            frag_policy=spec.frag_policy, outer_mtu=spec.outer_mtu,
            keepalive_sock=_sock(spec.keepalive), udp_virtual=_sock(spec.udp_virtual),
            moderation=spec.moderation)
        self.dp.debug_severity = spec.debug_severity
        peers = {j: socket.socket(fileno=fd) for j, fd in spec.mesh.items()}
        self.handover = Handover(peers, self.dp.encrypt_inner)
        self.dp.no_route = self.handover.take
        for sock in peers.values():
            self.dp.add_reader(sock.fileno(), self.handover.reader(sock))
        self.dp.add_reader(self.link.fileno(), self._on_link)
        # An unknown SPI first reads the link: the AddInbound of a rekey may be waiting
        # there, behind the peer's first ESP packet in this wake-up (Dataplane._late_inbound)
        self.dp.late_commands = self._read_link

    def run(self) -> None:
        self.dp.run()

    # -- events to the parent ---------------------------------------------------

    def _flush(self) -> None:
        """The inbox's notify (in this loop's thread): its events go to the parent now."""
        for event in self.inbox.drain():
            self._send(event)

    def _send(self, obj: object) -> None:
        try:
            self.link.send(obj)
        except LinkFull:  # the parent is behind: drop, as a full ControlInbox does
            self.events_dropped += 1
        except LinkClosed as e:
            self._end(f"sending an event: {e!r} {e.__cause__!r}")

    def _end(self, why: str) -> None:
        """The parent is gone (or no longer reads us): stop; it restarts a worker."""
        print(f"vpnhub data-plane worker {self.spec.index}: link closed ({why}), ending",
              file=sys.stderr, flush=True)
        self.dp.stop()

    # -- commands from the parent ----------------------------------------------

    def _on_link(self, now: float) -> None:
        self._read_link()

    def _read_link(self) -> None:
        """Apply every command waiting on the link (non-blocking: none may wait)."""
        try:
            messages = self.link.receive()
        except LinkClosed as e:  # the concentrator is gone
            self._end(f"reading: {e.__cause__!r}")
            return
        for message in messages:
            for one in message.commands if isinstance(message, Batch) else (message,):
                self._apply(one)

    def _apply(self, message: object) -> None:
        try:
            if isinstance(message, Request):
                self._answer(message)
            elif isinstance(message, SendIke):
                self.dp.send_ike(message.message, message.addr, message.transport)
            elif isinstance(message, HandOver):
                self.dp.hand_over(message.datagrams, message.addr)
            elif isinstance(message, SetForeignRoute):
                self.handover.set_route(message.dst, message.worker)
            elif isinstance(message, DropForeignRoute):
                self.handover.drop_route(message.dst)
            elif isinstance(message, SetDebug):
                self.dp.debug_severity = message.severity
            else:
                self.dp.call(_command(message))  # in the loop's thread: applied at once
        except Exception as e:  # one bad command must not end the worker
            self._send(WorkerError(f"worker {self.spec.index}: {message!r}: {e}"))

    def _answer(self, request: Request) -> None:
        seqs = None
        cmd = request.command
        # with the per-SA answers only: the totals-only one (every 2 s) stays O(1)
        if isinstance(cmd, GetStats) or (isinstance(cmd, GetCounters) and cmd.sas):
            seqs = self.dp.sequence_numbers()
        try:
            result = self.dp.call(_command(request.command))
            reply = Reply(request.id, result, seqs=seqs, figures=self.figures())
        except Exception as e:
            reply = Reply(request.id, error=f"{type(e).__name__}: {e}")
        try:
            self.link.send(reply, wait=True)  # the parent awaits it: never dropped
        except LinkClosed as e:
            self._end(f"answering: {e.__cause__!r}")

    def figures(self) -> dict[str, int]:
        return {**self.handover.figures(), "events_dropped": self.events_dropped,
                "control_dropped": self.inbox.dropped}


def _command(message: object) -> Command:
    return message  # type: ignore[return-value]  # pickled by the pool from a Command


def main(argv: list[str]) -> int:
    spec = WorkerSpec.from_json(argv[1])
    # Ctrl-C reaches the whole process group: the concentrator decides when we end.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    faulthandler.enable()  # a crash in C says where, in the concentrator's log
    Worker(spec).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
