"""Identity's trained models (versioned) and read-only views of the store's profiles.

`handoff identity train` fits the Fellegi-Sunter model to the store's own profiles and appends
it here; the live step scores with the newest version (`load_current_model`), or with the model
shipped in the package when none was trained. The audit and the training read the stored
profiles through `iter_profiles`, which never writes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from handoff.domain.identity import Model
from handoff.store.identity_models_tables import identity_models
from handoff.store.identity_tables import customers, identity_profiles, identity_review


@dataclass(frozen=True)
class ModelRow:
    id: int
    version: str
    created_at: datetime
    records: int | None  # how many profiles it was trained on
    report: dict[str, Any]


@dataclass(frozen=True)
class StoredRecord:
    """One stored profile as the source sent it, with the customer it belongs to now."""

    record_id: str
    customer_id: int
    profile: dict[str, Any]


def save_model(
    conn: Connection, model: Model, report: Mapping[str, Any], now: datetime
) -> tuple[int, bool]:
    """Append a trained model; (row id, False) when this exact version is already stored."""
    existing = conn.execute(
        select(identity_models.c.id).where(identity_models.c.version == model.version)
    ).scalar_one_or_none()
    if existing is not None:
        return int(existing), False
    row_id = conn.execute(
        identity_models.insert()
        .values(version=model.version, created_at=now, model=model.to_dict(), report=dict(report))
        .returning(identity_models.c.id)
    ).scalar_one()
    return int(row_id), True


def load_current_model(conn: Connection) -> Model | None:
    """The newest trained model, or None when the store has never been trained."""
    data = conn.execute(
        select(identity_models.c.model).order_by(identity_models.c.id.desc()).limit(1)
    ).scalar_one_or_none()
    return None if data is None else Model.from_dict(data)


def list_models(conn: Connection) -> list[ModelRow]:
    """Every stored version, newest first."""
    rows = conn.execute(
        select(
            identity_models.c.id,
            identity_models.c.version,
            identity_models.c.created_at,
            identity_models.c.report,
        ).order_by(identity_models.c.id.desc())
    ).all()
    out: list[ModelRow] = []
    for r in rows:
        report = dict(r.report or {})
        records = report.get("records")
        out.append(
            ModelRow(
                int(r.id),
                r.version,
                r.created_at,
                int(records) if records is not None else None,
                report,
            )
        )
    return out


def count_profiles(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(identity_profiles)).scalar_one())


def iter_profiles(conn: Connection, *, chunk: int = 5000) -> Iterator[StoredRecord]:
    """Every stored profile in id order, read in keyset pages (bounded memory per page)."""
    last = 0
    while True:
        rows = conn.execute(
            select(
                identity_profiles.c.id,
                identity_profiles.c.record_id,
                identity_profiles.c.customer_id,
                identity_profiles.c.profile,
            )
            .where(identity_profiles.c.id > last)
            .order_by(identity_profiles.c.id)
            .limit(chunk)
        ).all()
        if not rows:
            return
        for r in rows:
            yield StoredRecord(r.record_id, int(r.customer_id), dict(r.profile))
        last = int(rows[-1].id)


def merged_away(conn: Connection) -> dict[int, int]:
    """customer id → the customer it was merged into (only the merged-away ones)."""
    rows = conn.execute(
        select(customers.c.id, customers.c.merged_into).where(customers.c.merged_into.is_not(None))
    ).all()
    return {int(r.id): int(r.merged_into) for r in rows}


def count_live_customers(conn: Connection) -> int:
    return int(
        conn.execute(
            select(func.count()).select_from(customers).where(customers.c.merged_into.is_(None))
        ).scalar_one()
    )


def open_reviews(conn: Connection) -> int:
    return int(
        conn.execute(
            select(func.count())
            .select_from(identity_review)
            .where(identity_review.c.status == "open")
        ).scalar_one()
    )
