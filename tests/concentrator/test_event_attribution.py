"""Issue 11 points 3 and 4, in-process: junk is never logged in a user's name, a flood
of it cannot fill the event log, and a peer's text cannot forge or colour a line.

The concentrator is the real core (tests/concentrator/core_harness.py): its own
receive path, event handling, sessions and event log with a SQLite store.
"""

from __future__ import annotations

import random
from pathlib import Path

from core_harness import GROUP, CoreRig, LogClock, Pc, config_text

from vpnhub.cli import format_sessions
from vpnhub.eventlimit import EventLimiter
from vpnhub.text import has_control

JUNK_NET = "10.99.0."  # never the client's address (198.51.100.7)
USER = "vpnuser1"


def _mutations(c: Pc, rng: random.Random, n: int) -> list[tuple[bytes, tuple[str, int]]]:
    """The campaign of the issue: mutated copies of the client's own packets (its
    cookies, so they reach its SA), random bodies behind its cookies, random bytes and
    spoofed first messages, each from an address that is not the client's."""
    cookies = c.sa.icookie + c.sa.rcookie
    first = c.sent[0]
    out: list[tuple[bytes, tuple[str, int]]] = []
    for i in range(n):
        src = (f"{JUNK_NET}{rng.randrange(1, 255)}", rng.randrange(1024, 65535))
        kind = i % 5
        if kind == 0:  # a captured packet, some bytes flipped after the header
            data = bytearray(rng.choice(c.sent[1:]))
            for _ in range(rng.randrange(1, 8)):
                pos = rng.randrange(28, len(data))
                data[pos] ^= rng.randrange(1, 256)
            pkt = bytes(data)
        elif kind == 1:  # the SA's cookies, an encrypted informational / quick mode of junk
            body = rng.randbytes(rng.choice((16, 32, 48, 64)))
            exch = rng.choice((5, 32, 6))
            hdr = cookies + bytes((8, 0x10, exch, 1)) + rng.randbytes(4)
            pkt = hdr + (28 + len(body)).to_bytes(4, "big") + body
        elif kind == 2:  # the SA's cookies, garbage
            pkt = cookies + rng.randbytes(rng.randrange(12, 200))
        elif kind == 3:  # random bytes
            pkt = rng.randbytes(rng.randrange(28, 300))
        else:  # a spoofed first message (new initiator cookie, the client's proposal)
            pkt = rng.randbytes(8) + first[8:]
        out.append((pkt, src))
    return out


def _connected(tmp_path: Path, *, user: str = USER,
               application_version: str = "vpnhub-test 1.0") -> tuple[CoreRig, Pc]:
    """A client without NAT (NAT-T off, UDP 500) at 198.51.100.7, logged in or refused."""
    text = config_text(store=str(tmp_path / "events.db"),
                       log_extra="console_severity = 5\nkeep_severity = 5")
    rig = CoreRig.from_text(text, log_clock=LogClock())
    c = rig.connect(rig.add_pc(user, behind_pat=False, natt=False, local_ip="198.51.100.7",
                               application_version=application_version))
    return rig, c


def test_junk_with_a_session_cookies_is_not_logged_as_that_user(tmp_path: Path) -> None:
    rig, c = _connected(tmp_path)
    try:
        assert c.up
        mine = [r for r in rig.records() if r.user == USER]
        assert any("authenticated" in r.text for r in mine)  # the login line
        rng = random.Random(11)
        for pkt, src in _mutations(c, rng, 5000):
            rig.inject(pkt, src)
        records = rig.records()
        # the flood added nothing in the user's name, and nothing under the client's address
        assert [r for r in records if r.user == USER] == mine
        assert all(r.peer_address == c.public_ip for r in records if r.group == GROUP)
        junk = [r for r in records if r.peer_address.startswith(JUNK_NET)]
        assert junk, "junk that reached the session's SA is logged (under its source)"
        for r in junk:
            assert (r.user, r.group, r.authenticated) == ("", "", False), r.format()
            assert "UNAUTHENTICATED" in r.format()
        # the session was not moved or ended by any of it
        s = next(iter(rig.core.sessions.all()))
        assert (s.user, s.public_ip) == (USER, c.public_ip)
    finally:
        rig.close()


def test_a_junk_flood_stays_within_its_event_budget(tmp_path: Path) -> None:
    rig, c = _connected(tmp_path)
    try:
        before = rig.records()
        budget = EventLimiter().unauth_burst
        rng = random.Random(3)
        for pkt, src in _mutations(c, rng, 10_000):  # one rate-limit window (clock stopped)
            rig.inject(pkt, src)
        added = [r for r in rig.records() if r.seq > before[-1].seq]
        assert 0 < len(added) <= budget
        assert sum(rig.log.suppressed.values()) > 0
        # the window ends: one summary line says what was left out
        assert rig.log_clock is not None
        rig.log_clock.t += 11
        rig.log.tick()
        summaries = [r for r in rig.records() if "suppressed" in r.text]
        assert summaries and not any(r.user for r in summaries)
        total = sum(int(r.text.split()[0]) for r in summaries)
        assert total == sum(rig.log.suppressed.values())
        # and the authenticated records are all still there
        assert all(r in rig.records() for r in before)
        print(f"\n10000 junk packets: {len(added)} events stored, {total} suppressed,"
              f" {len(summaries)} summary line(s)")
    finally:
        rig.close()


FORGED = "mallory\n2026-12-03 10:00:00 SEV=4 SESSION 1 forged\x1b[2J"
VERSION = "\x1b[31mVPN\r\n\x1b]0;pwned\x07\u202eClient 4.8"


def test_a_user_name_with_a_newline_and_escapes_stays_on_one_escaped_line(
        tmp_path: Path) -> None:
    rig, c = _connected(tmp_path, user=FORGED, application_version=VERSION)
    try:
        assert not c.up  # no such user
        named = [r for r in rig.records() if "mallory" in r.user or "mallory" in r.text]
        assert named
        for r in rig.records():
            for field in (r.text, r.user, r.group, r.peer):
                assert not has_control(field), r
        text_log = rig.console.getvalue()
        assert "\x1b" not in text_log
        lines = text_log.splitlines()
        assert not any(line.startswith("2026-12-03") or "SESSION 1 forged" in line.split(
            "mallory")[0] for line in lines)
        assert any("mallory\\n2026-12-03 10:00:00 SEV=4 SESSION 1 forged\\x1b[2J" in line
                   for line in lines)
    finally:
        rig.close()


def test_the_sessions_table_shows_a_client_version_with_escapes_escaped(tmp_path: Path
                                                                       ) -> None:
    rig, c = _connected(tmp_path, application_version=VERSION)
    try:
        assert c.up
        reply = rig.core.admin_command({"cmd": "sessions"})
        table = format_sessions(reply)
        assert USER in table
        assert not has_control(table.replace("\n", ""))
        assert "\\x1b[31mVPN\\r\\n" in table  # shown, not obeyed
    finally:
        rig.close()
