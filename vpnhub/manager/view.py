"""What the manager reads from and does to the running concentrator.

`ConcentratorLike` names every attribute of `vpnhub.concentrator.core.
ConcentratorCore` the manager touches, so the coupling is in one place (and the
tests can stand a small fake in). `ManagerView` turns the session store's
read-only views, the data plane's counters and the address pools into the dicts the
API returns and the pages show, detects misconfigurations for the warning
banners, and performs the actions: logout, ping, NAT-T on/off. It subscribes
to the store's session events for what it keeps per session (the throughput
samples), rather than polling the table for sessions that came and went,
and keeps the warnings' counts by those events too (vpnhub.manager.tally).

The 10 s sample asks the data plane for its compact counters (arrays of SPIs
and bytes, vpnhub.net.stats.SaCounters, not an object per SA), writes each
session's bytes into fixed arrays (vpnhub.manager.history) and yields to the
event loop every SAMPLE_CHUNK sessions; between two of them, every 2 s, only
the totals are refreshed: docs/MANAGER.md "Cost at scale".
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import time
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from vpnhub.cluster.balance import MemberLoad
from vpnhub.config import Config
from vpnhub.crypto.suites import is_legacy_esp
from vpnhub.eventlog import EventLog
from vpnhub.ike import events as ev
from vpnhub.manager.history import ThroughputHistory
from vpnhub.manager.tally import SessionTally, is_legacy
from vpnhub.net.handle import DataplaneHandle
from vpnhub.net.stats import DataplaneStats, SaCounters, counters_of
from vpnhub.session.model import SessionKey, SessionView
from vpnhub.session.pool import AddressPool
from vpnhub.session.store import SessionEnded, SessionEvent, SessionStore

SAMPLE_EVERY = 2.0  # the totals (dashboard, /metrics)
# the per-session sample (history, the sessions' SA counters): with 10,000 sessions
# one costs the process ~70 ms of CPU, 3.4 % of a core every 2 s (issue 13)
HISTORY_EVERY = 10.0
SAMPLES = 30  # five minutes of throughput samples per session
SAMPLE_CHUNK = 400  # sessions per step of a sample: under 5 ms of the loop each
POOL_WARN = 0.9  # a pool this full gets a banner


class EndpointLike(Protocol):
    drops: Counter[str]

    def get(self, icookie: bytes, rcookie: bytes) -> Any: ...

    def half_open_count(self) -> int: ...

    def __len__(self) -> int: ...


class ConcentratorLike(Protocol):
    config: Config
    log: EventLog
    natt_enabled: bool  # read by the concentrator for every new IKE SA

    @property
    def sessions(self) -> SessionStore: ...

    @property
    def pools(self) -> Mapping[str, AddressPool]: ...

    @property
    def endpoint(self) -> EndpointLike: ...

    @property
    def dataplane(self) -> DataplaneHandle | None: ...

    def logout(self, key: tuple[bytes, bytes], admin: str) -> bool: ...


class ClusterLike(Protocol):
    """What the banners read of a [cluster] member (vpnhub/cluster/member.py)."""

    name: str
    database_ok: bool
    last_error: str
    outages: int

    def members(self) -> list[MemberLoad]: ...

    def holds_virtual_address(self) -> bool: ...


def cluster_warnings(cluster: ClusterLike | None) -> list[Warning_]:
    """Issue 17: the cluster database lost, members dead (from the member's memory)."""
    if cluster is None:
        return []
    if not cluster.database_ok:
        return [Warning_(
            "cluster_database_unreachable",
            f"The cluster database is unreachable ({cluster.last_error or 'not joined yet'}):"
            " established tunnels are kept, new logins are refused until it returns.",
            "Check the PostgreSQL server of [cluster] dsn and the network to it; this member"
            " writes its sessions and leases back by itself when it returns (docs/CLUSTER.md).")]
    dead = [m.name for m in cluster.members() if not m.alive and m.name != cluster.name]
    if not dead:
        return []
    return [Warning_(
        "cluster_member_dead",
        f"Cluster member(s) without a heartbeat: {', '.join(dead)}; no client is sent there,"
        " and their address blocks are reclaimed after [cluster] member_timeout.",
        "Check those members (vpnhub serve, the network to the cluster database).")]


@dataclass(frozen=True)
class Warning_:
    """A banner: what is wrong, and how to fix it."""

    kind: str  # stable name: natt_off_behind_nat, legacy_crypto, pool_nearly_exhausted, ...
    text: str
    fix: str

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "text": self.text, "fix": self.fix}


@dataclass(frozen=True)
class PingResult:
    address: str
    source: str
    sent: int
    received: int
    rtt_avg_ms: float | None
    output: str

    def to_json(self) -> dict[str, Any]:
        return {"address": self.address, "source": self.source or None, "sent": self.sent,
                "received": self.received, "alive": self.received > 0,
                "rtt_avg_ms": self.rtt_avg_ms, "output": self.output}


Pinger = Callable[[str, str], Awaitable[PingResult]]


async def system_ping(address: str, source: str, count: int = 3) -> PingResult:
    """`ping` in the concentrator's own network namespace (its routes reach the pool
    through the tunnel interface), from `source` when given."""
    argv = ["ping", "-n", "-c", str(count), "-i", "0.2", "-W", "1"]
    if source:
        argv += ["-I", source]
    argv.append(address)
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=count + 5)
    except (OSError, TimeoutError) as e:
        return PingResult(address, source, count, 0, None, f"ping failed: {e}")
    text = out.decode("utf-8", "replace")
    m = re.search(r"(\d+) packets transmitted, (\d+) received", text)
    rtt = re.search(r"= [\d.]+/([\d.]+)/", text)
    sent, received = (int(m.group(1)), int(m.group(2))) if m else (count, 0)
    return PingResult(address, source, sent, received, float(rtt.group(1)) if rtt else None,
                      text.strip()[-2000:])


def session_id(key: SessionKey) -> str:
    """The IKE cookies (as on the wire, no secret): stable for the life of the IKE SA."""
    return key[0].hex() + key[1].hex()


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t).astimezone().isoformat(timespec="seconds")


# Why a phase 1 fails, as counted below: the engine's stable error names
# (vpnhub.ike) and the end reasons of half-open SAs. Each is a metric series from
# the start, at 0; other reasons get theirs when they first happen.
KNOWN_HANDSHAKE_FAILURES = (
    "no_proposal_chosen", "hash_mismatch", "phase1_timeout", "negotiation_timed_out",
    "unknown_group", "unknown_peer", "no_psk", "invalid_ke", "bad_nonce", "missing_payload",
    "bad_proposal_syntax", "decryption_failed", "no_such_group",
    "address_pool_exhausted",
    # issue 14, certificates (ike/sigauth.py)
    "certificate_refused", "signature_mismatch", "certificate_no_group")


@dataclass
class Handshakes:
    """Phase 1 negotiations seen by the manager's event hook (plain ints, for /metrics)."""

    started: int = 0
    completed: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    ipsec_sas: int = 0
    ipsec_rekeys: int = 0


def session_key(sid: str) -> SessionKey | None:
    """The IKE cookies a session id names (None if it is not one)."""
    if not re.fullmatch(r"[0-9a-f]{32}", sid):
        return None
    return bytes.fromhex(sid[:16]), bytes.fromhex(sid[16:])


class ManagerView:
    def __init__(self, conc: ConcentratorLike, *, pinger: Pinger = system_ping,
                 clock: Callable[[], float] = time.time) -> None:
        self.conc = conc
        self.pinger = pinger
        self.clock = clock
        self.counters = SaCounters()  # the data plane's last answer (zeros before)
        self.snapshot_at = 0.0  # time.monotonic() of the counters
        # SPI -> position in counters' arrays, inbound and outbound (built on first use)
        self._index: tuple[dict[int, int], dict[int, int]] | None = None
        self.samples = ThroughputHistory(SAMPLES)  # by session key
        self.tally = SessionTally(conc.sessions)
        self.handshakes = Handshakes()
        # where each IKE SA stands in the handshake counts; kept here, not on the SA,
        # and weak: an entry goes with its SA
        self._handshake_marks: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
        self.management_sessions: Callable[[], int] = lambda: 0
        self._ping_slots = asyncio.Semaphore(2)
        self._unsubscribe = conc.sessions.subscribe(self.on_session_event, (SessionEnded,))

    def close(self) -> None:
        """No more session events (the manager stops)."""
        self._unsubscribe()
        self.tally.close()

    @property
    def snapshot(self) -> DataplaneStats:
        """The data plane's totals at the last sample (for /metrics; no SA list)."""
        return self.counters.totals

    @snapshot.setter
    def snapshot(self, stats: DataplaneStats) -> None:
        """Take a full snapshot as the last answer (tests and benches set one)."""
        self.counters = counters_of(stats)
        self._index = None

    # -------------------------------------------------------------- sessions
    def summary(self) -> dict[str, int]:
        s = dict(self.conc.sessions.summary())
        s["active_management"] = self.management_sessions()
        s["total_active"] = s["active_remote_access"] + s["active_lan_to_lan"] + \
            s["active_management"]
        return s

    def find(self, sid: str) -> SessionView | None:
        key = session_key(sid)
        if key is None:
            return None
        s = self.conc.sessions.get(key)
        return s if s is not None and (s.user or s.lan_to_lan) else None

    def listed(self) -> list[SessionView]:
        """Remote access sessions (a logged-in user)."""
        return sorted(self.remote_access(), key=lambda s: (s.login_time, s.user))

    def remote_access(self) -> Iterator[SessionView]:
        """Remote access sessions, unordered (paging.select orders only a page)."""
        return (s for s in self.conc.sessions.all() if s.user and not s.lan_to_lan)

    def remote_access_parts(self, step: int) -> Iterator[list[SessionView]]:
        """`remote_access()` in lists of at most `step`, all from one copy of the store's
        list: a caller that yields to the loop between two parts sees each session
        once (one that logs in meanwhile waits for the next call)."""
        every = self.conc.sessions.all()
        for i in range(0, len(every), step):
            yield [s for s in every[i:i + step] if s.user and not s.lan_to_lan]

    def sites(self) -> list[SessionView]:
        """LAN-to-LAN sessions (every page of the API lists them: without any, the
        store's counter spares a scan of 10,000 remote access sessions)."""
        if not self.conc.sessions.summary()["active_lan_to_lan"]:
            return []
        found = [s for s in self.conc.sessions.all() if s.lan_to_lan]
        return sorted(found, key=lambda s: (s.login_time, s.lan_to_lan))

    def session_json(self, s: SessionView) -> dict[str, Any]:
        now = self.clock()
        d = s.as_dict(now)
        d["id"] = session_id(s.key)
        d["login_time"] = rfc3339(s.login_time)
        d["legacy_crypto"] = self.legacy(s)
        ins, outs = self._spi_index()
        k = self.counters
        mono = time.monotonic()
        c = self.conc.config.concentrator
        for child, out in zip(s.children.values(), d["ipsec"], strict=True):
            i, o = ins.get(child.spi_in), outs.get(child.spi_out)
            active = max(k.active_in[i] if i is not None else 0.0,
                         k.active_out[o] if o is not None else 0.0)
            idle = mono - active if active > 0 else now - child.established
            out.update({
                "remote_address": str(s.assigned_ip) if s.assigned_ip else None,
                "local_address": str(c.public_address),
                "peer_address": s.public_ip, "peer_port": s.public_port,
                "hashing": out["encryption"].partition("/")[2] or "(AEAD)",
                "bytes_rx": k.bytes_in[i] if i is not None else 0,
                "packets_rx": k.packets_in[i] if i is not None else 0,
                "bytes_tx": k.bytes_out[o] if o is not None else 0,
                "packets_tx": k.packets_out[o] if o is not None else 0,
                "idle_seconds": max(0, int(idle)),
                "established": rfc3339(child.established),
                "legacy_crypto": is_legacy_esp(child.transform, child.auth or None),
            })
            if s.nat_t:
                out["udp_dst_port"] = c.natt_port
        return d

    def _spi_index(self) -> tuple[dict[int, int], dict[int, int]]:
        """SPI -> position in the counters' arrays, built once per answer (in C, by
        dict(zip(...))): session_json and the sampler look every child up in it."""
        if self._index is None:
            k = self.counters
            self._index = (dict(zip(k.spi_in, range(len(k.spi_in)), strict=True)),
                           dict(zip(k.spi_out, range(len(k.spi_out)), strict=True)))
        return self._index

    def legacy(self, s: SessionView) -> bool:
        return is_legacy(s)

    def throughput(self, sid: str) -> list[tuple[float, float, float]]:
        """(time, tx bytes/s, rx bytes/s) between consecutive samples."""
        key = session_key(sid)
        return self.samples.rates(key) if key is not None else []

    async def sample_totals(self) -> None:
        """Every SAMPLE_EVERY seconds between two samples: the data plane's totals only
        (no per-SA arrays built or walked); the SAs' counters stay the last sample's."""
        dp = self.conc.dataplane
        if dp is None:
            return
        with contextlib.suppress(Exception):  # no answer: the last counters stay
            fresh = await dp.counters(sas=False)
            self.counters = replace(self.counters, totals=fresh.totals)
            self.snapshot_at = time.monotonic()

    async def sample(self) -> None:
        """Every HISTORY_EVERY seconds: the data plane's counters and per-session bytes.

        In steps of SAMPLE_CHUNK sessions with the event loop's turn between them
        (IKE and the API wait at most one step); the sample is visible at the end."""
        dp = self.conc.dataplane
        if dp is not None:
            with contextlib.suppress(Exception):  # no answer: the last counters stay
                self.counters, self.snapshot_at = await dp.counters(), time.monotonic()
                self._index = None
            # the workers' answers were merged in this turn, the SPI index is built in
            # the next one and the first sessions in the one after: in one turn these
            # held the loop 8-11 ms at 10,000 sessions on a loaded machine (issue 13)
            await asyncio.sleep(0)
            self._spi_index()
            await asyncio.sleep(0)
        store = self.conc.sessions
        sessions = store.all()
        self.samples.begin(self.clock())
        for start in range(0, len(sessions), SAMPLE_CHUNK):
            if start:
                await asyncio.sleep(0)
            self._sample_chunk(sessions[start:start + SAMPLE_CHUNK], store,
                               dp is not None)
        self.samples.commit()

    def _sample_chunk(self, sessions: list[SessionView], store: SessionStore,
                      counted: bool) -> None:
        """One step of a sample: these sessions' bytes from the counters' arrays (this
        very answer, not the concentrator's older copy) when a data plane runs."""
        ins, outs = self._spi_index()
        k, put = self.counters, self.samples.put
        for s in sessions:
            if not (s.user or s.lan_to_lan) or s.key not in store:  # ended meanwhile
                continue
            tx, rx = s.bytes_tx, s.bytes_rx
            if counted:
                tx = rx = 0
                for c in s.children.values():
                    o, i = outs.get(c.spi_out), ins.get(c.spi_in)
                    if o is not None:
                        tx += k.bytes_out[o]
                    if i is not None:
                        rx += k.bytes_in[i]
            put(s.key, tx, rx)

    def on_session_event(self, e: SessionEvent) -> None:
        """An ended session's samples go with it (SessionEnded from the store)."""
        if isinstance(e, SessionEnded):
            self.samples.drop(e.session.key)

    # -------------------------------------------------------------- actions
    def logout(self, s: SessionView, admin: str) -> bool:
        return self.conc.logout(s.key, admin)

    async def ping(self, s: SessionView, admin: str) -> PingResult | None:
        if s.assigned_ip is None:
            return None
        async with self._ping_slots:
            r = await self.pinger(str(s.assigned_ip), self.ping_source())
        self.conc.log.add("ADMIN", 5, f"ping {s.assigned_ip} ({s.user}) by administrator"
                          f" {admin}: {r.received} of {r.sent} answered", group=s.group,
                          user=s.user)
        return r

    def ping_source(self) -> str:
        """The concentrator's private address if one is configured here (the clients'
        split tunnels include the private networks, so the answer comes back through
        the tunnel), else the kernel's choice."""
        nets = self.conc.config.concentrator.private_networks
        for addr in _local_addresses():
            if any(addr in n for n in nets if n.prefixlen > 0):
                return str(addr)
        return ""

    def set_natt(self, enabled: bool, admin: str) -> bool:
        """NAT-T for new IKE SAs (the engine reads the switch per new SA)."""
        changed = self.conc.natt_enabled != enabled
        self.conc.natt_enabled = enabled
        if changed:
            stuck = sum(1 for s in self.listed() if s.diagnosis)
            hint = f"; {stuck} client(s) without NAT-T must reconnect" if enabled and stuck \
                else ""
            self.conc.log.add("ADMIN", 3, f"NAT Transparency: IPsec over NAT-T"
                              f" {'enabled' if enabled else 'DISABLED'} by administrator {admin}"
                              f" (applies to new IKE SAs{hint})")
        return changed

    def natt_json(self) -> dict[str, Any]:
        n = self.conc.config.nat_transparency
        return {"ipsec_over_natt": self.conc.natt_enabled,
                "natt_port": self.conc.config.concentrator.natt_port,
                "ipsec_over_udp": n.ipsec_over_udp, "ipsec_over_udp_port": n.ipsec_over_udp_port,
                "ipsec_over_tcp": n.ipsec_over_tcp,
                "ipsec_over_tcp_ports": list(n.ipsec_over_tcp_ports)}

    # -------------------------------------------------------------- warnings
    def warnings(self) -> list[Warning_]:
        """The banners, from the counts kept by session events (no scan of the table)."""
        out: list[Warning_] = []
        stuck, legacy = self.tally.stuck, self.tally.legacy
        if stuck.members and not self.conc.natt_enabled:
            out.append(Warning_(
                "natt_off_behind_nat",
                f"NAT-T is off while {len(stuck.members)} client(s) sit behind NAT"
                f" ({stuck.names()}): their"
                " tunnels are up but no data passes (bytes stay 0, the client's tunnel port"
                " is 0).",
                "Turn on IPsec over NAT-T (Configuration > NAT Transparency, or"
                " [nat_transparency] ipsec_over_natt = true) and have those clients"
                " reconnect."))
        elif stuck.members:
            out.append(Warning_(
                "no_natt_behind_nat",
                f"{len(stuck.members)} client(s) behind NAT negotiated no NAT-T:"
                " no data passes.",
                "Enable transparent tunneling (NAT-T) on those clients and reconnect."))
        if legacy.members:
            out.append(Warning_(
                "legacy_crypto",
                f"{len(legacy.members)} session(s) use legacy crypto (3DES, MD5 or DH group"
                f" 1/2/5): {legacy.names()}.",
                "Configure the clients' proposals for AES with SHA-1 or SHA-2 and DH group 14"
                " or higher, then set [concentrator] allow_legacy_crypto = false."))
        for name, pool in sorted(self.conc.pools.items()):
            size, used = pool.size, pool.in_use
            if size and used >= POOL_WARN * size:
                out.append(Warning_(
                    "pool_nearly_exhausted",
                    f"The address pool of group {name} is {100 * used // size}%"
                    f" used ({used} of {size}); new clients are refused when it is"
                    " full.",
                    f"Enlarge [[group]] address_pool of group {name} (e.g. a shorter prefix)"
                    " and restart, or log idle sessions out."))
        out += cluster_warnings(getattr(self.conc, "cluster", None))
        if not self.conc.config.admin.users:
            out.append(Warning_("no_admin_users", "No manager accounts are configured.",
                                "Add [[admin.user]] with a password_hash"
                                " (python -m vpnhub.auth.users)."))
        return out

    # -------------------------------------------------------------- the event hook
    def on_ike_event(self, sa: Any, e: ev.Event) -> None:
        """Counts phase 1 handshakes (started, completed, failed by reason) and IPsec SAs.
        Called by the concentrator for every engine event; must never raise."""
        marks = self._handshake_marks
        mark = marks.get(sa)
        if mark is None:
            marks[sa] = mark = "started"
            self.handshakes.started += 1
        failed = self.handshakes.failed
        if isinstance(e, ev.Phase1Established) and mark == "started":
            marks[sa] = "established"
            self.handshakes.completed += 1
        elif isinstance(e, ev.NegotiationFailed) and mark == "started":
            marks[sa] = "failed"
            failed[e.error] += 1
        elif isinstance(e, ev.SADeleted):
            if mark == "started":
                failed[_reason_label(e.reason)] += 1
            marks[sa] = "deleted"
        elif isinstance(e, ev.ChildSAEstablished):
            self.handshakes.ipsec_sas += 1
            if e.rekey_of is not None:
                self.handshakes.ipsec_rekeys += 1


def _reason_label(reason: str) -> str:
    """A free-text end reason as a short, stable metric label."""
    label = re.sub(r"[^a-z0-9]+", "_", reason.lower()).strip("_")
    return (label or "unknown")[:40]


def _local_addresses() -> list[ipaddress.IPv4Address]:
    """IPv4 addresses of this network namespace (from /proc/net/fib_trie's local entries)."""
    found: list[ipaddress.IPv4Address] = []
    with contextlib.suppress(OSError):
        text = Path("/proc/net/fib_trie").read_text(encoding="ascii")
        last = ""
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("|--"):
                last = line[3:].strip()
            elif line == "/32 host LOCAL" and last:
                with contextlib.suppress(ValueError):
                    a = ipaddress.IPv4Address(last)
                    if not a.is_loopback and a not in found:
                        found.append(a)
    return found
