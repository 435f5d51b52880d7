"""Who a delivery is for, as identity knows them: email, names and each system's id.

Identity's store (`handoff.store.identity`) is another part; it is looked up by name at run
time so delivery keeps working (webhooks need no lookup) while identity is absent.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from datetime import datetime
from types import ModuleType
from typing import Any

from sqlalchemy import Connection

from handoff.connectors.writers.base import Recipient


def _identity() -> ModuleType | None:
    try:
        return importlib.import_module("handoff.store.identity")
    except ImportError:
        return None


def lookup(conn: Connection, customer_ids: Iterable[int]) -> dict[int, Recipient]:
    identity = _identity()
    if identity is None or not hasattr(identity, "contact"):
        return {}
    out: dict[int, Recipient] = {}
    for cid in sorted(set(customer_ids)):
        contact: Any = identity.contact(conn, cid)
        if contact is None:
            continue
        out[cid] = Recipient(
            customer_id=int(contact.customer_id),
            email=contact.email,
            phone=contact.phone,
            first_name=contact.first_name,
            last_name=contact.last_name,
            zip=contact.zip,
            external_ids=dict(contact.external_ids or {}),
        )
    return out


def remember(
    conn: Connection, customer_id: int, system: str, external_id: str, now: datetime
) -> None:
    identity = _identity()
    if identity is not None and hasattr(identity, "remember_external_id"):
        identity.remember_external_id(conn, customer_id, system, external_id, now)
