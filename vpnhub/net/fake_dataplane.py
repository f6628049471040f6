"""``FakeDataplane``: an in-memory :class:`~vpnhub.net.handle.DataplaneHandle`.

For in-process tests of a control plane (the concentrator core, the client):
no TUN, no sockets, no thread.  It keeps what the control plane asked for so
that a test can assert on it, and plays the data plane's side on demand:

- ``inbound`` / ``outbound``: the installed SAs by SPI (the command that
  installed them, ``peer`` following ``update_peer``); ``commands``: every
  command in order; ``sent``: IKE messages sent, ``sent_on(transport)`` per
  transport; ``keepalives``: the NAT keepalive set per peer; ``handed_over``:
  the datagrams passed to ``hand_over``;
- ``inject(event)``: queue a data-plane event (an ``IkeDatagram`` from a
  peer, ``PeerMoved``, ``SaExhausted``, ``CtcpClosed``, ...) and call
  ``notify`` as the real inbox does; ``events()`` drains them;
- ``count(spi, ...)``: traffic and drops for an installed SA, reported by
  ``stats()``; or ``set_stats(...)`` to answer with a fixed snapshot;
- ``send_error``: an ``OSError`` that ``send_ike`` raises (a full buffer,
  a cTCP connection gone).

Like the real data plane it applies commands in order and at once; unlike
it, it never fails to install an SA (no socket is missing).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from vpnhub.esp.sa import EspSA, SaParams
from vpnhub.esp.suites import get_suite
from vpnhub.ike.transport import Transport
from vpnhub.net.messages import (
    TRANSPORT_CTCP,
    TRANSPORT_ESP,
    TRANSPORT_NATT,
    AddInbound,
    AddOutbound,
    Address,
    Command,
    CtcpClose,
    Event,
    RemoveSA,
    SetKeepalive,
    UpdatePeer,
)
from vpnhub.net.stats import (
    DataplaneStats,
    Direction,
    PeerStats,
    SaCounters,
    SaStats,
    counters_of,
)

if TYPE_CHECKING:
    from vpnhub.net.handle import DataplaneHandle


@dataclass(frozen=True, slots=True)
class SentIke:
    """One IKE message the control plane sent through the data plane."""

    message: bytes
    addr: Address
    transport: Transport


@dataclass(slots=True)
class _Counters:
    bytes_in: int = 0
    packets_in: int = 0
    bytes_out: int = 0
    packets_out: int = 0
    drops: dict[str, int] = field(default_factory=dict)


def _esp_transport(transport: str, udp_encap: bool) -> str:
    # The real data plane's default (vpnhub/net/dataplane.py ``_transport``).
    return transport or (TRANSPORT_NATT if udp_encap else TRANSPORT_ESP)


def _suite_name(sa: SaParams | EspSA) -> str:
    if isinstance(sa, EspSA):
        return sa.suite.name
    return get_suite(sa.transform, sa.key_len_bits, sa.auth, allow_no_integrity=True).name


class FakeDataplane:
    """A data plane that records commands and answers from what the test set."""

    def __init__(self, notify: Callable[[], None] | None = None) -> None:
        self.notify = notify
        self.commands: list[Command] = []
        self.inbound: dict[int, AddInbound] = {}
        self.outbound: dict[int, AddOutbound] = {}
        self._route: dict[str | None, int] = {}  # dst -> the SPI of its outbound SA
        self.sent: list[SentIke] = []
        self.keepalives: dict[Address, tuple[float, str]] = {}
        self.ctcp_connections: set[Address] = set()  # cTCP peers send_ike may reach
        self.send_error: OSError | None = None
        self.handed_over: list[tuple[bytes, Address]] = []  # hand_over's datagrams
        self._events: list[Event] = []
        self._counters: dict[tuple[int, Direction], _Counters] = {}
        self._fixed: DataplaneStats | None = None

    # -- DataplaneHandle ---------------------------------------------------------

    def add_inbound(self, sa: SaParams | EspSA, peer: Address, *, udp_encap: bool = True,
                    allowed_src: str | None = None, transport: str = "") -> None:
        cmd = AddInbound(sa, peer, udp_encap=udp_encap, allowed_src=allowed_src,
                         transport=transport)
        self.commands.append(cmd)
        self.inbound[sa.spi] = cmd

    def add_outbound(self, sa: SaParams | EspSA, peer: Address, *, udp_encap: bool = True,
                     dst: str | None = None, transport: str = "") -> None:
        cmd = AddOutbound(sa, peer, udp_encap=udp_encap, dst=dst, transport=transport)
        self.commands.append(cmd)
        # One outbound SA per destination, as in the real routing table: a rekey's
        # new SA takes the route of the old one (found by its dst, not by a scan: the
        # in-process handshake benchmark installs thousands, bench/handshake_cpu.py).
        spi = self._route.get(dst)
        old = self.outbound.get(spi) if spi is not None else None
        if old is not None and old.dst == dst:
            del self.outbound[old.sa.spi]
        self.outbound[sa.spi] = cmd
        self._route[dst] = sa.spi

    def remove_sa(self, spi: int) -> None:
        self.commands.append(RemoveSA(spi))
        self.inbound.pop(spi, None)
        self.outbound.pop(spi, None)
        self._counters.pop((spi, "in"), None)
        self._counters.pop((spi, "out"), None)

    def batch(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()  # commands apply at once here: nothing to batch

    def flush_batch(self) -> None:
        pass  # commands apply at once here

    def update_peer(self, old: Address, new: Address) -> None:
        self.commands.append(UpdatePeer(old, new))
        # Every SA with that peer follows it, as the real data plane's peer entry does.
        self.inbound = {spi: replace(c, peer=new) if c.peer == old else c
                        for spi, c in self.inbound.items()}
        self.outbound = {spi: replace(c, peer=new) if c.peer == old else c
                         for spi, c in self.outbound.items()}
        if old in self.keepalives:
            self.keepalives[new] = self.keepalives.pop(old)

    def set_keepalive(self, peer: Address, interval: float | None,
                      transport: str = "") -> None:
        self.commands.append(SetKeepalive(peer, interval, transport))
        if interval is None:
            self.keepalives.pop(peer, None)
        else:
            self.keepalives[peer] = (interval, transport or TRANSPORT_NATT)

    def send_ike(self, message: bytes, addr: Address,
                 transport: Transport = Transport.NATT) -> None:
        if transport not in (Transport.NATT, Transport.CTCP):
            raise ValueError(f"IKE travels over natt or ctcp, not {transport.value!r}")
        if self.send_error is not None:
            raise self.send_error
        self.sent.append(SentIke(message, addr, transport))

    def ctcp_close(self, addr: Address) -> None:
        self.commands.append(CtcpClose(addr))
        self.ctcp_connections.discard(addr)

    def hand_over(self, datagrams: list[bytes], addr: Address) -> None:
        self.handed_over += [(d, addr) for d in datagrams]

    async def stats(self) -> DataplaneStats:
        return self.snapshot()

    async def counters(self, sas: bool = True) -> SaCounters:
        c = counters_of(self.snapshot())  # the same numbers as stats()
        return c if sas else SaCounters(c.totals)

    def events(self) -> list[Event]:
        out, self._events = self._events, []
        return out

    # -- the test's side -----------------------------------------------------------

    def inject(self, *events: Event) -> None:
        """Queue events as the data plane would; ``notify`` fires once per burst."""
        was_empty = not self._events
        self._events.extend(events)
        if was_empty and events and self.notify is not None:
            self.notify()

    def sent_on(self, transport: Transport) -> list[tuple[bytes, Address]]:
        """IKE messages sent on ``transport``, oldest first."""
        return [(s.message, s.addr) for s in self.sent if s.transport is transport]

    def take_sent(self) -> list[SentIke]:
        """IKE messages sent since the last call (to relay them to a peer)."""
        out, self.sent = self.sent, []
        return out

    def count(self, spi: int, direction: Direction, *, packets: int = 0, bytes_: int = 0,
              drops: dict[str, int] | None = None) -> None:
        """Add traffic (and drops by reason) to the SA ``spi`` in ``direction``."""
        c = self._counters.setdefault((spi, direction), _Counters())
        if direction == "in":
            c.packets_in += packets
            c.bytes_in += bytes_
        else:
            c.packets_out += packets
            c.bytes_out += bytes_
        for reason, n in (drops or {}).items():
            c.drops[reason] = c.drops.get(reason, 0) + n

    def set_stats(self, stats: DataplaneStats | None) -> None:
        """Answer ``stats()`` with this snapshot (None: build it from the SAs again)."""
        self._fixed = stats

    def snapshot(self) -> DataplaneStats:
        """What ``stats()`` answers now."""
        if self._fixed is not None:
            return self._fixed
        sas = [self._sa_stats(spi, "in", cmd) for spi, cmd in self.inbound.items()]
        sas += [self._sa_stats(spi, "out", cmd) for spi, cmd in self.outbound.items()]
        peers = {(s.peer, s.transport): PeerStats(s.peer, s.transport, s.udp_encap)
                 for s in sas}
        for addr, (interval, transport) in self.keepalives.items():
            peers[(addr, transport)] = PeerStats(addr, transport, transport != TRANSPORT_CTCP,
                                                 keepalive_interval=interval)
        totals: dict[str, int] = {}
        for s in sas:
            for reason, n in s.drops.items():
                totals[reason] = totals.get(reason, 0) + n
        return DataplaneStats(drops_total=totals, sas=tuple(sas), peers=tuple(peers.values()))

    def _sa_stats(self, spi: int, direction: Direction,
                  cmd: AddInbound | AddOutbound) -> SaStats:
        c = self._counters.get((spi, direction), _Counters())
        transport = _esp_transport(cmd.transport, cmd.udp_encap)
        return SaStats(
            spi=spi, direction=direction,
            suite=_suite_name(cmd.sa), peer=cmd.peer, transport=transport,
            udp_encap=transport in (TRANSPORT_NATT, "cisco-udp", "natt-virtual"),
            bytes_in=c.bytes_in, packets_in=c.packets_in, bytes_out=c.bytes_out,
            packets_out=c.packets_out, drops=dict(c.drops),
            seen=cmd.peer if direction == "in" else None,
            dst=cmd.dst if isinstance(cmd, AddOutbound) else None)


if TYPE_CHECKING:
    def _implements_the_seam(dp: FakeDataplane) -> DataplaneHandle:
        return dp  # mypy proves FakeDataplane satisfies the DataplaneHandle Protocol
