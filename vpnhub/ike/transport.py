"""Which transport an IKE message came by or goes out on.

A port number is not a transport: the concentrator's IKE and NAT-T ports are
configurable, and Cisco IPsec over TCP (cTCP) carries IKE inside a TCP stream
on a port of its own. The engine keeps the real local port for NAT-D (RFC 3947
section 3.2 hashes it) and labels every message with one of these, so that a
driver sends each datagram out of the right socket without guessing from ports.
"""

from __future__ import annotations

from enum import Enum


class Transport(Enum):
    """The way an IKE message travels between the peers."""

    IKE = "udp"  # plain UDP, the IKE port (500): RFC 2409
    NATT = "natt"  # UDP 4500 with the non-ESP marker: RFC 3947 section 4, RFC 3948 2.2
    CTCP = "ctcp"  # Cisco IPsec over TCP: IKE and ESP framed in one TCP connection


def transport_for_port(local_port: int, *, over_tcp: bool = False) -> Transport:
    """The transport the default ports imply (500 / 4500), for callers that only know
    a port: the engine's own initiators and the in-memory tests. Drivers listening on
    configured ports say the transport explicitly."""
    if over_tcp:
        return Transport.CTCP
    return Transport.NATT if local_port == 4500 else Transport.IKE
