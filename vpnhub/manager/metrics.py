"""Prometheus text exposition (format 0.0.4), rendered on scrape from plain counters.

Nothing here keeps state: the concentrator and the data plane count in ints
(endpoint drops, the data plane's snapshot, the manager's handshake hook)
and this module only formats them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from vpnhub.manager.view import ManagerView

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


def render(view: ManagerView, logins_ok: int = 0, logins_failed: int = 0) -> str:
    conc = view.conc
    out = _Out()
    sessions = view.listed()
    by_proto: dict[str, int] = {"IPsec/NAT-T": 0, "IPsec": 0}
    for s in sessions:
        if s.children:
            by_proto[s.protocol] = by_proto.get(s.protocol, 0) + 1
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
               [({"reason": r}, n) for r, n in sorted(hs.failed.items())])
    out.one("vpnhub_ipsec_sas_established_total", "counter",
            "IPsec SAs negotiated (rekeys included).", hs.ipsec_sas)
    out.one("vpnhub_ipsec_rekeys_total", "counter", "IPsec SA rekeys.", hs.ipsec_rekeys)
    out.one("vpnhub_natt_enabled", "gauge", "1 if NAT-T is offered to new IKE SAs.",
            int(conc.natt_enabled))
    _traffic(out, view.snapshot)
    drops: list[tuple[Mapping[str, object], int]] = [
        ({"layer": "ike", "reason": r}, n) for r, n in sorted(conc.endpoint.drops.items())]
    total = view.snapshot.get("drops_total", {})
    if isinstance(total, dict):
        drops += [({"layer": "esp", "reason": r}, int(n)) for r, n in sorted(total.items())]
    out.metric("vpnhub_drops_total", "counter", "Packets dropped, by layer and reason.", drops)
    pools = sorted(conc.pools.items())
    out.metric("vpnhub_pool_addresses", "gauge", "Addresses of each group's pool.",
               [({"group": g, "state": "size"}, p.size) for g, p in pools]
               + [({"group": g, "state": "in_use"}, p.in_use) for g, p in pools])
    out.metric("vpnhub_events_total", "counter", "Events logged, by class (repeats included).",
               [({"class": c}, n) for c, n in sorted(conc.log.counts.items())])
    out.metric("vpnhub_events_suppressed_total", "counter",
               "Per-packet events suppressed by the event log's rate limits, by class.",
               [({"class": c}, n) for c, n in sorted(conc.log.suppressed.items())])
    store = conc.log.store
    out.one("vpnhub_event_store_records", "gauge", "Records in the event log store.",
            store.count if store is not None else len(conc.log.records))
    out.metric("vpnhub_manager_logins_total", "counter", "Manager login attempts, by result.",
               [({"result": "ok"}, logins_ok), ({"result": "failed"}, logins_failed)])
    return "\n".join(out.lines) + "\n"


def _traffic(out: _Out, snap: Mapping[str, Any]) -> None:
    sas = snap.get("sas", [])
    rx_b = sum(int(s.get("bytes_in", 0)) for s in sas if s.get("direction") == "in")
    rx_p = sum(int(s.get("packets_in", 0)) for s in sas if s.get("direction") == "in")
    tx_b = sum(int(s.get("bytes_out", 0)) for s in sas if s.get("direction") == "out")
    tx_p = sum(int(s.get("packets_out", 0)) for s in sas if s.get("direction") == "out")
    out.metric("vpnhub_esp_bytes", "gauge", "Inner bytes through the current IPsec SAs.",
               [({"direction": "rx"}, rx_b), ({"direction": "tx"}, tx_b)])
    out.metric("vpnhub_esp_packets", "gauge", "Packets through the current IPsec SAs.",
               [({"direction": "rx"}, rx_p), ({"direction": "tx"}, tx_p)])
    kinds = (("tun_rx", "tunnel interface read"), ("udp_rx", "UDP 4500 received"),
             ("esp_rx", "raw ESP received"), ("ike_rx", "IKE over 4500 received"),
             ("ike_tx", "IKE over 4500 sent"), ("keepalive_rx", "NAT keepalives received"),
             ("keepalive_tx", "NAT keepalives sent"))
    out.metric("vpnhub_dataplane_packets_total", "counter", "Data plane packets, by kind.",
               [({"kind": k}, int(snap.get(k, 0))) for k, _ in kinds])
