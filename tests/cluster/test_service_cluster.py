"""The service with [cluster] (vpnhub/concentrator/service.py): the core's pools come
from the member's blocks; the admin socket's `cluster`, `sessions --cluster` and
`logout --member` through the real `vpnhub` command; without [cluster] nothing of
the cluster (nor psycopg) is imported. Two Concentrators in-process on a real
PostgreSQL, without TUN (the admin socket needs none)."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from cluster_helpers import login, until

from vpnhub.cluster.pool import ClusterAddressPool, session_id
from vpnhub.concentrator.service import Concentrator
from vpnhub.config import parse_config
from vpnhub.eventlog import EventLog

CONFIG = """\
[concentrator]
public_address = "198.51.100.{last}"
private_networks = ["192.168.2.0/24"]
[admin]
socket = "{sock}"
[[group]]
name = "staff"
psk = "secret"
address_pool = "10.77.0.0/24"
[cluster]
dsn = "{dsn}"
member = "{name}"
virtual_address = "198.51.100.10"
heartbeat = 0.2
member_timeout = 1.0
pool_block = 28
"""


async def vpnhub(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "vpnhub", *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


def test_cluster_admin_commands_through_the_cli(pg_dsn: str, tmp_path: Path) -> None:
    logs = {n: io.StringIO() for n in ("c1", "c2")}
    concs = {n: Concentrator(parse_config(CONFIG.format(
        last=11 + i, sock=tmp_path / f"{n}.sock", dsn=pg_dsn, name=n)),
        EventLog(out=logs[n], console_severity=5)) for i, n in enumerate(("c1", "c2"))}

    async def main() -> None:
        servers: list[Any] = []
        try:
            for c in concs.values():
                assert await c._start_cluster()
                servers.append(await c._start_admin())
            c1, c2 = concs["c1"], concs["c2"]
            pool = c1.core.pools["staff"]
            assert isinstance(pool, ClusterAddressPool) and len(pool.blocks) == 1
            assert not set(pool.blocks) & set(c2.cluster.pools["staff"].blocks)  # type: ignore[union-attr]
            k = login(c1.core.sessions, 1, "alice")
            c1.core.sessions.update(k, assigned_ip=pool.allocate(k, identity="alice"))
            sid = session_id(k)

            async def listed() -> list[dict[str, Any]]:
                rc, out, err = await vpnhub("sessions", "--cluster", "--json", "--socket",
                                            str(tmp_path / "c2.sock"))
                assert rc == 0, err
                return list(json.loads(out)["sessions"])
            entries: list[dict[str, Any]] = []
            for _ in range(100):
                entries = await listed()
                if entries:
                    break
                await asyncio.sleep(0.1)
            assert [(e["member"], e["id"], e["user"]) for e in entries] == [("c1", sid, "alice")]
            today = c1.core.sessions.to_json(0)["sessions"][0]
            assert set(today) <= set(entries[0]), set(today) - set(entries[0])
            assert entries[0]["assigned_ip"] == str(pool.address_of(k))

            rc, out, err = await vpnhub("cluster", "--json", "--socket", str(tmp_path / "c2.sock"))
            status = json.loads(out)
            assert rc == 0 and status["member"] == "c2" and status["database_ok"], err
            await until(lambda: len(c2.cluster.status()["members"]) == 2,  # type: ignore[union-attr]
                        "both members")
            rc, text, _ = await vpnhub("cluster", "--socket", str(tmp_path / "c2.sock"))
            assert rc == 0 and "Members" in text and "c1" in text

            # a session of c1 logged out from c2: NOTIFY, then c1's admin logout path
            rc, out, err = await vpnhub("logout", sid, "--member", "c1", "--socket",
                                        str(tmp_path / "c2.sock"))
            assert rc == 0 and "on member c1" in out, err
            await until(lambda: f"logout of session {sid} asked by (admin socket) on member"
                        f" c2" in logs["c1"].getvalue(), "c1 to run the logout")
            rc, _, err = await vpnhub("logout", "0" * 32, "--member", "c1", "--socket",
                                      str(tmp_path / "c2.sock"))
            assert rc == 1 and "no session" in err
            assert c1._status()["cluster"]["database_ok"]
        finally:
            for s in servers:
                if s is not None:
                    s.close()
            for c in concs.values():
                if c.cluster is not None:
                    await asyncio.to_thread(c.cluster.stop)
    asyncio.run(main())


def test_without_cluster_no_psycopg_is_imported(tmp_path: Path) -> None:
    plain = CONFIG.split("[cluster]")[0].format(last=11, sock=tmp_path / "s")
    code = (
        "import sys\n"
        "from vpnhub.concentrator.service import Concentrator\n"
        "from vpnhub.config import parse_config\n"
        "from vpnhub.eventlog import EventLog\n"
        f"c = Concentrator(parse_config({plain!r}), EventLog())\n"
        "assert c.cluster is None\n"
        "assert not any(m.startswith(('psycopg', 'vpnhub.cluster.db')) for m in sys.modules)\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
