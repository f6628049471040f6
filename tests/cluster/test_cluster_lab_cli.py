"""`vpnhub lab up --concentrators 3 --clients 6` and what outside checks use on it:
`vpnhub sessions --cluster --json` (each session with its `member`), `vpnhub lab
xlate`, `status`, and `down` leaving nothing (PostgreSQL's data directory included).

Marker ``netns``; root, vpnc, keepalived and PostgreSQL 15 needed.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest
from netns_util import require_tools

from vpnhub.lab import cluster, procs
from vpnhub.lab.labctl import run_dir_for

pytestmark = pytest.mark.netns

VPNHUB = [sys.executable, "-m", "vpnhub"]
XLATE_4500 = re.compile(r"^PAT Global 203\.0\.113\.78\((\d+)\) Local (10\.10\.10\.\d+)\(4500\)$",
                        re.MULTILINE)


def lab(*args: str, timeout: float = 240.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*VPNHUB, "lab", *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def show(cp: subprocess.CompletedProcess[str]) -> str:
    return f"exit {cp.returncode}\n--- stdout\n{cp.stdout}\n--- stderr\n{cp.stderr}"


@contextlib.contextmanager
def subreaper() -> Iterator[None]:
    """The lab daemon, orphaned when `up` returns, becomes our child: we reap it
    (PID 1 on this kind of VM does not)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    try:
        yield
    finally:
        libc.prctl(36, 0, 0, 0, 0)
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass


def test_lab_up_three_concentrators_six_clients(lab_prefix: str) -> None:
    require_tools("vpnc", "nft", "conntrack", "iperf3", "stdbuf", "keepalived", "setpriv",
                  str(cluster.PG_BIN / "initdb"))
    p = ["--prefix", lab_prefix]
    with subreaper():
        try:
            up = lab("up", *p, "--concentrators", "3", "--clients", "6")
            assert up.returncode == 0, show(up)
            assert "virtual address 203.0.113.50 on: m1" in up.stdout, show(up)
            sock = run_dir_for(lab_prefix) / "m2" / "admin.sock"
            cp = subprocess.run([*VPNHUB, "sessions", "--cluster",
                                 "--json", "--socket", str(sock)], capture_output=True,
                                text=True, timeout=60)
            assert cp.returncode == 0, show(cp)
            sessions = json.loads(cp.stdout)["sessions"]
            members = sorted(s["member"] for s in sessions)
            assert len(sessions) == 6 and set(members) == {"m1", "m2", "m3"}, sessions
            addresses = [s["assigned_ip"] for s in sessions]
            assert len(set(addresses)) == 6, addresses
            xlate = lab("xlate", *p)
            assert xlate.returncode == 0
            inside = {m.group(2) for m in XLATE_4500.finditer(xlate.stdout)}
            assert len(inside) == 6, show(xlate)  # six clients behind the PAT's one address
            status = lab("status", *p)
            assert status.returncode == 0, show(status)
            assert "cluster: virtual address 203.0.113.50 on m1" in status.stdout
            assert (procs.state_dir(lab_prefix) / "pg" / "data").is_dir()
        finally:
            down = lab("down", *p)
    assert down.returncode == 0, show(down)
    assert not (procs.state_dir(lab_prefix)).exists()
