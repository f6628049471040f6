"""The responder's table of IKE SAs: demux by cookies, bounded half-open state.

Like aioquic's server, it peeks at the header, finds the SA by its cookies
and creates state only for a plausible first message (Aggressive or Main
Mode, zero responder cookie, message ID 0, no flags). Several clients behind
one PAT address are told apart by their cookies, and before the responder
cookie exists by (address, port, initiator cookie).

Half-open state is bounded the way TCP SYN caches are (RFC 4987 section 3.4,
"Recycling the Oldest Half-Open TCB", as the FreeBSD syncache does). A
half-open SA is *unverified* until its peer sends a message carrying our
responder cookie that we can process: only then do we know the first message
came from an address that receives our packets. When the per-source or the
total cap is reached, the oldest unverified SA (of that source, resp. overall)
makes room for the newcomer instead of the newcomer being refused: a real
client answers our message 2 within a round trip, long before a flood can
recycle its SA, while spoofed first messages can no longer lock out every
PC behind a PAT whose address they carry. Verified half-open SAs cannot be
spoofed; they have their own, separate per-source cap.

A flood is told by what spoofing leaves behind, not by the rate of first
messages: more than FLOOD_UNVERIFIED unverified SAs at once, or a half-open
cap reached (for PRESSURE_MEMORY once an SA was recycled or refused; for
ANSWER_GRACE only after a burst of young SAs, which may be a login storm).
A real client answers message 2 within a round trip, so at any
login rate only the handshakes of the last round trip are unverified (a
load generator at most the handshakes it keeps in flight); spoofed first messages
never get answered and pile up until they time out. While the flood lasts
the responder saves work: DH values shared for a second (`ike.dhreuse`) and
g^xy left to the SAs that come back (`ike.dhjob`).
"""

from __future__ import annotations

import heapq
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from vpnhub.crypto.dh import DHKeyPair, dh_group
from vpnhub.ike.dhjob import DhOffload, SharedSecretJob
from vpnhub.ike.dhpool import DhPool
from vpnhub.ike.dhreuse import DhReuse
from vpnhub.ike.fragment import FragmentError, Reassembler, is_fragment
from vpnhub.ike.sa import Address, IkeConfig, IkeSA
from vpnhub.ike.summary import Notice, Summariser
from vpnhub.ike.transitions import Role, State
from vpnhub.ike.transport import Transport
from vpnhub.wire.constants import ExchangeType

ZERO_COOKIE = bytes(8)


@dataclass(frozen=True)
class Limits:
    """Bounds under abuse (a flood of first messages from spoofed sources)."""

    half_open_per_source: int = 32  # unverified, per source address
    half_open_total: int = 4096
    sessions_total: int = 100_000
    # half-open SAs whose peer proved it gets our packets (Main Mode after message
    # 3), per source address: a PAT may hide many PCs logging in at once
    verified_half_open_per_source: int = 64

# The first message of an SA that is refused or recycled, or that times out
# unanswered, is logged as a summary, never one line per packet.
PRESSURE_MEMORY = 60.0  # seconds a flood sign makes timeouts read as flood victims
# More unverified half-open SAs than this at once mean a flood: each is a first
# message whose sender has not answered our message 2, and a real client answers
# within a round trip, so legitimate logins keep a round trip's worth (tens to a
# few hundred at 1,000 logins/s) whatever the rate; spoofed ones stay for
# phase1_timeout (30 s), so a spoofer sending 20 a second crosses it.
FLOOD_UNVERIFIED = 512
# Seconds an unverified SA is safe from the per-source cap. A real client answers our
# message 2 within a round trip plus our own queueing (a burst of 128 first messages
# from one PAT is answered within a few hundred ms on the 2-core lab machine; vpnc
# and our initiator retransmit after 1-2 s), so younger SAs are a burst in progress,
# not a flood: recycling them (RFC 4987 3.4 recycles the *oldest*, which a TCP SYN
# cache can, since a SYN-ACK is answered within a round trip too) dropped legitimate
# logins behind one PAT. A source is thus held to half_open_per_source SAs older than
# this plus what it sent in the last ANSWER_GRACE s; half_open_total bounds the rest.
# A burst beyond the cap is still a flood sign (see _make_room): served, cheaply.
ANSWER_GRACE = 2.0
# Unverified SAs timing out faster than this mean a flood to the log (below the caps).
TIMEOUT_WINDOW = 10.0
TIMEOUTS_PER_WINDOW = 8
HalfOpenKey = tuple[bytes, Address]
SHRINK_ABOVE = 1024  # tables smaller than this are not worth copying


def _defer_only(job: SharedSecretJob) -> None:
    """The offload of a flood: nobody runs the job; the SA does if it ever needs it."""


class IkeEndpoint:
    """Sans-I/O: `receive()` returns the SA that took the message (or None if dropped)."""

    def __init__(self, config_for: Callable[[Address, int], IkeConfig],
                 limits: Limits | None = None) -> None:
        self._config_for = config_for
        self.limits = limits or Limits()
        self._by_cookies: dict[tuple[bytes, bytes], IkeSA] = {}
        # SAs that sent their client to another member (issue 17) and only linger to
        # repeat the notify: no session, so they do not count against sessions_total
        self._redirected: set[tuple[bytes, bytes]] = set()
        self._by_cookies_peak = 0
        self._half_open: dict[HalfOpenKey, IkeSA] = {}
        # unverified half-open SAs, oldest first: overall and per source address
        self._unverified: OrderedDict[HalfOpenKey, IkeSA] = OrderedDict()
        self._unverified_by_ip: dict[str, OrderedDict[HalfOpenKey, None]] = {}
        self._verified_per_ip: Counter[str] = Counter()
        # until then timeouts of unverified SAs are summarised as a flood's (the log)
        self._pressure_until = 0.0
        # until then a half-open cap reached counts as a flood (flooded())
        self._capped_until = 0.0
        self._timeouts_since = 0.0
        self._timeouts = 0
        self.dh_reuse = DhReuse()
        # key pairs computed in idle time (the shell fills it; None: every SA draws its own)
        self.dh_pool: DhPool | None = None
        # the shell's worker thread for phase 1's g^xy (ike.dhjob); None: computed inline
        self.dh_offload: DhOffload | None = None
        self.drops: Counter[str] = Counter()
        # first messages admitted beyond half_open_per_source while that source's SAs
        # were all younger than ANSWER_GRACE (a burst from a PAT, not a drop)
        self.over_source_cap = 0
        self.summary = _summariser()
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

    def unverified_count(self) -> int:
        """Half-open responder SAs whose peer has not yet answered our message 2 with
        a message we could process. O(1): an entry is added when the SA is created
        (_new_sa) and taken out when it is verified (_verified), or recycled, timed
        out or deleted (all through remove -> _not_half_open)."""
        return len(self._unverified)

    def flooded(self, now: float) -> bool:
        """A flood of spoofed first messages is going on: more than FLOOD_UNVERIFIED
        unverified SAs, or a half-open SA recycled or refused in the last
        PRESSURE_MEMORY s, or a burst over the per-source cap in the last
        ANSWER_GRACE s (`_burst`)."""
        return len(self._unverified) > FLOOD_UNVERIFIED or now < self._capped_until

    def next_notice(self) -> Notice | None:
        """A summary line for the operator's log (refusals, recycles, timeouts)."""
        return self.summary.notices.popleft() if self.summary.notices else None

    def receive(self, data: bytes, remote: Address, local_port: int, now: float,
                transport: Transport | None = None, *, touch: bool = True) -> IkeSA | None:
        """One IKE message from `remote` to our `local_port`, come by `transport`
        (derived from the default ports 500 / 4500 when not given). `touch=False`:
        the caller queues the SA's timer (the driver does, after the SA's events)."""
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
                sa = self._new_sa(data, remote, local_port, now, transport)
                if sa is None:
                    return None
        else:
            found = self._by_cookies.get((icookie, rcookie))
            if found is None:
                self.drops["unknown_cookie"] += 1
                return None
            sa = found
        before = sa.state
        sa.receive(data, remote, local_port, now, transport)
        if before is not State.ESTABLISHED and sa.state is State.ESTABLISHED:
            self._not_half_open(sa)
        elif rcookie != ZERO_COOKIE and sa.state not in (before, State.DELETED):
            self._verified(sa, now)  # it answered our message: its address is real
        if sa.state is State.DELETED:
            self.remove(sa)
        else:
            if sa.redirected_to is not None:
                self._redirected.add((sa.icookie, sa.rcookie))
            if touch:
                self.touch(sa)
        return sa

    def _sessions_full(self) -> bool:
        """max_sessions reached. A redirecting master (issue 17) keeps each client it
        sent elsewhere for REDIRECT_LINGER seconds; those are not sessions, so they
        do not count, but they are bounded too: at most as many again."""
        cap = self.limits.sessions_total
        n = len(self._by_cookies)
        return n - len(self._redirected) >= cap or n >= 2 * cap

    def _new_sa(self, data: bytes, remote: Address, local_port: int, now: float,
                transport: Transport | None) -> IkeSA | None:
        exchange, flags, message_id = data[18], data[19], data[20:24]
        if exchange not in (ExchangeType.AGGRESSIVE, ExchangeType.IDENTITY_PROTECTION) or \
                flags or message_id != bytes(4):
            self.drops["not_a_first_message"] += 1
            return None
        if self._sessions_full():
            self.drops["sessions_total"] += 1
            self.summary.note("sessions_total", remote[0], now)
            return None
        if not self._make_room(remote[0], now):
            return None
        # the local port says which transport the first message came by (500, or a
        # Cisco IPsec-over-TCP port: no NAT-T float there)
        sa = IkeSA(self._config_for(remote, local_port), Role.RESPONDER, remote, now,
                   local_port=local_port, icookie=data[:8], transport=transport)
        while (sa.icookie, sa.rcookie) in self._by_cookies:  # 2^-64, but be exact
            sa.rcookie = sa.config.rng(8)
        self._by_cookies[(sa.icookie, sa.rcookie)] = sa
        self._by_cookies_peak = max(self._by_cookies_peak, len(self._by_cookies))
        key = (sa.icookie, remote)
        self._half_open[key] = sa
        self._unverified[key] = sa
        self._unverified_by_ip.setdefault(remote[0], OrderedDict())[key] = None
        flood = self.flooded(now)
        if flood:  # their timeouts, 30 s on, are the flood's too
            self._pressure_until = max(self._pressure_until, now + PRESSURE_MEMORY)
        if self.dh_pool is not None:
            self.dh_pool.refill_paused = flood  # no g^x made ahead for a flood (dhpool)
            self.dh_pool.busy = True  # logins arrive: refilled below LOW_WATER only
            self.dh_pool.last_first_message = now
        if flood or self.dh_pool:
            sa.p1.dh_source = lambda group: self._key_pair(group, now, flood)
        sa.endpoint_marks.half_open_key = key
        sa.endpoint_marks.dh_pool = self.dh_pool
        # Under a flood of first messages most come from spoofed sources and never send
        # message 3: defer g^xy but hand nobody the job, so only the SAs that come back
        # pay for it (on first use of SKEYID_e, ike.dhjob) and the worker does not
        # spend a core on the flood.
        if self.dh_offload is not None:
            sa.endpoint_marks.dh_offload = _defer_only if flood else self.dh_offload
        return sa

    def _key_pair(self, group: int, now: float, flood: bool) -> DHKeyPair:
        """A pair computed ahead if one is ready (used once); else under a flood the
        briefly shared one (half the DH work per SA), else a fresh one."""
        kp = self.dh_pool.take(group) if self.dh_pool is not None else None
        if kp is not None:
            return kp
        if flood:
            return self.dh_reuse.key_pair(group, now)
        return dh_group(group).generate()

    # ------------------------------------------------------ half-open bounds
    def _make_room(self, ip: str, now: float) -> bool:
        """Recycle the oldest unverified SA when a cap is reached (RFC 4987 3.4)."""
        mine = self._unverified_by_ip.get(ip)
        cap = self.limits.half_open_per_source
        # Only SAs left unanswered for ANSWER_GRACE are recycled: a burst of logins from
        # one PAT (more first messages in a round trip than the cap) is served whole,
        # while a spoofer's SAs age past the grace and are brought back to the cap. Until
        # then the two cannot be told apart, so the cap reached still counts as a flood
        # sign (shared DH values, g^xy when message 3 comes): the cheap path, which a
        # real client gets through as well (tests/ike/test_flood_signal.py).
        while mine and len(mine) >= cap:
            oldest = next(iter(mine))
            if now - self._unverified[oldest].created < ANSWER_GRACE:
                self.over_source_cap += 1
                self._burst(now)
                break
            self._recycle(oldest, "recycled_per_source", ip, now)
            mine = self._unverified_by_ip.get(ip)
        if len(self._half_open) < self.limits.half_open_total:
            return True
        if self._unverified:
            oldest = next(iter(self._unverified))
            self._recycle(oldest, "recycled_total", ANY, now)
            return True
        # every half-open SA has a peer that answered us: nothing is cheap to drop
        self.drops["half_open_total"] += 1
        self._capped(now)
        self.summary.note("half_open_total", ANY, now)
        return False

    def _recycle(self, key: HalfOpenKey, reason: str, source: str, now: float) -> None:
        sa = self._unverified.get(key)
        if sa is None:
            return
        self.drops[reason] += 1
        self._capped(now)
        self.summary.note(reason, source, now)
        self._discard(sa, "half-open SA recycled", now)

    def _capped(self, now: float) -> None:
        # a flood, even one too small for FLOOD_UNVERIFIED: a single spoofed source
        # is held to half_open_per_source SAs however fast it sends
        self._capped_until = self._pressure_until = now + PRESSURE_MEMORY

    def _burst(self, now: float) -> None:
        """More young unverified SAs from one address than the cap: a spoofed flood or a
        login storm behind a PAT, not told apart before ANSWER_GRACE. A flood sign while
        it lasts (the cheap path: pool first, then a shared pair, ike.dhreuse), but only
        for ANSWER_GRACE after its last message: a storm's clients answer within it and
        are never recycled, so the endpoint is back to its full path (g^xy on the DH
        thread, the pool refilled, no sharing) 2 s after a storm, not PRESSURE_MEMORY
        (60 s). A spoofer's SAs are not answered: once ANSWER_GRACE old they are
        recycled at its next message, and that (`_capped`) is a flood for 60 s."""
        self._capped_until = max(self._capped_until, now + ANSWER_GRACE)
        self._pressure_until = max(self._pressure_until, now + PRESSURE_MEMORY)

    def _discard(self, sa: IkeSA, reason: str, now: float) -> None:
        """Drop an unverified SA quietly: no per-SA log line, no event (summarised)."""
        sa.terminate(reason, now, by_peer=False, notify_peer=False)
        sa.datagrams_to_send()
        while sa.next_event() is not None:
            pass
        self.remove(sa)

    def _verified(self, sa: IkeSA, now: float) -> None:
        key = sa.endpoint_marks.half_open_key
        if key is None or self._unverified.pop(key, None) is None:
            return
        ip = key[1][0]
        self._forget_unverified_ip(key, ip)
        # The per-address cap keeps one address from holding the table others need, so
        # it applies once the table is half full: a burst of Main Mode logins from one
        # PAT (128 PCs after an outage) is otherwise served whole. Verified SAs cannot
        # be spoofed, so only a real peer can fill the table this way.
        if self._verified_per_ip[ip] >= self.limits.verified_half_open_per_source and \
                len(self._half_open) >= self.limits.half_open_total // 2:
            self.drops["verified_half_open_per_source"] += 1
            self.summary.note("verified_half_open_per_source", ip, now)
            sa.terminate("too many half-open SAs from this address", now, by_peer=False,
                         notify_peer=False)
            self.remove(sa)
            return
        self._verified_per_ip[ip] += 1
        sa.endpoint_marks.verified = True

    def _forget_unverified_ip(self, key: HalfOpenKey, ip: str) -> None:
        mine = self._unverified_by_ip.get(ip)
        if mine is not None:
            mine.pop(key, None)
            if not mine:
                del self._unverified_by_ip[ip]

    def _not_half_open(self, sa: IkeSA) -> None:
        marks = sa.endpoint_marks
        key, marks.half_open_key = marks.half_open_key, None
        if key is None or self._half_open.pop(key, None) is None:
            return
        ip = key[1][0]
        if self._unverified.pop(key, None) is not None:
            self._forget_unverified_ip(key, ip)
        verified, marks.verified = marks.verified, False
        if verified:
            self._verified_per_ip[ip] -= 1
            if self._verified_per_ip[ip] <= 0:
                del self._verified_per_ip[ip]
        self._shrink()

    def _shrink(self) -> None:
        # A dict keeps the table it grew to after its entries go: after a flood of
        # thousands of half-open SAs, rebuild the tables once they are small again.
        if not self._half_open and len(self._unverified) == 0:
            self._half_open = {}
            self._unverified = OrderedDict()
            self._unverified_by_ip = {}
            self._verified_per_ip = Counter()

    def remove(self, sa: IkeSA) -> None:
        self._not_half_open(sa)
        self._redirected.discard((sa.icookie, sa.rcookie))
        if self._by_cookies.pop((sa.icookie, sa.rcookie), None) is not None:
            self._shrink_by_cookies()

    def _shrink_by_cookies(self) -> None:
        # After a flood the table keeps its peak size (a dict never shrinks): copy
        # it once it holds less than an eighth of what it grew to.
        n = len(self._by_cookies)
        if n > self._by_cookies_peak:
            self._by_cookies_peak = n
        elif self._by_cookies_peak > SHRINK_ABOVE and n * 8 < self._by_cookies_peak:
            self._by_cookies = dict(self._by_cookies)
            self._by_cookies_peak = n

    # ------------------------------------------------------------- timers
    # A heap of (deadline, n, SA) with lazy deletion: an entry is acted on only if
    # the SA still wants that deadline. Anything that can move an SA's timer
    # earlier (a received message, a driver call such as xauth_result) must be
    # followed by touch(sa); receive() and handle_timer() do it themselves. With
    # 10,000 idle sessions a tick then costs a heap peek, not 10,000 get_timer().
    #
    # An SA has at most one entry that is not stale: touch() pushes only when the
    # deadline is earlier than the one already queued (a later one is re-armed
    # when the queued entry fires). Pushing on every touch filled the heap with
    # entries hours ahead (lifetimes) that nothing popped, and after a flood
    # those scattered small tuples kept its freed memory from the system.
    def touch(self, sa: IkeSA) -> float | None:
        """Queue `sa`'s timer (one live heap entry per SA); returns its deadline."""
        t = sa.get_timer()
        if t is None or sa.state is State.DELETED:
            return None
        queued = sa.endpoint_marks.timer_at
        if queued is not None and queued <= t:
            return t  # that entry fires first and re-arms the SA
        sa.endpoint_marks.timer_at = t
        self._seq += 1
        heapq.heappush(self._timers, (t, self._seq, sa))
        return t

    def _popped(self, sa: IkeSA, t: float) -> None:
        if sa.endpoint_marks.timer_at == t:
            sa.endpoint_marks.timer_at = None

    def next_timer(self) -> float | None:
        while self._timers:
            t, _, sa = self._timers[0]
            if sa.state is not State.DELETED and sa.get_timer() == t:
                return t
            heapq.heappop(self._timers)  # stale: the SA moved on or is gone
            self._popped(sa, t)
            if sa.state is not State.DELETED:
                self.touch(sa)  # its real deadline needs an entry of its own
        return None

    def handle_timer(self, now: float, limit: int | None = None) -> list[IkeSA]:
        """Run every due SA timer (at most `limit` SAs' timers: the others stay due);
        returns the SAs that may have output or events."""
        self.summary.flush(now)
        touched: list[IkeSA] = []
        rearm: list[IkeSA] = []
        seen: set[int] = set()
        while self._timers and self._timers[0][0] <= now and \
                (limit is None or len(touched) < limit):
            t, _, sa = heapq.heappop(self._timers)
            self._popped(sa, t)
            if sa.state is State.DELETED:
                continue
            if id(sa) in seen:  # ran this round already: armed again after the loop
                rearm.append(sa)
                continue
            current = sa.get_timer()
            if current is None:
                continue
            if current > now:  # a stale entry: the deadline moved later
                self.touch(sa)
                continue
            seen.add(id(sa))
            if self._unanswered(sa, now):
                continue
            sa.handle_timer(now)
            touched.append(sa)
            self._after_timer(sa)
        for sa in rearm:
            self.touch(sa)
        if not self.flooded(now):  # over (its SAs may have just timed out)
            self.dh_reuse.forget()
        return touched

    def _unanswered(self, sa: IkeSA, now: float) -> bool:
        """An unverified SA timed out. One alone is reported by the SA itself (for
        Aggressive Mode most likely a wrong group password: the client rejected our
        HASH_R); during a flood, they are summarised and dropped without events."""
        key = sa.endpoint_marks.half_open_key
        if key is None or key not in self._unverified or \
                now < sa.created + sa.config.phase1_timeout:
            return False
        self.drops["half_open_timeout"] += 1
        if now - self._timeouts_since >= TIMEOUT_WINDOW:
            self._timeouts_since, self._timeouts = now, 0
        self._timeouts += 1
        if self._timeouts > TIMEOUTS_PER_WINDOW:  # more than clients mistyping a password
            self._pressure_until = max(self._pressure_until, now + PRESSURE_MEMORY)
        if now >= self._pressure_until:
            return False
        self.summary.note("timeout_under_flood", ANY, now)  # one line, not one per source
        self._discard(sa, "phase 1 timeout", now)
        return True

    def _after_timer(self, sa: IkeSA) -> None:
        if sa.state is State.DELETED:
            self.remove(sa)
        else:
            self.touch(sa)


ANY = "*"


def _summariser() -> Summariser:
    s = Summariser()

    def per(what: str) -> Callable[[str, int, float], str]:
        def text(source: str, n: int, secs: float) -> str:
            where = "" if source == ANY else f" from {source}"
            when = f" in the last {secs:.0f} s" if secs else ""
            return what.format(n=n, where=where, when=when)
        return text

    s.reason("recycled_per_source", "IKE", 4, per(
        "{n} half-open SA(s){where} recycled{when}: that address sent more first messages"
        " than max_half_open_per_source allows; the oldest unanswered ones made room"
        " (spoofed first messages, or a client retrying)"))
    s.reason("recycled_total", "IKE", 3, per(
        "{n} half-open SA(s) recycled{when}: the half-open table is full"
        " (max_half_open_total), a flood of first messages (spoofed sources?); the oldest"
        " unanswered ones made room"))
    s.reason("half_open_total", "IKE", 3, per(
        "{n} first message(s) refused{when}: the half-open table is full of SAs whose"
        " peers answer (max_half_open_total)"))
    s.reason("verified_half_open_per_source", "IKE", 3, per(
        "{n} phase 1 negotiation(s){where} dropped{when}: more than"
        " verified_half_open_per_source of them are in progress from that address"))
    s.reason("sessions_total", "IKE", 3, per(
        "{n} first message(s){where} refused{when}: max_sessions reached"))
    s.reason("timeout_under_flood", "IKE", 4, per(
        "{n} half-open SA(s){where} timed out unanswered{when} during a flood of first"
        " messages (their sources were most likely spoofed)"))
    return s
