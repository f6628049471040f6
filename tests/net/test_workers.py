"""WorkerPool with real worker processes, over in-memory TUN queues and loopback UDP.

Each worker gets a FakeTun (its "TUN queue") and its own UDP socket; the clients
are in-process Dataplanes (real ESP peers) that send to their worker's port, as
the kernel's SPI steering would deliver (net/ikesplit.py; proved in the netns
test, tests/concentrator/test_workers_netns.py).
"""

from __future__ import annotations

import asyncio
import os
import select
import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from vpnhub.esp import ESP_AES_CBC, HMAC_SHA1_96, SaParams, key_lengths
from vpnhub.net import workerlink
from vpnhub.net.dataplane import Dataplane, open_udp_socket
from vpnhub.net.handover import mesh
from vpnhub.net.messages import TRANSPORT_NATT_VIRTUAL, AddInbound, AddOutbound, IkeDatagram
from vpnhub.net.stats import DataplaneStats
from vpnhub.net.tun import FakeTun
from vpnhub.net.udpencap import NON_ESP_MARKER
from vpnhub.net.worker import Worker, WorkerSpec
from vpnhub.net.workerlink import Link
from vpnhub.net.workers import WorkerFds, WorkerPool, resumed_seq

LAN_HOST = "192.168.2.10"


def ipv4(src: str, dst: str, payload: bytes = b"x" * 64) -> bytes:
    total = 20 + len(payload)
    return (bytes([0x45, 0, total >> 8, total & 0xFF, 0, 0, 0, 0, 64, 17, 0, 0])
            + socket.inet_aton(src) + socket.inet_aton(dst) + payload)


def params(spi: int) -> SaParams:
    enc, integ = key_lengths(ESP_AES_CBC, 128, HMAC_SHA1_96)
    return SaParams.from_keymat(spi, ESP_AES_CBC, 128, HMAC_SHA1_96, os.urandom(enc + integ))


@dataclass
class Client:
    """A remote-access client: its own data plane, default route into the tunnel."""

    inner: str
    tun: FakeTun
    dp: Dataplane
    addr: tuple[str, int]
    to_conc: SaParams  # its outbound = the concentrator's inbound
    from_conc: SaParams

    def send(self, packet: bytes) -> None:
        self.tun.inject(packet)
        self.dp.poll(0.2)

    def received(self) -> list[bytes]:
        self.dp.poll(0.05)
        return self.tun.sent()


class Rig:
    def __init__(self, n: int, virtual: socket.socket | None = None) -> None:
        self.tuns = [FakeTun(f"q{k}") for k in range(n)]
        self.udps = [open_udp_socket("127.0.0.1", 0) for _ in range(n)]
        self.mesh = mesh(n)
        fds = [WorkerFds(tun=t.fileno(), udp=u.fileno(),
                         mesh={j: s.fileno() for j, s in self.mesh[k].items()},
                         udp_virtual=virtual.fileno() if virtual is not None else None)
               for k, (t, u) in enumerate(zip(self.tuns, self.udps, strict=True))]
        self.logged: list[tuple[int, str]] = []
        self.woken = 0
        self.pool = WorkerPool(fds, notify=self._wake,
                               log=lambda sev, text: self.logged.append((sev, text)))
        self.clients: list[Client] = []

    def _wake(self) -> None:
        self.woken += 1

    def port_of(self, k: int) -> tuple[str, int]:
        host, port = self.udps[k].getsockname()
        return host, port

    def connect(self, inner: str, spi_out: int) -> tuple[Client, int]:
        """A client logs in: the pool picks its worker and an inbound SPI for it."""
        tun = FakeTun("c")
        udp = open_udp_socket("127.0.0.1", 0)
        addr = udp.getsockname()
        addr = (addr[0], addr[1])
        k = self.pool.worker_of(addr)
        spi_in = self.pool.spi_allocator(addr, "natt")
        assert spi_in % self.pool.n == k and spi_in >= 256
        to_conc, from_conc = params(spi_in), params(spi_out)
        dp = Dataplane(tun, udp=udp)
        dp.call(AddOutbound(to_conc, self.port_of(k)))
        dp.call(AddInbound(from_conc, self.port_of(k)))
        with self.pool.batch():
            self.pool.add_inbound(to_conc, addr, allowed_src=inner)
            self.pool.add_outbound(from_conc, addr, dst=inner)
        client = Client(inner, tun, dp, addr, to_conc, from_conc)
        self.clients.append(client)
        return client, k

    async def login(self, inner: str, spi_out: int) -> tuple[Client, int]:
        """``connect``, once the worker has applied the SAs (a question answered after)."""
        client, k = self.connect(inner, spi_out)
        await self.pool.stats()
        return client, k

    def close(self) -> None:
        self.pool.close()
        for c in self.clients:
            c.dp.close()
            assert c.dp.udp is not None
            c.dp.udp.close()
            c.tun.close()
        for t in self.tuns:
            t.close()
        for u in self.udps:
            u.close()
        for peers in self.mesh:
            for s in peers.values():
                s.close()


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("timed out")
        await asyncio.sleep(0.01)


async def lan_reply(rig: Rig, k: int, client: Client, payload: bytes) -> list[bytes]:
    """The LAN host sends to the client; the kernel gave it worker k's queue."""
    rig.tuns[k].inject(ipv4(LAN_HOST, client.inner, payload))
    got: list[bytes] = []

    def arrived() -> bool:
        got.extend(client.received())
        return bool(got)

    await until(arrived)
    return got


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = Rig(2)
    yield r
    r.close()


def run(coro_fn: Callable[[], object]) -> None:
    asyncio.run(coro_fn())  # type: ignore[arg-type]


def test_peers_spread_and_traffic_both_ways(rig: Rig) -> None:
    async def main() -> None:
        rig.pool.start()
        c1, k1 = await rig.login("10.40.1.1", 0xC1000001)
        c2, k2 = await rig.login("10.40.1.2", 0xC2000001)
        assert {k1, k2} == {0, 1}  # least loaded: one client per worker
        for c, k in ((c1, k1), (c2, k2)):
            c.send(ipv4(c.inner, LAN_HOST, b"hello from " + c.inner.encode()))
            await until(lambda k=k: bool(rig.tuns[k].sent()))  # decrypted by its owner
            assert await lan_reply(rig, k, c, b"reply") == [ipv4(LAN_HOST, c.inner, b"reply")]
        stats = await rig.pool.stats()
        assert isinstance(stats, DataplaneStats)
        assert stats.esp_totals.packets_in == 2 and stats.esp_totals.packets_out == 2
        assert [w.sas for w in stats.workers] == [2, 2]
        assert [w.peers for w in stats.workers] == [1, 1]
        assert all(w.pid > 0 and w.packets >= 2 for w in stats.workers)
        assert {s.spi for s in stats.sas} == {c1.to_conc.spi, c1.from_conc.spi,
                                               c2.to_conc.spi, c2.from_conc.spi}
        counters = await rig.pool.counters()
        assert sorted(counters.spi_in) == sorted([c1.to_conc.spi, c2.to_conc.spi])
        assert len(counters.totals.workers) == 2
        rig.pool.remove_sa(c1.to_conc.spi)
        rig.pool.remove_sa(c1.from_conc.spi)
        stats = await rig.pool.stats()
        assert sorted(w.sas for w in stats.workers) == [0, 2]
    run(main)


def test_lan_first_packet_handed_to_the_owner(rig: Rig) -> None:
    async def main() -> None:
        rig.pool.start()
        c, k = await rig.login("10.40.1.7", 0xC7000001)
        other = 1 - k
        # the LAN host speaks first and the kernel picked the other worker's queue
        got = await lan_reply(rig, other, c, b"first from the LAN")
        assert got == [ipv4(LAN_HOST, c.inner, b"first from the LAN")]
        stats = await rig.pool.stats()
        assert stats.workers[other].handed_over == 1
        assert stats.workers[k].handed_in == 1
        assert stats.drops_total.get("no_sa", 0) == 0
        # once the client is gone, nobody owns it: the packet is dropped as no_sa
        rig.pool.remove_sa(c.from_conc.spi)
        await asyncio.sleep(0)  # the turn ends: the commands it gave leave
        rig.tuns[other].inject(ipv4(LAN_HOST, c.inner, b"late"))
        await asyncio.sleep(0.1)
        stats = await rig.pool.stats()
        assert stats.workers[other].handed_over == 1
        assert stats.drops_total.get("no_sa", 0) == 1
    run(main)


def test_ike_from_a_worker_reaches_the_parent(rig: Rig) -> None:
    async def main() -> None:
        rig.pool.start()
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.sendto(NON_ESP_MARKER + b"i" * 40, rig.port_of(1))
        await until(lambda: rig.woken > 0)
        events = rig.pool.events()
        assert events == [IkeDatagram(b"i" * 40, s.getsockname())]
        s.close()
    run(main)


def test_killed_worker_restarts_with_its_sas_and_a_sequence_jump(rig: Rig) -> None:
    async def main() -> None:
        rig.pool.start()
        c, k = await rig.login("10.40.1.9", 0xC9000001)
        for i in range(5):
            await lan_reply(rig, k, c, b"before %d" % i)
        sample = await rig.pool.counters()  # the periodic sample: seq 5 seen
        assert sample.totals.esp_totals.packets_out == 5
        pid = rig.pool.workers[k].pid
        os.kill(pid, signal.SIGKILL)
        await until(lambda: rig.pool.workers[k].pid not in (0, pid))
        assert any(sev == 2 and f"worker {k}" in text and "restarted" in text
                   for sev, text in rig.logged)
        await rig.pool.stats()  # the new worker answers: it has its SAs back
        # the session passes traffic again, both ways
        got = await lan_reply(rig, k, c, b"after")
        assert got == [ipv4(LAN_HOST, c.inner, b"after")]
        c.send(ipv4(c.inner, LAN_HOST, b"up again"))
        await until(lambda: ipv4(c.inner, LAN_HOST, b"up again") in rig.tuns[k].sent())
        stats = await rig.pool.stats()
        out = stats.sa(c.from_conc.spi, "out")
        assert out is not None
        # RFC 4303 3.3.3: never 1..5 again; resumed past 5 + 1024
        assert out.seq_out >= 5 + 1024 + 1
        assert stats.workers[k].restarts == 1 and stats.workers[k].sas == 2
        # the totals keep what the dead worker counted (they never fall)
        assert stats.esp_totals.packets_out == 6 and stats.esp_totals.packets_in == 1
    run(main)


def test_a_totals_only_answer_leaves_the_sampled_sequence_numbers(rig: Rig) -> None:
    """The 2 s totals refresh carries no per-SA sequence numbers (an O(SAs) walk on
    the loop per answer, issue 13): a restart resumes from the last per-SA sample."""
    async def main() -> None:
        rig.pool.start()
        c, k = await rig.login("10.40.1.9", 0xC9000001)
        for i in range(3):
            await lan_reply(rig, k, c, b"before %d" % i)
        await rig.pool.counters()  # the per-SA sample: seq 3
        w = rig.pool.workers[k]
        assert w.seqs is not None and w.seqs[0][c.from_conc.spi] == 3
        await lan_reply(rig, k, c, b"after")
        totals = await rig.pool.counters(sas=False)
        assert totals.totals.esp_totals.packets_out == 4  # the totals did move
        assert w.seqs[0][c.from_conc.spi] == 3  # the sample stayed the per-SA one
        await rig.pool.stats()
        assert w.seqs[0][c.from_conc.spi] == 4
    run(main)


def test_resumed_seq_caps_at_the_end() -> None:
    assert resumed_seq(10, 0.0) == 10 + 1024
    assert resumed_seq(10, 2.0) == 10 + 2_000_000 + 1024
    assert resumed_seq(2**32 - 100, 5.0) == 2**32 - 1  # the SA asks for a rekey


def test_hung_worker_is_killed_and_the_parent_never_waits(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workerlink, "LINK_BUFFER", 64 * 1024)
    r = Rig(2)

    async def main() -> None:
        r.pool.start()
        c, k = await r.login("10.40.1.11", 0xCB000001)
        pid = r.pool.workers[k].pid
        os.kill(pid, signal.SIGSTOP)  # it stops reading its link
        worst = 0.0
        for _ in range(5000):
            t0 = time.monotonic()
            r.pool.set_keepalive(c.addr, 20.0)
            await asyncio.sleep(0)  # the turn ends: the command leaves (or finds it full)
            worst = max(worst, time.monotonic() - t0)
            if r.pool.hung_workers:
                break
        assert r.pool.hung_workers == 1
        assert r.pool.workers[k].pid != pid
        assert worst < 2.5  # a send never waits; the restart waits for the kill only
        await r.pool.stats()
        got = await lan_reply(r, k, c, b"after the hang")
        assert got == [ipv4(LAN_HOST, c.inner, b"after the hang")]
        assert any(sev == 2 and "hung" in text for sev, text in r.logged)
        out = (await r.pool.stats()).sa(c.from_conc.spi, "out")
        assert out is not None and out.seq_out > 1024  # resumed past the sample (RFC 4303)

    try:
        asyncio.run(main())
    finally:
        r.close()


def test_an_inbound_sa_goes_where_its_spi_was_drawn() -> None:
    """Cisco IPsec over UDP: the SPI is drawn for the IKE peer (UDP 500's mapping),
    the SAs are installed for the ESP peer (UDP 10000's): both in the drawn worker
    (no process needed: the pool's own bookkeeping)."""
    pool = WorkerPool([WorkerFds(tun=-1), WorkerFds(tun=-1), WorkerFds(tun=-1)])
    other = ("203.0.113.78", 4500)
    assert pool.worker_of(other) == 0  # the first peer takes worker 0
    spi = pool.spi_allocator(("203.0.113.79", 500), "cisco-udp")
    k = spi % 3
    assert k == 1
    esp_peer = ("203.0.113.79", 31000)
    pool.add_inbound(params(spi), esp_peer, transport="cisco-udp")
    pool.add_outbound(params(0xD0000001), esp_peer, dst="10.40.1.3", transport="cisco-udp")
    assert pool.worker_of(esp_peer) == k
    assert set(pool.workers[k].sas) == {spi, 0xD0000001}
    # the IKE peer it was drawn for holds nothing: forgotten, its load with it
    assert pool.worker_of(("203.0.113.80", 4500)) == 2


def test_a_worker_that_does_not_answer_is_hung(rig: Rig) -> None:
    async def main() -> None:
        rig.pool.start()
        c, k = await rig.login("10.40.1.12", 0xCC000001)
        pid = rig.pool.workers[k].pid
        os.kill(pid, signal.SIGSTOP)
        rig.pool.ask_timeout = 0.5  # only for the question to the stopped worker
        with pytest.raises(TimeoutError):
            await rig.pool.stats()
        assert rig.pool.hung_workers == 1 and rig.pool.workers[k].pid != pid
        # the restarted worker is a fresh interpreter: on a loaded machine it needs
        # more than half a second before it answers
        rig.pool.ask_timeout = 10.0
        stats = await rig.pool.stats()
        assert stats.workers[k].restarts == 1 and stats.workers[k].sas == 2
        got = await lan_reply(rig, k, c, b"after")
        assert got == [ipv4(LAN_HOST, c.inner, b"after")]
    run(main)


def test_esp_behind_ike_in_a_train_reaches_the_worker_of_its_spi(rig: Rig) -> None:
    """The parent's IKE socket read a GRO train led by IKE (the kernel steers a train
    by its first segment, docs/TRANSPORTS.md): the ESP in it goes to the worker that
    owns its SPI, which decrypts it as if its own socket had read it."""
    async def main() -> None:
        rig.pool.start()
        c1, k1 = await rig.login("10.40.1.21", 0xC1000021)
        c2, k2 = await rig.login("10.40.1.22", 0xC2000022)
        assert {k1, k2} == {0, 1}
        for c in (c1, c2):  # a train is one flow: one client's datagrams
            out = c.to_conc.build()
            rig.pool.hand_over([out.encapsulate(ipv4(c.inner, LAN_HOST, bytes([n]) * 80))
                                for n in range(3)], c.addr)  # as IkeSocket.read does
        got: dict[int, list[bytes]] = {0: [], 1: []}

        def arrived() -> bool:
            for k in (0, 1):
                got[k].extend(rig.tuns[k].sent())
            return len(got[0]) + len(got[1]) == 6

        await until(arrived)
        for c, k in ((c1, k1), (c2, k2)):
            assert got[k] == [ipv4(c.inner, LAN_HOST, bytes([n]) * 80) for n in range(3)]
        stats = await rig.pool.stats()
        assert stats.esp_via_ike_socket == 6
        assert stats.drops_total.get("no_sa", 0) == 0
    run(main)


def test_a_worker_that_keeps_dying_is_started_again_later_not_in_a_loop(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past RESTART_BURST deaths in RESTART_WINDOW s the next start waits (doubling):
    a worker that dies at once must not turn the concentrator into a fork loop. Its
    SAs come back when it does start."""
    from vpnhub.net import workers as workers_mod

    monkeypatch.setattr(workers_mod, "RESTART_BURST", 2)

    async def main() -> None:
        rig.pool.start()
        c, k = await rig.login("10.40.1.31", 0xC3100031)
        w = rig.pool.workers[k]
        for _ in range(2):  # within the burst: started again at once
            pid = w.pid
            os.kill(pid, signal.SIGKILL)
            await until(lambda pid=pid: w.pid not in (0, pid) and w.link is not None)
        pid = w.pid
        os.kill(pid, signal.SIGKILL)  # the third death in a minute: 2 s before a start
        await until(lambda: w.link is None)
        assert any(sev == 1 and "next start in 2 s" in text for sev, text in rig.logged)
        with pytest.raises(ConnectionError):  # asked meanwhile: said at once, not hung
            await rig.pool.stats()
        await asyncio.sleep(1.0)
        assert w.link is None and w.restarts == 3
        await until(lambda: w.link is not None, timeout=5.0)
        await rig.pool.stats()  # answered: it runs, its SAs applied (the batch came first)
        got = await lan_reply(rig, k, c, b"back")  # its SAs were reinstalled
        assert got == [ipv4(LAN_HOST, c.inner, b"back")]
    run(main)


def test_esp_on_the_virtual_address_in_workers() -> None:
    """Issue 17: every worker sends "natt-virtual" ESP from the virtual address's
    socket (its fd passed like the others); the parent reads that socket and hands
    the ESP over by SPI (concentrator/virtual.py). 127.0.0.2 is the virtual address."""
    try:
        vsock = open_udp_socket("127.0.0.2", 0)
    except OSError:
        pytest.skip("no 127.0.0.2 on loopback")
    vaddr = vsock.getsockname()
    rig = Rig(2, virtual=vsock)

    async def main() -> None:
        rig.pool.start()
        rig.connect("10.40.1.30", 0xC3000030)  # another client first: worker 0 is taken
        tun, udp = FakeTun("v"), open_udp_socket("127.0.0.1", 0)
        addr = (udp.getsockname()[0], udp.getsockname()[1])
        spi = rig.pool.spi_allocator(addr, TRANSPORT_NATT_VIRTUAL)
        k = spi % 2
        assert k == 1
        to_conc, from_conc = params(spi), params(0xC3000031)
        dp = Dataplane(tun, udp=udp)
        dp.call(AddOutbound(to_conc, vaddr))
        dp.call(AddInbound(from_conc, vaddr))
        rig.clients.append(Client("10.40.1.31", tun, dp, addr, to_conc, from_conc))
        with rig.pool.batch():
            rig.pool.add_inbound(to_conc, addr, allowed_src="10.40.1.31",
                                 transport=TRANSPORT_NATT_VIRTUAL)
            rig.pool.add_outbound(from_conc, addr, dst="10.40.1.31",
                                  transport=TRANSPORT_NATT_VIRTUAL)
        await rig.pool.stats()
        tun.inject(ipv4("10.40.1.31", LAN_HOST, b"up"))
        dp.poll(0.2)
        data, src = vsock.recvfrom(2048)  # as the parent's IkeSocket reads it
        rig.pool.hand_over([data], src)
        got: list[bytes] = []
        await until(lambda: bool(got.extend(rig.tuns[k].sent()) or got))
        assert got == [ipv4("10.40.1.31", LAN_HOST, b"up")]
        down = await lan_reply(rig, k, rig.clients[-1], b"down")
        assert down == [ipv4(LAN_HOST, "10.40.1.31", b"down")]
        assert dp.inbox.drain() == []  # no PeerMoved: it came from the virtual address

    try:
        run(main)
    finally:
        rig.close()
        vsock.close()


def test_flush_batch_sends_the_commands_before_the_batch_ends(rig: Rig) -> None:
    """An IKE message that lets the peer use a new SA leaves inside a batch
    (service.py flushes it before each send): the SA must reach its worker first."""
    async def main() -> None:
        rig.pool.start()
        tun, udp = FakeTun("f"), open_udp_socket("127.0.0.1", 0)
        addr = (udp.getsockname()[0], udp.getsockname()[1])
        k = rig.pool.worker_of(addr)
        spi = rig.pool.spi_allocator(addr, "natt")
        to_conc, from_conc = params(spi), params(0xC4000040)
        dp = Dataplane(tun, udp=udp)
        dp.call(AddOutbound(to_conc, rig.port_of(k)))
        dp.call(AddInbound(from_conc, rig.port_of(k)))
        rig.clients.append(Client("10.40.1.40", tun, dp, addr, to_conc, from_conc))
        with rig.pool.batch():
            rig.pool.add_inbound(to_conc, addr, allowed_src="10.40.1.40")
            rig.pool.flush_batch()  # on the worker's link now, ahead of the ESP below
            tun.inject(ipv4("10.40.1.40", LAN_HOST, b"up"))
            dp.poll(0.2)
            got: list[bytes] = []
            await until(lambda: bool(got.extend(rig.tuns[k].sent()) or got))
            assert got == [ipv4("10.40.1.40", LAN_HOST, b"up")]

    run(main)


def test_a_worker_reads_its_link_before_calling_an_spi_unknown() -> None:
    """The worker's hook for `Dataplane._late_inbound`: the commands waiting on its
    link (a rekey's AddInbound) are applied before an unknown SPI is dropped."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    tun, udp = FakeTun("w"), open_udp_socket("127.0.0.1", 0)
    worker = Worker(WorkerSpec(index=0, workers=1, link=child.detach(), tun=tun.fileno(),
                               udp=udp.detach()))
    try:
        sa = params(0xC5000050)
        Link(parent).send(AddInbound(sa, ("127.0.0.1", 40000), allowed_src="10.40.1.50"))
        esp = sa.build().encapsulate(ipv4("10.40.1.50", LAN_HOST, b"x"))
        # as the loop does when the ESP socket comes first in a wake-up
        worker.dp._deliver(esp, ("127.0.0.1", 40000), 1000.0)
        worker.dp.poll(0.0)  # the TUN writes of the wake-up
        assert tun.sent() == [ipv4("10.40.1.50", LAN_HOST, b"x")]
        assert worker.dp.drops == {}
    finally:
        worker.dp.close()
        assert worker.dp.udp is not None
        worker.dp.udp.close()
        worker.link.close()
        parent.close()
        tun.close()


def test_remove_sa_drops_only_its_own_routes(rig: Rig) -> None:
    """RemoveSA finds its routes by SPI (not a scan of every route): the foreign
    routes of the other workers go with it, a route taken over by a newer SA stays."""
    pool = rig.pool
    a, b = ("127.0.0.1", 41001), ("127.0.0.1", 41002)
    ka = pool.worker_of(a)
    kb = pool.worker_of(b)
    assert ka != kb
    pool.add_outbound(params(0xD1000001), a, dst="10.40.1.61")
    pool.add_outbound(params(0xD1000002), b, dst="10.40.1.62")
    pool.add_outbound(params(0xD1000003), a, dst="10.40.1.61")  # a rekey takes it over
    pool.remove_sa(0xD1000001)  # the old SA: its route now belongs to the new one
    assert pool._routes == {"10.40.1.61": (ka, 0xD1000003), "10.40.1.62": (kb, 0xD1000002)}
    pool.remove_sa(0xD1000003)
    pool.remove_sa(0xD1000002)
    assert pool._routes == {} and pool._dsts_of_spi == {}


def test_the_commands_of_a_turn_reach_a_worker_as_one_message_in_order(rig: Rig) -> None:
    """What one loop turn gives a worker leaves as one message at the turn's end (one
    system call, one wake-up of the worker: issue 13), in the order given: the SA
    removed and installed again in one turn is in at the end, and passes traffic."""
    async def main() -> None:
        rig.pool.start()
        c, k = await rig.login("10.40.1.70", 0xC7000070)
        w, other = rig.pool.workers[k], rig.pool.workers[1 - k]
        assert w.link is not None and other.link is not None
        sent, sent_other = w.link.sent, other.link.sent
        rig.pool.remove_sa(c.to_conc.spi)
        rig.pool.add_inbound(c.to_conc, c.addr, allowed_src=c.inner)
        rig.pool.set_keepalive(c.addr, 20.0)
        assert w.link.sent == sent  # nothing sent yet: the turn goes on
        await asyncio.sleep(0)
        assert w.link.sent == sent + 1 and other.link.sent == sent_other
        c.send(ipv4(c.inner, LAN_HOST, b"still in"))
        await until(lambda: ipv4(c.inner, LAN_HOST, b"still in") in rig.tuns[k].sent())
    run(main)


def test_commands_given_to_a_worker_as_it_dies_come_back_with_its_reinstall(
        rig: Rig) -> None:
    """A worker found dead (its link's EOF, read in the turn that gave it commands):
    what it was given meanwhile comes back with its SAs, the new outbound SA resuming
    past its sample (RFC 4303 3.3.3), not at the sequence number it was given."""
    async def main() -> None:
        rig.pool.start()
        c, k = await rig.login("10.40.1.71", 0xC7000071)
        w = rig.pool.workers[k]
        assert w.link is not None
        pid = w.pid
        os.kill(pid, signal.SIGKILL)
        readable, _, _ = select.select([w.link.sock], [], [], 5.0)  # its EOF, unread
        assert readable
        rekeyed = params(0xC7000072)
        rig.pool.add_outbound(rekeyed, c.addr, dst=c.inner)  # waits for the turn's end
        rig.pool._on_link(w)  # the loop's reader of its link, in the same turn
        assert w.pid not in (0, pid)
        stats = await rig.pool.stats()
        out = stats.sa(rekeyed.spi, "out")
        assert out is not None and out.seq_out > 1024
        assert stats.workers[k].sas == 3 and stats.workers[k].restarts == 1
    run(main)
