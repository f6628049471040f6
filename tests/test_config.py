"""vpnhub.config: parsing, defaults, and errors that name file, key path and line."""

from __future__ import annotations

import ast
import ipaddress
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vpnhub.auth.users import hash_password
from vpnhub.config import (
    ConfigError,
    Secret,
    format_key_path,
    load_config,
    parse_config,
    parse_proposal,
)
from vpnhub.config import validate as config_module
from vpnhub.config.locate import Locator

ROOT = Path(__file__).resolve().parent.parent

# The configuration from the issue, verbatim.
ISSUE_EXAMPLE = """\
[concentrator]
public_address = "203.0.113.50"        # UDP 500 and 4500 are bound here
private_networks = ["192.168.2.0/24"]  # what clients may reach
tunnel_interface = "vpnhub0"
allow_legacy_crypto = true             # 3DES, MD5, DH group 2 (off by default)

[nat_transparency]
ipsec_over_natt = true                 # RFC 3947 NAT-T; false by default, as on the VPN 3000

[admin]
socket = "/run/vpnhub/admin.sock"      # the CLI talks to the running server here

[[group]]
name = "ciscovpn"
psk = "labgroupsecret"
address_pool = "10.40.1.0/24"
dns = ["192.168.2.10"]
split_include = ["192.168.2.0/24"]     # Cisco Unity split tunnel; absent = tunnel all

[[user]]
name = "vpnclient1"
password = "userpass1"
group = "ciscovpn"
"""

# Lines 1-3; tests append from line 4 on.
HEAD = """\
[concentrator]
public_address = "203.0.113.50"
private_networks = ["192.168.2.0/24"]
"""


def error_of(text: str, source: str = "test.toml") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source)
    return info.value


def group(name: str, pool: str, psk: str = "secret") -> str:
    return f'[[group]]\nname = "{name}"\npsk = "{psk}"\naddress_pool = "{pool}"\n'


# --------------------------------------------------------------------------- good files


def test_issue_example_parses_exactly() -> None:
    cfg = parse_config(ISSUE_EXAMPLE, "issue.toml")
    c = cfg.concentrator
    assert c.public_address == ipaddress.IPv4Address("203.0.113.50")
    assert c.private_networks == (ipaddress.IPv4Network("192.168.2.0/24"),)
    assert c.tunnel_interface == "vpnhub0"
    assert c.allow_legacy_crypto is True
    assert cfg.nat_transparency.ipsec_over_natt is True
    assert cfg.admin.socket == Path("/run/vpnhub/admin.sock")
    (g,) = cfg.groups
    assert g.name == "ciscovpn"
    assert g.psk.reveal() == b"labgroupsecret"
    assert g.address_pool == ipaddress.IPv4Network("10.40.1.0/24")
    assert g.dns == (ipaddress.IPv4Address("192.168.2.10"),)
    assert g.split_include == (ipaddress.IPv4Network("192.168.2.0/24"),)
    (u,) = cfg.users
    assert (u.name, u.group) == ("vpnclient1", "ciscovpn")
    assert u.password is not None and u.password.reveal_str() == "userpass1"
    assert u.password_hash is None
    assert cfg.group("ciscovpn") is g and cfg.user("vpnclient1") is u
    assert cfg.group("nope") is None and cfg.user("nope") is None
    assert cfg.source == "issue.toml"


def test_defaults() -> None:
    cfg = parse_config(HEAD + group("g", "10.40.1.0/24"))
    c = cfg.concentrator
    assert c.allow_legacy_crypto is False
    assert (c.ike_port, c.natt_port) == (500, 4500)
    assert (c.ike_lifetime, c.ipsec_lifetime) == (86400, 28800)
    assert (c.dpd_interval, c.dpd_retries, c.natt_keepalive) == (30, 5, 20)
    assert c.fragmentation == "before-encryption" and c.workers == 1
    n = cfg.nat_transparency
    assert not (n.ipsec_over_natt or n.ipsec_over_udp or n.ipsec_over_tcp)
    assert n.ipsec_over_udp_port == 10000 and n.ipsec_over_tcp_ports == (10000,)
    assert n.enabled_transports() == ()
    assert cfg.admin.listen_address == ipaddress.IPv4Address("127.0.0.1")
    assert cfg.admin.listen_port == 8443 and cfg.admin.users == ()
    lim = cfg.limits
    assert (lim.max_half_open_per_source, lim.max_half_open_total) == (32, 4096)
    assert (lim.xauth_max_failures, lim.xauth_lockout_seconds) == (5, 300)
    assert lim.xauth_retry_delay == 1.0
    assert (cfg.log.console_severity, cfg.log.keep_severity) == (3, 5)
    assert cfg.log.store == Path("/var/lib/vpnhub/events.db")
    assert cfg.log.store_max_events == 100_000 and cfg.log.classes == ()
    assert cfg.admin.tls_cert is None and cfg.admin.tls_key is None
    g = cfg.groups[0]
    assert g.split_include is None and g.ike_proposals is None and g.esp_proposals is None
    assert not (g.pfs or g.save_password or g.reserve_first_address)
    assert cfg.users == ()


def test_transport_order_is_tcp_natt_udp() -> None:
    text = HEAD + "[nat_transparency]\nipsec_over_udp = true\nipsec_over_natt = true\n"
    text += (
        "ipsec_over_tcp = true\nipsec_over_tcp_ports = [443, 10000]\nipsec_over_udp_port = 10001\n"
    )
    n = parse_config(text).nat_transparency
    assert n.enabled_transports() == ("ipsec_over_tcp", "ipsec_over_natt", "ipsec_over_udp")
    assert n.ipsec_over_tcp_ports == (443, 10000) and n.ipsec_over_udp_port == 10001


def test_group_inherits_concentrator_attributes_unless_set() -> None:
    text = HEAD + (
        'banner = "Authorised use only"\ndefault_domain = "corp.example"\n'
        'dns = ["192.168.2.10"]\nnbns = ["192.168.2.11"]\n'
    )
    text += group("a", "10.40.1.0/24")
    text += group("b", "10.40.2.0/24") + 'banner = "B"\ndns = []\ndefault_domain = "b.example"\n'
    a, b = parse_config(text).groups
    assert a.banner == "Authorised use only" and a.default_domain == "corp.example"
    assert a.dns == (ipaddress.IPv4Address("192.168.2.10"),)
    assert a.nbns == (ipaddress.IPv4Address("192.168.2.11"),)
    assert b.banner == "B" and b.dns == () and b.default_domain == "b.example"
    assert b.nbns == a.nbns


def test_full_group_and_proposals() -> None:
    text = (
        HEAD
        + group("g", "10.40.0.0/16")
        + (
            "reserve_first_address = true\npfs = true\nsave_password = true\n"
            'split_dns = ["corp.example"]\n'
            'ike_proposals = ["aes256-sha1-modp2048", "aes128-sha256-ecp256"]\n'
            'esp_proposals = ["aes256-sha1", "aes128-sha256-modp2048"]\n'
        )
    )
    g = parse_config(text).groups[0]
    assert g.pfs and g.save_password and g.reserve_first_address
    assert g.split_dns == ("corp.example",)
    assert g.ike_proposals is not None and g.esp_proposals is not None
    first = g.ike_proposals[0]
    assert (first.cipher, first.key_bits, first.integrity, first.dh_group) == (
        "aes",
        256,
        "sha1",
        14,
    )
    assert g.ike_proposals[1].dh_group == 19
    assert g.esp_proposals[0].dh_group is None and g.esp_proposals[1].dh_group == 14


def test_legacy_proposals_need_the_switch() -> None:
    tail = (
        group("g", "10.40.1.0/24")
        + 'ike_proposals = ["aes256-sha1-modp2048", "3des-md5-modp1024"]\n'
    )
    err = error_of(HEAD + tail)
    assert err.key == "group[0].ike_proposals[1]" and err.line == 8
    assert "allow_legacy_crypto" in err.reason
    legacy_ok = HEAD + "allow_legacy_crypto = true\n" + tail
    assert parse_config(legacy_ok).groups[0].ike_proposals[1].legacy  # type: ignore[index]


def test_duplicate_proposal_spelled_differently() -> None:
    tail = group("g", "10.40.1.0/24") + 'esp_proposals = ["aes128-sha", "AES-sha1"]\n'
    err = error_of(HEAD + tail)
    assert (err.key, err.line) == ("group[0].esp_proposals[1]", 8)
    assert "listed twice" in err.reason


@pytest.mark.parametrize(
    ("text", "kind", "message"),
    [
        ("aes256-sha1", "ike", "not of the form"),
        ("aes256-sha1-modp2048-x", "esp", "not of the form"),
        ("des-sha1-modp2048", "ike", "unknown cipher"),
        ("aes256-crc-modp2048", "ike", "unknown hash"),
        ("aes256-sha1-modp768", "ike", "unknown DH group"),
    ],
)
def test_bad_proposal_strings(text: str, kind: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_proposal(text, kind)


def test_admin_listen_forms_and_users() -> None:
    h = hash_password("adminpw", log2_n=4)
    text = (
        HEAD
        + f'[admin]\nlisten = "[::1]:9443"\n[[admin.user]]\nname = "root"\npassword_hash = "{h}"\n'
    )
    admin = parse_config(text).admin
    assert admin.listen_address == ipaddress.IPv6Address("::1") and admin.listen_port == 9443
    assert admin.users[0].name == "root" and h not in repr(admin)
    assert parse_config(HEAD + '[admin]\nlisten = "0.0.0.0"\n').admin.listen_port == 8443
    err = error_of(HEAD + '[admin]\nlisten = "localhost:80"\n')
    assert (err.key, err.line) == ("admin.listen", 5)


def test_relative_paths_follow_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "group.psk").write_text("filesecret\n")
    text = HEAD + '[log]\nstore = "events.log"\n'
    text += '[[group]]\nname = "g"\npsk_file = "group.psk"\naddress_pool = "10.40.1.0/24"\n'
    path = tmp_path / "vpnhub.toml"
    path.write_text(text)
    cfg = load_config(path)
    assert cfg.groups[0].psk.reveal() == b"filesecret"
    assert cfg.log.store == tmp_path / "events.log"
    assert parse_config(HEAD + '[log]\nstore = ""\n').log.store is None


def test_log_classes_and_store_size() -> None:
    text = HEAD + "[log]\nstore_max_events = 5000\n[log.classes.IKEDECODE]\nkeep_severity = 9\n"
    text += "[log.classes.NATT]\nconsole_severity = 0\nkeep_severity = 6\n"
    log = parse_config(text).log
    assert log.store_max_events == 5000
    assert [(c.name, c.console_severity, c.keep_severity) for c in log.classes] == [
        ("IKEDECODE", None, 9), ("NATT", 0, 6)]


def test_admin_tls_files(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("x")
    (tmp_path / "key.pem").write_text("x")
    path = tmp_path / "vpnhub.toml"
    path.write_text(HEAD + '[admin]\ntls_cert = "cert.pem"\ntls_key = "key.pem"\n')
    admin = load_config(path).admin
    assert (admin.tls_cert, admin.tls_key) == (tmp_path / "cert.pem", tmp_path / "key.pem")


def test_hashed_user_password() -> None:
    h = hash_password("pw", log2_n=4)
    text = HEAD + group("g", "10.40.1.0/24")
    text += f'[[user]]\nname = "u"\npassword_hash = "{h}"\ngroup = "g"\n'
    u = parse_config(text).users[0]
    assert u.password is None and u.password_hash is not None
    assert u.password_hash.reveal_str() == h


def test_example_file_loads() -> None:
    cfg = load_config(ROOT / "examples" / "concentrator.toml")
    assert cfg.groups and cfg.users
    assert cfg.nat_transparency.ipsec_over_natt


def test_every_key_is_documented() -> None:
    doc = (ROOT / "docs" / "CONFIG.md").read_text()
    top = config_module._TOP_KEYS
    assert all(f"`[{k}]`" in doc or f"`[[{k}]]`" in doc for k in top)
    key_sets = [v for k, v in vars(config_module).items() if k.endswith("_KEYS") and v is not top]
    assert len(key_sets) >= 8
    missing = sorted({k for keys in key_sets for k in keys if f"| `{k}` |" not in doc})
    assert missing == []


# --------------------------------------------------------------------------- secrets


def test_secret_never_prints() -> None:
    cfg = parse_config(ISSUE_EXAMPLE)
    for text in (repr(cfg), str(cfg), repr(cfg.groups[0]), f"{cfg.users[0]}"):
        assert "labgroupsecret" not in text and "userpass1" not in text
    s = Secret("hunter2")
    assert "hunter2" not in repr(s) and "hunter2" not in str(s)
    assert s.equals("hunter2") and not s.equals(b"hunter3")
    assert s == Secret(b"hunter2") and s != Secret("other")
    assert len(s) == 7 and hash(s) == hash(Secret("hunter2"))


@pytest.mark.parametrize(
    "tail",
    [
        '[[group]]\nname = "g"\npsk = 12345678\naddress_pool = "10.40.1.0/24"\n',
        '[[group]]\nname = "g"\npsk = "s3cr3tvalue"\naddress_pool = "s3cr3tvalue"\n',
        group("g", "10.40.1.0/24") + '[[user]]\nname = "u"\npassword = 12345678\ngroup = "g"\n',
        group("g", "10.40.1.0/24")
        + '[[user]]\nname = "u"\npassword_hash = "$scrypt$12345678"\ngroup = "g"\n',
        group("g", "10.40.1.0/24")
        + '[[user]]\nname = "u"\npassword = "s3cr3tvalue"\npassword_hash = "x"\ngroup = "g"\n',
    ],
)
def test_errors_do_not_quote_secrets(tail: str) -> None:
    err = error_of(HEAD + tail)
    assert "12345678" not in str(err)
    assert "s3cr3tvalue" not in str(err).replace("'s3cr3tvalue' is not a valid IPv4", "")


# --------------------------------------------------------------------------- errors with lines


def test_error_message_format() -> None:
    err = error_of(HEAD + group("g", "192.168.2.0/25"), "lab.toml")
    assert str(err) == (
        "lab.toml, line 7: group[0].address_pool: 192.168.2.0/25 overlaps "
        "concentrator.private_networks[0] 192.168.2.0/24 (line 3)"
    )
    assert (err.source, err.line, err.key) == ("lab.toml", 7, "group[0].address_pool")
    assert isinstance(err, ValueError)


def test_pool_overlapping_another_group_names_both_lines() -> None:
    text = HEAD + "\n" + group("a", "10.40.0.0/16") + "\n# second\n" + group("b", "10.40.7.0/24")
    err = error_of(text)
    assert (err.key, err.line) == ("group[1].address_pool", 14)
    assert "overlaps group[0].address_pool 10.40.0.0/16 (line 8)" in err.reason


def test_pool_containing_public_address() -> None:
    err = error_of(HEAD + group("g", "203.0.113.0/24"))
    assert (err.key, err.line) == ("group[0].address_pool", 7)
    assert "public_address 203.0.113.50 (line 2)" in err.reason


def test_full_tunnel_private_network_is_not_an_overlap() -> None:
    text = '[concentrator]\npublic_address = "203.0.113.50"\nprivate_networks = ["0.0.0.0/0"]\n'
    assert parse_config(text + group("g", "10.40.1.0/24")).groups


@pytest.mark.parametrize(
    ("tail", "key", "line", "fragment"),
    [
        # unknown keys at every level, with suggestions
        ("colour = 1\n", "concentrator.colour", 4, "unknown key 'colour'"),
        (
            "[nat_transparency]\nipsec_over_nat = true\n",
            "nat_transparency.ipsec_over_nat",
            5,
            "did you mean 'ipsec_over_natt'?",
        ),
        ("[limits]\nmax_session = 3\n", "limits.max_session", 5, "did you mean 'max_sessions'?"),
        ("[bogus]\nx = 1\n", "bogus", 4, "unknown key 'bogus'"),
        (
            group("a", "10.40.1.0/24") + group("b", "10.40.2.0/24") + "adress_pool = 1\n",
            "group[1].adress_pool",
            12,
            "did you mean 'address_pool'?",
        ),
        # wrong types
        (
            "tunnel_interface = 7\n",
            "concentrator.tunnel_interface",
            4,
            "expected a string, got an integer",
        ),
        (
            'dpd_interval = "30"\n',
            "concentrator.dpd_interval",
            4,
            "expected an integer, got a string",
        ),
        ("dpd_interval = true\n", "concentrator.dpd_interval", 4, "got a boolean"),
        ("allow_legacy_crypto = 1\n", "concentrator.allow_legacy_crypto", 4, "expected a boolean"),
        ("ike_lifetime = 5\n", "concentrator.ike_lifetime", 4, "out of range"),
        ('fragmentation = "sometimes"\n', "concentrator.fragmentation", 4, "not one of"),
        ('dns = "192.168.2.10"\n', "concentrator.dns", 4, "expected an array, got a string"),
        (
            "[nat_transparency]\nipsec_over_udp_port = 4500\n",
            "nat_transparency.ipsec_over_udp_port",
            5,
            "used by IKE or NAT-T",
        ),
        (
            "[nat_transparency]\nipsec_over_tcp_ports = [\n  443,\n  443,\n]\n",
            "nat_transparency.ipsec_over_tcp_ports[1]",
            7,
            "listed twice",
        ),
        (
            "[limits]\nmax_half_open_per_source = 9999\n",
            "limits.max_half_open_per_source",
            5,
            "exceeds max_half_open_total",
        ),
        ("[log]\nconsole_severity = 14\n", "log.console_severity", 5, "out of range (1..13)"),
        ("[log]\nstore = 5\n", "log.store", 5, "a file path"),
        ("[log]\nstore_max_events = 99\n", "log.store_max_events", 5, "out of range (100.."),
        ("[log.classes.NATX]\nkeep_severity = 9\n", "log.classes.NATX", 4,
         "unknown key 'NATX' (did you mean 'NATT'?)"),
        ("[log.classes.IKEDBG]\nkeep_severity = 14\n", "log.classes.IKEDBG.keep_severity", 5,
         "out of range (0..13)"),
        ("[log.classes.IKE]\nkeep = 9\n", "log.classes.IKE.keep", 5, "unknown key"),
        ('[admin]\ntls_cert = "/etc/hostname"\n', "admin.tls_key", 4,
         "set both tls_cert and tls_key"),
        ('[admin]\ntls_cert = "/nonexistent.pem"\ntls_key = "/etc/hostname"\n',
         "admin.tls_cert", 5, "no such file"),
        ("concentrator = 5\n", "concentrator.concentrator", 4, "unknown key"),
        # addresses and networks
        (
            'dns = ["192.168.2.10", "192.168.2.300"]\n',
            "concentrator.dns[1]",
            4,
            "'192.168.2.300' is not a valid IPv4 address",
        ),
        ('nbns = [\n  "192.168.2.1",\n  7,\n]\n', "concentrator.nbns[1]", 6, "got an integer"),
        (group("g", "10.40.1.1/24"), "group[0].address_pool", 7, "did you mean '10.40.1.0/24'?"),
        (group("g", "10.40.1.0/33"), "group[0].address_pool", 7, "not a valid IPv4 network"),
        (group("g", "10.40.1.0/31"), "group[0].address_pool", 7, "too small"),
        (
            group("g", "10.40.1.0/24") + 'split_include = ["10.1.0.0/16", "x"]\n',
            "group[0].split_include[1]",
            8,
            "not a valid IPv4 network",
        ),
        (
            group("g", "10.40.1.0/24") + "split_include = []\n",
            "group[0].split_include",
            8,
            "tunnel all",
        ),
        (
            group("g", "10.40.1.0/24") + 'default_domain = "bad domain"\n',
            "group[0].default_domain",
            8,
            "not a valid DNS domain",
        ),
        # PSKs
        (
            '[[group]]\nname = "g"\naddress_pool = "10.40.1.0/24"\n',
            "group[0].psk",
            4,
            'auth allows "psk" (the default): set the group\'s pre-shared key',
        ),
        (
            '[[group]]\nname = "g"\npsk = ""\naddress_pool = "10.40.1.0/24"\n',
            "group[0].psk",
            6,
            "empty",
        ),
        (group("g", "10.40.1.0/24") + 'psk_file = "x"\n', "group[0].psk_file", 8, "not both"),
        (
            '[[group]]\nname = "g"\npsk_file = "/nonexistent/psk"\naddress_pool = "10.40.1.0/24"\n',
            "group[0].psk_file",
            6,
            "cannot read '/nonexistent/psk'",
        ),
        ('[[group]]\nname = "g"\npsk = "x"\n', "group[0].address_pool", 4, "missing required key"),
        # names and references
        (
            group("g", "10.40.1.0/24") + group("g", "10.40.2.0/24"),
            "group[1].name",
            9,
            "duplicate group name 'g' (first defined at line 4)",
        ),
        (
            group("g", "10.40.1.0/24") + '[[user]]\nname = "u"\npassword = "p"\ngroup = "sales"\n',
            "user[0].group",
            11,
            "no [[group]] named 'sales' (groups: g)",
        ),
        (
            group("g", "10.40.1.0/24")
            + '[[user]]\nname = "u"\npassword = "p"\ngroup = "g"\n'
            + '[[user]]\nname = "u"\npassword = "q"\ngroup = "g"\n',
            "user[1].name",
            13,
            "duplicate user name 'u' (first defined at line 8)",
        ),
        (
            group("g", "10.40.1.0/24") + '[[user]]\nname = "u"\ngroup = "g"\n',
            "user[0].password",
            8,
            "exactly one of",
        ),
        (
            group("g", "10.40.1.0/24")
            + '[[user]]\nname = "u"\npassword_hash = "plain"\ngroup = "g"\n',
            "user[0].password_hash",
            10,
            "not a password hash",
        ),
        (group("", "10.40.1.0/24"), "group[0].name", 5, "1 to 64 printable"),
        ("[[user]]\nname = 1\n", "user[0].name", 5, "expected a string"),
        ("group = 1\n", "concentrator.group", 4, "unknown key"),
    ],
)
def test_errors_name_key_and_line(tail: str, key: str, line: int, fragment: str) -> None:
    err = error_of(HEAD + tail)
    assert (err.key, err.line) == (key, line), str(err)
    assert fragment in err.reason, str(err)
    assert str(err).startswith(f"test.toml, line {line}: {key}: ")


def test_top_level_unknown_and_wrong_types() -> None:
    err = error_of('group = "x"\n' + HEAD)
    assert (err.key, err.line) == ("group", 1) and "array of tables" in err.reason
    err = error_of(HEAD + "[[log]]\nstore = 'x'\n")
    assert (err.key, err.line) == ("log", 4) and "expected a table, got an array" in err.reason


def test_missing_concentrator() -> None:
    err = error_of("[log]\nconsole_severity = 3\n")
    assert err.line == 1 and "missing required table [concentrator]" in str(err)
    err = error_of('[concentrator]\nprivate_networks = ["192.168.2.0/24"]\n')
    assert (err.key, err.line) == ("concentrator.public_address", 1)


def test_toml_syntax_error_line() -> None:
    err = error_of(HEAD + '\n\nbanner = "unterminated\n')
    assert err.line == 6 and err.key == ""
    assert err.reason.startswith("TOML syntax error: ")
    assert "(column" in err.reason and "at line" not in err.reason
    dup = error_of(HEAD + 'public_address = "203.0.113.51"\n')
    assert dup.line == 4


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "missing.toml")
    err = info.value
    assert err.line is None and str(err).startswith(
        str(tmp_path / "missing.toml") + ": cannot read"
    )
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path)  # a directory


def test_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(HEAD.encode() + b'banner = "\xff"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.line == 4 and "UTF-8" in str(info.value)


def test_load_config_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(HEAD + group("g", "10.40.1.0/24") + group("h", "10.40.1.128/25"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}, line 11: group[1].address_pool: ")


# --------------------------------------------------------------------------- the locator


def test_locator_arrays_of_tables_and_nesting() -> None:
    text = """\
# header comment with [brackets] and [[double]]
[concentrator]
public_address = "203.0.113.50"

[[group]]   # first
name = "a"
[[group]]
name = "b"
  [[group.route]]
  net = "10.0.0.0/8"
  [[group.route]]
  net = "10.1.0.0/16"
[group.extra]
x = 1
[[admin.user]]
name = "root"
[[admin.user]]
name = "ops"
"""
    loc = Locator(text)
    assert loc.exact_line(("concentrator", "public_address")) == 3
    assert loc.exact_line(("group",)) == 5
    assert loc.exact_line(("group", 0)) == 5
    assert loc.exact_line(("group", 0, "name")) == 6
    assert loc.exact_line(("group", 1)) == 7
    assert loc.exact_line(("group", 1, "name")) == 8
    assert loc.exact_line(("group", 1, "route", 0, "net")) == 10
    assert loc.exact_line(("group", 1, "route", 1, "net")) == 12
    assert loc.exact_line(("group", 1, "extra", "x")) == 14
    assert loc.exact_line(("admin", "user", 1, "name")) == 18
    assert loc.line_of(("group", 1, "missing_key")) == 7
    assert loc.line_of(("nothing", "here")) == 1


def test_locator_is_not_fooled_by_strings_and_comments() -> None:
    text = '''\
[concentrator]
banner = """
[[group]]
name = "fake"   # not a key: inside a string
"""
literal = \'\'\'
[[group]]
\'\'\'
quoted = "a [[group]] \\" # still a string"
odd = """ends with quotes"""""
"dotted.quoted".key = 1
plain.dotted = 2
inline = { a = 1, b = { c = [1, 2] } }
arr = [ # comment [
  "x", # ]
  [ "y",
    "z" ],
]
[[group]]
name = "real"
'''
    loc = Locator(text)
    assert loc.exact_line(("group", 0)) == 19
    assert loc.exact_line(("group", 0, "name")) == 20
    assert loc.exact_line(("group", 1)) is None
    assert loc.exact_line(("concentrator", "odd")) == 10
    assert loc.exact_line(("concentrator", "dotted.quoted", "key")) == 11
    assert loc.exact_line(("concentrator", "plain", "dotted")) == 12
    assert loc.exact_line(("concentrator", "inline", "b", "c", 1)) == 13
    assert loc.exact_line(("concentrator", "arr", 0)) == 15
    assert loc.exact_line(("concentrator", "arr", 1, 1)) == 17


def test_locator_crlf_and_quoted_headers() -> None:
    text = '[concentrator]\r\nx = 1\r\n[ "group" ]\r\n\r\n  y = "2"\r\n'
    loc = Locator(text)
    assert loc.exact_line(("concentrator", "x")) == 2
    assert loc.exact_line(("group", "y")) == 5


def test_locator_survives_garbage() -> None:
    loc = Locator('[[unterminated\n= = =\n"open')
    assert loc.line_of(("a",)) == 1


def test_format_key_path() -> None:
    assert format_key_path(("group", 1, "address_pool")) == "group[1].address_pool"
    assert format_key_path(("a b", 0)) == '"a b"[0]'
    assert format_key_path(()) == ""


@settings(max_examples=60, deadline=None)
@given(
    gaps=st.lists(st.integers(min_value=0, max_value=3), min_size=3, max_size=12),
    comments=st.booleans(),
)
def test_locator_finds_every_groups_pool(gaps: list[int], comments: bool) -> None:
    """Random blank lines and comments between [[group]] tables: each key's line is exact."""
    lines = HEAD.splitlines()
    expected: dict[int, int] = {}
    for i, gap in enumerate(gaps):
        for _ in range(gap):
            lines.append("# [[group]] in a comment" if comments else "")
        lines += ["[[group]]", f'name = "g{i}"', 'psk = "k"']
        expected[i] = len(lines) + 1
        lines.append(f'address_pool = "10.{i}.0.0/16"')
    text = "\n".join(lines) + "\n"
    loc = Locator(text)
    for i, line in expected.items():
        assert loc.exact_line(("group", i, "address_pool")) == line
    # The last group's pool overlapping the first is reported on its own line.
    bad = text.replace(f'"10.{len(gaps) - 1}.0.0/16"', '"10.0.128.0/17"')
    err = error_of(bad)
    assert (err.key, err.line) == (f"group[{len(gaps) - 1}].address_pool", expected[len(gaps) - 1])
    assert re.search(rf"\(line {expected[0]}\)$", err.reason)


@pytest.mark.parametrize(
    ("tail", "line"),
    [
        ("\n\nbanner = 'unterminated\ndpd_interval = 5\n", 6),
        ('dns = [\n  "192.168.2.1",\n]\n\n# c\nnbns = [\n  "192.168.2.2",\n', 9),
        ('banner = """\nmulti\nline\n', 4),
    ],
)
def test_syntax_error_at_end_of_document_points_at_the_start(tail: str, line: int) -> None:
    err = error_of(HEAD + tail)
    assert err.line == line, str(err)
    assert "never closed" in err.reason


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (HEAD + "dpd_interval = " + "1" * 5000 + "\n", 4),
        ("x = " + "[" * 5000 + "]" * 5000 + "\n", None),
        (
            HEAD + '[[group]]\nname = "g"\npsk_file = "a\\u0000b"\naddress_pool = "10.40.1.0/24"\n',
            6,
        ),
    ],
)
def test_hostile_input_gives_config_error(text: str, line: int | None) -> None:
    assert error_of(text).line == line


def test_nul_in_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read file"):
        load_config(str(tmp_path) + "/a\0b")


_TOML_BITS = st.sampled_from(
    [
        "[concentrator]\n", "[[group]]\n", "[[user]]\n", "[admin]\n", "[limits]\n",
        'public_address = "203.0.113.50"\n', 'private_networks = ["192.168.2.0/24"]\n',
        'name = "g"\n', 'psk = "k"\n', 'address_pool = "10.40.1.0/24"\n', 'group = "g"\n',
        'password = "p"\n', "dns = [\n", "]\n", '"x",\n', "x = 1\n", '"""\n', "'''\n", "# c\n",
        "dpd_interval = -1\n", "listen = ':'\n", "a.b = 1\n", "{\n", "= 2\n", "\n",
    ]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(_TOML_BITS, max_size=25) | st.text(max_size=200))
def test_anything_gives_config_or_config_error(parts: list[str] | str) -> None:
    text = parts if isinstance(parts, str) else "".join(parts)
    try:
        parse_config(text, "fuzz.toml")
    except ConfigError as err:
        assert str(err).startswith("fuzz.toml")
        assert err.line is None or 1 <= err.line <= text.count("\n") + 1


# --------------------------------------------------------------------------- workers


def test_workers_one_is_accepted() -> None:
    assert parse_config(HEAD + group("g", "10.0.0.0/24") + "", "t.toml").concentrator.workers == 1
    cfg = parse_config(HEAD + "workers = 1\n" + group("g", "10.0.0.0/24"), "t.toml")
    assert cfg.concentrator.workers == 1


@pytest.mark.parametrize("n", [2, 4, 256])
def test_workers_above_one_accepted(n: int) -> None:
    cfg = parse_config(HEAD + group("g", "10.0.0.0/24") + f"[dataplane]\nworkers = {n}\n",
                       "t.toml")
    assert cfg.dataplane.worker_count() == n
    # the older spelling under [concentrator] still works
    cfg = parse_config(HEAD + f"workers = {n}\n" + group("g", "10.0.0.0/24"), "t.toml")
    assert cfg.dataplane.worker_count() == n


def test_workers_default_is_one_per_core() -> None:
    cfg = parse_config(HEAD + group("g", "10.0.0.0/24"), "t.toml")
    assert cfg.dataplane.workers == "auto"
    assert cfg.dataplane.worker_count(cpus=1) == 1  # a single core: as before
    cfg = parse_config(HEAD + "workers = 1\n" + group("g", "10.0.0.0/24"), "t.toml")
    assert cfg.dataplane.worker_count(cpus=8) == 1  # the older spelling still decides


def test_workers_auto_is_the_cores() -> None:
    cfg = parse_config(HEAD + group("g", "10.0.0.0/24") + '[dataplane]\nworkers = "auto"\n',
                       "t.toml")
    assert cfg.dataplane.workers == "auto"
    assert cfg.dataplane.worker_count(cpus=16) == 16
    assert cfg.dataplane.worker_count() >= 1


def test_workers_bad_string_refused() -> None:
    err = error_of(HEAD + group("g", "10.0.0.0/24") + '[dataplane]\nworkers = "many"\n')
    assert err.key == "dataplane.workers" and "auto" in str(err)


def test_workers_zero_still_out_of_range() -> None:
    err = error_of(HEAD + "workers = 0\n" + group("g", "10.0.0.0/24"))
    assert err.key == "concentrator.workers" and "out of range" in str(err)


# Issue 12: the configuration is a leaf package. Of vpnhub it imports its own
# modules and the primitive vpnhub.secret (docs/ARCHITECTURE.md says why), which
# imports nothing of vpnhub; anything else would let config drag in (and cycle
# through) auth, the event log or the concentrator.
CONFIG_PACKAGE = ROOT / "vpnhub" / "config"
CONFIG_MAY_IMPORT = {"vpnhub.secret"}


def _vpnhub_imports(path: Path, root: Path = ROOT) -> set[str]:
    """Every vpnhub module `path` (under `root`) imports, at runtime or under TYPE_CHECKING."""
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            # `from vpnhub import x` may name module x; `from .x import y` (level 1)
            # is a module of the file's own package.
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*up, base]) if base else ".".join(up)
            if base in ("vpnhub", "vpnhub.config"):
                found.update(f"{base}.{a.name}" for a in node.names)
            else:
                found.add(base)
    return {m for m in found if m == "vpnhub" or m.startswith("vpnhub.")}


def _outside_the_package(path: Path) -> set[str]:
    return {m for m in _vpnhub_imports(path)
            if m != "vpnhub.config" and not m.startswith("vpnhub.config.")}


def test_config_imports_only_the_secret_primitive_of_vpnhub() -> None:
    files = sorted(CONFIG_PACKAGE.glob("*.py"))
    assert {f.name for f in files} >= {"__init__.py", "schema.py", "locate.py", "validate.py"}
    for path in files:
        imports = _outside_the_package(path)
        assert imports <= CONFIG_MAY_IMPORT, f"{path.name} imports {sorted(imports)}"
    for module in CONFIG_MAY_IMPORT:  # and the primitive is a leaf
        path = ROOT / (module.replace(".", "/") + ".py")
        assert _vpnhub_imports(path) == set(), f"{module} imports vpnhub modules"


def test_config_imports_only_the_standard_library_outside_vpnhub() -> None:
    # A leaf in the other direction too: no third-party package to load settings.
    for path in sorted(CONFIG_PACKAGE.glob("*.py")):
        tops = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                tops.update(a.name.partition(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                tops.add(node.module.partition(".")[0])
        foreign = tops - set(sys.stdlib_module_names) - {"__future__", "vpnhub"}
        assert foreign == set(), f"{path.name} imports {sorted(foreign)}"


def test_the_import_checker_sees_relative_and_package_imports(tmp_path: Path) -> None:
    (tmp_path / "vpnhub" / "config").mkdir(parents=True)
    path = tmp_path / "vpnhub" / "config" / "m.py"
    path.write_text("from . import schema\nfrom ..auth import users\n"
                    "from vpnhub import eventlog\nimport vpnhub.secret\n")
    assert _vpnhub_imports(path, root=tmp_path) == {
        "vpnhub.config.schema", "vpnhub.auth", "vpnhub.eventlog", "vpnhub.secret"}


def test_importing_the_configuration_loads_no_other_vpnhub_module() -> None:
    # The ast checks above, seen at run time: a fresh interpreter that imports the
    # package has loaded, of vpnhub, only the package, its modules and vpnhub.secret.
    code = ("import sys, vpnhub.config\n"
            "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] == 'vpnhub')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout.split()
    outside = {m for m in out if m != "vpnhub.config" and not m.startswith("vpnhub.config.")}
    assert outside == {"vpnhub", "vpnhub.secret"}


# ------------------------------------------------------------------ issue 14: [pki], auth
def test_group_auth_default_and_list(tmp_path: Path) -> None:
    assert parse_config(HEAD + group("g", "10.40.1.0/24")).groups[0].auth == ("psk",)
    for f in ("ca.pem", "c.pem", "c.key", "crl.pem"):
        (tmp_path / f).write_text("-----BEGIN X-----\n")
    text = (HEAD + '[pki]\nca = "ca.pem"\ncertificate = "c.pem"\nkey = "c.key"\n'
            'crls = ["crl.pem"]\n' + group("g", "10.40.1.0/24") + 'auth = ["hybrid", "rsa"]\n')
    cfg = parse_config(text, base_dir=tmp_path)
    assert cfg.groups[0].auth == ("hybrid", "rsa")
    assert cfg.pki is not None and cfg.pki.crls == (tmp_path / "crl.pem",)
    assert cfg.pki.key == tmp_path / "c.key"


def test_group_auth_errors() -> None:
    base = HEAD + group("g", "10.40.1.0/24")
    assert "unknown method 'cert'" in str(error_of(base + 'auth = ["cert"]\n'))
    assert "listed twice" in str(error_of(base + 'auth = ["psk", "psk"]\n'))
    assert "empty list" in str(error_of(base + "auth = []\n"))
    e = error_of(base + 'auth = ["psk", "hybrid"]\n')
    assert e.key == "group[0].auth" and "[pki]" in str(e)


def test_psk_optional_only_without_psk_in_auth(tmp_path: Path) -> None:
    """Issue 14: a group that allows only "rsa" / "hybrid" needs no pre-shared key."""
    for f in ("ca.pem", "c.pem", "c.key"):
        (tmp_path / f).write_text("-----BEGIN X-----\n")
    pki = '[pki]\nca = "ca.pem"\ncertificate = "c.pem"\nkey = "c.key"\n'
    keyless = '[[group]]\nname = "certs"\naddress_pool = "10.40.1.0/24"\n'
    cfg = parse_config(HEAD + pki + keyless + 'auth = ["hybrid", "rsa"]\n', base_dir=tmp_path)
    assert cfg.groups[0].psk is None and cfg.groups[0].auth == ("hybrid", "rsa")
    kept = parse_config(HEAD + pki + group("g", "10.40.1.0/24") + 'auth = ["hybrid"]\n',
                        base_dir=tmp_path)
    assert kept.groups[0].psk is not None  # a key it has is kept (a later "psk")
    with pytest.raises(ConfigError, match=r'group\[0\]\.psk: .*auth allows "psk"'):
        parse_config(HEAD + pki + keyless + 'auth = ["hybrid", "psk"]\n', base_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"group\[0\]\.psk: .*empty"):
        parse_config(HEAD + pki + keyless + 'auth = ["rsa"]\npsk = ""\n', base_dir=tmp_path)


def test_pki_file_errors(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("x")
    e = error_of(HEAD + '[pki]\ncertificate = "c.pem"\n')
    assert "missing 'ca'" in str(e)
    with pytest.raises(ConfigError, match=r"pki\.ca: cannot read .*No such file"):
        parse_config(HEAD + '[pki]\nca = "nope.pem"\n', base_dir=tmp_path)
    with pytest.raises(ConfigError, match="missing 'key'"):
        parse_config(HEAD + '[pki]\nca = "ca.pem"\ncertificate = "ca.pem"\n', base_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"pki.crls\[0\]: cannot read"):
        parse_config(HEAD + '[pki]\nca = "ca.pem"\ncrls = ["gone.crl"]\n', base_dir=tmp_path)
    with pytest.raises(ConfigError, match="unknown key 'cert'"):
        parse_config(HEAD + '[pki]\nca = "ca.pem"\ncert = "x"\n', base_dir=tmp_path)


def test_dataplane_moderation_us() -> None:
    """[dataplane] moderation_us (issue 16): default 200, 0 turns it off, 0..1000."""
    cfg = parse_config(HEAD + group("g", "10.0.0.0/24"), "t.toml")
    assert cfg.dataplane.moderation_us == 200
    cfg = parse_config(HEAD + group("g", "10.0.0.0/24") + "[dataplane]\nmoderation_us = 0\n",
                       "t.toml")
    assert cfg.dataplane.moderation_us == 0
    for bad in ("-1", "1001", '"200"', "1.5"):
        err = error_of(HEAD + group("g", "10.0.0.0/24") + f"[dataplane]\nmoderation_us = {bad}\n")
        assert err.key == "dataplane.moderation_us"
