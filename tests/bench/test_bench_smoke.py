"""Smoke runs of the benchmarks (bench/): each runs for seconds and must produce its numbers.

Only that the numbers exist is checked, never their size: the machine is
shared and noisy, and timings are what ``bench/run`` measures, not tests.
The lab benchmarks need root and network namespaces (marker ``netns``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from netns_util import require_tools

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"
sys.path.insert(0, str(BENCH))


def run_bench(name: str, prefix: str, tmp_path: Path, *extra: str) -> dict[str, Any]:
    out = tmp_path / f"{name}.json"
    cp = subprocess.run(
        [sys.executable, str(BENCH / f"{name}.py"), "--smoke", "--prefix", prefix,
         "--json", str(out), *extra],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert cp.returncode == 0, f"{name} --smoke exit {cp.returncode}:\n{cp.stdout[-3000:]}" \
                               f"\n{cp.stderr[-3000:]}"
    doc: dict[str, Any] = json.loads(out.read_text())
    return doc


def is_number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


@pytest.mark.netns
def test_throughput_smoke(lab_prefix: str, tmp_path: Path) -> None:
    require_tools("iperf3")
    doc = run_bench("throughput", lab_prefix, tmp_path, "--workers", "2")
    assert doc["workers"] == 2
    (r,) = doc["results"]
    assert (r["client"], r["concentrator"], r["tunnels"]) == ("vpnhub", "vpnhub", 1)
    for key in ("mbit_s", "pkt_s", "conc_cpu_s_per_gb", "client_cpu_s_per_gb",
                # issue 16: system calls per packet from the concentrator's counters
                "udp_rx_calls_per_dgram", "udp_tx_calls_per_dgram", "syscalls_per_pkt",
                "tun_rx_calls_per_pkt", "tun_tx_calls_per_pkt", "conc_cpu_us_per_pkt"):
        assert is_number(r[key]), key
    assert r["negotiated"] == ["AES-128/HMAC-SHA1-96"]
    # issue 16: each data-plane worker's packets and CPU (the tunnel lives in one of them)
    assert [w["index"] for w in r["workers"]] == [0, 1], r["workers"]
    assert sum(w["packets"] for w in r["workers"]) > 0
    assert all(is_number(w["cpu_s"]) for w in r["workers"])


@pytest.mark.netns
def test_handshake_smoke(lab_prefix: str, tmp_path: Path) -> None:
    require_tools("/usr/lib/ipsec/charon", "swanctl")
    doc = run_bench("handshake", lab_prefix, tmp_path)
    assert {r["concentrator"] for r in doc["results"]} == {"vpnhub", "strongswan"}
    for r in doc["results"]:
        assert r["runs_ok"] == 1, r
        for key in ("tunnels_per_s", "setup_p50_ms", "setup_p99_ms", "conc_cpu_ms_per_tunnel",
                    "conc_loop_cpu_ms_per_tunnel"):
            assert is_number(r[key]), (r["concentrator"], key)
        # the loop's thread is one of the concentrator's threads (issue 13); the
        # kernel rounds a thread's and the process's times apart, to a tick each
        # (10 ms: a few ms per tunnel over 20 tunnels)
        n = r["runs_detail"][0]["established"]
        loop_ms, all_ms = r["conc_loop_cpu_ms_per_tunnel"] * n, r["conc_cpu_ms_per_tunnel"] * n
        assert 0 <= loop_ms <= all_ms + 20, r
        # the kernel's UDP counters in both namespaces, per run and summed
        for udp in (r["udp"], r["runs_detail"][0]["udp"]):
            assert set(udp) == {"conc", "loadgen"}, udp
            for side in udp.values():
                assert set(side) == {"InDatagrams", "RcvbufErrors", "SndbufErrors",
                                     "InErrors"}, side
                assert all(isinstance(v, int) and v >= 0 for v in side.values()), side
            # 20 tunnels: at least their 6 IKE messages each reached the concentrator
            assert udp["conc"]["InDatagrams"] >= 20 * 6 and udp["loadgen"]["InDatagrams"] > 0
        # where a lost message would show: our clients' retransmissions, the drops
        assert isinstance(r["runs_detail"][0]["loadgen_retransmissions"], int), r
        assert isinstance(r["runs_detail"][0]["conc_drops"], dict), r
        # vpnhub's DH pool was full when the clock started (issue 13); 20 tunnels
        # cannot outlast it, so there is no rate after it
        one = r["runs_detail"][0]
        if r["concentrator"] == "vpnhub":
            before = one["dh_pool_before"]
            assert before["ready"] == before["size"] > 0, before
            assert one["dh_pool_after"]["taken"] >= before["taken"], one
            assert is_number(one["loop_delay_before_ms"]), one
            # the collector's pauses during the set-up, by generation (GcWatch)
            gcs = one["conc_gc_ms"]
            assert {"gen0", "gen1", "gen2"} <= set(gcs), gcs
            assert all(is_number(v) and v >= 0 for v in gcs.values()), gcs
        else:
            assert one["dh_pool_before"] is None
            assert one["conc_gc_ms"] is None


@pytest.mark.netns
def test_cluster_handshake_smoke(lab_prefix: str, tmp_path: Path) -> None:
    """bench/cluster_handshake.py (issue 17): a member alone and a cluster of 2 behind the
    virtual address, 10 tunnels each; every session in the directory with its member."""
    from vpnhub.lab import cluster

    require_tools("keepalived", "setpriv", "unshare", str(cluster.PG_BIN / "postgres"),
                  str(cluster.PG_BIN / "initdb"))
    doc = run_bench("cluster_handshake", lab_prefix, tmp_path)
    assert doc["members"] == 2 and len(doc["setups"]) == 2
    for setup, s in doc["summary"].items():
        assert s["runs_ok"] == 1, (setup, doc["runs"])
        for key in ("tunnels_per_s", "setup_p99_ms", "cpu_ms_per_tunnel",
                    "postgres_cpu_ms_per_tunnel"):
            assert is_number(s[key]["median"]), (setup, key)
    for r in doc["runs"]:
        assert sum(r["spread"].values()) == r["established"] == 10, r
        assert r["pg_writes"]["commits"] > 0, r
        if r["setup"] == "cluster":  # every client came to the virtual address
            assert sum(r["redirects_master"].values()) >= 10, r
    (ratio,) = next(iter(doc["ratios"].values()))
    assert is_number(ratio)


def test_handshake_rate_after_the_dh_pool_and_its_level() -> None:
    """bench/handshake.py's sustained rate (issue 13): the completions after the pool's
    ready pairs and the first wave, without the last wave (nothing starts any more);
    none when the run did not outlast the pool by 3 waves. The pool's level per group."""
    from handshake import _pool_ready, pool_level, rate_after

    steady = [i / 100 for i in range(2000)] + [20 + i / 1000 for i in range(128)]
    assert rate_after(steady, 1000 + 128, 128) == pytest.approx(100.0)
    assert rate_after(steady[:600], 256 + 128, 128) is None
    stats = {"dh_pool": {"ready": 5, "size": 8, "full": False, "taken": 3, "missed": 1,
                         "generated": 8, "groups": {"2": {"ready": 4, "size": 4},
                                                    "14": {"ready": 1, "size": 4}}}}
    level = pool_level(stats)
    assert level is not None and (level["ready"], level["taken"], level["missed"]) == (5, 3, 1)
    assert _pool_ready(level, 14) == 1 and _pool_ready(level, 19) == 0
    assert pool_level({"dh_pool": None}) is None and _pool_ready(None, 14) == 0


def test_cpu_meter_measures_one_thread_apart_from_its_process() -> None:
    """bench/handshake.py's `loop ms`: the CPU of a process's main thread, apart
    from a second thread that burns CPU meanwhile (as the DH thread does)."""
    import threading
    import time

    from common import CpuMeter

    me = os.getpid()
    meter = CpuMeter({"all": [me], "main": [(me, me)]}).start()
    end = time.monotonic() + 0.3

    def burn() -> None:
        x = 0
        while time.monotonic() < end:
            x += 1

    t = threading.Thread(target=burn)
    t.start()
    t.join()  # the main thread sleeps in join: (almost) no CPU of its own
    meter.stop()
    assert meter.seconds["all"] >= 0.2, meter.seconds
    assert meter.seconds["main"] < meter.seconds["all"] / 2, meter.seconds


def test_handshake_reads_the_kernels_udp_counters() -> None:
    """bench/handshake.py's parser of /proc/net/snmp, on this machine's and on a
    known text (the counters the deltas are made of)."""
    from handshake import UDP_COUNTERS, parse_udp_snmp, udp_delta, udp_sum

    here = parse_udp_snmp(Path("/proc/net/snmp").read_text())
    assert set(here) == set(UDP_COUNTERS) and all(v >= 0 for v in here.values())
    text = ("Ip: Forwarding DefaultTTL\nIp: 1 64\n"
            "Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors"
            " InCsumErrors IgnoredMulti MemErrors\nUdp: 900 3 70 800 66 2 0 0 0\n"
            "UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors"
            " InCsumErrors IgnoredMulti MemErrors\nUdpLite: 1 1 1 1 1 1 1 1 1\n")
    after = parse_udp_snmp(text)
    assert after == {"InDatagrams": 900, "RcvbufErrors": 66, "SndbufErrors": 2,
                     "InErrors": 70}
    zero = dict.fromkeys(UDP_COUNTERS, 0)
    delta = udp_delta({"conc": zero}, {"conc": after})
    assert delta == {"conc": after}
    assert udp_sum([delta, delta])["conc"]["RcvbufErrors"] == 132


def test_one_round_records_an_error_and_always_stops_client_then_concentrator() -> None:
    """bench/common.py one_round, the round of latency (both modes) and scale: a
    failing round is recorded and the next runs; the client stops before the
    concentrator, a client stopped early is not stopped twice."""
    from common import one_round

    stopped: list[str] = []
    ok: dict[str, Any] = {}
    with one_round(ok, "round 1", stop_conc=lambda: stopped.append("conc")) as rnd:
        rnd.stop_client = lambda: stopped.append("client")
        ok["figure"] = 1.0
    assert ok == {"figure": 1.0} and stopped == ["client", "conc"]
    stopped.clear()
    bad: dict[str, Any] = {}
    with one_round(bad, "round 2", stop_conc=lambda: stopped.append("conc")) as rnd:
        rnd.stop_client = lambda: stopped.append("client")
        rnd.stop_client()
        rnd.stop_client = None  # stopped early, as between latency's connects
        raise TimeoutError("no tunnel within 30 s")
    assert bad == {"error": "TimeoutError: no tunnel within 30 s"}
    assert stopped == ["client", "conc"]


def test_handshake_reads_the_pats_conntrack_drops_and_the_concentrators_drops() -> None:
    """The other places a lost IKE message is counted: the PAT's conntrack (one hex
    row per CPU) and what moved in vpnhub's admin `stats` during a run."""
    from handshake import conc_drops, parse_conntrack_stat

    text = ("entries clashres found new invalid ignore delete chainlength insert"
            " insert_failed drop early_drop\n"
            "0000000a 00000000 00000000 00000000 00000002 00000000 00000000 00000000"
            " 00000000 00000010 00000001 00000000\n"
            "0000000a 00000000 00000000 00000000 00000001 00000000 00000000 00000000"
            " 00000000 00000001 00000001 00000000\n")
    assert parse_conntrack_stat(text) == {"insert_failed": 17, "drop": 2, "early_drop": 0,
                                          "invalid": 3}
    before = {"endpoint_drops": {"unknown_cookie": 2}, "sas": 5,
              "ike_send": {"dropped": 0, "queued": 1}, "half_open_over_source_cap": 0}
    after = {"endpoint_drops": {"unknown_cookie": 5, "recycled_per_source": 1}, "sas": 9,
             "ike_send": {"dropped": 0, "queued": 1}, "half_open_over_source_cap": 4}
    assert conc_drops(before, after) == {
        "endpoint_drops": {"unknown_cookie": 3, "recycled_per_source": 1},
        "half_open_over_source_cap": 4}


@pytest.mark.netns
def test_scale_smoke(lab_prefix: str, tmp_path: Path) -> None:
    doc = run_bench("scale", lab_prefix, tmp_path)
    assert "error" not in doc, doc.get("error")
    assert doc["setup"]["established"] == doc["sessions"]
    for key in ("kib_per_session", "conc_cpu_ms_per_tunnel"):
        assert is_number(doc["setup"][key]), key
    assert is_number(doc["idle"]["conc_core_pct"])
    assert is_number(doc["traffic"]["conc_core_pct"])
    assert doc["traffic"]["pings_tx"] > 0 and is_number(doc["traffic"]["pings_rx"])
    assert is_number(doc["listing"]["cli_s"]) and is_number(doc["listing"]["admin_socket_s"])
    assert doc["dpd_acks"] > 0 and doc["keepalives_tx"] > 0


@pytest.mark.netns
def test_latency_smoke(lab_prefix: str, tmp_path: Path) -> None:
    doc = run_bench("latency", lab_prefix, tmp_path)
    assert is_number(doc["direct"]["rtt_p50_ms"])
    (r,) = doc["results"]
    for key in ("rtt_p50_ms", "rtt_p99_ms", "connect_p50_ms"):
        assert is_number(r[key]), key



@pytest.mark.netns
def test_latency_under_load_smoke(lab_prefix: str, tmp_path: Path) -> None:
    """bench/latency.py --under-load --smoke (issue 16): pings idle and during an
    upload in the same vpnc tunnel to a 2-worker vpnhub; every figure comes out."""
    require_tools("iperf3", "vpnc")
    doc = run_bench("latency", lab_prefix, tmp_path, "--under-load")
    (r,) = doc["results"]
    assert (r["workers"], r["moderation_us"]) == (2, 200)
    assert r["under_upload"]["received"] > 0 and r["idle"]["received"] > 0
    for key in ("rtt_p50_ms", "rtt_p99_ms", "mbit_s", "conc_cpu_s_per_gb"):
        assert is_number(r["under_upload"][key]), key
    (s,) = doc["summary"]
    assert is_number(s["load_p99_ms"]["median"])


@pytest.mark.netns
def test_latency_under_load_two_tunnels_smoke(lab_prefix: str, tmp_path: Path) -> None:
    """--under-load --tunnels 2: the pings in c1's tunnel while c1 and c2 each upload
    through their own vpnc tunnel; both uploads moved data."""
    require_tools("iperf3", "vpnc")
    doc = run_bench("latency", lab_prefix, tmp_path, "--under-load", "--tunnels", "2")
    (r,) = doc["results"]
    assert "error" not in r, r["error"]
    assert (r["workers"], r["tunnels"]) == (2, 2)
    u = r["under_upload"]
    assert u["received"] > 0 and is_number(u["rtt_p99_ms"])
    assert len(u["mbit_s_per_tunnel"]) == 2 and all(m > 0 for m in u["mbit_s_per_tunnel"])
    assert u["mbit_s"] == pytest.approx(sum(u["mbit_s_per_tunnel"]))
    (s,) = doc["summary"]
    assert s["tunnels"] == 2 and is_number(s["load_p99_ms"]["median"])


@pytest.mark.netns
def test_compare_smoke(lab_prefix: str, tmp_path: Path) -> None:
    """bench/compare.py --smoke: HEAD against itself, 1 run; every figure comes out
    for both commits (vpnhub, strongSwan and their ratio), and the worktrees go."""
    require_tools("iperf3", "vpnc", "/usr/lib/ipsec/charon", "swanctl")
    out = tmp_path / "compare"
    cp = subprocess.run(
        [sys.executable, str(BENCH / "compare.py"), "--smoke", "--prefix", lab_prefix,
         "--out", str(out), "--markdown", str(tmp_path / "summary.md")],
        cwd=REPO, capture_output=True, text=True, timeout=900, check=False)
    assert cp.returncode == 0, f"compare --smoke exit {cp.returncode}:\n{cp.stdout[-3000:]}" \
                               f"\n{cp.stderr[-3000:]}"
    doc = json.loads((out / "summary.json").read_text())
    keys = [f["key"] for f in doc["figures"]]
    assert keys == ["throughput_mbit_s", "throughput_conc_cpu_s_per_gb",
                    "handshake_tunnels_per_s", "handshake_conc_cpu_ms_per_tunnel"]
    for f in doc["figures"]:
        for side in ("before", "after"):
            for what in ("vpnhub", "strongswan", "ratio"):
                s = f[side][what]
                assert (s["n"], s["of"]) == (1, 1), (f["key"], side, what)
                assert all(is_number(s[k]) for k in ("median", "min", "max")), (f["key"], side)
        assert is_number(f["change_pct"]["ratio"]), f["key"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                          text=True, check=True).stdout.strip()
    assert {s["commit"] for s in doc["sides"].values()} == {head}
    # each side's vpnhub is its own worktree's, and the worktrees are gone
    trees = [Path(s["tree"]) for s in doc["sides"].values()]
    for s, tree in zip(doc["sides"].values(), trees, strict=True):
        assert Path(s["vpnhub_imported_from"]).is_relative_to(tree)
        assert not tree.exists()
    listed = subprocess.run(["git", "worktree", "list"], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout
    assert not any(str(t) in listed for t in trees)
    # 2 runs per commit (throughput, handshake), alternating, each command shown
    assert [(r["bench"], r["side"]) for r in doc["records"]] == [
        ("throughput", "before"), ("throughput", "after"),
        ("handshake", "before"), ("handshake", "after")]
    assert sum("bench/throughput.py" in c for c in doc["commands"]) == 2
    assert sum("bench/handshake.py" in c for c in doc["commands"]) == 2
    md = (tmp_path / "summary.md").read_text()
    assert md == (out / "summary.md").read_text()
    for label in ("throughput, vpnc client", "handshakes, DH group 14",
                  "ratio vpnhub/strongSwan"):
        assert label in md, label


# ------------------------------------------------------------------ without the lab
def test_report_from_results(tmp_path: Path) -> None:
    """bench/report.py turns result files into the Markdown table (no lab needed)."""
    from report import build

    d = tmp_path / "2000-01-01"
    d.mkdir()
    run = {"mbit_s": 200.0, "pkt_s": 20000.0, "conc_cpu_s_per_gb": 15.0,
           "client_cpu_s_per_gb": 16.0, "conc_sys_share": 0.6, "machine_busy": 1.0,
           "runs_ok": 1, "runs": 1, "suite": "aes128-sha1", "suite_label": "AES-128/SHA1",
           "tunnels": 1, "negotiated": ["AES-128/HMAC-SHA1-96"]}
    tp = {"bench": "throughput", "seconds": 10, "results": [
        {**run, "client": "vpnc", "concentrator": "vpnhub"},
        {**run, "client": "vpnc", "concentrator": "strongswan", "mbit_s": 150.0,
         "conc_cpu_s_per_gb": 30.0}]}
    (d / "throughput.json").write_text(json.dumps(tp))
    text = build(d, tmp_path / "2000-01-01.md", "test")
    assert "| concentrator CPU/GB, vpnc, aes128-sha1 | 15.0 vs 30.0 CPU s/GB = 0.50x" in text
    assert "vpnc → vpnhub" in text


def test_loadgen_packets_and_users() -> None:
    from vpnhub.tools.loadgen import _checksum, icmp_echo, merge, parse_users

    pkt = icmp_echo(bytes([10, 40, 0, 1]), bytes([192, 168, 2, 10]), 7, 1, b"x" * 16)
    assert _checksum(pkt[:20]) == 0 and _checksum(pkt[20:]) == 0  # both checksums valid
    assert parse_users("u{n}:p{n}", 2) == [("u1", "p1"), ("u2", "p2")]
    assert parse_users("a:b,c:d", 0) == [("a", "b"), ("c", "d")]
    part = {"setup_times": [0.1, 0.2], "rtts_ms": [], "counters": {"established": 2,
            "failed": 0, "errors": {"x": 1}}, "first_start": 10.0, "last_done": 11.0,
            "alive_at_end": 2, "cpu": {"setup": 0.5}, "config": {"tunnels": 2}}
    m = merge([part, part])
    assert m["established"] == 4 and m["counters"]["errors"] == {"x": 2}
    assert m["tunnels_per_s"] == 4.0


def test_fuzz_smoke(tmp_path: Path) -> None:
    """bench/fuzz.py runs each fuzz target under atheris and reports its figures."""
    doc = run_bench("fuzz", "", tmp_path, "--workdir", str(tmp_path / "work"))
    assert [r["target"] for r in doc["results"]] == ["codec", "endpoint", "dataplane", "client"]
    for r in doc["results"]:
        assert r["inputs"] == doc["runs_per_target"], r
        assert (r["crashes"], r["unhandled_exceptions"]) == (0, 0), r
        for key in ("inputs_per_s", "rss_mb_start", "rss_mb_middle", "rss_mb_end"):
            assert is_number(r[key]), (r["target"], key)


def test_fuzz_plain_memory_smoke(tmp_path: Path) -> None:
    """bench/fuzz.py --plain: the harnesses without libFuzzer, RSS along the way."""
    doc = run_bench("fuzz", "", tmp_path, "--targets", "dataplane,codec", "--plain", "60")
    for r in doc["results"]:
        assert r["plain_inputs"] == 60
        assert [i for i, _ in r["rss_kib"]] == [0, 10, 20, 30, 40, 50, 60]
        assert all(is_number(kib) for _, kib in r["rss_kib"])


def test_dpd_cost_smoke(tmp_path: Path) -> None:
    """bench/dpd_cost.py: what an R-U-THERE, a NAT keepalive and a second of idle timers
    cost the concentrator (no root: the core rig and an in-memory TUN)."""
    doc = run_bench("dpd_cost", "", tmp_path)
    assert (doc["sessions"], doc["runs"]) == (50, 1)
    for key in ("rut_us", "keepalive_us", "timer_us_per_s", "idle_cpu_pct_10k"):
        for stat in ("median", "min", "max"):
            assert is_number(doc["results"][key][stat]), (key, stat)


def test_wakeup_cost_smoke(tmp_path: Path) -> None:
    """bench/wakeup_cost.py: a data-plane wake-up's fixed cost and cost per packet (no
    root: an in-memory TUN and loopback UDP); every ESP datagram got through."""
    doc = run_bench("wakeup_cost", "", tmp_path)
    for case in ("inbound_only", "with_an_ack"):
        for key in ("fixed_us_per_wakeup", "us_per_packet", "k1_us", "k32_us"):
            assert is_number(doc[case][key]), (case, key)
        assert doc[case]["drops"] == {}


def test_dhpool_fill_smoke(tmp_path: Path) -> None:
    """bench/dhpool_fill.py (issue 13): the DH pool's fill time and memory, and the loop's
    lateness while the worker thread fills it (no root: in process)."""
    doc = run_bench("dhpool_fill", "", tmp_path)
    (r,) = doc["results"]
    assert (r["group"], r["size"]) == (19, 64) and is_number(r["fill_s"])
    for window in ("idle_before", "filling", "idle_after"):
        assert r[window]["n"] > 0 and is_number(r[window]["p99_ms"]), window


def test_handshake_cpu_smoke(tmp_path: Path) -> None:
    """bench/handshake_cpu.py: the concentrator core's CPU per full handshake (AM, XAUTH,
    Mode Config, QM) in process, the DH apart (no root: the core rig)."""
    doc = run_bench("handshake_cpu", "", tmp_path)
    assert (doc["tunnels"], doc["runs"], doc["group"]) == (20, 1, 14)
    for key in ("conc_ms", "dh_ms", "other_ms"):
        for stat in ("median", "min", "max"):
            assert is_number(doc["results"][key][stat]), (key, stat)
    assert doc["results"]["dh_per_tunnel"]["median"] > 0
    assert doc["vpnhub"] == str(REPO / "vpnhub")  # this tree's code, not the venv's checkout


def test_shutdown_smoke(tmp_path: Path) -> None:
    """bench/shutdown.py: the core's shutdown (every client told) and the data plane's
    removal of every SA, timed (no root: the core rig and an in-memory TUN)."""
    doc = run_bench("shutdown", "", tmp_path)
    (r,) = doc["results"]
    assert (r["sessions"], r["runs"]) == (50, 1)
    for step in ("core_shutdown_s", "dataplane_remove_s"):
        for key in ("median", "min", "max"):
            assert is_number(r[step][key]), (step, key)


def test_manager_cost_smoke(tmp_path: Path) -> None:
    """bench/manager_cost.py: the manager's and the admin socket's bookkeeping, timed
    in-process (no root), and the bytes per session of a full throughput history."""
    doc = run_bench("manager_cost", "", tmp_path)
    assert (doc["sessions"], doc["runs"]) == (200, 1)
    for name in ("sample()", "warnings()", "summary()", "/metrics render",
                 "admin sessions, one page (1000)",
                 "data plane answer, compact counters (GetCounters)"):
        for what in ("per_call_ms", "longest_step_ms"):
            for key in ("median", "min", "max"):
                assert is_number(doc["cases"][name][what][key]), (name, what, key)
    assert is_number(doc["history_bytes_per_session"]) and doc["history_bytes_per_session"] > 0


def test_export_smoke(tmp_path: Path) -> None:
    """bench/export.py: both formats of GET /api/v1/sessions/export downloaded in-process,
    with the loop's longest step meanwhile (no root: loopback only)."""
    doc = run_bench("export", "", tmp_path)
    assert (doc["sessions"], doc["runs"]) == (500, 1)
    assert doc["formats"]["jsonl"]["lines"] == 500
    assert doc["formats"]["csv"]["lines"] == 501  # and the header
    for r in doc["formats"].values():
        assert r["bytes"] > 0
        for step in ("total_ms", "longest_step_ms"):
            for key in ("median", "min", "max"):
                assert is_number(r[step][key]), (step, key)


def test_status_ring_smoke(tmp_path: Path) -> None:
    """bench/status_ring.py: the Status page's ring (issue 15), a sample, the hour's JSON
    and its memory, in-process (no root)."""
    doc = run_bench("status_ring", "", tmp_path)
    assert (doc["sessions"], doc["runs"], doc["keep"]) == (200, 1, 360)
    for name in ("sample_us", "history_ms"):
        for key in ("median", "min", "max"):
            assert is_number(doc[name][key]) and doc[name][key] > 0, (name, key)
    assert 0 < doc["history_bytes_quiet"] < doc["history_bytes_every_reason_dropping"]
    assert doc["memory_bytes"] > 8 * 360 * 8  # at least the times and 7 series
