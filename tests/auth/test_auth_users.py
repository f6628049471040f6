"""vpnhub.auth.users: password hashes and XAUTH verification against the config."""

from __future__ import annotations

import base64
import hashlib

import pytest

from vpnhub.auth import AuthReason, LockoutPolicy, XauthAuthenticator
from vpnhub.auth.users import (
    PasswordHashError,
    hash_password,
    main,
    parse_password_hash,
    verify_password,
)
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


# --------------------------------------------------------------------------- hashes


def test_scrypt_round_trip_and_format() -> None:
    h = hash_password("correct horse", log2_n=FAST_LN)
    assert h.startswith("$scrypt$ln=4,r=8,p=1$") and "=" not in h.split("$")[-1]
    assert verify_password("correct horse", h)
    assert verify_password(b"correct horse", h)
    assert not verify_password("correct horsf", h)
    assert hash_password("x", log2_n=FAST_LN) != hash_password("x", log2_n=FAST_LN)


def test_scrypt_matches_hashlib_directly() -> None:
    """The documented format: standard base64 without padding, N = 2**ln."""
    salt = b"0123456789abcdef"
    h = hash_password("pw", log2_n=5, r=4, p=2, salt=salt)
    expected = hashlib.scrypt(b"pw", salt=salt, n=32, r=4, p=2, dklen=32)

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode().rstrip("=")

    assert h == f"$scrypt$ln=5,r=4,p=2${b64(salt)}${b64(expected)}"


@pytest.mark.parametrize("scheme", ["pbkdf2-sha256", "pbkdf2-sha512"])
def test_pbkdf2(scheme: str) -> None:
    h = hash_password("pw", scheme=scheme, iterations=1000, salt=b"saltsalt")
    algorithm = scheme.split("-")[1]
    digest = hashlib.pbkdf2_hmac(algorithm, b"pw", b"saltsalt", 1000, dklen=32)
    assert h.endswith("$" + base64.b64encode(digest).decode().rstrip("="))
    assert h.startswith(f"${scheme}$i=1000$")
    assert verify_password("pw", h) and not verify_password("pW", h)
    default = parse_password_hash(hash_password("pw", scheme=scheme, salt=b"saltsalt"))
    assert default.iterations >= 210_000


@pytest.mark.parametrize(
    ("encoded", "message"),
    [
        ("plaintext", "not a password hash"),
        ("$md5$x$y$z", "unknown hash scheme"),
        ("$scrypt$ln=4,r=8$c2FsdHNhbHQ$" + "A" * 43, "bad parameters"),
        ("$scrypt$ln=4,r=8,p=1,p=1$c2FsdHNhbHQ$" + "A" * 43, "bad parameters"),
        ("$scrypt$ln=40,r=8,p=1$c2FsdHNhbHQ$" + "A" * 43, "out of range"),
        ("$pbkdf2-sha256$i=10$c2FsdHNhbHQ$" + "A" * 43, "out of range"),
        ("$scrypt$ln=4,r=8,p=1$c2Fs$" + "A" * 43, "salt is shorter"),
        ("$scrypt$ln=4,r=8,p=1$c2FsdHNhbHQ$AAAA", "16 to 128 bytes"),
        ("$scrypt$ln=4,r=8,p=1$c2F*dHNhbHQ$" + "A" * 43, "salt is not base64"),
        ("$scrypt$ln=4,r=8,p=1$c2FsdHNhbHQ$" + "A" * 41, "hash is not base64"),
    ],
)
def test_malformed_hashes(encoded: str, message: str) -> None:
    with pytest.raises(PasswordHashError, match=message) as info:
        parse_password_hash(encoded)
    assert "c2FsdHNhbHQ" not in str(info.value)
    assert not verify_password("x", encoded)


def test_hash_password_rejects_silly_parameters() -> None:
    with pytest.raises(PasswordHashError):
        hash_password("x", log2_n=30)
    with pytest.raises(ValueError):
        hash_password("x", scheme="md5")


def test_main_prints_a_hash(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = iter(["s3cret", "s3cret"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    assert main(["--pbkdf2"]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed.startswith("$pbkdf2-sha256$") and verify_password("s3cret", printed)
    answers = iter(["a", "b"])
    assert main([]) == 1


# --------------------------------------------------------------------------- XAUTH


def test_success_plain_and_hashed() -> None:
    auth = XauthAuthenticator.from_config(config())
    ok = auth.authenticate("vpnclient1", "userpass1", group="ciscovpn", source=SRC, now=0)
    assert ok.ok and ok.reason == "ok" and ok.delay == 0 and ok.group == "ciscovpn"
    ok2 = auth.authenticate("hashed", b"hashedpass", group="ciscovpn", source=SRC, now=0)
    assert ok2.ok
    ok3 = auth.authenticate("vpnclient1", Secret("userpass1"), group="ciscovpn", source=SRC, now=0)
    assert ok3.ok


@pytest.mark.parametrize(
    ("user", "password", "group", "reason"),
    [
        ("nobody", "userpass1", "ciscovpn", AuthReason.UNKNOWN_USER),
        ("vpnclient1", "wrong", "ciscovpn", AuthReason.BAD_PASSWORD),
        ("vpnclient1", "userpass1x", "ciscovpn", AuthReason.BAD_PASSWORD),
        ("vpnclient1", "", "ciscovpn", AuthReason.BAD_PASSWORD),
        ("hashed", "wrong", "ciscovpn", AuthReason.BAD_PASSWORD),
        ("vpnclient1", "userpass1", "other", AuthReason.WRONG_GROUP),
        ("vpnclient1", "wrong", "other", AuthReason.BAD_PASSWORD),
    ],
)
def test_failure_reasons(user: str, password: str, group: str, reason: AuthReason) -> None:
    auth = XauthAuthenticator.from_config(config())
    result = auth.authenticate(user, password, group=group, source=SRC, now=0)
    assert not result.ok and result.reason == reason and result.reason.value == str(reason)
    assert result.delay == 1.0


def test_lockout_after_n_failures_even_with_the_right_password() -> None:
    auth = XauthAuthenticator.from_config(config())
    delays = [
        auth.authenticate("vpnclient1", "bad", group="ciscovpn", source=SRC, now=t).delay
        for t in range(3)
    ]
    assert delays == [1, 2, 4]
    locked = auth.authenticate(
        "vpnclient1", "userpass1", group="ciscovpn", source="192.0.2.1", now=10
    )
    assert locked.reason == "locked_out" and locked.locked_until == 302 and locked.delay == 4
    later = auth.authenticate("vpnclient1", "userpass1", group="ciscovpn", source=SRC, now=302)
    assert later.ok


def test_success_resets_the_count() -> None:
    auth = XauthAuthenticator.from_config(config())
    for t in range(2):
        auth.authenticate("vpnclient1", "bad", group="ciscovpn", source=SRC, now=t)
    assert auth.authenticate("vpnclient1", "userpass1", group="ciscovpn", source=SRC, now=2).ok
    again = auth.authenticate("vpnclient1", "bad", group="ciscovpn", source=SRC, now=3)
    assert again.delay == 1 and again.locked_until is None


def test_unknown_names_do_not_fill_the_user_table() -> None:
    auth = XauthAuthenticator(config().users, LockoutPolicy(max_failures_per_source=0))
    for i in range(200):
        auth.authenticate(f"guess{i}", "x", group="ciscovpn", source=f"10.0.0.{i}", now=i)
    assert auth.lockout.tracked_users == 0
    assert auth.knows("vpnclient1") and not auth.knows("guess1")


def test_spraying_from_one_source_gets_locked() -> None:
    auth = XauthAuthenticator(
        config().users, LockoutPolicy(max_failures=100, max_failures_per_source=4)
    )
    for i in range(4):
        auth.authenticate(f"guess{i}", "x", group="ciscovpn", source=SRC, now=i)
    result = auth.authenticate("vpnclient1", "userpass1", group="ciscovpn", source=SRC, now=5)
    assert result.reason == AuthReason.LOCKED_OUT
    elsewhere = auth.authenticate(
        "vpnclient1", "userpass1", group="ciscovpn", source="192.0.2.1", now=5
    )
    assert elsewhere.ok


def test_unknown_user_costs_a_dummy_hash() -> None:
    """With hashed users configured, an unknown name runs the KDF too (timing)."""
    calls: list[int] = []
    auth = XauthAuthenticator.from_config(config())
    real = auth._check

    def counting(cred, given):  # type: ignore[no-untyped-def]
        calls.append(1 if cred.hashed is not None else 0)
        return real(cred, given)

    auth._check = counting  # type: ignore[method-assign]
    auth.authenticate("nobody", "x", group="ciscovpn", source=SRC, now=0)
    assert calls == [1]


def test_result_repr_has_no_password() -> None:
    auth = XauthAuthenticator.from_config(config())
    result = auth.authenticate("vpnclient1", "s3cretguess", group="ciscovpn", source=SRC, now=0)
    assert "s3cretguess" not in repr(result)
