"""Operations with real peers behind the lab's PAT (issue 11, points 7 and the PAT flush).

1. vpnc --vendor netscreen finishes phase 1 and never answers the XAUTH
   request, or answers it and never asks for its address: the concentrator
   deletes the IKE SA after [concentrator] xauth_timeout with a line naming
   the likely cause, and holds no address.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from vpnhub_harness import VpnhubServer

from vpnhub.lab.peers import start_vpnc
from vpnhub.lab.topology import Topology, wait_until

pytestmark = pytest.mark.netns

StartVpnhub = Callable[..., VpnhubServer]
XAUTH_TIMEOUT = 10  # s: the configured bound (the default, 60 s, would only slow the test)


def admin(srv: VpnhubServer, req: dict[str, Any]) -> dict[str, Any]:
    """One request on the admin socket (a unix socket: reachable from any namespace)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(srv.admin_socket))
        s.sendall(json.dumps(req).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    reply = json.loads(buf)
    assert isinstance(reply, dict)
    return reply


# ---------------------------------------------------------------------------- 1
def test_client_without_xauth_is_deleted_after_xauth_timeout(
        lab_prefix: str, lab_run_dir: Path, peer_tools: None, vpnhub: StartVpnhub) -> None:
    with Topology(lab_prefix, clients=1, run_dir=lab_run_dir) as topo:
        srv = vpnhub(topo, natt=True, extra={"concentrator": {"xauth_timeout": XAUTH_TIMEOUT}})
        vpnc = start_vpnc(topo, "c1", dh="dh14", extra_args=["--vendor", "netscreen"])
        srv.wait_log("IKE SA established", timeout=20, logs=[vpnc])
        assert admin(srv, {"cmd": "stats"})["sas"] == 1
        # vpnc 0.5.3 answers XAUTH, then never asks for its Mode Config (address)
        lines = srv.wait_log(f"within {XAUTH_TIMEOUT} s of phase 1", "deleting the IKE SA",
                             timeout=XAUTH_TIMEOUT + 10, logs=[vpnc])
        assert "vendor" in lines[0] and "vpnuser1" in lines[0], lines
        wait_until(lambda: admin(srv, {"cmd": "stats"})["sas"] == 0, 5,
                   what="the IKE SA without XAUTH to be gone")
        data = srv.sessions()
        assert data["sessions"] == [] and data["summary"]["total_active"] == 0, data
        assert not srv.lines("assigned"), srv.explain("an address was assigned", vpnc)
        vpnc.stop()
