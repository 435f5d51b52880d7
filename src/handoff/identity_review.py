"""Deciding review-queue items (merge the two customers, or keep them apart for good), and
undoing a merge.

A merge folds the newer customer into the older one (ids, profiles and events follow), lets the
ledger move the absorbed customer's entries (`refresh_customers`) and queues the resulting
attribute changes for delivery — in one transaction, recorded in the decision log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from handoff.delivery.outbox import enqueue
from handoff.domain.changes import Change, ProfileRelay
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
            evidence=_link_evidence(item),
        )
        changes = refresh_customers(conn, hub.settings.config.program, [survivor, absorbed], now)
        written = enqueue(conn, changes, now, destinations=hub.settings.config.destinations)
        return Outcome(review_id, "merged", survivor, absorbed, written)


def _link_evidence(item: store.ReviewRow) -> dict[str, Any]:
    """The review's evidence, naming the two records the reviewer joined (what unmerge cuts)."""
    evidence = dict(item.evidence or {})
    evidence["record_a"] = item.record_id
    if item.candidate_record_id is not None:
        evidence["record_b"] = item.candidate_record_id
    return evidence


# --------------------------------------------------------------------------------------------
# unmerge


@dataclass(frozen=True)
class UnmergedPart:
    customer_id: int | None  # None in a dry run for a customer that would be created
    records: tuple[str, ...]
    created: bool


@dataclass(frozen=True)
class UnmergeResult:
    decision_id: int
    cluster: int
    parts: tuple[UnmergedPart, ...]
    changes: int
    applied: bool


def unmerge(hub: Hub, decision_id: int, *, actor: str, dry_run: bool = False) -> UnmergeResult:
    """Undo merge `decision_id`: split its cluster by replaying the decision log without that
    link, move profiles, system ids and events to the parts' customers, rebuild their golden
    records and let the ledger re-derive them — in one transaction, recorded as a decision.

    The part holding the cluster's oldest customer keeps its id; a part that holds a customer
    merged away earlier gets that id back; any other part becomes a new customer."""
    from handoff.domain.identity.unmerge import ClusterRecord, UnmergeError, split_cluster
    from handoff.pipeline.identity_stage import IdentityStage, rebuild_golden

    now = hub.clock.now()
    with hub.db.write() as conn:
        decision = store.get_decision(conn, decision_id)
        if decision is None:
            raise ReviewError(f"no decision {decision_id}")
        if decision["kind"] != "merge" or decision["customer_id"] is None:
            raise ReviewError(f"decision {decision_id} is a {decision['kind']}, not a merge")
        root = store.survivor_of(conn, int(decision["customer_id"]))
        members = store.cluster_members(conn, root)
        profiles = store.cluster_profiles(conn, root)
        history = store.cluster_decisions(conn, members, [p.record_id for p in profiles])
        records = [
            ClusterRecord(
                p.record_id, (p.system, p.external_id) if p.system and p.external_id else None
            )
            for p in profiles
        ]
        try:
            plan = split_cluster(records, history, decision_id, root)
        except UnmergeError as exc:
            raise ReviewError(str(exc)) from None

        chosen: list[int | None] = []
        for i, part in enumerate(plan):
            if i == 0:
                chosen.append(root)
            else:
                revived = sorted(part.founders - {root})
                chosen.append(revived[0] if revived else None)
        if dry_run:
            parts = tuple(
                UnmergedPart(cid, part.records, cid is None)
                for cid, part in zip(chosen, plan, strict=True)
            )
            return UnmergeResult(decision_id, root, parts, 0, applied=False)

        by_record = {p.record_id: p for p in profiles}
        stage = IdentityStage.from_hub(hub)
        done: list[UnmergedPart] = []
        relays: list[Change] = []
        for cid, part in zip(chosen, plan, strict=True):
            created = cid is None
            customer = cid if cid is not None else store.new_customer(conn, {}, {}, now)
            store.set_merged_into(conn, [customer], None, now)
            store.set_merged_into(conn, part.founders - {customer}, customer, now)
            store.move_records(
                conn,
                part.records,
                [s for r in part.records if (s := _source(by_record[r])) is not None],
                customer,
            )
            before = store.golden(conn, [customer])[customer]
            record = rebuild_golden(
                before,
                [(by_record[r].profile, by_record[r].system) for r in part.records],
                stage.normalize_config,
                stage.golden_rules,
                stage.guards,
            )
            store.save_golden(conn, record, now)
            relays.append(
                ProfileRelay(customer, dict(record.fields), record.version, "identity", now)
            )
            done.append(UnmergedPart(customer, part.records, created))
        store.record_decision(
            conn,
            at=now,
            kind="unmerge",
            rule="operator",
            actor=actor,
            customer_id=root,
            other_customer_id=next((p.customer_id for p in done[1:]), None),
            evidence={
                "undoes": decision_id,
                "parts": [
                    {
                        "customer_id": p.customer_id,
                        "records": len(p.records),
                        "first": p.records[:20],
                    }
                    for p in done
                ],
            },
        )
        ids = [p.customer_id for p in done if p.customer_id is not None]
        changes = relays + refresh_customers(conn, hub.settings.config.program, ids, now)
        written = enqueue(conn, changes, now, destinations=hub.settings.config.destinations)
        return UnmergeResult(decision_id, root, tuple(done), written, applied=True)


def _source(profile: store.ClusterProfile) -> tuple[str, str] | None:
    if profile.system and profile.external_id:
        return (profile.system, profile.external_id)
    return None
