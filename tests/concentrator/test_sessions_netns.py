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

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from vpnhub_harness import VpnhubServer

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
