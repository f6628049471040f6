"""Issue 14: RADIUS accounting (RFC 2866) driven by session events, and the RFC 5176
Disconnect / CoA server, on the core in memory (tests/concentrator/core_harness.py).

Accounting packets are built by the real code and captured before the wire (the
transport is tests/auth/test_auth_radius.py's business); the DAE server gets real
UDP datagrams from pyrad on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable, Coroutine
from typing import Any

from core_harness import PAT, CoreRig
from hypothesis import given, settings
from hypothesis import strategies as st
from pyrad import packet as rp
from test_core_radius import SERVER, ok, rig_with

from vpnhub.auth.api import AuthReason, AuthRequest, AuthResult
from vpnhub.auth.radius import NasIdentity
from vpnhub.auth.radiusdict import radius_dictionary
from vpnhub.concentrator.accounting import (
    RadiusAccounting,
    session_id,
    session_key,
    terminate_cause,
)
from vpnhub.concentrator.dae import DaeServer
from vpnhub.config import RadiusConfig, RadiusDaeClientConfig, Secret

PUBLIC = ipaddress.IPv4Address("203.0.113.50")
DAE_SECRET = b"dae-secret"


class CapturingClient:
    """Stands in for RadiusClient: builds each request with a secret and keeps it."""

    def __init__(self) -> None:
        self.packets: list[Any] = []

    async def request(self, build: Any) -> tuple[str, Any]:
        p = build(b"acct-secret")
        raw = p.RequestPacket()
        self.packets.append(rp.AcctPacket(secret=b"acct-secret", dict=radius_dictionary(),
                                          packet=raw))
        return SERVER, None

    def close(self) -> None:
        pass


def _run_now(coro: Coroutine[Any, Any, None]) -> None:
    try:
        coro.send(None)
    except StopIteration:
        return
    raise AssertionError("the capturing client never waits")


def accounting_rig(answer: Callable[[AuthRequest], AuthResult] | None = None,
                   interim: int = 60, **config: Any
                   ) -> tuple[CoreRig, CapturingClient, RadiusAccounting]:
    rig, _ = rig_with(answer or ok(classes=(b"OU=vpngroup;",)), **config)
    client = CapturingClient()
    acct = RadiusAccounting(client=client, nas=NasIdentity(RadiusConfig(), PUBLIC),  # type: ignore[arg-type]
                            interim=interim, grants=rig.core.grants, store=rig.core.sessions,
                            log=rig.log, clock=rig.clock, wall=rig.clock, spawn=_run_now)
    rig.core.renewal_hook = acct.renewed
    return rig, client, acct


def _status(p: Any) -> str:
    return str(p["Acct-Status-Type"][0])


def test_start_interim_stop_with_counters_gigawords_and_cause() -> None:
    rig, client, acct = accounting_rig()
    pc = rig.connect(rig.add_pc("vpnuser1"))
    (s,) = rig.core.sessions.all()
    (start,) = client.packets
    assert _status(start) == "Start" and start.VerifyAcctRequest()
    assert start["Acct-Session-Id"] == [session_id(s.key)] and start["User-Name"] == ["vpnuser1"]
    assert start["Framed-IP-Address"] == [pc.address]
    assert start["Calling-Station-Id"] == [f"{PAT}:{s.public_port}"]
    assert start["NAS-IP-Address"] == ["203.0.113.50"] and start["Class"] == [b"OU=vpngroup;"]
    rig.core.sessions.update(s.key, bytes_rx=5 * 2**32 + 7, bytes_tx=1234, packets_rx=9,
                             packets_tx=8)
    rig.advance(61)
    acct.tick(rig.now)
    interim = client.packets[-1]
    assert _status(interim) == "Interim-Update"
    assert interim["Acct-Input-Octets"] == [7] and interim["Acct-Input-Gigawords"] == [5]
    assert interim["Acct-Output-Octets"] == [1234] and interim["Acct-Output-Gigawords"] == [0]
    assert interim["Acct-Input-Packets"] == [9] and interim["Acct-Output-Packets"] == [8]
    assert interim["Acct-Session-Time"][0] >= 60
    assert rig.core.disconnect(s.key, "RADIUS Disconnect-Request from 192.168.2.20")
    rig.settle()
    stop = client.packets[-1]
    assert _status(stop) == "Stop" and stop["Acct-Terminate-Cause"] == ["Admin-Reset"]
    assert stop["Acct-Input-Gigawords"] == [5] and stop["Framed-IP-Address"] == [pc.address]
    assert [_status(p) for p in client.packets] == ["Start", "Interim-Update", "Stop"]
    acct.tick(rig.now + 1000)  # nothing for a session that ended
    assert len(client.packets) == 3


def test_phase1_rekey_is_one_accounting_session_with_its_address_and_timeout() -> None:
    """A phase 1 rekey (IKEv1: a new phase 1 taking the session over) is no new
    login: no Stop and Start, the same Acct-Session-Id, the same Framed-IP-Address,
    and the Session-Timeout still counts from the first login."""
    rig, client, acct = accounting_rig(
        ok(address=ipaddress.IPv4Address("10.40.1.77"), session_timeout=1000),
        concentrator_extra="ike_lifetime = 600")
    pc = rig.connect(rig.add_pc("vpnuser1"))
    first_sa = pc.sa
    for _ in range(10):  # 600 s, an interim update every 60
        rig.advance(60)
        rig.core.housekeeping(rig.now)
        acct.tick(rig.now)
    assert pc.sa is not first_sa and rig.lines("phase 1 rekey: new IKE SA of vpnuser1")
    (s,) = rig.sessions()
    assert s["assigned_ip"] == "10.40.1.77"
    kinds = [_status(p) for p in client.packets]
    assert kinds[0] == "Start" and set(kinds[1:]) == {"Interim-Update"} and len(kinds) >= 9
    assert len({p["Acct-Session-Id"][0] for p in client.packets}) == 1
    (key,) = [x.key for x in rig.core.sessions.all()]
    assert acct.key_of(client.packets[0]["Acct-Session-Id"][0]) == key
    rig.advance(401)  # 1001 s after the login: the timeout of the first login
    rig.core.housekeeping(rig.now)
    rig.settle()
    assert not rig.sessions()
    stop = client.packets[-1]
    assert _status(stop) == "Stop" and stop["Acct-Terminate-Cause"] == ["Session-Timeout"]
    assert stop["Acct-Session-Id"] == client.packets[0]["Acct-Session-Id"]


def test_local_sessions_are_not_accounted() -> None:
    """A user the local table let in (no RADIUS server answered for it): no accounting."""
    rig, client, acct = accounting_rig(lambda r: AuthResult(AuthReason.OK, r.user))
    rig.connect(rig.add_pc("vpnuser1"))
    assert client.packets == [] and not acct.started


def test_terminate_causes_and_session_ids() -> None:
    assert terminate_cause("deleted by peer") == "User-Request"
    assert terminate_cause("dead peer: no answer to 5 DPD R-U-THERE messages in 30 s") == \
        "Lost-Carrier"
    assert terminate_cause("session timeout (RADIUS Session-Timeout)") == "Session-Timeout"
    assert terminate_cause("logged out by administrator") == "Admin-Reset"
    assert terminate_cause("concentrator shutting down") == "Admin-Reboot"
    assert terminate_cause("idle timeout") == "Idle-Timeout"
    assert terminate_cause("IKE SA lifetime expired") == "NAS-Request"
    key = (b"\x01" * 8, b"\x02" * 8)
    assert session_key(session_id(key)) == key
    assert session_key("zz") is None and session_key("00") is None


# ---------------------------------------------------------------- RFC 5176


def _dae_request(code: int, secret: bytes = DAE_SECRET, **attrs: Any) -> bytes:
    p = rp.CoAPacket(code=code, secret=secret, dict=radius_dictionary())
    for name, value in attrs.items():
        p[name.replace("_", "-")] = value
    p.add_message_authenticator()
    return bytes(p.RequestPacket())


async def _exchange(dae: DaeServer, data: bytes, wait: float = 0.5) -> Any | None:
    loop = asyncio.get_running_loop()
    got: asyncio.Future[bytes] = loop.create_future()

    class Peer(asyncio.DatagramProtocol):
        def datagram_received(self, d: bytes, addr: Any) -> None:
            if not got.done():
                got.set_result(d)

    assert dae.transport is not None
    port = dae.transport.get_extra_info("sockname")[1]
    transport, _ = await loop.create_datagram_endpoint(Peer, remote_addr=("127.0.0.1", port))
    try:
        transport.sendto(data)
        done, _ = await asyncio.wait({got}, timeout=wait)
        if not done:
            return None
        reply = rp.CoAPacket(secret=DAE_SECRET, dict=radius_dictionary(), packet=got.result())
        return reply
    finally:
        transport.close()


def _dae(rig: CoreRig, nas_ip: str = "203.0.113.50") -> DaeServer:
    clients = (RadiusDaeClientConfig(ipaddress.IPv4Address("127.0.0.1"), Secret(DAE_SECRET)),)
    radius = RadiusConfig(nas_ip_address=ipaddress.IPv4Address(nas_ip))
    return DaeServer(rig.core, clients, NasIdentity(radius, PUBLIC))


def test_disconnect_request_ends_the_named_session_only() -> None:
    rig, client, _ = accounting_rig()
    a = rig.connect(rig.add_pc("vpnuser1"))
    b = rig.connect(rig.add_pc("vpnuser2"))
    (sa,) = [s for s in rig.core.sessions.all() if s.user == "vpnuser1"]

    async def main() -> list[Any]:
        dae = _dae(rig)
        await dae.start("127.0.0.1", 0)
        try:
            replies = [
                await _exchange(dae, _dae_request(rp.DisconnectRequest, User_Name="nobody")),
                await _exchange(dae, _dae_request(rp.DisconnectRequest,
                                                  NAS_IP_Address="192.0.2.1",
                                                  User_Name="vpnuser1")),
                await _exchange(dae, _dae_request(rp.DisconnectRequest,
                                                  NAS_Identifier="vpnhub")),
                await _exchange(dae, _dae_request(rp.DisconnectRequest, User_Name="vpnuser1",
                                                  Reply_Message="x")),
                await _exchange(dae, _dae_request(rp.DisconnectRequest, secret=b"wrong",
                                                  User_Name="vpnuser1"), wait=0.3),
                await _exchange(dae, _dae_request(
                    rp.DisconnectRequest, User_Name="vpnuser1",
                    Calling_Station_Id=f"{PAT}:{sa.public_port}",
                    Framed_IP_Address=a.address)),
            ]
            assert dae.drops == {"bad_authenticator": 1}
            return replies
        finally:
            dae.close()

    unknown, mismatch, missing, unsupported, forged, done = asyncio.run(main())
    assert unknown.code == rp.DisconnectNAK and unknown["Error-Cause"] == \
        ["Session-Context-Not-Found"]
    assert mismatch.code == rp.DisconnectNAK and mismatch["Error-Cause"] == \
        ["NAS-Identification-Mismatch"]
    assert missing.code == rp.DisconnectNAK and missing["Error-Cause"] == ["Missing-Attribute"]
    assert unsupported.code == rp.DisconnectNAK and unsupported["Error-Cause"] == \
        ["Unsupported-Attribute"]
    assert forged is None  # a wrong secret gets no answer at all
    assert done.code == rp.DisconnectACK
    rig.settle()
    assert [s["user"] for s in rig.sessions()] == ["vpnuser2"] and b.up
    assert rig.lines("session of vpnuser1 ended: RADIUS Disconnect-Request from 127.0.0.1")
    assert rig.lines("RADIUS Disconnect-Request from 127.0.0.1: Disconnect-ACK (1 session(s))")
    assert str(client.packets[-1]["Acct-Terminate-Cause"][0]) == "Admin-Reset"


def test_coa_session_timeout_and_unsupported_coa() -> None:
    rig, _, _ = accounting_rig()
    rig.connect(rig.add_pc("vpnuser1"))
    (s,) = rig.core.sessions.all()

    async def main() -> tuple[Any, Any, Any]:
        dae = _dae(rig)
        await dae.start("127.0.0.1", 0)
        try:
            coa = await _exchange(dae, _dae_request(rp.CoARequest,
                                                    Acct_Session_Id=session_id(s.key),
                                                    Session_Timeout=30))
            bare = await _exchange(dae, _dae_request(rp.CoARequest, User_Name="vpnuser1"))
            again = await _exchange(dae, _dae_request(rp.CoARequest, User_Name="vpnuser1",
                                                      Session_Timeout=0))
            return coa, bare, again
        finally:
            dae.close()

    coa, bare, again = asyncio.run(main())
    assert coa.code == rp.CoAACK
    assert bare.code == rp.CoANAK and bare["Error-Cause"] == ["Unsupported-Attribute"]
    assert again.code == rp.CoANAK
    rig.advance(31)
    rig.core.housekeeping(rig.now)
    rig.settle()
    assert not rig.sessions()
    assert rig.lines("session of vpnuser1 ended: session timeout (RADIUS Session-Timeout)")


def test_unknown_dae_client_is_dropped() -> None:
    rig, _, _ = accounting_rig()
    dae = _dae(rig)
    dae.secrets = {"192.0.2.9": DAE_SECRET}  # someone else: 127.0.0.1 is not a client

    async def main() -> Any:
        await dae.start("127.0.0.1", 0)
        try:
            return await _exchange(dae, _dae_request(rp.DisconnectRequest, User_Name="x"),
                                   wait=0.3)
        finally:
            dae.close()

    assert asyncio.run(main()) is None and dae.drops == {"unknown_client": 1}


# ---------------------------------------------------------------- hostile datagrams

_RIG, _, _ = accounting_rig()

@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.sampled_from([rp.DisconnectRequest, rp.CoARequest, 1]))
def test_dae_junk_is_dropped_never_raises(junk: bytes, code: int) -> None:
    """Every datagram is hostile: junk from a configured client (a right code byte, a
    length that lies) is dropped and counted, nothing raises, nothing is answered."""
    dae = _dae(_RIG)
    sent: list[bytes] = []
    dae.transport = type("T", (), {"sendto": lambda self, d, a=None: sent.append(d)})()  # type: ignore[assignment]
    data = bytes([code]) + junk
    dae.datagram_received(data, ("127.0.0.1", 3799))
    assert not sent and sum(dae.drops.values()) == 1


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=200))
def test_radius_client_junk_replies_never_raise(junk: bytes) -> None:
    """Replies with the Identifier in flight but anything else wrong are dropped."""
    from vpnhub.auth.radiusclient import _Pending, _Socket

    async def main() -> tuple[bool, int]:
        sock = _Socket(radius_dictionary(), b"secret")
        request = rp.AuthPacket(secret=b"secret", dict=radius_dictionary(), id=7)
        request.add_message_authenticator()
        request.RequestPacket()
        pending = _Pending(request, asyncio.get_running_loop().create_future())
        sock.pending[7] = pending
        data = bytes([rp.AccessAccept, 7]) + junk
        sock.datagram_received(data, ("127.0.0.1", 1812))
        return pending.answer.done(), sock.dropped

    answered, dropped = asyncio.run(main())
    assert not answered and dropped == 1


def test_accounting_goes_to_the_servers_that_let_the_session_in() -> None:
    """Issue 14, servers per group: a session accepted by a group's own
    [[group.radius_server]]s (realm = the group) is accounted there, not globally."""
    rig, _ = rig_with(ok(classes=(b"OU=vpngroup;",), realm="vpngroup"))
    shared, own = CapturingClient(), CapturingClient()
    RadiusAccounting(client=shared, realms={"vpngroup": own},  # type: ignore[arg-type, dict-item]
                     nas=NasIdentity(RadiusConfig(), PUBLIC), interim=60,
                     grants=rig.core.grants, store=rig.core.sessions, log=rig.log,
                     clock=rig.clock, wall=rig.clock, spawn=_run_now)
    rig.connect(rig.add_pc("vpnuser1"))
    (s,) = rig.core.sessions.all()
    assert rig.core.disconnect(s.key, "logged out by administrator")
    rig.settle()
    assert [_status(p) for p in own.packets] == ["Start", "Stop"] and not shared.packets


def test_retransmission_while_the_first_is_carried_out_is_not_carried_out_again() -> None:
    """RFC 5080 2.2.2: a retransmission (same client, Identifier, authenticator) that
    arrives while the first copy is still being carried out (the counters refresh
    before a Disconnect) is not carried out a second time; the DAC gets one answer,
    and a later retransmission gets it again from the cache."""
    rig, _, _ = accounting_rig()
    rig.connect(rig.add_pc("vpnuser1"))
    refreshes: list[int] = []
    sent: list[bytes] = []

    async def main() -> None:
        release = asyncio.Event()

        async def refresh() -> None:
            refreshes.append(1)
            await release.wait()

        clients = (RadiusDaeClientConfig(ipaddress.IPv4Address("127.0.0.1"),
                                         Secret(DAE_SECRET)),)
        radius = RadiusConfig(nas_ip_address=ipaddress.IPv4Address("203.0.113.50"))
        dae = DaeServer(rig.core, clients, NasIdentity(radius, PUBLIC),
                        before_disconnect=refresh)
        dae.transport = type("T", (), {"sendto": lambda self, d, a=None: sent.append(d)})()  # type: ignore[assignment]
        data = _dae_request(rp.DisconnectRequest, User_Name="vpnuser1")
        dae.datagram_received(data, ("127.0.0.1", 40000))
        await asyncio.sleep(0.01)  # the first copy waits in the counters refresh
        dae.datagram_received(data, ("127.0.0.1", 40000))  # the DAC retransmits
        await asyncio.sleep(0.01)
        release.set()
        await asyncio.sleep(0.01)
        dae.datagram_received(data, ("127.0.0.1", 40000))  # answered from the cache
        await asyncio.sleep(0.01)

    asyncio.run(main())
    assert len(refreshes) == 1
    codes = [rp.CoAPacket(secret=DAE_SECRET, dict=radius_dictionary(), packet=d).code
             for d in sent]
    assert codes == [rp.DisconnectACK, rp.DisconnectACK]
