"""One `Secret`: the configuration's PSKs and passwords are the IKE engine's,
compare equal across the two, never print, and compare in constant time."""

from __future__ import annotations

import hmac
import io
import logging

import pytest

from vpnhub.concentrator.service import Concentrator
from vpnhub.config import Secret as ConfigSecret
from vpnhub.config import parse_config
from vpnhub.eventlog import EventLog
from vpnhub.ike.events import XauthCredentials
from vpnhub.secret import Secret as IkeSecret
from vpnhub.wire.constants import IdType

PSK = "gr0up-psk-value"
PASSWORD = "us3r-passw0rd"
CONFIG = f"""\
[concentrator]
public_address = "203.0.113.50"
private_networks = ["192.168.2.0/24"]

[[group]]
name = "vpngroup"
psk = "{PSK}"
address_pool = "10.40.1.0/24"

[[user]]
name = "vpnuser1"
group = "vpngroup"
password = "{PASSWORD}"
"""


def test_config_and_ike_secret_are_one_class() -> None:
    assert ConfigSecret is IkeSecret


def test_config_psk_equals_the_engines_psk() -> None:
    cfg = parse_config(CONFIG, "t.toml")
    # Before: config.Secret and ike.secret.Secret never compared equal.
    assert cfg.groups[0].psk == IkeSecret(PSK.encode())
    assert cfg.groups[0].psk != IkeSecret(b"another psk")


def test_xauth_password_equals_the_configured_password() -> None:
    cfg = parse_config(CONFIG, "t.toml")
    # The password as the IKE engine hands it over in its XAUTH event.
    creds = XauthCredentials(user="vpnuser1", password=IkeSecret(PASSWORD.encode()))
    assert cfg.users[0].password == creds.password


def test_concentrator_hands_the_configured_psk_to_ike_unconverted() -> None:
    cfg = parse_config(CONFIG, "t.toml")
    conc = Concentrator(cfg, EventLog(out=io.StringIO()))
    try:
        got = conc.core._psk_lookup(IdType.KEY_ID, b"vpngroup", ("198.51.100.7", 500))
        assert got is cfg.groups[0].psk  # no Secret(x.reveal()) copy on the way
        assert conc.core._psk_lookup(IdType.KEY_ID, b"nogroup", ("198.51.100.7", 500)) is None
    finally:
        conc.auth.close()


def test_repr_and_str_hide_the_value(caplog: pytest.LogCaptureFixture) -> None:
    cfg = parse_config(CONFIG, "t.toml")
    s = cfg.groups[0].psk
    shown = [repr(s), str(s), f"{s}", f"{s!r}", repr(cfg.groups[0]), repr(cfg.users[0])]
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").warning("psk %s %r", s, s)
    for text in [*shown, caplog.text]:
        assert PSK not in text and PASSWORD not in text
    assert repr(s) == "Secret(<hidden>)"
    assert s.reveal() == PSK.encode() and s.reveal_str() == PSK


def test_equality_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    import vpnhub.secret

    monkeypatch.setattr(vpnhub.secret.hmac, "compare_digest", spy)
    a, b = IkeSecret(b"abc"), ConfigSecret("abd")
    assert a != b and a.equals("abc") and not a.equals(b"ab")
    assert len(calls) == 3  # every comparison went through hmac.compare_digest
    assert hash(IkeSecret("x")) == hash(ConfigSecret(b"x"))
