"""Issue 14, "Done when" (RADIUS half), with real peers (marker ``netns``).

The lab of the Cisco note (two PCs behind one PAT, the concentrator, the
private LAN) with FreeRADIUS (Debian's package, its own configuration, started
by the test in the LAN namespace: tests/concentrator/freeradius.py):

- two vpnc users log in to group ``vpngroup`` (``xauth = "radius"``); the
  Class attribute puts one in ``engineering`` and the other in ``sales``, each
  with its own pool and split tunnel; Framed-IP-Address fixes one address;
- radclient's Disconnect-Request ends one session (Disconnect-ACK) while the
  other keeps passing traffic;
- FreeRADIUS's detail file holds Start, Interim-Update and Stop with the
  sessions' Framed-IP-Address, Calling-Station-Id (the PAT's address and the
  client's port) and octets;
- a wrong password (Access-Reject), a server that does not answer, and a wrong
  shared secret each give their log line and a refused client; while the
  silent server is waited for, a client of a local-users group still logs in
  within the configured wait;
- a group with its own ``[[group.radius_server]]`` (a second FreeRADIUS) sends its
  users' XAUTH and accounting there, the other groups to the global server.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from freeradius import FreeRadius, start_freeradius
from vpnhub_harness import VpnhubServer

from vpnhub.lab.peers import VpncClient, start_vpnc
from vpnhub.lab.topology import CONC_PRIVATE, CONC_PUBLIC, LAN_HOST, PAT_OUTSIDE, Topology

pytestmark = pytest.mark.netns

StartVpnhub = Callable[..., VpnhubServer]
RADIUS_SECRET = "radius-shared-secret"
DAE_SECRET = "dae-shared-secret"
ENGINEERING_POOL, SALES_POOL = "10.40.2.0/24", "10.40.3.0/24"
SALES_ADDRESS = "10.40.3.77"
USERS = f'''vpnuser1 Cleartext-Password := "userpass1"
\tClass := "OU=engineering;", Reply-Message := "Welcome to engineering"

vpnuser2 Cleartext-Password := "userpass2"
\tClass := "OU=sales;", Framed-IP-Address := {SALES_ADDRESS}
'''
GROUPS = f'''
[[group]]
name = "engineering"
psk = "engineering-unused-psk"
address_pool = "{ENGINEERING_POOL}"
split_include = ["192.168.2.0/25"]

[[group]]
name = "sales"
psk = "sales-unused-psk"
address_pool = "{SALES_POOL}"
split_include = ["192.168.2.0/24"]

[[group]]
name = "localgrp"
psk = "local-group-psk"
address_pool = "10.40.4.0/24"
split_include = ["192.168.2.0/24"]
'''


def radius_text(address: str = LAN_HOST, port: int = 1812, secret: str = RADIUS_SECRET,
                timeout: float = 1.0, retries: int = 1) -> str:
    return f'''
[radius]
interim_interval = 4

[[radius.server]]
address = "{address}"
auth_port = {port}
secret = "{secret}"
timeout = {timeout}
retries = {retries}

[[radius.dae_client]]
address = "{LAN_HOST}"
secret = "{DAE_SECRET}"
''' + GROUPS


def _vpnhub(vpnhub: StartVpnhub, topo: Topology, radius: str) -> VpnhubServer:
    return vpnhub(topo, natt=True, group_extra={"xauth": "radius"}, extra_text=radius,
                  xauth_retry_delay=0.1)


def _usable(srv: VpnhubServer, c: VpncClient, *logs: object) -> None:
    try:
        c.wait_usable(timeout=30)
    except (TimeoutError, RuntimeError) as e:
        raise AssertionError(srv.explain(f"{c.host.role}: {e}", c)) from None


def _radius(topo: Topology) -> FreeRadius:
    return start_freeradius(topo, topo.lan, {CONC_PRIVATE: RADIUS_SECRET}, USERS)


def _refused(c: VpncClient, timeout: float = 30.0) -> str:
    """vpnc gave up (XAUTH refused): its exit reason."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (why := c.exited()) is not None:
            return why
        time.sleep(0.1)
    raise AssertionError(f"vpnc in {c.host.role} still runs after {timeout} s")


def test_freeradius_groups_disconnect_and_accounting(
        lab_prefix: str, lab_run_dir: Path, peer_tools: None, vpnhub: StartVpnhub) -> None:
    with Topology(lab_prefix, clients=2, run_dir=lab_run_dir) as topo:
        radius = _radius(topo)
        srv = _vpnhub(vpnhub, topo, radius_text())
        topo.flush_pat_conntrack()
        eng = start_vpnc(topo, topo.clients[0], username="vpnuser1", password="userpass1",
                         dh="dh14")
        _usable(srv, eng)
        sales = start_vpnc(topo, topo.clients[1], username="vpnuser2", password="userpass2",
                           dh="dh14")
        _usable(srv, sales)
        env = {c.username: c.wait_connected(5) for c in (eng, sales)}
        assert env["vpnuser1"]["INTERNAL_IP4_ADDRESS"].startswith("10.40.2."), env
        assert env["vpnuser2"]["INTERNAL_IP4_ADDRESS"] == SALES_ADDRESS, env
        splits = {u: (e.get("CISCO_SPLIT_INC_0_ADDR"), e.get("CISCO_SPLIT_INC_0_MASKLEN"))
                  for u, e in env.items()}
        assert splits == {"vpnuser1": ("192.168.2.0", "25"),
                          "vpnuser2": ("192.168.2.0", "24")}, splits
        data = srv.wait_sessions(lambda d: d["summary"].get("active") == 2, "two sessions")
        groups = {s["user"]: s["group"] for s in data["sessions"]}
        assert groups == {"vpnuser1": "engineering", "vpnuser2": "sales"}, data
        ports = {s["user"]: s["public_port"] for s in data["sessions"]}
        assert {s["public_ip"] for s in data["sessions"]} == {PAT_OUTSIDE}
        for c in (eng, sales):
            assert topo.ping(c.host, LAN_HOST, interface=c.host.tun, count=10, interval=0.1)
        time.sleep(5)  # an Interim-Update (every 4 s) goes out
        # radclient's Disconnect-Request ends vpnuser1's session only
        cp = radius.radclient(f"{CONC_PUBLIC}:3799", "disconnect", DAE_SECRET,
                              'User-Name = "vpnuser1"')
        assert "Disconnect-ACK" in cp.stdout, srv.explain(f"radclient: {cp.stdout}{cp.stderr}")
        srv.wait_log("session of vpnuser1 ended: RADIUS Disconnect-Request from " + LAN_HOST)
        srv.wait_sessions(lambda d: [s["user"] for s in d["sessions"]] == ["vpnuser2"],
                          "only vpnuser2 left")
        assert topo.ping(sales.host, LAN_HOST, interface=sales.host.tun, count=5,
                         interval=0.1), srv.explain("vpnuser2 stopped passing traffic", sales)
        cp = radius.radclient(f"{CONC_PUBLIC}:3799", "disconnect", DAE_SECRET,
                              'User-Name = "nobody"')
        assert "Disconnect-NAK" in cp.stdout and "Session-Context-Not-Found" in cp.stdout, \
            cp.stdout
        _check_detail(radius, ports, env, srv)
        # a wrong password: FreeRADIUS rejects, the client is refused as for a local user
        wrong = start_vpnc(topo, topo.clients[0], username="vpnuser1", password="bad-password",
                           dh="dh14")
        _refused(wrong)
        srv.wait_log("user 'vpnuser1' failed authentication: wrong password")
        # SIGTERM: the Stop of the session left goes out before vpnhub exits
        assert srv.terminate() == 0
        stops = [r for r in radius.detail_records() if r.get("User-Name") == "vpnuser2"
                 and r.get("Acct-Status-Type") == "Stop"]
        assert len(stops) == 1 and stops[0]["Acct-Terminate-Cause"] == "Admin-Reboot", stops
        assert stops[0]["Framed-IP-Address"] == SALES_ADDRESS
        assert stops[0]["Calling-Station-Id"] == f"{PAT_OUTSIDE}:{ports['vpnuser2']}"
        assert int(stops[0]["Acct-Input-Packets"]) >= 15, stops  # 10 + 5 pings at least


ENG_SECRET = "eng-radius-secret"
ENG_USERS = '''vpnuser2 Cleartext-Password := "userpass2-eng"
\tReply-Message := "Welcome via the engineering RADIUS server"
'''


def test_a_group_with_its_own_freeradius(
        lab_prefix: str, lab_run_dir: Path, peer_tools: None, vpnhub: StartVpnhub) -> None:
    """Servers per group (issue 14): vpngroup uses the global [[radius.server]] (the
    FreeRADIUS on the LAN); group "eng" has its own [[group.radius_server]], a second
    FreeRADIUS (on the internet side, another secret) that alone knows vpnuser2's
    password. Each user's Access-Request and accounting reach only its group's server."""
    with Topology(lab_prefix, clients=2, direct_clients=1, run_dir=lab_run_dir) as topo:
        shared = _radius(topo)
        eng_host = topo.direct[0]
        own = start_freeradius(topo, eng_host, {CONC_PUBLIC: ENG_SECRET}, ENG_USERS,
                               instance="-eng")
        eng_group = f'''
[[group]]
name = "eng"
psk = "eng-group-psk"
address_pool = "10.40.5.0/24"
split_include = ["192.168.2.0/24"]
xauth = "radius"

[[group.radius_server]]
address = "{eng_host.addr}"
secret = "{ENG_SECRET}"
timeout = 1
retries = 1
'''
        srv = _vpnhub(vpnhub, topo, radius_text() + eng_group)
        topo.flush_pat_conntrack()
        first = start_vpnc(topo, topo.clients[0], username="vpnuser1", password="userpass1",
                           dh="dh14")
        _usable(srv, first)
        second = start_vpnc(topo, topo.clients[1], username="vpnuser2",
                            password="userpass2-eng", group="eng", secret="eng-group-psk",
                            dh="dh14")
        _usable(srv, second)
        assert second.wait_connected(5)["INTERNAL_IP4_ADDRESS"].startswith("10.40.5."), \
            srv.explain("vpnuser2 not in group eng's pool", second)
        assert topo.ping(second.host, LAN_HOST, interface=second.host.tun, count=3,
                         interval=0.1), srv.explain("no traffic for vpnuser2", second)
        time.sleep(5)  # an Interim-Update (every 4 s) goes out
        assert srv.terminate() == 0  # the Stops go out before vpnhub exits
        for radius, user, other in ((shared, "vpnuser1", "vpnuser2"),
                                    (own, "vpnuser2", "vpnuser1")):
            log = radius.log_text()
            assert f'User-Name = "{user}"' in log and f'User-Name = "{other}"' not in log, \
                srv.explain(f"{user} should reach only its group's server")
            kinds = [r.get("Acct-Status-Type") for r in radius.detail_records()
                     if r.get("User-Name") == user]
            assert kinds[:1] == ["Start"] and kinds[-1:] == ["Stop"], (user, kinds)
            assert not [r for r in radius.detail_records() if r.get("User-Name") == other]


def _check_detail(radius: FreeRadius, ports: dict[str, int], env: dict[str, dict[str, str]],
                  srv: VpnhubServer) -> None:
    def records() -> list[dict[str, str]]:
        return [r for r in radius.detail_records() if r.get("User-Name") == "vpnuser1"]

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(
            r.get("Acct-Status-Type") == "Stop" for r in records()):
        time.sleep(0.2)
    mine = records()
    kinds = [r.get("Acct-Status-Type") for r in mine]
    assert kinds[0] == "Start" and "Interim-Update" in kinds and kinds[-1] == "Stop", \
        srv.explain(f"detail records: {mine}")
    for r in mine:
        assert r["Framed-IP-Address"] == env["vpnuser1"]["INTERNAL_IP4_ADDRESS"], r
        assert r["Calling-Station-Id"] == f"{PAT_OUTSIDE}:{ports['vpnuser1']}", r
        assert r["NAS-IP-Address"] == CONC_PUBLIC, r
    stop = mine[-1]
    assert stop["Acct-Terminate-Cause"] == "Admin-Reset", stop
    # 10 pings through the tunnel: 10 x 84 bytes in each direction at least
    assert int(stop["Acct-Input-Octets"]) >= 840 and int(stop["Acct-Output-Octets"]) >= 840, stop
    assert int(stop["Acct-Input-Packets"]) >= 10, stop


def test_silent_server_and_wrong_secret_refuse_without_holding_others(
        lab_prefix: str, lab_run_dir: Path, peer_tools: None, vpnhub: StartVpnhub) -> None:
    with Topology(lab_prefix, clients=2, run_dir=lab_run_dir) as topo:
        radius = _radius(topo)
        # a UDP socket that never answers: the silent server
        topo.spawn(topo.lan, ["python3", "-c", "import socket, time; s = socket.socket("
                              "socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 1999));"
                              " time.sleep(600)"], "silent-radius.log", name="silent-radius")
        srv = _vpnhub(vpnhub, topo, radius_text(port=1999, timeout=1.0, retries=1)
                      + '\n[[user]]\nname = "localuser"\npassword = "localpass"\n'
                        'group = "localgrp"\n')
        topo.flush_pat_conntrack()
        silent = start_vpnc(topo, topo.clients[0], username="vpnuser1", password="userpass1",
                            dh="dh14")
        srv.wait_log("XAUTH", "vpnuser1")  # its attempt is under way
        t0 = time.monotonic()
        local = start_vpnc(topo, topo.clients[1], username="localuser", password="localpass",
                           group="localgrp", secret="local-group-psk", dh="dh14")
        _usable(srv, local)
        # the configured wait: 2 tries of 1 s; the local login waits at most that long
        # behind the first (both come from the PAT's one address) plus its own set-up
        assert time.monotonic() - t0 < 2.0 + 6.0, srv.explain("local login held up", local)
        _refused(silent)
        line = srv.wait_log("login of vpnuser1 refused: RADIUS server", "did not answer")[0]
        assert f"{LAN_HOST}:1999" in line and "2 tries of 1 s" in line, line
        assert local.exited() is None
        srv.terminate()
        # a wrong shared secret: FreeRADIUS drops the request, both sides say why
        srv = _vpnhub(vpnhub, topo, radius_text(secret="not-the-shared-secret"))
        topo.flush_pat_conntrack()
        wrong = start_vpnc(topo, topo.clients[0], username="vpnuser1", password="userpass1",
                           dh="dh14")
        _refused(wrong)
        line = srv.wait_log("login of vpnuser1 refused", f"{LAN_HOST}:1812")[0]
        assert "wrong shared secret" in line, line
        assert "not-the-shared-secret" not in srv.log_text()
        assert "Shared secret is incorrect" in radius.log_text()
