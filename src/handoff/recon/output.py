"""Writing a run to `--out DIR`: findings (CSV and JSON Lines), corrections, summary, report.

Everything is written into a fresh directory beside `DIR` and renamed into place at the end,
so `DIR` never holds half a run: it is either the previous run or the whole new one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from handoff.recon.engine import FINDING_COLUMNS, Result
from handoff.recon.report import html_report

CORRECTION_COLUMNS = (
    "target",
    "member_id",
    "contact_id",
    "id",
    "action",
    "points",
    "fields",
    "reason",
    "customer_id",
    "idempotency_key",
)


def _q(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def corrections_sql() -> str:
    return """
        SELECT target,
               CASE WHEN target = 'loyalty' THEN target_id END AS member_id,
               CASE WHEN target = 'crm' THEN target_id END AS contact_id,
               CASE WHEN target NOT IN ('loyalty', 'crm') THEN target_id END AS id,
               action, points, fields, reason, customer_id,
               'recon:' || target || ':' || target_id || ':' ||
               left(sha256(concat_ws('|', target, target_id, action,
                   coalesce(CAST(points AS VARCHAR), ''), coalesce(fields, ''), reason)), 20)
                   AS idempotency_key
        FROM corrections ORDER BY target, target_id
    """


def write_run(result: Result, out: Path) -> list[Path]:
    """Write the run's files to `out` atomically; returns the files written."""
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        con = result.con
        cols = ", ".join(FINDING_COLUMNS)
        con.execute(
            f"COPY (SELECT {cols} FROM findings ORDER BY class, finding_id) "
            f"TO {_q(tmp / 'findings.csv')} (HEADER, DELIMITER ',')"
        )
        con.execute(
            f"""
            COPY (
                SELECT f.finding_id, f.class, f.handoff, f.direction, f.customer_id,
                       f.member_id, f.contact_id, f.order_id, f.expected, f.actual, f.delta,
                       f.detail, f.ref, f.rule,
                       struct_pack(
                           erp := CASE WHEN o.order_id IS NOT NULL THEN struct_pack(
                               status := o.status, placed_at := o.placed_at,
                               trigger_at := o.trig, points := o.pts, net := o.net,
                               merchandise := o.merch) END,
                           loyalty_events := ev.events,
                           loyalty_earned := o.earn_pts, loyalty_reversed := o.rev_pts,
                           refunds := (SELECT list(struct_pack(ref := r.ref, at := r.t_at,
                                         points := r.take) ORDER BY r.t_at)
                                       FROM rv r WHERE r.order_id = f.order_id)
                       ) AS evidence
                FROM findings f LEFT JOIN oj o USING (order_id)
                LEFT JOIN (
                    SELECT e.order_id, list(struct_pack(event_id := e.event_id,
                           member_id := e.member_id, kind := e.kind, points := e.points,
                           occurred_at := e.occurred_at) ORDER BY e.occurred_at) AS events
                    FROM loyalty_events e
                    WHERE e.order_id IN (SELECT order_id FROM findings WHERE order_id IS NOT NULL)
                    GROUP BY 1
                ) ev USING (order_id)
                ORDER BY f.class, f.finding_id
            ) TO {_q(tmp / "findings.jsonl")} (FORMAT JSON)
            """
        )
        con.execute(
            f"COPY ({corrections_sql()}) TO {_q(tmp / 'corrections.csv')} (HEADER, DELIMITER ',')"
        )
        (tmp / "summary.json").write_text(
            json.dumps(result.summary, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        (tmp / "report.html").write_text(html_report(result), encoding="utf-8")
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return sorted(out.iterdir())
