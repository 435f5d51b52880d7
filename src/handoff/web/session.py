"""Dashboard sign-in: argon2 passwords, server-side sessions, CSRF tokens, login throttling.

The cookie is `HttpOnly`, `SameSite=Strict` and holds only a random token; every login makes a
new session (a session id planted before login is worthless after it). Every state-changing
request must carry the session's CSRF token (form field `csrf_token` or header `X-CSRF-Token`,
which HTMX sends from the page's meta tag).
"""

from __future__ import annotations

import hmac
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Request

from handoff.hub import Hub
from handoff.store import users as user_store
from handoff.store.users import Session

COOKIE = "handoff_session"
LIFETIME = timedelta(hours=12)
RANK = {"viewer": 0, "operator": 1, "admin": 2}

_hasher = PasswordHasher()
# verified against when the user does not exist, so a wrong name costs as long as a wrong password
_DUMMY_HASH = _hasher.hash("not a password of anyone")


def hash_password(password: str) -> str:
    if len(password) < 10:
        raise ValueError("a password has at least 10 characters")
    return _hasher.hash(password)


def check_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


class LoginThrottle:
    """At most `limit` failed logins per username and per client address in `window` seconds.

    In memory, per process: enough to make online guessing impractical (5 tries a minute per
    name), without a table that an attacker could fill."""

    def __init__(self, limit: int = 5, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.setdefault(key, deque())
        while times and now - times[0] > self.window:
            times.popleft()
        return times

    def blocked(self, *keys: str) -> bool:
        now = time.monotonic()
        with self._lock:
            return any(len(self._recent(k, now)) >= self.limit for k in keys)

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                self._recent(key, now).append(now)

    def succeeded(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)


@dataclass(frozen=True)
class LoginResult:
    token: str | None
    error: str | None


def login(
    hub: Hub, throttle: LoginThrottle, username: str, password: str, client: str
) -> LoginResult:
    keys = (f"user:{username.lower()}", f"addr:{client}")
    if throttle.blocked(*keys):
        return LoginResult(None, "too many failed sign-ins; wait a minute and try again")
    with hub.db.read() as conn:
        found = user_store.credentials(conn, username)
    valid = check_password(found[1] if found else _DUMMY_HASH, password)
    if found is None or not valid or found[0].disabled:
        throttle.failed(*keys)
        return LoginResult(None, "unknown user or wrong password")
    throttle.succeeded(*keys)
    with hub.db.write() as conn:
        token, _ = user_store.open_session(conn, found[0].id, hub.clock.now(), LIFETIME)
    return LoginResult(token, None)


def current(request: Request, hub: Hub) -> Session | None:
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    with hub.db.read() as conn:
        return user_store.find_session(conn, token, hub.clock.now())


def csrf_ok(session: Session, submitted: str | None) -> bool:
    return submitted is not None and hmac.compare_digest(session.csrf_token, submitted)


def allowed(session: Session, role: str) -> bool:
    return RANK[session.user.role] >= RANK[role]


def mask_email(value: str | None) -> str | None:
    """`jane.doe@example.com` → `j•••@example.com`: enough to tell records apart, not to copy."""
    if not value or "@" not in value:
        return value
    local, domain = value.split("@", 1)
    return f"{local[:1]}•••@{domain}"


def mask_phone(value: str | None) -> str | None:
    if not value:
        return value
    digits = [c for c in value if c.isdigit()]
    return "•••" + "".join(digits[-2:]) if digits else "•••"
