"""Helpers to run `vpnhub connect` in a lab host (tests/client, tests/concentrator)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from vpnhub_harness import vpnhub_serve_problem

from vpnhub.lab.topology import Host, Proc, Topology, wait_until

VPNHUB = [sys.executable, "-m", "vpnhub"]
TUN = "vpnhub-c0"


def _profile(topo: Topology, name: str, **keys: object) -> Path:
    base: dict[str, object] = {"host": "203.0.113.50", "group": "vpngroup",
                               "group_password": "labgroupsecret", "no_dns": True,
                               "tunnel_interface": TUN}
    base.update(keys)
    lines = [f"{k} = {json.dumps(v) if not isinstance(v, bool) else str(v).lower()}"
             for k, v in base.items()]
    path = topo.run_dir / f"{name}.toml"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def _pcf(topo: Topology, name: str) -> Path:
    from vpnhub.client.cisco_decrypt import encode_password

    text = ("[main]\r\nDescription=lab\r\nHost=203.0.113.50\r\nAuthType=1\r\n"
            "GroupName=vpngroup\r\nGroupPwd=\r\n"
            f"enc_GroupPwd={encode_password(b'labgroupsecret')}\r\n"
            "EnableNat=1\r\nTunnelingMode=0\r\nDHGroup=14\r\nEnableLocalLAN=0\r\n"
            "ISPConnectType=0\r\nSaveUserPassword=0\r\n")
    path = topo.run_dir / f"{name}.pcf"
    path.write_bytes(text.encode())
    return path


def _connect(topo: Topology, host: Host, user: str, password: str, profile: Path) -> Proc:
    sock = topo.run_dir / f"status-{host.role}.sock"
    return topo.spawn(host, [*VPNHUB, "connect", "--profile", str(profile), "--user", user,
                             "--status-socket", str(sock), "-v", "--no-dns",
                             "--log-file", str(topo.run_dir / f"client-{host.role}.full.log")],
                      f"client-{host.role}.log",
                      env={"VPNHUB_PASSWORD": password, "PYTHONUNBUFFERED": "1"},
                      name=f"vpnhub-connect-{host.role}")


def _status(topo: Topology, host: Host) -> dict[str, Any]:
    sock = topo.run_dir / f"status-{host.role}.sock"
    r = topo.exec(host, [*VPNHUB, "status", "--socket", str(sock), "--json"], timeout=10)
    if r.returncode != 0:
        return {}
    data = json.loads(r.stdout)
    assert isinstance(data, dict)
    return data


def _wait_connected(topo: Topology, host: Host, proc: Proc, timeout: float = 20) -> None:
    def up() -> bool:
        if not proc.alive():
            raise AssertionError(f"client exited {proc.returncode}:\n{proc.log_text()[-3000:]}")
        return _status(topo, host).get("state") == "connected"

    wait_until(up, timeout, interval=0.1, what=f"vpnhub client in {host.role} connected")


@pytest.fixture
def serve_ok() -> None:
    problem = vpnhub_serve_problem()
    if problem:
        pytest.fail(problem)


