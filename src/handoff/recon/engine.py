"""The offline reconciliation, set-based in DuckDB (contracts/reconcile.md).

`reconcile(files, program, ...)` loads the exports, links customers across systems, and builds
three tables: `findings` (one row per problem, the contract's columns plus `ref`, `rule` and the
evidence), `corrections` (the repair plan) and `cleared` (differences inside the timing
tolerance, not findings). The rules are `handoff.domain.recon.rules` evaluated per row in SQL;
tests hold the two to the same verdicts. Nothing here writes files: see `handoff.recon.output`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from handoff.domain.ledger.program import Program
from handoff.domain.money import exponent
from handoff.domain.recon.rules import rate_fraction
from handoff.recon.inputs import DESTINATIONS, Loaded, load_all
from handoff.recon.linking import LinkOptions, LinkReport, link, norm_phone_sql

LOYALTY_CLASSES_SQL = (
    "('missing','timing','value','premature','unreversed','duplicate','identity','drift')"
)


@dataclass
class Options:
    as_of: datetime | None = None
    memory_limit: str | None = None  # e.g. "1GB": DuckDB spills beyond it
    threads: int | None = None
    temp_dir: Path | None = None
    link: LinkOptions = field(default_factory=LinkOptions)


@dataclass
class Result:
    con: duckdb.DuckDBPyConnection
    loaded: Loaded
    program: Program
    as_of: datetime
    link: LinkReport
    timings: dict[str, float]
    summary: dict[str, Any]


def _q(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ts(moment: datetime) -> str:
    return f"TIMESTAMPTZ {_q(moment.astimezone(UTC).isoformat())}"


class _Sql:
    """SQL fragments for the program's rules (the same arithmetic as ledger.rules)."""

    def __init__(self, program: Program, as_of: datetime) -> None:
        self.p = program
        self.as_of = _ts(as_of)
        self.tol = int(program.tolerance.total_seconds())
        self.scale = 10 ** exponent(program.currency)

    def basis(self) -> str:
        p = self.p
        if p.basis == "net_merchandise":
            expr = "subtotal - coalesce(discount, 0) - coalesce(gift_card, 0)"
        else:
            expr = "subtotal - coalesce(gift_card, 0)"
        if p.include_tax:
            expr += " + coalesce(tax, 0)"
        if p.include_shipping:
            expr += " + coalesce(shipping, 0)"
        return f"greatest({expr}, 0)"

    @staticmethod
    def merchandise() -> str:
        return "greatest(subtotal - coalesce(discount, 0) - coalesce(gift_card, 0), 0)"

    def trigger(self) -> str:
        if self.p.trigger == "paid":
            return (
                "CASE WHEN paid_at IS NOT NULL THEN paid_at "
                "WHEN status IN ('paid', 'fulfilled') THEN placed_at END"
            )
        return (
            "CASE WHEN fulfilled_at IS NOT NULL THEN fulfilled_at "
            "WHEN status = 'fulfilled' THEN coalesce(paid_at, placed_at) END"
        )

    def _round(self, num: str, den: int) -> str:
        if self.p.rounding == "floor":
            return f"(({num}) // {den})"
        if self.p.rounding == "ceil":
            return f"((({num}) + {den - 1}) // {den})"
        return f"((2 * ({num}) + {den}) // {2 * den})"

    def points(self, earning: str, at: str) -> str:
        """Points on `earning` minor units at time `at` (rate changes, rounding once)."""
        p = self.p
        n0, d0 = _base_fraction(p)
        expr = self._round(f"{earning} * {n0}", d0)
        for change in p.rate_changes:
            n, d = rate_fraction(p, change.effective_from)
            expr = (
                f"CASE WHEN {at} >= {_ts(change.effective_from)} THEN "
                f"{self._round(f'{earning} * {n}', d)} ELSE {expr} END"
            )
        return expr

    def earns(self) -> str:
        cond = f"currency = {_q(self.p.currency)}"
        if self.p.earn_channels is not None:
            allowed = ", ".join(_q(c) for c in self.p.earn_channels) or "NULL"
            cond += f" AND coalesce(channel, '') IN ({allowed})"
        return cond

    def tier(self, value: str) -> str:
        table = self.p.tier_thresholds()
        expr = _q(table[0][0])
        for name, threshold in table[1:]:
            expr = f"CASE WHEN {value} >= {threshold} THEN {_q(name)} ELSE {expr} END"
        return expr

    def money(self, minor: str) -> str:
        """Minor units as a decimal string in major units ("12.50")."""
        exp = exponent(self.p.currency)
        return f"CAST(CAST({minor} AS DECIMAL(18,{exp})) / {self.scale} AS DECIMAL(18,{exp}))"

    def vip(self, tier: str) -> str:
        names = ", ".join(_q(t) for t in self.p.vip_tiers) or "NULL"
        return f"coalesce({tier} IN ({names}), false)"


def _base_fraction(program: Program) -> tuple[int, int]:
    from handoff.domain.ledger.rules import ratio

    n, d = ratio(program.points_per_unit)
    return n, d * 10 ** exponent(program.currency)


def _connect(options: Options) -> duckdb.DuckDBPyConnection:
    config: dict[str, Any] = {}
    if options.memory_limit:
        config["memory_limit"] = options.memory_limit
    if options.threads:
        config["threads"] = options.threads
    if options.temp_dir is not None:
        config["temp_directory"] = str(options.temp_dir)
    con = duckdb.connect(":memory:", config=config)
    con.execute("SET TimeZone = 'UTC'")
    if options.memory_limit:
        con.execute("SET preserve_insertion_order = false")
    return con


def _max_time(con: duckdb.DuckDBPyConnection, loaded: Loaded) -> datetime:
    parts = [
        "SELECT max(greatest(placed_at, coalesce(paid_at, placed_at), "
        "coalesce(fulfilled_at, placed_at), coalesce(cancelled_at, placed_at))) AS t FROM orders"
    ]
    if loaded.has("refunds"):
        parts.append("SELECT max(refunded_at) FROM refunds")
    if loaded.has("loyalty_events"):
        parts.append("SELECT max(occurred_at) FROM loyalty_events")
    row = con.execute(f"SELECT max(t) FROM ({' UNION ALL '.join(parts)})").fetchone()
    moment = row[0] if row else None
    if moment is None:
        return datetime.now(UTC)
    found: datetime = moment.astimezone(UTC)
    return found


def reconcile(
    files: Mapping[str, Path],
    program: Program,
    options: Options | None = None,
) -> Result:
    """Load, link and classify; the result's connection holds every table."""
    options = options or Options()
    timings: dict[str, float] = {}
    start = time.perf_counter()
    con = _connect(options)
    loaded = load_all(con, files, currency=program.currency)
    timings["load"] = time.perf_counter() - start
    as_of = (options.as_of or _max_time(con, loaded)).astimezone(UTC)
    mark = time.perf_counter()
    report = link(con, loaded, options.link, program.currency)
    timings["link"] = time.perf_counter() - mark
    mark = time.perf_counter()
    sql = _Sql(program, as_of)
    _ensure_optional_tables(con, loaded)
    _orders(con, sql)
    _loyalty(con, loaded, sql)
    timings["classify"] = time.perf_counter() - mark
    mark = time.perf_counter()
    _people(con, loaded, sql)
    _profiles_crm_flags(con, loaded, sql)
    _corrections(con, loaded, sql)
    timings["plan"] = time.perf_counter() - mark
    summary = _summary(con, loaded, program, as_of, report)
    timings["total"] = time.perf_counter() - start
    summary["timings"] = {k: round(v, 3) for k, v in timings.items()}
    return Result(con, loaded, program, as_of, report, timings, summary)


def _ensure_optional_tables(con: duckdb.DuckDBPyConnection, loaded: Loaded) -> None:
    """Empty stand-ins for absent files, so every query can name every table."""
    if not loaded.has("refunds"):
        con.execute(
            "CREATE OR REPLACE TABLE refunds (refund_id VARCHAR, order_id VARCHAR, "
            "refunded_at TIMESTAMPTZ, amount BIGINT)"
        )
    if not loaded.has("loyalty_events"):
        con.execute(
            "CREATE OR REPLACE TABLE loyalty_events (event_id VARCHAR, member_id VARCHAR, "
            "kind VARCHAR, points BIGINT, occurred_at TIMESTAMPTZ, order_id VARCHAR, "
            "email VARCHAR, reason VARCHAR)"
        )
    if not loaded.has("loyalty_members"):
        con.execute(
            "CREATE OR REPLACE TABLE loyalty_members (member_id VARCHAR, points_balance BIGINT, "
            "email VARCHAR, phone VARCHAR, first_name VARCHAR, last_name VARCHAR, zip VARCHAR, "
            "tier VARCHAR, customer_id VARCHAR, created_at TIMESTAMPTZ)"
        )
    if not loaded.has("crm_contacts"):
        con.execute(
            "CREATE OR REPLACE TABLE crm_contacts (contact_id VARCHAR, email VARCHAR, "
            "phone VARCHAR, first_name VARCHAR, last_name VARCHAR, zip VARCHAR, is_vip BOOLEAN, "
            "tier VARCHAR, lifetime_spend BIGINT, points_balance BIGINT, updated_at TIMESTAMPTZ)"
        )


FINDING_COLUMNS = (
    "finding_id",
    "class",
    "handoff",
    "direction",
    "customer_id",
    "member_id",
    "contact_id",
    "order_id",
    "expected",
    "actual",
    "delta",
    "detail",
    "ref",
    "rule",
)


def _orders(con: duckdb.DuckDBPyConnection, s: _Sql) -> None:
    """Per order: trigger, the rules' points, expected reversals and net, spend."""
    con.execute(
        f"""
        CREATE OR REPLACE TABLE ox AS
        SELECT order_id, customer_id, channel, status, placed_at, cancelled_at,
               {s.merchandise()} AS merch,
               trig,
               CASE WHEN {s.earns()} THEN {s.points(s.basis(), "coalesce(trig, placed_at)")}
                    ELSE 0 END AS pts,
               trig IS NOT NULL AND trig <= {s.as_of} AS triggered
        FROM (SELECT *, {s.trigger()} AS trig FROM orders)
        """
    )
    proportional = s.p.partial_refunds == "proportional"
    partial = "(r.pts * r.counted) // r.merch" if proportional else "0"
    con.execute(
        f"""
        CREATE OR REPLACE TABLE rv AS
        WITH base AS (
            SELECT f.refund_id AS ref, f.order_id, f.refunded_at AS t_at,
                   greatest(coalesce(f.amount, 0), 0) AS amount, o.pts, o.merch
            FROM refunds f JOIN ox o USING (order_id)
            WHERE f.refunded_at <= {s.as_of} AND o.triggered
        ),
        cum AS (
            SELECT *, sum(amount) OVER w AS cum FROM base
            WINDOW w AS (PARTITION BY order_id ORDER BY t_at, ref ROWS UNBOUNDED PRECEDING)
        ),
        r AS (
            SELECT *, least(cum, merch) - least(cum - amount, merch) AS counted,
                   least(cum, merch) >= merch AS completes FROM cum
        ),
        p AS (
            SELECT *,
                   CASE WHEN merch <= 0 OR counted <= 0 OR pts <= 0 THEN 0 ELSE {partial} END
                   AS part FROM r
        ),
        t AS (
            SELECT *, coalesce(sum(part) OVER (PARTITION BY order_id ORDER BY t_at, ref
                      ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS taken_before
            FROM p
        )
        SELECT ref, order_id, t_at, counted AS amount,
               CASE WHEN merch <= 0 OR counted <= 0 THEN 0
                    WHEN completes THEN greatest(pts - taken_before, 0)
                    ELSE least(part, greatest(pts - taken_before, 0)) END AS take
        FROM t
        """
    )
    con.execute(
        f"""
        INSERT INTO rv
        SELECT 'cancel:' || o.order_id, o.order_id, o.cancelled_at,
               greatest(o.merch - least(coalesce(x.amount, 0), o.merch), 0),
               greatest(o.pts - coalesce(x.take, 0), 0)
        FROM ox o LEFT JOIN (SELECT order_id, sum(amount) AS amount, sum(take) AS take
                             FROM rv GROUP BY 1) x USING (order_id)
        WHERE o.status = 'cancelled' AND o.cancelled_at IS NOT NULL
          AND o.cancelled_at <= {s.as_of} AND o.triggered
        """
    )
    con.execute(
        """
        CREATE OR REPLACE TABLE ox_exp AS
        SELECT o.*, coalesce(x.take, 0) AS rev_take, coalesce(x.amount, 0) AS rev_amount,
               CASE WHEN o.triggered THEN o.pts - coalesce(x.take, 0) ELSE 0 END AS net,
               CASE WHEN o.triggered THEN greatest(o.merch - coalesce(x.amount, 0), 0) ELSE 0 END
               AS spend
        FROM ox o LEFT JOIN (SELECT order_id, sum(take) AS take, sum(amount) AS amount
                             FROM rv GROUP BY 1) x USING (order_id)
        """
    )


def _loyalty(con: duckdb.DuckDBPyConnection, loaded: Loaded, s: _Sql) -> None:
    """The loyalty platform's events per order, joined to the expectation; order findings."""
    con.execute(
        f"""
        CREATE OR REPLACE TABLE lo AS
        SELECT order_id,
               count(*) FILTER (WHERE kind = 'earn') AS n_earn,
               coalesce(sum(points) FILTER (WHERE kind = 'earn'), 0) AS earn_pts,
               min(occurred_at) FILTER (WHERE kind = 'earn') AS first_at,
               arg_min(points, occurred_at) FILTER (WHERE kind = 'earn') AS first_pts,
               arg_min(member_id, occurred_at) FILTER (WHERE kind = 'earn') AS first_member,
               count(*) FILTER (WHERE kind = 'reverse') AS n_rev,
               coalesce(sum(points) FILTER (WHERE kind = 'reverse'), 0) AS rev_pts
        FROM loyalty_events
        WHERE order_id IS NOT NULL AND occurred_at <= {s.as_of}
        GROUP BY order_id
        """
    )
    first_channel = "SELECT customer_id, channel FROM erp_cust"
    con.execute(
        f"""
        CREATE OR REPLACE TABLE oj AS
        SELECT e.*, coalesce(l.n_earn, 0) AS n_earn, coalesce(l.earn_pts, 0) AS earn_pts,
               l.first_at, l.first_pts, l.first_member, coalesce(l.n_rev, 0) AS n_rev,
               coalesce(l.rev_pts, 0) AS rev_pts,
               cm.member_id AS cust_member, cm.member_created_at,
               CASE fc.channel WHEN 'pos' THEN 'pos->loyalty'
                    WHEN 'online' THEN 'storefront->loyalty' ELSE 'erp->loyalty' END
                   AS profile_handoff
        FROM ox_exp e LEFT JOIN lo l USING (order_id)
        LEFT JOIN cust_member cm USING (customer_id)
        LEFT JOIN ({first_channel}) fc USING (customer_id)
        """
    )
    tol = f"INTERVAL {s.tol} SECOND"
    trig = f"'order.{s.p.trigger}'"
    judged = "true" if loaded.has("loyalty_events") else "false"
    con.execute(
        f"""
        CREATE OR REPLACE TABLE order_findings AS
        -- missing: triggered, earns, no earn event, older than the tolerance
        SELECT 'missing' AS class,
               CASE WHEN cust_member IS NULL OR member_created_at > trig THEN profile_handoff
                    ELSE 'erp->loyalty' END AS handoff,
               order_id, order_id AS ref, customer_id, cust_member AS member_id,
               net AS expected, rev_pts AS actual,
               {trig} || ' at ' || strftime(trig, '%Y-%m-%dT%H:%M:%SZ') || ', no earn event'
                   AS rule,
               CASE WHEN cust_member IS NULL THEN 'the purchase never reached loyalty: the '
                         || 'customer has no member'
                    WHEN member_created_at > trig THEN 'the purchase reached loyalty before '
                         || 'its member existed'
                    ELSE 'the purchase event never reached the loyalty platform' END AS detail
        FROM oj WHERE {judged} AND triggered AND pts > 0 AND n_earn = 0
              AND {s.as_of} - trig > {tol}
        UNION ALL
        -- premature: earned before the trigger, or on an order that never reached it
        SELECT 'premature', 'erp->loyalty', order_id, order_id, customer_id, first_member,
               CASE WHEN triggered THEN pts ELSE 0 END, first_pts,
               'earn before ' || {trig},
               'earned at ' || strftime(first_at, '%Y-%m-%dT%H:%M:%SZ') || '; ' ||
               CASE WHEN triggered THEN {trig} || ' at ' || strftime(trig, '%Y-%m-%dT%H:%M:%SZ')
                    ELSE 'never reached ' || {trig} || ' (status ' || status || ')' END
        FROM oj WHERE n_earn > 0 AND (NOT triggered OR first_at < trig)
        UNION ALL
        -- timing: the first earn came later than the tolerance after the trigger
        SELECT 'timing', 'erp->loyalty', order_id, order_id, customer_id, first_member,
               pts, first_pts, 'earn within {s.p.timing_tolerance} of ' || {trig},
               'lag ' || CAST(first_at - trig AS VARCHAR)
        FROM oj WHERE n_earn > 0 AND triggered AND first_at >= trig AND first_at - trig > {tol}
        UNION ALL
        SELECT 'duplicate', 'erp->loyalty', order_id, order_id, customer_id, first_member,
               first_pts, earn_pts, 'one earn per order', CAST(n_earn AS VARCHAR) || ' earn events'
        FROM oj WHERE n_earn > 1
        UNION ALL
        SELECT 'value', 'erp->loyalty', order_id, order_id, customer_id, first_member,
               pts, first_pts, 'points = the rules on the earning basis',
               'earned ' || CAST(first_pts AS VARCHAR) || ' where the rules give '
               || CAST(pts AS VARCHAR)
        FROM oj WHERE n_earn > 0 AND first_pts <> pts
        UNION ALL
        SELECT 'identity', 'erp->loyalty', order_id, order_id, customer_id, first_member,
               0, earn_pts, 'earn on the ordering customer''s member',
               'landed on member ' || first_member || '; customer ' || customer_id
               || '''s member is ' || cust_member
        FROM oj WHERE n_earn > 0 AND cust_member IS NOT NULL AND first_member <> cust_member
        """
    )
    # unreversed: per order, expected reversals (+1) and reverse events (-1) in time order; a
    # reverse event matches the oldest open reversal (FIFO), so the unmatched ones are the last
    # K, K = final running sum floored at zero (docs/reconciliation.md)
    con.execute(
        f"""
        CREATE OR REPLACE TABLE rv_match AS
        WITH want AS (
            SELECT r.order_id, r.ref, r.t_at, r.take FROM rv r JOIN oj o USING (order_id)
            WHERE r.take > 0 AND o.n_earn > 0
        ),
        seq AS (
            SELECT order_id, t_at, 0 AS side, ref AS k, 1 AS step FROM want
            UNION ALL
            SELECT e.order_id, e.occurred_at, 1, e.event_id, -1 FROM loyalty_events e
            WHERE e.kind = 'reverse' AND e.occurred_at <= {s.as_of}
              AND e.order_id IN (SELECT order_id FROM want)
        ),
        run AS (
            SELECT order_id, sum(step) OVER w AS s FROM seq
            WINDOW w AS (PARTITION BY order_id ORDER BY t_at, side, k ROWS UNBOUNDED PRECEDING)
        ),
        k AS (
            SELECT order_id, arg_max(s, rn) - least(0, min(s)) AS open
            FROM (SELECT *, row_number() OVER (PARTITION BY order_id) AS rn FROM run)
            GROUP BY order_id
        ),
        ranked AS (
            SELECT w.*, row_number() OVER (PARTITION BY w.order_id ORDER BY w.t_at DESC, w.ref DESC)
                AS from_end FROM want w
        )
        SELECT r.order_id, r.ref, r.t_at, r.take, r.from_end <= k.open AS unmatched
        FROM ranked r JOIN k USING (order_id)
        """
    )
    con.execute(
        f"""
        INSERT INTO order_findings
        SELECT 'unreversed', 'erp->loyalty', m.order_id, m.ref, o.customer_id, o.first_member,
               -m.take, 0, 'one reverse event per refund or cancellation',
               m.ref || ' at ' || strftime(m.t_at, '%Y-%m-%dT%H:%M:%SZ') || ' never deducted'
        FROM rv_match m JOIN oj o USING (order_id)
        WHERE m.unmatched AND {s.as_of} - m.t_at > {tol}
        """
    )
    con.execute(
        f"""
        CREATE OR REPLACE TABLE cleared AS
        SELECT 'earn' AS kind, order_id, order_id AS ref, cust_member AS member_id, net AS points,
               trig AS t_at
        FROM oj WHERE {judged} AND triggered AND pts > 0 AND n_earn = 0
              AND {s.as_of} - trig <= {tol}
        UNION ALL
        SELECT 'reversal', m.order_id, m.ref, o.first_member, -m.take, m.t_at
        FROM rv_match m JOIN oj o USING (order_id)
        WHERE m.unmatched AND {s.as_of} - m.t_at <= {tol}
        """
    )


def _people(con: duckdb.DuckDBPyConnection, loaded: Loaded, s: _Sql) -> None:
    """Expected state per member, per customer and per person."""
    window_start = "(SELECT min(placed_at) FROM orders)"
    balances_current = "true"
    if loaded.has("loyalty_events"):
        balances_current = (
            f"{s.as_of} >= coalesce((SELECT max(occurred_at) FROM loyalty_events), {s.as_of})"
        )
    has_members = "true" if loaded.has("loyalty_members") else "false"
    # every member the platform has (members file, else the ids in its events)
    con.execute(
        """
        CREATE OR REPLACE TABLE mem_all AS
        SELECT member_id, max(points_balance) AS points_balance, max(tier) AS tier,
               bool_or(listed) AS listed
        FROM (
            SELECT member_id, points_balance, tier, true AS listed FROM loyalty_members
            UNION ALL
            SELECT DISTINCT member_id, NULL, NULL, false FROM loyalty_events
        ) GROUP BY member_id
        """
    )
    con.execute(
        f"""
        CREATE OR REPLACE TABLE mem_events AS
        SELECT e.member_id,
               coalesce(sum(e.points), 0) AS s_events,
               coalesce(sum(e.points) FILTER (WHERE o.order_id IS NOT NULL), 0) AS s_known,
               coalesce(sum(e.points) FILTER (WHERE o.order_id IS NULL AND e.order_id IS NULL
                   AND e.reason LIKE 'handoff%'), 0) AS s_handoff,
               coalesce(sum(e.points) FILTER (WHERE o.order_id IS NULL AND e.order_id IS NOT NULL
                   AND e.occurred_at >= {window_start}), 0) AS s_unknown,
               count(*) FILTER (WHERE o.order_id IS NULL AND e.order_id IS NOT NULL
                   AND e.occurred_at >= {window_start}) AS n_unknown,
               list(e.reason) FILTER (WHERE e.reason LIKE 'handoff%') AS handoff_reasons
        FROM loyalty_events e LEFT JOIN (SELECT order_id FROM orders) o
             ON o.order_id = e.order_id
        WHERE e.occurred_at <= {s.as_of}
        GROUP BY e.member_id
        """
    )
    # the rules' points per member: each order's net on its customer's member, less what is
    # still in flight (cleared), so the plan never pays twice
    con.execute(
        """
        CREATE OR REPLACE TABLE mem_expected AS
        SELECT cm.member_id, sum(x.net) AS owed, sum(x.spend) AS spend
        FROM ox_exp x JOIN cust_member cm USING (customer_id) GROUP BY 1
        """
    )
    con.execute(
        """
        CREATE OR REPLACE TABLE mem_inflight AS
        SELECT cm.member_id, sum(c.points) AS points
        FROM cleared c JOIN ox_exp x USING (order_id) JOIN cust_member cm USING (customer_id)
        GROUP BY 1
        """
    )
    con.execute(
        f"""
        CREATE OR REPLACE TABLE mem_state AS
        SELECT m.member_id, m.tier, m.listed,
               coalesce(v.s_events, 0) AS s_events,
               coalesce(v.s_unknown, 0) AS s_unknown, coalesce(v.n_unknown, 0) AS n_unknown,
               CASE WHEN m.listed AND {has_members} AND {balances_current}
                    THEN m.points_balance ELSE coalesce(v.s_events, 0) END AS reported,
               coalesce(x.owed, 0) - coalesce(f.points, 0)
                 + coalesce(v.s_events, 0) - coalesce(v.s_known, 0) - coalesce(v.s_handoff, 0)
                 - coalesce(v.s_unknown, 0) AS expected,
               coalesce(x.owed, 0)
                 + coalesce(v.s_events, 0) - coalesce(v.s_known, 0) - coalesce(v.s_handoff, 0)
                 - coalesce(v.s_unknown, 0) AS expected_all,
               coalesce(x.spend, 0) AS spend,
               v.handoff_reasons
        FROM mem_all m LEFT JOIN mem_events v USING (member_id)
        LEFT JOIN mem_expected x USING (member_id) LEFT JOIN mem_inflight f USING (member_id)
        """
    )
    judged = "true" if loaded.has("loyalty_members") or loaded.has("loyalty_events") else "false"
    con.execute(
        f"""
        CREATE OR REPLACE TABLE drift_findings AS
        SELECT 'drift' AS class, 'erp->loyalty' AS handoff, NULL::VARCHAR AS order_id,
               member_id AS ref, cm.customer_id, member_id,
               s_events - s_unknown AS expected, reported AS actual,
               'balance = the sum of the member''s own events' AS rule,
               CASE WHEN reported <> s_events THEN 'balance ' || CAST(reported AS VARCHAR)
                    || ' but its events sum to ' || CAST(s_events AS VARCHAR) ELSE '' END
               || CASE WHEN n_unknown > 0 THEN (CASE WHEN reported <> s_events THEN '; ' ELSE ''
                    END) || CAST(n_unknown AS VARCHAR) || ' event(s) for orders the ERP does '
                    || 'not have (' || CAST(s_unknown AS VARCHAR) || ' points)' ELSE '' END
               AS detail
        FROM mem_state LEFT JOIN (SELECT member_id, min(customer_id) AS customer_id
                                  FROM cust_member GROUP BY 1) cm USING (member_id)
        WHERE {judged} AND (reported <> s_events OR s_unknown <> 0)
        """
    )
    # the members a contact mirrors: those of the customers it was created from (the CRM
    # dedupes on exact email; without an email, its person's customers with its phone), else
    # those of its person
    con.execute(
        f"""
        CREATE OR REPLACE TABLE contact_members AS
        WITH by_phone AS (
            SELECT c.contact_id, lc.id AS customer_id FROM crm_contacts c
            JOIN link_person l ON l.system = 'crm' AND l.id = c.contact_id
            JOIN link_person lc ON lc.system = 'erp' AND lc.person = l.person
            JOIN erp_cust o ON o.customer_id = lc.id
            WHERE c.contact_id NOT IN (SELECT contact_id FROM contact_email_cust)
              AND {norm_phone_sql("o.phone")} = {norm_phone_sql("c.phone")}
        )
        SELECT x.contact_id, cm.member_id FROM contact_email_cust x
        JOIN cust_member cm USING (customer_id)
        UNION
        SELECT x.contact_id, cm.member_id FROM by_phone x JOIN cust_member cm USING (customer_id)
        UNION
        SELECT c.contact_id, lm.id FROM crm_contacts c
        JOIN link_person l ON l.system = 'crm' AND l.id = c.contact_id
        JOIN link_person lm ON lm.system = 'loyalty' AND lm.person = l.person
        WHERE c.contact_id NOT IN (SELECT contact_id FROM contact_email_cust)
          AND c.contact_id NOT IN (SELECT contact_id FROM by_phone)
        """
    )
    # per person: spend over all of its customers, points over all of its members
    con.execute(
        f"""
        CREATE OR REPLACE TABLE person_state AS
        WITH cs AS (
            SELECT customer_id, sum(spend) AS spend FROM ox_exp GROUP BY 1
        ),
        ps AS (
            SELECT l.person, sum(cs.spend) AS spend FROM cs
            JOIN link_person l ON l.system = 'erp' AND l.id = cs.customer_id GROUP BY 1
        ),
        pm AS (
            SELECT l.person, sum(ms.expected_all) AS points FROM mem_state ms
            JOIN link_person l ON l.system = 'loyalty' AND l.id = ms.member_id GROUP BY 1
        ),
        -- a VIP tick is by hand unless the relay put it there: the relay ticks the tier the
        -- loyalty platform holds for the contact's members (the CRM's own tier may have been
        -- overwritten since); with the relay off (no loyalty fields) every tick is by hand
        relayed AS (
            SELECT cm.contact_id, bool_or({s.vip("ms.tier")}) AS vip FROM contact_members cm
            JOIN mem_state ms USING (member_id) WHERE ms.tier IS NOT NULL GROUP BY 1
        ),
        manual AS (
            SELECT l.person,
                   bool_or(c.is_vip AND NOT CASE
                       WHEN c.tier IS NULL AND c.points_balance IS NULL THEN false
                       ELSE coalesce(r.vip, {s.vip("c.tier")}) END) AS manual
            FROM crm_contacts c JOIN link_person l ON l.system = 'crm' AND l.id = c.contact_id
            LEFT JOIN relayed r ON r.contact_id = c.contact_id
            WHERE c.contact_id NOT IN (SELECT contact_id FROM contact_shared)
            GROUP BY 1
        )
        SELECT ps.person, ps.spend, coalesce(pm.points, 0) AS points,
               {s.tier("ps.spend")} AS tier,
               {s.vip(s.tier("ps.spend"))} OR coalesce(m.manual, false) AS vip,
               coalesce(m.manual, false) AS manual
        FROM ps LEFT JOIN pm USING (person) LEFT JOIN manual m USING (person)
        """
    )


def _profiles_crm_flags(con: duckdb.DuckDBPyConnection, loaded: Loaded, s: _Sql) -> None:
    tol = f"INTERVAL {s.tol} SECOND"
    loyalty_judged = loaded.has("loyalty_members")  # who has no member: only its list says
    crm_judged = loaded.has("crm_contacts")
    con.execute(
        f"""
        CREATE OR REPLACE TABLE profile_findings AS
        WITH cust AS (
            SELECT customer_id, first_at, channel FROM erp_cust
        ),
        has_contact AS (
            SELECT DISTINCT lc.id AS customer_id FROM link_person lc
            JOIN link_person lk ON lk.person = lc.person AND lk.system = 'crm'
            WHERE lc.system = 'erp'
            UNION SELECT customer_id FROM contact_email_cust
            UNION SELECT split_part(a, '|', 2) FROM link_review
                  WHERE a LIKE 'erp|%' AND b LIKE 'crm|%'
            UNION SELECT split_part(b, '|', 2) FROM link_review
                  WHERE b LIKE 'erp|%' AND a LIKE 'crm|%'
        )
        SELECT 'missing_profile' AS class,
               CASE c.channel WHEN 'pos' THEN 'pos->loyalty' WHEN 'online'
                    THEN 'storefront->loyalty' ELSE 'erp->loyalty' END AS handoff,
               NULL::VARCHAR AS order_id, 'loyalty:' || c.customer_id AS ref, c.customer_id,
               NULL::VARCHAR AS member_id, NULL::VARCHAR AS contact_id,
               'a loyalty member' AS expected, 'none' AS actual,
               'every ERP customer has a loyalty member' AS rule,
               'customer first seen ' || strftime(c.first_at, '%Y-%m-%dT%H:%M:%SZ')
               || ' has no loyalty member' AS detail
        FROM cust c WHERE {str(loyalty_judged).lower()}
              AND c.customer_id NOT IN (SELECT customer_id FROM cust_member)
              AND {s.as_of} - c.first_at > {tol}
        UNION ALL
        SELECT 'missing_profile',
               CASE c.channel WHEN 'pos' THEN 'pos->crm' WHEN 'online'
                    THEN 'storefront->crm' ELSE 'erp->crm' END,
               NULL, 'crm:' || c.customer_id, c.customer_id, NULL, NULL,
               'a CRM contact', 'none', 'every ERP customer has a CRM contact',
               'customer first seen ' || strftime(c.first_at, '%Y-%m-%dT%H:%M:%SZ')
               || ' has no CRM contact'
        FROM cust c WHERE {str(crm_judged).lower()}
              AND c.customer_id NOT IN (SELECT customer_id FROM has_contact)
              AND {s.as_of} - c.first_at > {tol}
        """
    )
    # CRM: a contact of one person, with customers; judged against the loyalty platform's
    # current values (the relay's job) and planned to the expected state
    members_have_tier = loaded.has("loyalty_members", "tier")
    tier_match = "coalesce(m.tier, '') = coalesce(c.tier, '')" if members_have_tier else "true"
    con.execute(
        f"""
        CREATE OR REPLACE TABLE crm_view AS
        WITH sync AS (
            SELECT x.contact_id, count(*) AS n_members,
                   bool_or(m.reported = c.points_balance AND {tier_match}) AS in_sync,
                   bool_or(m.reported = c.points_balance) AS points_sync
            FROM contact_members x JOIN mem_state m USING (member_id)
            JOIN crm_contacts c ON c.contact_id = x.contact_id
            GROUP BY 1
        )
        SELECT c.contact_id, c.tier, c.lifetime_spend, c.points_balance, c.is_vip,
               l.person, p.tier AS exp_tier, p.spend AS exp_spend, p.points AS exp_points,
               p.vip AS exp_vip, coalesce(y.n_members, 0) AS n_members, y.in_sync, y.points_sync,
               c.contact_id IN (SELECT contact_id FROM contact_shared) AS shared
        FROM crm_contacts c
        JOIN link_person l ON l.system = 'crm' AND l.id = c.contact_id
        LEFT JOIN person_state p ON p.person = l.person
        LEFT JOIN sync y ON y.contact_id = c.contact_id
        WHERE p.person IS NOT NULL OR y.n_members > 0
        """
    )
    against_loyalty = "true" if loyalty_judged else "false"
    con.execute(
        f"""
        CREATE OR REPLACE TABLE crm_findings AS
        SELECT 'crm_stale' AS class,
               CASE WHEN tier IS NULL AND points_balance IS NULL AND lifetime_spend IS NULL
                    THEN 'loyalty->crm'
                    WHEN {against_loyalty} AND coalesce(points_sync, false) THEN 'enrichment->crm'
                    ELSE 'loyalty->crm' END AS handoff,
               NULL::VARCHAR AS order_id, 'crm:' || contact_id AS ref, NULL::VARCHAR AS customer_id,
               NULL::VARCHAR AS member_id, contact_id,
               CASE WHEN shared OR exp_tier IS NULL THEN 'what the loyalty platform holds'
                    ELSE 'tier ' || exp_tier || ', points ' || CAST(exp_points AS VARCHAR)
                    || ', spend ' || CAST({s.money("exp_spend")} AS VARCHAR) END AS expected,
               'tier ' || coalesce(tier, '(blank)') || ', points '
                   || coalesce(CAST(points_balance AS VARCHAR), '(blank)') || ', spend '
                   || coalesce(CAST({s.money("lifetime_spend")} AS VARCHAR), '(blank)') AS actual,
               CASE WHEN {against_loyalty} THEN 'the CRM shows what the loyalty platform holds'
                    ELSE 'the CRM shows the expected state' END AS rule,
               CASE WHEN tier IS NULL AND points_balance IS NULL AND lifetime_spend IS NULL
                    THEN 'loyalty fields never relayed to the CRM'
                    WHEN {against_loyalty} AND coalesce(points_sync, false)
                    THEN 'points match the loyalty platform but the tier was overwritten'
                    ELSE 'the CRM''s loyalty fields differ from the loyalty platform' END AS detail
        FROM crm_view
        WHERE CASE WHEN {against_loyalty}
                   THEN n_members > 0 AND NOT coalesce(in_sync, false)
                   ELSE NOT shared AND exp_tier IS NOT NULL AND (coalesce(tier, '') <> exp_tier
                        OR coalesce(points_balance, -1) <> exp_points
                        OR coalesce(lifetime_spend, -1) <> exp_spend) END
        """
    )
    # flags: every destination record against its people's expected VIP
    parts = []
    for table, system in DESTINATIONS.items():
        if loaded.has(table):
            parts.append(
                f"SELECT '{system}' AS system, id, coalesce(is_vip, false) OR "
                f"coalesce(list_contains(list_transform(string_split(coalesce(tags, ''), ';'), "
                f"x -> upper(trim(x))), 'VIP'), false) AS shows, lower(trim(email)) AS em "
                f"FROM {table}"
            )
    if not parts:
        con.execute(
            "CREATE OR REPLACE TABLE flag_view (system VARCHAR, id VARCHAR, shows BOOLEAN, "
            "expected BOOLEAN, crm_says BOOLEAN, judged BOOLEAN, crm_present BOOLEAN)"
        )
    else:
        crm_present = "true" if crm_judged else "false"
        con.execute(
            f"""
            CREATE OR REPLACE TABLE flag_view AS
            WITH d AS ({" UNION ALL ".join(parts)}),
            -- the record's people: its identity cluster, and customers sharing its exact email
            dp AS (
                SELECT d.system, d.id, l.person FROM d
                JOIN link_person l ON l.system = d.system AND l.id = d.id
            ),
            crm_person AS (
                SELECT l.person, bool_or(coalesce(c.is_vip, false)) AS says FROM crm_contacts c
                JOIN link_person l ON l.system = 'crm' AND l.id = c.contact_id GROUP BY 1
            ),
            agg AS (
                SELECT dp.system, dp.id, bool_or(coalesce(p.vip, false)) AS expected,
                       bool_or(coalesce(cp.says, false)) AS crm_says,
                       bool_or(p.person IS NOT NULL OR cp.person IS NOT NULL) AS judged
                FROM dp LEFT JOIN person_state p USING (person)
                LEFT JOIN crm_person cp USING (person)
                GROUP BY 1, 2
            )
            SELECT d.system, d.id, d.shows, coalesce(a.expected, false) AS expected,
                   coalesce(a.crm_says, false) AS crm_says, coalesce(a.judged, false) AS judged,
                   {crm_present} AS crm_present
            FROM d LEFT JOIN agg a USING (system, id)
            """
        )
    con.execute(
        """
        CREATE OR REPLACE TABLE flag_findings AS
        SELECT 'flag' AS class,
               CASE WHEN NOT crm_present THEN 'crm->' || system
                    WHEN expected AND NOT crm_says THEN 'loyalty->crm'
                    ELSE 'crm->' || system END AS handoff,
               NULL::VARCHAR AS order_id, system || ':' || id AS ref,
               NULL::VARCHAR AS customer_id, NULL::VARCHAR AS member_id,
               NULL::VARCHAR AS contact_id,
               CAST(expected AS VARCHAR) AS expected, CAST(shows AS VARCHAR) AS actual,
               'VIP = tier in vip_tiers or ticked in the CRM' AS rule,
               CASE WHEN expected AND NOT crm_says AND crm_present
                    THEN 'the CRM does not show the VIP flag either'
                    WHEN expected THEN 'the CRM shows VIP; ' || system || ' does not'
                    ELSE system || ' shows VIP for a customer who is not one' END AS detail
        FROM flag_view WHERE judged AND shows <> expected
        """
    )


def _corrections(con: duckdb.DuckDBPyConnection, loaded: Loaded, s: _Sql) -> None:
    """Assemble `findings` and the repair plan `corrections`."""
    con.execute(
        f"""
        CREATE OR REPLACE TABLE findings AS
        WITH loyalty AS (
            SELECT class, handoff, order_id, ref, customer_id, member_id,
                   NULL::VARCHAR AS contact_id, CAST(expected AS VARCHAR) AS expected,
                   CAST(actual AS VARCHAR) AS actual, CAST(expected - actual AS VARCHAR) AS delta,
                   expected - actual AS d, rule, detail
            FROM (SELECT * FROM order_findings UNION ALL BY NAME SELECT * FROM drift_findings)
        ),
        other AS (
            SELECT class, handoff, order_id, ref, customer_id, member_id, contact_id,
                   expected, actual, NULL::VARCHAR AS delta, NULL::BIGINT AS d, rule, detail
            FROM (SELECT * FROM profile_findings UNION ALL SELECT * FROM crm_findings
                  UNION ALL SELECT * FROM flag_findings)
        ),
        allf AS (SELECT * FROM loyalty UNION ALL SELECT * FROM other)
        SELECT class || ':' || ref AS finding_id, class, handoff,
               CASE WHEN class IN {LOYALTY_CLASSES_SQL} AND d > 0 THEN 'loyalty_lower'
                    WHEN class IN {LOYALTY_CLASSES_SQL} AND d < 0 THEN 'loyalty_higher'
                    ELSE '' END AS direction,
               customer_id, member_id, contact_id, order_id, expected, actual, delta, detail,
               ref, rule, d
        FROM allf
        """
    )
    # repaired: a handoff adjustment that names the finding (applied by `reconcile apply`) and
    # a member whose balance is now what the rules say
    con.execute(
        """
        CREATE OR REPLACE TABLE repaired AS
        SELECT f.finding_id FROM findings f JOIN mem_state m USING (member_id)
        WHERE m.handoff_reasons IS NOT NULL AND m.expected = m.reported
          AND list_contains(list_transform(m.handoff_reasons, r -> position(f.finding_id IN r) > 0),
                            true)
        """
    )
    con.execute("DELETE FROM findings WHERE finding_id IN (SELECT finding_id FROM repaired)")
    con.execute(
        f"""
        CREATE OR REPLACE TABLE corr_loyalty AS
        WITH gap AS (SELECT member_id, expected - reported AS points FROM mem_state
                     WHERE expected <> reported),
        why AS (
            SELECT f.member_id, string_agg(f.finding_id, ';' ORDER BY f.finding_id) AS reason
            FROM findings f WHERE f.member_id IN (SELECT member_id FROM gap)
              AND f.class IN {LOYALTY_CLASSES_SQL}
            GROUP BY 1
        ),
        who AS (
            SELECT member_id, min(customer_id) AS customer_id FROM cust_member
            WHERE member_id IN (SELECT member_id FROM gap) GROUP BY 1
        )
        SELECT 'loyalty' AS target, g.member_id AS target_id, 'adjust_points' AS action,
               g.points, NULL::VARCHAR AS fields, w.reason, c.customer_id
        FROM gap g LEFT JOIN why w USING (member_id) LEFT JOIN who c USING (member_id)
        """
    )
    con.execute(
        f"""
        CREATE OR REPLACE TABLE corr_crm AS
        SELECT 'crm' AS target, v.contact_id AS target_id, 'set_fields' AS action,
               NULL::BIGINT AS points,
               to_json(struct_pack(tier := v.exp_tier,
                                   lifetime_spend := CAST({s.money("v.exp_spend")} AS VARCHAR),
                                   points_balance := v.exp_points,
                                   is_vip := v.exp_vip))::VARCHAR AS fields,
               coalesce(w.reason, '') AS reason,
               NULL::VARCHAR AS customer_id, v.person
        FROM crm_view v LEFT JOIN (
            SELECT contact_id, string_agg(finding_id, ';' ORDER BY finding_id) AS reason
            FROM findings WHERE contact_id IS NOT NULL GROUP BY 1
        ) w USING (contact_id)
        WHERE v.n_members > 0 AND NOT v.shared AND v.exp_tier IS NOT NULL
          AND (coalesce(v.tier, '') <> v.exp_tier
              OR coalesce(v.lifetime_spend, -1) <> v.exp_spend
              OR coalesce(v.points_balance, -1) <> v.exp_points
              OR coalesce(v.is_vip, false) <> v.exp_vip)
        """
    )
    con.execute(
        """
        CREATE OR REPLACE TABLE corrections AS
        SELECT target, target_id, action, points, fields, coalesce(reason, '') AS reason,
               customer_id
        FROM corr_loyalty
        UNION ALL
        SELECT target, target_id, action, points, fields,
               CASE WHEN corr_crm.reason = '' THEN coalesce(pr.reason, '') ELSE corr_crm.reason END,
               customer_id
        FROM corr_crm LEFT JOIN (
            SELECT l.person, string_agg(DISTINCT f.finding_id, ';' ORDER BY f.finding_id)
                   AS reason
            FROM findings f JOIN cust_member cm ON cm.member_id = f.member_id
            JOIN link_person l ON l.system = 'erp' AND l.id = cm.customer_id
            WHERE l.person IN (SELECT person FROM corr_crm WHERE reason = '')
            GROUP BY 1
        ) pr USING (person)
        UNION ALL
        SELECT v.system, v.id, 'set_fields', NULL, to_json(struct_pack(is_vip := v.expected))::VARCHAR,
               'flag:' || v.system || ':' || v.id, NULL
        FROM flag_view v WHERE v.judged AND v.shows <> v.expected
        """
    )
    del loaded


def _summary(
    con: duckdb.DuckDBPyConnection,
    loaded: Loaded,
    program: Program,
    as_of: datetime,
    report: LinkReport,
) -> dict[str, Any]:
    def counts(column: str) -> dict[str, int]:
        return {
            str(k): int(v)
            for k, v in con.execute(
                f"SELECT {column}, count(*) FROM findings GROUP BY 1 ORDER BY 2 DESC, 1"
            ).fetchall()
        }

    by_class_handoff: dict[str, dict[str, int]] = {}
    for cls, handoff, n in con.execute(
        "SELECT class, handoff, count(*) FROM findings GROUP BY 1, 2 ORDER BY 1, 2"
    ).fetchall():
        by_class_handoff.setdefault(cls, {})[handoff] = int(n)
    flags: dict[str, Any] = {}
    for system, judged, matched in con.execute(
        "SELECT system, count(*) FILTER (WHERE judged), "
        "count(*) FILTER (WHERE judged AND shows = expected) FROM flag_view GROUP BY 1 ORDER BY 1"
    ).fetchall():
        flags[system] = {
            "records": int(judged),
            "matching": int(matched),
            "match_rate": round(matched / judged, 4) if judged else None,
        }
    liab = con.execute(
        "SELECT coalesce(sum(expected_all), 0), coalesce(sum(reported), 0) FROM mem_state"
    ).fetchone() or (0, 0)
    owed_no_member = con.execute(
        "SELECT coalesce(sum(net), 0) FROM ox_exp WHERE customer_id NOT IN "
        "(SELECT customer_id FROM cust_member)"
    ).fetchone() or (0,)
    expected_points = int(liab[0]) + int(owed_no_member[0])
    value = _points_value(expected_points, program)
    corr = con.execute(
        "SELECT target, count(*), coalesce(sum(points), 0) FROM corrections GROUP BY 1 ORDER BY 1"
    ).fetchall()
    cleared = con.execute(
        "SELECT kind, count(*), coalesce(sum(points), 0) FROM cleared GROUP BY 1 ORDER BY 1"
    ).fetchall()
    total = con.execute("SELECT count(*) FROM findings").fetchone()
    repaired = con.execute("SELECT count(*) FROM repaired").fetchone()
    return {
        "as_of": as_of.isoformat().replace("+00:00", "Z"),
        "program": {
            "currency": program.currency,
            "points_per_unit": str(program.points_per_unit),
            "trigger": program.trigger,
            "timing_tolerance": program.timing_tolerance,
        },
        "inputs": {
            name: {"rows": rows, "file": str(loaded.files[name])}
            for name, rows in loaded.tables.items()
        },
        "systems_judged": sorted(loaded.tables),
        "findings": int(total[0]) if total else 0,
        "by_class": counts("class"),
        "by_handoff": counts("handoff"),
        "by_direction": {k or "none": v for k, v in counts("direction").items()},
        "by_class_and_handoff": by_class_handoff,
        "flag_sync": flags,
        "liability": {
            "expected_points": expected_points,
            "expected_value": value,
            "reported_points": int(liab[1]),
            "reported_value": _points_value(int(liab[1]), program),
            "owed_to_customers_without_member": int(owed_no_member[0]),
            "currency": program.currency,
        },
        "corrections": {t: {"rows": int(n), "points": int(p)} for t, n, p in corr},
        "in_flight": {k: {"count": int(n), "points": int(p)} for k, n, p in cleared},
        "repaired": int(repaired[0]) if repaired else 0,
        "identity": {
            "mode": report.mode,
            "records": report.records,
            "people": report.people,
            "customers_with_member": report.members_linked,
            "contacts_linked": report.contacts_linked,
        },
    }


def _points_value(points: int, program: Program) -> str:
    from decimal import Decimal

    value = Decimal(points) * program.point_value
    if program.breakage_rate is not None:
        value *= 1 - program.breakage_rate
    return f"{value.quantize(Decimal(10) ** -exponent(program.currency))}"
