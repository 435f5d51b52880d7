"""`handoff trace order|customer` over export files: each system's view side by side, with the
first point where they part ways marked — the field's "pull five customers and compare by
hand", for any customer, in one command.

The timeline of an order is judged with the domain's one-order reference
(`handoff.domain.recon.classify_order`), the same rules the set-based engine applies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from handoff.domain.recon import (
    LoyaltyFacts,
    OrderFacts,
    RefundFacts,
    classify_order,
)
from handoff.domain.recon.rules import LoyaltyEvent
from handoff.recon.engine import Result


@dataclass
class Row:
    at: datetime | None
    system: str
    what: str
    divergence: str = ""


@dataclass
class OrderTrace:
    order_id: str
    customer_id: str
    member_id: str | None
    rows: list[Row]
    findings: list[dict[str, Any]]
    first_divergence: int | None  # index into rows


@dataclass
class CustomerTrace:
    query: str
    records: dict[str, list[dict[str, Any]]]  # system → its records of this person
    orders: list[OrderTrace] = field(default_factory=list)
    other_findings: list[dict[str, Any]] = field(default_factory=list)


def _records(result: Result, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    cur = result.con.execute(sql, params)
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def trace_order(result: Result, order_id: str) -> OrderTrace | None:
    rows = _records(result, "SELECT * FROM orders WHERE order_id = ?", [order_id])
    if not rows:
        return None
    o = rows[0]
    facts = OrderFacts(
        order_id=o["order_id"],
        customer_id=o["customer_id"],
        status=o["status"],
        placed_at=o["placed_at"],
        subtotal=o["subtotal"],
        currency=o["currency"],
        discount=o["discount"] or 0,
        tax=o["tax"] or 0,
        shipping=o["shipping"] or 0,
        gift_card=o["gift_card"] or 0,
        channel=o["channel"],
        paid_at=o["paid_at"],
        fulfilled_at=o["fulfilled_at"],
        cancelled_at=o["cancelled_at"],
    )
    refunds = [
        RefundFacts(r["refund_id"], r["refunded_at"], r["amount"] or 0)
        for r in _records(result, "SELECT * FROM refunds WHERE order_id = ?", [order_id])
    ]
    events = [
        LoyaltyEvent(
            e["event_id"], e["member_id"], e["kind"], e["points"], e["occurred_at"], e["reason"]
        )
        for e in _records(
            result,
            "SELECT * FROM loyalty_events WHERE order_id = ? ORDER BY occurred_at",
            [order_id],
        )
    ]
    cm = result.con.execute(
        "SELECT member_id, member_created_at FROM cust_member WHERE customer_id = ?",
        [facts.customer_id],
    ).fetchone()
    member, created = (cm[0], cm[1]) if cm else (None, None)
    verdict = classify_order(
        result.program,
        facts,
        refunds,
        LoyaltyFacts(tuple(events)),
        as_of=result.as_of,
        member_of_customer=member,
        member_created_at=created,
    )
    exp = verdict.expectation
    timeline: list[Row] = [Row(facts.placed_at, "erp", f"placed, subtotal {facts.subtotal}")]
    if facts.paid_at:
        timeline.append(Row(facts.paid_at, "erp", "paid"))
    if facts.fulfilled_at:
        timeline.append(Row(facts.fulfilled_at, "erp", "fulfilled"))
    if facts.cancelled_at:
        timeline.append(Row(facts.cancelled_at, "erp", "cancelled"))
    if exp.trigger_at is not None:
        timeline.append(
            Row(
                exp.trigger_at,
                "rules",
                f"should earn {exp.points} points (order.{result.program.trigger})",
            )
        )
    for rev in exp.reversals:
        timeline.append(Row(rev.at, "erp", f"{rev.ref}: should take back {rev.points} points"))
    for e in events:
        timeline.append(
            Row(
                e.occurred_at,
                "loyalty",
                f"{e.kind} {e.points:+d} on member {e.member_id} ({e.event_id})",
            )
        )
    timeline.sort(key=lambda r: (r.at is None, r.at, r.system != "erp"))
    found = [
        {
            "finding_id": f.finding_id,
            "class": f.cls,
            "handoff": f.handoff,
            "expected": f.expected,
            "actual": f.actual,
            "detail": f.detail,
        }
        for f in verdict.findings
    ]
    first = _first_divergence(timeline, verdict.findings, exp.trigger_at, result)
    if first is not None:
        timeline[first].divergence = ", ".join(f.cls for f in verdict.findings)
    return OrderTrace(order_id, facts.customer_id, member, timeline, found, first)


def _first_divergence(
    rows: list[Row], findings: Any, trigger_at: datetime | None, result: Result
) -> int | None:
    if not findings:
        return None
    classes = {f.cls for f in findings}
    for i, row in enumerate(rows):
        if row.system == "loyalty" and (
            "premature" in classes
            or "duplicate" in classes
            or "value" in classes
            or "identity" in classes
            or "timing" in classes
        ):
            return i
        if row.system == "rules" and classes & {"missing", "timing"}:
            return i
        if row.system == "erp" and "unreversed" in classes and "should take back" in row.what:
            return i
    return 0


def trace_customer(result: Result, query: str) -> CustomerTrace | None:
    text = query.strip()
    lowered = text.lower()
    hits = result.con.execute(
        """
        SELECT DISTINCT person FROM link_person l WHERE l.id = ?
        UNION SELECT l.person FROM link_person l JOIN orders o ON l.system = 'erp'
              AND l.id = o.customer_id WHERE lower(o.email) = ? OR o.phone = ?
        UNION SELECT l.person FROM link_person l JOIN loyalty_members m ON l.system = 'loyalty'
              AND l.id = m.member_id WHERE lower(m.email) = ?
        UNION SELECT l.person FROM link_person l JOIN crm_contacts c ON l.system = 'crm'
              AND l.id = c.contact_id WHERE lower(c.email) = ?
        """,
        [text, lowered, text, lowered, lowered],
    ).fetchall()
    people = sorted({h[0] for h in hits})
    if not people:
        return None
    ids = _records(
        result, "SELECT system, id FROM link_person WHERE list_contains(?, person)", [people]
    )
    by: dict[str, list[str]] = {}
    for r in ids:
        by.setdefault(r["system"], []).append(r["id"])
    records: dict[str, list[dict[str, Any]]] = {}
    queries = {
        "erp": "SELECT customer_id, count(*) AS orders, any_value(email) AS email, "
        "any_value(first_name) AS first_name, any_value(last_name) AS last_name "
        "FROM orders WHERE list_contains(?, customer_id) GROUP BY 1",
        "loyalty": "SELECT member_id, points_balance, tier, email, customer_id FROM "
        "loyalty_members WHERE list_contains(?, member_id)",
        "crm": "SELECT contact_id, email, tier, points_balance, lifetime_spend, is_vip FROM "
        "crm_contacts WHERE list_contains(?, contact_id)",
    }
    for system, sql in queries.items():
        if by.get(system):
            records[system] = _records(result, sql, [by[system]])
    for table, system in (
        ("pos_customers", "pos"),
        ("helpdesk_users", "helpdesk"),
        ("comms_profiles", "comms"),
    ):
        if by.get(system) and result.loaded.has(table):
            records[system] = _records(
                result,
                f"SELECT id, email, is_vip, tags FROM {table} WHERE list_contains(?, id)",
                [by[system]],
            )
    out = CustomerTrace(query, records)
    for (oid,) in result.con.execute(
        "SELECT order_id FROM orders WHERE list_contains(?, customer_id) ORDER BY placed_at",
        [by.get("erp", [])],
    ).fetchall():
        t = trace_order(result, oid)
        if t is not None:
            out.orders.append(t)
    out.other_findings = _records(
        result,
        "SELECT finding_id, class, handoff, expected, actual, detail FROM findings "
        "WHERE order_id IS NULL AND (list_contains(?, member_id) OR list_contains(?, contact_id) "
        "OR list_contains(?, customer_id) OR list_contains(?, ref))",
        [
            by.get("loyalty", []),
            by.get("crm", []),
            by.get("erp", []),
            [f"{s}:{i}" for s in ("pos", "helpdesk", "comms") for i in by.get(s, [])],
        ],
    )
    return out
