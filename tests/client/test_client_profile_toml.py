"""vpnhub's own TOML client profiles (docs/CLIENT-PROFILES.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vpnhub.client.profile import (
    IkeMode,
    ProfileError,
    TunnelingMode,
    load_profile,
    parse_toml_profile,
)

FULL = """\
# The client 10.10.10.2 of the Cisco NAT-T note, in the lab's ranges.
host = "203.0.113.50"
port = 500
group = "ipsecgroup"
group_password = "lab-group-key"
username = "user1"
password = "user1-pass"
transparent_tunneling = true
tunneling_mode = "udp"
tcp_port = 10443
force_keepalives = true
local_lan = true
dh_group = 2
allow_legacy = true
ike_mode = "main"
dpd_interval = 0
reconnect = true
no_dns = true
tunnel_interface = "vpn-lab"
description = "lab client 1"
backup_servers = [
    "203.0.113.51",
    "backup.example.net",
]
"""

MINIMAL = 'host = "vpn.example.net"\ngroup = "helpdesk"\ngroup_password = "k"\n'


def refused(text: str, base_dir: Path | None = None) -> ProfileError:
    with pytest.raises(ProfileError) as info:
        parse_toml_profile(text, "p.toml", base_dir=base_dir)
    return info.value


def test_every_key() -> None:
    p = parse_toml_profile(FULL)
    assert (p.host, p.port, p.group, p.username) == ("203.0.113.50", 500, "ipsecgroup", "user1")
    assert p.group_password.reveal() == b"lab-group-key"
    assert p.password is not None and p.password.reveal() == b"user1-pass"
    assert p.transparent_tunneling and p.tunneling_mode is TunnelingMode.UDP
    assert (p.tcp_port, p.force_keepalives, p.local_lan) == (10443, True, True)
    assert (p.dh_group, p.allow_legacy, p.ike_mode) == (2, True, IkeMode.MAIN)
    assert (p.dpd_interval, p.reconnect, p.no_dns) == (0, True, True)
    assert (p.tunnel_interface, p.description) == ("vpn-lab", "lab client 1")
    assert p.backup_servers == ("203.0.113.51", "backup.example.net")
    assert p.source_format == "toml" and dict(p.extra) == {} and p.locked == frozenset()


def test_defaults() -> None:
    p = parse_toml_profile(MINIMAL)
    assert (p.port, p.username, p.password) == (500, None, None)
    assert p.transparent_tunneling and p.tunneling_mode == "natt"
    assert (p.tcp_port, p.force_keepalives, p.local_lan) == (10000, False, False)
    assert (p.dh_group, p.allow_legacy, p.ike_mode) == (14, False, "aggressive")
    assert (p.dpd_interval, p.reconnect, p.no_dns) == (30, False, False)
    assert (p.tunnel_interface, p.description, p.backup_servers) == ("vpnhub-c0", "", ())


def test_group_password_file_is_relative_to_the_profile(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "group.psk").write_bytes(b"from-file\r\nsecond line\n")
    path = tmp_path / "home.toml"
    path.write_text('host = "h"\ngroup = "g"\ngroup_password_file = "keys/group.psk"\n')
    p = load_profile(path)
    assert p.group_password.reveal() == b"from-file" and p.source == path


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        pytest.param(
            MINIMAL + "groupname = 'x'\n",
            4,
            "unknown key 'groupname' (did you mean 'group'?)",
            id="unknown-key",
        ),
        pytest.param(
            '# c\n\nhost = "h"\n' + "'dh-group' = 5\n",
            4,
            "unknown key 'dh-group'",
            id="quoted-unknown",
        ),
        pytest.param(
            MINIMAL + "\n[options]\nlocal_lan = true\n", 5, "unknown key 'options'", id="table"
        ),
        pytest.param(MINIMAL + "a.b = 1\n", 4, "unknown key 'a'", id="dotted"),
        pytest.param(
            'description = """\nfoo = 1\n"""\n' + MINIMAL + "fooo = 2\n",
            7,
            "unknown key 'fooo'",
            id="after-multiline-string",
        ),
        pytest.param(
            MINIMAL + "tcp_port = '443'\n",
            4,
            "tcp_port: expected an integer, got a string",
            id="type",
        ),
        pytest.param(MINIMAL + "local_lan = 1\n", 4, "local_lan: expected a boolean", id="bool"),
        pytest.param(
            MINIMAL + "port = true\n",
            4,
            "port: expected an integer, got a boolean",
            id="bool-as-int",
        ),
        pytest.param(MINIMAL + "tcp_port = 0\n", 4, "out of range (1..65535)", id="range"),
        pytest.param(MINIMAL + "dpd_interval = 4000\n", 4, "out of range (0..3600)", id="dpd"),
        pytest.param(
            MINIMAL + "tunneling_mode = 'NAT-T'\n",
            4,
            "'NAT-T' is not one of 'natt', 'udp', 'tcp'",
            id="mode",
        ),
        pytest.param(MINIMAL + "ike_mode = 'quick'\n", 4, "ike_mode", id="ike-mode"),
        pytest.param(MINIMAL + "dh_group = 2\n", 4, "allow_legacy = true", id="legacy-dh"),
        pytest.param(
            MINIMAL + "dh_group = 5\nallow_legacy = false\n", 4, "legacy", id="legacy-dh-off"
        ),
        pytest.param(MINIMAL + "dh_group = 1\nallow_legacy = true\n", 4, "not supported", id="dh1"),
        pytest.param(
            MINIMAL + "tunnel_interface = 'a-very-long-name0'\n", 4, "1 to 15", id="ifname-long"
        ),
        pytest.param(MINIMAL + "tunnel_interface = 'vpn:0'\n", 4, "':'", id="ifname-colon"),
        pytest.param(MINIMAL + "tunnel_interface = ''\n", 4, "1 to 15", id="ifname-empty"),
        pytest.param(
            'group = "g"\ngroup_password = "k"\n', 1, "host: missing required key", id="no-host"
        ),
        pytest.param(
            'host = ""\ngroup = "g"\ngroup_password = "k"\n', 1, "host: is empty", id="empty-host"
        ),
        pytest.param(
            'host = "a b"\ngroup = "g"\ngroup_password = "k"\n', 1, "not a host name", id="bad-host"
        ),
        pytest.param(
            'host = "h"\ngroup_password = "k"\n', 1, "group: missing required key", id="no-group"
        ),
        pytest.param(
            'host = "h"\ngroup = "g"\n',
            1,
            "group_password: missing required key",
            id="no-group-password",
        ),
        pytest.param(MINIMAL + "group_password_file = 'x'\n", 4, "not both", id="both"),
        pytest.param(MINIMAL + "username = ''\n", 4, "username: is empty", id="empty-user"),
        pytest.param(MINIMAL + "backup_servers = 'b'\n", 4, "expected an array", id="backups"),
        pytest.param(
            MINIMAL + "backup_servers = ['ok', 3]\n", 4, "3 is not a host", id="backup-item"
        ),
        pytest.param(MINIMAL + "local_lan = \n", 4, "TOML syntax error", id="syntax"),
        pytest.param("host = 'h'\nhost = 'i'\n", 2, "TOML syntax error", id="duplicate"),
    ],
)
def test_refused_with_file_and_line(text: str, line: int, words: str) -> None:
    error = refused(text)
    assert error.line == line, str(error)
    assert str(error).startswith(f"p.toml, line {line}: ")
    assert words in str(error)


@pytest.mark.parametrize(
    ("tail", "line"),
    [
        pytest.param('description = """\nnever closed\n', 4, id="multiline-string"),
        pytest.param("\n# servers\nbackup_servers = [\n  'a',\n\n", 6, id="array"),
    ],
)
def test_unclosed_values_point_at_their_first_line(tail: str, line: int) -> None:
    error = refused(MINIMAL + tail)
    assert error.line == line and "never closed" in str(error)


def test_unreadable_group_password_file(tmp_path: Path) -> None:
    error = refused(
        MINIMAL.replace('group_password = "k"', 'group_password_file = "nope"'), tmp_path
    )
    assert error.line == 3 and "cannot read" in str(error) and "nope" in str(error)


def test_empty_group_password_file(tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"\nsecret on line two\n")
    error = refused(
        MINIMAL.replace('group_password = "k"', 'group_password_file = "empty"'), tmp_path
    )
    assert "first line" in str(error) and "secret on line two" not in str(error)


def test_secret_values_never_in_messages() -> None:
    error = refused('host = "h"\ngroup = "g"\ngroup_password = "hunter2"\npassword = 5\n')
    assert error.line == 4 and "hunter2" not in str(error)


def test_detection_by_extension_and_content(tmp_path: Path) -> None:
    plain = tmp_path / "work"
    plain.write_text(MINIMAL)
    assert load_profile(plain).source_format == "toml"
    # A TOML table named [main] in a .toml file stays TOML (and is an unknown key).
    named = tmp_path / "odd.toml"
    named.write_text("[main]\nhost = 'h'\n")
    with pytest.raises(ProfileError, match="unknown key 'main'"):
        load_profile(named)


def test_toml_is_utf8(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_bytes(MINIMAL.encode() + "description = 'Zürich'\n".encode())
    assert load_profile(path).description == "Zürich"
    path.write_bytes(MINIMAL.encode() + "description = 'Zürich'\n".encode("latin-1"))
    with pytest.raises(ProfileError, match="not valid UTF-8") as info:
        load_profile(path)
    assert info.value.line == 4


# ------------------------------------------------------------------ issue 14: certificates
def test_certificate_keys_relative_to_the_profile(tmp_path: Path) -> None:
    p = parse_toml_profile(MINIMAL + 'auth = "rsa"\nca_file = "ca.pem"\n'
                           'certificate = "me.pem"\nkey = "me.key"\n', base_dir=tmp_path)
    assert (p.auth, p.ca_file, p.certificate, p.key) == (
        "rsa", tmp_path / "ca.pem", tmp_path / "me.pem", tmp_path / "me.key")
    assert parse_toml_profile(MINIMAL).auth == "psk"


def test_certificate_keys_refused() -> None:
    assert "is not one of" in str(refused(MINIMAL + 'auth = "cert"\n'))
    assert "needs ca_file" in str(refused(MINIMAL + 'auth = "hybrid"\n'))
    e = refused(MINIMAL + 'auth = "rsa"\nca_file = "ca.pem"\n')
    assert e.key == "auth" and "needs certificate" in str(e)


def test_client_signer_names_a_bad_file(tmp_path: Path) -> None:
    from vpnhub.client.certs import client_signer
    from vpnhub.lab.testca import make_ca

    ca = make_ca(tmp_path)
    a, b = ca.issue("a"), ca.issue("b")
    ok = parse_toml_profile(MINIMAL + f'auth = "hybrid"\nca_file = "{ca.cert_path}"\n')
    assert client_signer(ok) is not None
    assert client_signer(parse_toml_profile(MINIMAL)) is None
    bad = parse_toml_profile(MINIMAL + f'auth = "rsa"\nca_file = "{ca.cert_path}"\n'
                             f'certificate = "{a.cert}"\nkey = "{b.key}"\n')
    with pytest.raises(ProfileError, match="is not the key of certificate"):
        client_signer(bad)
