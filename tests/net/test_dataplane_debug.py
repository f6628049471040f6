"""IPSECDBG (issue 11, point 10): the data plane logs SAs installed and removed, peers
moving, and drops summarised per SA - only when the class is kept at 7-9, never per packet.
"""

from __future__ import annotations

import socket

import pytest
from test_dataplane import CLIENT, LAN_HOST, Clock, ipv4, params

from vpnhub.esp import ESP_AES_CBC, HMAC_SHA1_96
from vpnhub.eventlog import EventFilter, EventLog
from vpnhub.net.dataplane import (
    DROP_REPORT_EVERY,
    Dataplane,
    open_udp_socket,
)
from vpnhub.net.messages import (
    AddInbound,
    AddOutbound,
    DebugLine,
    RemoveSA,
)
from vpnhub.net.tun import FakeTun

SUITE = (ESP_AES_CBC, 128, HMAC_SHA1_96)


def _run(log: EventLog) -> list[DebugLine]:
    """A concentrator-side data plane with one client's SAs; 200 replays and 50 forged
    packets arrive from a new port, time passes, the SAs are removed."""
    clock = Clock()
    tun = FakeTun("b")
    udp = open_udp_socket("127.0.0.1", 0)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    dp = Dataplane(tun, udp=udp, clock=clock)
    dp.debug_severity = max(log.levels("IPSECDBG"))  # as the concentrator sets it
    try:
        inbound, outbound = params(0xA0000001, SUITE), params(0xB0000001, SUITE)
        dp.call(AddInbound(inbound, ("127.0.0.1", 1), allowed_src=CLIENT))
        dp.call(AddOutbound(outbound, ("127.0.0.1", 1), dst=CLIENT))
        sender = inbound.build()
        esp = sender.encapsulate(ipv4(CLIENT, LAN_HOST))
        forged = bytearray(sender.encapsulate(ipv4(CLIENT, LAN_HOST)))
        forged[-1] ^= 1
        addr = udp.getsockname()
        for packet in [esp] * 201 + [bytes(forged)] * 50:
            peer.sendto(packet, addr)
        for _ in range(20):
            dp.poll(0.05)
        clock.now += DROP_REPORT_EVERY
        dp.poll(0.05)
        clock.now += DROP_REPORT_EVERY
        dp.poll(0.05)
        dp.call(RemoveSA(0xA0000001))
        dp.call(RemoveSA(0xB0000001))
        lines = [e for e in dp.inbox.drain() if isinstance(e, DebugLine)]
    finally:
        dp.close()
        udp.close()
        peer.close()
        tun.close()
    for e in lines:  # what the concentrator does with them
        log.add("IPSECDBG", e.severity, e.text,
                peer=f"{e.peer[0]}:{e.peer[1]}" if e.peer else "")
    return lines


def test_ipsecdbg_at_9_logs_the_data_plane() -> None:
    log = EventLog(classes={"IPSECDBG": (None, 9)})
    _run(log)
    texts = [r.text for r in log.query(EventFilter(classes=frozenset({"IPSECDBG"})))]
    assert any(t.startswith("inbound SA a0000001 installed") for t in texts)
    assert any(t.startswith("outbound SA b0000001 installed") for t in texts)
    assert any("a0000001" in t and "peer moved" in t for t in texts)
    drops = [t for t in texts if "dropped" in t]
    # 250 bad packets: one summary line, not a line per packet
    assert drops == [f"inbound SA a0000001 from 127.0.0.1:{drops[0].split(':')[1].split()[0]}"
                     f" dropped 50 auth_failed, 200 replay in the last"
                     f" {DROP_REPORT_EVERY:.0f} s"]
    assert any(t.startswith("inbound SA a0000001 removed") for t in texts)
    assert "outbound SA b0000001 removed" in texts


@pytest.mark.parametrize("classes", [None, {"IPSECDBG": (None, 6)}])
def test_ipsecdbg_not_kept_costs_nothing(classes: dict[str, tuple[int | None, int]] | None
                                         ) -> None:
    log = EventLog(classes=classes)  # type: ignore[arg-type]
    assert _run(log) == []  # not even built
    assert log.query(EventFilter(classes=frozenset({"IPSECDBG"}))) == []


def test_the_drop_line_names_the_packet_refused_as_spoofed_source() -> None:
    """Which packet was it? The line gives the last refused packet's headers and why:
    here what a vpnc host sends when a ping bound to its TUN goes out before the
    TUN has its Mode Config address (the kernel takes the LAN address)."""
    clock = Clock()
    tun = FakeTun("b")
    udp = open_udp_socket("127.0.0.1", 0)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    dp = Dataplane(tun, udp=udp, clock=clock)
    dp.debug_severity = 9
    try:
        inbound = params(0xA0000002, SUITE)
        dp.call(AddInbound(inbound, peer.getsockname(), allowed_src=CLIENT))
        sender = inbound.build()
        echo = bytes([8, 0, 0, 0]) + b"secret-payload" * 4
        for src in ("10.10.10.5", "10.10.10.2"):
            peer.sendto(sender.encapsulate(ipv4(src, LAN_HOST, echo, proto=1)),
                        udp.getsockname())
        peer.sendto(sender.encapsulate(ipv4(CLIENT, LAN_HOST)), udp.getsockname())
        for _ in range(20):
            dp.poll(0.05)
        clock.now += DROP_REPORT_EVERY
        dp.poll(0.05)
        lines = [e.text for e in dp.inbox.drain()
                 if isinstance(e, DebugLine) and "dropped" in e.text]
    finally:
        dp.close()
        udp.close()
        peer.close()
        tun.close()
    assert len(lines) == 1, lines
    assert lines[0].endswith(
        f"dropped 2 spoofed_source in the last {DROP_REPORT_EVERY:.0f} s; the last refused:"
        f" ICMP 10.10.10.2 -> {LAN_HOST} echo request, its source is not the assigned"
        f" address {CLIENT}"), lines
    assert "secret" not in lines[0]
