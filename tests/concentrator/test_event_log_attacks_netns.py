"""Issue 11 points 3 and 4 in the lab: a junk flood while a real vpnc connects, and
log injection attempts by a client, against `vpnhub serve` (marker ``netns``).

The flood comes from the internet side (the direct host d1 and spoofed
203.0.113.100-199 sources) and copies the cookies and the ESP SPI of a real
session, which an on-path sniffer on the internet switch has read
(tests/concentrator/junk_flood.py). The promises checked are the ones a
user of the event log relies on: the tunnels work, nothing the junk caused
names a user, the login lines are there and right, and the store grows by
at most the unauthenticated budget (101 records per 10 s window: 100 lines
and one summary).
"""

from __future__ import annotations

import json
import math
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from client_harness import TUN, _connect, _profile, _wait_connected, serve_ok
from vpnhub_harness import VpnhubServer

from vpnhub.eventlimit import EventLimiter
from vpnhub.lab.peers import start_vpnc
from vpnhub.lab.topology import CONC_PUBLIC, LAN_HOST, PAT_OUTSIDE, Topology, wait_until
from vpnhub.text import has_control

__all__ = ["serve_ok"]

pytestmark = pytest.mark.netns

StartVpnhub = Callable[..., VpnhubServer]
FLOOD = Path(__file__).with_name("junk_flood.py")
FLOOD_SECONDS = 20.0
SPOOF = "203.0.113"  # .100-.199: unused lab addresses, never the PAT's (.78)


def _records(store: Path) -> list[dict[str, Any]]:
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM events ORDER BY seq")]
    finally:
        db.close()


def test_junk_flood_while_vpnc_connects(lab_prefix: str, lab_run_dir: Path, peer_tools: None,
                                        vpnhub: StartVpnhub) -> None:
    with Topology(lab_prefix, clients=2, direct_clients=1, run_dir=lab_run_dir) as topo:
        topo.start_lan_services()
        srv = vpnhub(topo)
        store = lab_run_dir / "vpnhub-events.log"
        cookies = lab_run_dir / "sniffed.json"
        topo.spawn("inet", [sys.executable, str(FLOOD), "sniff", f"{lab_prefix}i1",
                            str(cookies), PAT_OUTSIDE, CONC_PUBLIC], "sniff.log")
        time.sleep(0.5)  # the sniffer's socket is bound
        first = start_vpnc(topo, "c1", dh="dh14")
        try:
            first.wait_usable(timeout=30)
        except (TimeoutError, RuntimeError) as e:
            raise AssertionError(srv.explain(str(e), first)) from None
        wait_until(lambda: cookies.exists(), 30, what="the sniffer to see the session")
        sniffed = json.loads(cookies.read_text())
        assert "cookies" in sniffed and "spi" in sniffed, sniffed

        result = lab_run_dir / "flood.json"
        flood = topo.spawn("d1", [sys.executable, str(FLOOD), "flood", CONC_PUBLIC,
                                  str(cookies), str(FLOOD_SECONDS), str(result), SPOOF],
                           "flood.log")
        time.sleep(2)  # the flood is on when the second PC connects
        second = start_vpnc(topo, "c2", dh="dh14")
        try:
            second.wait_usable(timeout=40)
        except (TimeoutError, RuntimeError) as e:
            raise AssertionError(srv.explain(f"vpnc during the flood: {e}", second)) from None
        assert topo.ping("c2", LAN_HOST, interface=second.host.tun, count=3), srv.explain(
            "no ping through the second tunnel during the flood", second)
        wait_until(lambda: result.exists(), FLOOD_SECONDS + 30, what="the flood to end")
        wait_until(lambda: not flood.alive(), 10, what="the flood program to exit")
        assert flood.returncode == 0, flood.log_text()[-2000:]
        assert topo.ping("c1", LAN_HOST, interface=first.host.tun, count=3), srv.explain(
            "the first tunnel stopped after the flood", first)
        stats = json.loads(result.read_text())
        time.sleep(1.5)  # the store's batch is written (0.5 s) and summaries are due (tick)

        records = _records(store)
        users = {"vpnuser1", "vpnuser2"}
        during = [r for r in records if stats["start"] <= r["time"] <= stats["end"] + 1]
        # nothing the junk caused names a user: vpnuser1's tunnel was idle during the
        # flood, so no record in its name may appear then (its cookies were copied)
        assert not [r for r in during if r["user"] == "vpnuser1"], [
            r["text"] for r in during if r["user"] == "vpnuser1"][:5]
        for r in records:
            if r["user"] in users:
                assert r["peer_address"] == PAT_OUTSIDE and r["auth"] == 1, r
            if r["peer_address"] not in ("", PAT_OUTSIDE):
                assert (r["user"], r["grp"], r["auth"]) == ("", "", 0), r
        logins = [r for r in records if r["text"] == "user 'vpnuser2' authenticated"]
        assert len(logins) == 1 and logins[0]["user"] == "vpnuser2", logins
        assert logins[0]["peer_address"] == PAT_OUTSIDE
        # bounded: the unauthenticated budget per 10 s window (plus its summary)
        lim = EventLimiter()
        windows = math.ceil((stats["end"] - stats["start"] + 2) / lim.interval) + 1
        bound = windows * (lim.unauth_burst + 1)
        unauth = [r for r in records if r["auth"] == 0]
        assert 0 < len(unauth) <= bound, (len(unauth), bound, stats)
        assert len(during) <= bound + 50, (len(during), stats)
        # IPSECDBG is not kept by default: the data plane logged nothing of the ESP junk
        assert not [r for r in records if r["cls"] == "IPSECDBG"]
        print(f"\nflood: {stats['packets']} packets in {stats['end'] - stats['start']:.1f} s;"
              f" stored events: {len(records)} ({len(unauth)} unauthenticated, bound {bound});"
              f" during the flood: {len(during)}")
        first.stop()
        second.stop()


FORGED_USER = "mallory\n2026-12-03 10:00:00 SEV=4 SESSION 1 forged\x1b[2J\x1b]0;pwned\x07"


def test_log_injection_by_a_client_user_name(lab_prefix: str, lab_run_dir: Path,
                                             serve_ok: None, vpnhub: StartVpnhub) -> None:
    with Topology(lab_prefix, clients=2, run_dir=lab_run_dir) as topo:
        srv = vpnhub(topo, console_severity=5)
        profile = _profile(topo, "lab")
        good = _connect(topo, topo.clients[0], "vpnuser1", "userpass1", profile)
        evil = _connect(topo, topo.clients[1], FORGED_USER, "whatever", profile)
        wait_until(lambda: bool(srv.lines("failed authentication")), 30,
                   what="the forged user's XAUTH to fail")
        _wait_connected(topo, topo.clients[0], good)
        assert topo.ping(topo.clients[0], LAN_HOST, count=2, timeout=2, interface=TUN)
        time.sleep(1)  # the store's batch is written
        text = srv.log_text()
        assert "\x1b" not in text and "\x07" not in text, "raw escape in the text log"
        lines = text.splitlines()
        assert not [ln for ln in lines if ln.startswith("2026-12-03 10:00:00")], "forged line"
        assert any("mallory\\n2026-12-03 10:00:00 SEV=4 SESSION 1 forged\\x1b[2J" in ln
                   for ln in lines), srv.tail()
        records = _records(lab_run_dir / "vpnhub-events.log")
        for r in records:
            for field in ("text", "user", "grp", "peer"):
                assert not has_control(r[field]), r
        assert [r for r in records if r["user"].startswith("mallory\\n")]
        table = srv.cli("sessions").stdout
        assert "vpnuser1" in table and not has_control(table.replace("\n", "")), table
        for p in (good, evil):
            p.stop()


def test_ipsecdbg_at_9_in_the_lab(lab_prefix: str, lab_run_dir: Path, peer_tools: None,
                                  vpnhub: StartVpnhub) -> None:
    """The concentrator's data plane logs its SAs and summarises forged ESP per SA."""
    with Topology(lab_prefix, clients=1, direct_clients=1, run_dir=lab_run_dir) as topo:
        topo.start_lan_services()
        srv = vpnhub(topo, extra={"log.classes.IPSECDBG": {"keep_severity": 9}})
        store = lab_run_dir / "vpnhub-events.log"
        vpnc = start_vpnc(topo, "c1", dh="dh14")
        try:
            vpnc.wait_usable(timeout=30)
        except (TimeoutError, RuntimeError) as e:
            raise AssertionError(srv.explain(str(e), vpnc)) from None

        def installed() -> list[dict[str, Any]] | None:
            found = [r for r in _records(store) if r["cls"] == "IPSECDBG"
                     and r["text"].startswith("inbound SA") and "installed" in r["text"]]
            return found or None

        line = wait_until(installed, 10, what="an IPSECDBG 'installed' line")[0]
        assert line["peer_address"] == PAT_OUTSIDE, line
        spi = line["text"].split()[2]
        # SPI + 64 random bytes: the size of a real AES-CBC/HMAC-SHA1 packet, so the ICV
        # check (RFC 4303 3.4.4) is what drops it; one summary line for all 300
        forge = ("import socket,os;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
                 f"for _ in range(300): s.sendto(bytes.fromhex('{spi}')+os.urandom(64),"
                 f" ('{CONC_PUBLIC}', 4500))")
        topo.exec("d1", [sys.executable, "-c", forge], check=True)

        # Only the forgeries' line counts here: the SA's own traffic may be dropped in
        # the same or another window (spoofed_source, below).
        def summary() -> list[dict[str, Any]] | None:
            found = [r for r in _records(store) if r["cls"] == "IPSECDBG"
                     and f"inbound SA {spi}" in r["text"] and "auth_failed" in r["text"]]
            return found or None

        drops = wait_until(summary, 25, what="an IPSECDBG drop summary")
        assert len(drops) == 1 and "300 auth_failed" in drops[0]["text"], drops

        # A packet of vpnc's host into the tunnel from its LAN address, not from the Mode
        # Config one: what a ping bound to the TUN sends while vpnc-script has brought
        # the TUN up but not yet given it its address. The line says which packet it was.
        env = vpnc.env("connect")
        assert env is not None
        host = vpnc.host
        topo.ping("c1", LAN_HOST, interface=host.addr, count=1, timeout=0.5)
        refused = (f"; the last refused: ICMP {host.addr} -> {LAN_HOST} echo request, its"
                   f" source is not the assigned address {env['INTERNAL_IP4_ADDRESS']}")

        def spoofed() -> list[dict[str, Any]] | None:
            found = [r for r in _records(store) if r["cls"] == "IPSECDBG"
                     and f"inbound SA {spi}" in r["text"] and "spoofed_source" in r["text"]]
            return found or None

        line = wait_until(spoofed, 25, what="an IPSECDBG spoofed_source line")[-1]["text"]
        assert line.endswith(refused), line
        assert topo.ping("c1", LAN_HOST, interface=vpnc.host.tun, count=2)
        vpnc.stop()
        wait_until(lambda: [r for r in _records(store) if r["cls"] == "IPSECDBG"
                            and r["text"].startswith(f"inbound SA {spi} removed")] or None,
                   15, what="an IPSECDBG 'removed' line")
