"""Dashboard users and their server-side sessions.

Passwords are hashed by the caller (argon2, web/session.py); this module never sees one in
clear. A session cookie carries a random token; only its SHA-256 is stored, so a copy of the
database opens no session.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, select, update

from handoff.store.monitor_tables import users, web_sessions

ROLES = ("viewer", "operator", "admin")


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    role: str
    disabled: bool
    created_at: datetime
    last_login_at: datetime | None


@dataclass(frozen=True, slots=True)
class Session:
    user: User
    csrf_token: str
    expires_at: datetime


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _user(row: object) -> User:
    return User(
        id=row.id,  # type: ignore[attr-defined]
        username=row.username,  # type: ignore[attr-defined]
        role=row.role,  # type: ignore[attr-defined]
        disabled=bool(row.disabled),  # type: ignore[attr-defined]
        created_at=row.created_at,  # type: ignore[attr-defined]
        last_login_at=row.last_login_at,  # type: ignore[attr-defined]
    )


_USER_COLUMNS = (
    users.c.id,
    users.c.username,
    users.c.role,
    users.c.disabled,
    users.c.created_at,
    users.c.last_login_at,
)


def create_user(
    conn: Connection, *, username: str, password_hash: str, role: str, now: datetime
) -> User:
    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if not username or len(username) > 100:
        raise ValueError("a username has 1 to 100 characters")
    exists = conn.execute(select(users.c.id).where(users.c.username == username)).first()
    if exists is not None:
        raise ValueError(f"user {username!r} already exists")
    user_id = conn.execute(
        users.insert()
        .values(username=username, password_hash=password_hash, role=role, created_at=now)
        .returning(users.c.id)
    ).scalar_one()
    return User(user_id, username, role, False, now, None)


def set_password(conn: Connection, username: str, password_hash: str) -> bool:
    result = conn.execute(
        update(users).where(users.c.username == username).values(password_hash=password_hash)
    )
    return result.rowcount > 0


def list_users(conn: Connection) -> list[User]:
    return [_user(r) for r in conn.execute(select(*_USER_COLUMNS).order_by(users.c.username))]


def credentials(conn: Connection, username: str) -> tuple[User, str] | None:
    """The user and their password hash, for the login check."""
    row = conn.execute(
        select(*_USER_COLUMNS, users.c.password_hash).where(users.c.username == username)
    ).first()
    return None if row is None else (_user(row), row.password_hash)


def open_session(
    conn: Connection, user_id: int, now: datetime, lifetime: timedelta
) -> tuple[str, str]:
    """A new session for the user: returns (cookie token, CSRF token)."""
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    conn.execute(
        web_sessions.insert().values(
            token_hash=_hash(token),
            user_id=user_id,
            csrf_token=csrf,
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    conn.execute(update(users).where(users.c.id == user_id).values(last_login_at=now))
    conn.execute(delete(web_sessions).where(web_sessions.c.expires_at < now))
    return token, csrf


def find_session(conn: Connection, token: str, now: datetime) -> Session | None:
    row = conn.execute(
        select(*_USER_COLUMNS, web_sessions.c.csrf_token, web_sessions.c.expires_at)
        .join(web_sessions, web_sessions.c.user_id == users.c.id)
        .where(web_sessions.c.token_hash == _hash(token), web_sessions.c.expires_at > now)
    ).first()
    if row is None or row.disabled:
        return None
    return Session(_user(row), row.csrf_token, row.expires_at)


def close_session(conn: Connection, token: str) -> None:
    conn.execute(delete(web_sessions).where(web_sessions.c.token_hash == _hash(token)))
