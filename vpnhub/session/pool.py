"""Per-group IPv4 address pools: the inner address Mode Config hands each client.

`AddressPool` is the interface the concentrator and the manager use;
`MemoryAddressPool` keeps it in memory. Allocation is O(1): never-used
addresses come from a cursor that walks the network once, released ones from
a FIFO (the address released longest ago is reused first, so stale routes or
conntrack entries for a just-released address have time to go). A /16 costs
nothing until addresses are used.

Keys are whatever identifies a session to the caller (with NAT-T: the peer's
public address AND port, or the IKE cookies). An optional `identity` (the
XAUTH user name) makes allocation sticky: a user who reconnects gets the
address they had before, if nobody else took it meanwhile.

`hold` keeps an address out of allocation for everybody but one identity:
after a crash, the clients of the lost sessions still use their addresses
until they notice (DPD); only their own user may have them back meanwhile.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from vpnhub.config import GroupConfig

__all__ = ["AddressPool", "MemoryAddressPool", "PoolError", "PoolExhausted", "PoolIndex",
           "pool_for_group"]


class PoolError(Exception):
    """Base class for address pool errors."""


class PoolExhausted(PoolError):
    """Every usable address of the pool is in use."""

    reason = "pool_exhausted"

    def __init__(self, name: str, network: ipaddress.IPv4Network, size: int) -> None:
        self.name = name
        self.network = network
        label = f"address pool of group '{name}'" if name else "address pool"
        super().__init__(f"{label} ({network}) is exhausted: all {size} addresses in use")


@runtime_checkable
class AddressPool(Protocol):
    """A group's pool of inner addresses (Mode Config's INTERNAL_IP4_ADDRESS,
    mode-cfg-05 3.2): in memory today (`MemoryAddressPool`); a pool shared by a
    cluster or kept in a database (as strongSwan's attr_sql) fits behind it."""

    @property
    def name(self) -> str: ...

    @property
    def network(self) -> ipaddress.IPv4Network: ...

    @property
    def size(self) -> int: ...

    @property
    def in_use(self) -> int: ...

    @property
    def available(self) -> int: ...

    @property
    def held(self) -> int: ...

    def __len__(self) -> int: ...

    def address_of(self, key: Hashable) -> ipaddress.IPv4Address | None: ...

    def owner_of(self, address: ipaddress.IPv4Address | str) -> Hashable | None: ...

    def allocate(self, key: Hashable, *,
                 identity: Hashable | None = None) -> ipaddress.IPv4Address: ...

    def release(self, key: Hashable) -> ipaddress.IPv4Address | None: ...

    def claim(self, key: Hashable, address: ipaddress.IPv4Address) -> bool: ...

    def hold(self, address: ipaddress.IPv4Address | str, identity: Hashable) -> bool: ...

    def unhold(self, address: ipaddress.IPv4Address | str) -> None: ...


def pool_for_group(group: GroupConfig,
                   exclude: Iterable[ipaddress.IPv4Address] = ()) -> AddressPool:
    """The pool a [[group]] configures (its address_pool and reserve_first_address)."""
    return MemoryAddressPool.for_group(group, exclude)


class PoolIndex:
    """The queries every in-memory pool answers from the same two indexes (address
    by key, key by address) and its held addresses, and the allocation steps that
    do not depend on where new addresses come from; shared with the cluster's
    pool of blocks (vpnhub/cluster/pool.py), which draws new ones differently."""

    size: int
    _by_key: dict[Hashable, int]
    _by_addr: dict[int, Hashable]
    _held: dict[int, Hashable]
    _free: OrderedDict[int, None]
    _remembered: dict[Hashable, int]

    # -- queries
    @property
    def in_use(self) -> int:
        return len(self._by_key)

    @property
    def available(self) -> int:
        return self.size - len(self._by_key) - len(self._held)

    @property
    def held(self) -> int:
        return len(self._held)

    def __len__(self) -> int:
        return len(self._by_key)

    def address_of(self, key: Hashable) -> ipaddress.IPv4Address | None:
        value = self._by_key.get(key)
        return None if value is None else ipaddress.IPv4Address(value)

    def owner_of(self, address: ipaddress.IPv4Address | str) -> Hashable | None:
        return self._by_addr.get(int(ipaddress.IPv4Address(address)))


    # -- allocation steps both pools take in this order: the address held for this
    # identity, then the one it had before (if still free)
    def _take_held(self, identity: Hashable | None) -> int | None:
        if identity is None or not self._held:
            return None
        value = next((v for v, who in self._held.items() if who == identity), None)
        if value is not None:
            del self._held[value]
        return value

    def _take_remembered(self, identity: Hashable | None) -> int | None:
        if identity is None:
            return None
        value = self._remembered.get(identity)
        if value is None or value not in self._free:
            return None  # never seen, or someone else holds it now
        del self._free[value]
        return value


class MemoryAddressPool(PoolIndex):
    def __init__(
        self,
        network: ipaddress.IPv4Network | str,
        *,
        reserve_first: bool = False,
        exclude: Iterable[ipaddress.IPv4Address | str] = (),
        name: str = "",
    ) -> None:
        """`reserve_first` keeps the first usable address out (e.g. for the
        concentrator's own tunnel address); `exclude` keeps others out."""
        self.network = ipaddress.IPv4Network(network)
        self.name = name
        base = int(self.network.network_address)
        if self.network.prefixlen >= 31:  # RFC 3021: no network/broadcast address
            first, last = base, int(self.network.broadcast_address)
        else:
            first, last = base + 1, int(self.network.broadcast_address) - 1
        if reserve_first:
            first += 1
        self._first, self._last = first, last
        self._excluded = {
            int(ipaddress.IPv4Address(a))
            for a in exclude
            if first <= int(ipaddress.IPv4Address(a)) <= last
        }
        self.size = max(0, last - first + 1 - len(self._excluded))
        self._cursor = first
        self._free: OrderedDict[int, None] = OrderedDict()
        self._by_key: dict[Hashable, int] = {}
        self._by_addr: dict[int, Hashable] = {}
        self._remembered: dict[Hashable, int] = {}  # identity -> last address
        self._remembered_by_addr: dict[int, Hashable] = {}
        self._held: dict[int, Hashable] = {}  # address -> the only identity that may take it

    @classmethod
    def for_group(
        cls, group: GroupConfig, exclude: Iterable[ipaddress.IPv4Address] = ()
    ) -> MemoryAddressPool:
        return cls(
            group.address_pool,
            reserve_first=group.reserve_first_address,
            exclude=exclude,
            name=group.name,
        )

    # -- updates
    def allocate(self, key: Hashable, *, identity: Hashable | None = None) -> ipaddress.IPv4Address:
        """The address for session `key` (the same one if it already has one).

        With `identity`, the address that identity last held is preferred.
        Raises PoolExhausted when no address is free.
        """
        held = self._by_key.get(key)
        if held is not None:
            return ipaddress.IPv4Address(held)
        value = self._take_held(identity)
        if value is None:
            value = self._take_remembered(identity)
        if value is None:
            value = self._take_any()
        self._by_key[key] = value
        self._by_addr[value] = key
        if identity is not None:
            self._remember(identity, value)
        return ipaddress.IPv4Address(value)

    def claim(self, key: Hashable, address: ipaddress.IPv4Address) -> bool:
        """Give session `key` exactly `address` (a RADIUS Framed-IP-Address, issue 14):
        False if it is outside the pool, excluded, held, or another session's."""
        value = int(address)
        if key in self._by_key:
            return self._by_key[key] == value
        if not self._first <= value <= self._last or value in self._excluded \
                or value in self._by_addr or value in self._held:
            return False
        self._free.pop(value, None)
        self._by_key[key] = value
        self._by_addr[value] = key
        return True

    def release(self, key: Hashable) -> ipaddress.IPv4Address | None:
        """Give the address of `key` back; returns it (None if `key` had none)."""
        value = self._by_key.pop(key, None)
        if value is None:
            return None
        del self._by_addr[value]
        self._free[value] = None
        return ipaddress.IPv4Address(value)

    def hold(self, address: ipaddress.IPv4Address | str, identity: Hashable) -> bool:
        """Keep `address` for `identity` alone until `unhold`. False if it is not ours to
        hold (outside the pool, excluded, in use or held already)."""
        value = int(ipaddress.IPv4Address(address))
        if not self._first <= value <= self._last or value in self._excluded \
                or value in self._by_addr or value in self._held:
            return False
        self._free.pop(value, None)  # below the cursor: out of the free list until unhold
        self._held[value] = identity
        return True

    def unhold(self, address: ipaddress.IPv4Address | str) -> None:
        """Back to the pool (if nobody took it meanwhile)."""
        value = int(ipaddress.IPv4Address(address))
        if self._held.pop(value, None) is not None and value < self._cursor:
            self._free[value] = None

    # -- internals
    def _take_any(self) -> int:
        while self._cursor <= self._last:
            value = self._cursor
            self._cursor += 1
            # claim() may have taken (and release() freed) one ahead of the cursor
            if value not in self._excluded and value not in self._held \
                    and value not in self._by_addr and value not in self._free:
                return value
        if self._free:
            value, _ = self._free.popitem(last=False)
            return value
        raise PoolExhausted(self.name, self.network, self.size)

    def _remember(self, identity: Hashable, value: int) -> None:
        previous_owner = self._remembered_by_addr.get(value)
        if previous_owner is not None and previous_owner != identity:
            del self._remembered[previous_owner]
        old_value = self._remembered.get(identity)
        if old_value is not None and old_value != value:
            del self._remembered_by_addr[old_value]
        self._remembered[identity] = value
        self._remembered_by_addr[value] = identity
