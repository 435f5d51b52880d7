"""Ground truth: who is who, what each customer's loyalty state should be, what went wrong.

The expected loyalty state comes from a deliberately small *reference* implementation of
reconcile.md's default `[program]` rules, independent of handoff's ledger engine (the two are
cross-checked later; a disagreement is a bug in one of them):

- earn `floor(points_per_unit * net_merchandise / 100)` per order (net merchandise = subtotal -
  discount - gift cards, in minor units; tax and shipping never earn), when the order reaches
  the trigger (`fulfilled` by default, or `paid`);
- a refund reverses `floor(points * refunded / net_merchandise)` of that order's points;
- a cancellation reverses everything earned on the order (with the `fulfilled` trigger a
  cancelled order never earned, so there is nothing to reverse);
- lifetime net spend = net merchandise of orders that reached the trigger, minus refunds,
  minus cancelled-after-trigger orders; the tier is the highest whose `min_spend` it reaches;
- VIP = tier in `vip_tiers`, or a CRM user ticked VIP by hand for that person (`vip_source`
  says which);
- with `pending_days`, an earn is pending until `trigger + pending_days`; a reversal of a
  still-pending earn comes off the pending points.

Every output is sorted and free of wall-clock values, so the same seed writes the same bytes.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from handoff.sim.scenario import Order, Scenario, iso, money
from handoff.sim.scenario_config import ProgramRules

if TYPE_CHECKING:
    from handoff.sim.delivery import DeliveryRecord
    from handoff.sim.faults import World


# --- the reference ledger ------------------------------------------------------------------------


def points_for(amount_minor: int, rules: ProgramRules) -> int:
    """Points earned on an amount in minor units (floor, per order)."""
    return max(0, rules.points_per_unit * amount_minor // 100)


def reversal_for(points: int, refunded_minor: int, basis_minor: int) -> int:
    """Points a refund takes back: in proportion to the order's earning basis (floor)."""
    if basis_minor <= 0 or points <= 0:
        return 0
    return min(points, points * min(refunded_minor, basis_minor) // basis_minor)


def tier_for(spend_minor: int, rules: ProgramRules) -> str:
    name = rules.tiers[0].name
    for tier in rules.tiers:
        if spend_minor >= tier.min_spend_minor:
            name = tier.name
    return name


def trigger_time(order: Order, rules: ProgramRules) -> datetime | None:
    """When the order earns under the rules (None: it never does, within the scenario)."""
    if rules.trigger == "paid":
        return order.paid_at
    if order.cancelled_at is not None:
        return None
    return order.fulfilled_at


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    at: datetime
    vests_at: datetime
    person_id: str
    customer_id: str  # ERP customer
    member_id: str  # the loyalty member it belongs on (Shopify customer id)
    order_id: str
    kind: str  # earn | reverse
    points: int  # signed
    spend: int  # signed change to lifetime net spend, minor units
    ref: str  # the fact that caused it: order.fulfilled:SO-1, refund:RF-1, order.cancelled:SO-1


def expected_entries(scenario: Scenario, rules: ProgramRules | None = None) -> list[LedgerEntry]:
    """Every entry the rules imply for the scenario, in time order."""
    rules = rules or scenario.config.program
    pending = timedelta(days=rules.pending_days)
    entries: list[LedgerEntry] = []
    for order in scenario.orders:
        at = trigger_time(order, rules)
        if at is None or at > scenario.end:
            continue
        earned = points_for(order.net_merchandise, rules)
        vests = at + pending
        common = (order.person_id, order.erp_customer_id, str(order.shopify_customer_id))
        entries.append(
            LedgerEntry(
                at,
                vests,
                *common,
                order.order_id,
                "earn",
                earned,
                order.net_merchandise,
                f"order.{rules.trigger}:{order.order_id}",
            )
        )
        if order.cancelled_at is not None:
            entries.append(
                LedgerEntry(
                    order.cancelled_at,
                    max(order.cancelled_at, vests),
                    *common,
                    order.order_id,
                    "reverse",
                    -earned,
                    -order.net_merchandise,
                    f"order.cancelled:{order.order_id}",
                )
            )
            continue
        for refund in scenario.refunds_of(order.order_id):
            entries.append(
                LedgerEntry(
                    refund.refunded_at,
                    max(refund.refunded_at, vests),
                    *common,
                    order.order_id,
                    "reverse",
                    -reversal_for(earned, refund.amount, order.net_merchandise),
                    -refund.amount,
                    f"refund:{refund.refund_id}",
                )
            )
    entries.sort(key=lambda e: (e.at, e.order_id, e.ref))
    return entries


@dataclass(frozen=True, slots=True)
class ExpectedState:
    key: str  # person_id or ERP customer id
    points_balance: int  # approved + pending
    points_pending: int
    lifetime_spend: int  # minor units
    tier: str
    is_vip: bool
    vip_source: str  # tier | manual | ""


def _states(
    entries: Iterable[LedgerEntry],
    keys: Iterable[str],
    key_of: Any,
    as_of: datetime,
    rules: ProgramRules,
    manual: set[str],
) -> dict[str, ExpectedState]:
    points: dict[str, int] = defaultdict(int)
    pending: dict[str, int] = defaultdict(int)
    spend: dict[str, int] = defaultdict(int)
    for e in entries:
        if e.at > as_of:
            continue
        k = key_of(e)
        points[k] += e.points
        spend[k] += e.spend
        if e.vests_at > as_of:
            pending[k] += e.points
    out = {}
    for k in keys:
        tier = tier_for(spend[k], rules)
        by_tier = tier in rules.vip_tiers
        source = "tier" if by_tier else ("manual" if k in manual else "")
        out[k] = ExpectedState(k, points[k], pending[k], spend[k], tier, bool(source), source)
    return out


def expected_by_person(
    scenario: Scenario, as_of: datetime | None = None
) -> dict[str, ExpectedState]:
    rules = scenario.config.program
    when = as_of or scenario.end
    manual = {v.person_id for v in scenario.manual_vips if v.at <= when}
    return _states(
        expected_entries(scenario),
        (p.person_id for p in scenario.people),
        lambda e: e.person_id,
        when,
        rules,
        manual,
    )


def expected_by_customer(
    scenario: Scenario, as_of: datetime | None = None
) -> dict[str, ExpectedState]:
    """Per ERP customer (= per Shopify customer = per loyalty member that should exist)."""
    rules = scenario.config.program
    when = as_of or scenario.end
    manual_people = {v.person_id for v in scenario.manual_vips if v.at <= when}
    manual = {c.erp_id for c in scenario.customers if c.person_id in manual_people}
    return _states(
        expected_entries(scenario),
        (c.erp_id for c in scenario.customers),
        lambda e: e.customer_id,
        when,
        rules,
        manual,
    )


# --- files ----------------------------------------------------------------------------------------


def csv_text(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
    """CSV with a header, `\\n` line ends, None as an empty cell, bools as true/false."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return buffer.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, tuple | list):
        return ";".join(str(v) for v in value)
    return str(value)


def json_text(data: Any) -> str:
    return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))


def identity_rows(scenario: Scenario) -> list[dict[str, Any]]:
    """Who is who: every (system, external id) each person is known by."""
    rows: list[dict[str, Any]] = []
    for c in scenario.customers:
        for system, external in (
            ("shopify", str(c.shopify_id)),
            ("erp", c.erp_id),
            ("loyalty", str(c.shopify_id)),
        ):
            rows.append(
                {
                    "person_id": c.person_id,
                    "system": system,
                    "external_id": external,
                    "shared": False,
                    "noise": c.noise,
                }
            )
    for contact in scenario.contacts:
        for pid in contact.person_ids:
            rows.append(
                {
                    "person_id": pid,
                    "system": "crm",
                    "external_id": str(contact.contact_id),
                    "shared": len(contact.person_ids) > 1,
                    "noise": (),
                }
            )
    for profiles in (scenario.helpdesk_users, scenario.comms_profiles):
        for profile in profiles:
            for pid in profile.person_ids:
                rows.append(
                    {
                        "person_id": pid,
                        "system": profile.system,
                        "external_id": profile.external_id,
                        "shared": len(profile.person_ids) > 1,
                        "noise": (),
                    }
                )
    rows.sort(key=lambda r: (r["person_id"], r["system"], r["external_id"]))
    return rows


def write_truth(
    out_dir: Path,
    world: World,
    deliveries: Sequence[DeliveryRecord] = (),
) -> list[Path]:
    """Write the ground truth under `out_dir` (usually `<run>/truth`); returns the files."""
    scenario = world.scenario
    written: list[Path] = []

    def put(name: str, text: str) -> None:
        path = out_dir / name
        write_text(path, text)
        written.append(path)

    put(
        "people.csv",
        csv_text(
            (
                "person_id",
                "first_name",
                "last_name",
                "nickname",
                "email",
                "phone",
                "zip",
                "home_store",
                "household_id",
            ),
            (
                {
                    "person_id": p.person_id,
                    "first_name": p.first_name,
                    "last_name": p.last_name,
                    "nickname": p.nickname,
                    "email": p.email,
                    "phone": p.phone,
                    "zip": p.zip,
                    "home_store": p.home_store,
                    "household_id": p.household_id,
                }
                for p in scenario.people
            ),
        ),
    )
    put(
        "identities.csv",
        csv_text(
            ("person_id", "system", "external_id", "shared", "noise"), identity_rows(scenario)
        ),
    )
    state_columns = (
        "points_balance",
        "points_pending",
        "lifetime_spend",
        "tier",
        "is_vip",
        "vip_source",
    )

    def state_row(state: ExpectedState) -> dict[str, Any]:
        return {
            "points_balance": state.points_balance,
            "points_pending": state.points_pending,
            "lifetime_spend": money(state.lifetime_spend),
            "tier": state.tier,
            "is_vip": state.is_vip,
            "vip_source": state.vip_source,
        }

    people = expected_by_person(scenario)
    put(
        "expected_people.csv",
        csv_text(
            ("person_id", *state_columns),
            ({"person_id": k} | state_row(people[k]) for k in sorted(people)),
        ),
    )
    customers = expected_by_customer(scenario)
    known = world.loyalty.member_ids()
    put(
        "expected_customers.csv",
        csv_text(
            ("customer_id", "member_id", "person_id", "member_exists", *state_columns),
            (
                {
                    "customer_id": c.erp_id,
                    "member_id": str(c.shopify_id),
                    "person_id": c.person_id,
                    "member_exists": str(c.shopify_id) in known,
                }
                | state_row(customers[c.erp_id])
                for c in scenario.customers
            ),
        ),
    )
    put(
        "expected_ledger.csv",
        csv_text(
            (
                "occurred_at",
                "vests_at",
                "person_id",
                "customer_id",
                "member_id",
                "order_id",
                "kind",
                "points",
                "spend",
                "ref",
            ),
            (
                {
                    "occurred_at": e.at,
                    "vests_at": e.vests_at,
                    "person_id": e.person_id,
                    "customer_id": e.customer_id,
                    "member_id": e.member_id,
                    "order_id": e.order_id,
                    "kind": e.kind,
                    "points": e.points,
                    "spend": money(e.spend),
                    "ref": e.ref,
                }
                for e in expected_entries(scenario)
            ),
        ),
    )
    labels = world.labels_with_ids()
    label_columns = (
        "fault_id",
        "fault",
        "class",
        "handoff",
        "system",
        "ref",
        "person_id",
        "customer_id",
        "member_id",
        "contact_id",
        "order_id",
        "expected",
        "actual",
        "detail",
    )
    put("faults.csv", csv_text(label_columns, (label.row() for label in labels)))
    put(
        "faults.jsonl",
        "".join(
            json.dumps(label.row(), sort_keys=True, ensure_ascii=False) + "\n" for label in labels
        ),
    )
    if deliveries:
        put(
            "deliveries.csv",
            csv_text(
                (
                    "message_id",
                    "system",
                    "topic",
                    "ref",
                    "delivery_id",
                    "fired_at",
                    "outcome",
                    "faults",
                    "attempts",
                    "requests_reaching_hub",
                    "first_attempt_at",
                    "acked_at",
                    "statuses",
                ),
                (d.row() for d in deliveries),
            ),
        )
    counts: dict[str, dict[str, int]] = {"by_fault": {}, "by_class": {}, "by_handoff": {}}
    for label in labels:
        for table, key in (
            ("by_fault", label.fault),
            ("by_class", label.cls),
            ("by_handoff", label.handoff),
        ):
            counts[table][key] = counts[table].get(key, 0) + 1
    outcomes: dict[str, int] = {}
    for d in deliveries:
        outcomes[d.outcome] = outcomes.get(d.outcome, 0) + 1
    summary = {
        "seed": scenario.config.seed,
        "start": iso(scenario.start),
        "end": iso(scenario.end),
        "people": len(scenario.people),
        "shopify_customers": len(scenario.customers),
        "orders": len(scenario.orders),
        "refunds": len(scenario.refunds),
        "crm_contacts": len(scenario.contacts),
        "manual_vips": len(scenario.manual_vips),
        "vip_people": sum(1 for s in people.values() if s.is_vip),
        "faults": counts,
        "deliveries": outcomes,
        "program": scenario.config.program.model_dump(mode="json"),
        "config": scenario.config.model_dump(mode="json"),
    }
    put("summary.json", json_text(summary))
    return written
