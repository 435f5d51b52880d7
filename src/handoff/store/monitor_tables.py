"""Tables of monitoring: dashboard users and sessions, and alerts (migration 0005 creates them)."""

from __future__ import annotations

from sqlalchemy import Boolean, Column, ForeignKey, Index, Integer, String, Table, Text, false

from handoff.store.tables import metadata
from handoff.store.types import BigId, UtcDateTime

# Dashboard users; only an argon2 hash of each password is kept.
users = Table(
    "users",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("username", String(100), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("role", String(16), nullable=False),  # viewer | operator | admin
    Column("disabled", Boolean, nullable=False, server_default=false()),
    Column("created_at", UtcDateTime, nullable=False),
    Column("last_login_at", UtcDateTime, nullable=True),
)

# Server-side sessions: the cookie holds a random token, the table its SHA-256; each session has
# its own CSRF token. A new session is made at every login (no fixation).
web_sessions = Table(
    "web_sessions",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("user_id", BigId, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Index("ix_web_sessions_user_id", "user_id"),
)

# One row per alert episode: opened when a rule fires for a handoff, resolved when it stops.
alerts = Table(
    "alerts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("rule", String(40), nullable=False),
    Column("key", String(100), nullable=False),  # the source or destination it is about
    Column("status", String(16), nullable=False),  # open | resolved
    Column("summary", Text, nullable=False),
    Column("advice", Text, nullable=False),
    Column("customers", Integer, nullable=True),
    Column("since", UtcDateTime, nullable=False),
    Column("opened_at", UtcDateTime, nullable=False),
    Column("last_notified_at", UtcDateTime, nullable=True),
    Column("notifications", Integer, nullable=False, server_default="0"),
    Column("resolved_at", UtcDateTime, nullable=True),
    Column("acked_at", UtcDateTime, nullable=True),
    Column("acked_by", String(100), nullable=True),
    Index("ix_alerts_status_rule_key", "status", "rule", "key"),
)
