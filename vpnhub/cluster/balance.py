"""Which member serves a new client: the VPN 3000 / ASA load-balancing rule.

The member holding the virtual cluster address (the VRRP master) answers IKE on
it and, right after phase 1, sends each new client to the least-loaded member
with the Cisco load-balance notify (40501). Load is a member's active sessions
over its session limit. The master keeps the client itself while no other
member is at least `KEEP_MARGIN` (1 percentage point) less loaded: Cisco's ASA
"redirects until the other members are 1 % higher", so a balanced cluster does
not bounce every client and a client is never redirected for a rounding
difference.

Pure: no database, no clock. The caller passes a snapshot of the members
(`MemberLoad`, as the cluster directory last saw them) and gets a decision.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["KEEP_MARGIN", "Balancer", "MemberLoad", "choose_member"]

KEEP_MARGIN = 0.01  # one percentage point of load


@dataclass(frozen=True)
class MemberLoad:
    """One member as the directory last saw it."""

    name: str
    public_address: ipaddress.IPv4Address
    sessions: int
    limit: int
    alive: bool = True  # heartbeat within member_timeout
    # it held the virtual address at its last heartbeat (members.holds_virtual_address)
    holds_virtual_address: bool = False

    @property
    def load(self) -> float:
        """Active sessions over the session limit; a member with no room is full."""
        return self.sessions / self.limit if self.limit > 0 else 1.0


def choose_member(members: Sequence[MemberLoad], me: str) -> MemberLoad | None:
    """The member a new client should be redirected to, or None to keep it here.

    Only live members with room are candidates; ties go to the name that sorts
    first, so every master decides the same way for the same snapshot.

    VRRP gives the virtual address to one member at a time: when this member
    holds it and another member's last heartbeat says that one held it, that
    member has lost it since, almost always because it died (its keepalived
    check failed). Its heartbeat is still younger than member_timeout for a
    few seconds, so without this rule the new master would send the dead
    member's own clients, reconnecting through the virtual address, straight
    back to it. A live former master clears its flag at its next heartbeat.
    """
    mine = next((m for m in members if m.name == me), None)
    deposed = mine is not None and mine.holds_virtual_address
    others = [m for m in members
              if m.name != me and m.alive and m.sessions < m.limit
              and not (deposed and m.holds_virtual_address)]
    if not others:
        return None
    best = min(others, key=lambda m: (m.load, m.name))
    if mine is None or mine.sessions >= mine.limit:
        return best
    return best if best.load + KEEP_MARGIN <= mine.load else None


class Balancer(Protocol):
    """What the concentrator core asks after a client's phase 1 on the virtual
    address: where to send it (notify 40501 carries the address), or None to
    serve it here. The cluster member implements it from its directory snapshot;
    it must answer from memory (it runs on the IKE loop)."""

    def redirect_target(self) -> ipaddress.IPv4Address | None: ...
