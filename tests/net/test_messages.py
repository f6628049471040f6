"""The data-plane messages (vpnhub/net/messages.py): picklable, no key in any repr."""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import pytest

from vpnhub.esp import ESP_AES_CBC, HMAC_SHA1_96, SaParams
from vpnhub.ike.transport import Transport
from vpnhub.net import messages
from vpnhub.net.messages import (
    AddInbound,
    AddOutbound,
    CtcpClose,
    CtcpClosed,
    DebugLine,
    GetStats,
    IkeDatagram,
    OuterFragmentation,
    PeerMoved,
    RemoveSA,
    SaExhausted,
    SetKeepalive,
    UpdatePeer,
)
from vpnhub.net.stats import (
    CtcpConnStats,
    CtcpStats,
    DataplaneStats,
    FragStats,
    PeerStats,
    SaStats,
    Traffic,
)

ENC_KEY = bytes(range(0x10, 0x30))  # 32 bytes: AES-256
INTEG_KEY = bytes(range(0xA0, 0xB4))  # 20 bytes: HMAC-SHA1
PEER = ("198.51.100.7", 4500)


def params() -> SaParams:
    return SaParams(0x0BADCAFE, ESP_AES_CBC, 256, HMAC_SHA1_96, ENC_KEY, INTEG_KEY)


MESSAGES = [
    AddInbound(params(), PEER, udp_encap=True, allowed_src="10.40.1.1", transport="natt"),
    AddOutbound(params(), PEER, udp_encap=False, dst="10.40.1.1/32", transport="cisco-udp"),
    RemoveSA(0x0BADCAFE),
    UpdatePeer(PEER, ("198.51.100.7", 61000)),
    SetKeepalive(PEER, 20.0, "natt"),
    SetKeepalive(PEER, None),
    GetStats(),
    CtcpClose(("203.0.113.9", 10000)),
    IkeDatagram(b"\x01" * 28, PEER),
    IkeDatagram(b"\x02" * 28, ("203.0.113.9", 10000), Transport.CTCP),
    PeerMoved(0x0BADCAFE, PEER, ("198.51.100.7", 61000)),
    SaExhausted(0x0BADCAFE),
    CtcpClosed(("203.0.113.9", 10000), "ctcp_eof"),
    OuterFragmentation(PEER, "natt", 1400, 1474, 1400, 3),
    DebugLine(7, "inbound SA 0badcafe installed", PEER),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_pickle_round_trip(message: object) -> None:
    # Worker processes will get these over a socketpair (module doc of dataplane.py).
    back = pickle.loads(pickle.dumps(message))
    assert back == message and type(back) is type(message)


@pytest.mark.parametrize("message", MESSAGES[:2], ids=lambda m: type(m).__name__)
def test_no_key_in_repr(message: AddInbound | AddOutbound) -> None:
    text = repr(message) + str(message)
    for key in (ENC_KEY, INTEG_KEY):
        assert key.hex() not in text and repr(key) not in text
    assert "0x0badcafe" in text.lower() or str(0x0BADCAFE) in text  # the SPI stays visible


def test_ike_datagram_transport_is_the_enum() -> None:
    assert IkeDatagram(b"x", PEER).transport is Transport.NATT


def test_messages_are_imported_from_their_own_module() -> None:
    # The data plane's module no longer re-exports them (issue 12): every import of a
    # message, transport name or cTCP close reason names vpnhub.net.messages.
    root = Path(__file__).resolve().parents[2]
    defined = ast.parse(Path(messages.__file__).read_text()).body
    names = {n.name for n in defined if isinstance(n, ast.ClassDef)}
    names |= {t.id for n in defined if isinstance(n, ast.Assign | ast.AnnAssign)
              for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
              if isinstance(t, ast.Name)}
    found = []
    for top in ("vpnhub", "tests", "bench"):
        for path in sorted((root / top).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.ImportFrom) and node.module == "vpnhub.net.dataplane":
                    found += [f"{path.relative_to(root)}:{node.lineno} {a.name}"
                              for a in node.names if a.name in names]
    assert not found, found


def test_stats_pickle_round_trip() -> None:
    # Worker processes will answer GetStats with these, merged by the control plane.
    stats = DataplaneStats(
        tun_rx=3, drops_total={"replay": 1}, esp_totals=Traffic(1, 2, 3, 4),
        frag=FragStats("before-encryption", 1, 2), ctcp=CtcpStats(
            listening=(("203.0.113.1", 10000),),
            connections=(CtcpConnStats(("203.0.113.9", 4242), ("203.0.113.1", 10000),
                                       "server", "established"),)),
        sas=(SaStats(0x0BADCAFE, "in", "AES-256-CBC/HMAC-SHA1-96", PEER, "natt", True,
                     drops={"replay": 1}, seen=PEER),),
        peers=(PeerStats(PEER, "natt", True, 20.0, 1, 2),))
    back = pickle.loads(pickle.dumps(stats))
    assert back == stats and back.as_dict() == stats.as_dict()
