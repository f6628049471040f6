"""The lab network itself: addresses, PAT, blackhole, services, and clean teardown."""

from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from netns_util import TEST_PREFIX_BASE, assert_nothing_left, unique_prefix

from vpnhub.lab import procs
from vpnhub.lab.topology import (
    CONC_PUBLIC,
    LAN_HOST,
    PAT_OUTSIDE,
    PRIVATE_LAN,
    NatEntry,
    Topology,
    parse_conntrack,
    reap_orphaned_labs,
    record_netns,
    run,
)

# conntrack -L lines of the reference run (PAT with "masquerade random")
CONNTRACK_SAMPLE = """\
udp      17 27 src=10.10.10.2 dst=203.0.113.50 sport=500 dport=500 src=203.0.113.50 \
dst=203.0.113.78 sport=500 dport=130 mark=0 use=1
udp      17 177 src=10.10.10.3 dst=203.0.113.50 sport=4500 dport=4500 src=203.0.113.50 \
dst=203.0.113.78 sport=4500 dport=24432 [ASSURED] mark=0 use=1
icmp     1 29 src=10.10.10.2 dst=203.0.113.50 type=8 code=0 id=6581 src=203.0.113.50 \
dst=203.0.113.78 type=0 code=0 id=58004 mark=0 use=1
conntrack v1.4.7 (conntrack-tools): 3 flow entries have been shown.
"""


def test_parse_conntrack() -> None:
    assert parse_conntrack(CONNTRACK_SAMPLE) == [
        NatEntry("udp", ("10.10.10.2", 500), ("203.0.113.78", 130), ("203.0.113.50", 500)),
        NatEntry("udp", ("10.10.10.3", 4500), ("203.0.113.78", 24432), ("203.0.113.50", 4500),
                 assured=True),
        NatEntry("icmp", ("10.10.10.2", 6581), ("203.0.113.78", 58004),
                 ("203.0.113.50", 6581)),
    ]


@pytest.mark.parametrize("prefix", ["", "a", "Vht", "vht-1", "vhtabcdefgh", "1vh"])
def test_bad_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(ValueError):
        Topology(prefix)


def test_names_and_addresses() -> None:
    topo = Topology("vhtx", clients=3, direct_clients=2)
    assert [c.addr for c in topo.clients] == ["10.10.10.2", "10.10.10.3", "10.10.10.4"]
    assert [d.addr for d in topo.direct] == ["203.0.113.20", "203.0.113.21"]
    assert topo.clients[0].netns == "vhtx-c1" and topo.clients[0].tun == "vhtxtun"
    names = [h.ifname for h in topo.hosts.values()] + [h.netns for h in topo.hosts.values()]
    assert all(n.startswith("vhtx") for n in names)
    assert all(len(h.ifname) <= 15 for h in Topology("vhtabcdef", clients=99).hosts.values())


def ipv6_disabled(topo: Topology, role: str) -> bool:
    out = topo.exec(role, ["cat", "/proc/sys/net/ipv6/conf/all/disable_ipv6"]).stdout
    return out.strip() in ("1", "")


@pytest.mark.netns
def test_build_and_teardown_leaves_nothing(lab_prefix: str, lab_run_dir: Path) -> None:
    with Topology(lab_prefix, clients=2, direct_clients=1, run_dir=lab_run_dir) as topo:
        namespaces = run(["ip", "netns", "list"]).stdout
        for h in topo.hosts.values():
            assert h.netns in namespaces
            assert ipv6_disabled(topo, h.role), h.role
        # behind the PAT: both clients reach the concentrator, translated to one address
        assert topo.ping("c1", CONC_PUBLIC) and topo.ping("c2", CONC_PUBLIC)
        icmp = topo.pat_conntrack("icmp")
        assert {e.inside[0] for e in icmp} == {"10.10.10.2", "10.10.10.3"}
        assert {e.outside[0] for e in icmp} == {PAT_OUTSIDE}
        assert topo.ping("d1", CONC_PUBLIC)  # the direct client is not translated
        # the private LAN is unreachable without a tunnel: silently dropped
        routes = topo.exec("pat", ["ip", "route", "show", PRIVATE_LAN], check=True).stdout
        assert routes.split()[:2] == ["blackhole", PRIVATE_LAN]
        assert not topo.ping("c1", LAN_HOST, timeout=0.3)
        services = topo.start_lan_services()
        fetch = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read())"
        cp = topo.exec("conc", [sys.executable, "-c", fetch, services.http_url], check=True)
        assert "private LAN host" in cp.stdout
        topo.route_private_lan(True)  # the raw baseline: routed in clear
        assert topo.ping("c1", LAN_HOST, timeout=2) and topo.ping("d1", LAN_HOST, timeout=2)
        topo.route_private_lan(False)
        assert not topo.ping("c2", LAN_HOST, timeout=0.3)
        pids = tuple(p.pid for p in topo.processes())
        assert len(pids) == len(services.iperf_ports) + 1
    assert_nothing_left(lab_prefix, pids)


@contextlib.contextmanager
def subreaper() -> Iterator[None]:
    """Orphans of the crashed child become our children, so we can reap them
    (PID 1 on this VM does not reap: they would stay zombies)."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_child_subreaper = 36
    libc.prctl(pr_set_child_subreaper, 1, 0, 0, 0)
    try:
        yield
    finally:
        libc.prctl(pr_set_child_subreaper, 0, 0, 0, 0)


def crash_a_lab(prefix: str, run_dir: Path) -> int:
    """Build lab `prefix` in a child process that dies without teardown; returns
    the PID of the process it left running in c1 (call inside ``subreaper()``)."""
    crash = textwrap.dedent(f"""
        import os
        from vpnhub.lab.topology import Topology
        topo = Topology({prefix!r}, clients=2, run_dir={str(run_dir)!r}).up()
        sleeper = topo.spawn("c1", ["sleep", "600"], "sleep.log")
        print(sleeper.pid, flush=True)
        os._exit(3)  # no teardown at all
    """)
    cp = subprocess.run([sys.executable, "-c", crash], capture_output=True, text=True,
                        timeout=60)
    assert cp.returncode == 3, cp.stderr
    orphan = int(cp.stdout.split()[0])
    assert procs.is_running(orphan)
    assert f"{prefix}-c1" in run(["ip", "netns", "list"]).stdout
    return orphan


@pytest.mark.netns
def test_same_prefix_cleans_a_crashed_run(lab_prefix: str, lab_run_dir: Path) -> None:
    with subreaper():
        orphan = crash_a_lab(lab_prefix, lab_run_dir)
        with Topology(lab_prefix, clients=2, run_dir=lab_run_dir) as topo:
            assert not procs.is_running(orphan)
            assert topo.ping("c2", CONC_PUBLIC)
    assert_nothing_left(lab_prefix, (orphan,))


@pytest.mark.netns
def test_orphaned_test_labs_are_reaped_live_ones_kept(lab_run_dir: Path) -> None:
    dead, live = unique_prefix(), unique_prefix()
    with subreaper():
        orphan = crash_a_lab(dead, lab_run_dir / "dead")
        with Topology(live, clients=1, run_dir=lab_run_dir / "live") as topo:
            reap_orphaned_labs(TEST_PREFIX_BASE)
            assert_nothing_left(dead, (orphan,))
            assert topo.ping("c1", CONC_PUBLIC)  # ours, alive: untouched
    assert_nothing_left(live)


@pytest.mark.netns
def test_same_prefix_cleans_a_half_built_one(lab_prefix: str, lab_run_dir: Path) -> None:
    # what an interrupted build can leave: some namespaces, recorded as the build
    # records them before creating them (only what the lab recorded is removed)
    for ns in (f"{lab_prefix}-pat", f"{lab_prefix}-c1"):
        record_netns(lab_prefix, ns)
        run(["ip", "netns", "add", ns])
    try:
        with Topology(lab_prefix, clients=1, run_dir=lab_run_dir) as topo:
            assert topo.ping("c1", CONC_PUBLIC)
    finally:
        assert_nothing_left(lab_prefix)


@pytest.mark.netns
def test_failed_build_removes_what_it_made(
    lab_prefix: str, lab_run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Topology) -> None:
        raise RuntimeError("injected failure while building the PAT")

    monkeypatch.setattr(Topology, "_setup_pat", broken)
    with pytest.raises(RuntimeError, match="injected"):
        Topology(lab_prefix, clients=2, run_dir=lab_run_dir).up()
    assert_nothing_left(lab_prefix)


def test_recording_a_namespace_makes_this_process_the_owner(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A test that makes its own namespace (ip netns add) and only records it had
    # no owner: another test session's reap_orphaned_labs took the lab for a
    # crashed run's and stopped the vpnhub serve inside it (seen in CI).
    monkeypatch.setattr(procs, "STATE_ROOT", tmp_path)
    prefix = unique_prefix()
    assert procs.owner_alive(prefix) is None
    record_netns(prefix, f"{prefix}-c1")
    assert procs.owner_alive(prefix) is True
    assert (tmp_path / prefix / "owner").read_text().split()[0] == str(os.getpid())
