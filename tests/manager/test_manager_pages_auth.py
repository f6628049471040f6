"""The authentication mode (issue 14) in the manager's sessions table and detail page."""

from __future__ import annotations

from vpnhub.manager.pages import detail_live, remote_row


def _session(auth: str) -> dict[str, object]:
    return {"id": "abc", "user": "alice", "assigned_ip": "10.40.1.1",
            "public_ip": "203.0.113.78", "public_port": 4500, "group": "vpngroup",
            "protocol": "IPsec/NAT-T", "encryption": "AES-256/HMAC-SHA1-96",
            "login_time": "2026-12-03T18:00:00", "duration": 5, "client": "vpnc",
            "bytes_tx": 0, "bytes_rx": 0, "auth": auth,
            "ike": {"auth_mode": auth, "authentication": "RSA Digital Certificate-XAUTH",
                    "certificate": "CN=alice,OU=vpngroup,O=Example"}}


def test_sessions_row_shows_the_authentication_mode() -> None:
    row = remote_row(_session("rsa"), "csrf", 0.0)
    assert '<span class="auth">rsa</span>' in row
    assert '<span class="protocol">IPsec/NAT-T</span>' in row  # unchanged for scripts


def test_detail_page_shows_the_peer_certificate() -> None:
    page = detail_live(_session("rsa"), "")
    assert "Peer Certificate" in page and "CN=alice,OU=vpngroup,O=Example" in page
