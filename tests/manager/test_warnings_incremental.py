"""The warning banners' counts are kept by session events, not by a scan (issue 13).

Sessions start, change and end through the store as the core does; the
banners appear and go at once, with the texts the scan gave (first five names
in login order, then "...").
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from manager_fakes import FakeConcentrator, config_text

from vpnhub.config import parse_config
from vpnhub.eventlog import EventLog
from vpnhub.manager.tally import is_legacy, is_stuck
from vpnhub.manager.view import ManagerView, Warning_


def setup() -> tuple[FakeConcentrator, ManagerView]:
    conc = FakeConcentrator(parse_config(config_text(None)), EventLog())
    return conc, ManagerView(conc)


def kinds(view: ManagerView) -> list[str]:
    return [w.kind for w in view.warnings() if w.kind != "no_admin_users"]


def banner(view: ManagerView, kind: str) -> Warning_:
    return next(w for w in view.warnings() if w.kind == kind)


def test_banners_follow_start_change_and_end() -> None:
    conc, view = setup()
    conc.natt_enabled = True
    ok = conc.add_session("fine", 1025)
    assert kinds(view) == []
    old = conc.add_session("oldclient", 1026, legacy=True, login_time=1000.0)
    assert kinds(view) == ["legacy_crypto"]
    assert banner(view, "legacy_crypto").text.endswith(": oldclient.")
    conc.sessions.update(ok.key, nat_t=False)  # behind NAT, no NAT-T negotiated
    assert kinds(view) == ["no_natt_behind_nat", "legacy_crypto"]
    assert banner(view, "no_natt_behind_nat").text.startswith("1 client(s) behind NAT")
    conc.natt_enabled = False
    assert kinds(view) == ["natt_off_behind_nat", "legacy_crypto"]
    assert "(fine)" in banner(view, "natt_off_behind_nat").text
    conc.sessions.update(ok.key, nat_t=True)
    assert kinds(view) == ["legacy_crypto"]
    conc.sessions.end(old.key, "logged out")
    assert kinds(view) == []


def test_names_are_the_first_five_in_login_order() -> None:
    conc, view = setup()
    for i in (6, 2, 4, 1, 3, 5):
        conc.add_session(f"user{i}", 1024 + i, legacy=True, login_time=1000.0 + i)
    text = banner(view, "legacy_crypto").text
    assert text.startswith("6 session(s) use legacy crypto")
    assert text.endswith(": user1, user2, user3, user4, user5 ....")
    first = conc.sessions.all()[3]  # user1
    conc.sessions.end(first.key, "logged out")
    assert banner(view, "legacy_crypto").text.endswith(": user2, user3, user4, user5, user6.")


def test_a_diagnosis_set_and_cleared() -> None:
    conc, view = setup()
    conc.natt_enabled = True
    s = conc.add_session("alice", 1025)
    conc.sessions.update(s.key, diagnosis="behind NAT without NAT-T: no data passes")
    assert kinds(view) == ["no_natt_behind_nat"]
    conc.sessions.update(s.key, diagnosis="")
    assert kinds(view) == []


def test_lan_to_lan_and_sessions_before_the_view_count_as_the_scan_did() -> None:
    conc = FakeConcentrator(parse_config(config_text(None)), EventLog())
    conc.add_session("early", 1025, legacy=True)  # before the manager starts
    conc.add_session("", 1026, legacy=True, lan_to_lan="branch")  # not remote access
    view = ManagerView(conc)
    assert banner(view, "legacy_crypto").text.startswith("1 session(s)")
    assert view.tally.by_protocol == {"IPsec/NAT-T": 1}


def test_counts_match_a_scan_of_the_table() -> None:
    conc, view = setup()
    conc.natt_enabled = True
    keys = [conc.add_session(f"u{i}", 2000 + i, nat_t=i % 3 != 0, legacy=i % 4 == 0).key
            for i in range(40)]
    for k in keys[::5]:
        conc.sessions.end(k, "logged out")
    for k in keys[1::7]:
        conc.sessions.update(k, nat_t=True)
    listed = view.listed()
    assert len(view.tally.stuck.members) == sum(1 for s in listed if is_stuck(s))
    assert len(view.tally.legacy.members) == sum(1 for s in listed if is_legacy(s))
    assert sum(view.tally.by_protocol.values()) == sum(1 for s in listed if s.children)
    view.close()


def test_a_traffic_update_does_not_reclassify() -> None:
    """The concentrator refreshes every session's counters every 10 s: those
    SessionChanged events must not cost a classification each."""
    conc, view = setup()
    s = conc.add_session("alice", 1025, legacy=True)
    seen: list[object] = []
    view.tally._classify = seen.append  # type: ignore[method-assign]
    conc.sessions.update(s.key, bytes_rx=10_000, packets_rx=12)
    assert seen == []
    conc.sessions.update(s.key, diagnosis="no data passes")
    assert len(seen) == 1


def test_legacy_phase_1_suites_by_name_whatever_the_order_of_sessions() -> None:
    """The phase 1 check is cached by suite (issue 13): the same answers, session
    after session, for every legacy name and none for a modern suite."""
    def session(encryption: Any, hash_: Any, group: Any) -> Any:
        return SimpleNamespace(ike={"encryption": encryption, "hash": hash_, "dh_group": group},
                               children={})

    modern = ("AES-256", "SHA2-256", "MODP_2048")
    legacy = [("3DES", "SHA1", "MODP_2048"), ("DES", "SHA1", "MODP_2048"),
              ("AES-128", "MD5", "MODP_2048"), ("AES-128", "SHA1", "MODP_1024"),
              ("aes-128", "sha1", "modp_768"), ("AES-128", "SHA1", "MODP_1536")]
    for _ in range(2):
        assert not is_legacy(session(*modern))
        assert all(is_legacy(session(*suite)) for suite in legacy)
    assert not is_legacy(session("AES-256", "SHA1", 14))  # a number, not a name
    assert not is_legacy(SimpleNamespace(ike={}, children={}))  # not negotiated yet
