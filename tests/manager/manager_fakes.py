"""A concentrator stand-in for the manager's in-process tests, and a server in a thread.

`FakeConcentrator` has exactly what `vpnhub.manager.view.ConcentratorLike`
names: the real configuration, event log, session store and address pools,
with an IKE endpoint whose SAs only record `delete()`. `ManagerServer` runs a
`Manager` on 127.0.0.1 (a free port) in its own event loop thread, so that
plain HTTP clients (urllib, schemathesis) can talk to it. The ping is a fake:
these tests never send packets anywhere.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import functools
import http.client
import ipaddress
import json
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vpnhub.auth.users import hash_password
from vpnhub.config import Config, parse_config
from vpnhub.eventlog import EventLog
from vpnhub.manager.app import Manager
from vpnhub.manager.throttle import LoginThrottle
from vpnhub.manager.view import PingResult
from vpnhub.session.model import ChildInfo, SessionView
from vpnhub.session.pool import pool_for_group
from vpnhub.session.store import MemorySessionStore
from vpnhub.wire.constants import EncapsulationMode

ADMIN = "admin"
ADMIN_PASSWORD = "manager-Pa55word"
GROUP_PSK = "fake-group-secret-psk"
USER_PASSWORD = "fake-user-pass-1"
# cheap hash for tests (pbkdf2 at its lowest allowed cost); real setups use scrypt
ADMIN_HASH = hash_password(ADMIN_PASSWORD, scheme="pbkdf2-sha256", iterations=1000)
ESP_AES_CBC, AUTH_HMAC_SHA1, ESP_3DES, AUTH_HMAC_MD5 = 12, 2, 3, 1


def config_text(store: Path | None, *, natt: bool = True, pool: str = "10.40.1.0/24",
                extra: str = "", max_events: int = 1000) -> str:
    store_line = f'store = "{store}"' if store is not None else 'store = ""'
    return f"""
[concentrator]
public_address = "203.0.113.50"
private_networks = ["192.168.2.0/24"]
allow_legacy_crypto = true
[nat_transparency]
ipsec_over_natt = {str(natt).lower()}
[admin]
socket = "/nonexistent/admin.sock"
listen = "127.0.0.1:8443"
[[admin.user]]
name = "{ADMIN}"
password_hash = "{ADMIN_HASH}"
[log]
console_severity = 1
keep_severity = 9
{store_line}
store_max_events = {max_events}
{extra}
[[group]]
name = "vpngroup"
psk = "{GROUP_PSK}"
address_pool = "{pool}"
[[user]]
name = "vpnuser1"
password = "{USER_PASSWORD}"
group = "vpngroup"
"""


class FakeSA:
    def __init__(self, key: tuple[bytes, bytes]) -> None:
        self.icookie, self.rcookie = key
        self.deleted: str | None = None

    def delete(self, now: float, reason: str) -> None:
        self.deleted = reason


class FakeEndpoint:
    def __init__(self) -> None:
        self.sas: dict[tuple[bytes, bytes], FakeSA] = {}
        self.drops: Counter[str] = Counter({"unknown_cookie": 3})

    def get(self, icookie: bytes, rcookie: bytes) -> FakeSA | None:
        return self.sas.get((icookie, rcookie))

    def half_open_count(self) -> int:
        return 0

    def __len__(self) -> int:
        return len(self.sas)


class FakeConcentrator:
    def __init__(self, config: Config, log: EventLog) -> None:
        self.config = config
        self.log = log
        self.sessions = MemorySessionStore(config.limits.max_sessions)
        self.pools = {g.name: pool_for_group(g) for g in config.groups}
        self.endpoint = FakeEndpoint()
        self.natt_enabled = config.nat_transparency.ipsec_over_natt
        self.dataplane: Any = None
        self._n = 0

    def add_session(self, user: str, port: int, *, nat_t: bool = True, legacy: bool = False,
                    diagnosis: str = "", login_time: float | None = None,
                    lan_to_lan: str = "") -> SessionView:
        """A logged-in session, written through the store as the core does."""
        self._n += 1
        key = (self._n.to_bytes(8, "big"), (1000 + self._n).to_bytes(8, "big"))
        assigned = self.pools["vpngroup"].allocate(key, identity=user)
        s = self.sessions.start(
            key, "203.0.113.78", port, group="vpngroup", user=user, assigned_ip=assigned,
            ike={"encryption": "3DES" if legacy else "AES-256", "hash": "MD5" if legacy
                 else "SHA1", "dh_group": "MODP_1024" if legacy else "MODP_2048",
                 "authentication": "Preshared Keys-XAUTH", "mode": "Aggressive",
                 "rekey_interval": 86400, "local_behind_nat": False, "peer_behind_nat": True},
            nat_t=nat_t, peer_behind_nat=True, diagnosis=diagnosis,
            client="Cisco Systems VPN Client 4.8", bytes_tx=768 * self._n,
            bytes_rx=512 * self._n, lan_to_lan=lan_to_lan,
            login_time=time.time() if login_time is None else login_time)
        enc = EncapsulationMode.UDP_TUNNEL if nat_t else EncapsulationMode.TUNNEL
        self.sessions.add_child(key, ChildInfo(
            0x1000 + self._n, 0x2000 + self._n, ESP_3DES if legacy else ESP_AES_CBC,
            0 if legacy else 256, AUTH_HMAC_MD5 if legacy else AUTH_HMAC_SHA1, int(enc),
            "0.0.0.0/0", f"{assigned}/32", 28800, time.time()))
        self.sessions.logged_in(s)
        self.endpoint.sas[key] = FakeSA(key)
        return s

    def logout(self, key: tuple[bytes, bytes], admin: str) -> bool:
        """As `ConcentratorCore.logout`: the ADMIN line, the SA deleted, the session ended."""
        sa = self.endpoint.get(*key)
        s = self.sessions.get(key)
        if sa is None or s is None:
            return False
        self.log.add("ADMIN", 4, f"logout of {s.user} by administrator {admin}",
                     peer=f"{s.public_ip}:{s.public_port}", group=s.group, user=s.user)
        sa.delete(time.monotonic(), "logged out by administrator")
        self.sessions.end(key, sa.deleted)
        self.endpoint.sas.pop(key, None)
        self.pools[s.group].release(key)
        self.log.add("SESSION", 4, f"session of {s.user} ended: {sa.deleted}",
                     user=s.user, group=s.group)
        return True


async def fake_ping(address: str, source: str) -> PingResult:
    ipaddress.IPv4Address(address)
    return PingResult(address, source, 3, 3, 0.42, f"3 packets transmitted, 3 received ({address})")


def no_lockout() -> LoginThrottle:
    """Failures are logged and counted but neither delayed nor locked (fuzzing speed)."""
    return LoginThrottle(max_failures=1000, lockout_seconds=0, retry_delay=0.0,
                         max_retry_delay=0.0)


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class _FromSource(urllib.request.HTTPHandler):
    """Plain HTTP from a chosen local address (another 'client machine' on loopback)."""

    def __init__(self, source: str) -> None:
        super().__init__()
        self.source = source

    def http_open(self, req: Any) -> Any:
        return self.do_open(functools.partial(http.client.HTTPConnection,
                                              source_address=(self.source, 0)), req)


class ManagerServer:
    """A Manager around a FakeConcentrator, served from a background event loop."""

    def __init__(self, tmp: Path, *, natt: bool = True, lockout: LoginThrottle | None = None,
                 extra: str = "", store: bool = True, tls: tuple[Path, Path] | None = None,
                 max_events: int = 1000) -> None:
        text = config_text(tmp / "events.db" if store else None, natt=natt, extra=extra,
                           max_events=max_events)
        if tls is not None:
            text = text.replace('listen = "127.0.0.1:8443"\n', 'listen = "127.0.0.1:8443"\n'
                                f'tls_cert = "{tls[0]}"\ntls_key = "{tls[1]}"\n')
        self.config = parse_config(text)
        self.log = EventLog()
        self.conc = FakeConcentrator(self.config, self.log)
        self.lockout = lockout or no_lockout()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.manager: Manager | None = None
        self.base = ""
        self.cluster: Any = None  # a ClusterMember (or FakeCluster) before start(): issue 17

    def start(self) -> ManagerServer:
        self.thread.start()
        self.manager = self.call(self._start())
        return self

    async def _start(self) -> Manager:
        m = Manager(self.conc, pinger=fake_ping, lockout=self.lockout, cluster=self.cluster)
        assert await m.start(port=0)
        self.base = m.url
        return m

    def call(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def run(self, fn: Any) -> Any:
        """fn() in the server's loop thread (the session table is not thread-safe)."""
        async def wrapper() -> Any:
            return fn()
        return self.call(wrapper())

    def stop(self) -> None:
        if self.manager is not None:
            self.call(self.manager.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def request(self, method: str, path: str, *, body: bytes | None = None,
                headers: Mapping[str, str] | None = None, basic: tuple[str, str] | None = None,
                source: str | None = None) -> Reply:
        """One request; `source`: the local address to send it from (e.g. 127.0.0.2)."""
        h = dict(headers or {})
        if basic is not None:
            h["Authorization"] = "Basic " + base64.b64encode(
                f"{basic[0]}:{basic[1]}".encode()).decode()
        req = urllib.request.Request(self.base + path, data=body, method=method, headers=h)
        handlers: list[Any] = [_NoRedirect]
        if self.base.startswith("https:"):  # the test's own self-signed certificate
            ctx = ssl.create_default_context()
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
            handlers.append(urllib.request.HTTPSHandler(context=ctx))
        if source is not None:
            handlers.append(_FromSource(source))
        opener = urllib.request.build_opener(*handlers)
        try:
            with opener.open(req, timeout=30) as r:
                return Reply(r.status, dict(r.headers), r.read())
        except urllib.error.HTTPError as e:
            return Reply(e.code, dict(e.headers), e.read())

    def token(self) -> str:
        r = self.request("POST", "/api/v1/login", body=json.dumps(
            {"username": ADMIN, "password": ADMIN_PASSWORD}).encode(),
            headers={"Content-Type": "application/json"})
        assert r.status == 200, r.text
        return str(r.json()["token"])


class FakeCluster:
    """A stand-in for vpnhub.cluster.member.ClusterMember for the API description
    tests (schemathesis): member "a" (this one, the master) and "b" with one session.
    The tests that prove the Cluster page use real members and a real PostgreSQL
    (test_cluster_api.py, test_cluster_chromium.py)."""

    name = "a"
    database_ok = True
    B_SESSION = "00000000000000aa00000000000000bb"

    def status(self) -> dict[str, Any]:
        def member(name: str, me: bool) -> dict[str, Any]:
            return {"name": name, "public_address": f"198.51.100.{11 if me else 12}",
                    "sessions": 0 if me else 1, "max_sessions": 100, "load": 0 if me else 0.01,
                    "alive": True, "state": "up", "heartbeat_age": 0.5,
                    "started": "2026-12-04T15:00:00Z", "version": "test", "me": me,
                    "holds_virtual_address": me, "dead": False}
        return {"member": "a", "database_ok": True, "last_error": "",
                "virtual_address": "198.51.100.10", "holds_virtual_address": True,
                "load_balancing": True, "heartbeat": 2.0, "member_timeout": 10.0,
                "connected_for": 60.0, "down_for": None, "outages": 0, "lease_conflicts": 0,
                "commands_received": 0, "commands_refused": 0, "queued": 0,
                "members": [member("a", True), member("b", False)], "pools": {}}

    def list_sessions(self, limit: int, cursor: str | None
                      ) -> concurrent.futures.Future[dict[str, Any]]:
        fut: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()
        if cursor is not None:  # this fake never issues one
            fut.set_result({"error": "bad cursor (use next_cursor of the previous page)"})
            return fut
        entry = {"id": self.B_SESSION, "member": "b", "user": "vpnuser9", "group": "vpngroup",
                 "assigned_ip": "10.40.2.2", "public_ip": "203.0.113.9", "public_port": 4500,
                 "protocol": "IPsec/NAT-T", "encryption": "AES-256", "auth": "psk",
                 "login_time": "2026-12-04T15:00:00", "duration": 60, "bytes_tx": 0,
                 "bytes_rx": 0}
        fut.set_result({"sessions": [entry][:limit], "next_cursor": None, "lan_to_lan": [],
                        "summary": {"remote_access": 1, "lan_to_lan": 0},
                        "members": ["a", "b"]})
        return fut

    def send_logout(self, member: str, sid: str, by: str
                    ) -> concurrent.futures.Future[dict[str, Any]]:
        fut: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()
        if (member, sid) != ("b", self.B_SESSION):
            fut.set_result({"error": f"no session {sid} on member {member!r}"})
        else:
            fut.set_result({"logged_out": 1, "member": member, "id": sid,
                            "delivered": "notify"})
        return fut
