"""vpnhub.auth.users: password hashes (XAUTH checks: test_auth_local.py)."""

from __future__ import annotations

import base64
import hashlib

import pytest
from auth_fakes import FAST_LN

from vpnhub.auth.users import (
    PasswordHashError,
    hash_password,
    main,
    parse_password_hash,
    verify_password,
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
