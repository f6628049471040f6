"""Idle timers (issue 13): how often the concentrator's IKE driver wakes with N idle SAs.

    .venv/bin/python bench/idle_timers.py [--sas 10000] [--spread 30] [--window 120]
        [--dh 2] [--grids 0,1] [--json out.json]

In process, sans-I/O, simulated time: one `IkeEndpoint` responder (the
concentrator's table) and N initiators (one `InitiatorTable`, as the load
generator) over an in-memory wire, each pair through the full Aggressive Mode
+ XAUTH + Mode Config + Quick Mode. The set-ups are spread evenly over
`--spread` seconds (real sessions start at random times), then nothing but
DPD (30 s, RFC 3706: the concentrator asks every quiet peer, the clients
answer and ask nothing) happens for `--window` seconds. Reported for each
`idle_timer_grid` in `--grids` (0 = exact deadlines, the behaviour before
issue 13): the driver's `wakes` per second and the SAs each wake served.
The DH group only makes the set-up cheaper; it changes no timer.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
import time
from pathlib import Path
from typing import Any

from vpnhub.ike import events as ev
from vpnhub.ike.driver import DriverFault, IkeDriver, InitiatorTable
from vpnhub.ike.endpoint import IkeEndpoint, Limits
from vpnhub.ike.policy import LEGACY_GROUPS, Policy
from vpnhub.ike.sa import Address, Datagram, IkeConfig, IkeSA
from vpnhub.ike.transitions import Role
from vpnhub.secret import Secret

SERVER_IP = "203.0.113.50"
GROUP, PSK, USER, PASSWORD = "benchgroup", "benchgroupsecret", "benchuser", "benchpass"
LAN = ipaddress.IPv4Network("192.168.2.0/24")


class IdleBench:
    """One responder table, N initiators, a zero-latency wire and a simulated clock."""

    def __init__(self, grid: float, dh: int, dpd: float) -> None:
        self.now = 1000.0
        self.policy = Policy(allow_legacy=dh in LEGACY_GROUPS, dh_group=dh)
        self.grid, self.dpd = grid, dpd
        self.endpoint = IkeEndpoint(self._server_config,
                                    Limits(half_open_per_source=1 << 30, half_open_total=1 << 30))
        self.server = IkeDriver(self.endpoint, self._server_event,
                                lambda sa, d: self._to_clients.append(d), on_error=_fault)
        self.clients = InitiatorTable()
        self.client = IkeDriver(self.clients, self._client_event,
                                lambda sa, d: self._to_server.append(d), on_error=_fault)
        self._to_server: list[Datagram] = []
        self._to_clients: list[Datagram] = []
        self._client_ip: dict[bytes, str] = {}
        self._pool = iter(ipaddress.IPv4Network("10.64.0.0/12").hosts())
        self.established = 0
        self.dead = 0

    def _server_config(self, remote: Address, local_port: int = 500) -> IkeConfig:
        def lookup(id_type: int, data: bytes, remote: Address) -> Secret | None:
            return Secret(PSK) if data == GROUP.encode() else None

        return IkeConfig(local_address=SERVER_IP, policy=self.policy, psk_lookup=lookup,
                         policy_for=lambda group: self.policy, dpd_interval=self.dpd,
                         idle_timer_grid=self.grid, log_severity=3)

    def start_client(self, i: int) -> None:
        ip = str(ipaddress.IPv4Address("10.0.0.0") + 1 + i)  # one address per client
        cfg = IkeConfig(local_address=ip, policy=self.policy, group_name=GROUP,
                        psk=Secret(PSK), natt=False, log_severity=3,
                        dpd_interval=1e9)  # announces DPD (RFC 3706), never asks
        sa = IkeSA(cfg, Role.INITIATOR, (SERVER_IP, 500), self.now)
        self._client_ip[sa.icookie] = ip
        self.clients.add(sa)
        sa.initiate(self.now)
        self.client.service(sa, self.now)
        self.flush()

    def flush(self) -> None:
        """Deliver until the wire is quiet (every hop at the same simulated instant)."""
        while self._to_server or self._to_clients:
            out, self._to_server = self._to_server, []
            for d in out:
                ip = self._client_ip[d.data[:8]]
                self.server.receive(d.data, (ip, d.local_port), d.remote[1], d.transport,
                                    self.now)
            back, self._to_clients = self._to_clients, []
            for d in back:
                self.client.receive(d.data, (SERVER_IP, d.local_port), d.remote[1],
                                    d.transport, self.now)

    def run_until(self, end: float) -> None:
        """Both drivers' timers, in order, as a loop's `call_at` would run them."""
        while True:
            due = [t for t in (self.server.next_timer(), self.client.next_timer())
                   if t is not None]
            if not due or min(due) > end:
                self.now = end
                return
            self.now = max(self.now, min(due))
            for drv in (self.server, self.client):
                nt = drv.next_timer()
                if nt is not None and nt <= self.now:
                    drv.timer(self.now)
            self.flush()

    def _server_event(self, sa: IkeSA, e: ev.Event, now: float) -> None:
        match e:
            case ev.XauthCredentials():
                sa.xauth_result(e.user == USER and e.password.equals(PASSWORD), now)
            case ev.ModeConfigRequested():
                sa.modecfg_reply(ev.ModeConfig(address=next(self._pool), dns=[],
                                               split_include=[LAN], banner="",
                                               save_password=False, pfs=False), now)
            case ev.ChildSAEstablished():
                self.established += 1
            case ev.DeadPeer():
                self.dead += 1
            case _:
                pass  # nothing else matters to the timers

    def _client_event(self, sa: IkeSA, e: ev.Event, now: float) -> None:
        match e:
            case ev.XauthRequested():
                sa.xauth_reply(USER, Secret(PASSWORD), now)
            case ev.ModeConfigReceived():
                sa.start_quick_mode(now)
            case _:
                pass


def _fault(f: DriverFault) -> None:
    raise RuntimeError(f.describe())


def measure(n: int, grid: float, *, spread: float, window: float, dh: int,
            dpd: float) -> dict[str, Any]:
    b = IdleBench(grid, dh, dpd)
    t0 = time.process_time()
    start = b.now
    for i in range(n):
        b.run_until(start + spread * i / n)
        b.start_client(i)
    b.run_until(start + spread)
    setup_cpu = time.process_time() - t0
    w0, s0, begin = b.server.wakes, b.server.timer_sas, b.now
    c0 = time.process_time()
    b.run_until(begin + window)
    wakes, sas = b.server.wakes - w0, b.server.timer_sas - s0
    return {"grid_s": grid, "sas": n, "established": b.established, "dead_peers": b.dead,
            "window_s": window, "wakes": wakes, "wakes_per_s": wakes / window,
            "sas_per_wake": sas / wakes if wakes else 0.0,
            "window_cpu_s": time.process_time() - c0, "setup_cpu_s": setup_cpu}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--sas", type=int, default=10000)
    ap.add_argument("--spread", type=float, default=30.0, help="seconds the set-ups span")
    ap.add_argument("--window", type=float, default=120.0, help="idle seconds measured")
    ap.add_argument("--dpd", type=float, default=30.0, help="the concentrator's DPD interval")
    ap.add_argument("--dh", type=int, default=2, help="DH group of the set-ups")
    ap.add_argument("--grids", default="0,1", help="idle_timer_grid values, comma-separated")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    runs = []
    for g in (float(x) for x in args.grids.split(",")):
        r = measure(args.sas, g, spread=args.spread, window=args.window, dh=args.dh,
                    dpd=args.dpd)
        runs.append(r)
        print(f"grid {g:g} s: {r['established']}/{args.sas} SAs, {r['wakes']} wakes in"
              f" {args.window:g} s = {r['wakes_per_s']:.1f}/s, {r['sas_per_wake']:.1f} SAs per"
              f" wake, {r['window_cpu_s']:.2f} CPU s; {r['dead_peers']} dead peers",
              flush=True)
    doc = {"bench": "idle_timers", "runs": runs}
    if args.json:
        args.json.write_text(json.dumps(doc, indent=1))
    print(json.dumps(doc))
    return 0 if all(r["established"] == args.sas and not r["dead_peers"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
