"""`vpnhub lab scenario NAME` with vpnc clients: each ends PASS, with its evidence.

Every scenario builds its own lab here (``--fresh``) under the test's prefix,
and must remove it (the ``lab_prefix`` fixture checks that nothing is left).
``two-clients`` also runs once in a lab built by ``vpnhub lab up``, as
``scripts/lab`` does.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from netns_util import require_tools
from test_lab_cli import LAB_TOOLS, lab, reap_orphans, show
from test_topology import subreaper

from vpnhub.lab.scenarios import SCENARIOS

pytestmark = pytest.mark.netns



def scenario(name: str, prefix: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vpnhub", "lab", "scenario", name, "--fresh",
                           "--own-prefix", prefix, *extra], capture_output=True, text=True,
                          timeout=240, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("client", ["vpnc", "vpnhub"])
@pytest.mark.parametrize("name", [
    "two-clients", "nat-t-off", "wrong-psk",
    "rekey", "client-moves",
])
def test_scenario_passes(name: str, client: str, lab_prefix: str) -> None:
    """Every scenario with vpnhub clients, and with vpnc (a client nobody here wrote)."""
    require_tools(*LAB_TOOLS)
    cp = scenario(name, lab_prefix, "--client", client)
    out = cp.stdout
    # the description first, the verdict last, the lab removed in between
    assert out.startswith(f"== scenario {name}: "), show(cp)
    assert SCENARIOS[name].description[:60] in out.replace("\n", " ")
    assert f"lab {lab_prefix} removed" in out, show(cp)
    assert cp.returncode == 0 and f"\nPASS {name}: " in out, show(cp)
    assert "  FAIL  " not in out


def test_two_clients_in_the_running_lab(lab_prefix: str) -> None:
    require_tools(*LAB_TOOLS)
    p = ["--prefix", lab_prefix]
    with subreaper():
        try:
            up = lab("up", *p)
            assert up.returncode == 0, show(up)
            cp = lab("scenario", "two-clients", *p)
            assert f"lab: the running lab {lab_prefix}" in cp.stdout, show(cp)
            assert cp.returncode == 0 and "\nPASS two-clients: " in cp.stdout, show(cp)
            status = lab("status", *p)
            assert status.returncode == 0, show(status)  # the scenario left it as it was
        finally:
            down = lab("down", *p)
            reap_orphans()
    assert down.returncode == 0, show(down)
