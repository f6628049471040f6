"""The cluster lab's plan, without namespaces: options, generated configurations,
keepalived's templates (the netns proof is test_cluster_netns.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from vpnhub.config import load_config
from vpnhub.lab import cluster
from vpnhub.lab.labctl import LabSpec, concentrator_toml
from vpnhub.lab.peers import render
from vpnhub.lab.topology import VIRTUAL_ADDRESS, Topology


def test_member_configuration_loads(tmp_path: Path) -> None:
    spec = LabSpec(prefix="vhtcfg", clients=6, concentrators=3)
    topo = Topology("vhtcfg", clients=6, concentrators=3, run_dir=tmp_path)
    m2 = topo.members[1]
    path = tmp_path / "m2.toml"
    dsn = "host=192.168.2.5 dbname=vpnhub user=vpnhub password=pw"
    path.write_text(concentrator_toml(spec, tmp_path, member=m2, dsn=dsn))
    config = load_config(path)
    assert config.cluster is not None
    assert config.cluster.member == "m2"
    assert str(config.cluster.virtual_address) == VIRTUAL_ADDRESS == "203.0.113.50"
    assert str(config.cluster.public_address) == "203.0.113.52"
    assert str(config.concentrator.public_address) == "203.0.113.52"
    assert config.admin.socket == tmp_path / "m2" / "admin.sock"
    assert config.limits.max_sessions <= 100  # one session is more than the 1 % rule


def test_single_concentrator_configuration_unchanged(tmp_path: Path) -> None:
    text = concentrator_toml(LabSpec(prefix="vhtcfg"), tmp_path)
    assert "[cluster]" not in text and "[limits]" not in text


def test_cluster_topology_names() -> None:
    topo = Topology("vhtcfg", clients=6, concentrators=3)
    assert [m.role for m in topo.members] == ["m1", "m2", "m3"]
    assert [m.addr for m in topo.members] == ["203.0.113.51", "203.0.113.52", "203.0.113.53"]
    assert [m.private for m in topo.members] == ["192.168.2.251", "192.168.2.252",
                                                 "192.168.2.253"]
    assert topo.conc is topo.members[0] and topo.db is not None
    assert {"m1", "m2", "m3", "db", "lan", "pat", "inet"} <= set(topo.hosts)
    assert all(len(f"{m.private_if}") <= 15 for m in topo.members)
    single = Topology("vhtcfg", clients=2)
    assert "conc" in single.hosts and not single.members and single.db is None


@pytest.mark.parametrize("kw", [{"concentrators": 0}, {"concentrators": 5},
                                {"concentrators": 3, "client": "strongswan"}])
def test_bad_cluster_options(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        LabSpec(**kw).check()  # type: ignore[arg-type]


def test_keepalived_template(tmp_path: Path) -> None:
    text = render("keepalived.conf", {
        "MEMBER": "m2", "CHECK": "/x/alive.sh", "NOTIFY": "/x/notify.sh", "IFACE": "vhtk0",
        "VRID": "50", "PRIORITY": "140", "SRC": "203.0.113.52",
        "PEERS": "        203.0.113.51\n        203.0.113.53", "VIP": "203.0.113.50",
        "PLEN": "24"})
    assert "203.0.113.50/24 dev vhtk0" in text and "advert_int 1" in text
    assert "track_script" in text and "unicast_peer" in text
    conf = tmp_path / "k.conf"
    conf.write_text(text)
    if os.geteuid() != 0 or shutil.which(cluster.KEEPALIVED) is None:
        pytest.skip("keepalived's own check needs root and keepalived")
    # in a throw-away network namespace (gone with the process) holding the interface
    script = ("ip link add vhtk0 type veth peer name vhtk1 &&"
              f' exec {cluster.KEEPALIVED} --config-test --use-file "$0"')
    cp = subprocess.run(["unshare", "--net", "sh", "-c", script, str(conf)],
                        capture_output=True, text=True, check=False, timeout=30)
    assert cp.returncode == 0, cp.stderr


def test_alive_script(tmp_path: Path) -> None:
    """The vrrp_script: true for a live process with the recorded start time, false for
    a dead one, a zombie or a PID reused by another process."""
    pidfile = tmp_path / "vpnhub.pid"
    script = tmp_path / "alive.sh"
    script.write_text(render("vpnhub-alive.sh", {"MEMBER": "m1", "PIDFILE": str(pidfile)}))

    def alive() -> bool:
        return subprocess.run(["/bin/sh", str(script)], check=False).returncode == 0

    assert not alive()  # no pid file yet
    p = subprocess.Popen(["sleep", "30"])
    try:
        cluster.write_tracked_pid(pidfile, p.pid)
        assert alive()
        pidfile.write_text(f"{p.pid} 1\n")  # another start time: a reused PID
        assert not alive()
        cluster.write_tracked_pid(pidfile, p.pid)
        p.kill()
        deadline = time.monotonic() + 5
        while alive() and time.monotonic() < deadline:  # a zombie until reaped
            time.sleep(0.05)
        assert not alive()
    finally:
        p.kill()
        p.wait()
    assert not alive()
