"""Read-only queries behind the dashboard's customer 360 and review pages.

Everything here reads; the writes (merge, unmerge, apply) belong to their parts. Each query is
bounded by an index (customer id, email, phone, a system's id) and a limit, so a page costs the
same with a million customers as with ten.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, func, select

from handoff.store import identity as identity_store
from handoff.store.delivery_tables import delivery_outbox
from handoff.store.identity import Contact, ReviewRow
from handoff.store.identity_tables import customers, identities, identity_profiles, identity_review


@dataclass(frozen=True)
class SystemId:
    system: str
    external_id: str
    first_seen_at: datetime


@dataclass(frozen=True)
class DestinationValue:
    """One field at one destination: what it was last confirmed to hold, and what is queued."""

    destination: str
    field: str
    delivered: Any  # the value last delivered (None: never delivered)
    delivered_version: int | None
    delivered_at: datetime | None
    latest: Any  # the newest value handoff wants there
    latest_status: str  # that row's status: delivered, pending, dead, …


def _phone_forms(text: str) -> list[str]:
    digits = "".join(c for c in text if c.isdigit())
    if len(digits) < 6:
        return []
    return sorted({text, "+" + digits, digits})


def search(conn: Connection, query: str, limit: int = 20) -> list[Contact]:
    """Customers by id, a system's id, email, phone (as typed or as E.164) or name.

    A two-word query is also tried as first and last name; single words go through identity's
    own lookup (which knows last names). Merged-away customers resolve to their survivor."""
    text = query.strip()
    if not text:
        return []
    found: dict[int, Contact] = {
        c.customer_id: c for c in identity_store.find_customers(conn, text, limit)
    }
    ids: list[int] = []
    phones = _phone_forms(text)
    if phones:
        ids += [
            int(r[0])
            for r in conn.execute(
                select(customers.c.id).where(customers.c.phone.in_(phones)).limit(limit)
            )
        ]
    words = text.lower().split()
    if len(words) == 2:
        first, last = words
        ids += [
            int(r[0])
            for r in conn.execute(
                select(customers.c.id)
                .where(
                    and_(
                        func.lower(customers.c.first_name) == first,
                        func.lower(customers.c.last_name) == last,
                    )
                )
                .limit(limit)
            )
        ]
    for cid in ids:
        if len(found) >= limit:
            break
        contact = identity_store.contact(conn, cid)
        if contact is not None:
            found.setdefault(contact.customer_id, contact)
    return list(found.values())[:limit]


def system_ids(conn: Connection, customer_id: int) -> list[SystemId]:
    """Every (system, id) pair mapped to this customer, oldest first."""
    rows = conn.execute(
        select(identities.c.system, identities.c.external_id, identities.c.first_seen_at)
        .where(identities.c.customer_id == customer_id)
        .order_by(identities.c.id)
        .limit(500)
    ).all()
    return [SystemId(r.system, r.external_id, r.first_seen_at) for r in rows]


def merged_into(conn: Connection, customer_id: int) -> int | None:
    """The survivor a merged-away customer points at (None: it is a golden record)."""
    row = conn.execute(select(customers.c.merged_into).where(customers.c.id == customer_id)).first()
    return None if row is None or row[0] is None else int(row[0])


def exists(conn: Connection, customer_id: int) -> bool:
    row = conn.execute(select(customers.c.id).where(customers.c.id == customer_id)).first()
    return row is not None


def destination_values(
    conn: Connection, customer_id: int, destinations: Sequence[str]
) -> list[DestinationValue]:
    """Per destination and field (attributes such as `is_vip`, tier; the relayed profile): the
    last delivered value beside the newest one queued. From the outbox, newest first; the
    destinations are named so that the (destination, customer, id) index serves the query."""
    if not destinations:
        return []
    rows = conn.execute(
        select(
            delivery_outbox.c.destination,
            delivery_outbox.c.kind,
            delivery_outbox.c.field,
            delivery_outbox.c.version,
            delivery_outbox.c.payload,
            delivery_outbox.c.status,
            delivery_outbox.c.delivered_at,
        )
        .where(
            delivery_outbox.c.destination.in_(sorted(destinations)),
            delivery_outbox.c.customer_id == customer_id,
            delivery_outbox.c.kind.in_(("attribute", "profile")),
        )
        .order_by(delivery_outbox.c.id.desc())
        .limit(1000)
    ).all()
    latest: dict[tuple[str, str], tuple[Any, str]] = {}
    delivered: dict[tuple[str, str], tuple[Any, int, datetime | None]] = {}
    for r in rows:
        key = (r.destination, r.field)
        payload = dict(r.payload or {})
        value = payload.get("value") if r.kind == "attribute" else payload.get("fields")
        if r.status == "superseded":
            continue
        latest.setdefault(key, (value, r.status))
        if r.status == "delivered":
            best = delivered.get(key)
            if best is None or int(r.version) > best[1]:
                delivered[key] = (value, int(r.version), r.delivered_at)
    out = []
    for key in sorted(latest):
        value, status = latest[key]
        done = delivered.get(key)
        out.append(
            DestinationValue(
                destination=key[0],
                field=key[1],
                delivered=done[0] if done else None,
                delivered_version=done[1] if done else None,
                delivered_at=done[2] if done else None,
                latest=value,
                latest_status=status,
            )
        )
    return out


def profile_of_record(conn: Connection, record_id: str | None) -> dict[str, Any] | None:
    """The profile as its source sent it, by the canonical event id that carried it."""
    if not record_id:
        return None
    row = conn.execute(
        select(
            identity_profiles.c.system,
            identity_profiles.c.external_id,
            identity_profiles.c.profile,
            identity_profiles.c.seen_at,
        ).where(identity_profiles.c.record_id == record_id)
    ).first()
    if row is None:
        return None
    return {
        "system": row.system,
        "external_id": row.external_id,
        "profile": dict(row.profile or {}),
        "seen_at": row.seen_at,
    }


def count_reviews(conn: Connection, status: str = "open") -> int:
    return int(
        conn.execute(
            select(func.count())
            .select_from(identity_review)
            .where(identity_review.c.status == status)
        ).scalar_one()
    )


def reviews_after(
    conn: Connection, status: str, after_id: int | None, limit: int
) -> list[ReviewRow]:
    """Review items oldest first, a page after `after_id` (the status-and-id index's range)."""
    stmt = (
        select(*[getattr(identity_review.c, f) for f in ReviewRow.__dataclass_fields__])
        .where(identity_review.c.status == status)
        .order_by(identity_review.c.id)
        .limit(limit)
    )
    if after_id is not None:
        stmt = stmt.where(identity_review.c.id > after_id)
    return [ReviewRow(*r) for r in conn.execute(stmt)]
