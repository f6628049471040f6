"""Who may use the manager: [[admin.user]] accounts, web sessions, API tokens, CSRF.

- A login (form or `POST /api/v1/login`) checks the password hash in a worker
  thread (scrypt costs about 0.1 s of CPU), throttled by throttle.py: every
  failure is answered only after a delay that doubles per failure of the
  (name, source address) pair, and too many failures lock only that pair out
  for a while, never the account everywhere. Unknown names cost the same
  scrypt work (a dummy hash) and get the same delays.
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
import os
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from vpnhub.auth.users import (
    AuthReason,
    AuthResult,
    PasswordHash,
    PasswordHashError,
    parse_password_hash,
    verify_password,
)
from vpnhub.config import AdminUserConfig
from vpnhub.manager.throttle import LoginThrottle

SESSION_COOKIE = "vpnhub_session"
LOGIN_COOKIE = "vpnhub_login"  # double-submit token of the login form (login CSRF)
IDLE_TIMEOUT = 30 * 60.0
MAX_AGE = 12 * 3600.0
MAX_SESSIONS = 256
BASIC_CACHE_SECONDS = 300.0
BASIC_CACHE_SIZE = 64


def default_lockout() -> LoginThrottle:
    """Five failures of a name from one address lock that pair for five minutes; each
    failure is answered after 1, 2, 4 ... up to 16 seconds."""
    return LoginThrottle(max_failures=5, lockout_seconds=300, retry_delay=1.0,
                         max_retry_delay=16.0, max_tracked=1024)


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
    def __init__(self, users: Iterable[AdminUserConfig], *, lockout: LoginThrottle | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._hashes: dict[str, PasswordHash | None] = {}
        self.roles: dict[str, str] = {}
        for u in users:
            self.roles[u.name] = u.role
            try:
                self._hashes[u.name] = parse_password_hash(u.password_hash.reveal_str())
            except PasswordHashError:  # the configuration checks them; never let one in by accident
                self._hashes[u.name] = None
        self.names = frozenset(self._hashes)
        self._dummy = _dummy_hash(self._hashes.values())
        self.throttle = lockout or default_lockout()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="admin-auth")
        self.clock = clock
        self.sessions: dict[str, WebSession] = {}
        self._basic: OrderedDict[bytes, tuple[str, float]] = OrderedDict()
        self._key = secrets.token_bytes(32)
        self.logins_ok = 0
        self.logins_failed = 0

    def is_admin(self, user: str) -> bool:
        """Whether `user` may change things (role "admin"); "monitor" only reads."""
        return self.roles.get(user) == "admin"

    # -- passwords
    async def check(self, user: str, password: str, source: str) -> AuthResult:
        """One login attempt. On failure the caller waits `result.delay` before answering.

        Known and unknown names take the same path: the same throttle records,
        the same scrypt work (a dummy hash for unknown ones), the same delays."""
        throttle = self.throttle
        locked = throttle.locked_until(user, source, self.clock())
        if locked is not None:  # no password check at all while the pair is locked
            self.logins_failed += 1
            return AuthResult(AuthReason.LOCKED_OUT, user,
                              throttle.current_delay(user, source, self.clock()), locked)
        known = user in self._hashes
        spec = self._hashes.get(user) or self._dummy
        loop = asyncio.get_running_loop()
        ok = await loop.run_in_executor(self._pool, verify_password,
                                        password.encode("utf-8", "replace"), spec)
        # the throttle is only touched here, on the event loop: no lock needed
        if ok and known and self._hashes.get(user) is not None:
            throttle.record_success(user, source)
            self.logins_ok += 1
            return AuthResult(AuthReason.OK, user)
        self.logins_failed += 1
        delay, locked = throttle.record_failure(user, source, self.clock())
        reason = AuthReason.BAD_PASSWORD if known else AuthReason.UNKNOWN_USER
        return AuthResult(reason, user, delay, locked)

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
        self.throttle.prune(now)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False)


def _dummy_hash(hashes: Iterable[PasswordHash | None]) -> PasswordHash:
    """A hash shaped like the configured ones (same scheme and cost), matching nothing."""
    model = next((h for h in hashes if h is not None), None)
    if model is None:
        model = PasswordHash("scrypt", os.urandom(16), bytes(32), log2_n=15, r=8, p=1)
    return replace(model, salt=os.urandom(len(model.salt)),
                   digest=os.urandom(len(model.digest)))


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
