"""`vpnhub sessions` as text (admintext.format_sessions): the authentication column."""

from __future__ import annotations

from vpnhub.admintext import format_sessions


def _session(user: str, auth: str | None) -> dict[str, object]:
    s: dict[str, object] = {"user": user, "assigned_ip": "10.40.1.1",
                            "public_ip": "203.0.113.78", "public_port": 4500,
                            "group": "vpngroup", "protocol": "IPsec/NAT-T",
                            "encryption": "AES-256/HMAC-SHA1-96"}
    if auth is not None:
        s["auth"] = auth
    return s


def test_sessions_show_the_authentication_mode() -> None:
    text = format_sessions({"summary": {}, "sessions": [
        _session("alice", "hybrid"), _session("bob", "rsa"), _session("old", None)]})
    head = next(line for line in text.splitlines() if "Username" in line)
    assert "Auth" in head.split()
    rows = {line.split()[0]: line.split() for line in text.splitlines()
            if line.strip().startswith(("alice", "bob", "old"))}
    assert rows["alice"][4] == "hybrid" and rows["bob"][4] == "rsa"
    assert rows["old"][4] == "psk"  # a reply of an older server: PSK was all there was
