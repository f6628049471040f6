"""Prometheus text exposition (format 0.0.4), rendered on scrape from plain counters.

Nothing here keeps state: the concentrator and the data plane count in ints
(endpoint drops, the data plane's typed stats, the manager's handshake hook)
and this module only formats them.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable, Mapping

from vpnhub import __version__
from vpnhub.esp import errors as esp_errors
from vpnhub.ike.dhpool import DhPool
from vpnhub.manager.view import KNOWN_HANDSHAKE_FAILURES, ClusterLike, ManagerView
from vpnhub.net import dataplane as dp
from vpnhub.net.loopwatch import LoopWatch
from vpnhub.net.stats import DataplaneStats

# Every drop reason a series exists for from the start (at 0): a counter that
# appears only at its first increment hides that first increment from rate()
# and increase(), and alerts on "absent" series cannot be written.
IKE_DROPS = ("truncated_header", "unknown_cookie", "not_a_first_message",
             "half_open_per_source", "half_open_total", "sessions_total")
ESP_DROPS = (*esp_errors.ALL_REASONS, dp.NOT_IPV4, dp.NO_SA, dp.SEND_BUFFER_FULL,
             dp.SEND_ERROR, dp.TUN_WRITE_ERROR, dp.BAD_OUTER_PACKET, dp.CONTROL_QUEUE_FULL,
             dp.HANDOVER_QUEUE_FULL)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class _Out:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def metric(self, name: str, kind: str, help_: str,
               samples: Iterable[tuple[Mapping[str, object], float | int]]) -> None:
        self.lines.append(f"# HELP {name} {help_}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            lab = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
            self.lines.append(f"{name}{{{lab}}} {value}" if lab else f"{name} {value}")

    def one(self, name: str, kind: str, help_: str, value: float | int) -> None:
        self.metric(name, kind, help_, [({}, value)])


def _zeroed(known: Iterable[str], seen: Mapping[str, int]) -> list[tuple[str, int]]:
    counts = dict.fromkeys(known, 0)
    counts.update(seen)
    return sorted(counts.items())


def render(view: ManagerView, logins_ok: int = 0, logins_failed: int = 0) -> str:
    conc = view.conc
    out = _Out()
    out.metric("vpnhub_build_info", "gauge", "Version of vpnhub and of Python; always 1.",
               [({"version": __version__, "python": platform.python_version()}, 1)])
    # kept by session events (vpnhub.manager.tally), not counted per scrape
    by_proto: dict[str, int] = {"IPsec/NAT-T": 0, "IPsec": 0, **view.tally.by_protocol}
    out.metric("vpnhub_sessions", "gauge", "Active remote access sessions by protocol.",
               [({"protocol": p}, n) for p, n in sorted(by_proto.items())])
    summary = view.summary()
    out.one("vpnhub_sessions_peak", "gauge", "Peak concurrent sessions.", summary["peak"])
    out.one("vpnhub_sessions_limit", "gauge", "Concurrent sessions limit.",
            summary["concurrent_limit"])
    out.one("vpnhub_sessions_cumulative_total", "counter", "Sessions since start (logins).",
            summary["cumulative"])
    out.one("vpnhub_management_sessions", "gauge", "Logged-in manager sessions.",
            summary["active_management"])
    out.one("vpnhub_ike_sas", "gauge", "IKE SAs in the table (half-open included).",
            len(conc.endpoint))
    out.one("vpnhub_ike_half_open", "gauge", "Phase 1 negotiations not complete.",
            conc.endpoint.half_open_count())
    hs = view.handshakes
    out.one("vpnhub_handshakes_started_total", "counter", "Phase 1 negotiations started.",
            hs.started)
    out.one("vpnhub_handshakes_completed_total", "counter", "Phase 1 negotiations completed.",
            hs.completed)
    out.metric("vpnhub_handshakes_failed_total", "counter",
               "Phase 1 negotiations failed, by reason.",
               [({"reason": r}, n) for r, n in _zeroed(KNOWN_HANDSHAKE_FAILURES, hs.failed)])
    out.one("vpnhub_ipsec_sas_established_total", "counter",
            "IPsec SAs negotiated (rekeys included).", hs.ipsec_sas)
    out.one("vpnhub_ipsec_rekeys_total", "counter", "IPsec SA rekeys.", hs.ipsec_rekeys)
    out.one("vpnhub_natt_enabled", "gauge", "1 if NAT-T is offered to new IKE SAs.",
            int(conc.natt_enabled))
    _traffic(out, view.snapshot)
    drops: list[tuple[Mapping[str, object], int]] = [
        ({"layer": "ike", "reason": r}, n) for r, n in _zeroed(IKE_DROPS, conc.endpoint.drops)]
    seen = dict(view.snapshot.drops_total)
    drops += [({"layer": "esp", "reason": r}, n) for r, n in _zeroed(ESP_DROPS, seen)]
    out.metric("vpnhub_drops_total", "counter", "Packets dropped, by layer and reason.", drops)
    pools = sorted(conc.pools.items())
    out.metric("vpnhub_pool_addresses", "gauge", "Addresses of each group's pool.",
               [({"group": g, "state": "size"}, p.size) for g, p in pools]
               + [({"group": g, "state": "in_use"}, p.in_use) for g, p in pools])
    pool = getattr(conc.endpoint, "dh_pool", None)  # ike.dhpool; None: dh_pool_size = 0
    _dh_pool(out, pool if isinstance(pool, DhPool) else None)
    out.metric("vpnhub_events_total", "counter", "Events logged, by class (repeats included).",
               [({"class": c}, n) for c, n in sorted(conc.log.counts.items())])
    out.metric("vpnhub_events_suppressed_total", "counter",
               "Per-packet events suppressed by the event log's rate limits, by class.",
               [({"class": c}, n) for c, n in sorted(conc.log.suppressed.items())])
    store = conc.log.store
    out.one("vpnhub_event_store_records", "gauge", "Records in the event log store.",
            store.count if store is not None else len(conc.log.records))
    # the shell's LoopWatch (issue 13) when it runs one: how long IKE waited at worst
    watch = getattr(conc, "loop_watch", None)
    out.one("vpnhub_event_loop_delay_max_seconds", "gauge",
            "Worst lateness of the concentrator's event loop since start.",
            watch.max_delay if isinstance(watch, LoopWatch) else 0.0)
    _cluster(out, getattr(conc, "cluster", None))
    out.metric("vpnhub_manager_logins_total", "counter", "Manager login attempts, by result.",
               [({"result": "ok"}, logins_ok), ({"result": "failed"}, logins_failed)])
    return "\n".join(out.lines) + "\n"


def _dh_pool(out: _Out, pool: DhPool | None) -> None:
    """The DH key pairs computed ahead (ike.dhpool): its level per group, and how many
    SAs found a pair ready or not. No series without a pool (dh_pool_size = 0)."""
    if pool is None:
        return
    out.metric("vpnhub_dh_pool_pairs", "gauge",
               "DH key pairs computed ahead, by DH group: ready now, and the pool's size.",
               [({"group": g, "state": "ready"}, pool.ready(g)) for g in sorted(pool.sizes)]
               + [({"group": g, "state": "size"}, n) for g, n in sorted(pool.sizes.items())])
    out.one("vpnhub_dh_pool_taken_total", "counter",
            "SAs (phase 1 and Quick Mode PFS) served a pair from the DH pool.", pool.taken)
    out.one("vpnhub_dh_pool_missed_total", "counter",
            "SAs that found the DH pool empty and computed their own pair.", pool.missed)


def _cluster(out: _Out, cluster: ClusterLike | None) -> None:
    """Issue 17, a [cluster] member only: the database, the members, the virtual address."""
    if cluster is None:
        return
    out.one("vpnhub_cluster_database_up", "gauge",
            "1 while the cluster database is reachable.", int(cluster.database_ok))
    members = cluster.members()
    alive = sum(1 for m in members if m.alive)
    out.metric("vpnhub_cluster_members", "gauge", "Cluster members, by liveness.",
               [({"state": "alive"}, alive), ({"state": "dead"}, len(members) - alive)])
    out.one("vpnhub_cluster_database_outages_total", "counter",
            "Times the cluster database became unreachable.", cluster.outages)
    out.one("vpnhub_cluster_holds_virtual_address", "gauge",
            "1 while this member holds the virtual cluster address (VRRP master).",
            int(cluster.holds_virtual_address()))


def _traffic(out: _Out, snap: DataplaneStats) -> None:
    # The data plane's running totals: the current SAs plus every SA that ended, so
    # they never go down (a sum over the current SAs fell at each rekey and logout).
    t = snap.esp_totals
    out.metric("vpnhub_esp_bytes_total", "counter", "Inner bytes through IPsec SAs.",
               [({"direction": "rx"}, t.bytes_in), ({"direction": "tx"}, t.bytes_out)])
    out.metric("vpnhub_esp_packets_total", "counter", "Packets through IPsec SAs.",
               [({"direction": "rx"}, t.packets_in), ({"direction": "tx"}, t.packets_out)])
    kinds = (("tun_rx", "tunnel interface read"), ("udp_rx", "UDP 4500 received"),
             ("esp_rx", "raw ESP received"), ("ike_rx", "IKE over 4500 received"),
             ("ike_tx", "IKE over 4500 sent"), ("keepalive_rx", "NAT keepalives received"),
             ("keepalive_tx", "NAT keepalives sent"))
    out.metric("vpnhub_dataplane_packets_total", "counter", "Data plane packets, by kind.",
               [({"kind": k}, int(getattr(snap, k))) for k, _ in kinds])
    _syscalls(out, snap)
    if snap.workers:  # [dataplane] workers > 1: one series per worker process
        ws = [({"worker": str(w.index)}, w) for w in snap.workers]
        out.metric("vpnhub_worker_packets_total", "counter",
                   "Packets read by each data-plane worker.", [(k, w.packets) for k, w in ws])
        out.metric("vpnhub_worker_cpu_seconds_total", "counter",
                   "CPU time (user + system) of each data-plane worker process.",
                   [(k, w.cpu_seconds) for k, w in ws])
        out.metric("vpnhub_worker_restarts_total", "counter",
                   "Restarts of each data-plane worker (it died or hung).",
                   [(k, w.restarts) for k, w in ws])
        out.metric("vpnhub_worker_sas", "gauge", "IPsec SAs in each data-plane worker.",
                   [(k, w.sas) for k, w in ws])
        out.metric("vpnhub_worker_handed_over_total", "counter",
                   "LAN packets a worker passed to the worker owning the client.",
                   [(k, w.handed_over) for k, w in ws])


def _syscalls(out: _Out, snap: DataplaneStats) -> None:
    # issue 16: system calls per packet on the UDP sockets (GRO trains in, GSO trains out)
    out.metric("vpnhub_dataplane_udp_calls_total", "counter",
               "UDP receive and ESP send system calls of the data plane, by direction.",
               [({"direction": "rx"}, snap.udp_rx_calls),
                ({"direction": "tx"}, snap.udp_tx_calls)])
    out.metric("vpnhub_dataplane_udp_datagrams_total", "counter",
               "UDP datagrams those calls carried (a GRO or GSO train counts its segments).",
               [({"direction": "rx"}, snap.udp_rx_datagrams),
                ({"direction": "tx"}, snap.udp_tx_datagrams)])
    out.one("vpnhub_dataplane_gso_fallbacks_total", "counter",
            "UDP GSO trains the kernel refused, sent one datagram at a time.", snap.gso_fallbacks)
    out.one("vpnhub_dataplane_esp_via_ike_socket_total", "counter",
            "Datagrams of a GRO train led by IKE, handed from the IKE socket to the data plane.",
            snap.esp_via_ike_socket)
    out.one("vpnhub_dataplane_moderation_waits_total", "counter",
            "Waits of the data plane's interrupt moderation ([dataplane] moderation_us).",
            snap.moderation_waits)
    out.metric("vpnhub_dataplane_tun_calls_total", "counter",
               "TUN reads (rx) and writes (tx) of the data plane.",
               [({"direction": "rx"}, snap.tun_rx_calls),
                ({"direction": "tx"}, snap.tun_tx_calls)])
    out.metric("vpnhub_dataplane_tun_packets_total", "counter",
               "IP packets those TUN calls carried (a super-packet counts its segments).",
               [({"direction": "rx"}, snap.tun_rx), ({"direction": "tx"}, snap.tun_tx)])
    out.metric("vpnhub_dataplane_tun_super_packets_total", "counter",
               "TUN super-packets split (rx) or coalesced (tx) by the data plane.",
               [({"direction": "rx"}, snap.tun_rx_super),
                ({"direction": "tx"}, snap.tun_tx_super)])
    out.metric("vpnhub_dataplane_offload_active", "gauge",
               "1 where the kernel took UDP GRO (receive), UDP GSO (send) or the TUN's"
               " virtio_net_hdr offloads.",
               [({"offload": "udp_gro"}, int(snap.udp_gro)),
                ({"offload": "udp_gso"}, int(snap.udp_gso)),
                ({"offload": "tun_vnet_hdr"}, int(snap.tun_offload))])
