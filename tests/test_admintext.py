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


def test_cluster_texts() -> None:
    from vpnhub.admintext import format_cluster, format_cluster_sessions

    text = format_cluster_sessions({"members": ["c1", "c2"], "sessions": [
        {"member": "c2", "id": "ab" * 16, "user": "alice\x1b[31m", "assigned_ip": "10.77.0.5",
         "public_ip": "203.0.113.5", "public_port": 4500, "group": "staff",
         "protocol": "IPsec/NAT-T", "login_time": "2026-12-04T10:00:00", "duration": 61}]})
    assert "c2" in text and "ab" * 16 in text and "00:01:01" in text
    assert "\x1b" not in text  # a peer's text never raw to a terminal
    status = format_cluster({"member": "c1", "database_ok": False, "last_error": "refused",
                             "virtual_address": "198.51.100.10", "members": [
                                 {"name": "c1", "me": True, "public_address": "198.51.100.11",
                                  "sessions": 3, "max_sessions": 100, "load": 0.03,
                                  "alive": True, "heartbeat_age": 0.4, "version": "0.1.0"}],
                             "pools": {"staff": {"blocks": ["10.77.0.0/26"], "in_use": 3,
                                                 "size": 63}}})
    assert "UNREACHABLE (refused)" in status and "c1 *" in status and "3.0 %" in status
    assert "10.77.0.0/26 (3 of 63 in use)" in status
