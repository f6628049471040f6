"""XAUTH against RADIUS (issue 14): `RadiusAuthenticator` and its transport
`RadiusClient` against an in-process pyrad server (radius_fake.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from pyrad import packet as rp
from radius_fake import FakeRadius, accept, check_password

from vpnhub.auth import AuthReason, AuthRequest, BackendError, build_authenticator
from vpnhub.auth.radius import RadiusAuthenticator, class_group
from vpnhub.auth.radiusclient import RadiusClient, RadiusUnavailable
from vpnhub.config import RadiusConfig, RadiusServerConfig, Secret, parse_config

PUBLIC = ipaddress.IPv4Address("203.0.113.50")
SECRET = b"radius-shared-secret"


def req(user: str = "alice", password: str = "pw1", port: int = 26953) -> AuthRequest:
    return AuthRequest(user, Secret(password), "vpngroup", "203.0.113.78", port)


def run(make: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(make())  # type: ignore[arg-type]


async def _auth(servers: list[RadiusServerConfig], request: AuthRequest) -> Any:
    auth = RadiusAuthenticator(RadiusConfig(servers=tuple(servers)), PUBLIC)
    try:
        return await auth.authenticate(request)
    finally:
        auth.close()


def test_accept_carries_class_address_timeout_and_message() -> None:
    async def main() -> tuple[Any, FakeRadius]:
        server = await FakeRadius(SECRET, check_password(
            "pw1", Class=b"OU=engineering;", Framed_IP_Address="10.40.2.9",
            Session_Timeout=3600, Reply_Message="Welcome, alice")).start()
        try:
            return await _auth([server.config()], req()), server
        finally:
            server.close()

    result, server = run(main)
    assert result.reason is AuthReason.OK and result.group == "engineering"
    assert result.address == ipaddress.IPv4Address("10.40.2.9")
    assert result.session_timeout == 3600 and result.message == "Welcome, alice"
    assert result.classes == (b"OU=engineering;",) and result.server.startswith("127.0.0.1:")
    (sent,) = server.received
    assert sent.code == rp.AccessRequest
    assert sent["User-Name"] == ["alice"] and sent.PwDecrypt(sent["User-Password"][0]) == "pw1"
    assert sent["NAS-IP-Address"] == ["203.0.113.50"] and sent["NAS-Identifier"] == ["vpnhub"]
    assert sent["Calling-Station-Id"] == ["203.0.113.78:26953"]
    assert sent["NAS-Port-Type"] == ["Virtual"]
    # RFC 3579 3.2: Message-Authenticator sent (checked by the fake), the first attribute
    assert server.raw[0][20] == 80


def test_reject_is_a_wrong_password() -> None:
    async def main() -> Any:
        server = await FakeRadius(SECRET, check_password("right")).start()
        try:
            return await _auth([server.config()], req(password="wrong"))
        finally:
            server.close()

    result = run(main)
    assert result.reason is AuthReason.BAD_PASSWORD and not result.ok


def test_silent_server_is_named_and_bounded_then_next_server_answers() -> None:
    async def main() -> tuple[Any, float, Any, float]:
        silent = await FakeRadius(SECRET, lambda r: None).start()
        good = await FakeRadius(SECRET, accept()).start()
        try:
            t0 = time.monotonic()
            with pytest.raises(RadiusUnavailable) as exc:
                await _auth([silent.config(timeout=0.2, retries=1)], req())
            t1 = time.monotonic()
            ok = await _auth([silent.config(timeout=0.2, retries=1), good.config()], req())
            return exc.value, t1 - t0, ok, time.monotonic() - t1
        finally:
            silent.close()
            good.close()

    err, took, ok, took2 = run(main)
    assert isinstance(err, BackendError)
    assert "did not answer (2 tries of 0.2 s)" in str(err) and "127.0.0.1:" in str(err)
    assert "wrong shared secret" in str(err)
    assert 0.35 < took < 1.5 and ok.reason is AuthReason.OK and took2 < 1.5


def test_wrong_shared_secret_is_reported_and_never_accepted() -> None:
    async def main() -> Any:
        server = await FakeRadius(b"the-servers-secret", accept()).start()
        cfg = dataclasses.replace(server.config(), secret=Secret(b"another-secret"))
        # the fake checks the Message-Authenticator with its secret: let it answer anyway
        server.datagram_received = _answer_without_checks(server)  # type: ignore[method-assign]
        try:
            with pytest.raises(RadiusUnavailable) as exc:
                await _auth([cfg], req())
            return exc.value
        finally:
            server.close()

    err = run(main)
    assert "bad Response Authenticator or Message-Authenticator (wrong shared secret?)" in str(err)
    assert "secret" not in str(err).replace("shared secret", "")


def _answer_without_checks(server: FakeRadius) -> Callable[[bytes, Any], None]:
    def received(data: bytes, addr: Any) -> None:
        r = rp.AuthPacket(secret=server.secret, dict=server_dict(), packet=data)
        assert server.transport is not None
        server.transport.sendto(r.CreateReply().ReplyPacket(), addr)
    return received


def server_dict() -> Any:
    from vpnhub.auth.radiusdict import radius_dictionary
    return radius_dictionary()


def test_reply_without_message_authenticator_is_dropped() -> None:
    """RFC 3579 3.2 / BlastRADIUS: an Access-Accept without a Message-Authenticator
    is not trusted, even with a right Response Authenticator."""
    def unsigned(r: Any) -> Any:
        reply = r.CreateReply(message_authenticator=False)
        return reply

    async def main() -> Any:
        server = await FakeRadius(SECRET, unsigned).start()
        try:
            with pytest.raises(RadiusUnavailable) as exc:
                await _auth([server.config(timeout=0.1, retries=0)], req())
            return exc.value
        finally:
            server.close()

    assert "answered 1 time(s) with a bad" in str(run(main))


def test_forged_reply_does_not_end_the_request() -> None:
    """A datagram with the right Identifier but a wrong authenticator is dropped and
    the real answer that follows is taken."""
    def forged_then_real(r: Any) -> list[bytes]:
        forged = bytearray(r.CreateReply().ReplyPacket())
        forged[0] = rp.AccessReject
        return [bytes(forged), r.CreateReply().ReplyPacket()]

    async def main() -> Any:
        server = await FakeRadius(SECRET, lambda r: None).start()
        original = server.datagram_received

        def received(data: bytes, addr: Any) -> None:
            original(data, addr)
            assert server.transport is not None
            for d in forged_then_real(server.received[-1]):
                server.transport.sendto(d, addr)
        server.datagram_received = received  # type: ignore[method-assign]
        try:
            return await _auth([server.config(timeout=1.0, retries=0)], req())
        finally:
            server.close()

    assert run(main).reason is AuthReason.OK


def test_identifiers_beyond_256_in_flight_use_another_socket() -> None:
    async def main() -> tuple[list[Any], int, set[int]]:
        server = await FakeRadius(SECRET, accept()).start()
        held: list[tuple[Any, tuple[str, int]]] = []
        original = server.datagram_received

        def hold(data: bytes, addr: Any) -> None:  # answer all at once, later
            held.append((data, addr))
            if len(held) == 300:
                for d, a in held:
                    original(d, a)
        server.datagram_received = hold  # type: ignore[method-assign]
        client = RadiusClient((server.config(timeout=2.0, retries=0),), "auth")
        auth = RadiusAuthenticator(RadiusConfig(), PUBLIC, client)
        try:
            results = await asyncio.gather(*(auth.authenticate(req(f"u{i}")) for i in range(300)))
            ports = {a[1] for _, a in held}
            return list(results), len(client.servers[0].sockets), ports
        finally:
            auth.close()
            server.close()

    results, sockets, ports = run(main)
    assert all(r.reason is AuthReason.OK for r in results)
    assert sockets == 2 and len(ports) == 2


def test_class_group_forms() -> None:
    assert class_group((b"OU=sales;",)) == "sales"
    assert class_group((b"OU=sales",)) == "sales"
    assert class_group((b"something", b"OU=eng;x")) == "eng"
    assert class_group((b"CN=x",)) is None and class_group(()) is None


def test_build_authenticator_routes_radius_groups() -> None:
    async def main() -> tuple[Any, Any, int]:
        server = await FakeRadius(SECRET, check_password("pw1")).start()
        cfg = parse_config(
            '[concentrator]\npublic_address = "203.0.113.50"\n'
            'private_networks = ["192.168.2.0/24"]\n'
            f'[[radius.server]]\naddress = "127.0.0.1"\nauth_port = {server.port}\n'
            f'secret = "{SECRET.decode()}"\ntimeout = 0.5\n'
            '[[group]]\nname = "local"\npsk = "x"\naddress_pool = "10.40.1.0/24"\n'
            '[[group]]\nname = "vpngroup"\npsk = "y"\naddress_pool = "10.40.2.0/24"\n'
            'xauth = "radius"\n'
            '[[user]]\nname = "bob"\npassword = "bobpw"\ngroup = "local"\n')
        auth = build_authenticator(cfg)
        try:
            radius = await auth.authenticate(req())
            local = await auth.authenticate(AuthRequest("bob", Secret("bobpw"), "local",
                                                        "203.0.113.78", 1))
            return radius, local, len(server.received)
        finally:
            auth.close()
            server.close()

    radius, local, asked = run(main)
    assert radius.ok and radius.server and local.ok and not local.server and asked == 1


def test_radius_group_needs_a_server() -> None:
    from vpnhub.config import ConfigError
    with pytest.raises(ConfigError, match=r"add at least one \[\[radius.server\]\]"):
        parse_config('[concentrator]\npublic_address = "203.0.113.50"\n'
                     'private_networks = ["192.168.2.0/24"]\n'
                     '[[group]]\nname = "g"\npsk = "y"\naddress_pool = "10.40.2.0/24"\n'
                     'xauth = "radius"\n')


def test_old_server_without_message_authenticator_when_allowed() -> None:
    """`require_message_authenticator = false`: an unsigned answer of an old server is
    taken (its Response Authenticator is still checked)."""
    async def main() -> Any:
        server = await FakeRadius(SECRET, lambda r: r.CreateReply(
            message_authenticator=False)).start()
        cfg = dataclasses.replace(server.config(), require_message_authenticator=False)
        try:
            return await _auth([cfg], req())
        finally:
            server.close()

    assert run(main).reason is AuthReason.OK


# ------------------------------------------------ issue 14: servers per group
def _two_server_config(global_port: int, eng_port: int) -> str:
    """vpngroup uses the global [[radius.server]]; eng its own [[group.radius_server]]
    (another server, another secret)."""
    return ('[concentrator]\npublic_address = "203.0.113.50"\n'
            'private_networks = ["192.168.2.0/24"]\n'
            f'[[radius.server]]\naddress = "127.0.0.1"\nauth_port = {global_port}\n'
            f'secret = "{SECRET.decode()}"\ntimeout = 0.5\nretries = 0\n'
            '[[group]]\nname = "vpngroup"\npsk = "y"\naddress_pool = "10.40.2.0/24"\n'
            'xauth = "radius"\n'
            '[[group]]\nname = "eng"\npsk = "z"\naddress_pool = "10.40.3.0/24"\n'
            'xauth = "radius"\n'
            f'[[group.radius_server]]\naddress = "127.0.0.1"\nauth_port = {eng_port}\n'
            'secret = "eng-secret"\ntimeout = 0.5\nretries = 0\n')


def test_a_group_with_its_own_servers_asks_only_them() -> None:
    async def main() -> tuple[Any, Any, FakeRadius, FakeRadius]:
        shared = await FakeRadius(SECRET, check_password("pw1")).start()
        eng = await FakeRadius(b"eng-secret", check_password("engpw")).start()
        cfg = parse_config(_two_server_config(shared.port, eng.port))
        assert cfg.groups[1].radius_servers[0].auth_port == eng.port
        auth = build_authenticator(cfg)
        try:
            a = await auth.authenticate(req())
            b = await auth.authenticate(AuthRequest("carol", Secret("engpw"), "eng",
                                                    "203.0.113.78", 2))
            return a, b, shared, eng
        finally:
            auth.close()
            shared.close()
            eng.close()

    a, b, shared, eng = run(main)
    assert a.ok and a.realm == "" and a.server == f"127.0.0.1:{shared.port}"
    assert b.ok and b.realm == "eng" and b.server == f"127.0.0.1:{eng.port}"
    assert [r["User-Name"] for r in shared.received] == [["alice"]]
    assert [r["User-Name"] for r in eng.received] == [["carol"]]


def test_servers_per_group_config_errors() -> None:
    from vpnhub.config import ConfigError
    head = ('[concentrator]\npublic_address = "203.0.113.50"\n'
            'private_networks = ["192.168.2.0/24"]\n')
    own = '[[group.radius_server]]\naddress = "192.168.2.21"\nsecret = "s2"\n'
    only_own = head + '[[group]]\nname = "eng"\npsk = "z"\naddress_pool = "10.40.3.0/24"\n' \
        'xauth = "radius"\n' + own
    cfg = parse_config(only_own)  # no global server needed: every radius group has its own
    assert cfg.radius.servers == () and str(cfg.groups[0].radius_servers[0].address) \
        == "192.168.2.21"
    with pytest.raises(ConfigError, match=r"radius\.server: group\(s\) sales use xauth ="
                                          r" \"radius\" without servers of their own"):
        parse_config(only_own + '[[group]]\nname = "sales"\npsk = "y"\n'
                     'address_pool = "10.40.4.0/24"\nxauth = "radius"\n')
    with pytest.raises(ConfigError, match=r"group\[0\]\.radius_server: .*checked locally"):
        parse_config(head + '[[group]]\nname = "g"\npsk = "z"\naddress_pool = "10.40.3.0/24"\n'
                     + own)
    with pytest.raises(ConfigError, match=r"group\[0\]\.radius_server\[0\]\.secret"):
        parse_config(head + '[[group]]\nname = "g"\npsk = "z"\naddress_pool = "10.40.3.0/24"\n'
                     'xauth = "radius"\n[[group.radius_server]]\naddress = "10.1.1.1"\n'
                     'secret = ""\n')
    with pytest.raises(ConfigError, match=r"unknown key 'port'"):
        parse_config(only_own.replace('secret = "s2"', 'secret = "s2"\nport = 1'))


@pytest.mark.parametrize(("user", "password"), [("alice", "p" * 129), ("a" * 254, "pw1"),
                                              ("", "pw1")])
def test_credentials_pap_cannot_carry_are_a_wrong_password(user: str, password: str) -> None:
    """A password over 128 octets (RFC 2865 5.2), a name over 253 or empty (5.1) is the
    peer's input: refused as an Access-Reject would be, not an exception that leaves
    the XAUTH unanswered, and never sent."""
    async def main() -> tuple[Any, FakeRadius]:
        server = await FakeRadius(SECRET, check_password("pw1")).start()
        try:
            return await _auth([server.config()], req(user, password)), server
        finally:
            server.close()

    result, server = run(main)
    assert result.reason is AuthReason.BAD_PASSWORD and not result.ok
    assert server.received == []


def test_socket_repr_shows_no_shared_secret() -> None:
    """asyncio's exception handler logs a transport's protocol by its repr (the
    'protocol' of a fatal transport error): the shared secret must not be in it."""
    from vpnhub.auth.radiusclient import _Socket
    from vpnhub.auth.radiusdict import radius_dictionary

    assert "radius-shared-secret" not in repr(_Socket(radius_dictionary(), SECRET))


def test_server_whose_socket_cannot_be_opened_is_named_then_next_server_answers() -> None:
    """A server address the kernel will not send to (here the broadcast address, EACCES;
    in service ENETUNREACH without a route) raised OSError out of authenticate(): the
    XAUTH was never answered. It is one more failed server, named, and the next one
    is asked (a refusal, not a hang)."""
    bad = RadiusServerConfig(ipaddress.IPv4Address("255.255.255.255"), Secret(SECRET))

    async def main() -> tuple[Any, Any]:
        good = await FakeRadius(SECRET, accept()).start()
        try:
            with pytest.raises(RadiusUnavailable) as exc:
                await _auth([bad], req())
            return exc.value, await _auth([bad, good.config()], req())
        finally:
            good.close()

    err, ok = run(main)
    assert "RADIUS server 255.255.255.255:1812 cannot be reached" in str(err), str(err)
    assert ok.reason is AuthReason.OK
