"""vpnhub's concentrator against real peers in the document's network.

vpnhub runs in the concentrator namespace where the reference lab runs charon
(``tests/lab/test_reference_peers.py``); the clients are the real vpnc and
strongSwan, behind the lab's PAT ("masquerade random", like the PIX of the
Cisco note) unless a test says otherwise. Each test builds its own topology,
and only one.

1. two vpnc behind one PAT at the same time (the document's suite
   3DES/MD5/group 2, and AES-256/SHA1/group 14): own pool addresses, ping and
   iperf3 through both tunnels at once, the session table and the PAT agree
   on the two outside ports of UDP 4500;
2. strongSwan as the client through the same PAT;
3. a client not behind NAT: plain ESP, no float to 4500;
4. NAT-T off with the client behind the PAT: the tunnel comes up, no data
   passes, and vpnhub says why (log severity 3, session diagnosis);
5. wrong group PSK, wrong XAUTH password, exhausted pool: refused with a
   clear reason while another client's transfer goes on undisturbed;
6. ike-scan's Aggressive Mode probe gets a proper answer with our vendor IDs;
7. SIGTERM: DELETE to every peer, TUN and routes gone, exit status 0.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from vpnhub_harness import (
    TUNNEL_IF,
    VpnhubServer,
    WireCounters,
    active_users,
    drop_esp_at_pat,
    explain,
    iperf_result,
    iperf_running,
    norm,
    session_of,
    start_iperf,
)

from vpnhub.lab.peers import VpncClient, start_strongswan_client, start_vpnc
from vpnhub.lab.topology import (
    CONC_PUBLIC,
    DIRECT_CLIENT_FIRST,
    LAN_HOST,
    PAT_OUTSIDE,
    POOL,
    Topology,
    wait_until,
)
from vpnhub.wire.vendor import VendorId

pytestmark = pytest.mark.netns

StartVpnhub = Callable[..., VpnhubServer]
NATT_PROTOCOL = "IPsec/NAT-T"
PLAIN_PROTOCOL = "IPsec"
DH = "dh14"  # vpnc's group where a test does not choose a suite: vpnhub's default policy


@dataclass(frozen=True)
class Suite:
    """A cipher suite: how vpnhub is configured, how vpnc is started, what both report."""

    legacy: bool
    dh: str  # vpnc --dh
    weak: bool  # vpnc --enable-weak-encryption --enable-weak-authentication
    ike_proposals: tuple[str, ...] | None  # the group's; None = engine defaults
    esp_proposals: tuple[str, ...] | None
    vpnc_ike: str  # vpnc: "IKE SA selected psk+xauth-<this>"
    vpnc_esp: str  # vpnc: "IPSEC SA selected <this>"
    encryption: tuple[str, ...]  # substrings of the session's normalised encryption
    hash: str  # substring of the session's normalised hash
    dh_group: tuple[str, ...]  # accepted spellings of the IKE SA's DH group (normalised)


LEGACY = Suite(  # the document's: 3DES / MD5 / group 2, only with allow_legacy_crypto
    legacy=True, dh="dh2", weak=True,
    ike_proposals=("3des-md5-modp1024",), esp_proposals=("3des-md5",),
    vpnc_ike="3des-md5", vpnc_esp="3des-md5", encryption=("3des",), hash="md5",
    dh_group=("2", "modp1024", "group2"),
)
MODERN = Suite(  # vpnc offers AES-256/SHA first; group 14 is the only KE it sends
    legacy=False, dh="dh14", weak=False, ike_proposals=None, esp_proposals=None,
    vpnc_ike="aes256-sha1", vpnc_esp="aes256-sha1", encryption=("aes", "256"), hash="sha",
    dh_group=("14", "modp2048", "group14"),
)


def severity(line: str) -> int | None:
    """The severity of an event line: "SEV=n", or the number before "CLASS/..."."""
    m = re.search(r"\bSEV=(\d+)", line)
    if m:
        return int(m.group(1))
    tokens = line.split()
    for prev, tok in itertools.pairwise(tokens):
        if re.match(r"^[A-Z][A-Z0-9_]*/", tok) and prev.isdigit():
            return int(prev)
    return None


def vpnc_logs(*clients: VpncClient) -> list[Path]:
    return [c.log for c in clients]


def assert_session(srv: VpnhubServer, s: dict[str, Any] | None, user: str, *,
                   protocol: str, public_ip: str, assigned_ip: str,
                   logs: list[Path], data: dict[str, Any]) -> dict[str, Any]:
    """The session of `user` exists and says what the client and the network say."""
    dump = json.dumps(data, indent=1)[:3000]
    assert s is not None, srv.explain(f"no (single) session of {user} in:\n{dump}", *logs)
    problems = []
    if s.get("group") != "vpngroup":
        problems.append(f"group {s.get('group')!r}")
    if s.get("protocol") != protocol:
        problems.append(f"protocol {s.get('protocol')!r} != {protocol!r}")
    if s.get("public_ip") != public_ip:
        problems.append(f"public_ip {s.get('public_ip')!r} != {public_ip!r}")
    if s.get("assigned_ip") != assigned_ip:
        problems.append(f"assigned_ip {s.get('assigned_ip')!r} != {assigned_ip!r} (vpnc's)")
    if bool(s.get("nat_t")) != (protocol == NATT_PROTOCOL):
        problems.append(f"nat_t {s.get('nat_t')!r} with protocol {protocol}")
    assert not problems, srv.explain(f"session of {user}: {', '.join(problems)}:\n{dump}",
                                     *logs)
    return s


# ---------------------------------------------------------------------------- 1
@pytest.mark.parametrize("suite", [
    pytest.param(LEGACY, id="3des-md5-modp1024"),
    pytest.param(MODERN, id="aes256-sha1-modp2048"),
])
def test_two_vpnc_behind_one_pat(lab_prefix: str, lab_run_dir: Path, peer_tools: None,
                                 vpnhub: StartVpnhub, suite: Suite) -> None:
    with Topology(lab_prefix, clients=2, run_dir=lab_run_dir) as topo:
        services = topo.start_lan_services()
        wire = WireCounters(topo)
        srv = vpnhub(topo, natt=True, legacy=suite.legacy,
                     ike_proposals=suite.ike_proposals, esp_proposals=suite.esp_proposals)
        topo.flush_pat_conntrack()
        # both PCs at the same instant, as in the document
        clients = [start_vpnc(topo, c, dh=suite.dh, weak=suite.weak) for c in topo.clients]
        logs = vpnc_logs(*clients)
        for c in clients:
            try:
                c.wait_usable(timeout=30)
            except (TimeoutError, RuntimeError) as e:
                raise AssertionError(srv.explain(f"{c.host.role}: {e}", *logs)) from None

        inner = {c.host.role: c.wait_connected(5)["INTERNAL_IP4_ADDRESS"] for c in clients}
        assert len(set(inner.values())) == 2, srv.explain(f"same pool address: {inner}", *logs)
        for role, addr in inner.items():
            assert ipaddress.ip_address(addr) in ipaddress.ip_network(POOL), (role, addr)
        for c in clients:
            text = c.log.read_text()
            assert "this end behind NAT? YES" in text, srv.explain("vpnc saw no NAT", c)
            assert f"IKE SA selected psk+xauth-{suite.vpnc_ike}" in text, srv.explain(
                f"vpnc did not select IKE {suite.vpnc_ike}", c)
            assert f"IPSEC SA selected {suite.vpnc_esp}" in text, srv.explain(
                f"vpnc did not select ESP {suite.vpnc_esp}", c)

        # iperf3 through both tunnels at once, pings through both while it runs
        ports = dict(zip([c.host.role for c in clients], services.iperf_ports, strict=False))
        iperfs = {c.host.role: start_iperf(topo, c.host, ports[c.host.role], 2)
                  for c in clients}
        wait_until(lambda: all(iperf_running(topo, p) for p in ports.values()), 10,
                   what="both iperf3 transfers running")
        for c in clients:
            assert topo.ping(c.host, LAN_HOST, interface=c.host.tun, count=3, interval=0.1), (
                srv.explain(f"{c.host.role}: no ping through {c.host.tun} during iperf3", *logs))
        for role, proc in iperfs.items():
            r = iperf_result(proc, timeout=15)
            assert r.returncode == 0 and r.received_bytes > 0, srv.explain(
                f"{role}: iperf3 exit {r.returncode}, {r.received_bytes} bytes received, "
                f"error {r.error!r}", *logs, (str(proc.log), r.raw))

        # the PAT's "show xlate": one outside address, one outside port per client on 4500
        natt = [e for e in topo.pat_conntrack("udp") if e.remote == (CONC_PUBLIC, 4500)]
        xlate = "\n".join(map(str, natt))
        assert sorted(e.inside for e in natt) == [("10.10.10.2", 4500), ("10.10.10.3", 4500)], (
            srv.explain(f"PAT conntrack UDP 4500:\n{xlate}", *logs))
        assert {e.outside[0] for e in natt} == {PAT_OUTSIDE}, xlate
        outside_port = {e.inside[0]: e.outside[1] for e in natt}
        assert len(set(outside_port.values())) == 2, xlate

        # vpnhub's session table agrees with vpnc and with the PAT
        data = srv.wait_sessions(lambda d: d["summary"].get("active") == 2,
                                 "two active sessions", logs=logs)
        ports_seen = set()
        for c in clients:
            user = c.username
            s = assert_session(srv, session_of(data, user), user, protocol=NATT_PROTOCOL,
                               public_ip=PAT_OUTSIDE, assigned_ip=inner[c.host.role],
                               logs=logs, data=data)
            ports_seen.add(s.get("public_port"))
            assert s.get("public_port") == outside_port[c.host.addr], srv.explain(
                f"{user}: public_port {s.get('public_port')} but the PAT maps "
                f"{c.host.addr}:4500 to {outside_port[c.host.addr]}\n{xlate}", *logs)
            assert not s.get("diagnosis"), srv.explain(
                f"{user}: unexpected diagnosis {s.get('diagnosis')!r}", *logs)
            assert all(x in norm(s.get("encryption")) for x in suite.encryption), (
                srv.explain(f"{user}: encryption {s.get('encryption')!r}", *logs))
            ike = s.get("ike") or {}
            hash_name = s.get("hash", ike.get("hash"))  # the IKE SA's (detail page)
            assert suite.hash in norm(hash_name), srv.explain(
                f"{user}: hash {hash_name!r}", *logs)
            assert norm(ike.get("dh_group")) in suite.dh_group, srv.explain(
                f"{user}: DH group {ike.get('dh_group')!r}, expected {suite.dh_group}", *logs)
            counters = {k: s.get(k) for k in ("bytes_tx", "bytes_rx", "packets_tx",
                                              "packets_rx")}
            assert all(isinstance(v, int) and v > 0 for v in counters.values()), srv.explain(
                f"{user}: traffic counters after ping + iperf3: {counters}", *logs)
        assert len(ports_seen) == 2, ports_seen
        assert data["summary"].get("peak", 0) >= 2, data["summary"]
        assert data["summary"].get("cumulative", 0) >= 2, data["summary"]

        assert len(srv.lines("NAT-Traversal successfully negotiated")) >= 2, srv.explain(
            "'NAT-Traversal successfully negotiated' not logged for both clients", *logs)
        assert len(srv.lines("Security negotiation complete")) >= 2, srv.explain(
            "'Security negotiation complete' not logged for both clients", *logs)
        counts = wire.packets()
        assert counts.get("esp") == 0 and counts.get("udp4500", 0) > 0, srv.explain(
            f"behind the PAT ESP must travel in UDP 4500 only; on the wire: {counts}", *logs)


# ---------------------------------------------------------------------------- 2
def test_strongswan_client_behind_pat(lab_prefix: str, lab_run_dir: Path, peer_tools: None,
                                      vpnhub: StartVpnhub) -> None:
    with Topology(lab_prefix, clients=1, run_dir=lab_run_dir) as topo:
        topo.start_lan_services()
        srv = vpnhub(topo, natt=True, legacy=False)
        swan = start_strongswan_client(topo, "c1", suite="aes256-sha1")
        # the lab's suites are all modp1024; vpnhub's defaults need no legacy group
        conf = swan.swanctl_conf.read_text()
        swan.swanctl_conf.write_text(conf.replace("modp1024", "modp2048"))
        swan.load()
        cp = swan.initiate(timeout=20)
        assert cp.returncode == 0, srv.explain(
            f"swanctl --initiate: exit {cp.returncode}\n{cp.stdout[-2000:]}", swan.log)
        try:
            topo.wait_ping("c1", LAN_HOST, interface=swan.tun, timeout=10)
        except (TimeoutError, RuntimeError) as e:
            raise AssertionError(srv.explain(str(e), swan.log)) from None
        assert topo.ping("c1", LAN_HOST, interface=swan.tun, count=3, interval=0.1)

        sas = swan.list_sas()
        vips = [a for a in re.findall(r"\[(\d+\.\d+\.\d+\.\d+)\]", sas)
                if ipaddress.ip_address(a) in ipaddress.ip_network(POOL)]
        assert len(vips) == 1, srv.explain(f"no pool address in:\n{sas}", swan.log)
        assert "TUNNEL-in-UDP" in sas, srv.explain(f"not UDP-encapsulated:\n{sas}", swan.log)
        data = srv.wait_sessions(lambda d: d["summary"].get("active") == 1, "one session",
                                 logs=[swan.log])
        assert_session(srv, session_of(data, "vpnuser1"), "vpnuser1", protocol=NATT_PROTOCOL,
                       public_ip=PAT_OUTSIDE, assigned_ip=vips[0], logs=[swan.log], data=data)

        # strongSwan's DELETE ends the session on the concentrator
        swan.terminate()
        srv.wait_sessions(lambda d: d["summary"].get("active") == 0,
                          "the session to end after strongSwan's DELETE", logs=[swan.log])


# ---------------------------------------------------------------------------- 3
def test_direct_client_uses_plain_esp(lab_prefix: str, lab_run_dir: Path, peer_tools: None,
                                      vpnhub: StartVpnhub) -> None:
    with Topology(lab_prefix, clients=0, direct_clients=1, run_dir=lab_run_dir) as topo:
        topo.start_lan_services()
        wire = WireCounters(topo)
        srv = vpnhub(topo, natt=True)
        vpnc = start_vpnc(topo, "d1", dh=DH)
        try:
            vpnc.wait_usable(timeout=30)
        except (TimeoutError, RuntimeError) as e:
            raise AssertionError(srv.explain(str(e), vpnc)) from None
        assert topo.ping("d1", LAN_HOST, interface=vpnc.host.tun, count=3, interval=0.1), (
            srv.explain("no ping through the tunnel", vpnc))
        inner = vpnc.wait_connected(5)["INTERNAL_IP4_ADDRESS"]
        assert "behind NAT? YES" not in vpnc.log.read_text(), srv.explain(
            "vpnc believes there is a NAT between it and vpnhub", vpnc)

        data = srv.wait_sessions(lambda d: d["summary"].get("active") == 1, "one session",
                                 logs=[vpnc.log])
        s = assert_session(srv, session_of(data, "vpnuser1"), "vpnuser1",
                           protocol=PLAIN_PROTOCOL, public_ip=DIRECT_CLIENT_FIRST,
                           assigned_ip=inner, logs=[vpnc.log], data=data)
        assert s.get("public_port") == 500, srv.explain(
            f"no float expected: public_port {s.get('public_port')}", vpnc)
        assert not s.get("diagnosis"), srv.explain(f"diagnosis {s.get('diagnosis')!r}", vpnc)
        assert not srv.lines("NAT-Traversal successfully negotiated"), srv.explain(
            "NAT-T negotiated without a NAT", vpnc)
        counts = wire.packets()
        assert counts.get("esp", 0) > 0 and counts.get("udp4500", 0) == 0 and (
            counts.get("udp4500_reply", 0) == 0), srv.explain(
            f"expected plain ESP (IP protocol 50) only; on the wire: {counts}", vpnc)


# ---------------------------------------------------------------------------- 4
def test_natt_off_client_behind_pat_is_diagnosed(lab_prefix: str, lab_run_dir: Path,
                                                 peer_tools: None,
                                                 vpnhub: StartVpnhub) -> None:
    """The document's failure: tunnel up, no data, and vpnhub says why."""
    with Topology(lab_prefix, clients=1, run_dir=lab_run_dir) as topo:
        topo.start_lan_services()
        drop_esp_at_pat(topo)  # a PAT device cannot translate ESP (no ports)
        srv = vpnhub(topo, natt=False)
        vpnc = start_vpnc(topo, "c1", dh=DH)
        try:
            env = vpnc.wait_connected(timeout=30)  # the tunnel comes up ...
        except (TimeoutError, RuntimeError) as e:
            raise AssertionError(srv.explain(str(e), vpnc)) from None
        assert not topo.ping("c1", LAN_HOST, interface=vpnc.host.tun, count=3, timeout=1,
                             interval=0.2), srv.explain(
            "... yet data passed although NAT-T is off and the client is behind the PAT", vpnc)
        assert vpnc.exited() is None, srv.explain("vpnc gave up", vpnc)

        hits = srv.wait_log("ipsec_over_natt", logs=[vpnc.log])
        sev3 = [line for line in hits if severity(line) == 3]
        assert sev3, srv.explain(f"the diagnosis is not at severity 3: {hits}", vpnc)
        assert "nat-t is disabled" in sev3[0].lower(), srv.explain(
            f"diagnosis does not say NAT-T is disabled: {sev3[0]}", vpnc)
        assert srv.lines("NAT-Traversal successfully negotiated") == []

        data = srv.wait_sessions(lambda d: d["summary"].get("active") == 1, "one session",
                                 logs=[vpnc.log])
        s = session_of(data, "vpnuser1")
        assert s is not None and s.get("assigned_ip") == env["INTERNAL_IP4_ADDRESS"], (
            srv.explain(f"session table: {json.dumps(data, indent=1)[:3000]}", vpnc))
        diagnosis = s.get("diagnosis")
        assert isinstance(diagnosis, str) and diagnosis.strip(), srv.explain(
            f"no diagnosis in the session: {json.dumps(s, indent=1)}", vpnc)
        assert "ipsec_over_natt" in diagnosis or "nat-t" in diagnosis.lower(), diagnosis
        assert not s.get("nat_t") and s.get("protocol") != NATT_PROTOCOL, s
        assert s.get("public_ip") == PAT_OUTSIDE, s
        assert not s.get("bytes_rx") and not s.get("packets_rx"), srv.explain(
            f"the concentrator decrypted something: {json.dumps(s, indent=1)}", vpnc)


# ---------------------------------------------------------------------------- 5
def test_refusals_leave_running_transfer_alone(lab_prefix: str, lab_run_dir: Path,
                                               peer_tools: None,
                                               vpnhub: StartVpnhub) -> None:
    """Wrong PSK, wrong XAUTH password, exhausted pool: each refused with a clear
    reason while vpnuser1's iperf3 (started before, 5 s) goes on undisturbed."""
    iperf_seconds = 5
    with Topology(lab_prefix, clients=3, run_dir=lab_run_dir) as topo:
        topo.start_lan_services(iperf_ports=[5201])
        # a /30 has two usable addresses: c1 and c3 take them, c2 finds none
        srv = vpnhub(topo, natt=True, pool="10.40.1.0/30")
        c1 = start_vpnc(topo, "c1", dh=DH)
        try:
            c1.wait_usable(timeout=30)
        except (TimeoutError, RuntimeError) as e:
            raise AssertionError(srv.explain(str(e), c1)) from None
        iperf = start_iperf(topo, "c1", 5201, iperf_seconds)
        wait_until(lambda: iperf_running(topo, 5201), 10, what="iperf3 from c1 running")
        t0 = time.monotonic()
        attempts: list[tuple[str, str]] = []  # (label, vpnc log) of each refused client

        def refused(v: VpncClient, label: str, timeout: float = 20.0) -> str:
            """vpnc gives up (exits) without having configured its TUN; its log."""
            try:
                wait_until(lambda: v.proc.returncode is not None, timeout,
                           what=f"vpnc ({label}) to give up")
            except TimeoutError as e:
                raise AssertionError(srv.explain(str(e), v, *attempts)) from None
            text = v.proc.log_text()
            attempts.append((f"{v.log} [{label}]", text))
            assert v.env("connect") is None, srv.explain(f"{label}: vpnc connected", *attempts)
            return text

        # wrong group secret: vpnc itself finds message 2's HASH_R wrong
        text = refused(start_vpnc(topo, "c2", dh=DH, secret="not-the-group-secret"), "wrong PSK")
        assert "hash comparison failed" in text, srv.explain("wrong PSK", *attempts)

        # wrong XAUTH password: vpnhub refuses the login and says so
        text = refused(start_vpnc(topo, "c2", dh=DH, password="not-the-password"), "wrong password")
        assert "authentication unsuccessful" in text.lower(), srv.explain(
            "wrong password: vpnc did not see XAUTH fail", *attempts)
        srv.wait_log("failed authentication", "vpnuser2", logs=[c1.log])
        assert "not-the-password" not in srv.log_text(), "a password in the log"

        # exhausted pool: c3 takes the last address, then vpnuser2 finds none
        c3 = start_vpnc(topo, "c3", dh=DH)
        try:
            c3.wait_connected(timeout=20)
        except (TimeoutError, RuntimeError) as e:
            raise AssertionError(srv.explain(str(e), c3, *attempts)) from None
        c2 = start_vpnc(topo, "c2", dh=DH)
        srv.wait_log("pool", "exhausted", timeout=20, logs=[c2.log])
        assert c2.env("connect") is None, srv.explain("c2 got an address from a full pool", c2)
        c2_text = c2.proc.log_text()
        c2.stop()
        took = time.monotonic() - t0
        assert iperf.alive(), srv.explain(
            f"the refusals took {took:.1f} s, longer than the {iperf_seconds} s transfer "
            "meant to run alongside them", c1, c3, *attempts, ("vpnc-c2 [pool]", c2_text))

        r = iperf_result(iperf, timeout=iperf_seconds + 10)
        assert r.returncode == 0 and r.received_bytes > 0, srv.explain(
            f"iperf3 exit {r.returncode}, {r.received_bytes} bytes, error {r.error!r}", c1,
            (str(iperf.log), r.raw))
        assert r.interval_bytes and all(b > 0 for b in r.interval_bytes), srv.explain(
            f"the transfer stalled: bytes per interval {r.interval_bytes}", c1)
        assert c1.exited() is None, srv.explain("c1's vpnc ended", c1)
        assert topo.ping("c1", LAN_HOST, interface=c1.host.tun, count=2, interval=0.1), (
            srv.explain("c1's tunnel broke", c1))
        data = srv.sessions()
        assert active_users(data) == ["vpnuser1", "vpnuser3"], srv.explain(
            f"sessions: {json.dumps(data, indent=1)[:3000]}", c1, c3)


# ---------------------------------------------------------------------------- 6
def test_ike_scan_aggressive_mode(lab_prefix: str, lab_run_dir: Path, peer_tools: None,
                                  vpnhub: StartVpnhub) -> None:
    with Topology(lab_prefix, clients=1, run_dir=lab_run_dir) as topo:
        srv = vpnhub(topo, natt=True, legacy=False)
        # AES-256 / SHA1 / XAUTHInitPreShared (65001) / group 14, group id as ID_KEY_ID (11)
        probe = ["ike-scan", "--aggressive", "--multiline", "--id=vpngroup", "--idtype=11",
                 "--dhgroup=14", "--trans=(1=7,14=256,2=2,3=65001,4=14)",
                 f"--vendor={VendorId.NAT_T_RFC3947.hex()}",
                 f"--vendor={VendorId.CISCO_UNITY.hex()}", CONC_PUBLIC]
        cp = topo.exec("c1", probe, timeout=30)
        out = cp.stdout
        why = srv.explain(f"ike-scan exit {cp.returncode}:\n{out}\n{cp.stderr}")
        assert "Aggressive Mode Handshake returned" in out, why
        assert f"ID(Type=ID_IPV4_ADDR, Value={CONC_PUBLIC})" in out, why
        sa = re.search(r"SA=\((.*?)\)", out)
        chosen = set(sa.group(1).split()) if sa else set()
        wanted = {"Enc=AES", "KeyLength=256", "Hash=SHA1", "Group=14:modp2048", "Auth=XAUTH_PSK"}
        assert wanted <= chosen, why
        vids = set(re.findall(r"VID=([0-9a-f]+)", out))
        expected = {
            "XAUTH": VendorId.XAUTH, "DPD": VendorId.DPD, "Cisco Unity": VendorId.CISCO_UNITY,
            "NAT-T RFC 3947": VendorId.NAT_T_RFC3947, "vpnhub": VendorId.VPNHUB,
        }
        missing = [name for name, vid in expected.items() if vid.hex() not in vids]
        assert not missing, srv.explain(f"vendor IDs missing: {missing}\n{out}")
        assert "KeyExchange(256 bytes)" in out and "Hash(20 bytes)" in out, why

        # ike-scan's default (legacy) transforms: refused by the modern-only policy
        cp = topo.exec("c1", ["ike-scan", "--aggressive", "--multiline", "--id=vpngroup",
                              "--idtype=11", CONC_PUBLIC], timeout=30)
        assert "Handshake returned" not in cp.stdout, srv.explain(
            f"legacy transforms accepted without allow_legacy_crypto:\n{cp.stdout}")
        assert srv.proc.alive(), srv.explain("vpnhub died under ike-scan")


# ---------------------------------------------------------------------------- 7
def test_sigterm_deletes_and_cleans_up(lab_prefix: str, lab_run_dir: Path, peer_tools: None,
                                       vpnhub: StartVpnhub) -> None:
    with Topology(lab_prefix, clients=2, run_dir=lab_run_dir) as topo:
        topo.start_lan_services()
        srv = vpnhub(topo, natt=True)
        clients = [start_vpnc(topo, c, dh=DH) for c in topo.clients]
        logs = vpnc_logs(*clients)
        for c in clients:
            try:
                c.wait_usable(timeout=30)
            except (TimeoutError, RuntimeError) as e:
                raise AssertionError(srv.explain(f"{c.host.role}: {e}", *logs)) from None
        srv.wait_sessions(lambda d: d["summary"].get("active") == 2, "two sessions", logs=logs)
        link = topo.exec(topo.conc, ["ip", "link", "show", TUNNEL_IF])
        assert link.returncode == 0, srv.explain(f"no {TUNNEL_IF} while serving", *logs)

        t0 = time.monotonic()
        rc = srv.terminate(timeout=15)
        took = time.monotonic() - t0
        assert rc == 0, srv.explain(f"vpnhub exit status {rc} after SIGTERM ({took:.1f} s)",
                                    *logs)
        link = topo.exec(topo.conc, ["ip", "link", "show", TUNNEL_IF])
        assert link.returncode != 0, srv.explain(f"{TUNNEL_IF} left behind:\n{link.stdout}")
        routes = topo.exec(topo.conc, ["ip", "route", "show", "table", "all"]).stdout
        assert TUNNEL_IF not in routes and "10.40.1." not in routes, srv.explain(
            f"routes left behind:\n{routes}")
        bound = topo.listening(topo.conc, "udp")
        assert not bound & {500, 4500}, srv.explain(f"UDP ports still bound: {bound}")

        # the DELETEs reach both clients, which end at once. vpnc ends on a DELETE
        # of its ISAKMP SA; a DELETE of its ESP SA seen first makes it start a new
        # Quick Mode instead (vpnc.c process_late_ike), which times out after ~30 s
        try:
            wait_until(lambda: all(c.proc.returncode is not None for c in clients), 15,
                       what="both vpnc to end after vpnhub's DELETE")
        except TimeoutError as e:
            raise AssertionError(explain(
                f"{e} (vpnc ends at once only on an ISAKMP DELETE that comes before any "
                "ESP DELETE of its SA)", srv.log, *logs)) from None
        for c in clients:
            assert "connection terminated by peer" in c.log.read_text(), explain(
                f"{c.host.role}: vpnc did not end on a DELETE", srv.log, c.log)
