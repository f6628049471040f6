"""The data plane's counters as typed values (the answer to ``GetStats``).

Built in the data-plane thread from plain ints (one snapshot, never torn by
the forwarding loop), then handed to the control plane: sessions read their
SAs' traffic and drops, the client its counters, the manager its metrics.
Drops are keyed by stable reason names (vpnhub.esp.errors and the data
plane's own), the same names the tests, the event log and the metrics use.

The control plane and the manager read the typed fields; ``as_dict`` gives
the JSON-ready shape (for tests and tools that print the counters), built
here and nowhere else.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

Address = tuple[str, int]
Direction = Literal["in", "out"]


@dataclass(frozen=True, slots=True)
class Traffic:
    """Inner bytes and packets through ESP SAs."""

    bytes_in: int = 0
    packets_in: int = 0
    bytes_out: int = 0
    packets_out: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"bytes_in": self.bytes_in, "packets_in": self.packets_in,
                "bytes_out": self.bytes_out, "packets_out": self.packets_out}


@dataclass(frozen=True, slots=True)
class SaStats:
    """One installed SA, inbound or outbound.

    ``seen`` (inbound only): the last source of authentic ESP.  ``dst`` and
    ``tunnel_mtu`` (outbound only): the inner destination routed to it and
    the largest inner packet whose outer packet fits the outer MTU.
    """

    spi: int
    direction: Direction
    suite: str
    peer: Address
    transport: str
    udp_encap: bool
    bytes_in: int = 0
    packets_in: int = 0
    bytes_out: int = 0
    packets_out: int = 0
    seq_out: int = 0
    replay_top: int = 0
    last_activity: float = 0.0
    drops: Mapping[str, int] = field(default_factory=dict)
    seen: Address | None = None
    dst: str | None = None
    tunnel_mtu: int | None = None

    def as_dict(self) -> dict[str, object]:
        d: dict[str, object] = {
            "spi": f"{self.spi:08x}", "suite": self.suite,
            "packets_in": self.packets_in, "bytes_in": self.bytes_in,
            "packets_out": self.packets_out, "bytes_out": self.bytes_out,
            "seq_out": self.seq_out, "replay_top": self.replay_top,
            "drops": dict(self.drops), "last_activity": self.last_activity,
            "direction": self.direction, "peer": self.peer,
        }
        if self.direction == "in":
            d.update({"seen": self.seen, "udp_encap": self.udp_encap,
                      "transport": self.transport, "spi_key": f"{self.spi:08x}"})
        else:
            d.update({"udp_encap": self.udp_encap, "transport": self.transport,
                      "dst": self.dst, "tunnel_mtu": self.tunnel_mtu})
        return d


@dataclass(frozen=True, slots=True)
class PeerStats:
    """One ESP peer (address and transport): its NAT keepalives (RFC 3948 4)."""

    addr: Address
    transport: str
    udp_encap: bool
    keepalive_interval: float | None = None
    keepalives_rx: int = 0
    keepalives_tx: int = 0
    outer_oversize: int = 0

    def as_dict(self) -> dict[str, object]:
        return {"addr": self.addr, "udp_encap": self.udp_encap, "transport": self.transport,
                "keepalive_interval": self.keepalive_interval,
                "keepalives_rx": self.keepalives_rx, "keepalives_tx": self.keepalives_tx,
                "outer_oversize": self.outer_oversize}


@dataclass(frozen=True, slots=True)
class FragStats:
    """What the fragmentation policy did (vpnhub/net/fragment.py)."""

    policy: str = "none"
    packets_fragmented: int = 0
    fragments_made: int = 0
    icmp_sent: int = 0
    icmp_suppressed: int = 0
    df_cleared: int = 0
    outer_oversize: int = 0
    outer_mtu: int = 1500

    def as_dict(self) -> dict[str, object]:
        return {"policy": self.policy, "packets_fragmented": self.packets_fragmented,
                "fragments_made": self.fragments_made, "icmp_sent": self.icmp_sent,
                "icmp_suppressed": self.icmp_suppressed, "df_cleared": self.df_cleared,
                "outer_oversize": self.outer_oversize, "outer_mtu": self.outer_mtu}


@dataclass(frozen=True, slots=True)
class CtcpConnStats:
    """One Cisco IPsec over TCP connection (either role)."""

    addr: Address
    local: Address
    role: str
    state: str  # "connecting" or "established"
    ike_rx: int = 0
    ike_tx: int = 0
    esp_rx: int = 0
    esp_tx: int = 0
    rx_bytes: int = 0
    tx_bytes: int = 0
    pending: int = 0  # bytes queued, not yet taken by the socket

    def as_dict(self) -> dict[str, object]:
        return {"addr": self.addr, "local": self.local, "role": self.role,
                "state": self.state, "ike_rx": self.ike_rx, "ike_tx": self.ike_tx,
                "esp_rx": self.esp_rx, "esp_tx": self.esp_tx, "rx_bytes": self.rx_bytes,
                "tx_bytes": self.tx_bytes, "pending": self.pending}


@dataclass(frozen=True, slots=True)
class CtcpStats:
    """IPsec over TCP: listeners, connection counts and the live connections."""

    listening: tuple[Address, ...] = ()
    accepted: int = 0
    connected: int = 0
    closed: int = 0
    ike_rx: int = 0
    ike_tx: int = 0
    connections: tuple[CtcpConnStats, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {"listening": list(self.listening), "accepted": self.accepted,
                "connected": self.connected, "closed": self.closed, "ike_rx": self.ike_rx,
                "ike_tx": self.ike_tx,
                "connections": [c.as_dict() for c in self.connections]}


@dataclass(frozen=True, slots=True)
class WorkerStats:
    """One data-plane worker process (``[dataplane] workers`` > 1, net/workers.py).

    ``packets``: packets it read (TUN, UDP 4500, raw ESP, Cisco UDP);
    ``cpu_seconds``: its user + system time (proc(5)); ``handed_over``/``handed_in``:
    LAN packets passed to / taken from the worker owning the client (net/handover.py).
    """

    index: int
    pid: int
    restarts: int = 0
    packets: int = 0
    cpu_seconds: float = 0.0
    sas: int = 0
    peers: int = 0
    handed_over: int = 0
    handed_in: int = 0
    handover_dropped: int = 0

    def as_dict(self) -> dict[str, object]:
        return {"index": self.index, "pid": self.pid, "restarts": self.restarts,
                "packets": self.packets, "cpu_seconds": round(self.cpu_seconds, 2),
                "sas": self.sas, "peers": self.peers, "handed_over": self.handed_over,
                "handed_in": self.handed_in, "handover_dropped": self.handover_dropped}


@dataclass(frozen=True, slots=True)
class DataplaneStats:
    """Every counter of a data plane at one instant.

    ``drops``: the data plane's own drops; ``drops_total``: those plus every
    SA's, live and ended.  ``esp_totals``: traffic of the live SAs plus the
    ended ones, so it never goes down (Prometheus counters must only grow).

    System calls per packet (issue 16): ``udp_rx_calls`` receives on the UDP
    sockets (4500, Cisco UDP, keepalives, and the IKE socket with the split)
    returned ``udp_rx_datagrams`` datagrams (a GRO train counts its segments);
    ``udp_tx_calls`` ESP sends over UDP carried ``udp_tx_datagrams``
    (a GSO train counts its segments). ``gso_fallbacks``: trains the kernel
    refused, sent one by one. ``esp_via_ike_socket``: datagrams of a train led
    by IKE that the IKE socket handed to the data plane. ``udp_gro`` /
    ``udp_gso``: whether the kernel took UDP_GRO on the 4500 socket and
    UDP_SEGMENT on a UDP socket. ``moderation_waits``: the waits of the loop's
    interrupt moderation (``[dataplane] moderation_us``, Dataplane._run_moderated).

    The TUN side (issue 16, vpnhub/net/tunoffload.py): ``tun_rx_calls`` reads
    returned ``tun_rx`` packets (a super-packet counts its segments, of which
    ``tun_rx_super`` were split); ``tun_tx_calls`` writes carried ``tun_tx``
    packets (``tun_tx_super`` of them coalesced super-packets);
    ``tun_offload``: whether the TUN has the virtio_net_hdr (IFF_VNET_HDR).
    """

    tun_rx: int = 0
    tun_rx_calls: int = 0
    tun_tx: int = 0
    tun_tx_calls: int = 0
    tun_rx_super: int = 0
    tun_tx_super: int = 0
    tun_offload: bool = False
    udp_rx: int = 0
    esp_rx: int = 0
    ike_rx: int = 0
    ike_tx: int = 0
    keepalive_rx: int = 0
    keepalive_tx: int = 0
    cisco_udp_rx: int = 0
    udp_rx_calls: int = 0
    udp_rx_datagrams: int = 0
    udp_tx_calls: int = 0
    udp_tx_datagrams: int = 0
    gso_fallbacks: int = 0
    esp_via_ike_socket: int = 0
    moderation_waits: int = 0
    udp_gro: bool = False
    udp_gso: bool = False
    drops: Mapping[str, int] = field(default_factory=dict)
    drops_total: Mapping[str, int] = field(default_factory=dict)
    esp_totals: Traffic = field(default_factory=Traffic)
    control_dropped: int = 0
    frag: FragStats = field(default_factory=FragStats)
    ctcp: CtcpStats = field(default_factory=CtcpStats)
    sas: tuple[SaStats, ...] = ()
    peers: tuple[PeerStats, ...] = ()
    workers: tuple[WorkerStats, ...] = ()  # empty with the in-process data plane

    def sa(self, spi: int, direction: Direction) -> SaStats | None:
        """The SA with this SPI and direction, if installed."""
        return next((s for s in self.sas if s.spi == spi and s.direction == direction), None)

    def peer(self, addr: Address) -> PeerStats | None:
        """The first peer entry with this address (any transport)."""
        return next((p for p in self.peers if p.addr == addr), None)

    def as_dict(self) -> dict[str, object]:
        """The JSON-ready shape (plain dicts, lists and numbers)."""
        return {
            "tun_rx": self.tun_rx, "udp_rx": self.udp_rx, "esp_rx": self.esp_rx,
            "tun_rx_calls": self.tun_rx_calls, "tun_tx": self.tun_tx,
            "tun_tx_calls": self.tun_tx_calls, "tun_rx_super": self.tun_rx_super,
            "tun_tx_super": self.tun_tx_super, "tun_offload": self.tun_offload,
            "ike_rx": self.ike_rx, "ike_tx": self.ike_tx,
            "keepalive_rx": self.keepalive_rx, "keepalive_tx": self.keepalive_tx,
            "cisco_udp_rx": self.cisco_udp_rx,
            "udp_rx_calls": self.udp_rx_calls, "udp_rx_datagrams": self.udp_rx_datagrams,
            "udp_tx_calls": self.udp_tx_calls, "udp_tx_datagrams": self.udp_tx_datagrams,
            "gso_fallbacks": self.gso_fallbacks, "esp_via_ike_socket": self.esp_via_ike_socket,
            "moderation_waits": self.moderation_waits,
            "udp_gro": self.udp_gro, "udp_gso": self.udp_gso,
            "drops": dict(self.drops), "drops_total": dict(self.drops_total),
            "esp_totals": self.esp_totals.as_dict(),
            "control_dropped": self.control_dropped,
            "frag": self.frag.as_dict(),
            "ctcp": self.ctcp.as_dict(),
            "sas": [s.as_dict() for s in self.sas],
            "peers": [p.as_dict() for p in self.peers],
            **({"workers": [w.as_dict() for w in self.workers]} if self.workers else {}),
        }


@dataclass(frozen=True, slots=True)
class SaCounters:
    """Every SA's traffic as flat arrays, and the totals (the answer to ``GetCounters``).

    What the manager samples every 10 s, and asks every 2 s without the arrays for
    the totals (issue 13): with 10,000 sessions a
    :class:`DataplaneStats` is 20,000 ``SaStats`` objects built in the data-plane
    thread and walked on the event loop; here entry ``i`` of each ``*_in`` array
    is one inbound SA (and of each ``*_out`` array one outbound SA), so the
    answer is eight arrays whatever the number of SAs.  ``totals``: every other
    counter (running totals, drops, ...) without the SA and peer lists.
    ``active_*``: the SA's ``last_activity`` (data-plane monotonic seconds).
    """

    totals: DataplaneStats = field(default_factory=DataplaneStats)
    spi_in: array[int] = field(default_factory=lambda: array("L"))
    bytes_in: array[int] = field(default_factory=lambda: array("Q"))
    packets_in: array[int] = field(default_factory=lambda: array("Q"))
    active_in: array[float] = field(default_factory=lambda: array("d"))
    spi_out: array[int] = field(default_factory=lambda: array("L"))
    bytes_out: array[int] = field(default_factory=lambda: array("Q"))
    packets_out: array[int] = field(default_factory=lambda: array("Q"))
    active_out: array[float] = field(default_factory=lambda: array("d"))
    # sparse: only inbound SAs that dropped something (usually none of 20,000)
    drops_in: dict[int, dict[str, int]] = field(default_factory=dict)
    # NAT keepalives (received, sent) by peer address (RFC 3948 4)
    keepalives: Keepalives = field(default_factory=lambda: Keepalives())


class Keepalives:
    """NAT keepalives received and sent by peer (RFC 3948 4), compact: peer ``i`` is
    line ``i`` of ``peers`` (``host:port``) with ``rx[i]`` and ``tx[i]``; only peers
    that sent or got one.

    Part of every per-SA counters answer, unpickled on the concentrator's loop: a
    dict of address tuples was two tuples per peer (20,000 young objects an answer
    with 10,000 NAT-T peers, ~26 young collections, then kept for a sample and so
    promoted: young GC pauses of 32-71 ms, issue 13); one string and two arrays are
    three objects, and the look-up index (``get``) holds strings and ints, which the
    garbage collector does not track.
    """

    __slots__ = ("_index", "_lines", "peers", "rx", "tx")

    def __init__(self, peers: str = "", rx: array[int] | None = None,
                 tx: array[int] | None = None) -> None:
        self.peers = peers
        self.rx = rx if rx is not None else array("Q")
        self.tx = tx if tx is not None else array("Q")
        self._lines: list[str] = []  # being added (``add``), joined into `peers` once read
        self._index: dict[str, int] | None = None  # "host:port" -> i, built by ``get``

    @classmethod
    def of(cls, counts: Iterable[tuple[Address, int, int]]) -> Keepalives:
        """From (address, received, sent) rows; a row of zeros is left out."""
        out = cls()
        for addr, rx, tx in counts:
            if rx or tx:
                out.add(addr, rx, tx)
        return out

    def __reduce__(self) -> tuple[type[Keepalives], tuple[object, ...]]:
        return (Keepalives, (self._joined(), self.rx, self.tx))  # not the index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Keepalives) and self.as_dict() == other.as_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __len__(self) -> int:
        return len(self.rx)

    def add(self, addr: Address, rx: int, tx: int) -> None:
        self._lines.append(f"{addr[0]}:{addr[1]}")
        self.rx.append(rx)
        self.tx.append(tx)
        self._index = None

    def extend(self, more: Keepalives) -> None:
        """``more``'s peers added (another worker's: a peer is one worker's)."""
        if more._joined():
            self._lines.append(more.peers)
        self.rx.extend(more.rx)
        self.tx.extend(more.tx)
        self._index = None

    def get(self, addr: Address) -> tuple[int, int]:
        """(received, sent) of the peer at `addr`, (0, 0) if none."""
        if self._index is None:  # once per answer
            names = self._joined().split("\n") if self.rx else []
            self._index = dict(zip(names, range(len(names)), strict=True))
        i = self._index.get(f"{addr[0]}:{addr[1]}")
        return (0, 0) if i is None else (self.rx[i], self.tx[i])

    def as_dict(self) -> dict[Address, tuple[int, int]]:
        """Every peer's (received, sent) by address."""
        names = self._joined().split("\n") if self.rx else []
        out: dict[Address, tuple[int, int]] = {}
        for name, rx, tx in zip(names, self.rx, self.tx, strict=True):
            host, port = name.rsplit(":", 1)
            out[(host, int(port))] = (rx, tx)
        return out

    def _joined(self) -> str:
        """`peers` with the lines added since (one string: one object to unpickle)."""
        if self._lines:
            self.peers = "\n".join([self.peers, *self._lines] if self.peers else self._lines)
            self._lines = []
        return self.peers


def counters_of(stats: DataplaneStats) -> SaCounters:
    """The compact form of a full snapshot (for a handle that only has the full one)."""
    ins = [s for s in stats.sas if s.direction == "in"]
    outs = [s for s in stats.sas if s.direction == "out"]
    return SaCounters(
        replace(stats, sas=(), peers=()),
        array("L", [s.spi for s in ins]), array("Q", [s.bytes_in for s in ins]),
        array("Q", [s.packets_in for s in ins]), array("d", [s.last_activity for s in ins]),
        array("L", [s.spi for s in outs]), array("Q", [s.bytes_out for s in outs]),
        array("Q", [s.packets_out for s in outs]),
        array("d", [s.last_activity for s in outs]),
        {s.spi: dict(s.drops) for s in ins if s.drops},
        Keepalives.of((p.addr, p.keepalives_rx, p.keepalives_tx) for p in stats.peers))


def _sum_dicts(ds: list[Mapping[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in ds:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out


_SUMMED = ("tun_rx", "tun_rx_calls", "tun_tx", "tun_tx_calls", "tun_rx_super", "tun_tx_super",
           "udp_rx", "esp_rx", "ike_rx", "ike_tx", "keepalive_rx", "keepalive_tx",
           "cisco_udp_rx", "control_dropped", "udp_rx_calls", "udp_rx_datagrams",
           "udp_tx_calls", "udp_tx_datagrams", "gso_fallbacks", "esp_via_ike_socket",
           "moderation_waits")


def merge_stats(parts: list[DataplaneStats],
                workers: tuple[WorkerStats, ...] = ()) -> DataplaneStats:
    """One snapshot of several data-plane workers: counters summed, lists joined."""
    if not parts:
        return DataplaneStats(workers=workers)
    first = parts[0]
    frags = [p.frag for p in parts]
    ctcps = [p.ctcp for p in parts]
    totals = [p.esp_totals for p in parts]
    frag: dict[str, Any] = {n: _sum_attr(frags, n) for n in (
        "packets_fragmented", "fragments_made", "icmp_sent", "icmp_suppressed", "df_cleared",
        "outer_oversize")}
    ctcp: dict[str, Any] = {n: _sum_attr(ctcps, n)
                            for n in ("accepted", "connected", "closed", "ike_rx", "ike_tx")}
    summed: dict[str, Any] = {n: _sum_attr(parts, n) for n in _SUMMED}
    return replace(
        first, **summed,
        udp_gro=any(p.udp_gro for p in parts), udp_gso=any(p.udp_gso for p in parts),
        tun_offload=any(p.tun_offload for p in parts),
        drops=_sum_dicts([p.drops for p in parts]),
        drops_total=_sum_dicts([p.drops_total for p in parts]),
        esp_totals=Traffic(**{n: _sum_attr(totals, n) for n in (
            "bytes_in", "packets_in", "bytes_out", "packets_out")}),
        frag=replace(first.frag, **frag),
        ctcp=replace(first.ctcp, listening=tuple(a for c in ctcps for a in c.listening),
                     connections=tuple(x for c in ctcps for x in c.connections), **ctcp),
        sas=tuple(s for p in parts for s in p.sas),
        peers=tuple(x for p in parts for x in p.peers), workers=workers)


def _sum_attr(objs: Sequence[object], name: str) -> int:
    return sum(int(getattr(o, name)) for o in objs)


def merge_counters(parts: list[SaCounters]) -> SaCounters:
    """``SaCounters`` of several workers as one (arrays joined, totals merged)."""
    out = SaCounters(merge_stats([p.totals for p in parts]))
    for p in parts:
        for name in ("spi_in", "bytes_in", "packets_in", "active_in", "spi_out", "bytes_out",
                     "packets_out", "active_out"):
            getattr(out, name).extend(getattr(p, name))
        out.drops_in.update(p.drops_in)
        out.keepalives.extend(p.keepalives)
    return out
