"""Outbound changes: what the pipeline decides other systems must be told.

Stages (identity, ledger) and reconciliation produce these; delivery's outbox stores them in the
same transaction and sends them. They name the golden customer, never a vendor's id: which
destination gets which field is configuration, resolved at delivery time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

AttributeValue = str | int | bool | None


@dataclass(frozen=True)
class AttributeChange:
    """A customer attribute's latest state (tier, is_vip, …). State-based: of two changes for
    the same customer and attribute, the one with the larger `version` wins, whatever order they
    are sent in; pending ones coalesce."""

    customer_id: int
    attribute: str
    value: AttributeValue
    version: int
    cause: str  # the event id, rule or run that produced it, for the audit trail
    at: datetime


@dataclass(frozen=True)
class PointsAdjustment:
    """Points to add (delta > 0) or remove (delta < 0) on the loyalty platform.

    `key` is the idempotency key: the same key is never applied twice, by us or the vendor."""

    customer_id: int
    delta: int
    reason: str
    key: str
    cause: str
    at: datetime


@dataclass(frozen=True)
class ProfileRelay:
    """A golden profile to create or update where it is missing (POS → loyalty → CRM)."""

    customer_id: int
    fields: dict[str, AttributeValue]  # email, phone, first_name, last_name, zip, …
    version: int
    cause: str
    at: datetime


Change = AttributeChange | PointsAdjustment | ProfileRelay
