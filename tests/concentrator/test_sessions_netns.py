"""Issue 11 points 2 and 6 with real peers behind the lab's PAT (marker ``netns``).

- The same XAUTH user on two PCs behind one PAT: two sessions, two
  addresses, both pass traffic at once, no take-over. vpnc sends
  INITIAL-CONTACT in Aggressive Mode message 3 (it never hit the old
  take-over rule); strongSwan with ``unique = never`` sends none, and its
  second PC used to take the first PC's IPsec SA and address;
  with ``simultaneous_logins = 1`` the second is refused at XAUTH with a
  clear line while the first keeps working.
- ``kill -9`` of the concentrator and a restart: the vpnhub client
  (``--reconnect``) and a vpnc run by a supervisor loop come back and pass
  traffic; the event log tells of the crash and of each lost session; the
  peak and cumulative counters survive; no address is held by two clients.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from client_harness import TUN, VPNHUB, _profile, _status, _wait_connected
from vpnhub_harness import ServerOptions, VpnhubServer, start_vpnhub

from vpnhub.lab.peers import Charon, VpncClient, start_strongswan_client, start_vpnc
from vpnhub.lab.topology import LAN_HOST, PAT_OUTSIDE, Topology, wait_until

pytestmark = pytest.mark.netns

StartVpnhub = Callable[..., VpnhubServer]
USER, PASSWORD = "vpnuser1", "userpass1"


def _usable(srv: VpnhubServer, c: VpncClient, *logs: VpncClient) -> None:
    try:
        c.wait_usable(timeout=30)
    except (TimeoutError, RuntimeError) as e:
        raise AssertionError(srv.explain(f"{c.host.role}: {e}", *logs)) from None


def _ping_all(topo: Topology, clients: list[VpncClient]) -> list[bool]:
    """Ping the LAN host through every tunnel at the same time."""
    with ThreadPoolExecutor(len(clients)) as pool:
        runs = [pool.submit(topo.ping, c.host, LAN_HOST, interface=c.host.tun, count=5,
                            interval=0.2, timeout=2) for c in clients]
        return [r.result() for r in runs]


def test_same_user_on_two_pcs_behind_one_pat(lab_prefix: str, lab_run_dir: Path,
                                             peer_tools: None, vpnhub: StartVpnhub) -> None:
    with Topology(lab_prefix, clients=2, run_dir=lab_run_dir) as topo:
        srv = vpnhub(topo, natt=True)
        topo.flush_pat_conntrack()
        first = start_vpnc(topo, topo.clients[0], username=USER, password=PASSWORD, dh="dh14")
        _usable(srv, first, first)
        second = start_vpnc(topo, topo.clients[1], username=USER, password=PASSWORD,
                            dh="dh14")
        _usable(srv, second, first, second)
        assert _ping_all(topo, [first, second]) == [True, True], srv.explain(
            "both PCs of the same user must pass traffic at once", first, second)
        inner = [c.wait_connected(5)["INTERNAL_IP4_ADDRESS"] for c in (first, second)]
        assert inner[0] != inner[1], srv.explain(f"same address for two PCs: {inner}")
        data = srv.wait_sessions(lambda d: d["summary"].get("active") == 2,
                                 "two active sessions of the same user", logs=[first.log])
        mine = [s for s in data["sessions"] if s["user"] == USER]
        assert sorted(s["assigned_ip"] for s in mine) == sorted(inner), data
        assert {s["public_ip"] for s in mine} == {PAT_OUTSIDE}
        assert len({s["public_port"] for s in mine}) == 2, data
        assert not srv.lines("phase 1 rekey"), srv.explain("a take-over was logged")
        assert first.exited() is None and second.exited() is None


def _swan(topo: Topology, host: str, srv: VpnhubServer) -> Charon:
    """strongSwan as an IKEv1 XAUTH client that sends no INITIAL-CONTACT (``unique =
    never``: it claims no exclusive use of its identity, as several PCs sharing a group
    and a user do), logged in as USER."""
    swan = start_strongswan_client(topo, host, username=USER, password=PASSWORD,
                                   suite="aes256-sha1")
    conf = swan.swanctl_conf.read_text().replace("modp1024", "modp2048")
    swan.swanctl_conf.write_text(conf.replace("version = 1", "version = 1\n        unique = never"))
    swan.load()
    cp = swan.initiate(timeout=20)
    assert cp.returncode == 0, srv.explain(f"swanctl --initiate: {cp.stdout[-2000:]}", swan.log)
    return swan


def test_same_user_on_two_pcs_without_initial_contact(
        lab_prefix: str, lab_run_dir: Path, peer_tools: None, vpnhub: StartVpnhub) -> None:
    """The PC that sends no INITIAL-CONTACT used to be taken as a phase 1 rekey of the
    first: it took over the first PC's IPsec SAs and address, whose traffic stopped."""
    with Topology(lab_prefix, clients=2, run_dir=lab_run_dir) as topo:
        srv = vpnhub(topo, natt=True)
        topo.flush_pat_conntrack()
        swans = [_swan(topo, c.role, srv) for c in topo.clients]
        for c, swan in zip(topo.clients, swans, strict=True):
            try:
                topo.wait_ping(c, LAN_HOST, interface=swan.tun, timeout=10)
            except (TimeoutError, RuntimeError) as e:
                raise AssertionError(
                    srv.explain(f"{c.role}: {e}", *(s.log for s in swans))) from None
        with ThreadPoolExecutor(2) as pool:
            runs = [pool.submit(topo.ping, c, LAN_HOST, interface=s.tun, count=5,
                                interval=0.2, timeout=2)
                    for c, s in zip(topo.clients, swans, strict=True)]
            ok = [r.result() for r in runs]
        assert ok == [True, True], srv.explain(f"pings through both PCs at once: {ok}",
                                               *(s.log for s in swans))
        data = srv.wait_sessions(lambda d: d["summary"].get("active") == 2,
                                 "two active sessions of the same user")
        mine = [s for s in data["sessions"] if s["user"] == USER]
        assert len({s["assigned_ip"] for s in mine}) == 2, data
        assert not srv.lines("phase 1 rekey"), srv.explain("a take-over was logged")


def test_simultaneous_logins_one_refuses_the_second_pc(
        lab_prefix: str, lab_run_dir: Path, peer_tools: None, vpnhub: StartVpnhub) -> None:
    with Topology(lab_prefix, clients=2, run_dir=lab_run_dir) as topo:
        srv = vpnhub(topo, natt=True, group_extra={"simultaneous_logins": 1})
        topo.flush_pat_conntrack()
        first = start_vpnc(topo, topo.clients[0], username=USER, password=PASSWORD, dh="dh14")
        _usable(srv, first, first)
        second = start_vpnc(topo, topo.clients[1], username=USER, password=PASSWORD,
                            dh="dh14")
        refused = srv.wait_log(f"login of {USER} refused", "allows 1 simultaneous login",
                               timeout=30, logs=[first.log, second.log])
        assert len(refused) == 1, refused
        wait_until(lambda: second.exited(), 30, what="the refused vpnc to give up")
        assert "authentication unsuccessful" in second.log.read_text().lower() or \
            second.proc.returncode != 0, srv.explain("vpnc was not told of the refusal",
                                                     second)
        assert _ping_all(topo, [first]) == [True], srv.explain(
            "the first PC must keep working", first, second)
        data = srv.sessions()
        mine = [s for s in data["sessions"] if s["user"] == USER]
        assert len(mine) == 1, data
        assert mine[0]["assigned_ip"] == first.wait_connected(5)["INTERNAL_IP4_ADDRESS"]
        assert first.exited() is None


# ---------------------------------------------------------------------------- kill -9
def _state(topo: Topology) -> dict[str, Any]:
    """The concentrator's state record (next to the lab's event store)."""
    try:
        data = json.loads((topo.run_dir / "vpnhub-events.state.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _stored_events(store: Path, needle: str) -> list[str]:
    with contextlib.closing(sqlite3.connect(store)) as db:
        rows = db.execute("SELECT text FROM events WHERE text LIKE ? ORDER BY seq",
                          (f"%{needle}%",)).fetchall()
    return [str(r[0]) for r in rows]


def test_kill_9_and_restart_clients_come_back(lab_prefix: str, lab_run_dir: Path,
                                             peer_tools: None, vpnhub: StartVpnhub) -> None:
    with Topology(lab_prefix, clients=3, run_dir=lab_run_dir) as topo:
        srv = vpnhub(topo, natt=True)
        topo.flush_pat_conntrack()
        c1, c2, c3 = topo.clients
        # the vpnhub client reconnects by itself; vpnc (DPD after 10 s idle) is restarted
        # by a supervisor loop when it gives up on the dead concentrator
        client = topo.spawn(c1, [*VPNHUB, "connect", "--profile",
                                 str(_profile(topo, "re", dpd_interval=3)), "--user", "vpnuser1",
                                 "--status-socket", str(topo.run_dir / "status-c1.sock"),
                                 "--no-dns", "--reconnect"],
                            "client-c1.log", env={"VPNHUB_PASSWORD": "userpass1"})
        vpnc = start_vpnc(topo, c2, username="vpnuser2", dh="dh14", dpd_idle=10,
                          supervise=True)
        _wait_connected(topo, c1, client)
        _usable(srv, vpnc, vpnc)
        before = {"vpnuser1": _status(topo, c1)["assigned_address"],
                  "vpnuser2": vpnc.wait_connected(5)["INTERNAL_IP4_ADDRESS"]}
        # the record has both sessions (written at most 2 s after a change)
        wait_until(lambda: len(_state(topo).get("sessions", [])) == 2, 10,
                   what="both sessions in the state record")
        old_pid = srv.proc.pid
        counters = srv.sessions()["summary"]
        assert (counters["peak"], counters["cumulative"]) == (2, 2), counters

        os.kill(old_pid, signal.SIGKILL)
        srv.proc.popen.wait(5)
        srv2 = start_vpnhub(topo, ServerOptions(natt=True))
        crash = srv2.wait_log("ended unexpectedly", f"pid {old_pid}", "last seen")
        assert len(crash) == 1, crash
        lost = srv2.wait_log("session lost with the previous run", count=2)
        for user, addr in before.items():
            assert any(user in ln and addr in ln and PAT_OUTSIDE in ln for ln in lost), lost
        # a new user at once, while vpnc has not noticed the crash yet (its DPD takes
        # tens of seconds): it must not get an address a lost session's client still uses
        newcomer = start_vpnc(topo, c3, username="vpnuser3", dh="dh14")
        _usable(srv2, newcomer, newcomer, vpnc)
        fresh = newcomer.wait_connected(5)["INTERNAL_IP4_ADDRESS"]
        assert fresh not in before.values(), srv2.explain(
            f"vpnuser3 got {fresh}, still held by a client of the crashed run: {before}",
            newcomer, vpnc)
        assert "supervisor: vpnc exited" not in vpnc.log.read_text(), (
            "vpnc noticed the crash before the newcomer logged in: the check proves nothing")
        newcomer.stop(10)

        # both come back, each with its own address (held for its user), and pass traffic
        data = srv2.wait_sessions(
            lambda d: sorted(s["user"] for s in d["sessions"] if s["ipsec"])
            == ["vpnuser1", "vpnuser2"], "both clients logged in again", timeout=90,
            logs=[vpnc.log, client.log])
        wait_until(lambda: client.log_text().count("connected: address") >= 2, 30,
                   interval=0.2, what="the vpnhub client connected again")
        after = {"vpnuser1": _status(topo, c1).get("assigned_address"),
                 "vpnuser2": vpnc.wait_connected(5)["INTERNAL_IP4_ADDRESS"]}
        by_user = {s["user"]: s["assigned_ip"] for s in data["sessions"]}
        assert by_user == after, srv2.explain(f"sessions {by_user} but clients say {after}")
        assert len(set(after.values())) == 2, after  # no address held by two clients
        assert after == before, (before, after)  # the same user got its own address back
        assert topo.ping(c1, LAN_HOST, count=3, interval=0.2, timeout=2,
                         interface=TUN), client.log_text()[-2000:]
        assert topo.ping(c2, LAN_HOST, count=3, interval=0.2, timeout=2,
                         interface=c2.tun), srv2.explain("vpnc: no traffic", vpnc)
        assert "supervisor: vpnc exited" in vpnc.log.read_text()  # it was restarted
        summary = srv2.sessions()["summary"]
        assert summary["peak"] >= 2 and summary["cumulative"] >= 4, summary  # 2 + 2 again

        assert client.stop(10) == 0
        vpnc.stop(10)
        assert srv2.terminate() == 0
        assert _state(topo).get("clean") is True  # a clean shutdown marks the record
        store = topo.run_dir / "vpnhub-events.log"
        assert len(_stored_events(store, "ended unexpectedly")) == 1
        assert len(_stored_events(store, "session lost with the previous run")) == 2
