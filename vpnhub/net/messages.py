"""What the control plane and the data plane say to each other: commands and events.

Every message is a small frozen dataclass of plain data (addresses, SPIs,
:class:`~vpnhub.esp.sa.SaParams`, stable names), so that the same messages
can be pickled over a socketpair to data-plane worker processes later.  Key
material only travels inside ``SaParams``, whose keys are left out of
``repr``: a command may be logged, its keys never are.

Two kinds of transport meet here:

- IKE datagrams (:class:`IkeDatagram`, ``send_ike``) are labelled with the
  engine's :class:`~vpnhub.ike.transport.Transport`: ``NATT`` (UDP 4500 after
  the non-ESP marker, RFC 3948 2.2) or ``CTCP`` (Cisco IPsec over TCP).  The
  data plane never sees plain IKE on UDP 500: the IKE socket is the control
  plane's.
- ESP peers (the ``transport`` field of :class:`AddInbound`,
  :class:`AddOutbound`, :class:`SetKeepalive`, :class:`OuterFragmentation`)
  are one of the ``TRANSPORT_*`` names below: the socket ESP leaves by.  Cisco
  IPsec over UDP and raw ESP carry no IKE, so they have no ``Transport``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from vpnhub.esp.sa import EspSA, SaParams
from vpnhub.ike.transport import Transport
from vpnhub.net.fragment import OUTER_FRAGMENTED

Address = tuple[str, int]

# ESP transports (the ``transport`` field of the SA commands).
TRANSPORT_NATT: Final = "natt"  # ESP in UDP 4500 (RFC 3948), the ``udp`` socket
TRANSPORT_ESP: Final = "esp"  # raw ESP, IP protocol 50, the ``esp`` socket
TRANSPORT_CISCO_UDP: Final = "cisco-udp"  # Cisco IPsec over UDP, the ``cisco_udp`` socket
TRANSPORT_CTCP: Final = "ctcp"  # Cisco IPsec over TCP, one connection per peer
# ESP in UDP 4500 as "natt", but to and from the cluster's virtual address (issue 17,
# docs/CLUSTER.md "Redirect"): sent from the ``udp_virtual`` socket, so that the
# client's PAT, which mapped the virtual address, lets it through; received on the
# virtual address's socket in the control plane and handed over (``hand_over``).
TRANSPORT_NATT_VIRTUAL: Final = "natt-virtual"
TRANSPORTS: Final = (TRANSPORT_NATT, TRANSPORT_ESP, TRANSPORT_CISCO_UDP, TRANSPORT_CTCP,
                     TRANSPORT_NATT_VIRTUAL)
# The transports that carry ESP in UDP with NAT keepalives (RFC 3948) on port 4500.
NATT_TRANSPORTS: Final = frozenset({TRANSPORT_NATT, TRANSPORT_NATT_VIRTUAL})

# Reasons a cTCP connection ends (CtcpClosed.reason; the data plane counts them in
# its ``drops`` too, as it does the framing errors of vpnhub.net.ctcp).
CTCP_EOF: Final = "ctcp_eof"
CTCP_RESET: Final = "ctcp_reset"
CTCP_CONNECT_FAILED: Final = "ctcp_connect_failed"
CTCP_CONNECT_TIMEOUT_REASON: Final = "ctcp_connect_timeout"
CTCP_SETUP_TIMEOUT_REASON: Final = "ctcp_setup_timeout"  # no SA bound in time
CTCP_ESP_BEFORE_IKE: Final = "ctcp_esp_before_ike"  # server: the first frame must be IKE
CTCP_OVERFLOW: Final = "ctcp_send_overflow"  # peer stopped reading; IKE could not be queued
CTCP_CLOSED_BY_CONTROL: Final = "ctcp_closed"  # CtcpClose command or Dataplane.close()
CTCP_REPLACED: Final = "ctcp_replaced"  # a new connection from the same address


# -- events to the control plane ---------------------------------------------


@dataclass(frozen=True, slots=True)
class IkeDatagram:
    """An IKE message that arrived on UDP 4500 (non-ESP marker removed) or over cTCP.

    ``transport`` is ``Transport.NATT`` (UDP 4500) or ``Transport.CTCP``;
    answer on the same one (``send_ike(message, addr, transport)``).
    """

    message: bytes
    addr: Address
    transport: Transport = Transport.NATT


@dataclass(frozen=True, slots=True)
class PeerMoved:
    """Authentic ESP for ``spi`` came from ``new`` instead of ``old`` (NAT rebinding)."""

    spi: int
    old: Address
    new: Address


@dataclass(frozen=True, slots=True)
class SaExhausted:
    """Outbound SA ``spi`` sent 2^32-1 packets and refuses more: rekey now.

    RFC 4303 3.3.3: the sequence number must not cycle; a new SA must be
    negotiated before the 2^32nd packet.
    """

    spi: int


@dataclass(frozen=True, slots=True)
class CtcpClosed:
    """The cTCP connection with remote address ``addr`` ended (``reason``: a stable name)."""

    addr: Address
    reason: str


@dataclass(frozen=True, slots=True)
class OuterFragmentation:
    """Policy "none": packets to ``peer`` leave as outer packets above ``outer_mtu``.

    The kernel fragments them; a NAT device that drops IP fragments loses
    them.  Sent at most once a minute per peer (``count`` so far).
    """

    peer: Address
    transport: str
    inner_len: int
    outer_len: int
    outer_mtu: int
    count: int

    @property
    def message(self) -> str:
        return (f"{OUTER_FRAGMENTED}: {self.inner_len}-byte inner packets to"
                f" {self.peer[0]}:{self.peer[1]} become {self.outer_len}-byte outer packets"
                f" (outer MTU {self.outer_mtu}); the kernel fragments them and NAT devices"
                f" that drop IP fragments lose them ({self.count} so far)")


@dataclass(frozen=True, slots=True)
class DebugLine:
    """A line for the IPSECDBG event class (severity 7-9), made only when someone keeps it
    (``Dataplane.debug_severity``): never per packet, drops are summarised per SA."""

    severity: int
    text: str
    peer: Address | None = None


Event = IkeDatagram | PeerMoved | SaExhausted | CtcpClosed | OuterFragmentation | DebugLine


# -- commands from the control plane -----------------------------------------


@dataclass(frozen=True)
class AddInbound:
    """Accept ESP with ``sa.spi`` from ``peer``.

    ``allowed_src``: the only inner IPv4 source accepted (the client's
    Mode Config address, on the concentrator); None accepts any.
    ``transport``: "" = "natt" if ``udp_encap`` else "esp"; or "cisco-udp", "ctcp",
    "natt-virtual".
    ``sa`` is ``SaParams`` across processes; an ``EspSA`` (in-process tests
    and benchmarks) is not picklable.
    """

    sa: SaParams | EspSA
    peer: Address
    udp_encap: bool = True
    allowed_src: str | None = None
    transport: str = ""


@dataclass(frozen=True)
class AddOutbound:
    """Encrypt packets routed to ``dst`` (address, CIDR, or None = default) to ``peer``."""

    sa: SaParams | EspSA
    peer: Address
    udp_encap: bool = True
    dst: str | None = None
    transport: str = ""


@dataclass(frozen=True)
class RemoveSA:
    """Remove the inbound and/or outbound SA with this SPI (no-op if absent)."""

    spi: int


@dataclass(frozen=True)
class UpdatePeer:
    """Send everything that went to ``old`` to ``new`` from now on (NAT rebinding)."""

    old: Address
    new: Address


@dataclass(frozen=True)
class SetKeepalive:
    """Send NAT keepalives to ``peer`` every ``interval`` s of silence (None: stop).

    ``transport``: "" or "natt" (0xFF on 4500; "natt-virtual" the same from the
    cluster's virtual address), "cisco-udp" (00 00 00 00 FF
    on the Cisco UDP port); "ctcp" uses TCP keepalives on the connection.
    """

    peer: Address
    interval: float | None
    transport: str = ""


@dataclass(frozen=True)
class GetStats:
    """Snapshot of every counter (result: a :class:`~vpnhub.net.stats.DataplaneStats`)."""


@dataclass(frozen=True)
class GetCounters:
    """Every SA's traffic as arrays, and the totals (result: a
    :class:`~vpnhub.net.stats.SaCounters`): the manager's cheap periodic sample.

    ``sas`` False: the totals only, the per-SA arrays empty (the manager's 2 s
    refresh of the totals between its per-session samples, issue 13)."""

    sas: bool = True


@dataclass(frozen=True)
class CtcpClose:
    """Close the cTCP connection with remote address ``addr`` (result: True if there was one)."""

    addr: Address


Command = (AddInbound | AddOutbound | RemoveSA | UpdatePeer | SetKeepalive | GetStats
           | GetCounters | CtcpClose)
