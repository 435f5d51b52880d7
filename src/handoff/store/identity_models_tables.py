"""Table of trained identity models (migration 0006 creates it).

Every `handoff identity train` run appends a version: the parameters as JSON and the training
report, so a decision's `model_version` can always be traced back to what produced it and a
retrained model never overwrites the one earlier decisions were made with.
"""

from __future__ import annotations

from sqlalchemy import Column, String, Table, UniqueConstraint

from handoff.store.tables import metadata
from handoff.store.types import BigId, Json, UtcDateTime

identity_models = Table(
    "identity_models",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("version", String(40), nullable=False),  # the model's fingerprint ("fs-…")
    Column("created_at", UtcDateTime, nullable=False),
    Column("model", Json, nullable=False),  # Model.to_dict()
    Column("report", Json, nullable=False),  # the training report (iterations, pairs, …)
    UniqueConstraint("version"),
)
