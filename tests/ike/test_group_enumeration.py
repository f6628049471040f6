"""Group names cannot be enumerated (issue 11, point 5).

An unknown group (Aggressive Mode ID_KEY_ID) is answered exactly as a known
group with a wrong key: a normal message 2, computed with a stand-in key.
"""

from __future__ import annotations

from ike_harness import GROUP, Lab

from vpnhub.ike import events as ev
from vpnhub.wire.message import decode_message

PAT = "203.0.113.78"


def _message_2(group: str, psk: str) -> bytes:
    lab = Lab()
    c = lab.add_client(pat_ip=PAT, psk=psk)
    c.sa.config.group_name = group
    c.sa.initiate(lab.now)
    first = c.sa.datagrams_to_send()[0].data
    sa = lab.endpoint.receive(first, (PAT, 1025), 500, lab.now)
    assert sa is not None
    out = sa.datagrams_to_send()
    assert len(out) == 1, f"group {group!r}: {len(out)} answers"
    return out[0].data


def _shape(data: bytes) -> list[tuple[str, int]]:
    msg = decode_message(data)
    return [(type(p).__name__, len(p.encode_body())) for p in msg.payloads]


def test_known_and_unknown_groups_get_answers_of_the_same_shape() -> None:
    known = _message_2(GROUP, "a-wrong-group-password")
    unknown = _message_2("nosuchgroup", "a-wrong-group-password")
    assert len(known) == len(unknown)
    assert _shape(known) == _shape(unknown)  # same payload types, each of the same length
    assert "HASH" in decode_message(unknown).payload_names()


def test_message_3_for_an_unknown_group_fails_as_with_a_wrong_key_and_the_log_says_why() -> None:
    import vpnhub.ike.phase1 as p1

    lab = Lab()
    c = lab.add_client(pat_ip=PAT)
    c.sa.config.group_name = "nosuchgroup"
    original = p1.check_hash

    def lenient(sa, payloads, *, initiator, id_body):  # type: ignore[no-untyped-def]
        if sa.role.name == "INITIATOR":  # a client that sends message 3 regardless
            return None
        return original(sa, payloads, initiator=initiator, id_body=id_body)

    p1.check_hash = lenient  # type: ignore[assignment]
    try:
        c.sa.initiate(lab.now)
        lab.run()
    finally:
        p1.check_hash = original
    failed = [e for _, e in lab.server_events if isinstance(e, ev.NegotiationFailed)]
    assert [f.error for f in failed] == ["unknown_group"]
    assert "no group 'nosuchgroup' is configured" in failed[0].detail
    assert failed[0].notify is not None
    # nothing tells the client why (no notify), as with a wrong pre-shared key
    assert not [e for e in c.events if isinstance(e, ev.NegotiationFailed)]
    assert len(lab.endpoint) == 0
