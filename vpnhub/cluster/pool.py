"""A group's address pool in a cluster: addresses only from this member's blocks.

The database grants each block of a group's `address_pool` (`[cluster]
pool_block` prefix length) to one member (vpnhub/cluster/db.py, an exclusion
constraint), so two members can never hand out the same address, and the
private network routes each block to its member. Inside its blocks a member
allocates alone, in memory and O(1) on the IKE loop, as `MemoryAddressPool`
does (a cursor over never-used addresses, then the FIFO of released ones; the
address a user had before, if free; holds for the users of sessions a crash
lost). Every lease is also recorded in the database by the member's thread
(the `LeaseSink`, vpnhub/cluster/member.py); when few addresses are left the
pool asks for another block, in the background.

While the database is unreachable a new address is refused
(`ClusterPoolUnavailable`, reason `cluster_database_unavailable`): a member
cut off long enough is declared dead and its blocks go to others, so it must
not hand out addresses it may no longer own. A phase 1 rekey taking over its
session's address (release, then claim of the same address) still works.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from vpnhub.session.pool import PoolError, PoolExhausted, PoolIndex

if TYPE_CHECKING:
    from vpnhub.config import GroupConfig

__all__ = ["ClusterAddressPool", "ClusterPoolExhausted", "ClusterPoolUnavailable", "LeaseSink",
           "session_id"]


def session_id(key: Hashable) -> str:
    """A session key as the directory and the leases name it: the IKE cookies in hex
    (as the manager's and RADIUS's session ids)."""
    if isinstance(key, tuple) and len(key) == 2 and all(isinstance(k, bytes) for k in key):
        return "".join(k.hex() for k in key)
    return str(key)


class ClusterPoolUnavailable(PoolError):
    """No new address while the cluster database is unreachable."""

    reason = "cluster_database_unavailable"

    def __init__(self, name: str, why: str) -> None:
        self.name = name
        super().__init__(f"address pool of group '{name}': the cluster database is unreachable"
                         f" ({why or 'not joined yet'}); no new address until it returns")


class ClusterPoolExhausted(PoolExhausted):
    """Every address of this member's blocks is in use and no block was free."""

    def __init__(self, name: str, network: ipaddress.IPv4Network, size: int,
                 blocks: int) -> None:
        super().__init__(name, network, size)
        self.args = (f"address pool of group '{name}' ({network}) is exhausted on this member:"
                     f" all {size} addresses of its {blocks} block(s) in use, no other block"
                     " free or granted yet",)


class LeaseSink(Protocol):
    """Where the pool records leases (the member's thread writes them)."""

    @property
    def database_ok(self) -> bool: ...

    @property
    def last_error(self) -> str: ...

    def lease(self, group: str, address: ipaddress.IPv4Address, key: Hashable,
              user: str) -> None: ...

    def unlease(self, group: str, address: ipaddress.IPv4Address) -> None: ...

    def want_block(self, group: str) -> None: ...


@dataclass
class _Block:
    network: ipaddress.IPv4Network
    first: int  # usable range, inside the pool's usable range
    last: int
    cursor: int

    def __contains__(self, value: int) -> bool:
        return self.first <= value <= self.last


class ClusterAddressPool(PoolIndex):
    """An `AddressPool` (vpnhub/session/pool.py) over this member's blocks of a group."""

    def __init__(self, group: GroupConfig, sink: LeaseSink, *, low_water: int | None = None,
                 block_prefix: int = 26) -> None:
        self.name = group.name
        self.network = group.address_pool
        self.sink = sink
        base = int(self.network.network_address)
        if self.network.prefixlen >= 31:  # RFC 3021: no network/broadcast address
            first, last = base, int(self.network.broadcast_address)
        else:
            first, last = base + 1, int(self.network.broadcast_address) - 1
        if group.reserve_first_address:
            first += 1
        self._first, self._last = first, last
        block_size = 2 ** (32 - max(block_prefix, self.network.prefixlen))
        # ask for the next block while half of one is still free: logins keep coming
        # while the member's thread claims it (a few ms, a round trip or two)
        self.low_water = low_water if low_water is not None else max(2, block_size // 2)
        self._blocks: list[_Block] = []
        self.size = 0
        self._free: OrderedDict[int, None] = OrderedDict()
        self._by_key: dict[Hashable, int] = {}
        self._by_addr: dict[int, Hashable] = {}
        self._user_of: dict[Hashable, str] = {}
        self._remembered: dict[Hashable, int] = {}  # identity -> last address
        self._remembered_by_addr: dict[int, Hashable] = {}
        self._held: dict[int, Hashable] = {}
        self._asked = False  # a block is being claimed
        self._last_released: int | None = None  # a rekey's take-over claims it back

    # -- blocks (the member calls these on the loop)
    @property
    def blocks(self) -> list[ipaddress.IPv4Network]:
        return [b.network for b in self._blocks]

    def add_block(self, network: ipaddress.IPv4Network) -> None:
        """A block granted to this member: its addresses join the pool."""
        self._asked = False
        if any(b.network == network for b in self._blocks) or \
                not network.subnet_of(self.network):
            return
        first = max(int(network.network_address), self._first)
        last = min(int(network.broadcast_address), self._last)
        if first > last:
            return
        self._blocks.append(_Block(network, first, last, first))
        self.size += last - first + 1

    def block_answered(self) -> None:
        """The member's claim ended without a block: a later allocation may ask again."""
        self._asked = False

    def remove_block(self, network: ipaddress.IPv4Network) -> list[Hashable]:
        """A block no longer ours: its addresses leave the pool; the keys of the
        sessions that had one (the caller ends them)."""
        block = next((b for b in self._blocks if b.network == network), None)
        if block is None:
            return []
        self._blocks.remove(block)
        self.size -= block.last - block.first + 1
        keys = [k for k, v in self._by_key.items() if v in block]
        for k in keys:
            value = self._by_key.pop(k)
            del self._by_addr[value]
            self._user_of.pop(k, None)
        for table in (self._free, self._held, self._remembered_by_addr):
            for value in [v for v in table if v in block]:
                del table[value]
        self._remembered = {i: v for i, v in self._remembered.items() if v not in block}
        return keys

    # -- queries (in_use, available, held, address_of, owner_of: PoolIndex)
    def _ours(self, value: int) -> bool:
        return any(value in b for b in self._blocks)

    # -- updates
    def allocate(self, key: Hashable, *, identity: Hashable | None = None
                 ) -> ipaddress.IPv4Address:
        """The address for session `key` (the same one if it has one); the one
        `identity` last had if free. ClusterPoolUnavailable without the database,
        ClusterPoolExhausted when this member's blocks are full."""
        held = self._by_key.get(key)
        if held is not None:
            return ipaddress.IPv4Address(held)
        if not self.sink.database_ok:
            raise ClusterPoolUnavailable(self.name, self.sink.last_error)
        value = self._take_held(identity)
        if value is None:
            value = self._take_remembered(identity)
        if value is None:
            value = self._take_any()
        self._give(key, value, identity)
        return ipaddress.IPv4Address(value)

    def claim(self, key: Hashable, address: ipaddress.IPv4Address) -> bool:
        """Give `key` exactly `address` (a RADIUS Framed-IP-Address, or a rekey taking
        over its session's address): False if it is not in our blocks, not free, or
        (without the database) not the address just released."""
        value = int(address)
        if key in self._by_key:
            return self._by_key[key] == value
        if not self._ours(value) or value in self._by_addr or value in self._held:
            return False
        if not self.sink.database_ok and value != self._last_released:
            return False
        self._free.pop(value, None)
        self._give(key, value, None)
        return True

    def release(self, key: Hashable) -> ipaddress.IPv4Address | None:
        value = self._by_key.pop(key, None)
        if value is None:
            return None
        del self._by_addr[value]
        self._user_of.pop(key, None)
        self._free[value] = None
        self._last_released = value
        address = ipaddress.IPv4Address(value)
        self.sink.unlease(self.name, address)
        return address

    def hold(self, address: ipaddress.IPv4Address | str, identity: Hashable) -> bool:
        """Keep `address` for `identity` alone (a session a crash lost); False if it
        is not in our blocks, in use or held already."""
        value = int(ipaddress.IPv4Address(address))
        if not self._ours(value) or value in self._by_addr or value in self._held:
            return False
        self._free.pop(value, None)
        self._held[value] = identity
        return True

    def unhold(self, address: ipaddress.IPv4Address | str) -> None:
        value = int(ipaddress.IPv4Address(address))
        if self._held.pop(value, None) is None:
            return
        block = next((b for b in self._blocks if value in b), None)
        if block is not None and value < block.cursor:
            self._free[value] = None

    # -- internals
    def _give(self, key: Hashable, value: int, identity: Hashable | None) -> None:
        self._by_key[key] = value
        self._by_addr[value] = key
        user = identity if isinstance(identity, str) else ""
        self._user_of[key] = user
        if identity is not None:
            self._remember(identity, value)
        self.sink.lease(self.name, ipaddress.IPv4Address(value), key, user)
        if self.available < self.low_water and not self._asked:
            self._asked = True
            self.sink.want_block(self.name)

    def _take_any(self) -> int:
        for b in self._blocks:
            while b.cursor <= b.last:
                value = b.cursor
                b.cursor += 1
                if value not in self._held and value not in self._by_addr \
                        and value not in self._free:
                    return value
        if self._free:
            value, _ = self._free.popitem(last=False)
            return value
        if not self._asked:
            self._asked = True
            self.sink.want_block(self.name)
        raise ClusterPoolExhausted(self.name, self.network, self.size, len(self._blocks))

    def _remember(self, identity: Hashable, value: int) -> None:
        previous_owner = self._remembered_by_addr.get(value)
        if previous_owner is not None and previous_owner != identity:
            del self._remembered[previous_owner]
        old_value = self._remembered.get(identity)
        if old_value is not None and old_value != value:
            del self._remembered_by_addr[old_value]
        self._remembered[identity] = value
        self._remembered_by_addr[value] = identity
