"""ike-scan cannot tell a configured group name from an unknown one (issue 11, point 5).

``ike-scan -A --id=NAME`` is how group names are enumerated: a concentrator
that answers an unknown name with INVALID-ID-INFORMATION (or not at all) and a
known one with a handshake gives the list away. vpnhub answers both with an
Aggressive Mode message 2 of the same payloads and sizes; only its own log
says, once the negotiation is over, that the group does not exist.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from vpnhub_harness import VpnhubServer

from vpnhub.lab.topology import CONC_PUBLIC, Topology, wait_until
from vpnhub.wire.vendor import VendorId

pytestmark = pytest.mark.netns


def probe(topo: Topology, group: str) -> str:
    # vpnc's proposal: AES-256 / SHA1 / XAUTHInitPreShared / group 14, the name as ID_KEY_ID
    argv = ["ike-scan", "--aggressive", "--multiline", f"--id={group}", "--idtype=11",
            "--dhgroup=14", "--trans=(1=7,14=256,2=2,3=65001,4=14)",
            f"--vendor={VendorId.NAT_T_RFC3947.hex()}",
            f"--vendor={VendorId.CISCO_UNITY.hex()}", CONC_PUBLIC]
    return topo.exec("c1", argv, timeout=30).stdout


def shape(out: str) -> list[str]:
    """What ike-scan printed, without the values that differ in every answer
    (cookies, nonces, KE, hash) and without timing: payload types and sizes stay."""
    lines = [ln.strip() for ln in out.splitlines() if ln.startswith(("\t", " ")) or
             "Handshake returned" in ln or "Notify message" in ln]
    return [re.sub(r"HDR=\(CKY-R=[0-9a-f]+\)", "HDR=(CKY-R=*)", ln) for ln in lines]


def test_ike_scan_gets_the_same_answer_for_known_and_unknown_groups(
        lab_prefix: str, lab_run_dir: Path, peer_tools: None,
        vpnhub: Callable[..., VpnhubServer]) -> None:
    with Topology(lab_prefix, clients=1, run_dir=lab_run_dir) as topo:
        srv = vpnhub(topo, console_severity=5)
        known = probe(topo, "vpngroup")
        unknown = probe(topo, "nosuchgroup")
        why = srv.explain(f"known:\n{known}\nunknown:\n{unknown}")
        assert "Aggressive Mode Handshake returned" in known, why
        assert "Aggressive Mode Handshake returned" in unknown, why
        assert "Notify message" not in unknown, why
        assert shape(known) == shape(unknown), why
        assert "KeyExchange(256 bytes)" in unknown and "Hash(20 bytes)" in unknown, why
        # the operator learns it when the negotiation times out (ike-scan sends no
        # message 3), as for a client with a wrong group password
        wait_until(lambda: srv.lines("nosuchgroup", "not configured") or None, 45,
                   interval=0.5, what="the log to name the unknown group")
        assert not srv.lines("vpngroup", "not configured"), why
