"""The cluster lab's own peers, without concentrators: keepalived moves the virtual
address when the tracked process dies; PostgreSQL lets the members in, no one else.

Stand-in processes (sleep) are tracked in place of vpnhub, so this proves the
lab's VRRP and database plumbing apart from the concentrator (the end-to-end
proof is test_cluster_netns.py). Marker ``netns``; root, keepalived, PostgreSQL 15.
"""

from __future__ import annotations

import signal
import time

import pytest
from netns_util import require_tools

from vpnhub.lab import cluster
from vpnhub.lab.topology import VIRTUAL_ADDRESS, Topology, wait_until

pytestmark = pytest.mark.netns


def test_vip_moves_and_database_admits_members_only(lab_prefix: str) -> None:
    require_tools("ip", "keepalived", "setpriv", "unshare", str(cluster.PG_BIN / "initdb"))
    with Topology(lab_prefix, clients=1, concentrators=3) as topo:
        pg = cluster.new_postgres(topo)
        pg.init()
        tracked = {}
        vrrp = {}
        for m in topo.members:
            tracked[m.role] = topo.spawn(m, ["sleep", "600"], f"{m.role}-sleep.log")
            vrrp[m.role] = cluster.start_keepalived(topo, m)
            cluster.write_tracked_pid(vrrp[m.role].pidfile, tracked[m.role].pid)
        cluster.wait_master(topo, 20.0)
        # m1 has the highest priority. Its keepalived may start checking before its
        # tracked pid is written (FAULT for a second) and a backup take the address
        # first; m1 then preempts it (no nopreempt): wait for that, as an operator would.
        master = "m1"
        wait_until(lambda: topo.holders() == [master], 20.0, interval=0.05,
                   what="m1, the highest priority, to hold the virtual address")
        assert topo.ping("pat", VIRTUAL_ADDRESS, count=1, timeout=2.0)
        # the members reach the database with the role's password; the LAN host may not
        ok = topo.exec("m2", ["psql", pg.dsn, "-XAtc", "select current_user"])
        assert ok.returncode == 0 and ok.stdout.strip() == "vpnhub", ok.stderr
        lan_dsn = pg.dsn  # the right password, from an address pg_hba.conf does not list
        no = topo.exec("lan", ["psql", lan_dsn, "-XAtc", "select 1"])
        assert no.returncode != 0 and "pg_hba.conf" in no.stderr, no.stderr
        # the master's tracked process dies: the address moves within seconds
        tracked[master].popen.send_signal(signal.SIGKILL)
        t0 = time.monotonic()
        new = cluster.wait_master(topo, 15.0, exclude=(master,))
        moved = time.monotonic() - t0
        assert new == "m2" and moved < 10.0, (new, moved)
        assert topo.holders() == ["m2"]
        assert [s for _, s in vrrp["m1"].transitions()][-1] == "FAULT"
        assert [s for _, s in vrrp["m2"].transitions()][-1] == "MASTER"
        assert topo.ping("pat", VIRTUAL_ADDRESS, count=1, timeout=2.0)
        # the lab's own check of the database: the superuser on the local socket
        assert pg.psql("select 1", db="vpnhub").strip() == "1"
