"""Alembic environment: runs against the connection handoff hands it (see store/migrate.py)."""

from __future__ import annotations

from alembic import context

from handoff.store.tables import metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - only used by `alembic` invoked by hand
    raise RuntimeError("run migrations through `handoff db upgrade`")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
