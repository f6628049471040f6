"""`vpnhub lab`: up, status, xlate, exec, a second up, down -- from the command line.

The netns tests run the real command (``python -m vpnhub lab ...``) with a
test prefix, so they never meet a lab someone is running (``vhl``). They run
as a child subreaper: the lab daemon, orphaned when ``lab up`` returns, is
re-parented to the test and reaped here instead of staying a zombie of PID 1.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from netns_util import assert_nothing_left, require_tools
from test_topology import subreaper

from vpnhub.config import load_config
from vpnhub.lab import procs
from vpnhub.lab.labctl import (
    CLIENT_KINDS,
    STATE_FILE,
    LabSpec,
    collapse_esp_lines,
    concentrator_toml,
    run_dir_for,
)
from vpnhub.lab.scenarios import SCENARIOS, parse_ping
from vpnhub.lab.topology import parse_conntrack
from vpnhub.lab.xlate import format_xlate, natt_mappings

VPNHUB = [sys.executable, "-m", "vpnhub"]
LAB_TOOLS = ("vpnc", "nft", "conntrack", "iperf3", "stdbuf")
XLATE_4500 = re.compile(r"^PAT Global 203\.0\.113\.78\((\d+)\) Local (10\.10\.10\.\d+)\(4500\)$",
                        re.MULTILINE)

# the PAT's conntrack table with two NAT-T clients, a stale entry after a flush
CONNTRACK = """\
udp      17 27 src=10.10.10.2 dst=203.0.113.50 sport=500 dport=500 src=203.0.113.50 \
dst=203.0.113.78 sport=500 dport=4 mark=0 use=1
udp      17 177 src=10.10.10.3 dst=203.0.113.50 sport=4500 dport=4500 src=203.0.113.50 \
dst=203.0.113.78 sport=4500 dport=1025 [ASSURED] mark=0 use=1
udp      17 177 src=10.10.10.2 dst=203.0.113.50 sport=4500 dport=4500 src=203.0.113.50 \
dst=203.0.113.78 sport=4500 dport=1026 [ASSURED] mark=0 use=1
udp      17 29 src=203.0.113.50 dst=203.0.113.78 sport=4500 dport=1026 src=203.0.113.78 \
dst=203.0.113.50 sport=1026 dport=4500 mark=0 use=1
"""


def test_show_xlate_like_the_pix() -> None:
    entries = parse_conntrack(CONNTRACK)
    assert format_xlate(entries).splitlines() == [
        "3 in use",
        "PAT Global 203.0.113.78(4) Local 10.10.10.2(500)",
        "PAT Global 203.0.113.78(1026) Local 10.10.10.2(4500)",
        "PAT Global 203.0.113.78(1025) Local 10.10.10.3(4500)",
    ]
    detail = format_xlate(entries, detail=True)
    assert ("UDP PAT from inside:10.10.10.3/4500 to outside:203.0.113.78/1025"
            " (peer 203.0.113.50/4500) flags ri") in detail
    assert natt_mappings(entries) == {"10.10.10.2": 1026, "10.10.10.3": 1025}


@pytest.mark.parametrize("client", CLIENT_KINDS)
@pytest.mark.parametrize("suite", ["legacy", "modern"])
def test_generated_configuration_loads(tmp_path: Path, client: str, suite: str) -> None:
    spec = LabSpec(prefix="vhtcfg", clients=3, client=client, suite=suite, natt=False,
                   ipsec_lifetime=30)
    path = tmp_path / "concentrator.toml"
    path.write_text(concentrator_toml(spec, tmp_path))
    config = load_config(path)
    assert [u.name for u in config.users] == ["vpnuser1", "vpnuser2", "vpnuser3"]
    assert config.nat_transparency.ipsec_over_natt is False
    assert config.concentrator.ipsec_lifetime == 30
    assert config.admin.socket == tmp_path / "admin.sock"
    assert config.log.console_severity == 5
    (group,) = config.groups
    assert (group.name, str(group.address_pool)) == ("vpngroup", "10.40.1.0/24")
    assert [str(n) for n in group.split_include or []] == ["192.168.2.0/24"]
    assert [str(d) for d in group.dns] == ["192.168.2.10"]


@pytest.mark.parametrize("kw", [{"prefix": "VHL"}, {"clients": 0}, {"clients": 17},
                                {"client": "racoon"}, {"suite": "export"}])
def test_bad_lab_options_are_refused(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        LabSpec(**kw).check()  # type: ignore[arg-type]


def test_vpnc_packet_lines_are_collapsed() -> None:
    lines = ["VPNC started in foreground...", "",
             "vpnc: Accepting expected ESP packet with seq 1", "",
             "vpnc: Accepting expected ESP packet with seq 2", "",
             "vpnc: Accepting expected ESP packet with seq 3", "IPSEC SA selected aes256-sha1"]
    assert collapse_esp_lines(lines) == [
        "VPNC started in foreground...", "",
        "vpnc: Accepting expected ESP packet with seq 1 .. 3 (3 packets)",
        "IPSEC SA selected aes256-sha1"]


def test_ping_summaries() -> None:
    ok = parse_ping("--- 192.168.2.10 ping statistics ---\n200 packets transmitted, 198"
                    " received, 1% packet loss, time 39800ms\nrtt min/avg/max/mdev ="
                    " 0.353/0.722/4.52/0.5 ms\n")
    assert (ok.sent, ok.received, ok.lost, ok.rtt_avg_ms) == (200, 198, 2, 0.722)
    assert str(ok) == "198/200 replies, 2 lost, rtt avg 0.72 ms"
    none = parse_ping("ping: SO_BINDTODEVICE vhltun: No such device\n")
    assert str(none) == "no probe sent: ping: SO_BINDTODEVICE vhltun: No such device"


def test_every_scenario_describes_itself() -> None:
    assert list(SCENARIOS) == ["two-clients", "nat-t-off", "wrong-psk", "rekey",
                               "client-moves", "cluster"]
    for s in SCENARIOS.values():
        assert len(s.description) > 300 and "Checked" in s.description, s.name


def test_lab_help_lists_the_commands() -> None:
    cp = subprocess.run([*VPNHUB, "lab", "--help"], capture_output=True, text=True, timeout=30)
    assert cp.returncode == 0
    for command in ("up", "down", "status", "xlate", "exec", "logs", "scenario"):
        assert command in cp.stdout


# ------------------------------------------------------------------------------ netns
def lab(*args: str, timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*VPNHUB, "lab", *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def show(cp: subprocess.CompletedProcess[str]) -> str:
    return f"exit {cp.returncode}\n--- stdout\n{cp.stdout}\n--- stderr\n{cp.stderr}"


def daemon_of(prefix: str) -> tuple[int, int]:
    owner = json.loads((run_dir_for(prefix) / STATE_FILE).read_text())["owner"]
    return int(owner["pid"]), int(owner["starttime"])


def reap_orphans() -> None:
    """Reap what was re-parented to us: the lab daemon, or the processes of a killed one."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def root_state() -> dict[str, set[str]]:
    """The machine's own routes, links and nft ruleset (the lab must not touch them)."""
    def lines(*argv: str) -> set[str]:
        out = subprocess.run(argv, capture_output=True, text=True, check=False).stdout
        return {ln.strip() for ln in out.splitlines() if ln.strip()}

    return {"routes": lines("ip", "route", "show", "table", "all"),
            "links": {ln.split(":")[1].strip() for ln in lines("ip", "-o", "link")},
            "nft": lines("nft", "list", "tables")}


def new_in_root(before: dict[str, set[str]], prefix: str) -> list[str]:
    lab_words = (prefix, "10.10.10.", "203.0.113.", "192.168.2.", "10.40.1.")
    after = root_state()
    return [f"{kind}: {x}" for kind in before for x in after[kind] - before[kind]
            if any(w in x for w in lab_words)]


@pytest.mark.netns
def test_up_status_xlate_exec_up_again_down(lab_prefix: str) -> None:
    require_tools(*LAB_TOOLS)
    p = ["--prefix", lab_prefix]
    before = root_state()
    with subreaper():
        t0 = time.monotonic()
        up = lab("up", *p)
        up_seconds = time.monotonic() - t0
        daemon = daemon_of(lab_prefix) if run_dir_for(lab_prefix).exists() else (0, 0)
        try:
            assert up.returncode == 0, show(up)
            assert f"lab {lab_prefix} is up" in up.stdout
            assert "Session Summary" in up.stdout and "IPsec/NAT-T" in up.stdout, up.stdout
            assert len(XLATE_4500.findall(up.stdout)) == 2, up.stdout
            assert f"vpnhub lab down --prefix {lab_prefix}" in up.stdout
            assert procs.is_running(*daemon)

            status = lab("status", *p)
            assert status.returncode == 0 and "no problems" in status.stdout, show(status)
            for host in ("c1", "c2", "pat", "inet", "conc", "lan"):
                assert f"{lab_prefix}-{host}" in status.stdout

            xlate = lab("xlate", *p)
            assert xlate.returncode == 0, show(xlate)
            natt = dict((local, int(port)) for port, local in XLATE_4500.findall(xlate.stdout))
            assert set(natt) == {"10.10.10.2", "10.10.10.3"}, xlate.stdout
            assert len(set(natt.values())) == 2, xlate.stdout  # one address, two ports

            tun = f"{lab_prefix}tun"
            route = lab("exec", *p, "c1", "--", "ip", "route", "get", "192.168.2.10")
            assert f"dev {tun}" in route.stdout, show(route)  # through the tunnel
            ping = lab("exec", *p, "c1", "--", "ping", "-c", "3", "-i", "0.2", "-W", "2",
                       "-I", tun, "192.168.2.10")
            assert ping.returncode == 0 and " 0% packet loss" in ping.stdout, show(ping)
            missing = lab("exec", *p, "c9", "--", "true")
            assert missing.returncode == 2 and "hosts: c1 c2" in missing.stderr, show(missing)

            again = lab("up", *p)
            assert again.returncode == 0, show(again)
            assert "already running" in again.stdout and "not rebuilt" in again.stdout
            assert daemon_of(lab_prefix) == daemon  # the same lab, not a new one
            recorded = [(r.pid, r.starttime) for _, r in procs.records(lab_prefix)]
            assert len(recorded) == 6  # 2 vpnc, vpnhub serve, 2 iperf3, HTTP
        finally:
            down = lab("down", *p)
            reap_orphans()
        assert down.returncode == 0, show(down)
    assert f"lab {lab_prefix} removed" in down.stdout
    assert not [pid for pid, st in recorded if procs.is_running(pid, st)]
    assert not procs.is_running(*daemon)
    assert not run_dir_for(lab_prefix).exists()
    assert not new_in_root(before, lab_prefix)
    assert_nothing_left(lab_prefix, (daemon[0], *(pid for pid, _ in recorded)))
    assert "nothing to remove" in lab("down", *p).stdout
    assert up_seconds < 60


@pytest.mark.netns
def test_up_cleans_a_crashed_lab_first(lab_prefix: str) -> None:
    require_tools(*LAB_TOOLS)
    p = ["--prefix", lab_prefix]
    with subreaper():
        try:
            assert lab("up", *p, "--clients", "1").returncode == 0
            crashed = daemon_of(lab_prefix)
            os.kill(crashed[0], signal.SIGKILL)  # the lab daemon dies, its lab stays
            reap_orphans()
            status = lab("status", *p)
            assert status.returncode == 1 and "gone" in status.stdout, show(status)
            again = lab("up", *p, "--clients", "1")
            assert again.returncode == 0, show(again)
            assert "cleaned what an earlier lab" in again.stdout, again.stdout
            second = daemon_of(lab_prefix)
            assert second != crashed
        finally:
            down = lab("down", *p)
            reap_orphans()
        assert down.returncode == 0, show(down)
    assert not procs.is_running(*second)
    assert_nothing_left(lab_prefix)


@pytest.mark.netns
def test_down_removes_only_what_the_lab_created(lab_prefix: str) -> None:
    """A namespace named like the lab's but made by hand survives `lab down` (issue 11, 8b)."""
    require_tools(*LAB_TOOLS)
    p = ["--prefix", lab_prefix]
    mine = f"{lab_prefix}-foreign"
    with subreaper():
        try:
            up = lab("up", *p, "--clients", "1")
            assert up.returncode == 0, show(up)
            subprocess.run(["ip", "netns", "add", mine], check=True)
            down = lab("down", *p)
            reap_orphans()
            assert down.returncode == 0, show(down)
            namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True,
                                        text=True, check=True).stdout.split()
            assert mine in namespaces, show(down)
            assert f"left alone (named like lab {lab_prefix}'s" in down.stderr, show(down)
            assert f"netns {mine}" in down.stderr, show(down)
            assert not [n for n in namespaces if n.startswith(f"{lab_prefix}-") and n != mine]
            assert f"lab {lab_prefix} removed" in down.stdout, show(down)
        finally:
            lab("down", *p)
            reap_orphans()
            subprocess.run(["ip", "netns", "del", mine], check=False)
    assert_nothing_left(lab_prefix)
