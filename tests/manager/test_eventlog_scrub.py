"""The event log's last line of defence on its hot path (issue 13): a routine line is
scanned once for control characters and once for secrets, and each field that holds
one is still escaped or hidden on its own."""

from __future__ import annotations

import io

from vpnhub.eventlog import EventLog

SECRETS = ["labgroupsecret", "userpass1", "benchpass"]


def make_log() -> EventLog:
    log = EventLog(out=io.StringIO(), clock=lambda: 1_700_000_000.0, console_severity=5)
    log.hide(SECRETS)
    return log


def test_a_routine_line_is_kept_as_it_is() -> None:
    rec = make_log().add("IPSEC", 5, "Loading SPIs: inbound 61d77b66, outbound 7fb290d1",
                         peer="203.0.113.78:20001", group="vpngroup", user="vpnuser1")
    assert rec is not None
    assert (rec.text, rec.peer, rec.group, rec.user) == (
        "Loading SPIs: inbound 61d77b66, outbound 7fb290d1", "203.0.113.78:20001",
        "vpngroup", "vpnuser1")


def test_a_secret_in_the_text_or_the_user_is_hidden_in_that_field_only() -> None:
    log = make_log()
    rec = log.add("XAUTH", 4, "user 'userpass1' authenticated", peer="203.0.113.78:500",
                  group="vpngroup", user="vpnuser1")
    assert rec is not None and (rec.text, rec.user) == ("user '<hidden>' authenticated",
                                                        "vpnuser1")
    rec = log.add("XAUTH", 4, "login refused", peer="203.0.113.78:500", group="vpngroup",
                  user="xbenchpassx")
    assert rec is not None and (rec.text, rec.user) == ("login refused", "x<hidden>x")
    # a secret split by the join of text and user is in neither: nothing to hide
    rec = log.add("XAUTH", 4, "labgroup", user="secret")
    assert rec is not None and (rec.text, rec.user) == ("labgroup", "secret")
    out = log.out.getvalue()  # type: ignore[union-attr]
    assert "userpass1" not in out and "benchpass" not in out


def test_a_control_character_in_any_one_field_is_escaped_in_that_field() -> None:
    log = make_log()
    for field in ("text", "peer", "group", "user"):
        fields = {"text": "t", "peer": "p", "group": "g", "user": "u", field: "a\x1b[2Jb\n"}
        rec = log.add("IKE", 3, fields["text"], peer=fields["peer"], group=fields["group"],
                      user=fields["user"])
        assert rec is not None
        got = {"text": rec.text, "peer": rec.peer, "group": rec.group, "user": rec.user}
        assert got == {**fields, field: "a\\x1b[2Jb\\n"}, field
    out = log.out.getvalue()  # type: ignore[union-attr]
    assert "\x1b" not in out and out.count("\n") == 4
