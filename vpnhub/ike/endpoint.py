"""The responder's table of IKE SAs: demux by cookies, bounded half-open state.

Like aioquic's server, it peeks at the header, finds the SA by its cookies
and creates state only for a plausible first message (Aggressive or Main
Mode, zero responder cookie, message ID 0, no flags). Several clients behind
one PAT address are told apart by their cookies, and before the responder
cookie exists by (address, port, initiator cookie).
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from vpnhub.ike.fragment import FragmentError, Reassembler, is_fragment
from vpnhub.ike.sa import Address, IkeConfig, IkeSA
from vpnhub.ike.transitions import Role, State
from vpnhub.wire.constants import ExchangeType

ZERO_COOKIE = bytes(8)


@dataclass(frozen=True)
class Limits:
    """Bounds under abuse (a flood of first messages from spoofed sources)."""

    half_open_per_source: int = 32
    half_open_total: int = 4096
    sessions_total: int = 100_000


class IkeEndpoint:
    """Sans-I/O: `receive()` returns the SA that took the message (or None if dropped)."""

    def __init__(self, config_for: Callable[[Address, int], IkeConfig],
                 limits: Limits | None = None) -> None:
        self._config_for = config_for
        self.limits = limits or Limits()
        self._by_cookies: dict[tuple[bytes, bytes], IkeSA] = {}
        self._half_open: dict[tuple[bytes, Address], IkeSA] = {}
        self._half_open_per_ip: Counter[str] = Counter()
        self.drops: Counter[str] = Counter()
        self._reassembler = Reassembler()
        self._timers: list[tuple[float, int, IkeSA]] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self._by_cookies)

    def __iter__(self) -> Iterator[IkeSA]:
        return iter(list(self._by_cookies.values()))

    def get(self, icookie: bytes, rcookie: bytes) -> IkeSA | None:
        return self._by_cookies.get((icookie, rcookie))

    def half_open_count(self) -> int:
        return len(self._half_open)

    def receive(self, data: bytes, remote: Address, local_port: int, now: float) -> IkeSA | None:
        if len(data) < 28:
            self.drops["truncated_header"] += 1
            return None
        if is_fragment(data):
            try:
                whole = self._reassembler.feed(data, remote, now)
            except FragmentError as e:
                self.drops[e.reason] += 1
                return None
            if whole is None:
                return None
            data = whole
            if len(data) < 28:
                self.drops["truncated_header"] += 1
                return None
        icookie, rcookie = data[:8], data[8:16]
        if rcookie == ZERO_COOKIE:
            sa = self._half_open.get((icookie, remote))
            if sa is None:
                sa = self._new_sa(data, remote, local_port, now)
                if sa is None:
                    return None
        else:
            found = self._by_cookies.get((icookie, rcookie))
            if found is None:
                self.drops["unknown_cookie"] += 1
                return None
            sa = found
        was_half_open = sa.state is not State.ESTABLISHED
        sa.receive(data, remote, local_port, now)
        if was_half_open and sa.state is State.ESTABLISHED:
            self._not_half_open(sa)
        if sa.state is State.DELETED:
            self.remove(sa)
        else:
            self.touch(sa)
        return sa

    def _new_sa(self, data: bytes, remote: Address, local_port: int, now: float
                ) -> IkeSA | None:
        exchange, flags, message_id = data[18], data[19], data[20:24]
        if exchange not in (ExchangeType.AGGRESSIVE, ExchangeType.IDENTITY_PROTECTION) or \
                flags or message_id != bytes(4):
            self.drops["not_a_first_message"] += 1
            return None
        if self._half_open_per_ip[remote[0]] >= self.limits.half_open_per_source:
            self.drops["half_open_per_source"] += 1
            return None
        if len(self._half_open) >= self.limits.half_open_total:
            self.drops["half_open_total"] += 1
            return None
        if len(self._by_cookies) >= self.limits.sessions_total:
            self.drops["sessions_total"] += 1
            return None
        # the local port says which transport the first message came by (500, or a
        # Cisco IPsec-over-TCP port: no NAT-T float there)
        sa = IkeSA(self._config_for(remote, local_port), Role.RESPONDER, remote, now,
                   local_port=local_port, icookie=data[:8])
        while (sa.icookie, sa.rcookie) in self._by_cookies:  # 2^-64, but be exact
            sa.rcookie = sa.config.rng(8)
        self._by_cookies[(sa.icookie, sa.rcookie)] = sa
        self._half_open[(sa.icookie, remote)] = sa
        self._half_open_per_ip[remote[0]] += 1
        sa.data["half_open_key"] = (sa.icookie, remote)
        return sa

    def _not_half_open(self, sa: IkeSA) -> None:
        key = sa.data.pop("half_open_key", None)
        if isinstance(key, tuple) and self._half_open.pop(key, None) is not None:
            ip = key[1][0]
            self._half_open_per_ip[ip] -= 1
            if self._half_open_per_ip[ip] <= 0:
                del self._half_open_per_ip[ip]

    def remove(self, sa: IkeSA) -> None:
        self._not_half_open(sa)
        self._by_cookies.pop((sa.icookie, sa.rcookie), None)

    # ------------------------------------------------------------- timers
    # A heap of (deadline, n, SA) with lazy deletion: an entry is acted on only if
    # the SA still wants that deadline. Anything that can move an SA's timer
    # earlier (a received message, a driver call such as xauth_result) must be
    # followed by touch(sa); receive() and handle_timer() do it themselves. With
    # 10,000 idle sessions a tick then costs a heap peek, not 10,000 get_timer().
    def touch(self, sa: IkeSA) -> None:
        t = sa.get_timer()
        if t is not None and sa.state is not State.DELETED:
            self._seq += 1
            heapq.heappush(self._timers, (t, self._seq, sa))

    def next_timer(self) -> float | None:
        while self._timers:
            t, _, sa = self._timers[0]
            if sa.state is not State.DELETED and sa.get_timer() == t:
                return t
            heapq.heappop(self._timers)  # stale: the SA moved on or is gone
        return None

    def handle_timer(self, now: float) -> list[IkeSA]:
        """Run every due SA timer; returns the SAs that may have output or events."""
        touched: list[IkeSA] = []
        seen: set[int] = set()
        while self._timers and self._timers[0][0] <= now:
            t, _, sa = heapq.heappop(self._timers)
            if id(sa) in seen or sa.state is State.DELETED:
                continue
            current = sa.get_timer()
            if current is None:
                continue
            if current > now:  # a stale entry: the deadline moved later
                if current != t:
                    self.touch(sa)
                continue
            seen.add(id(sa))
            sa.handle_timer(now)
            touched.append(sa)
            self._after_timer(sa)
        return touched

    def _after_timer(self, sa: IkeSA) -> None:
        if sa.state is State.DELETED:
            self.remove(sa)
        else:
            self.touch(sa)
