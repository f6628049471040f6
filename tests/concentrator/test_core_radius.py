"""Issue 14: what a RADIUS answer does to a session, in the core (in memory).

The authenticator is a scripted backend returning what `RadiusAuthenticator`
returns for an Access-Accept (tests/auth/test_auth_radius.py checks that part
against a pyrad server): Class moves the session to another group's policy,
Framed-IP-Address is the address, Session-Timeout ends the session,
Reply-Message reaches the client; a server that does not answer refuses the
client with a log line that names it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from core_harness import PAT, CoreRig, config_text

from vpnhub.auth.api import AuthReason, AuthRequest, AuthResult, BackendError
from vpnhub.ike import events as ev

ENGINEERING = ('[[group]]\nname = "engineering"\npsk = "engsecret"\n'
               'address_pool = "10.40.2.0/24"\nsplit_include = ["192.168.2.0/25"]\n'
               'xauth = "radius"\n')
SERVER = "192.168.2.20:1812"


class ScriptedRadius:
    def __init__(self, answer: Callable[[AuthRequest], AuthResult]) -> None:
        self.answer = answer
        self.requests: list[AuthRequest] = []

    async def authenticate(self, request: AuthRequest) -> AuthResult:
        self.requests.append(request)
        return self.answer(request)


def rig_with(answer: Callable[[AuthRequest], AuthResult],
             **config: Any) -> tuple[CoreRig, ScriptedRadius]:
    text = config_text(group_extra='xauth = "radius"', **config) + "\n[[radius.server]]\n" \
        'address = "192.168.2.20"\nsecret = "s"\n' + ENGINEERING
    rig = CoreRig.from_text(text)
    backend = ScriptedRadius(answer)
    rig.core.authenticator = backend
    return rig, backend


def ok(**grant: object) -> Callable[[AuthRequest], AuthResult]:
    return lambda r: AuthResult(AuthReason.OK, r.user, server=SERVER, **grant)  # type: ignore[arg-type]


def test_class_selects_the_group_policy_pool_and_split_tunnel() -> None:
    rig, backend = rig_with(ok(group="engineering", classes=(b"OU=engineering;",)))
    pc = rig.connect(rig.add_pc("vpnuser1"))
    assert pc.up and pc.address is not None
    assert ipaddress.IPv4Address(pc.address) in ipaddress.IPv4Network("10.40.2.0/24")
    (got,) = [e for e in pc.events if isinstance(e, ev.ModeConfigReceived)]
    assert [str(n) for n in got.config.split_include] == ["192.168.2.0/25"]
    assert [s["group"] for s in rig.sessions()] == ["engineering"]
    assert rig.lines("RADIUS Class puts vpnuser1 in group engineering (logged in to vpngroup)")
    (request,) = backend.requests
    assert request.source == PAT and request.port > 0  # Calling-Station-Id: address:port


def test_unknown_class_group_keeps_the_login_group() -> None:
    rig, _ = rig_with(ok(group="nosuchgroup"))
    pc = rig.connect(rig.add_pc("vpnuser1"))
    assert pc.up and [s["group"] for s in rig.sessions()] == ["vpngroup"]
    assert rig.lines("RADIUS Class names group nosuchgroup, which is not configured")


def test_framed_ip_address_is_assigned_and_outside_the_pool_falls_back() -> None:
    rig, _ = rig_with(ok(address=ipaddress.IPv4Address("10.40.1.77")))
    pc = rig.connect(rig.add_pc("vpnuser1"))
    assert pc.address == "10.40.1.77"
    other = rig.connect(rig.add_pc("vpnuser2"))  # the same address is taken: the pool
    assert other.up and other.address not in (None, "10.40.1.77")
    assert rig.lines("RADIUS Framed-IP-Address 10.40.1.77 of vpnuser2 is not free")


def test_reply_message_reaches_the_client_as_the_banner() -> None:
    rig, _ = rig_with(ok(message="Welcome from RADIUS"))
    pc = rig.connect(rig.add_pc("vpnuser1"))
    (got,) = [e for e in pc.events if isinstance(e, ev.ModeConfigReceived)]
    assert got.config.banner.startswith("Welcome from RADIUS")


def test_session_timeout_ends_the_session() -> None:
    rig, _ = rig_with(ok(session_timeout=60))
    pc = rig.connect(rig.add_pc("vpnuser1"))
    assert pc.up
    rig.advance(30)
    rig.core.housekeeping(rig.now)
    assert rig.sessions()
    rig.advance(31)
    rig.core.housekeeping(rig.now)
    rig.settle()
    assert not rig.sessions()
    assert rig.lines("session of vpnuser1 ended: session timeout (RADIUS Session-Timeout)")
    assert any(isinstance(e, ev.SADeleted) for e in pc.events)


def test_coa_session_timeout_replaces_the_first_one() -> None:
    rig, _ = rig_with(ok(session_timeout=60))
    rig.connect(rig.add_pc("vpnuser1"))
    (s,) = rig.core.sessions.all()
    assert rig.core.set_session_timeout(s.key, 600)
    rig.advance(61)
    rig.core.housekeeping(rig.now)
    assert rig.sessions()


def test_silent_radius_server_refuses_the_client_and_says_which() -> None:
    def silent(r: AuthRequest) -> AuthResult:
        raise BackendError(f"RADIUS server {SERVER} did not answer (3 tries of 1 s)")

    rig, _ = rig_with(silent)
    pc = rig.connect(rig.add_pc("vpnuser1"))
    done = [e for e in pc.events if isinstance(e, ev.XauthCompleted)]
    assert len(done) == 1 and not done[0].ok and not pc.up
    line, = rig.lines("login of vpnuser1 refused: RADIUS server 192.168.2.20:1812 did not"
                      " answer")
    assert "SEV=2" in line
    assert rig.lines("failed authentication: authentication server unavailable")
    assert not rig.sessions()


def test_disconnect_ends_one_session_and_keeps_the_other() -> None:
    rig, _ = rig_with(ok())
    a = rig.connect(rig.add_pc("vpnuser1"))
    b = rig.connect(rig.add_pc("vpnuser2"))
    (s,) = [s for s in rig.core.sessions.all() if s.user == "vpnuser1"]
    assert rig.core.disconnect(s.key, "RADIUS Disconnect-Request from 192.168.2.20")
    rig.settle()
    assert [x["user"] for x in rig.sessions()] == ["vpnuser2"] and b.up
    assert any(isinstance(e, ev.SADeleted) for e in a.events)
    assert rig.lines("session of vpnuser1 ended: RADIUS Disconnect-Request from 192.168.2.20")
    assert [g.username for g in rig.core.grants.values()] == ["vpnuser2"]
