"""Identity's storage: golden customers, every system's id, profiles and their blocking keys,
decisions and the review queue.

Merges never delete: the absorbed customer keeps its row with `merged_into` set, its ids,
profiles and events point at the survivor, and the decision log says why — so every merge can be
explained and undone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, literal, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from handoff.store.identity_tables import (
    customers,
    identities,
    identity_decisions,
    identity_keys,
    identity_profiles,
    identity_review,
)
from handoff.store.tables import events, receipts

GOLDEN_FIELDS = ("email", "phone", "first_name", "last_name", "zip", "birth_date")


@dataclass(frozen=True)
class Contact:
    """A golden customer as the other parts need it: how to reach them, and every system's id."""

    customer_id: int
    email: str | None
    phone: str | None
    first_name: str | None
    last_name: str | None
    zip: str | None
    external_ids: dict[str, str]


@dataclass(frozen=True)
class Golden:
    id: int
    fields: dict[str, str | None]
    sources: dict[str, str]
    version: int


@dataclass(frozen=True)
class StoredProfile:
    profile_id: int
    record_id: str
    customer_id: int  # the survivor
    profile: dict[str, Any]


@dataclass(frozen=True)
class ReviewRow:
    id: int
    record_id: str
    customer_id: int
    candidate_customer_id: int
    candidate_record_id: str | None
    score: float | None
    rule: str
    reason: str
    evidence: dict[str, Any] | None
    status: str
    created_at: datetime
    decided_at: datetime | None
    decided_by: str | None


def _insert(conn: Connection) -> Any:
    return pg_insert if conn.dialect.name == "postgresql" else sqlite_insert


def lock_keys(conn: Connection, keys: Iterable[str]) -> None:
    """Serialise concurrent resolvers of the same person on PostgreSQL: one transaction-scoped
    advisory lock per blocking key, taken in sorted order so two workers never deadlock.
    (On SQLite the write transaction already serialises every writer.)"""
    if conn.dialect.name != "postgresql":
        return
    hashes = sorted(
        {
            int.from_bytes(hashlib.blake2b(k.encode(), digest_size=8).digest(), "big", signed=True)
            for k in keys
        }
    )
    if hashes:  # one round trip; the sorted subquery fixes the order the locks are taken in
        conn.execute(_LOCK_SORTED, {"keys": hashes})


_LOCK_SORTED = text(
    "SELECT count(pg_advisory_xact_lock(k)) FROM "
    "(SELECT unnest(CAST(:keys AS bigint[])) AS k ORDER BY 1) AS sorted_keys"
)


def survivors(conn: Connection, ids: Iterable[int]) -> dict[int, int]:
    """Each customer id → the customer it now belongs to (itself unless merged away)."""
    out = {i: i for i in set(ids)}
    pending = set(out)
    for _ in range(32):  # merge chains are short; the bound only guards against a cycle
        if not pending:
            break
        rows = conn.execute(
            select(customers.c.id, customers.c.merged_into).where(
                customers.c.id.in_(sorted(pending)), customers.c.merged_into.is_not(None)
            )
        ).all()
        step = {int(r.id): int(r.merged_into) for r in rows}
        pending = set()
        for start, now_at in list(out.items()):
            if now_at in step:
                out[start] = step[now_at]
                pending.add(step[now_at])
    return out


def survivor_of(conn: Connection, customer_id: int) -> int:
    return survivors(conn, [customer_id])[customer_id]


def customers_of_identities(
    conn: Connection, pairs: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    """(system, external id) → survivor customer, for the pairs already known."""
    wanted = sorted(set(pairs))
    if not wanted:
        return {}
    found: dict[tuple[str, str], int] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        clause = or_(
            *[(identities.c.system == s) & (identities.c.external_id == e) for s, e in chunk]
        )
        for r in conn.execute(
            select(identities.c.system, identities.c.external_id, identities.c.customer_id).where(
                clause
            )
        ):
            found[(r.system, r.external_id)] = int(r.customer_id)
    final = survivors(conn, found.values())
    return {k: final[v] for k, v in found.items()}


def candidates(conn: Connection, keys: Iterable[str]) -> list[StoredProfile]:
    """Every stored profile that shares a blocking key, with its customer's survivor."""
    wanted = sorted(set(keys))
    if not wanted:
        return []
    rows = conn.execute(
        select(
            identity_profiles.c.id,
            identity_profiles.c.record_id,
            identity_profiles.c.customer_id,
            identity_profiles.c.profile,
        )
        .where(
            identity_profiles.c.id.in_(
                select(identity_keys.c.profile_id).where(identity_keys.c.key.in_(wanted))
            )
        )
        .order_by(identity_profiles.c.id)
    ).all()
    final = survivors(conn, [int(r.customer_id) for r in rows])
    return [
        StoredProfile(int(r.id), r.record_id, final[int(r.customer_id)], dict(r.profile))
        for r in rows
    ]


def new_customer(
    conn: Connection, fields: Mapping[str, str | None], sources: Mapping[str, str], now: datetime
) -> int:
    values = {f: fields.get(f) for f in GOLDEN_FIELDS}
    return int(
        conn.execute(
            customers.insert()
            .values(**values, sources=dict(sources), version=1, created_at=now, updated_at=now)
            .returning(customers.c.id)
        ).scalar_one()
    )


def golden(conn: Connection, ids: Iterable[int]) -> dict[int, Golden]:
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows = conn.execute(select(customers).where(customers.c.id.in_(wanted))).all()
    return {
        int(r.id): Golden(
            int(r.id),
            {f: getattr(r, f) for f in GOLDEN_FIELDS},
            dict(r.sources or {}),
            int(r.version),
        )
        for r in rows
    }


def save_golden(conn: Connection, record: Golden, now: datetime) -> None:
    conn.execute(
        update(customers)
        .where(customers.c.id == record.id)
        .values(**record.fields, sources=record.sources, version=record.version, updated_at=now)
    )


def add_profile(
    conn: Connection,
    *,
    record_id: str,
    customer_id: int,
    system: str | None,
    external_id: str | None,
    profile: Mapping[str, Any],
    keys: Iterable[str],
    now: datetime,
) -> int | None:
    """Keep a profile and index it under its blocking keys; None if this record is known."""
    stmt = (
        _insert(conn)(identity_profiles)
        .values(
            record_id=record_id,
            customer_id=customer_id,
            system=system,
            external_id=external_id,
            profile=dict(profile),
            seen_at=now,
        )
        .on_conflict_do_nothing(index_elements=["record_id"])
        .returning(identity_profiles.c.id)
    )
    profile_id = conn.execute(stmt).scalar_one_or_none()
    if profile_id is None:
        return None
    rows = [{"key": k, "profile_id": profile_id} for k in sorted(set(keys))]
    if rows:
        conn.execute(
            _insert(conn)(identity_keys).on_conflict_do_nothing(
                index_elements=["key", "profile_id"]
            ),
            rows,
        )
    return int(profile_id)


def add_identity(
    conn: Connection, system: str, external_id: str, customer_id: int, now: datetime
) -> None:
    conn.execute(
        _insert(conn)(identities)
        .values(system=system, external_id=external_id, customer_id=customer_id, first_seen_at=now)
        .on_conflict_do_nothing(index_elements=["system", "external_id"])
    )


def remember_external_id(
    conn: Connection, customer_id: int, system: str, external_id: str, now: datetime
) -> None:
    """A destination's id for this customer, learned on delivery (found by email)."""
    add_identity(conn, system, external_id, survivor_of(conn, customer_id), now)


def record_decision(
    conn: Connection,
    *,
    at: datetime,
    kind: str,
    rule: str,
    actor: str = "pipeline",
    score: float | None = None,
    record_id: str | None = None,
    customer_id: int | None = None,
    other_customer_id: int | None = None,
    evidence: Mapping[str, Any] | None = None,
) -> None:
    conn.execute(
        identity_decisions.insert().values(
            at=at,
            actor=actor,
            kind=kind,
            rule=rule,
            score=score,
            record_id=record_id,
            customer_id=customer_id,
            other_customer_id=other_customer_id,
            evidence=dict(evidence) if evidence is not None else None,
        )
    )


def decisions_of(conn: Connection, customer_id: int) -> list[dict[str, Any]]:
    stmt = (
        select(identity_decisions)
        .where(
            or_(
                identity_decisions.c.customer_id == customer_id,
                identity_decisions.c.other_customer_id == customer_id,
            )
        )
        .order_by(identity_decisions.c.id)
    )
    return [dict(r._mapping) for r in conn.execute(stmt)]


def add_review(
    conn: Connection,
    *,
    record_id: str,
    customer_id: int,
    candidate_customer_id: int,
    candidate_record_id: str | None,
    score: float | None,
    rule: str,
    reason: str,
    evidence: Mapping[str, Any] | None,
    now: datetime,
) -> None:
    conn.execute(
        identity_review.insert().values(
            record_id=record_id,
            customer_id=customer_id,
            candidate_customer_id=candidate_customer_id,
            candidate_record_id=candidate_record_id,
            score=score,
            rule=rule,
            reason=reason,
            evidence=dict(evidence) if evidence is not None else None,
            status="open",
            created_at=now,
        )
    )


def list_review(conn: Connection, status: str = "open", limit: int = 50) -> list[ReviewRow]:
    stmt = (
        select(*[getattr(identity_review.c, f) for f in ReviewRow.__dataclass_fields__])
        .where(identity_review.c.status == status)
        .order_by(identity_review.c.id)
        .limit(limit)
    )
    return [ReviewRow(*r) for r in conn.execute(stmt)]


def get_review(conn: Connection, review_id: int) -> ReviewRow | None:
    r = conn.execute(
        select(*[getattr(identity_review.c, f) for f in ReviewRow.__dataclass_fields__]).where(
            identity_review.c.id == review_id
        )
    ).first()
    return ReviewRow(*r) if r else None


def close_review(conn: Connection, review_id: int, status: str, who: str, now: datetime) -> bool:
    result = conn.execute(
        update(identity_review)
        .where(identity_review.c.id == review_id, identity_review.c.status == "open")
        .values(status=status, decided_at=now, decided_by=who)
    )
    return bool(result.rowcount)


def merge_customers(conn: Connection, absorbed: int, survivor: int, now: datetime) -> None:
    """Fold `absorbed` into `survivor`: ids, profiles and events follow; the row stays."""
    conn.execute(
        update(customers)
        .where(customers.c.id == absorbed)
        .values(merged_into=survivor, updated_at=now)
    )
    conn.execute(
        update(identities).where(identities.c.customer_id == absorbed).values(customer_id=survivor)
    )
    conn.execute(
        update(identity_profiles)
        .where(identity_profiles.c.customer_id == absorbed)
        .values(customer_id=survivor)
    )
    conn.execute(
        update(events).where(events.c.customer_id == absorbed).values(customer_id=survivor)
    )


def count_customers(conn: Connection) -> int:
    return int(
        conn.execute(
            select(func.count()).select_from(customers).where(customers.c.merged_into.is_(None))
        ).scalar_one()
    )


def _external_ids(conn: Connection, customer_id: int) -> dict[str, str]:
    rows = conn.execute(
        select(identities.c.system, identities.c.external_id)
        .where(identities.c.customer_id == customer_id)
        .order_by(identities.c.id)
    ).all()
    out: dict[str, str] = {}
    for r in rows:
        out.setdefault(r.system, r.external_id)  # the first id a system gave is the one used
    return out


def contact(conn: Connection, customer_id: int) -> Contact | None:
    cid = survivor_of(conn, customer_id)
    record = golden(conn, [cid]).get(cid)
    if record is None:
        return None
    f = record.fields
    return Contact(
        cid,
        f["email"],
        f["phone"],
        f["first_name"],
        f["last_name"],
        f["zip"],
        _external_ids(conn, cid),
    )


def find_customers(conn: Connection, query: str, limit: int = 20) -> list[Contact]:
    """By customer id, a system's id, email, phone or last name (trace, the dashboard)."""
    text = query.strip()
    if not text:
        return []
    ids: list[int] = []
    if text.isdigit():
        ids.append(int(text))
    ids += [
        int(r[0])
        for r in conn.execute(
            select(identities.c.customer_id).where(identities.c.external_id == text).limit(limit)
        )
    ]
    lowered = text.lower()
    ids += [
        int(r[0])
        for r in conn.execute(
            select(customers.c.id)
            .where(
                or_(
                    customers.c.email == lowered,
                    customers.c.phone == text,
                    func.lower(customers.c.last_name) == lowered,
                )
            )
            .limit(limit)
        )
    ]
    seen: dict[int, Contact] = {}
    for cid in ids:
        found = contact(conn, cid)
        if found is not None and found.customer_id not in seen:
            seen[found.customer_id] = found
        if len(seen) >= limit:
            break
    return list(seen.values())


def profiles_of(conn: Connection, customer_id: int) -> list[StoredProfile]:
    rows = conn.execute(
        select(
            identity_profiles.c.id,
            identity_profiles.c.record_id,
            identity_profiles.c.customer_id,
            identity_profiles.c.profile,
        )
        .where(identity_profiles.c.customer_id == customer_id)
        .order_by(identity_profiles.c.id)
    ).all()
    return [
        StoredProfile(int(r.id), r.record_id, int(r.customer_id), dict(r.profile)) for r in rows
    ]


def events_per_customer(conn: Connection, ids: Sequence[int]) -> dict[int, int]:
    rows = conn.execute(
        select(events.c.customer_id, func.count())
        .where(events.c.customer_id.in_(list(ids)))
        .group_by(events.c.customer_id)
    ).all()
    return {int(r[0]): int(r[1]) for r in rows}


# --------------------------------------------------------------------------------------------
# unmerge: a cluster's members, its decisions, and moving records between customers


@dataclass(frozen=True)
class ClusterProfile:
    record_id: str
    system: str | None
    external_id: str | None
    profile: dict[str, Any]


def cluster_members(conn: Connection, survivor: int) -> list[int]:
    """The survivor and every customer merged into it, directly or through another."""
    members = {survivor}
    frontier = {survivor}
    while frontier:
        rows = conn.execute(
            select(customers.c.id).where(customers.c.merged_into.in_(sorted(frontier)))
        ).all()
        frontier = {int(r.id) for r in rows} - members
        members |= frontier
    return sorted(members)


def cluster_profiles(conn: Connection, survivor: int) -> list[ClusterProfile]:
    """Every profile of the cluster, in arrival order (merges re-point them at the survivor)."""
    rows = conn.execute(
        select(
            identity_profiles.c.record_id,
            identity_profiles.c.system,
            identity_profiles.c.external_id,
            identity_profiles.c.profile,
        )
        .where(identity_profiles.c.customer_id == survivor)
        .order_by(identity_profiles.c.id)
    ).all()
    return [ClusterProfile(r.record_id, r.system, r.external_id, dict(r.profile)) for r in rows]


def get_decision(conn: Connection, decision_id: int) -> dict[str, Any] | None:
    row = conn.execute(
        select(identity_decisions).where(identity_decisions.c.id == decision_id)
    ).first()
    return dict(row._mapping) if row is not None else None


def cluster_decisions(
    conn: Connection, members: Sequence[int], record_ids: Sequence[str]
) -> list[dict[str, Any]]:
    """Every decision about the cluster's customers or records, oldest first."""
    found: dict[int, dict[str, Any]] = {}
    for start in range(0, max(len(record_ids), 1), 500):
        chunk = list(record_ids[start : start + 500])
        clause = or_(
            identity_decisions.c.customer_id.in_(list(members)),
            identity_decisions.c.other_customer_id.in_(list(members)),
            identity_decisions.c.record_id.in_(chunk),
        )
        for r in conn.execute(select(identity_decisions).where(clause)):
            found[int(r.id)] = dict(r._mapping)
    return [found[k] for k in sorted(found)]


def set_merged_into(
    conn: Connection, customer_ids: Iterable[int], target: int | None, now: datetime
) -> None:
    ids = sorted(set(customer_ids))
    if ids:
        conn.execute(
            update(customers)
            .where(customers.c.id.in_(ids))
            .values(merged_into=target, updated_at=now)
        )


def move_records(
    conn: Connection,
    record_ids: Sequence[str],
    identity_keys_: Iterable[tuple[str, str]],
    customer_id: int,
) -> None:
    """Point these profiles, their events and these system ids at `customer_id`."""
    for start in range(0, len(record_ids), 500):
        chunk = list(record_ids[start : start + 500])
        conn.execute(
            update(identity_profiles)
            .where(identity_profiles.c.record_id.in_(chunk))
            .values(customer_id=customer_id)
        )
        conn.execute(
            update(events).where(events.c.event_id.in_(chunk)).values(customer_id=customer_id)
        )
    for system, external_id in sorted(set(identity_keys_)):
        conn.execute(
            update(identities)
            .where(identities.c.system == system, identities.c.external_id == external_id)
            .values(customer_id=customer_id)
        )


def cluster_keys(conn: Connection, customer_id: int) -> tuple[set[tuple[str, str]], int]:
    """A customer's (system, external id) pairs from its profiles, and its profile count: what
    the cluster guards check before two customers are joined."""
    rows = conn.execute(
        select(identity_profiles.c.system, identity_profiles.c.external_id).where(
            identity_profiles.c.customer_id == customer_id
        )
    ).all()
    keys = {(r.system, r.external_id) for r in rows if r.system and r.external_id}
    return keys, len(rows)


def kept_apart(conn: Connection, a: int, b: int) -> bool:
    """Whether anything says customers `a` and `b` (with what was merged into them) are two
    people: an identifier conflict queued for review, or a reviewer's split. A profile that
    matches both must not join them (the batch engine forbids the same pairs)."""
    side_a, side_b = cluster_members(conn, a), cluster_members(conn, b)
    review = identity_review.c
    pair = or_(
        review.customer_id.in_(side_a) & review.candidate_customer_id.in_(side_b),
        review.customer_id.in_(side_b) & review.candidate_customer_id.in_(side_a),
    )
    conflict = review.rule.in_(["identifier_conflict", "contradiction"]) | (
        review.status == "split"
    )
    if conn.execute(select(review.id).where(pair, conflict).limit(1)).first() is not None:
        return True
    decision = identity_decisions.c
    split = or_(
        decision.customer_id.in_(side_a) & decision.other_customer_id.in_(side_b),
        decision.customer_id.in_(side_b) & decision.other_customer_id.in_(side_a),
    )
    kinds = decision.kind.in_(["split", "unmerge"])
    return conn.execute(select(decision.id).where(split, kinds).limit(1)).first() is not None


def thin_identities(conn: Connection, system: str, limit: int = 100) -> list[str]:
    """`system`'s ids whose customer is known by nothing else (no email, phone or name) and
    that were never read back: the CRM contacts a webhook named by id alone."""
    read_back = (
        select(receipts.c.id)
        .where(
            receipts.c.source == system,
            receipts.c.delivery_id.like(literal("read-back:") + identities.c.external_id + ":%"),
        )
        .exists()
    )
    rows = conn.execute(
        select(identities.c.external_id)
        .join(customers, customers.c.id == identities.c.customer_id)
        .where(
            identities.c.system == system,
            customers.c.email.is_(None),
            customers.c.phone.is_(None),
            customers.c.first_name.is_(None),
            customers.c.last_name.is_(None),
            ~read_back,
        )
        .order_by(identities.c.id)
        .limit(limit)
    ).all()
    return [r.external_id for r in rows]
