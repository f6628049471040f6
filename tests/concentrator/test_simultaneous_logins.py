"""Issue 11 point 2: the same XAUTH user from two PCs behind one PAT (in-process).

The clients here send no INITIAL-CONTACT (as strongSwan with ``unique =
never``; vpnc does send one). A second PC of the same user has another
public port: a separate login, not a phase 1 rekey that takes over the
first PC's IPsec SAs and address. `simultaneous_logins` bounds the logins
of one user; the one over the limit is refused at XAUTH, and the sessions
already there stay.
"""

from __future__ import annotations

import pytest
from core_harness import CoreRig, config_text

from vpnhub.config import ConfigError, parse_config
from vpnhub.ike import events as ev


def _sessions(p: CoreRig, user: str) -> list[dict[str, object]]:
    data = p.core.sessions.to_json(0.0)
    return [s for s in data["sessions"] if s["user"] == user and s["ipsec"]]


def _xauth_refused(pc_events: list[ev.Event]) -> bool:
    return any(isinstance(e, ev.SADeleted) for e in pc_events) and not any(
        isinstance(e, ev.ModeConfigReceived) for e in pc_events)


def test_same_user_from_two_pcs_behind_one_pat_gets_two_sessions() -> None:
    p = CoreRig.from_text(config_text())
    first = p.connect(p.add_pc("vpnuser1"))
    assert first.up, p.console.getvalue()
    second = p.connect(p.add_pc("vpnuser1"))  # another PC, same user
    assert second.up, p.console.getvalue()
    assert not p.lines("phase 1 rekey"), p.console.getvalue()
    sessions = _sessions(p, "vpnuser1")
    assert len(sessions) == 2, sessions
    # each PC keeps its own address and its own IPsec SA (the first got no take-over)
    assert {s["assigned_ip"] for s in sessions} == {first.address, second.address}
    assert first.address != second.address
    assert len({s["public_port"] for s in sessions}) == 2
    assert not any(isinstance(e, ev.SADeleted) for e in first.events)
    assert p.core.sessions.summary()["cumulative"] == 2


def test_login_over_the_limit_is_refused_at_xauth_and_the_first_stays() -> None:
    p = CoreRig.from_text(config_text(group_extra="simultaneous_logins = 1"))
    first = p.connect(p.add_pc("vpnuser1"))
    assert first.up, p.console.getvalue()
    second = p.connect(p.add_pc("vpnuser1"))
    assert _xauth_refused(second.events), second.events
    refused = p.lines("login of vpnuser1 refused")
    assert len(refused) == 1 and "allows 1 simultaneous login" in refused[0], refused
    sessions = _sessions(p, "vpnuser1")
    assert len(sessions) == 1 and sessions[0]["assigned_ip"] == first.address
    assert not any(isinstance(e, ev.SADeleted) for e in first.events)
    # another user is not limited by vpnuser1's logins
    other = p.connect(p.add_pc("vpnuser2"))
    assert other.up, p.console.getvalue()


def test_default_limit_is_three_logins() -> None:
    p = CoreRig.from_text(config_text())
    pcs = []
    for _ in range(4):  # one after the other
        pcs.append(p.connect(p.add_pc("vpnuser1")))
    assert [pc.up for pc in pcs] == [True, True, True, False]
    assert len(p.lines("login of vpnuser1 refused")) == 1


def test_zero_simultaneous_logins_refuses_every_login() -> None:
    p = CoreRig.from_text(config_text(group_extra="simultaneous_logins = 0"))
    pc = p.connect(p.add_pc("vpnuser1"))
    assert _xauth_refused(pc.events)
    assert p.lines("allows no logins (simultaneous_logins = 0)"), p.console.getvalue()


@pytest.mark.parametrize("value", ["-1", "2147483648", '"3"'])
def test_simultaneous_logins_out_of_range_is_a_config_error(value: str) -> None:
    with pytest.raises(ConfigError, match=r"simultaneous_logins: .*(out of range|an integer)"):
        parse_config(config_text(group_extra=f"simultaneous_logins = {value}"))


def test_phase1_rekey_from_the_same_mapping_still_takes_over_even_at_the_limit() -> None:
    """The same client (same PAT address AND port) renewing its phase 1 is not a new
    login: it keeps its IPsec SA and address, and the limit does not refuse it."""
    p = CoreRig.from_text(config_text(group_extra="simultaneous_logins = 1"))
    pc = p.connect(p.add_pc("vpnuser1"))
    assert pc.up, p.console.getvalue()
    address = pc.address
    p.rekey_phase1(pc)  # from the same local ports
    p.settle()
    assert pc.sa.established and pc.sa.xauth_done, p.console.getvalue()
    assert len(p.lines("phase 1 rekey: new IKE SA of vpnuser1 takes over")) == 1
    assert not p.lines("refused"), p.console.getvalue()
    sessions = _sessions(p, "vpnuser1")
    assert len(sessions) == 1 and sessions[0]["assigned_ip"] == address, sessions
    assert p.core.sessions.summary()["cumulative"] == 1  # one login, renewed


def test_same_client_with_a_new_nat_mapping_is_a_separate_login() -> None:
    """A client whose NAT mapping changed and that logs in again: its old session is
    dead (ends by DPD), the new one is a separate login with its own address."""
    p = CoreRig.from_text(config_text())
    pc = p.connect(p.add_pc("vpnuser1"))
    first_address = pc.address
    pc.ports.clear()  # the PAT forgot the mapping: the next packets get new ports
    p.pcs.remove(pc)
    again = p.connect(p.add_pc("vpnuser1"))
    assert again.up and not p.lines("phase 1 rekey"), p.console.getvalue()
    assert again.address != first_address
    assert len(_sessions(p, "vpnuser1")) == 2  # the old one until DPD ends it
