"""`handoff reconcile apply DIR`: send a run's repair plan through the delivery outbox.

Each correction becomes a `PointsAdjustment` (loyalty) or `AttributeChange`s (CRM, POS,
helpdesk, email) for the golden customer it concerns, enqueued in one transaction. Idempotent
twice over: a correction's key is derived from its target, action, value and the findings it
repairs (the same plan gives the same keys, and the outbox never stores a key twice), and
`DIR/applied.jsonl` records what was sent, so a second apply sends nothing.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from handoff.domain.changes import AttributeChange, Change, PointsAdjustment

APPLIED = "applied.jsonl"


@dataclass
class PlannedChange:
    row: dict[str, str]
    key: str
    customer_id: int | None
    changes: list[Change] = field(default_factory=list)
    skipped: str | None = None  # why it is not sent


@dataclass
class ApplyResult:
    planned: list[PlannedChange]
    sent: int = 0
    outbox_rows: int = 0
    dry_run: bool = True

    @property
    def unresolved(self) -> list[PlannedChange]:
        return [p for p in self.planned if p.customer_id is None and p.skipped is None]


class ApplyError(ValueError):
    pass


def read_plan(run: Path) -> tuple[list[dict[str, str]], dict[str, Any]]:
    plan = run / "corrections.csv"
    if not plan.exists():
        raise ApplyError(f"{plan}: no such file (run `handoff reconcile … --out {run}` first)")
    with plan.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    summary_path = run / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    return rows, summary


def already_applied(run: Path) -> set[str]:
    path = run / APPLIED
    if not path.exists():
        return set()
    keys = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            keys.add(json.loads(line)["idempotency_key"])
    return keys


def _version(summary: dict[str, Any]) -> int:
    """State changes carry the run's as-of instant (ms) as their version: the same run's
    changes never supersede themselves, a later run's win."""
    text = summary.get("as_of")
    if not text:
        return 1
    return int(datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp() * 1000)


def _lookup(conn: Connection, *candidates: str | None) -> int | None:
    from handoff.store.identity import find_customers

    for text in candidates:
        if not text:
            continue
        found = find_customers(conn, text, limit=2)
        if len(found) == 1:
            return found[0].customer_id
    return None


def plan_changes(conn: Connection, run: Path, now: datetime) -> list[PlannedChange]:
    rows, summary = read_plan(run)
    done = already_applied(run)
    version = _version(summary)
    out: list[PlannedChange] = []
    for row in rows:
        key = row["idempotency_key"]
        target_id = row.get("member_id") or row.get("contact_id") or row.get("id") or ""
        planned = PlannedChange(row, key, None)
        out.append(planned)
        if key in done:
            planned.skipped = "already applied"
            continue
        customer = _lookup(conn, target_id, row.get("customer_id"))
        planned.customer_id = customer
        if customer is None:
            continue
        cause = f"reconcile {row.get('reason') or key}"
        if row["action"] == "adjust_points":
            points = int(row["points"] or 0)
            if points == 0:
                planned.skipped = "nothing to adjust"
                continue
            planned.changes.append(
                PointsAdjustment(
                    customer_id=customer,
                    delta=points,
                    reason=f"handoff reconcile {row.get('reason') or ''}".strip(),
                    key=key,
                    cause=cause,
                    at=now,
                )
            )
        else:
            fields = json.loads(row.get("fields") or "{}")
            for name, value in sorted(fields.items()):
                planned.changes.append(
                    AttributeChange(
                        customer_id=customer,
                        attribute=name,
                        value=value,
                        version=version,
                        cause=cause,
                        at=now,
                    )
                )
    return out


def apply_plan(conn: Connection, run: Path, now: datetime, *, send: bool) -> ApplyResult:
    """Plan (and with `send`, enqueue in the caller's transaction) the run's corrections."""
    planned = plan_changes(conn, run, now)
    result = ApplyResult(planned, dry_run=not send)
    if not send:
        return result
    from handoff.delivery.outbox import enqueue

    changes: list[Change] = [c for p in planned if p.skipped is None for c in p.changes]
    result.outbox_rows = enqueue(conn, changes, now) if changes else 0
    sent = [p for p in planned if p.skipped is None and p.changes]
    result.sent = len(sent)
    with (run / APPLIED).open("a", encoding="utf-8") as fh:
        for p in sent:
            fh.write(
                json.dumps(
                    {
                        "idempotency_key": p.key,
                        "golden_customer_id": p.customer_id,
                        "at": now.isoformat(),
                        "correction": p.row,
                        "changes": len(p.changes),
                    },
                    sort_keys=True,
                )
                + "\n"
            )
    return result
