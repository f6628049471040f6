"""``DataplaneHandle``: what a control plane may do with a data plane.

The concentrator and the client run IKE; the data plane forwards ESP.  This
is the whole contract between them, so that the control plane can be driven
against an in-memory fake (tests/net/fake_dataplane.py) and, later, against
data-plane worker processes:

- install inbound and outbound SAs, remove an SA, follow a peer to a new
  address (NAT rebinding, RFC 3948 2.2), NAT keepalives (RFC 3948 4);
- send an IKE message on UDP 4500 or over cTCP (the data plane owns those
  sockets), close a cTCP connection; hand it the ESP another socket read;
- read the counters (:class:`~vpnhub.net.stats.DataplaneStats`);
- take the events the data plane queued (:mod:`vpnhub.net.messages`:
  IKE datagrams, peers that moved, SAs out of sequence numbers, closed cTCP
  connections, fragmentation warnings, debug lines).  The owner learns that
  events wait from the ``notify`` callback it gave the data plane's inbox.

Installing is fire-and-forget, as it is over a queue to another thread or
process: the data plane applies commands in order, so an SA removed after it
was added is gone.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol

from vpnhub.esp.sa import EspSA, SaParams
from vpnhub.ike.transport import Transport
from vpnhub.net.messages import Address, Event
from vpnhub.net.stats import (
    CtcpConnStats,
    CtcpStats,
    DataplaneStats,
    Direction,
    FragStats,
    PeerStats,
    SaCounters,
    SaStats,
    Traffic,
)

__all__ = ["CtcpConnStats", "CtcpStats", "DataplaneHandle", "DataplaneStats", "Direction",
           "FragStats", "PeerStats", "SaCounters", "SaStats", "Traffic"]


class DataplaneHandle(Protocol):
    """A data plane as the control plane sees it (``Dataplane``, ``FakeDataplane``)."""

    def add_inbound(self, sa: SaParams | EspSA, peer: Address, *, udp_encap: bool = True,
                    allowed_src: str | None = None, transport: str = "") -> None:
        """Accept ESP for ``sa.spi`` from ``peer`` (``AddInbound``)."""
        ...

    def add_outbound(self, sa: SaParams | EspSA, peer: Address, *, udp_encap: bool = True,
                     dst: str | None = None, transport: str = "") -> None:
        """Encrypt what is routed to ``dst`` (None: default) to ``peer`` (``AddOutbound``)."""
        ...

    def remove_sa(self, spi: int) -> None:
        """Remove the inbound and/or outbound SA with this SPI (``RemoveSA``)."""
        ...

    def batch(self) -> AbstractContextManager[None]:
        """A context whose commands reach the data plane together, at its end."""
        ...

    def flush_batch(self) -> None:
        """Hand the open batch's commands over now and go on batching (before an IKE
        message leaves that lets the peer use an SA they install)."""
        ...

    def update_peer(self, old: Address, new: Address) -> None:
        """Send what went to ``old`` to ``new`` from now on (``UpdatePeer``)."""
        ...

    def set_keepalive(self, peer: Address, interval: float | None,
                      transport: str = "") -> None:
        """NAT keepalives to ``peer`` every ``interval`` s of silence; None stops them."""
        ...

    def send_ike(self, message: bytes, addr: Address,
                 transport: Transport = Transport.NATT) -> None:
        """Send an IKE message on UDP 4500 (``NATT``) or over cTCP (``CTCP``).

        Raises ``OSError`` (``ConnectionError`` for cTCP) when it cannot be sent.
        """
        ...

    def ctcp_close(self, addr: Address) -> None:
        """Close the cTCP connection with remote address ``addr`` (``CtcpClose``)."""
        ...

    def hand_over(self, datagrams: list[bytes], addr: Address) -> None:
        """UDP 4500 datagrams from ``addr`` that another socket read (ESP in a GRO
        train led by IKE, vpnhub/net/ikesplit.py): processed as if the data plane
        had read them. Thread-safe, bounded (the excess is dropped and counted)."""
        ...

    async def stats(self) -> DataplaneStats:
        """Every counter, as one consistent snapshot (``GetStats``)."""
        ...

    async def counters(self, sas: bool = True) -> SaCounters:
        """Every SA's traffic as arrays, and the totals (``GetCounters``): the cheap
        answer for periodic sampling (no object per SA). `sas` False: the totals
        only (the arrays may be left empty)."""
        ...

    def events(self) -> list[Event]:
        """The events queued since the last call, oldest first."""
        ...
