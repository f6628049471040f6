"""An IKE reply that meets a full socket send buffer is queued, not lost (issue 11, 7a).

The "socket" is one end of a unix datagram socketpair whose other end does
not read: the kernel answers EAGAIN exactly as it does for a UDP socket whose
send buffer is full. Once the reader drains it, the socket is writable again
and the queued reply must go out; what does not fit the bounded queue is
dropped, counted (`vpnhub`'s "stats" command) and logged once, not per packet.
"""

from __future__ import annotations

import asyncio
import io
import socket
from pathlib import Path

from core_harness import SHELL_CONFIG
from socket_fakes import FullSocket

from vpnhub.concentrator.service import Concentrator
from vpnhub.config import parse_config
from vpnhub.eventlog import EventLog
from vpnhub.ike.sa import Datagram
from vpnhub.ike.transport import Transport
from vpnhub.net.sendqueue import MAX_QUEUED, SendQueue

PEER = ("198.51.100.7", 500)


def fill(end: socket.socket) -> int:
    """Send until the kernel says EAGAIN; returns how many datagrams fitted."""
    n = 0
    while True:
        try:
            end.send(b"f" * 1024)
        except BlockingIOError:
            return n
        n += 1


def drain(end: socket.socket) -> list[bytes]:
    got = []
    while True:
        try:
            got.append(end.recv(65536))
        except BlockingIOError:
            return got


def test_reply_waits_for_a_full_send_buffer_and_goes_out(tmp_path: Path) -> None:
    out = io.StringIO()
    conc = Concentrator(parse_config(SHELL_CONFIG.format(sock=tmp_path / "a.sock")),
                        EventLog(out=out))
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    for s in (ours, peer):
        s.setblocking(False)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)

    async def main() -> tuple[list[bytes], dict[str, object], dict[str, object]]:
        conc.sock500 = FullSocket(ours)  # type: ignore[assignment]
        # (getattr: so that the same test shows the loss on the code before the queue)
        getattr(conc, "_open_send_queues", lambda _loop: None)(asyncio.get_running_loop())
        filler = fill(ours)
        assert filler > 0
        for i in range(MAX_QUEUED + 5):  # what the core sends, by transport
            conc._send(Datagram(b"IKE reply %d" % i, PEER, 500, Transport.IKE))
        await asyncio.sleep(0)  # the turn ends: its flush (one sendmmsg) meets the full buffer
        before = (await conc.admin_command({"cmd": "stats"})).get("ike_send")
        got: list[bytes] = []
        for _ in range(200):  # the peer reads; the queue empties as the socket drains
            got += drain(peer)
            await asyncio.sleep(0.005)
            if sum(1 for g in got if g.startswith(b"IKE reply")) >= MAX_QUEUED:
                break
        after = (await conc.admin_command({"cmd": "stats"})).get("ike_send")
        return got, before, after  # type: ignore[return-value]

    try:
        got, before, after = asyncio.run(main())
    finally:
        ours.close()
        peer.close()
    replies = [g for g in got if g.startswith(b"IKE reply")]
    assert replies, out.getvalue()[-500:]
    # the first MAX_QUEUED replies went out, in order; the 5 beyond the bound were dropped
    assert replies == [b"IKE reply %d" % i for i in range(MAX_QUEUED)], replies[:3]
    assert before == {"queued": MAX_QUEUED, "sent_late": 0, "dropped": 5,
                      "waiting": MAX_QUEUED}, before
    assert after == {"queued": MAX_QUEUED, "sent_late": MAX_QUEUED, "dropped": 5,
                     "waiting": 0}, after
    log = out.getvalue()
    dropped_lines = [ln for ln in log.splitlines() if "send buffer full" in ln]
    assert len(dropped_lines) == 1, log  # rate-limited: once, not 5 times
    assert "UDP 500" in dropped_lines[0] and "cannot send" not in log


def test_shutdown_deletes_all_wait_for_the_socket() -> None:
    """At shutdown the bound is lifted: a DELETE to each of many clients waits for a full
    send buffer instead of being dropped, and `drained` waits until all went out (issue 13)."""
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    for s in (ours, peer):
        s.setblocking(False)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    n = MAX_QUEUED * 4

    async def main() -> tuple[list[bytes], bool, bool, int]:
        full = FullSocket(ours)
        queue = SendQueue(asyncio.get_running_loop(), full.fileno(), full.sendto)
        assert fill(ours) > 0
        queue.lift_bound()
        for i in range(n):
            queue.send(b"DELETE %d" % i, PEER)
        early = await queue.drained(0.02)  # nobody reads yet: still queued
        got: list[bytes] = []

        async def reader() -> None:
            while True:
                got.extend(drain(peer))
                await asyncio.sleep(0.002)

        task = asyncio.create_task(reader())
        done = await queue.drained(10.0)
        await asyncio.sleep(0.02)
        task.cancel()
        got.extend(drain(peer))
        return got, early, done, queue.dropped

    try:
        got, early, done, dropped = asyncio.run(main())
    finally:
        ours.close()
        peer.close()
    assert not early and done and dropped == 0
    assert [g for g in got if g.startswith(b"DELETE")] == [b"DELETE %d" % i for i in range(n)]


def test_an_action_after_a_queued_message_runs_once_it_went_out(tmp_path: Path) -> None:
    """Issue 16: the outbound SA of a Quick Mode we initiated goes to the data plane only
    once our message 3 left; behind a full send buffer, that is when the queue sent it."""
    conc = Concentrator(parse_config(SHELL_CONFIG.format(sock=tmp_path / "a.sock")),
                        EventLog(out=io.StringIO()))
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    for s in (ours, peer):
        s.setblocking(False)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    got: list[bytes] = []
    seen_by_action: list[list[bytes]] = []

    async def main() -> None:
        conc.sock500 = FullSocket(ours)  # type: ignore[assignment]
        conc._open_send_queues(asyncio.get_running_loop())
        message_3 = Datagram(b"IKE message 3", PEER, 500, Transport.IKE)
        sa = object()  # no virtual address: the queue is found by the transport alone
        conc._when_sent(sa, message_3, lambda: seen_by_action.append([]))  # type: ignore[arg-type]
        assert seen_by_action == [[]]  # nothing queued: at once
        seen_by_action.clear()
        assert fill(ours) > 0
        conc._send(message_3)  # EAGAIN: queued
        conc._when_sent(sa, message_3,  # type: ignore[arg-type]
                        lambda: seen_by_action.append(drain(peer)))
        await asyncio.sleep(0.02)
        assert seen_by_action == []  # message 3 still waits: so does the action
        for _ in range(400):
            got.extend(drain(peer))
            await asyncio.sleep(0.005)
            if seen_by_action:
                break

    try:
        asyncio.run(main())
    finally:
        ours.close()
        peer.close()
    assert len(seen_by_action) == 1
    assert b"IKE message 3" in got + seen_by_action[0]  # it was on the wire before
