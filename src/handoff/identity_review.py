"""Deciding review-queue items: merge the two customers, or keep them apart for good.

A merge folds the newer customer into the older one (ids, profiles and events follow), lets the
ledger move the absorbed customer's entries (`refresh_customers`) and queues the resulting
attribute changes for delivery — in one transaction, recorded in the decision log.
"""

from __future__ import annotations

from dataclasses import dataclass

from handoff.delivery.outbox import enqueue
from handoff.hub import Hub
from handoff.pipeline.ledger_stage import refresh_customers
from handoff.store import identity as store


class ReviewError(Exception):
    pass


@dataclass(frozen=True)
class Outcome:
    review_id: int
    action: str  # merged | split
    survivor: int | None
    absorbed: int | None
    changes: int


def decide_review(hub: Hub, review_id: int, action: str, who: str) -> Outcome:
    if action not in ("merge", "split"):
        raise ReviewError("the action is merge or split")
    now = hub.clock.now()
    with hub.db.write() as conn:
        item = store.get_review(conn, review_id)
        if item is None:
            raise ReviewError(f"no review item {review_id}")
        if item.status != "open":
            raise ReviewError(f"review item {review_id} was already decided ({item.status})")
        if action == "split":
            store.close_review(conn, review_id, "split", who, now)
            store.record_decision(
                conn,
                at=now,
                kind="split",
                rule="reviewer",
                actor=who,
                score=item.score,
                record_id=item.record_id,
                customer_id=item.customer_id,
                other_customer_id=item.candidate_customer_id,
            )
            return Outcome(review_id, "split", None, None, 0)
        a = store.survivor_of(conn, item.customer_id)
        b = store.survivor_of(conn, item.candidate_customer_id)
        if a == b:
            store.close_review(conn, review_id, "merged", who, now)
            return Outcome(review_id, "merged", a, None, 0)
        survivor, absorbed = min(a, b), max(a, b)  # the older customer survives
        store.merge_customers(conn, absorbed, survivor, now)
        store.close_review(conn, review_id, "merged", who, now)
        store.record_decision(
            conn,
            at=now,
            kind="merge",
            rule="reviewer",
            actor=who,
            score=item.score,
            record_id=item.record_id,
            customer_id=survivor,
            other_customer_id=absorbed,
            evidence=item.evidence,
        )
        changes = refresh_customers(conn, [survivor, absorbed], now)
        written = enqueue(conn, changes, now, destinations=hub.settings.config.destinations)
        return Outcome(review_id, "merged", survivor, absorbed, written)
