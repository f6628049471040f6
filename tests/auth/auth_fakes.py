"""Shared by the tests/auth tests: a configuration with users, a fake clock and
sleep for `Lockout`, and a scripted fake backend."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from vpnhub.auth import AuthReason, AuthRequest, AuthResult
from vpnhub.auth.users import hash_password
from vpnhub.config import Config, Secret, parse_config

SRC = "198.51.100.7"
FAST_LN = 4  # cheap scrypt for tests; the default is ln=15


def config(extra_users: str = "") -> Config:
    hashed = hash_password("hashedpass", log2_n=FAST_LN)
    return parse_config(
        '[concentrator]\npublic_address = "203.0.113.50"\nprivate_networks = ["192.168.2.0/24"]\n'
        "[limits]\nxauth_max_failures = 3\nxauth_lockout_seconds = 300\n"
        '[[group]]\nname = "ciscovpn"\npsk = "labgroupsecret"\naddress_pool = "10.40.1.0/24"\n'
        '[[group]]\nname = "other"\npsk = "x"\naddress_pool = "10.40.2.0/24"\n'
        '[[user]]\nname = "vpnclient1"\npassword = "userpass1"\ngroup = "ciscovpn"\n'
        f'[[user]]\nname = "hashed"\npassword_hash = "{hashed}"\ngroup = "ciscovpn"\n' + extra_users
    )


def request(
    user: str, password: str | bytes | Secret, *, group: str = "ciscovpn", source: str = SRC
) -> AuthRequest:
    secret = password if isinstance(password, Secret) else Secret(password)
    return AuthRequest(user, secret, group, source)


class FakeTime:
    """`clock` for Lockout's policy, and a `sleep` that only records the delay."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


class FakeBackend:
    """Answers by a rule; counts the calls (a locked attempt must make none)."""

    def __init__(self, answer: Callable[[AuthRequest], AuthReason]) -> None:
        self.answer = answer
        self.calls: list[str] = []
        self.pause: asyncio.Event | None = None  # when set: wait for it before answering

    async def authenticate(self, request: AuthRequest) -> AuthResult:
        self.calls.append(request.user)
        if self.pause is not None:
            await self.pause.wait()
        await asyncio.sleep(0)  # a real backend yields to the loop while it works
        return AuthResult(self.answer(request), request.user, group="ciscovpn")


def alice_pw(request: AuthRequest) -> AuthReason:
    """A backend that knows one user, alice, with password "pw"."""
    if request.user != "alice":
        return AuthReason.UNKNOWN_USER
    return AuthReason.OK if request.password.reveal() == b"pw" else AuthReason.BAD_PASSWORD
