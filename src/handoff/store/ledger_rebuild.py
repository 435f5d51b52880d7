"""The set-based ledger rebuild: every projection recomputed from the entries in the database.

One aggregate over `ledger_entries` (conditional sums, the tier as a CASE over the thresholds,
VIP as a CASE over the latest manual flag, the VIP tiers and the spend rule) computes what
`domain.ledger.fold` computes per customer, for all customers at once, as of any instant. No
Python loop per entry: ten million entries are one statement on either database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    MetaData,
    String,
    Table,
    and_,
    case,
    delete,
    false,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    text,
    true,
    union,
    union_all,
)
from sqlalchemy.sql.elements import ColumnElement

from handoff.domain.ledger import EntryKind, Program, fold
from handoff.store.ledger import HistoryRow, history_row, micros
from handoff.store.ledger_tables import (
    ledger_attribute_history,
    ledger_entries,
    ledger_flags,
    ledger_held,
    ledger_projections,
    ledger_recorded,
)
from handoff.store.types import BigId, UtcDateTime


def _shift_year(at: datetime) -> datetime:
    try:
        return at.replace(year=at.year - 1)
    except ValueError:  # 29 February
        return at.replace(year=at.year - 1, day=28)


def _window(program: Program, as_of: datetime) -> ColumnElement[bool]:
    """The tier window as a condition on qualifies_at (same bounds as domain projection)."""
    q = ledger_entries.c.qualifies_at
    if program.tier_window == "rolling_12_months":
        return q > _shift_year(as_of)
    if program.tier_window == "calendar_year":
        start = datetime(as_of.astimezone(UTC).year, 1, 1, tzinfo=UTC)
        return and_(q >= start, q < start.replace(year=start.year + 1))
    return true()


def _aggregate(program: Program, as_of: datetime) -> Any:
    """Each customer's sums over its entries (one GROUP BY over `ledger_entries`, which both
    databases run straight off the table or its customer index), plus a row of zeros for each
    customer with no entry yet but a held event, a manual flag or a platform record."""
    e = ledger_entries.c
    vest = e.kind == EntryKind.VEST.value
    counts = and_(
        e.pending == false(),
        e.kind.not_in([EntryKind.EXPIRE.value, EntryKind.REDEEM.value]),
        _window(program, as_of),
    )
    sums = (
        select(
            e.customer_id.label("customer_id"),
            func.sum(case((vest, e.points), (e.pending == true(), 0), else_=e.points)).label(
                "balance"
            ),
            func.sum(case((vest, -e.points), (e.pending == true(), e.points), else_=0)).label(
                "pending"
            ),
            func.sum(case((vest, 0), else_=e.spend)).label("lifetime_spend"),
            func.sum(case((counts, e.spend), else_=0)).label("tier_spend"),
            func.sum(case((counts, e.tier_points), else_=0)).label("tier_points"),
        )
        .where(e.effective_at <= as_of)
        .group_by(e.customer_id)
    )
    others = union(
        select(ledger_held.c.customer_id).where(
            ledger_held.c.customer_id.is_not(None), ledger_held.c.occurred_at <= as_of
        ),
        select(ledger_flags.c.customer_id).where(ledger_flags.c.effective_at <= as_of),
        select(ledger_recorded.c.customer_id).where(ledger_recorded.c.occurred_at <= as_of),
    ).subquery("others")
    earned = (
        select(literal(1))
        .where(e.customer_id == others.c.customer_id, e.effective_at <= as_of)
        .exists()
    )
    zero = literal(0, BigId)
    zeros = select(others.c.customer_id, zero, zero, zero, zero, zero).where(~earned)
    return union_all(sums, zeros).subquery("agg")


def _latest_flags(as_of: datetime) -> Any:
    f = ledger_flags.c
    ranked = (
        select(
            f.customer_id,
            f.value,
            func.row_number()
            .over(partition_by=f.customer_id, order_by=f.sort_key.desc())
            .label("n"),
        )
        .where(f.effective_at <= as_of)
        .subquery("ranked_flags")
    )
    return select(ranked.c.customer_id, ranked.c.value).where(ranked.c.n == 1).subquery("manual")


def _recorded_summary(as_of: datetime) -> tuple[Any, Any]:
    r = ledger_recorded.c
    sums = (
        select(r.customer_id, func.sum(r.delta).label("recorded_points"))
        .where(r.occurred_at <= as_of)
        .group_by(r.customer_id)
        .subquery("recorded_sum")
    )
    ranked = (
        select(
            r.customer_id,
            r.balance,
            func.row_number()
            .over(partition_by=r.customer_id, order_by=(r.occurred_at.desc(), r.event_id.desc()))
            .label("n"),
        )
        .where(r.occurred_at <= as_of, r.balance.is_not(None))
        .subquery("ranked_recorded")
    )
    last = (
        select(ranked.c.customer_id, ranked.c.balance)
        .where(ranked.c.n == 1)
        .subquery("recorded_last")
    )
    return sums, last


def _held_counts(as_of: datetime) -> Any:
    h = ledger_held.c
    return (
        select(h.customer_id, func.count().label("held"))
        .where(h.customer_id.is_not(None), h.occurred_at <= as_of)
        .group_by(h.customer_id)
        .subquery("held_count")
    )


def tune(conn: Connection) -> None:
    """PostgreSQL: memory for one big hash aggregate, and no JIT (its compile time exceeds its
    gain here). Local to the transaction."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SET LOCAL work_mem = '256MB'"))
        conn.execute(text("SET LOCAL jit = off"))


def projection_query(program: Program, as_of: datetime) -> Any:
    """Every customer's projection as of `as_of`, as one SELECT (tier and VIP in CASEs).

    Matches `domain.ledger.fold` for `tier_downgrade = "immediate"`; the other downgrade
    policies need each customer's history and are folded in Python by the caller."""
    agg = _aggregate(program, as_of)
    manual = _latest_flags(as_of)
    recorded_sum, recorded_last = _recorded_summary(as_of)
    held = _held_counts(as_of)
    tier_spend = agg.c.tier_spend
    tier_points = agg.c.tier_points
    value = tier_spend if program.tier_basis == "spend" else tier_points
    thresholds = program.tier_thresholds()
    tier: Any = null()
    if thresholds:
        tier = case(
            *[(value >= threshold, literal(name)) for name, threshold in reversed(thresholds)],
            else_=null(),
        )
    vip_rules: list[tuple[Any, Any]] = []
    if program.vip_manual_override:
        vip_rules.append((manual.c.value.is_not(None), manual.c.value))
    if program.vip_tiers:
        vip_rules.append((tier.in_(list(program.vip_tiers)), true()))
    threshold = program.vip_min_spend_minor()
    if threshold is not None:
        vip_rules.append((tier_spend >= threshold, true()))
    is_vip: Any = case(*vip_rules, else_=false()) if vip_rules else false()
    return select(
        agg.c.customer_id.label("customer_id"),
        agg.c.balance.label("balance"),
        agg.c.pending.label("pending"),
        agg.c.lifetime_spend.label("lifetime_spend"),
        tier_spend.label("tier_spend"),
        tier_points.label("tier_points"),
        tier.label("tier"),
        is_vip.label("is_vip"),
        manual.c.value.label("manual_vip"),
        func.coalesce(recorded_sum.c.recorded_points, 0).label("recorded_points"),
        recorded_last.c.balance.label("recorded_balance"),
        func.coalesce(held.c.held, 0).label("held"),
    ).select_from(
        agg.outerjoin(manual, manual.c.customer_id == agg.c.customer_id)
        .outerjoin(recorded_sum, recorded_sum.c.customer_id == agg.c.customer_id)
        .outerjoin(recorded_last, recorded_last.c.customer_id == agg.c.customer_id)
        .outerjoin(held, held.c.customer_id == agg.c.customer_id)
    )


_STAGING_COLUMNS = (
    "customer_id",
    "balance",
    "pending",
    "lifetime_spend",
    "tier_spend",
    "tier_points",
    "tier",
    "is_vip",
    "manual_vip",
    "recorded_points",
    "recorded_balance",
    "held",
)


def _staging_table() -> Table:
    return Table(
        "ledger_rebuild_staging",
        MetaData(),
        Column("customer_id", BigId, primary_key=True, autoincrement=False),
        *[Column(name, BigId) for name in _STAGING_COLUMNS[1:6]],
        Column("tier", String(64)),
        Column("is_vip", Boolean),
        Column("manual_vip", Boolean),
        *[Column(name, BigId) for name in _STAGING_COLUMNS[9:]],
        prefixes=["TEMPORARY"],
    )


@dataclass(frozen=True, slots=True)
class RebuildSummary:
    as_of: datetime
    customers: int
    entries: int
    balance: int
    pending: int
    vip: int
    tiers: dict[str, int]
    changes: int  # tier/VIP values that differ from the stored projections (written runs only)


def summarise(conn: Connection, source: Any, as_of: datetime, changes: int) -> RebuildSummary:
    totals = conn.execute(
        select(
            func.count(),
            func.coalesce(func.sum(source.c.balance), 0),
            func.coalesce(func.sum(source.c.pending), 0),
            func.coalesce(func.sum(case((source.c.is_vip == true(), 1), else_=0)), 0),
        )
    ).one()
    tiers = {
        "(none)" if tier is None else str(tier): int(n)
        for tier, n in conn.execute(select(source.c.tier, func.count()).group_by(source.c.tier))
    }
    entries = int(
        conn.execute(
            select(func.count())
            .select_from(ledger_entries)
            .where(ledger_entries.c.effective_at <= as_of)
        ).scalar_one()
    )
    return RebuildSummary(
        as_of=as_of,
        customers=int(totals[0]),
        entries=entries,
        balance=int(totals[1]),
        pending=int(totals[2]),
        vip=int(totals[3]),
        tiers=tiers,
        changes=changes,
    )


def stored_summary(conn: Connection, as_of: datetime) -> RebuildSummary:
    return summarise(conn, ledger_projections, as_of, 0)


def rebuild_projections(
    conn: Connection, program: Program, *, now: datetime, cause: str = "ledger rebuild"
) -> RebuildSummary:
    """Recompute every stored projection from the entries as of `now`, in the database.

    Tier and VIP values that differ from the stored ones get a new version and a history row
    (the caller turns `changed_since` into outbound changes). `next_change_at` is kept: it
    depends on the entries, which a projection rebuild does not change."""
    staging = _staging_table()
    tune(conn)
    staging.drop(conn, checkfirst=True)
    staging.create(conn)
    conn.execute(
        insert(staging).from_select(list(_STAGING_COLUMNS), projection_query(program, now))
    )
    # customers the query does not list (only events that earn nothing) get the empty state
    empty = fold(program, (), as_of=now)
    zero = literal(0, BigId)
    conn.execute(
        insert(staging).from_select(
            list(_STAGING_COLUMNS),
            select(
                ledger_projections.c.customer_id,
                zero,
                zero,
                zero,
                zero,
                zero,
                literal(empty.tier, String(64)),
                literal(empty.vip, Boolean),
                null(),
                zero,
                null(),
                zero,
            ).where(ledger_projections.c.customer_id.not_in(select(staging.c.customer_id))),
        )
    )
    old = ledger_projections.c
    new = staging.c
    version = micros(now)
    differs_tier = or_(
        old.tier.is_(None) != new.tier.is_(None), func.coalesce(old.tier, "") != new.tier
    )
    differs_vip = old.is_vip != new.is_vip
    base = select(new.customer_id).join(ledger_projections, old.customer_id == new.customer_id)
    for attribute, differs, value, previous, reason in (
        ("tier", differs_tier, new.tier, old.tier, "tier recomputed by a ledger rebuild"),
        (
            "is_vip",
            differs_vip,
            case((new.is_vip == true(), "true"), else_="false"),
            case((old.is_vip == true(), "true"), else_="false"),
            "VIP recomputed by a ledger rebuild",
        ),
    ):
        conn.execute(
            insert(ledger_attribute_history).from_select(
                [
                    "customer_id",
                    "attribute",
                    "value",
                    "previous",
                    "version",
                    "effective_at",
                    "reason",
                    "cause",
                ],
                base.add_columns(
                    literal(attribute),
                    value,
                    previous,
                    func.max(old.version + 1, literal(version))
                    if conn.dialect.name == "sqlite"
                    else func.greatest(old.version + 1, literal(version)),
                    literal(now, UtcDateTime),
                    literal(reason),
                    literal(cause),
                ).where(differs),
            )
        )
    changed = int(
        conn.execute(
            select(func.count())
            .select_from(staging.join(ledger_projections, old.customer_id == new.customer_id))
            .where(or_(differs_tier, differs_vip))
        ).scalar_one()
    )
    # keep versions strictly increasing for changed customers, and next_change_at
    greatest = func.max if conn.dialect.name == "sqlite" else func.greatest
    keep = (
        select(
            new.customer_id,
            case(
                (or_(differs_tier, differs_vip), greatest(old.version + 1, version)),
                else_=old.version,
            ).label("version"),
            old.next_change_at,
        )
        .join(ledger_projections, old.customer_id == new.customer_id)
        .subquery("keep")
    )
    carried = Table(
        "ledger_rebuild_carried",
        MetaData(),
        Column("customer_id", BigId, primary_key=True, autoincrement=False),
        Column("version", BigId),
        Column("next_change_at", UtcDateTime),
        prefixes=["TEMPORARY"],
    )
    carried.drop(conn, checkfirst=True)
    carried.create(conn)
    conn.execute(
        insert(carried).from_select(["customer_id", "version", "next_change_at"], select(keep))
    )
    conn.execute(delete(ledger_projections))
    conn.execute(
        insert(ledger_projections).from_select(
            [*_STAGING_COLUMNS, "version", "as_of", "next_change_at", "updated_at"],
            select(
                *[new[name] for name in _STAGING_COLUMNS],
                func.coalesce(carried.c.version, version),
                literal(now, UtcDateTime),
                carried.c.next_change_at,
                literal(now, UtcDateTime),
            ).select_from(staging.outerjoin(carried, carried.c.customer_id == new.customer_id)),
        )
    )
    carried.drop(conn)
    staging.drop(conn)  # a failed run rolls back; temp tables also die with the session
    return summarise(conn, ledger_projections, now, changed)


def projections_as_of(conn: Connection, program: Program, as_of: datetime) -> Any:
    """Time travel without writing: the projection query as a subquery to read or summarise.

    Lists the customers with an entry, a held event, a manual flag or a platform record by then."""
    tune(conn)
    return projection_query(program, as_of).subquery("as_of")


def history_by_cause(conn: Connection, cause: str) -> list[HistoryRow]:
    """The history rows one run wrote (a rebuild names itself in `cause`)."""
    h = ledger_attribute_history.c
    stmt = select(ledger_attribute_history).where(h.cause == cause).order_by(h.id)
    return [history_row(r) for r in conn.execute(stmt)]


def projection_rows(
    conn: Connection, program: Program, as_of: datetime | None
) -> list[dict[str, Any]]:
    """Per-customer projections: the stored ones (as_of None) or computed as of an instant."""
    if as_of is None:
        stmt: Any = select(ledger_projections).order_by(ledger_projections.c.customer_id)
    else:
        tune(conn)
        sub = projection_query(program, as_of).subquery("rows")
        stmt = select(sub).order_by(sub.c.customer_id)
    return [dict(r._mapping) for r in conn.execute(stmt)]
