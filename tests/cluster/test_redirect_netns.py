"""Issue 17: the cluster's virtual address redirects vpnc to another member, with real
vpnc behind the lab's PAT ("masquerade random").

Member A (the lab's concentrator, 203.0.113.50) holds the virtual address
203.0.113.60 as the VRRP master would; member B (203.0.113.51, a namespace of this
test) is an ordinary concentrator with a pool of its own, routed to the LAN host.
A runs `tests/cluster/redirect_member.py`: the service with a fixed stand-in for the
cluster directory that names B (the PostgreSQL directory is the cluster test's).

1. vpnc connects to the virtual address: phase 1 with A (NAT detected, message 3 over
   UDP 4500 to the virtual address), notify 40501 instead of XAUTH, vpnc starts again
   at B (UDP 500): B has its session, the LAN host answers through it, A has none.
2. `vpnhub connect` (profile gateway: the virtual address) is redirected the same way:
   it follows the notify as vpnc does, its session is on B, its status names B.
3. A strongSwan client (Cisco Unity on, as the lab's, but no redirects; kernel-libipsec)
   on the virtual address is not redirected: its IKE SA and session are A's, on the
   virtual address, and its ESP in UDP 4500 to and from that address passes: it
   pings the LAN host through A, with one data plane and with two worker processes
   (docs/CLUSTER.md, "Redirect").
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from client_harness import TUN, _connect, _profile, _status, _wait_connected, serve_ok
from netns_util import require_tools
from vpnhub_harness import VPNHUB, ServerOptions, explain, render_config

from vpnhub.admin import request
from vpnhub.lab.peers import CHARON, start_strongswan_client, start_vpnc
from vpnhub.lab.procs import Proc
from vpnhub.lab.topology import (
    LAN_HOST,
    PRIVATE_LAN,
    Host,
    Topology,
    record_netns,
    run,
    wait_until,
)

__all__ = ["serve_ok"]

pytestmark = pytest.mark.netns

VIP = "203.0.113.60"
B_PUBLIC = "203.0.113.51"
B_POOL = "10.40.2.0/24"
B_LINK, LAN_LINK = "192.168.4.1", "192.168.4.10"  # B <-> LAN host
RUNNER = Path(__file__).with_name("redirect_member.py")
DH = "dh14"
TOOLS = ("nft", "conntrack", "ss", "ping", "stdbuf", "unshare")


def _add_member_b(topo: Topology) -> Host:
    """A second concentrator namespace on the internet switch, with its own link to
    the LAN host, which routes B's pool back to it."""
    p = topo.prefix
    b = Host("mb", f"{p}-mb", B_PUBLIC, f"{p}mb")
    record_netns(p, b.netns)  # first: the lab's cleanup removes what it recorded
    run(["ip", "netns", "add", b.netns])
    topo.hosts[b.role] = b
    ip = ["ip", "-n", b.netns]
    run(["ip", "link", "add", b.ifname, "netns", b.netns, "type", "veth", "peer", "name",
         f"{p}i9", "netns", topo.inet.netns])
    run(["ip", "-n", topo.inet.netns, "link", "set", f"{p}i9", "master", topo.inet.ifname])
    run(["ip", "-n", topo.inet.netns, "link", "set", f"{p}i9", "up"])
    run([*ip, "link", "set", "lo", "up"])
    run([*ip, "addr", "add", f"{B_PUBLIC}/24", "dev", b.ifname])
    run([*ip, "link", "set", b.ifname, "up"])
    run(["ip", "link", "add", f"{p}bp", "netns", b.netns, "type", "veth", "peer", "name",
         f"{p}lb", "netns", topo.lan.netns])
    run([*ip, "addr", "add", f"{B_LINK}/24", "dev", f"{p}bp"])
    run([*ip, "link", "set", f"{p}bp", "up"])
    run([*ip, "route", "add", PRIVATE_LAN, "via", LAN_LINK])
    lan = ["ip", "-n", topo.lan.netns]
    run([*lan, "addr", "add", f"{LAN_LINK}/24", "dev", f"{p}lb"])
    run([*lan, "link", "set", f"{p}lb", "up"])
    run([*lan, "route", "add", B_POOL, "via", B_LINK])
    return b


def _start(topo: Topology, host: Host, name: str, opts: ServerOptions,
           argv: list[str]) -> tuple[Proc, Path]:
    """Write the configuration into run_dir/NAME, start argv (its "CONFIG" replaced by
    the file) in host and wait for its IKE ports and admin socket."""
    run_dir = topo.run_dir / name
    run_dir.mkdir()
    config = run_dir / "vpnhub.toml"
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(render_config(run_dir, opts))
    proc = topo.spawn(host, [str(config) if a == "CONFIG" else a for a in argv],
                      run_dir / "vpnhub-serve.log", env={"PYTHONUNBUFFERED": "1"},
                      name=f"vpnhub-{name}")
    sock = run_dir / "admin.sock"

    def ready() -> bool:
        assert proc.alive(), explain(f"{name} exited ({proc.returncode})", proc.log)
        return {500, 4500} <= topo.listening(host, "udp") and sock.is_socket()

    wait_until(ready, 20.0, interval=0.05, what=f"{name} to serve")
    return proc, sock


def _sessions(topo: Topology, host: Host, sock: Path) -> list[dict[str, Any]]:
    """``vpnhub sessions --json`` in `host`."""
    cp = topo.exec(host, [*VPNHUB, "sessions", "--json", "--socket", str(sock)], timeout=20)
    assert cp.returncode == 0, cp.stderr
    sessions: list[dict[str, Any]] = json.loads(cp.stdout)["sessions"]
    return sessions


def _cluster(topo: Topology, workers: int | None = None
             ) -> tuple[Host, Proc, Path, Proc, Path]:
    topo.start_lan_services()
    b = _add_member_b(topo)
    run(["ip", "-n", topo.conc.netns, "addr", "add", f"{VIP}/24", "dev", topo.conc.ifname])
    cluster = {"dsn": "host=192.168.5.10 dbname=vpnhub", "member": "a",
               "virtual_address": VIP}
    extra: dict[str, dict[str, object]] = {"cluster": cluster}
    if workers is not None:
        extra["dataplane"] = {"workers": workers}
    a_proc, a_sock = _start(topo, topo.conc, "a", ServerOptions(extra=extra),
                            [sys.executable, str(RUNNER), "CONFIG", B_PUBLIC])
    b_opts = ServerOptions(pool=B_POOL, extra={"concentrator": {"public_address": B_PUBLIC}})
    b_proc, b_sock = _start(topo, b, "b", b_opts, [*VPNHUB, "serve", "--config", "CONFIG"])
    return b, a_proc, a_sock, b_proc, b_sock


def test_vpnc_redirected_to_member_b(lab_prefix: str, lab_run_dir: Path) -> None:
    require_tools(*TOOLS, "vpnc")
    with Topology(lab_prefix, clients=2, run_dir=lab_run_dir) as topo:
        b, a_proc, a_sock, b_proc, b_sock = _cluster(topo)
        topo.flush_pat_conntrack()
        vpnc = start_vpnc(topo, "c1", gateway=VIP, dh=DH)
        logs = (a_proc.log, b_proc.log, vpnc.log)
        try:
            vpnc.wait_usable(timeout=40)
        except (TimeoutError, RuntimeError) as e:
            raise AssertionError(explain(f"vpnc via the virtual address: {e}", *logs)) from None
        on_b = _sessions(topo, b, b_sock)
        assert [s["user"] for s in on_b] == ["vpnuser1"], explain(f"B: {on_b}", *logs)
        assert on_b[0]["assigned_ip"].startswith("10.40.2."), on_b
        vpnc_log = vpnc.log.read_text(errors="replace")
        # two phase 1s: at the virtual address, then at B ("diverting" is debug 2)
        assert vpnc_log.count("IKE SA selected") == 2, explain("vpnc's phase 1s", *logs)
        a_log = a_proc.log_text()
        assert f"to member {B_PUBLIC} (load-balancing)" in a_log, explain("A's log", *logs)
        assert _sessions(topo, topo.conc, a_sock) == [], explain("A keeps a session", *logs)
        stats = request(str(a_sock), {"cmd": "stats"})
        assert stats["redirects"]["to_member"] == 1, stats["redirects"]
        assert stats["virtual"]["rx_500"] >= 1 and stats["virtual"]["rx_4500"] >= 1, \
            explain(f"A's virtual address sockets: {stats['virtual']}", *logs)
        # the redirected SA is forgotten (informational.REDIRECT_LINGER, 10 s)
        wait_until(lambda: request(str(a_sock), {"cmd": "status"})["sas"] == 0, 20.0,
                   what="A to forget the redirected IKE SA")
        assert topo.ping(topo.clients[0], LAN_HOST, count=3, interface=topo.clients[0].tun)


def test_vpnhub_client_redirected_to_member_b(lab_prefix: str, lab_run_dir: Path,
                                              serve_ok: None) -> None:
    """Issue 17: our own client follows the notify as vpnc does (engine:
    events.RedirectRequested; driver: a new Aggressive Mode at B, UDP 500)."""
    require_tools(*TOOLS)
    with Topology(lab_prefix, clients=1, run_dir=lab_run_dir) as topo:
        b, a_proc, a_sock, b_proc, b_sock = _cluster(topo)
        topo.flush_pat_conntrack()
        c = topo.clients[0]
        proc = _connect(topo, c, "vpnuser1", "userpass1", _profile(topo, "vip", host=VIP))
        logs = (a_proc.log, b_proc.log, proc.log)
        try:
            _wait_connected(topo, c, proc, timeout=40)
        except (AssertionError, TimeoutError) as e:
            raise AssertionError(explain(f"vpnhub connect via the virtual address: {e}",
                                         *logs)) from None
        said = f"redirected by the concentrator to {B_PUBLIC} (load balancing)"
        assert said in proc.log_text(), explain("the client's log", *logs)
        st = _status(topo, c)
        assert st["concentrator"] == B_PUBLIC and st["gateway"] == VIP, st
        assert st["redirects"] == [said], st
        assert st["tunnel_port"] == 4500 and st["assigned_address"].startswith("10.40.2."), st
        text = topo.exec(c, [*VPNHUB, "status", "--socket",
                             str(topo.run_dir / f"status-{c.role}.sock")], timeout=10).stdout
        assert f"Concentrator:           {B_PUBLIC}" in text and said in text, text
        on_b = _sessions(topo, b, b_sock)
        assert [s["user"] for s in on_b] == ["vpnuser1"], explain(f"B: {on_b}", *logs)
        assert f"to member {B_PUBLIC} (load-balancing)" in a_proc.log_text()
        assert _sessions(topo, topo.conc, a_sock) == [], explain("A keeps a session", *logs)
        assert request(str(a_sock), {"cmd": "stats"})["redirects"]["to_member"] == 1
        assert topo.ping(c, LAN_HOST, count=3, interface=TUN), explain("ping via B", *logs)
        assert proc.stop(10) == 0  # DELETE to B, routes and TUN removed
        wait_until(lambda: _sessions(topo, b, b_sock) == [], 10.0, interval=0.2,
                   what="B's session gone after the client's DELETE")


@pytest.mark.parametrize("workers", [1, 2])
def test_strongswan_served_on_virtual_address(lab_prefix: str, lab_run_dir: Path,
                                              workers: int) -> None:
    require_tools(*TOOLS, "swanctl", CHARON)
    with Topology(lab_prefix, clients=1, run_dir=lab_run_dir) as topo:
        b, a_proc, a_sock, _b_proc, b_sock = _cluster(topo, workers)
        topo.flush_pat_conntrack()
        swan = start_strongswan_client(topo, "c1", gateway=VIP, suite="aes256-sha1")
        # the lab's suites are all modp1024; vpnhub's defaults need no legacy group
        conf = swan.swanctl_conf.read_text()
        swan.swanctl_conf.write_text(conf.replace("modp1024", "modp2048"))
        swan.load()
        swan.initiate(timeout=30)
        logs = (a_proc.log, swan.log)

        def on_a() -> list[dict[str, Any]] | None:
            got = _sessions(topo, topo.conc, a_sock)
            return got if got and got[0].get("ipsec") else None

        try:
            served = wait_until(on_a, 30.0, interval=0.5, what="strongSwan's session on A")
        except TimeoutError as e:
            raise AssertionError(explain(str(e), *logs)) from None
        assert served[0]["user"] == "vpnuser1"
        assert swan.established() == 1, explain("strongSwan's IKE SA", *logs)
        assert _sessions(topo, b, b_sock) == []
        stats = request(str(a_sock), {"cmd": "stats"})["redirects"]
        assert stats == {"to_member": 0, "to_self": 0, "served_on_virtual": 1}, stats
        a_log = a_proc.log_text()
        assert "redirected" not in a_log
        assert "is served on the virtual cluster address" in a_log
        assert "not carried" not in a_log, explain("A's log", *logs)
        assert VIP in swan.list_sas(), swan.list_sas()
        # ESP in UDP to and from the virtual address through the PAT (RFC 3948)
        try:
            topo.wait_ping("c1", LAN_HOST, interface=swan.tun, timeout=15)
        except (TimeoutError, AssertionError) as e:
            raise AssertionError(explain(f"ping through A's virtual address: {e}",
                                         *logs)) from None
        assert topo.ping("c1", LAN_HOST, interface=swan.tun, count=3, interval=0.2)
        full = request(str(a_sock), {"cmd": "stats"})
        virtual = full["virtual"]
        assert virtual["esp_handed_over"] >= 3, virtual
        assert not virtual["drops_4500"].get("not_ike_on_ike_socket"), virtual
        if workers > 1:
            assert "2 data-plane workers" in a_log, explain("A's workers", *logs)
