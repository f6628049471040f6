"""`vpnhub serve` with [cluster] in a network namespace, on a real PostgreSQL: the
TUN carries routes for this member's address blocks only (not the whole pool,
which the other members share), and SIGTERM leaves the database clean (no
directory row, no lease, the member marked gone, its blocks kept for a restart).
The manager of that `vpnhub serve` answers its Cluster API (issue 17)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from netns_util import require_tools
from pgserver import PgServer

from vpnhub.auth.users import hash_password
from vpnhub.lab.topology import cleanup, record_netns

pytestmark = pytest.mark.netns

CONFIG = """\
[concentrator]
public_address = "198.51.100.11"
private_networks = ["192.168.2.0/24"]
tunnel_interface = "vpnhub0"
[admin]
socket = "{run}/admin.sock"
listen = "127.0.0.1:8443"
[[admin.user]]
name = "admin"
password_hash = "{admin_hash}"
[log]
store = "{run}/events.db"
console_severity = 5
[[group]]
name = "staff"
psk = "secret"
address_pool = "10.77.0.0/24"
[cluster]
dsn = "{dsn}"
member = "c1"
virtual_address = "198.51.100.10"
heartbeat = 0.2
member_timeout = 1.0
pool_block = 27
"""


ADMIN_PASSWORD = "serve-Cluster-pw-1"
# a GET of the manager inside the namespace, with HTTP Basic; prints the JSON
MANAGER_GET = f"""
import base64, sys, urllib.request
req = urllib.request.Request("http://127.0.0.1:8443" + sys.argv[1], headers={{
    "Authorization": "Basic " + base64.b64encode(b"admin:{ADMIN_PASSWORD}").decode()}})
print(urllib.request.urlopen(req, timeout=20).read().decode())
"""


def ns_run(ns: str, *argv: str) -> str:
    return subprocess.run(["ip", "netns", "exec", ns, *argv], check=True, capture_output=True,
                          text=True, timeout=30).stdout


def test_serve_routes_only_its_blocks_and_leaves_cleanly(lab_prefix: str, pg_server: PgServer,
                                                         tmp_path: Path) -> None:
    require_tools("ip")
    ns = f"{lab_prefix}-c1"
    record_netns(lab_prefix, ns)  # a crashed run is reaped like a lab's
    dsn = pg_server.new_database(unix=True)  # the socket reaches the server from the namespace
    cfg = tmp_path / "c1.toml"
    cfg.write_text(CONFIG.format(run=tmp_path, dsn=dsn, admin_hash=hash_password(
        ADMIN_PASSWORD, scheme="pbkdf2-sha256", iterations=1000)))
    subprocess.run(["ip", "netns", "add", ns], check=True)
    proc: subprocess.Popen[bytes] | None = None
    out = tmp_path / "serve.log"
    try:
        ns_run(ns, "ip", "link", "set", "lo", "up")
        ns_run(ns, "ip", "addr", "add", "198.51.100.11/32", "dev", "lo")
        with out.open("wb") as f:
            proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m", "vpnhub",
                                     "serve", "--config", str(cfg)], stdout=f,
                                    stderr=subprocess.STDOUT)
        status = _wait_cluster(ns, tmp_path, proc, out)
        blocks = status["pools"]["staff"]["blocks"]
        assert len(blocks) == 1 and blocks[0].endswith("/27"), status
        routes = ns_run(ns, "ip", "-o", "route", "show", "dev", "vpnhub0")
        routed = {line.split()[0] for line in routes.splitlines()}
        assert blocks[0] in routed and "10.77.0.0/24" not in routed, routes
        assert not status["holds_virtual_address"]  # nobody put it on an interface
        # the manager's Cluster API (issue 17): the service handed it the member
        seen = json.loads(ns_run(ns, sys.executable, "-c", MANAGER_GET, "/api/v1/cluster"))
        assert seen["member"] == "c1" and seen["database_ok"], seen
        assert [m["name"] for m in seen["members"]] == ["c1"] and seen["master"] is None
        page = json.loads(ns_run(ns, sys.executable, "-c", MANAGER_GET,
                                 "/api/v1/cluster/sessions"))
        assert page["sessions"] == [] and page["summary"]["remote_access"] == 0, page
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, out.read_text()
        proc = None
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT name, state FROM members").fetchall() == [("c1", "gone")]
            assert conn.execute("SELECT count(*) FROM leases").fetchone() == (0,)
            assert conn.execute("SELECT count(*) FROM sessions").fetchone() == (0,)
            assert [r[0] for r in conn.execute("SELECT block::text FROM address_blocks")] \
                == blocks
        assert "cluster member c1 joined" in out.read_text()
    finally:
        if proc is not None:
            proc.kill()
            proc.wait(timeout=30)
        cleanup(lab_prefix)  # the namespace and the lab's record of it


def _wait_cluster(ns: str, run: Path, proc: subprocess.Popen[bytes], out: Path) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, out.read_text()
        if (run / "admin.sock").exists():
            reply = subprocess.run(
                ["ip", "netns", "exec", ns, sys.executable, "-m", "vpnhub", "cluster", "--json",
                 "--socket", str(run / "admin.sock")], capture_output=True, text=True,
                timeout=30)
            if reply.returncode == 0:
                status = json.loads(reply.stdout)
                if status.get("pools", {}).get("staff", {}).get("blocks"):
                    return dict(status)
        time.sleep(0.2)
    raise AssertionError("vpnhub serve never joined the cluster:\n" + out.read_text())
