"""The cluster end to end (issue 17), in namespaces, with real peers.

One lab for the module (``vpnhub.lab``, as ``vpnhub lab up --concentrators 3
--clients 6`` builds it): three members behind the virtual address
203.0.113.50, keepalived (VRRP) in each, PostgreSQL 15 in its own namespace,
six vpnc clients with DPD in a restart loop behind the one PAT, and a spare
seventh client. The checks are the ``cluster`` scenario's
(``vpnhub.lab.scenarios``), so the scenario and the tests prove the same
thing; each test fails on any FAIL line and prints the evidence.

The cases run in file order on the same lab: the spread, the database
outage (all members alive), then the master's SIGKILL (which leaves a member
dead). Marker ``netns``; root, vpnc, keepalived and PostgreSQL 15 needed.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator

import pytest
from netns_util import assert_nothing_left, require_tools, unique_prefix

from vpnhub.lab import cluster, scenarios
from vpnhub.lab.labctl import Lab, LabSpec, run_dir_for
from vpnhub.lab.scenarios import SCENARIOS, Run
from vpnhub.lab.topology import LAN_HOST, cleanup, wait_until

pytestmark = pytest.mark.netns

TOOLS = ("ip", "nft", "conntrack", "vpnc", "ping", "keepalived", "setpriv", "unshare",
         str(cluster.PG_BIN / "postgres"), str(cluster.PG_BIN / "initdb"))
MEMBERS = ("m1", "m2", "m3")
ROLES = ("c1", "c2", "c3", "c4", "c5", "c6")
SPARE = "c7"
OUTAGE = 30.0  # seconds without PostgreSQL


@pytest.fixture(scope="module")
def cluster_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    require_tools(*TOOLS)
    prefix = unique_prefix()
    spec = LabSpec(prefix=prefix, clients=len(ROLES), concentrators=len(MEMBERS),
                   spare_clients=1)
    lab = Lab(spec, progress=print, owner="scenario")
    try:
        lab.build()
        lab.connect_all()
        lab.phase = "up"
        lab.save_state()
        yield lab
    finally:
        # the logs (not the configurations: secrets) stay with pytest's temporary files
        scenarios.copy_logs(lab, tmp_path_factory.mktemp("cluster-logs"))
        lab.down()
        shutil.rmtree(run_dir_for(prefix), ignore_errors=True)
        try:
            assert_nothing_left(prefix)
        except AssertionError:
            cleanup(prefix)
            raise


def new_run(lab: Lab) -> Run:
    return Run(SCENARIOS["cluster"], lab.view(), lab)


def verdict(run: Run) -> str:
    return "; ".join(f"{c.what}: {c.detail}" for c in run.checks if c.verdict == "FAIL")


def test_six_clients_spread_over_three_members(cluster_lab: Lab) -> None:
    """All six in the cluster-wide list with their member, 2/2/2 (the ASA rule), each
    passing traffic to the LAN host, every address unique and routed by its member."""
    run = new_run(cluster_lab)
    scenarios.check_spread(run, ROLES, MEMBERS)
    assert not run.failed, verdict(run)
    per_member = {m: sum(1 for x in scenarios.cluster_sessions(run) if x.get("member") == m)
                  for m in MEMBERS}
    assert sorted(per_member.values()) == [2, 2, 2], per_member


def test_database_outage(cluster_lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    """PostgreSQL stopped for 30 s: the tunnels keep passing traffic, a new login is
    refused and the member says why; after it returns the directory is right again."""
    lab = cluster_lab
    assert lab.pg is not None
    run = new_run(lab)
    marks = {m: len(_member_log(lab, m)) for m in MEMBERS}
    lab.pg.stop()
    t0 = time.monotonic()

    def noticed() -> list[str]:
        said = [[ln for ln in _member_log(lab, m)[marks[m]:] if "cluster database" in ln]
                for m in MEMBERS]
        return [x[0] for x in said if x] if all(said) else []

    # every member notices at its next heartbeat (a login in between still gets an
    # address from the member's own block: the database is not asked per login)
    said = wait_until(noticed, 15.0, interval=0.1, what="the members to notice")
    seen = time.monotonic() - t0
    # a new login while the database is away: refused (the vpnc runs once, no restart)
    refused = lab.start_client(SPARE, supervise=False)
    while refused.exited() is None and time.monotonic() - t0 < OUTAGE - 5:
        time.sleep(0.5)
    why = refused.exited()
    rounds = []
    while time.monotonic() - t0 < OUTAGE:
        rounds.append({r: lab.topo.ping(r, LAN_HOST, interface=lab.topo.host(r).tun,
                                        count=1, timeout=2.0) for r in ROLES})
        time.sleep(3.0)
    refused.stop()
    restarted = lab.pg.start()
    with capsys.disabled():
        print(f"\n[cluster] database away {time.monotonic() - t0:.1f} s, noticed by every"
              f" member after {seen:.1f} s; {len(rounds)} ping rounds; new login: {why};"
              f" back in {restarted:.1f} s")
    assert rounds and all(all(r.values()) for r in rounds), rounds
    assert why is not None, "the new client connected without the database"
    assert said, "no member said that the cluster database is unreachable"
    # after the return: the new client gets in, and the directory lists everyone once
    c = lab.start_client(SPARE)
    lab.connect(c, timeout=60.0)
    assert lab.check_usable(c, timeout=20.0), c.detail
    users = {f"vpnuser{r[1:]}" for r in (*ROLES, SPARE)}
    sessions = _settled(run, users)
    scenarios.check_unique(run, sessions)
    leases = cluster.leases(lab.pg)
    assert sorted(a for a, _ in leases) == sorted(str(x["assigned_ip"]) for x in sessions)
    c.stop()  # the spare is the new client of the next test
    assert not run.failed, verdict(run)


def test_master_sigkill_recovery(cluster_lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
    """SIGKILL of the VRRP master's vpnhub: the address moves within seconds, a new client
    connects, the dead member's clients come back through the virtual address and pass
    traffic; no address twice, no lease of the dead member left."""
    run = new_run(cluster_lab)
    _settled(run, {f"vpnuser{r[1:]}" for r in ROLES})
    figures = scenarios.check_master_failure(run, ROLES, MEMBERS, SPARE)
    with capsys.disabled():
        print("\n[cluster] master SIGKILL: " + ", ".join(
            f"{k.replace('_', ' ')} {v:.1f} s" for k, v in figures.items()))
    assert not run.failed, verdict(run)
    assert figures.get("vip_moved", 99.0) < 10.0, figures
    assert "full_recovery" in figures, figures


def _member_log(lab: Lab, member: str) -> list[str]:
    try:
        return (lab.member_files(member) / "conc.log").read_text(errors="replace").splitlines()
    except OSError:
        return []


def _settled(run: Run, users: set[str], timeout: float = 30.0) -> list[dict[str, object]]:
    """The cluster-wide sessions once they are exactly `users`, each once."""
    deadline = time.monotonic() + timeout
    while True:
        sessions = scenarios.cluster_sessions(run)
        names = [str(x.get("user")) for x in sessions]
        if sorted(names) == sorted(users) or time.monotonic() > deadline:
            assert sorted(names) == sorted(users), scenarios.cluster_table(sessions)
            return sessions
        time.sleep(1.0)
