"""Turn the benchmarks' JSON results into the Markdown results file and PNG charts.

    .venv/bin/python bench/report.py DIR [--out FILE.md] [--title TITLE]

DIR holds ``throughput.json``, ``handshake.json``, ``scale.json`` and
``latency.json`` (any may be missing) and ``profiles/*.txt``. The charts are
written into DIR; the Markdown file (default: DIR with ``.md``) links them
relatively. Targets come from issue 7; every missed target gets the size of
the gap, where the time goes (the profiles) and what would close it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

PAIR_LABEL = {
    ("vpnc", "strongswan"): "vpnc → strongSwan",
    ("vpnc", "vpnhub"): "vpnc → vpnhub",
    ("strongswan", "strongswan"): "strongSwan → strongSwan",
    ("vpnhub", "vpnhub"): "vpnhub → vpnhub",
    ("vpnhub", "strongswan"): "vpnhub → strongSwan",
    ("strongswan", "vpnhub"): "strongSwan → vpnhub",
}


def load(d: Path, name: str) -> dict[str, Any] | None:
    p = d / f"{name}.json"
    try:
        return dict(json.loads(p.read_text()))
    except (OSError, ValueError):
        return None


def f(x: Any, p: int = 0, unit: str = "") -> str:
    if x is None:
        return "-"
    if isinstance(x, float | int):
        return f"{x:,.{p}f}{unit}"
    return str(x)


def pair(r: dict[str, Any]) -> str:
    return PAIR_LABEL.get((r["client"], r["concentrator"]), f"{r['client']} → {r['concentrator']}")


# ----------------------------------------------------------------------------- targets
class Target:
    def __init__(self, name: str, measured: str, goal: str, met: bool | None, gap: str = ""):
        self.name, self.measured, self.goal, self.met, self.gap = name, measured, goal, met, gap

    def row(self) -> str:
        verdict = {True: "**met**", False: "**missed**", None: "not measured"}[self.met]
        return f"| {self.name} | {self.measured} | {self.goal} | {verdict}{self.gap} |"


def short(value: float, goal: float) -> str:
    """How far below a goal: '12% short' (or '1.9x short' when it is far)."""
    if value <= 0:
        return "nothing measured"
    r = goal / value
    return f"{(r - 1) * 100:.1f}% short" if r < 1.5 else f"{r:.1f}x short"


def over(value: float, limit: float) -> str:
    r = value / limit
    return f"{(r - 1) * 100:.1f}% over" if r < 1.5 else f"{r:.1f}x the limit"


def tp_find(tp: dict[str, Any] | None, client: str, conc: str, suite: str, n: int
            ) -> dict[str, Any] | None:
    if not tp:
        return None
    for r in tp["results"]:
        if (r["client"], r["concentrator"], r["suite"], r["tunnels"]) == (client, conc, suite, n) \
                and r.get("mbit_s") is not None:
            return r
    return None


def targets(tp: dict[str, Any] | None, hs: dict[str, Any] | None, sc: dict[str, Any] | None,
            lat: dict[str, Any] | None) -> list[Target]:
    out: list[Target] = []
    for suite in ("aes128-sha1", "3des-md5"):
        v, s = tp_find(tp, "vpnc", "vpnhub", suite, 1), tp_find(tp, "vpnc", "strongswan", suite, 1)
        if v and s:
            ratio = v["conc_cpu_s_per_gb"] / s["conc_cpu_s_per_gb"]
            need = s["conc_cpu_s_per_gb"] / 3
            gap = "" if ratio <= 1 / 3 else (
                f": {v['conc_cpu_s_per_gb']:.1f} s/GB, needs ≤ {need:.1f} "
                f"({over(v['conc_cpu_s_per_gb'], need)})")
            out.append(Target(f"concentrator CPU/GB, vpnc, {suite}",
                              f"{v['conc_cpu_s_per_gb']:.1f} vs {s['conc_cpu_s_per_gb']:.1f}"
                              f" CPU s/GB = {ratio:.2f}x", "≤ 0.33x strongSwan", ratio <= 1 / 3,
                              gap))
        else:
            out.append(Target(f"concentrator CPU/GB, vpnc, {suite}", "-", "≤ 0.33x strongSwan",
                              None))
    for n in (1, 2):
        v, s = tp_find(tp, "vpnc", "vpnhub", "aes128-sha1", n), \
            tp_find(tp, "vpnc", "strongswan", "aes128-sha1", n)
        if v and s:
            ratio = v["mbit_s"] / s["mbit_s"]
            out.append(Target(f"throughput with vpnc, AES-128/SHA1, {n} tunnel(s)",
                              f"{v['mbit_s']:.0f} vs {s['mbit_s']:.0f} Mbit/s = {ratio:.2f}x",
                              "≥ 1.3x strongSwan", ratio >= 1.3,
                              "" if ratio >= 1.3 else f": {short(ratio, 1.3)}"))
    for suite in ("aes128-sha1", "aes256-sha256", "aes256gcm16"):
        v, s = tp_find(tp, "vpnhub", "vpnhub", suite, 1), \
            tp_find(tp, "strongswan", "strongswan", suite, 1)
        if v and s:
            ratio = v["mbit_s"] / s["mbit_s"]
            out.append(Target(f"vpnhub↔vpnhub vs strongSwan↔strongSwan, {suite}",
                              f"{v['mbit_s']:.0f} vs {s['mbit_s']:.0f} Mbit/s = {ratio:.2f}x",
                              "≥ 2x", ratio >= 2.0,
                              "" if ratio >= 2 else f": {short(ratio, 2.0)}"))
    if hs:
        by = {(r["concentrator"], r["dh_group"]): r for r in hs["results"]
              if r.get("tunnels_per_s")}
        v, s = by.get(("vpnhub", 14)), by.get(("strongswan", 14))
        if v:
            cap = v.get("conc_capacity_per_core")
            out.append(Target("handshakes/s, DH group 14",
                              f"{v['tunnels_per_s']:.0f}/s measured (load generator on the same"
                              f" 2 cores); capacity {f(cap)}/s per core", "≥ 500/s",
                              v["tunnels_per_s"] >= 500,
                              "" if v["tunnels_per_s"] >= 500 else
                              f": {short(v['tunnels_per_s'], 500)}"))
        if v and s:
            ratio = v["tunnels_per_s"] / s["tunnels_per_s"]
            out.append(Target("handshakes/s vs strongSwan, group 14",
                              f"{v['tunnels_per_s']:.0f} vs {s['tunnels_per_s']:.0f}/s ="
                              f" {ratio:.2f}x", "≥ 1x", ratio >= 0.999,
                              "" if ratio >= 0.999 else f": {short(ratio, 1.0)}"))
    if lat:
        by = {(r["client"], r["concentrator"]): r for r in lat["results"] if "error" not in r}
        v, s = by.get(("vpnc", "vpnhub")), by.get(("vpnc", "strongswan"))
        if v and s:
            out.append(Target("vpnc start → first packet through the tunnel",
                              f"{v['connect_p50_ms']:.0f} vs {s['connect_p50_ms']:.0f} ms",
                              "≤ strongSwan (5% for noise)",
                              v["connect_p50_ms"] <= s["connect_p50_ms"] * 1.05,
                              "" if v["connect_p50_ms"] <= s["connect_p50_ms"] * 1.05 else
                              f": +{v['connect_p50_ms'] - s['connect_p50_ms']:.0f} ms"))
    if sc and sc.get("idle"):
        pct = sc["idle"]["conc_core_pct"]
        out.append(Target(f"{sc['setup']['established']:,} sessions idle: CPU",
                          f"{pct:.1f}% of one core", "< 10%", pct < 10,
                          "" if pct < 10 else f": {over(pct, 10)}"))
    if sc and sc.get("setup"):
        # steady state (end of the hold, DPD running, histories full) if measured
        kib = sc.get("memory_end_of_hold_kib_per_session") or \
            (sc.get("idle") or {}).get("kib_per_session") or sc["setup"]["kib_per_session"]
        out.append(Target(f"{sc['setup']['established']:,} sessions: memory",
                          f"{kib:.1f} KiB per session", "< 32 KiB", kib < 32,
                          "" if kib < 32 else f": {over(kib, 32)}"))
    return out


# ----------------------------------------------------------------------------- tables
def throughput_section(tp: dict[str, Any], d: Path, rel: str) -> list[str]:
    lines = ["## 1. Throughput\n",
             f"iperf3 TCP upload from the client(s) behind the PAT to the LAN host, "
             f"{tp['seconds']:g} s per run, median of the runs shown (1 tunnel: client c1;"
             " 2 tunnels: c1 and c2 at once, sum). CPU s/GB: utime+stime of the"
             " concentrator process (all threads) or of the client process(es) over the run,"
             " per GB of TCP payload; *sys*: the kernel's share of the concentrator's CPU;"
             " pkt/s: packets through the concentrator's tunnel interface, both directions.\n",
             "| suite | client → concentrator | tunnels | Mbit/s | pkt/s | concentrator CPU s/GB"
             " | client CPU s/GB | conc. sys | machine busy | runs | negotiated |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in tp["results"]:
        if r.get("mbit_s") is None:
            lines.append(f"| {r['suite']} | {pair(r)} | {r['tunnels']} | error: "
                         f"{str(r.get('error', ''))[:80]} | | | | | | | |")
            continue
        lines.append(
            f"| {r['suite_label']} | {pair(r)} | {r['tunnels']} | {f(r['mbit_s'])} |"
            f" {f(r['pkt_s'])} | {f(r['conc_cpu_s_per_gb'], 1)} |"
            f" {f(r['client_cpu_s_per_gb'], 1)} | {f((r.get('conc_sys_share') or 0) * 100)}% |"
            f" {f((r.get('machine_busy') or 0) * 100)}% | {r['runs_ok']}/{r['runs']} |"
            f" {', '.join(r.get('negotiated', []))} |")
    if tp.get("ratios"):
        lines += ["", "Ratios vpnhub / strongSwan (same client kind; the vpnhub client is"
                  " compared with the strongSwan client):", "",
                  "| suite | tunnels | pair | Mbit/s | concentrator CPU s/GB |",
                  "|---|---:|---|---:|---:|"]
        for q in tp["ratios"]:
            lines.append(f"| {q['suite']} | {q['tunnels']} | {q['pair']} |"
                         f" {f(q['mbit_ratio'], 2, 'x')} |"
                         f" {f(q['conc_cpu_per_gb_ratio'], 2, 'x')} |")
    for png in ("throughput.png", "cpu_per_gb.png"):
        if (d / png).exists():
            lines += ["", f"![{png}]({rel}/{png})"]
    return lines


def handshake_section(hs: dict[str, Any], d: Path, rel: str) -> list[str]:
    lines = ["## 2. Handshake rate\n",
             f"`python -m vpnhub.tools.loadgen` in the client namespace: {hs['tunnels']} tunnels"
             f" per run (Aggressive Mode + XAUTH + Mode Config + Quick Mode, NAT-T), at most"
             f" {hs['concurrency']} in flight, each from its own UDP port through the PAT;"
             f" median of {hs['runs']} runs. The load generator shares the 2 cores with the"
             " concentrator: *capacity* = tunnels one core of the concentrator could set up"
             " per second (1000 / CPU ms per tunnel).\n",
             "| concentrator | DH group | tunnels/s | p50 set-up | p99 set-up | concentrator"
             " CPU ms/tunnel | capacity per core | load generator CPU ms/tunnel | failed | runs |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in hs["results"]:
        if "error" in r:
            lines.append(f"| {r['concentrator']} | {r['dh_group']} | error: "
                         f"{r['error'][:80]} | | | | | | | |")
            continue
        lines.append(f"| {r['concentrator']} | {r['dh_group']} | {f(r['tunnels_per_s'])} |"
                     f" {f(r['setup_p50_ms'], 0, ' ms')} | {f(r['setup_p99_ms'], 0, ' ms')} |"
                     f" {f(r['conc_cpu_ms_per_tunnel'], 2)} |"
                     f" {f(r['conc_capacity_per_core'])}/s |"
                     f" {f(r['loadgen_cpu_ms_per_tunnel'], 2)} | {r.get('failed', 0)} |"
                     f" {r['runs_ok']}/{r['runs']} |")
    if (d / "handshake.png").exists():
        lines += ["", f"![handshake.png]({rel}/handshake.png)"]
    return lines


def scale_section(sc: dict[str, Any], d: Path, rel: str) -> list[str]:
    st, idle, lst = sc.get("setup", {}), sc.get("idle", {}), sc.get("listing", {})
    tr = sc.get("traffic", {})
    lines = ["## 3. Scale\n",
             f"{sc['sessions']:,} sessions set up by the load generator (one PAT address,"
             f" {sc['sessions']:,} ports) and held {sc['hold_s']:g} s: the clients send NAT"
             f" keepalives every {sc['keepalive_s']:g} s and DPD after {sc['dpd_s']:g} s of"
             " silence; the concentrator runs its own DPD. The last"
             f" {sc.get('traffic_hold_s', 0):g} s of the hold, {sc.get('traffic_sessions', 0):,}"
             " of them each send one ICMP echo per second through their ESP SA.\n",
             "| measurement | value |", "|---|---:|",
             f"| sessions established / failed | {f(st.get('established'))} /"
             f" {f(st.get('failed'))} |",
             f"| set-up time (all sessions) | {f(st.get('seconds'), 0, ' s')} |",
             "| concentrator CPU per set-up, average |"
             f" {f(st.get('conc_cpu_ms_per_tunnel'), 1, ' ms')} |",
             f"| RSS before / after set-up | {f(sc.get('baseline', {}).get('rss_mib'), 0)} /"
             f" {f(st.get('rss_mib'), 0)} MiB |",
             f"| memory per session, right after the set-up |"
             f" {f(st.get('kib_per_session'), 1, ' KiB')} |",
             f"| memory per session, end of the idle part |"
             f" {f(idle.get('kib_per_session'), 1, ' KiB')} |",
             f"| **memory per session, end of the hold** (steady state) |"
             f" **{f(sc.get('memory_end_of_hold_kib_per_session'), 1, ' KiB')}** |",
             "| RSS growth while idle (second half of the window; it stops once the"
             " manager's 5-minute per-session history is full) |"
             f" {f(idle.get('growth_kib_per_session_per_hour'), 1, ' KiB per session per hour')} |",
             f"| **CPU while idle** ({f(idle.get('window_s'), 0)} s window) |"
             f" **{f(idle.get('conc_core_pct'), 1)}% of one core** |",
             f"| RSS after the idle hold | {f(idle.get('rss_mib'), 0, ' MiB')} |",
             "| `vpnhub sessions --json` (wall, incl. Python start) |"
             f" {f(lst.get('cli_s'), 2, ' s')} |",
             f"| admin socket request alone | {f(lst.get('admin_socket_s'), 2, ' s')} |"]
    if "web_api_s" in lst:
        to = " (client gave up)" if lst.get("web_api_timeout") else ""
        lines.append(f"| web manager `GET /api/v1/sessions` | {f(lst['web_api_s'], 2, ' s')}"
                     f"{to} |")
    if "web_page_s" in lst:
        to = " (client gave up: still rendering)" if lst.get("web_page_timeout") else ""
        lines.append(f"| web manager `/sessions` page | {f(lst['web_page_s'], 2, ' s')}{to} |")
    if isinstance(lst.get("web_page"), str):
        lines.append(f"| web manager `/sessions` page | {lst['web_page']} |")
    if "web" in lst:
        lines.append(f"| web manager | {lst['web']} |")
    if lst.get("web_error"):
        lines.append(f"| web manager | {lst['web_error']} |")
    if tr:
        lines += [f"| CPU with {f(tr.get('sessions'))} sessions pinging"
                  f" ({f(tr.get('window_s'), 0)} s) | {f(tr.get('conc_core_pct'), 1)}% of one"
                  " core |",
                  f"| echo replies / requests | {f(tr.get('pings_rx'))} /"
                  f" {f(tr.get('pings_tx'))} |",
                  f"| echo RTT p50 / p99 | {f(tr.get('rtt_p50_ms'), 1)} /"
                  f" {f(tr.get('rtt_p99_ms'), 1)} ms |"]
    lines += [f"| sessions alive before / after the web listing |"
              f" {f(sc.get('alive_before_web'))} / {f(sc.get('alive_at_end'))} |",
              f"| DPD acks / NAT keepalives sent by the clients | {f(sc.get('dpd_acks'))} /"
              f" {f(sc.get('keepalives_tx'))} |",
              "| concentrator shutdown (SIGTERM: DELETE to every peer) |"
              + (" did not exit within 10 s: killed |" if sc.get("shutdown_killed") else
                 f" {f(sc.get('shutdown_s'), 1, ' s')} |")]
    if sc.get("error"):
        lines.append(f"| error | {sc['error']} |")
    if (d / "scale.png").exists():
        lines += ["", f"![scale.png]({rel}/scale.png)"]
    return lines


def latency_section(lat: dict[str, Any], d: Path, rel: str) -> list[str]:
    di = lat.get("direct", {})
    lines = ["## 4. Latency\n",
             f"`ping -c {lat['count']} -i {lat['interval_s']:g}` from the client behind the PAT"
             f" to the LAN host, {lat['suite']}; *first packet*: from starting the client to"
             " the first echo reply through the tunnel (median of the connects).\n",
             "| path | RTT p50 | RTT p99 | loss | first packet |", "|---|---:|---:|---:|---:|",
             f"| direct (no tunnel) | {f(di.get('rtt_p50_ms'), 3, ' ms')} |"
             f" {f(di.get('rtt_p99_ms'), 3, ' ms')} | {f(di.get('loss'))} | - |"]
    for r in lat["results"]:
        if "error" in r:
            lines.append(f"| {pair(r)} | error: {r['error'][:80]} | | | |")
            continue
        lines.append(f"| {pair(r)} | {f(r['rtt_p50_ms'], 3, ' ms')} |"
                     f" {f(r['rtt_p99_ms'], 3, ' ms')} | {r['loss']} |"
                     f" {f(r['connect_p50_ms'], 0, ' ms')} |")
    if (d / "latency.png").exists():
        lines += ["", f"![latency.png]({rel}/latency.png)"]
    return lines


# ----------------------------------------------------------------------------- profiles
def profile_share(summary: dict[str, Any] | None, *needles: str, kind: str = "self") -> float:
    """Sum of the shares of the entries of `kind` whose name contains any needle."""
    if not summary:
        return 0.0
    return sum(share for name, share in summary.get(kind, []) if any(n in name for n in needles))


def profiles_section(d: Path, rel: str) -> list[str]:
    pdir = d / "profiles"
    files = sorted(pdir.glob("*.txt")) if pdir.is_dir() else []
    files = [p for p in files if not p.name.endswith(".raw.txt")]
    if not files:
        return []
    lines = ["## Where the time goes: profiles of the vpnhub concentrator\n",
             "py-spy, 250 Hz, `--nonblocking`, idle threads not sampled, so the shares are of"
             " the CPU the process used. *self*: in the function itself (a C call such as"
             " `sendto`, `os.write` or `gmpy2.powmod` counts as its caller's self time);"
             f" raw stacks (flame graphs: `py-spy` raw format) in `{rel}/profiles/`.\n"]
    for p in files:
        text = p.read_text().strip().splitlines()
        body = [ln for ln in text if not ln.startswith("### ")]
        title = text[0][4:] if text and text[0].startswith("### ") else p.stem
        lines += [f"### {title}", "", "```", *body, "```", ""]
    return lines


# ----------------------------------------------------------------------------- analysis
def analysis(tp: dict[str, Any] | None, hs: dict[str, Any] | None, sc: dict[str, Any] | None,
             lat: dict[str, Any] | None) -> list[str]:
    """Why the missed targets are missed and what would close them, from the numbers."""
    out = ["## Gaps, causes, and what would close them\n"]
    v = tp_find(tp, "vpnc", "vpnhub", "aes128-sha1", 1)
    s = tp_find(tp, "vpnc", "strongswan", "aes128-sha1", 1)
    if v and s:
        ratio = v["conc_cpu_s_per_gb"] / s["conc_cpu_s_per_gb"]
        ksh = v.get("conc_sys_share") or 0.0
        kern = v["conc_cpu_s_per_gb"] * ksh
        user = v["conc_cpu_s_per_gb"] - kern
        prof = v.get("profile") if isinstance(v.get("profile"), dict) else None
        summ = prof.get("summary") if prof else None
        prof_text = ""
        if summ and summ.get("lines"):
            tun = profile_share(summ, "os.write(self._tun_fd", kind="lines")
            ep = profile_share(summ, "_epoll.poll", kind="lines")
            snd = profile_share(summ, ".send(", "sendto(", kind="lines")
            rcv = profile_share(summ, "recv(", "recvfrom(", kind="lines")
            rd = profile_share(summ, "read(fd", kind="lines")
            codec = profile_share(summ, "vpnhub/esp/", kind="by_file")
            prof_text = (
                f" The profile of the vpnc run puts {tun * 100:.0f}% of the concentrator's"
                f" samples on the TUN `os.write`, {ep * 100:.0f}% on `epoll.poll`,"
                f" {snd * 100:.0f}% on the UDP `sendto`, {rcv * 100:.0f}% on `recvfrom` and"
                f" {rd * 100:.0f}% on the TUN `read`: {(tun + ep + snd + rcv + rd) * 100:.0f}%"
                f" in five system calls per packet path, against {codec * 100:.0f}% in the ESP"
                " codec (AES-CBC, HMAC-SHA1, replay window) - the Python data plane is already"
                " syscall-bound, not crypto- or interpreter-bound.")
        out += [
            f"**Data plane CPU per GB** ({ratio:.2f}x strongSwan's; target 0.33x). Of the"
            f" concentrator's {v['conc_cpu_s_per_gb']:.1f} CPU s/GB, {ksh * 100:.0f}%"
            f" ({kern:.1f} s/GB) is kernel time and {user:.1f} s/GB user time.{prof_text}"
            " The kernel part"
            " is mostly the TUN write: forwarding the decrypted packet to the LAN host (routing,"
            " veth, and the receiver's TCP stack run in the writer's syscall), the same work"
            " charon's libipsec pays, plus one `recvfrom`/`sendto` per ESP packet and one"
            " `epoll_wait` per burst. The Python part (ESP codec, demux, counters) is what the"
            " DATAPLANE.md forwarder measured at 7-9 µs per packet. What would close it:"
            " (1) TUN offloads (`IFF_VNET_HDR` + `TUNSETOFFLOAD` TSO/USO): coalesce"
            " consecutive inbound TCP segments of one flow into one GSO write (one syscall and"
            " one trip through the forwarding path per ~45 segments; wireguard-go's TUN GRO"
            " roughly halved its CPU per byte), and read TSO super-packets on the way out;"
            " (2) UDP GRO on the 4500 socket (`UDP_GRO` sockopt + `recvmsg` cmsg segment"
            " size) so one `recvmsg` returns a train of ESP datagrams of one peer, and UDP GSO"
            " (`UDP_SEGMENT`) for bursts to one peer; (3) keep one `epoll_wait` per"
            " wake-up and drain every ready fd (already done), and move the data plane out of"
            " the IKE process (its own process per core, `IFF_MULTI_QUEUE` TUN +"
            " `SO_REUSEPORT`, as the data plane module documents) so IKE, the manager and the"
            " stats refresh never take the GIL from it. (1)+(2) are the ones that move CPU/GB:"
            " the kernel half shrinks by the batching factor, and the user half by the syscalls"
            " saved.", ""]
    vv = tp_find(tp, "vpnhub", "vpnhub", "aes128-sha1", 1)
    ss = tp_find(tp, "strongswan", "strongswan", "aes128-sha1", 1)
    if vv and ss:
        out += [
            f"**Throughput** (vpnhub↔vpnhub {vv['mbit_s'] / ss['mbit_s']:.2f}x strongSwan↔"
            "strongSwan; target 2x; with vpnc"
            + (f" {v['mbit_s'] / s['mbit_s']:.2f}x" if v and s else "") + ", target 1.3x)."
            f" Every run keeps both cores busy (machine busy"
            f" {(vv.get('machine_busy') or 0) * 100:.0f}%): client, concentrator, two iperf3"
            " and the kernel's forwarding share 2 cores, so Mbit/s is the inverse of the *sum*"
            " of everyone's CPU per byte (concentrator"
            f" {vv['conc_cpu_s_per_gb']:.1f} + client {vv['client_cpu_s_per_gb']:.1f} CPU s/GB"
            " for vpnhub↔vpnhub, plus iperf3 and the sender's and receiver's TCP stacks)."
            " Halving the concentrator's CPU/GB alone cannot double Mbit/s; 2x needs the"
            " client's data plane to get the same"
            " treatment (it is the same `Dataplane` code: the same changes apply), and then"
            " the iperf3/kernel TCP cost becomes the limit. On a machine with more cores than"
            " processes in the path the CPU/GB figures, not Mbit/s, are what carry over.", ""]
    if hs:
        by = {(r["concentrator"], r["dh_group"]): r for r in hs["results"]
              if r.get("tunnels_per_s")}
        h = by.get(("vpnhub", 14))
        prof = h.get("profile") if h else None
        summ = prof.get("summary") if isinstance(prof, dict) else None
        if h:
            dh = profile_share(summ, "dh.py", "fixedbase.py", kind="by_file")
            send = profile_share(summ, "send_ike", "_flush")
            dp = profile_share(summ, "vpnhub-dataplane", kind="threads")
            mgr = profile_share(summ, "manager/", "eventlog.py", kind="by_file")
            thr = profile_share(summ, "threading.py", "concurrent/futures/", kind="by_file")
            out += [
                f"**Handshake rate** ({h['tunnels_per_s']:.0f}/s with group 14; target 500/s)."
                f" The concentrator spends {h['conc_cpu_ms_per_tunnel']:.1f} CPU ms per tunnel,"
                " all of it on one core (the IKE engine runs in one asyncio thread; the data"
                f" plane thread only passes IKE on 4500 along), i.e. at most"
                f" ~{1000 / h['conc_cpu_ms_per_tunnel']:.0f} tunnels/s, and the load generator"
                f" needs {f(h['loadgen_cpu_ms_per_tunnel'], 1)} ms per tunnel on the same 2"
                " cores. 500/s needs ≤ 2 ms per tunnel on one core, or more cores."
                + (f" Profile: Diffie-Hellman {dh * 100:.0f}% (gmpy2: `powmod` for g^xy,"
                   f" crypto/fixedbase.py's table for g^x; 320-bit exponents), sending IKE"
                   f" (`sendto` through veth/bridge/PAT, in the"
                   f" sender's context) {send * 100:.0f}%, the data plane thread (it"
                   f" receives IKE on 4500 and hands it over) {dp * 100:.0f}%, thread"
                   f" hand-offs (`threading`, the XAUTH thread pool, futures) {thr * 100:.0f}%,"
                   f" event log + manager hooks {mgr * 100:.0f}%,"
                   " the rest"
                   " is the engine (ISAKMP encode/decode, PRF/HMAC, CBC) and asyncio."
                   if summ else "")
                + " What would close it: (1) IKE worker processes (one per core: SO_REUSEPORT"
                " on 500 and 4500 with a BPF program that hashes the initiator cookie, or a"
                " dispatcher passing messages by cookie) - linear in cores, needed anyway"
                " because the GIL caps one process at one core; (2) Diffie-Hellman"
                " precomputation: draw the responder's key pair from a pool filled in idle"
                " time (g^x is ~40% of the DH time with group 14) and compute g^xy off the"
                " event loop; (3) IKE on 4500 is handed from the data plane thread to asyncio one"
                " message at a time (`call_soon_threadsafe` + GIL hand-off): let the IKE"
                " process own a socket of its own for IKE (e.g. a BPF filter on the"
                " non-ESP marker with SO_REUSEPORT); (4) check plain-text XAUTH passwords"
                " inline and use the thread pool only for scrypt/PBKDF2 hashes.", ""]
    if sc and sc.get("idle"):
        prof = sc["idle"].get("profile")
        summ = prof.get("summary") if isinstance(prof, dict) else None
        snap = profile_share(summ, "Dataplane.snapshot", "Dataplane.stats_now", kind="inclusive")
        view = profile_share(summ, "manager/view.py", kind="by_file")
        refresh = profile_share(summ, "Concentrator._refresh_stats", kind="inclusive")
        timers = profile_share(summ, "IkeEndpoint.handle_timer", kind="inclusive")
        ike = profile_share(summ, "Concentrator._drain_inbox", "Concentrator._on_udp500",
                            kind="inclusive")
        poll = profile_share(summ, "_epoll.poll", "recv(", kind="lines")
        pct = sc["idle"]["conc_core_pct"]
        kib = sc.get("memory_end_of_hold_kib_per_session") or \
            sc["idle"].get("kib_per_session") or sc.get("setup", {}).get("kib_per_session")
        kib_setup = sc.get("setup", {}).get("kib_per_session")
        lst = sc.get("listing", {})
        parts = [(snap, "the data plane's statistics (`Dataplane.stats_now`, before issue 12"
                        " `Dataplane.snapshot`: an entry per SA, 2 SAs per session, for"
                        " every poll of the manager's 2 s sampler and the concentrator's"
                        " refresh)"),
                 (view, "the manager's per-session sampling (`ManagerView.sample`: sums each"
                        " session's SA counters)"),
                 (refresh, "the concentrator's own counter refresh"),
                 (timers, "IKE timers (`IkeEndpoint.handle_timer`)"),
                 (ike, "IKE messages (clients' DPD R-U-THERE, answered)"),
                 (poll, "the data plane's `epoll`/`recvfrom` (NAT keepalives: one per session"
                        " every 20 s)")]
        listed = "; ".join(f"{text} {share * 100:.0f}%" for share, text in parts if share >= 0.03)
        periodic = (snap + view + refresh) * pct
        out += [
            f"**Idle sessions** ({pct:.1f}% of a core for {sc['setup']['established']:,}"
            " sessions; target < 10%)."
            + (f" Profile of the idle hold (shares of the concentrator's samples): {listed}."
               if summ else "")
            + (f" With {sc['traffic'].get('sessions')} of them pinging, the concentrator used"
               f" {sc['traffic']['conc_core_pct']:.0f}% of a core and the echo RTT was"
               f" {f(sc['traffic'].get('rtt_p50_ms'), 1)} ms p50,"
               f" {f(sc['traffic'].get('rtt_p99_ms'), 0)} ms p99 (one idle tunnel: see"
               " Latency, under 1 ms): the data plane thread waits for the GIL while the"
               " main thread runs its O(sessions) passes." if sc.get("traffic", {}).get(
                   "conc_core_pct") else "")
            + " What would close it: (1) no periodic O(sessions) statistics: the data plane"
            " keeps running totals and a set of SPIs that saw traffic since the last poll"
            " (DPD liveness needs only that), the manager samples those totals (or only the"
            " sessions on screen), and full per-SA dicts are built only when someone lists"
            " sessions - this alone is"
            + (f" ~{periodic:.0f} points of the {pct:.0f}%" if summ else " the largest part")
            + "; (2) the rest is the clients' DPD (with a 30 s DPD every session sends one"
            " R-U-THERE per 30 s: 333 exchanges/s for 10,000 sessions, each decrypted,"
            " hash-checked and answered) and the keepalives; a fast path for"
            " R-U-THERE/ACK (a fixed-size message: no exchange object, no events, no log"
            " record) would cut most of the per-message Python work.", ""]
        if kib is not None:
            out += [
                f"**Memory per session** ({kib:.1f} KiB at the end of the 5-minute hold,"
                f" {f(kib_setup, 1)} KiB right after the set-up; target < 32 KiB). RSS grows"
                " for the first 5 minutes of a session and then levels off: the web"
                " manager keeps, per session, 150 throughput samples (5 minutes at one per"
                " 2 s) as tuples of three Python numbers, ~70 B each: ~11 KiB per session"
                " once full (tracemalloc of a 5,000-session hold: `manager/view.py`"
                " `q.append((now, tx, rx))` was the only allocation site that grew). The rest,"
                " measured apart on this machine: one `EspSA` ~4 KiB of RSS (2 per session,"
                " each with an OpenSSL encryptor *and* decryptor context and an HMAC"
                " context, although a direction needs one), one responder `IkeSA` ~16 KiB"
                " of Python objects (instance dicts, a 64-slot event deque, the last 8"
                " received messages with their replies, 64 used message IDs), plus the"
                " `Session` and the data plane's entries. What would close it: keep the"
                " manager's samples in one preallocated `array('d')` ring per session"
                " (3.6 KiB for 150 x 3 doubles) or only for sessions someone is viewing,"
                " or sample every 10 s (30 samples); build only the cipher context a"
                " direction uses; `__slots__` on `IkeSA`, `Session`, `ChildInfo` and the"
                " event deque created on first use.", ""]
        if lst.get("web_api_s") or lst.get("web_page_s") or lst.get("cli_s"):
            page = ""
            if isinstance(lst.get("web_page_s"), float):
                page = f", web page {lst['web_page_s']:.1f} s" + (
                    " (the client gave up)" if lst.get("web_page_timeout") else "")
            out += [
                f"**Listing {sc['setup']['established']:,} sessions**: CLI"
                f" {f(lst.get('cli_s'), 1)} s, web API {f(lst.get('web_api_s'), 1)} s{page}"
                ". The whole list is built synchronously on the event loop (and the admin"
                " request first refreshes every counter), so IKE stops for that long: "
                f"{f(sc.get('alive_before_web'))} sessions were alive before the web listing"
                f" and {f(sc.get('alive_at_end'))} after it (the clients' DPD gave up on the"
                " others). What would close it: paginate (`?offset=&limit=`, 100 rows a page,"
                " the VPN 3000 Manager pages too), keep the table sorted incrementally, render"
                " from a snapshot in a worker thread or process, and never block the IKE loop"
                " for more than a few ms.", ""]
    return out


# ----------------------------------------------------------------------------- charts
def charts(d: Path, tp: dict[str, Any] | None, hs: dict[str, Any] | None,
           sc: dict[str, Any] | None, lat: dict[str, Any] | None) -> list[str]:
    """Write the PNGs; returns the names written (empty without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    colors = {"vpnc → strongSwan": "#9ecae1", "vpnc → vpnhub": "#3182bd",
              "strongSwan → strongSwan": "#fdae6b", "vpnhub → vpnhub": "#e6550d"}
    if tp and tp.get("results"):
        rows = [r for r in tp["results"] if r.get("mbit_s") is not None]
        for key, fname, ylabel in (("mbit_s", "throughput.png", "Mbit/s (median)"),
                                   ("conc_cpu_s_per_gb", "cpu_per_gb.png",
                                    "concentrator CPU s per GB (median, lower is better)")):
            groups = []
            for r in rows:
                g = f"{r['suite_label']}\n{r['tunnels']} tunnel{'s' if r['tunnels'] > 1 else ''}"
                if g not in groups:
                    groups.append(g)
            pairs = [p for p in colors if any(pair(r) == p for r in rows)]
            fig, ax = plt.subplots(figsize=(max(7, 1.4 * len(groups)), 4.2))
            width = 0.8 / max(1, len(pairs))
            for i, p in enumerate(pairs):
                xs, ys = [], []
                for j, g in enumerate(groups):
                    for r in rows:
                        gg = f"{r['suite_label']}\n{r['tunnels']} tunnel" \
                             f"{'s' if r['tunnels'] > 1 else ''}"
                        if gg == g and pair(r) == p:
                            xs.append(j + i * width - 0.4 + width / 2)
                            ys.append(r[key])
                ax.bar(xs, ys, width, label=p, color=colors[p])
            ax.set_xticks(range(len(groups)))
            ax.set_xticklabels(groups, fontsize=8)
            ax.set_ylabel(ylabel)
            ax.legend(fontsize=8)
            ax.grid(axis="y", alpha=0.3)
            ax.set_title("iperf3 TCP through the PAT" if key == "mbit_s" else
                         "CPU cost of the concentrator per GB")
            fig.tight_layout()
            fig.savefig(d / fname, dpi=110)
            plt.close(fig)
            written.append(fname)
    if hs and hs.get("results"):
        rows = [r for r in hs["results"] if r.get("tunnels_per_s")]
        groups = sorted({r["dh_group"] for r in rows})
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
        for i, kind in enumerate(("strongswan", "vpnhub")):
            col = "#fdae6b" if kind == "strongswan" else "#e6550d"
            for ax, key in ((a1, "tunnels_per_s"), (a2, "conc_cpu_ms_per_tunnel")):
                xs = [j + (i - 0.5) * 0.4 for j, g in enumerate(groups)
                      for r in rows if r["concentrator"] == kind and r["dh_group"] == g]
                ys = [r[key] for g in groups for r in rows
                      if r["concentrator"] == kind and r["dh_group"] == g]
                ax.bar(xs, ys, 0.4, color=col, label="strongSwan" if i == 0 else "vpnhub")
        a1.axhline(500, color="k", ls="--", lw=1, label="target 500/s (group 14)")
        for ax, title in ((a1, "tunnels per second (median)"),
                          (a2, "concentrator CPU ms per tunnel")):
            ax.set_xticks(range(len(groups)))
            ax.set_xticklabels([f"DH group {g}" for g in groups])
            ax.set_title(title)
            ax.grid(axis="y", alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(d / "handshake.png", dpi=110)
        plt.close(fig)
        written.append("handshake.png")
    if sc and sc.get("idle"):
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.8))
        labels = ["idle", "with traffic"]
        vals = [sc["idle"]["conc_core_pct"], sc.get("traffic", {}).get("conc_core_pct") or 0]
        a1.bar(labels, vals, color=["#e6550d", "#fd8d3c"])
        a1.axhline(10, color="k", ls="--", lw=1, label="target < 10% (idle)")
        a1.set_title(f"concentrator CPU, % of one core\n{sc['setup']['established']:,} sessions")
        a1.legend(fontsize=8)
        a2.bar(["memory per session"], [sc["setup"]["kib_per_session"]], color="#3182bd")
        a2.axhline(32, color="k", ls="--", lw=1, label="target < 32 KiB")
        a2.set_title("KiB per session (RSS delta)")
        a2.legend(fontsize=8)
        for ax in (a1, a2):
            ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        fig.savefig(d / "scale.png", dpi=110)
        plt.close(fig)
        written.append("scale.png")
    if lat and lat.get("results"):
        rows = [("direct", lat.get("direct", {}))] + [
            (pair(r), r) for r in lat["results"] if "error" not in r]
        fig, ax = plt.subplots(figsize=(8, 3.8))
        names = [n for n, _ in rows]
        p50 = [r.get("rtt_p50_ms") or 0 for _, r in rows]
        p99 = [r.get("rtt_p99_ms") or 0 for _, r in rows]
        xs = range(len(names))
        ax.bar([x - 0.2 for x in xs], p50, 0.4, label="p50", color="#3182bd")
        ax.bar([x + 0.2 for x in xs], p99, 0.4, label="p99", color="#9ecae1")
        ax.set_xticks(list(xs))
        ax.set_xticklabels(names, fontsize=8)
        ax.set_ylabel("ping RTT, ms")
        ax.legend()
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        fig.savefig(d / "latency.png", dpi=110)
        plt.close(fig)
        written.append("latency.png")
    return written


# ----------------------------------------------------------------------------- main
def build(d: Path, out: Path, title: str, command: str = "") -> str:
    tp, hs, sc, lat = (load(d, n) for n in ("throughput", "handshake", "scale", "latency"))
    charts(d, tp, hs, sc, lat)
    rel = d.name if d.parent == out.parent else str(d)
    env = next((x["environment"] for x in (tp, hs, sc, lat) if x and "environment" in x), {})
    lines = [f"# {title}", ""]
    if env:
        lines += [f"Machine: {env.get('cpus')} x {env.get('cpu_model')}, kernel"
                  f" {env.get('kernel')}, Python {env.get('python')}, cryptography"
                  f" {env.get('cryptography')}; strongSwan {env.get('strongswan')}"
                  f" (charon + kernel-libipsec), {env.get('vpnc')}, {env.get('iperf3')};"
                  f" vpnhub {env.get('git')}. Load average at the start:"
                  f" {' '.join(env.get('loadavg', []))}.", ""]
        revs = {x["bench"]: x["environment"].get("git") for x in (tp, hs, sc, lat)
                if x and "environment" in x}
        if len(set(revs.values())) > 1:
            lines += ["The tree changed during the run (other work landed); each benchmark ran"
                      " the revision it started with: "
                      + ", ".join(f"{k} `{v}`" for k, v in revs.items()) + ".", ""]
    if command:
        lines += [f"Command: `{command}`. The machine is shared and noisy (single runs vary by"
                  " ±30%): compare medians, and ratios measured in the same run.", ""]
    smoke = [x["bench"] for x in (tp, hs, sc, lat) if x and x.get("smoke")]
    if smoke:
        lines += [f"**Smoke run** ({', '.join(smoke)}): the numbers only show the benchmarks"
                  " work; they are not results.", ""]
    ts = targets(tp, hs, sc, lat)
    if ts:
        lines += ["## Targets (issue 7)", "", "| target | measured | goal | result |",
                  "|---|---|---|---|", *[t.row() for t in ts], ""]
    for data, section in ((tp, throughput_section), (hs, handshake_section),
                          (sc, scale_section), (lat, latency_section)):
        if data:
            lines += [*section(data, d, rel), ""]
    lines += analysis(tp, hs, sc, lat)
    lines += profiles_section(d, rel)
    text = "\n".join(lines).rstrip() + "\n"
    out.write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--title", default="vpnhub benchmarks")
    ap.add_argument("--command", default="")
    args = ap.parse_args(argv)
    out = args.out or args.dir.with_suffix(".md")
    build(args.dir, out, args.title, args.command)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
