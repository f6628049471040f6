"""Cisco VPN Client .pcf profiles, read the way the Cisco client reads them."""

from __future__ import annotations

import codecs
import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from vpnhub.client.cisco_decrypt import encode_password
from vpnhub.client.profile import (
    ClientProfile,
    IkeMode,
    ProfileError,
    TunnelingMode,
    load_profile,
    parse_pcf,
)

DATA = Path(__file__).parent / "data"

# enc_GroupPwd of demosdemon/pcf_decrypt's test (cleartext Sh@r3dK3ySP*&%$);
# see test_client_profile_decrypt.py for the sources of every value.
ENC = (
    "D06615FC4D2046942A6F39951FC40794740E30C485090B4416C9D5A65DE59E52"
    "30A63D391F2A634820B574A37E16DB23820C89CD29DA2245"
)


def pcf(*lines: str, eol: str = "\r\n") -> str:
    return eol.join(lines) + eol


MINIMAL = (
    "[main]",
    "Host=vpn.example.net",
    "AuthType=1",
    "GroupName=helpdesk",
    f"enc_GroupPwd={ENC}",
)


def refused(text: str) -> ProfileError:
    with pytest.raises(ProfileError) as info:
        parse_pcf(text, "x.pcf")
    return info.value


# --------------------------------------------------------------------------- samples


def test_uit_student_profile() -> None:
    p = load_profile(DATA / "uit-student.pcf")
    assert (p.host, p.port, p.group) == ("203.0.113.10", 500, "student.uit.no")
    assert p.group_password.reveal() == b"student.uit.no"
    assert p.username == "[Erstatt med din fulle epostadresse]"
    assert p.password is None
    assert p.transparent_tunneling and p.tunneling_mode is TunnelingMode.NATT
    assert p.local_lan and not p.force_keepalives
    assert (p.dh_group, p.allow_legacy, p.ike_mode) == (2, True, IkeMode.AGGRESSIVE)
    assert p.description == "VPN tilkobling med Student-IT konto."
    assert p.locked == {"Host", "AuthType", "GroupName", "SaveUserPassword"}
    assert p.extra["PeerTimeout"] == "90"
    assert p.extra["CertSerialHash"] == "0" * 32
    assert p.extra["ISPConnect"] == "" and p.extra["EnableSplitDNS"] == "1"
    assert p.source == DATA / "uit-student.pcf" and p.source_format == "pcf"


def test_helpdesk_tcp_profile() -> None:
    p = load_profile(DATA / "helpdesk-tcp.pcf")
    assert (p.host, p.group, p.username) == ("vpn.example.net", "helpdesk", "jdoe")
    assert p.group_password.reveal() == b"HelloWorld"  # its NUL-terminated form
    assert p.password is not None and p.password.reveal() == b"Tr0ub4dor&3"
    assert p.tunneling_mode is TunnelingMode.TCP and p.tcp_port == 10000
    assert p.force_keepalives and p.local_lan
    assert (p.dh_group, p.allow_legacy) == (5, True)
    assert p.backup_servers == ("vpn2.example.net", "198.51.100.7")
    assert {"enc_GroupPwd", "TunnelingMode", "TcpTunnelingPort"} <= p.locked
    assert p.extra["NTDomain"] == "EXAMPLE" and p.extra["UseLegacyIKEPort"] == "0"
    assert "enc_UserPassword" not in p.extra and "BackupServer" not in p.extra


def test_document_lab_profile() -> None:
    p = load_profile(DATA / "document-lab.pcf")
    assert (p.host, p.group, p.username) == ("203.0.113.50", "ipsecgroup", "user1")
    # enc_GroupPwd is written twice; as with Windows INI files, the first one wins.
    assert p.group_password.reveal() == b"Sh@r3dK3ySP*&%$"
    assert p.transparent_tunneling and p.tunneling_mode is TunnelingMode.NATT
    assert p.password is None and p.backup_servers == ()
    assert p.extra["SingleDES"] == "0" and p.locked == frozenset()


def test_hand_edited_profile() -> None:
    p = load_profile(DATA / "hand-edited.pcf")
    assert (p.host, p.group, p.username) == ("192.0.2.1", "lab", "alice")
    assert p.group_password.reveal() == b"lab group secret"
    assert p.description == "Lab, no NAT in the path"  # quotes removed
    assert not p.transparent_tunneling and p.tunneling_mode is TunnelingMode.TCP
    assert (p.dh_group, p.allow_legacy) == (14, False)
    assert dict(p.extra) == {"UseLegacyIKEPort": "1"}  # [Notes] is not [main]


def test_certificate_profile_is_not_supported_yet() -> None:
    with pytest.raises(ProfileError) as info:
        load_profile(DATA / "certificate.pcf")
    assert info.value.line == 4 and info.value.key == "AuthType"
    assert "not supported yet: AuthType=3 (certificates)" in str(info.value)
    assert str(DATA / "certificate.pcf") in str(info.value)


@pytest.mark.parametrize(
    ("name", "line", "words"),
    [
        ("bad-no-main.pcf", 1, "no [main] section"),
        ("bad-no-equals.pcf", 7, "line without '='"),
        ("bad-number.pcf", 8, "TcpTunnelingPort: '10OOO' is not a number"),
        ("bad-enc-grouppwd.pcf", 6, "enc_GroupPwd: cannot be decoded: checksum mismatch"),
        ("bad-missing-host.pcf", 1, "Host: missing required key"),
    ],
)
def test_malformed_samples_name_file_and_line(name: str, line: int, words: str) -> None:
    with pytest.raises(ProfileError) as info:
        load_profile(DATA / name)
    assert info.value.line == line
    assert str(info.value).startswith(f"{DATA / name}, line {line}: ")
    assert words in str(info.value)


def test_samples_are_written_as_the_cisco_client_writes_them() -> None:
    raw = (DATA / "uit-student.pcf").read_bytes()
    if b"\r\n" not in raw:
        pytest.skip("checked out with line-end conversion")
    assert raw.count(b"\r\n") == raw.count(b"\n")


# --------------------------------------------------------------------------- reading rules


def test_crlf_and_lf_read_the_same() -> None:
    assert parse_pcf(pcf(*MINIMAL)) == parse_pcf(pcf(*MINIMAL, eol="\n"))


def test_minimal_profile_defaults() -> None:
    p = parse_pcf(pcf(*MINIMAL))
    assert p.group_password.reveal() == b"Sh@r3dK3ySP*&%$"
    assert p.username is None and p.password is None
    assert p.transparent_tunneling  # EnableNat defaults to 1, as in the Cisco client
    assert (p.tcp_port, p.dh_group, p.allow_legacy) == (10000, 2, True)
    assert (p.dpd_interval, p.reconnect, p.no_dns) == (30, False, False)
    assert p.tunnel_interface == "vpnhub-c0" and p.source is None


def test_keys_are_case_insensitive_and_blanks_are_dropped() -> None:
    p = parse_pcf(
        pcf(
            "[MAIN]",
            "  host = vpn.example.net ",
            "GROUPNAME=g",
            "grouppwd= s3cret ",
            "enablenat=0",
            "DhGroup=14",
        )
    )
    assert (p.host, p.group, p.group_password.reveal()) == ("vpn.example.net", "g", b"s3cret")
    assert not p.transparent_tunneling and p.dh_group == 14


def test_locked_keys_are_accepted_and_remembered() -> None:
    p = parse_pcf(
        pcf(
            "[main]",
            "!Host=vpn.example.net",
            "!GroupName=g",
            f"!enc_GroupPwd={ENC}",
            "!!EnableLocalLAN=1",
            "!Description=",
        )
    )
    assert p.local_lan and p.description == ""
    assert p.locked == {"Host", "GroupName", "enc_GroupPwd", "EnableLocalLAN", "Description"}


def test_empty_values_take_the_cisco_defaults() -> None:
    p = parse_pcf(
        pcf(
            *MINIMAL,
            "EnableNat=",
            "TunnelingMode=",
            "TcpTunnelingPort=",
            "DHGroup=",
            "AuthType=",
            "Username=",
            "EnableBackup=",
            "BackupServer=",
        )
    )
    assert p.transparent_tunneling and p.tunneling_mode is TunnelingMode.NATT
    assert (p.tcp_port, p.dh_group, p.username) == (10000, 2, None)


def test_clear_group_password_wins_over_enc() -> None:
    # The Cisco client encodes a clear GroupPwd into enc_GroupPwd on first use.
    p = parse_pcf(pcf("[main]", "Host=h", "GroupName=g", "GroupPwd=new", "enc_GroupPwd=broken"))
    assert p.group_password.reveal() == b"new"


def test_user_password_counts_only_when_saved() -> None:
    enc = encode_password("hunter2")
    saved = parse_pcf(pcf(*MINIMAL, "SaveUserPassword=1", f"enc_UserPassword={enc}"))
    assert saved.password is not None and saved.password.reveal() == b"hunter2"
    clear = parse_pcf(pcf(*MINIMAL, "SaveUserPassword=1", "UserPassword=clear"))
    assert clear.password is not None and clear.password.reveal() == b"clear"
    unsaved = parse_pcf(pcf(*MINIMAL, "SaveUserPassword=0", f"enc_UserPassword={enc}"))
    assert unsaved.password is None


def test_backup_servers_only_when_enabled() -> None:
    on = parse_pcf(pcf(*MINIMAL, "EnableBackup=1", "BackupServer= a.example , b.example,,"))
    off = parse_pcf(pcf(*MINIMAL, "EnableBackup=0", "BackupServer=a.example"))
    assert (on.backup_servers, off.backup_servers) == (("a.example", "b.example"), ())


def test_comments_blank_lines_and_other_sections() -> None:
    p = parse_pcf(
        pcf(
            "; exported 2009-03-02",
            "",
            "[main]",
            *MINIMAL[1:],
            "",
            "[Other]",
            "Host=ignored.example",
            "EnableNat=banana",
        )
    )
    assert p.host == "vpn.example.net"


def test_unknown_keys_are_kept_read_only() -> None:
    p = parse_pcf(pcf(*MINIMAL, "ISPConnect=Dial-up", "CertStore=0", "FutureKey=x=y"))
    assert p.extra == {"ISPConnect": "Dial-up", "CertStore": "0", "FutureKey": "x=y"}
    with pytest.raises(TypeError):
        p.extra["CertStore"] = "1"  # type: ignore[index]


@pytest.mark.parametrize(
    "encode",
    [
        pytest.param(lambda t: codecs.BOM_UTF8 + t.encode(), id="utf8-bom"),
        pytest.param(lambda t: t.encode(), id="utf8"),
        pytest.param(lambda t: t.encode("cp1252"), id="windows-ansi"),
        pytest.param(lambda t: t.encode("utf-16"), id="utf16-bom"),
    ],
)
def test_file_encodings(tmp_path: Path, encode: Callable[[str], bytes]) -> None:
    path = tmp_path / "zurich.pcf"
    path.write_bytes(encode(pcf(*MINIMAL, "Description=Zürich Büro")))
    assert load_profile(path).description == "Zürich Büro"


def test_secrets_stay_out_of_repr() -> None:
    p = parse_pcf(pcf(*MINIMAL, "SaveUserPassword=1", "UserPassword=hunter2"))
    assert "Sh@r3d" not in repr(p) and "hunter2" not in repr(p)
    assert "Secret(<hidden>)" in repr(p)


def test_profile_is_frozen_and_hashable() -> None:
    p = parse_pcf(pcf(*MINIMAL))
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.host = "other"  # type: ignore[misc]
    assert hash(p) == hash(parse_pcf(pcf(*MINIMAL)))
    assert isinstance(p, ClientProfile)


# --------------------------------------------------------------------------- malformed


@pytest.mark.parametrize(
    ("lines", "line", "words"),
    [
        pytest.param(("",), 1, "no [main] section", id="empty-file"),
        pytest.param(
            ("; only a comment", "[Main Profile]", "Host=h"),
            2,
            "no [main] section",
            id="other-section-only",
        ),
        pytest.param(("Host=h", "[main]"), 1, "outside any section", id="key-before-section"),
        pytest.param(("[main", "Host=h"), 1, "closing ']'", id="unclosed-header"),
        pytest.param(("[main]", "Host=h", "=x"), 3, "without a key", id="empty-key"),
        pytest.param(("[main]", "Host vpn.example.net"), 2, "line without '='", id="no-equals"),
        pytest.param(
            ("[main]", "Host=", "GroupName=g", "GroupPwd=p"), 2, "Host: is empty", id="empty-host"
        ),
        pytest.param(
            ("[main]", "Host=a b", "GroupName=g", "GroupPwd=p"), 2, "not a host name", id="bad-host"
        ),
        pytest.param(
            ("[main]", "Host=h", "GroupPwd=p"), 1, "GroupName: missing required key", id="no-group"
        ),
        pytest.param(
            ("[main]", "Host=h", "GroupName=", "GroupPwd=p"),
            3,
            "GroupName: is empty",
            id="empty-group",
        ),
        pytest.param(
            ("[main]", "Host=h", "GroupName=g", "GroupPwd=", "enc_GroupPwd="),
            5,
            "no group password",
            id="no-group-password",
        ),
        pytest.param(
            ("[main]", "Host=h", "GroupName=g", "enc_GroupPwd=XYZ"),
            4,
            "enc_GroupPwd: cannot be decoded: not a hex string",
            id="enc-not-hex",
        ),
        pytest.param(
            ("[main]", "Host=h", "GroupName=g", "enc_GroupPwd=ABCD"),
            4,
            "enc_GroupPwd: cannot be decoded: too short",
            id="enc-short",
        ),
        pytest.param((*MINIMAL, "EnableNat=yes"), 6, "EnableNat: expected 0 or 1", id="flag"),
        pytest.param((*MINIMAL, "TunnelingMode=2"), 6, "out of range (0..1)", id="mode"),
        pytest.param((*MINIMAL, "TcpTunnelingPort=70000"), 6, "out of range", id="port"),
        pytest.param((*MINIMAL, "TcpTunnelingPort=-1"), 6, "not a number", id="negative"),
        pytest.param((*MINIMAL, "DHGroup=1"), 6, "DH group 1 is not supported", id="dh1"),
        pytest.param((*MINIMAL, "DHGroup=two"), 6, "not a number", id="dh-word"),
        pytest.param(
            (*MINIMAL, "SaveUserPassword=1", "enc_UserPassword=00"),
            7,
            "enc_UserPassword: cannot be decoded",
            id="enc-user",
        ),
        pytest.param(
            (*MINIMAL, "EnableBackup=1", "BackupServer=a b"), 7, "BackupServer", id="backup"
        ),
        pytest.param(
            (*MINIMAL[:2], "AuthType=5", *MINIMAL[3:]),
            3,
            "not supported yet: AuthType=5 (certificates): hybrid",
            id="hybrid",
        ),
        pytest.param(
            (*MINIMAL[:2], "AuthType=2", *MINIMAL[3:]), 3, "unknown AuthType=2", id="auth-unknown"
        ),
    ],
)
def test_malformed_files_are_refused_with_the_line(
    lines: tuple[str, ...], line: int, words: str
) -> None:
    error = refused(pcf(*lines))
    assert error.line == line, str(error)
    assert str(error).startswith(f"x.pcf, line {line}: ")
    assert words in str(error)


def test_errors_never_quote_passwords() -> None:
    enc = encode_password("hunter2")
    error = refused(pcf(*MINIMAL, "SaveUserPassword=1", f"enc_UserPassword={enc[:-2]}"))
    assert enc[:40] not in str(error) and "hunter2" not in str(error)


def test_lf_errors_count_lines_too() -> None:
    assert refused(pcf(*MINIMAL, "", "oops", eol="\n")).line == 7


# --------------------------------------------------------------------------- detection


def test_pcf_detected_by_content_whatever_the_name(tmp_path: Path) -> None:
    path = tmp_path / "work.conf"
    path.write_text(pcf("; exported", *MINIMAL), newline="")
    assert load_profile(path).source_format == "pcf"


def test_pcf_extension_any_case(tmp_path: Path) -> None:
    path = tmp_path / "WORK.PCF"
    path.write_text(pcf(*MINIMAL), newline="")
    assert load_profile(path).group == "helpdesk"


def test_unreadable_file_has_no_line(tmp_path: Path) -> None:
    with pytest.raises(ProfileError) as info:
        load_profile(tmp_path / "missing.pcf")
    assert info.value.line is None and "cannot read file" in str(info.value)
