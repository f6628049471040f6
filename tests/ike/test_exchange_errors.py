"""Every class of bad input gets its named error, a proper notify, and leaves
other SAs untouched."""

from __future__ import annotations

import os
import random

from hypothesis import given, settings
from hypothesis import strategies as st
from ike_harness import Lab

from vpnhub.ike import events as ev
from vpnhub.ike.policy import Policy


def _up(lab: Lab, **kw: object) -> object:
    c = lab.add_client(**kw)  # type: ignore[arg-type]
    c.sa.initiate(lab.now)
    lab.run()
    return c


def _errors(lab: Lab) -> list[str]:
    return [e.error for _, e in lab.server_events if isinstance(e, ev.NegotiationFailed)]


def test_wrong_group_psk_is_refused_and_others_continue() -> None:
    lab = Lab()
    good = _up(lab, user="vpnclient1", local_ip="10.10.10.2")
    bad = lab.add_client(user="vpnclient2", local_ip="10.10.10.3", psk="not-the-psk")
    bad.sa.initiate(lab.now)
    lab.run()
    # the client checks HASH_R first: a wrong PSK is found there (vpnc: "hash comparison failed")
    failed = [e for e in bad.events if isinstance(e, ev.NegotiationFailed)]
    assert failed and failed[0].error == "hash_mismatch"
    assert "pre-shared key" in failed[0].detail
    assert not bad.sa.established
    # the half-open SA on the concentrator times out and is removed
    lab.advance(31)
    assert _errors(lab) == ["phase1_timeout"]
    assert len(lab.endpoint) == 1
    assert good.sa.established and lab.server_sa_for(good) is not None  # type: ignore[attr-defined]


def test_wrong_psk_detected_by_responder_in_message_3() -> None:
    """If the initiator skips its check, the responder's HASH_I check catches it."""
    lab = Lab(server_psk="server-psk")
    c = lab.add_client(psk="client-psk")
    import vpnhub.ike.phase1 as p1

    original = p1.check_hash

    def lenient(sa, payloads, *, initiator, id_body):  # type: ignore[no-untyped-def]
        if sa.role.name == "INITIATOR":
            return None
        return original(sa, payloads, initiator=initiator, id_body=id_body)

    p1.check_hash = lenient  # type: ignore[assignment]
    try:
        c.sa.initiate(lab.now)
        lab.run()
    finally:
        p1.check_hash = original
    assert set(_errors(lab)) <= {"hash_mismatch", "decryption_failed"} and _errors(lab)
    assert len(lab.endpoint) == 0


def test_wrong_xauth_password() -> None:
    lab = Lab()
    good = _up(lab, user="vpnclient1", local_ip="10.10.10.2")
    bad = _up(lab, user="vpnclient2", password="wrong", local_ip="10.10.10.3")
    done = [e for e in bad.events if isinstance(e, ev.XauthCompleted)]  # type: ignore[attr-defined]
    assert done and done[0].ok is False
    assert not bad.children  # type: ignore[attr-defined]
    srv = [e for _, e in lab.server_events if isinstance(e, ev.XauthCompleted) and not e.ok]
    assert srv[0].user == "vpnclient2"
    # the failed client's SA is deleted at the concentrator (after its ACK) ...
    assert lab.server_sa_for(bad) is None  # type: ignore[arg-type]
    # ... and it is told so
    assert any(isinstance(e, ev.SADeleted) and e.by_peer for e in bad.events)  # type: ignore[attr-defined]
    # the good client is untouched
    assert lab.server_sa_for(good) is not None  # type: ignore[arg-type]
    assert len(good.children) == 1  # type: ignore[attr-defined]


def test_password_never_in_events_or_logs() -> None:
    lab = Lab()
    c = _up(lab)
    text = repr(lab.server_events) + repr(c.events)  # type: ignore[attr-defined]
    assert "userpass1" not in text
    assert "labgroupsecret" not in text


def test_unsupported_proposal_gets_notify() -> None:
    lab = Lab(Policy(ike_hashes=(), allow_legacy=False))
    c = _up(lab, policy=Policy(allow_legacy=True, ike_encryptions=(), ike_hashes=(),
                               dh_group=2))
    failed = [e for e in c.events if isinstance(e, ev.NegotiationFailed)]  # type: ignore[attr-defined]
    assert failed[0].error == "peer_no_proposal_chosen"
    assert failed[0].notify == 14  # NO-PROPOSAL-CHOSEN


def test_unknown_group_fails_like_a_wrong_group_password() -> None:
    """Not INVALID-ID-INFORMATION: that told scanners which group names exist."""
    lab = Lab()
    c = lab.add_client()
    c.sa.config.group_name = "nosuchgroup"
    c.sa.initiate(lab.now)
    lab.run()
    failed = [e for e in c.events if isinstance(e, ev.NegotiationFailed)]
    assert failed[0].error == "hash_mismatch"  # what a wrong group password gives
    lab.advance(31)
    logs = [e.text for _, e in lab.server_events if isinstance(e, ev.LogLine)]
    assert any("'nosuchgroup', which is not configured" in t for t in logs), logs


def test_replayed_message_is_answered_once_and_counted() -> None:
    lab = Lab()
    c = lab.add_client()
    c.sa.initiate(lab.now)
    first = c.sa.datagrams_to_send()
    assert len(first) == 1
    src = ("203.0.113.78", 1025)
    sa = lab.endpoint.receive(first[0].data, src, 500, lab.now)
    assert sa is not None
    reply = sa.datagrams_to_send()
    assert len(reply) == 1
    again = lab.endpoint.receive(first[0].data, src, 500, lab.now)
    assert again is sa
    assert sa.datagrams_to_send()[0].data == reply[0].data  # same answer, not a new SA
    assert sa.drops["retransmission"] == 1
    assert len(lab.endpoint) == 1


def test_unexpected_exchange_is_dropped() -> None:
    lab = Lab()
    c = _up(lab)
    srv = lab.server_sa_for(c)  # type: ignore[arg-type]
    assert srv is not None
    # an Aggressive Mode message on an established SA
    data = bytearray(c.sa.icookie + c.sa.rcookie)  # type: ignore[attr-defined]
    data += bytes([1, 0x10, 4, 0]) + bytes(4) + (28).to_bytes(4, "big")
    lab.endpoint.receive(bytes(data), srv.remote, 4500, lab.now)
    assert srv.drops["unexpected_exchange"] == 1
    assert srv.established


def test_tampered_encrypted_message_is_dropped_without_harm() -> None:
    lab = Lab()
    c = _up(lab)
    srv = lab.server_sa_for(c)  # type: ignore[arg-type]
    assert srv is not None
    c.sa.send_dpd(lab.now)  # type: ignore[attr-defined]
    d = c.sa.datagrams_to_send()[0]  # type: ignore[attr-defined]
    bad = bytearray(d.data)
    bad[-1] ^= 0x55
    lab.endpoint.receive(bytes(bad), srv.remote, 4500, lab.now)
    assert srv.established
    assert sum(srv.drops.values()) >= 1
    # the genuine message still works afterwards: the IV did not move
    lab.endpoint.receive(d.data, srv.remote, 4500, lab.now)
    assert any(type(o).__name__ == "Datagram" for o in srv.datagrams_to_send())


def test_first_message_flood_is_bounded() -> None:
    from vpnhub.ike.endpoint import Limits

    lab = Lab(limits=Limits(half_open_per_source=4, half_open_total=10))
    c = lab.add_client()
    c.sa.initiate(lab.now)
    msg1 = c.sa.datagrams_to_send()[0].data
    for i in range(50):
        forged = os.urandom(8) + msg1[8:]
        lab.endpoint.receive(forged, (f"198.51.100.{i % 20}", 500 + i), 500, lab.now)
    assert lab.endpoint.half_open_count() <= 10
    assert lab.endpoint.drops["recycled_total"] + lab.endpoint.drops["recycled_per_source"] > 0
    lab.advance(31)
    assert lab.endpoint.half_open_count() == 0


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=400))
def test_random_bytes_never_escape(data: bytes) -> None:
    lab = _FUZZ_LAB
    lab.endpoint.receive(data, ("198.51.100.9", 500), 500, lab.now)
    srv = lab.server_sa_for(_FUZZ_CLIENT)
    assert srv is not None
    # the same bytes with valid cookies of an established SA
    hdr = _FUZZ_CLIENT.sa.icookie + _FUZZ_CLIENT.sa.rcookie
    srv.receive(hdr + data, srv.remote, 4500, lab.now)
    assert srv.established


_FUZZ_LAB = Lab()
_FUZZ_CLIENT = _FUZZ_LAB.add_client()
_FUZZ_CLIENT.sa.initiate(_FUZZ_LAB.now)
_FUZZ_LAB.run()


def test_mutated_real_messages_never_escape() -> None:
    rnd = random.Random(7)
    lab = Lab()
    c = lab.add_client()
    c.sa.initiate(lab.now)
    msg1 = c.sa.datagrams_to_send()[0].data
    for _ in range(300):
        m = bytearray(msg1)
        for _ in range(rnd.randint(1, 6)):
            m[rnd.randrange(len(m))] = rnd.randrange(256)
        lab.endpoint.receive(bytes(m), ("198.51.100.10", rnd.randint(1, 65535)), 500, lab.now)
    # nothing crashed; whatever SAs were made are half-open and bounded
    assert lab.endpoint.half_open_count() <= lab.endpoint.limits.half_open_total
