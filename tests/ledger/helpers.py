"""Shared by the ledger tests: a stand-in identity stage and receipts from connector fixtures."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from handoff.domain.events import CanonicalEvent
from handoff.hub import Hub
from handoff.pipeline.processor import StageBatch
from handoff.store import receipts as rs

FIXTURES = Path(__file__).parents[1] / "connectors" / "fixtures"
NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)


class FixedClock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


class MapIdentity:
    """Test-only identity stage: fills batch.customers from a function of the event.

    Stands in for the real identity stage so the ledger can be tested on its own; `resolve`
    returning None leaves the event unresolved (the ledger must hold it)."""

    def __init__(self, resolve: Callable[[CanonicalEvent], int | None]) -> None:
        self.resolve = resolve
        self.merges: list[tuple[int, int]] = []

    def handle(self, conn: Connection, batch: StageBatch) -> None:
        for event in batch.events:
            customer_id = self.resolve(event)
            if customer_id is not None:
                batch.customers[event.event_id] = customer_id
        batch.merges.extend(self.merges)
        self.merges = []


def by_external_id(table: Mapping[str, int]) -> Callable[[CanonicalEvent], int | None]:
    def resolve(event: CanonicalEvent) -> int | None:
        ref = event.customer
        return None if ref is None or ref.external_id is None else table.get(ref.external_id)

    return resolve


class Collect:
    """Stands in for the outbox stage: keeps the changes the stages before it produced."""

    def __init__(self) -> None:
        self.changes: list[Any] = []

    def handle(self, conn: Connection, batch: StageBatch) -> None:
        self.changes += batch.changes


def erp_fixture(name: str, **data: Any) -> bytes:
    body = json.loads((FIXTURES / "erp" / f"{name}.json").read_text())
    body["data"].update(data)
    return json.dumps(body).encode()


def seed(hub: Hub, receipts: list[tuple[str, str, str, dict[str, str], bytes]]) -> None:
    """(source, vendor, delivery id, headers, body) into the receive log, in that order."""
    with hub.db.write() as conn:
        rs.insert_batch(
            conn,
            [
                rs.NewReceipt(source, vendor, key, NOW, headers, body, "0" * 64)
                for source, vendor, key, headers, body in receipts
            ],
            NOW,
        )


def erp(key: str, body: bytes) -> tuple[str, str, str, dict[str, str], bytes]:
    return ("erp", "standard", key, {"webhook-id": key}, body)
