"""DPD, keepalive notifies, DELETE, rekeys, lost messages and NAT mapping changes."""

from __future__ import annotations

import pytest
from ike_harness import Lab

from vpnhub.ike import events as ev
from vpnhub.ike import transaction
from vpnhub.ike.policy import Policy
from vpnhub.secret import Secret


def _up(lab: Lab, **kw: object):  # type: ignore[no-untyped-def]
    c = lab.add_client(**kw)  # type: ignore[arg-type]
    c.sa.initiate(lab.now)
    lab.run()
    assert c.sa.established and c.children
    return c


def test_dpd_r_u_there_is_acked() -> None:
    lab = Lab()
    c = _up(lab)
    c.sa.send_dpd(lab.now)
    lab.run()
    acks = [e for e in c.events if isinstance(e, ev.DpdAck)]
    assert len(acks) == 1 and acks[0].sequence == c.sa.dpd_seq
    assert any(isinstance(e, ev.KeepaliveReceived) for _, e in lab.server_events)


def test_idle_peer_is_probed_and_dead_peer_detected() -> None:
    lab = Lab()
    c = _up(lab)
    srv = lab.server_sa_for(c)
    assert srv is not None
    lab.clients.remove(c)  # the client vanishes: nothing reaches it any more
    for _ in range(20):
        lab.advance(10)
    dead = [e for s, e in lab.server_events if s is srv and isinstance(e, ev.DeadPeer)]
    assert dead and "R-U-THERE" in dead[0].reason
    assert lab.server_sa_for(c) is None
    deleted = [e for s, e in lab.server_events if s is srv and isinstance(e, ev.ChildSADeleted)]
    assert len(deleted) == 1  # the driver frees the pool address on this


def test_traffic_suppresses_dpd() -> None:
    lab = Lab()
    c = _up(lab)
    srv = lab.server_sa_for(c)
    assert srv is not None
    mark = len(lab.server_events)
    for _ in range(10):
        lab.now += 10
        srv.note_traffic(lab.now)  # ESP keeps arriving
        lab.advance(0)
    probes = [e for s, e in lab.server_events[mark:] if s is srv and isinstance(e, ev.LogLine)
              and e.text.startswith("sending DPD R-U-THERE")]
    assert probes == []  # no R-U-THERE while data flows (RFC 3706 5.5)


def test_client_delete_reaches_server() -> None:
    lab = Lab()
    c = _up(lab)
    srv = lab.server_sa_for(c)
    c.sa.delete(lab.now)
    lab.run()
    assert lab.server_sa_for(c) is None
    evs = [e for s, e in lab.server_events if s is srv]
    assert any(isinstance(e, ev.ChildSADeleted) and e.by_peer for e in evs)
    assert any(isinstance(e, ev.SADeleted) and e.by_peer for e in evs)


def test_server_logout_deletes_client() -> None:
    lab = Lab()
    c = _up(lab)
    srv = lab.server_sa_for(c)
    assert srv is not None
    srv.delete(lab.now, "logged out by administrator")
    lab._deleted.append(srv)
    lab.endpoint.remove(srv)
    lab.run()
    assert any(isinstance(e, ev.SADeleted) and e.by_peer for e in c.events)
    assert not c.sa.established


def test_phase2_rekey_by_initiator_before_expiry() -> None:
    lab = Lab(Policy(ipsec_lifetime=600))
    c = _up(lab, policy=Policy(ipsec_lifetime=600))
    old = c.children[0]
    lab.advance(600 * 0.86)
    assert len(c.children) == 2
    new = c.children[1]
    assert new.rekey_of == old.spi_in and new.spi_in != old.spi_in
    srv_new = lab.server_children()[-1]
    assert srv_new.rekey_of == old.spi_out  # the server also knows what it replaces
    lab.advance(600 * 0.15)  # the old one expires and is deleted, the new one stays
    assert any(isinstance(e, ev.ChildSADeleted) and e.spi_in == old.spi_in for e in c.events)
    assert new.spi_in in c.sa.children


def test_phase2_rekey_by_responder_for_clients_that_never_rekey() -> None:
    """vpnc answers but never starts a rekey: the concentrator does it."""
    lab = Lab(Policy(ipsec_lifetime=600))
    c = _up(lab, policy=Policy(ipsec_lifetime=600))
    for child in c.sa.children.values():
        child.rekeyed = True  # this client will not rekey
    lab.advance(600 * 0.93)
    assert len(c.children) == 2
    assert len(lab.server_children()) == 2


def test_rekey_child_by_its_outbound_spi_offers_the_childs_suite() -> None:
    """IkeSA.rekey_child (the concentrator's answer to an exhausted outbound SA,
    RFC 4303 3.3.3): a Quick Mode from the responder that replaces that child."""
    lab = Lab()
    c = _up(lab)
    srv = lab.server_sa_for(c)
    assert srv is not None
    old = lab.server_children()[-1]
    assert srv.rekey_child(0x1234, lab.now) is None  # no such child: nothing started
    assert srv.rekey_child(old.spi_out, lab.now) is not None  # the outbound SPI finds it
    assert srv.children[old.spi_in].rekeyed  # its lifetime rekey will not start another
    lab.run()
    new = lab.server_children()[-1]
    assert len(c.children) == 2 and new.rekey_of == old.spi_in
    assert (new.transform, new.key_length, new.auth) == (old.transform, old.key_length,
                                                         old.auth)


def test_responder_lifetime_shortens_client_lifetime() -> None:
    lab = Lab(Policy(ipsec_lifetime=28800, ike_lifetime=86400))
    c = _up(lab, policy=Policy(ipsec_lifetime=2147483, ike_lifetime=2147483))
    assert c.children[0].lifetime == 28800
    assert c.sa.lifetime == 86400
    logs = [e.text for e in c.events if isinstance(e, ev.LogLine)]
    assert any("RESPONDER-LIFETIME notify has value of 28800 seconds" in t for t in logs)
    assert any("RESPONDER-LIFETIME notify has value of 86400 seconds" in t for t in logs)


def test_lost_messages_are_retransmitted() -> None:
    lab = Lab()
    c = lab.add_client()
    c.sa.initiate(lab.now)
    lab.drop_next_to_server = 1  # message 1 is lost
    lab.run()
    assert not c.sa.established
    lab.advance(2.1)
    assert c.sa.established and len(c.children) == 1


def test_lost_final_message_repaired_by_responder_retransmission() -> None:
    lab = Lab()
    c = lab.add_client()
    c.sa.initiate(lab.now)
    lab.run(rounds=1)  # msg 1 delivered, msg 2 back
    lab.drop_next_to_server = 1  # AM message 3 is lost
    lab.run()
    assert c.sa.established
    lab.advance(2.1)  # the server resends message 2; the client answers with message 3 again
    lab.advance(1)
    srv = lab.server_sa_for(c)
    assert srv is not None and srv.established
    assert len(c.children) == 1


def test_nat_mapping_change_is_followed() -> None:
    """RFC 3947 5: an authenticated message from a new port moves the peer."""
    lab = Lab()
    c = _up(lab)
    srv = lab.server_sa_for(c)
    assert srv is not None
    old = srv.remote
    c.ports[4500] = 40000  # the PAT forgot the mapping and chose another port
    c.sa.send_dpd(lab.now)
    lab.run()
    assert srv.remote == ("203.0.113.78", 40000) != old
    moved = [e for s, e in lab.server_events if isinstance(e, ev.PeerEndpointChanged)]
    assert moved and moved[0].old == old
    assert any(isinstance(e, ev.DpdAck) for e in c.events)  # the answer reached the new port


def test_unauthenticated_message_from_new_port_does_not_move_peer() -> None:
    lab = Lab()
    c = _up(lab)
    srv = lab.server_sa_for(c)
    assert srv is not None
    old = srv.remote
    garbage = c.sa.icookie + c.sa.rcookie + bytes([8, 0x10, 5, 1]) + bytes(4) + \
        (28 + 16).to_bytes(4, "big") + bytes(16)
    lab.endpoint.receive(garbage, ("203.0.113.99", 5555), 4500, lab.now)
    assert srv.remote == old


def test_phase1_expiry_deletes() -> None:
    lab = Lab(Policy(ike_lifetime=300))
    c = _up(lab, policy=Policy(ike_lifetime=300))
    lab.advance(301)
    assert not c.sa.established
    assert len(lab.endpoint) == 0


def test_main_mode_with_xauth() -> None:
    lab = Lab()
    c = _up(lab, mode="main")
    assert c.sa.xauth_done and c.sa.modecfg is not None
    srv = lab.server_sa_for(c)
    assert srv is not None and srv.xauth_user == "vpnclient1"


def test_xauth_password_secret_type() -> None:
    s = Secret("hunter2")
    assert "hunter2" not in repr(s) and "hunter2" not in str(s)
    assert s.equals("hunter2") and not s.equals("hunter3")


def test_phase1_rekey_carries_children_over() -> None:
    """A new phase 1 replaces the old before it expires; the IPsec SAs survive."""
    lab = Lab(Policy(ike_lifetime=1000))
    c = _up(lab, policy=Policy(ike_lifetime=1000))
    old_client, old_server = c.sa, lab.server_sa_for(c)
    assert old_server is not None
    child = c.children[0]
    lab.advance(901)
    due = [e for e in c.events if isinstance(e, ev.Phase1RekeyDue)]
    assert due and due[0].lifetime_left == pytest.approx(99, abs=1)
    # the client driver: a new phase 1, then hand the children over
    new = old_client.rekey_phase1(lab.now)
    c.sa = new
    lab.run()
    assert new.established and new.xauth_done
    new_server = lab.server_sa_for(c)
    assert new_server is not None and new_server is not old_server
    # no second Mode Config: the address stays
    assert new.assigned_address == old_client.assigned_address
    new.adopt(old_client, lab.now)
    new_server.adopt(old_server, lab.now)  # the concentrator's driver: same user and peer
    old_client.delete(lab.now)
    lab._deleted.append(old_server)
    c.sa = old_client
    lab.run()
    c.sa = new
    assert lab.server_sa_for(c) is new_server
    assert child.spi_in in new.children and new_server.children
    srv_child_deletes = [e for s, e in lab.server_events
                         if s is old_server and isinstance(e, ev.ChildSADeleted)]
    assert srv_child_deletes == []  # the data plane keeps its SAs


def test_mode_config_push() -> None:
    """The server may set the attributes (SET/ACK) instead of answering a pull."""
    import ipaddress

    lab = Lab()
    c = lab.add_client()
    c.auto_quick_mode = False
    c.sa.initiate(lab.now)
    lab.run()
    srv = lab.server_sa_for(c)
    assert srv is not None
    cfg = ev.ModeConfig(address=ipaddress.IPv4Address("10.40.1.77"),
                        split_include=[ipaddress.IPv4Network("192.168.2.0/24")])
    srv.modecfg_push(cfg, lab.now)
    lab.run()
    got = [e for e in c.events if isinstance(e, ev.ModeConfigReceived)]
    assert got[-1].config.address == ipaddress.IPv4Address("10.40.1.77")
    assert c.sa.assigned_address == ipaddress.IPv4Address("10.40.1.77")
    assert not srv._pending  # the ACK arrived


def test_cisco_keepalive_notify_is_recognised() -> None:
    from vpnhub.ike import informational
    from vpnhub.wire.constants import NotifyType, ProtocolId
    from vpnhub.wire.payloads import NotifyPayload

    lab = Lab()
    c = _up(lab)
    informational._send_info(c.sa, [NotifyPayload(NotifyType.CISCO_KEEPALIVE,
                                                  ProtocolId.ISAKMP, c.sa.protocol_spi())],
                             lab.now)
    lab.run()
    assert any(isinstance(e, ev.KeepaliveReceived) and e.kind == "cisco-40500"
               for _, e in lab.server_events)


def test_long_lived_sa_memory_is_bounded() -> None:
    """Thousands of DPD exchanges later the SA keeps only a window of message IDs."""
    lab = Lab()
    c = _up(lab)
    srv = lab.server_sa_for(c)
    assert srv is not None
    for _ in range(300):
        c.sa.send_dpd(lab.now)
        lab.run()
    assert len(c.sa._used_message_ids) <= 64 and len(srv._used_message_ids) <= 64
    assert len(srv._last_in) <= 8
    assert srv.established and c.sa.established


def test_decodes_are_not_built_when_nobody_keeps_them() -> None:
    lab = Lab()
    c = lab.add_client()
    c.sa.config.log_severity = 5
    c.sa.initiate(lab.now)
    lab.run()
    assert c.sa.established
    assert not [e for e in c.events if isinstance(e, ev.LogLine) and e.severity > 5]


def test_client_that_never_answers_xauth_is_deleted_after_the_xauth_timeout() -> None:
    """vpnc --vendor netscreen finishes phase 1, then never answers the XAUTH
    request: the SA must not linger (issue 11, 7b); the log names the likely cause."""
    lab = Lab()
    c = lab.add_client()
    setattr(c.sa, "xauth_reply", lambda *args: None)  # noqa: B010 -- a client without XAUTH
    c.sa.initiate(lab.now)
    lab.run()
    srv = lab.server_sa_for(c)
    assert srv is not None and srv.established and not srv.xauth_done
    timeout = getattr(srv.config, "xauth_timeout", 60.0)  # (the same test runs on older code)
    assert 30 <= timeout <= 120  # a user may be typing: bounded, but not short
    lab.advance(timeout - 5)
    assert lab.server_sa_for(c) is srv  # still waiting
    lab.advance(5)
    assert lab.server_sa_for(c) is None
    failed = [e for s, e in lab.server_events if s is srv and isinstance(e, ev.NegotiationFailed)]
    assert [e.error for e in failed] == ["xauth_timeout"]
    lines = [e.text for s, e in lab.server_events if s is srv and isinstance(e, ev.LogLine)
             and e.cls == "XAUTH" and e.severity <= 3]
    assert any("no XAUTH reply" in t and "vendor" in t for t in lines), lines
    assert not c.sa.established  # the client was told (DELETE), not left hanging


def test_client_that_never_asks_for_mode_config_is_deleted_after_the_xauth_timeout(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """What real vpnc --vendor netscreen does: it answers XAUTH, then waits for
    something the Cisco side never sends; it never asks for its address."""
    lab = Lab()
    c = lab.add_client()
    monkeypatch.setattr(transaction, "client_modecfg_request", lambda *args: None)
    c.sa.initiate(lab.now)
    lab.run()
    srv = lab.server_sa_for(c)
    assert srv is not None and srv.xauth_done and srv.modecfg is None
    timeout = getattr(srv.config, "xauth_timeout", 60.0)
    # vpnc is stuck waiting: it answers nothing, DPD included (the default DPD
    # would call it a dead peer after 55 s, before the XAUTH deadline)
    lab.clients.remove(c)
    for _ in range(int(timeout - 5) // 5):
        lab.advance(5)
    assert lab.server_sa_for(c) is srv
    lab.advance(5)
    assert lab.server_sa_for(c) is None
    assert not [e for s, e in lab.server_events if s is srv and isinstance(e, ev.DeadPeer)]
    lines = [e.text for s, e in lab.server_events if s is srv and isinstance(e, ev.LogLine)
             and e.cls == "XAUTH" and e.severity <= 3]
    assert any("no Mode Config request" in t and "vpnclient1" in t for t in lines), lines


def test_xauth_timeout_spares_a_user_who_answered() -> None:
    lab = Lab()
    c = _up(lab)
    srv = lab.server_sa_for(c)
    assert srv is not None and srv.xauth_done
    lab.advance(srv.config.xauth_timeout + 1)
    assert lab.server_sa_for(c) is srv and c.sa.established
