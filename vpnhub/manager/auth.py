"""Who may use the manager: [[admin.user]] accounts, web sessions, API tokens, CSRF.

- A login (form or `POST /api/v1/login`) checks the password hash in a worker
  thread (scrypt costs about 0.1 s of CPU) with the XAUTH authenticator's
  lock-out and slow-down: every failure is answered only after a delay that
  doubles per failure of the user and of the source address, and too many
  failures lock them out for a while. Unknown names cost the same work.
- A successful login opens a `WebSession`: a random token (the session
  cookie for browsers, a bearer token for API clients) with its own CSRF
  token. Sessions expire after 30 minutes idle and after 12 hours.
- HTTP Basic credentials are also accepted on API calls; a verified pair is
  remembered for a few minutes (as a keyed hash, never the password) so a
  scraper does not pay scrypt on every request.
- Browsers only ever send the cookie by themselves: forms carry the CSRF token
  in a hidden field, JavaScript in the X-CSRF-Token header. Bearer and Basic
  need no CSRF token (a browser never adds them on its own; the manager never
  answers with a Basic challenge, so no browser caches a Basic password).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from vpnhub.auth.lockout import LockoutPolicy
from vpnhub.auth.users import AuthResult, XauthAuthenticator
from vpnhub.config import AdminUserConfig, UserConfig

SESSION_COOKIE = "vpnhub_session"
LOGIN_COOKIE = "vpnhub_login"  # double-submit token of the login form (login CSRF)
IDLE_TIMEOUT = 30 * 60.0
MAX_AGE = 12 * 3600.0
MAX_SESSIONS = 256
BASIC_CACHE_SECONDS = 300.0
BASIC_CACHE_SIZE = 64
_ADMIN_GROUP = "\0admin"  # the authenticator checks a group; admins have one of their own


def default_lockout() -> LockoutPolicy:
    """Five failures of a name, or 20 from one address, lock it for five minutes; each
    failure is answered after 1, 2, 4 ... up to 16 seconds."""
    return LockoutPolicy(max_failures=5, lockout_seconds=300, retry_delay=1.0,
                         max_retry_delay=16.0, max_failures_per_source=20, max_tracked=1024)


@dataclass
class WebSession:
    token: str
    user: str
    csrf: str
    source: str
    via: str  # "cookie" (browser login) or "bearer" (API login)
    created: float
    last_seen: float
    wall_created: float


@dataclass(frozen=True)
class Identity:
    """Who made a request and how: `session` is None for HTTP Basic."""

    user: str
    via: str  # "cookie" | "bearer" | "basic"
    session: WebSession | None = None


class AdminAuth:
    def __init__(self, users: Iterable[AdminUserConfig], *, lockout: LockoutPolicy | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        accounts = [UserConfig(u.name, _ADMIN_GROUP, password_hash=u.password_hash) for u in users]
        self.names = frozenset(u.name for u in accounts)
        self._checker = XauthAuthenticator(accounts, lockout or default_lockout())
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="admin-auth")
        self.clock = clock
        self.sessions: dict[str, WebSession] = {}
        self._basic: OrderedDict[bytes, tuple[str, float]] = OrderedDict()
        self._key = secrets.token_bytes(32)
        self.logins_ok = 0
        self.logins_failed = 0

    # -- passwords
    async def check(self, user: str, password: str, source: str) -> AuthResult:
        """One login attempt. On failure the caller waits `result.delay` before answering."""
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self._pool, lambda: self._checker.authenticate(
            user, password, group=_ADMIN_GROUP, source=source, now=self.clock()))
        if result.ok:
            self.logins_ok += 1
        else:
            self.logins_failed += 1
        return result

    def cached_basic(self, user: str, password: str) -> bool:
        entry = self._basic.get(self._basic_key(user, password))
        return entry is not None and entry[0] == user and entry[1] > self.clock()

    def remember_basic(self, user: str, password: str) -> None:
        self._basic[self._basic_key(user, password)] = (user, self.clock() + BASIC_CACHE_SECONDS)
        while len(self._basic) > BASIC_CACHE_SIZE:
            self._basic.popitem(last=False)

    def _basic_key(self, user: str, password: str) -> bytes:
        return hmac.new(self._key, f"{user}\0{password}".encode(), hashlib.sha256).digest()

    # -- sessions
    def open(self, user: str, source: str, via: str) -> WebSession:
        self.prune()
        while len(self.sessions) >= MAX_SESSIONS:  # the least recently used goes
            oldest = min(self.sessions.values(), key=lambda s: s.last_seen)
            del self.sessions[oldest.token]
        now = self.clock()
        s = WebSession(secrets.token_urlsafe(32), user, secrets.token_urlsafe(24), source, via,
                       now, now, time.time())
        self.sessions[s.token] = s
        return s

    def session(self, token: str | None) -> WebSession | None:
        if not token:
            return None
        s = self.sessions.get(token)
        if s is None:
            return None
        now = self.clock()
        if now - s.last_seen > IDLE_TIMEOUT or now - s.created > MAX_AGE:
            del self.sessions[token]
            return None
        s.last_seen = now
        return s

    def close(self, token: str) -> WebSession | None:
        return self.sessions.pop(token, None)

    def prune(self) -> None:
        now = self.clock()
        for token, s in list(self.sessions.items()):
            if now - s.last_seen > IDLE_TIMEOUT or now - s.created > MAX_AGE:
                del self.sessions[token]
        self._checker.lockout.prune(now)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False)


def parse_basic(header: str) -> tuple[str, str] | None:
    """`Authorization: Basic ...` -> (user, password), or None if malformed."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def parse_bearer(header: str) -> str | None:
    scheme, _, value = header.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def same_token(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())
