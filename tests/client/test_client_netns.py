"""`vpnhub connect` in the document's network: real concentrators, a real PAT.

Two vpnhub clients behind one PAT to `vpnhub serve`; a vpnhub client to the
strongSwan concentrator (kernel-libipsec); a wrong password; a concentrator
that dies under a connected client.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from client_harness import (
    TUN,
    VPNHUB,
    _connect,
    _pcf,
    _profile,
    _status,
    _wait_connected,
    serve_ok,
)
from vpnhub_harness import ServerOptions, iperf_result, start_iperf, start_vpnhub

from vpnhub.lab.peers import start_strongswan_concentrator
from vpnhub.lab.topology import LAN_HOST, Topology, wait_until

__all__ = ["serve_ok"]

pytestmark = pytest.mark.netns


def test_two_vpnhub_clients_behind_one_pat(lab_prefix: str, lab_run_dir: Path,
                                           serve_ok: None) -> None:
    with Topology(lab_prefix, clients=2, run_dir=lab_run_dir) as topo:
        server = start_vpnhub(topo, ServerOptions())
        topo.start_lan_services(iperf_ports=[5201, 5202])
        # one client with our TOML profile, one with a Cisco .pcf (obfuscated group password)
        profiles = [_profile(topo, "lab"), _pcf(topo, "lab")]
        procs = [_connect(topo, c, f"vpnuser{i + 1}", f"userpass{i + 1}", profiles[i])
                 for i, c in enumerate(topo.clients)]
        for c, p in zip(topo.clients, procs, strict=True):
            _wait_connected(topo, c, p)
        for c in topo.clients:
            assert topo.ping(c, LAN_HOST, count=2, timeout=2, interface=TUN), c.role
        # a TCP transfer through both tunnels at once
        runs = [start_iperf(topo, c, 5201 + i, 2) for i, c in enumerate(topo.clients)]
        results = [iperf_result(r, 20) for r in runs]
        for r in results:
            assert r.returncode == 0 and r.received_bytes > 0, r
        for c in topo.clients:
            st = _status(topo, c)
            assert st["tunnel_port"] == 4500, st  # 4500 proves NAT-T
            assert st["local_behind_nat"] is True
            assert "IS behind a NAT device" in st["nat"]
            assert st["packets_encrypted"] > 0 and st["packets_decrypted"] > 0, st
            assert st["assigned_address"].startswith("10.40.1.")
        sessions = server.sessions()["sessions"]
        assert {s["public_ip"] for s in sessions} == {"203.0.113.78"}
        assert len({s["public_port"] for s in sessions}) == 2
        assert all(s["protocol"] == "IPsec/NAT-T" for s in sessions)
        for p in procs:
            assert p.stop(10) == 0  # SIGTERM: DELETE sent, routes and TUN removed
        for c in topo.clients:
            assert TUN not in topo.exec(c, ["ip", "-o", "link"]).stdout
        server.wait_sessions(lambda d: not d["sessions"], "both sessions gone after DELETE")


def test_vpnhub_client_to_strongswan_concentrator(lab_prefix: str, lab_run_dir: Path) -> None:
    with Topology(lab_prefix, clients=1, run_dir=lab_run_dir) as topo:
        charon = start_strongswan_concentrator(topo)  # AES-128/SHA1/MODP1024, Unity split
        c = topo.clients[0]
        profile = _profile(topo, "swan", dh_group=2, allow_legacy=True)
        proc = _connect(topo, c, "vpnuser1", "userpass1", profile)
        _wait_connected(topo, c, proc)
        assert topo.ping(c, LAN_HOST, count=2, timeout=2, interface=TUN)
        st = _status(topo, c)
        assert st["tunnel_port"] == 4500 and st["routes"] == ["192.168.2.0/24"], st
        assert "TUNNEL-in-UDP" in charon.list_sas()
        assert proc.stop(10) == 0


def test_wrong_password_leaves_the_system_as_it_was(lab_prefix: str, lab_run_dir: Path,
                                                     serve_ok: None) -> None:
    with Topology(lab_prefix, clients=1, run_dir=lab_run_dir) as topo:
        start_vpnhub(topo, ServerOptions())
        c = topo.clients[0]
        routes_before = topo.exec(c, ["ip", "route"]).stdout
        resolv_before = Path("/etc/resolv.conf").read_bytes()
        profile = _profile(topo, "wrong", no_dns=False)  # DNS would be written on success
        r = topo.exec(c, [*VPNHUB, "connect", "--profile", str(profile), "--user", "vpnuser1",
                          "--status-socket", str(topo.run_dir / "s.sock")],
                      env={"VPNHUB_PASSWORD": "not-the-password"}, timeout=40)
        out = r.stdout + r.stderr
        assert r.returncode == 1, out
        assert "authentication failed" in out and "vpnuser1" in out, out
        assert topo.exec(c, ["ip", "route"]).stdout == routes_before
        assert Path("/etc/resolv.conf").read_bytes() == resolv_before
        assert TUN not in topo.exec(c, ["ip", "-o", "link"]).stdout


def test_dead_concentrator_is_detected_and_cleaned_up(lab_prefix: str, lab_run_dir: Path,
                                                      serve_ok: None) -> None:
    with Topology(lab_prefix, clients=1, run_dir=lab_run_dir) as topo:
        server = start_vpnhub(topo, ServerOptions())
        c = topo.clients[0]
        dpd = 4
        proc = _connect(topo, c, "vpnuser1", "userpass1", _profile(topo, "dpd",
                                                                    dpd_interval=dpd))
        _wait_connected(topo, c, proc)
        routes_up = topo.exec(c, ["ip", "route"]).stdout
        assert "192.168.2.0/24 dev vpnhub-c0" in routes_up
        os.kill(server.proc.pid, signal.SIGKILL)  # no DELETE: it just dies
        t0 = time.monotonic()
        try:
            code = proc.popen.wait(timeout=4 * dpd + 10)
        except subprocess.TimeoutExpired:
            pytest.fail(f"client still running:\n{proc.log_text()[-2000:]}")
        took = time.monotonic() - t0
        log = proc.log_text()
        assert code == 4, log[-2000:]
        assert "not answering" in log and "dead peer" in log, log[-2000:]
        assert took < 3 * dpd + 5, took  # the first probe after dpd s, dead one interval later
        assert "vpnhub-c0" not in topo.exec(c, ["ip", "route"]).stdout
        assert TUN not in topo.exec(c, ["ip", "-o", "link"]).stdout


def test_rekeys_lose_no_packet(lab_prefix: str, lab_run_dir: Path, serve_ok: None) -> None:
    """Phase 2 rekey (the client at 85 % of 20 s) and phase 1 rekey (a new Aggressive
    Mode at 90 % of 30 s that takes the IPsec SAs over) under a continuous ping."""
    with Topology(lab_prefix, clients=1, run_dir=lab_run_dir) as topo:
        server = start_vpnhub(topo, ServerOptions(extra={"concentrator": {
            "ipsec_lifetime": 20, "ike_lifetime": 30}}))
        c = topo.clients[0]
        proc = _connect(topo, c, "vpnuser1", "userpass1", _profile(topo, "rekey"))
        _wait_connected(topo, c, proc)
        r = topo.exec(c, ["ping", "-q", "-i", "0.1", "-c", "330", "-W", "1", "-I", TUN,
                          LAN_HOST], timeout=60)
        log = proc.log_text()
        assert "phase 1 rekeyed" in log, log[-3000:]
        assert server.lines("rekeyed:"), server.tail()  # phase 2 replaced
        assert server.lines("phase 1 rekey"), server.tail()
        assert " 0% packet loss" in r.stdout, r.stdout + log[-2000:]
        assert proc.alive()
        sessions = server.sessions()["sessions"]
        assert len(sessions) == 1 and sessions[0]["user"] == "vpnuser1"
        assert proc.stop(10) == 0


def test_reconnect_after_the_concentrator_comes_back(lab_prefix: str, lab_run_dir: Path,
                                                      serve_ok: None) -> None:
    with Topology(lab_prefix, clients=1, run_dir=lab_run_dir) as topo:
        server = start_vpnhub(topo, ServerOptions())
        c = topo.clients[0]
        sock = topo.run_dir / f"status-{c.role}.sock"
        proc = topo.spawn(c, [*VPNHUB, "connect", "--profile",
                              str(_profile(topo, "re", dpd_interval=3)), "--user", "vpnuser1",
                              "--status-socket", str(sock), "--no-dns", "--reconnect"],
                          "client-re.log", env={"VPNHUB_PASSWORD": "userpass1"})
        _wait_connected(topo, c, proc)
        os.kill(server.proc.pid, signal.SIGKILL)
        wait_until(lambda: "reconnecting" in proc.log_text(), 20, interval=0.2,
                   what="the client notices the dead concentrator and plans to reconnect")
        server.proc.popen.wait(5)
        start_vpnhub(topo, ServerOptions())  # the concentrator is back
        wait_until(lambda: proc.log_text().count("connected: address") >= 2, 30, interval=0.2,
                   what="the client connected again")
        # "connected" is said as our message 3 leaves; the restarted concentrator (its
        # DH pool still filling) may take a moment to check it and install its outbound
        # SA, so the first echo reply can meet no SA: traffic must pass within seconds,
        # then steadily.
        topo.wait_ping(c, LAN_HOST, interface=TUN, timeout=10,
                       abort=lambda: None if proc.alive() else "the client exited")
        assert topo.ping(c, LAN_HOST, count=2, timeout=2, interface=TUN), proc.log_text()[-2000:]
        assert proc.stop(10) == 0
