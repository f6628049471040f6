"""The client's side of the data-plane seam (issue 12): the typed counters, and the
events it used to ignore: ``SaExhausted`` (rekey, RFC 4303 3.3.3) and ``CtcpClosed``
(the IPsec over TCP connection is gone: the session fails as for a dead peer)."""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass, field
from types import SimpleNamespace

from vpnhub.client.driver import EXIT_PEER, Options, VpnClient
from vpnhub.esp import ESP_AES_CBC, HMAC_SHA1_96, SaParams
from vpnhub.net.fake_dataplane import FakeDataplane
from vpnhub.net.messages import (
    CTCP_CLOSED_BY_CONTROL,
    CTCP_RESET,
    CtcpClosed,
    IkeDatagram,
    SaExhausted,
)
from vpnhub.secret import Secret

SERVER = ("203.0.113.50", 500)
SPI_IN, SPI_OUT = 0x1000AAAA, 0x2000BBBB
LOCAL_TS = ipaddress.IPv4Network("10.40.1.1/32")
REMOTE_TS = ipaddress.IPv4Network("0.0.0.0/0")


@dataclass
class Child:
    spi_in: int
    spi_out: int
    local_ts: ipaddress.IPv4Network = LOCAL_TS
    remote_ts: ipaddress.IPv4Network = REMOTE_TS
    rekeyed: bool = False


@dataclass
class EngineStub:
    """The part of IkeSA the client touches on SaExhausted."""

    children: dict[int, Child]
    established: bool = True
    quick_modes: list[tuple[object, ...]] = field(default_factory=list)
    icookie: bytes = b"\x01" * 8

    def start_quick_mode(self, now: float, local_ts: object = None, remote_ts: object = None,
                         rekey_of: int | None = None) -> int:
        self.quick_modes.append((local_ts, remote_ts, rekey_of))
        return 1

    def next_event(self) -> None:
        return None

    def datagrams_to_send(self) -> list[object]:
        return []


def client(mode: str = "natt") -> tuple[VpnClient, list[str], FakeDataplane]:
    said: list[str] = []
    profile = SimpleNamespace(host=SERVER[0], port=500, transparent_tunneling=True,
                              tunnel_interface="vhtun9", tunneling_mode=mode, tcp_port=10000)
    c = VpnClient(profile, Options(user="u", password=Secret("p"),  # type: ignore[arg-type]
                                   print=said.append))
    c.server = SERVER
    c._stop_conn = asyncio.Event()
    fake = FakeDataplane()
    c.dataplane = fake  # type: ignore[assignment]
    return c, said, fake


def test_sa_exhausted_starts_one_phase2_rekey() -> None:
    c, said, fake = client()
    engine = EngineStub({SPI_IN: Child(SPI_IN, SPI_OUT)})
    c.sa = engine  # type: ignore[assignment]
    c._child_spis[SPI_IN] = SPI_OUT
    # The data plane repeats the event for every packet it cannot send meanwhile.
    fake.inject(SaExhausted(SPI_OUT), SaExhausted(SPI_OUT))
    c._drain_inbox()
    child = engine.children[SPI_IN]
    assert engine.quick_modes == [(child.local_ts, child.remote_ts, SPI_IN)]
    assert child.rekeyed  # the lifetime timer will not rekey it a second time
    assert any("used up its sequence numbers: rekeying" in s for s in said), said
    assert c._result is None and not c._stop_conn.is_set()


def test_sa_exhausted_without_a_child_reconnects() -> None:
    c, _, fake = client()
    c.sa = EngineStub({}, established=True)  # type: ignore[assignment]
    fake.inject(SaExhausted(SPI_OUT))
    c._drain_inbox()
    assert c._result is not None and c._result.code == EXIT_PEER
    assert f"{SPI_OUT:08x}" in str(c._result) and "reconnecting" in str(c._result)
    assert c._stop_conn.is_set()


def test_ctcp_closed_fails_the_session() -> None:
    c, _, fake = client("tcp")
    fake.inject(CtcpClosed((SERVER[0], 10000), CTCP_RESET))
    c._drain_inbox()
    assert c._result is not None and c._result.code == EXIT_PEER
    assert "IPsec over TCP" in str(c._result) and CTCP_RESET in str(c._result)


def test_ctcp_closed_ignored_when_ours_or_not_the_tunnel() -> None:
    c, _, fake = client("tcp")
    fake.inject(CtcpClosed((SERVER[0], 10000), CTCP_CLOSED_BY_CONTROL),  # disconnecting
                CtcpClosed(("198.51.100.1", 10000), CTCP_RESET))
    c._drain_inbox()
    assert c._result is None
    udp, _, fake_udp = client("natt")
    fake_udp.inject(CtcpClosed((SERVER[0], 10000), CTCP_RESET))
    udp._drain_inbox()
    assert udp._result is None


def test_ike_datagram_still_reaches_the_sa() -> None:
    c, _, fake = client()
    seen: list[tuple[bytes, object]] = []
    c._ike_in = lambda data, addr, port, transport: seen.append((data, transport))  # type: ignore[method-assign]
    fake.inject(IkeDatagram(b"\x01" * 28, (SERVER[0], 4500)))
    c._drain_inbox()
    assert len(seen) == 1 and seen[0][0] == b"\x01" * 28


def test_counters_from_typed_stats() -> None:
    c, _, fake = client()
    sa = SaParams(SPI_IN, ESP_AES_CBC, 128, HMAC_SHA1_96, b"k" * 16, b"i" * 20)
    out = SaParams(SPI_OUT, ESP_AES_CBC, 128, HMAC_SHA1_96, b"K" * 16, b"I" * 20)
    fake.add_inbound(sa, (SERVER[0], 4500))
    fake.add_outbound(out, (SERVER[0], 4500))
    fake.set_keepalive((SERVER[0], 4500), 20.0)
    fake.count(SPI_IN, "in", packets=5, bytes_=500, drops={"replay": 2})
    fake.count(SPI_OUT, "out", packets=7, bytes_=700)
    asyncio.run(c._refresh_counters())
    got = c.status.counters
    assert (got["packets_decrypted"], got["bytes_in"]) == (5, 500)
    assert (got["packets_encrypted"], got["bytes_out"]) == (7, 700)
    assert got["packets_discarded"] == 2 and got["packets_bypassed"] == 0
    assert got["nat_keepalives_sent"] == 0 and got["nat_keepalives_received"] == 0


class Submitted:
    """The client's data plane as far as Quick Mode goes: the commands it was given."""

    def __init__(self) -> None:
        self.commands: list[object] = []

    def submit(self, command: object) -> None:
        self.commands.append(command)


def test_quick_mode_answered_installs_inbound_with_message_2_outbound_with_3() -> None:
    """The concentrator rekeys a child (at 92 % of its lifetime) and we answer: our
    inbound SA goes in with our message 2 (it may send right after its message 3), the
    outbound one with its message 3; an abandoned Quick Mode's inbound SA goes."""
    from vpnhub.ike import events as ev
    from vpnhub.net.messages import AddInbound, AddOutbound, RemoveSA
    from vpnhub.wire.constants import EncapsulationMode

    c, _, _ = client()
    fake = Submitted()
    c.dataplane = fake  # type: ignore[assignment]
    sa = SimpleNamespace(remote=(SERVER[0], 4500), local_behind_nat=True)
    keys = dict(transform=ESP_AES_CBC, key_length=128, auth=HMAC_SHA1_96,
                encapsulation=EncapsulationMode.UDP_TUNNEL, local_ts=LOCAL_TS,
                remote_ts=REMOTE_TS)
    ready = ev.ChildSAInboundReady(message_id=7, spi_in=SPI_IN, enc_key_in=bytes(16),
                                   auth_key_in=bytes(20), **keys)  # type: ignore[arg-type]
    c._on_event(sa, ready, 0.0)  # type: ignore[arg-type]
    assert [type(x) for x in fake.commands] == [AddInbound]
    assert fake.commands[0].sa.spi == SPI_IN and fake.commands[0].peer == sa.remote
    done = ev.ChildSAEstablished(message_id=7, spi_in=SPI_IN, spi_out=SPI_OUT,
                                 enc_key_in=bytes(16), auth_key_in=bytes(20),
                                 enc_key_out=bytes(16), auth_key_out=bytes(20), lifetime=60,
                                 pfs_group=0, inbound_early=True, **keys)  # type: ignore[arg-type]
    c._on_event(sa, done, 0.0)  # type: ignore[arg-type]
    assert [type(x) for x in fake.commands][:2] == [AddInbound, AddOutbound]
    assert sum(isinstance(x, AddInbound) for x in fake.commands) == 1  # not twice
    c._on_event(sa, ev.ChildSAInboundReady(message_id=8, spi_in=SPI_IN + 1,  # type: ignore[arg-type]
                                           enc_key_in=bytes(16), auth_key_in=bytes(20),
                                           **keys), 0.0)
    c._on_event(sa, ev.ChildSAAbandoned(8, SPI_IN + 1, "quick_mode_abandoned"),  # type: ignore[arg-type]
                0.0)
    assert isinstance(fake.commands[-1], RemoveSA) and fake.commands[-1].spi == SPI_IN + 1
