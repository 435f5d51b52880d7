"""A self-contained HTML report: one file, inline CSS and SVG charts, nothing fetched to view it.

Charts are drawn here as plain SVG (bars and histograms need a few rectangles, not a library):
findings by class and by handoff, the distribution of the loyalty balance gaps the plan
corrects, and the lag between each order's trigger and its earn on the loyalty platform.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from handoff.recon.engine import Result

PALETTE = ("#2f6f9f", "#d0743c", "#5a9e5a", "#b04a5a", "#7d6bb0", "#c9a227", "#4a9aa8")


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def bar_chart(title: str, items: Sequence[tuple[str, int]], *, width: int = 560) -> str:
    """Horizontal bars, one per (label, value)."""
    if not items:
        return f"<figure><figcaption>{_e(title)}</figcaption><p class='muted'>none</p></figure>"
    row, label_w = 22, 170
    height = row * len(items) + 10
    top = max(v for _, v in items) or 1
    bars = []
    for i, (label, value) in enumerate(items):
        w = (width - label_w - 60) * value / top
        y = 5 + i * row
        bars.append(
            f"<text x='{label_w - 6}' y='{y + 15}' text-anchor='end'>{_e(label)}</text>"
            f"<rect x='{label_w}' y='{y + 3}' width='{w:.1f}' height='{row - 7}' "
            f"fill='{PALETTE[i % len(PALETTE)]}'><title>{_e(label)}: {value}</title></rect>"
            f"<text x='{label_w + w + 5:.1f}' y='{y + 15}'>{value}</text>"
        )
    return (
        f"<figure><figcaption>{_e(title)}</figcaption><svg role='img' width='{width}' "
        f"height='{height}' viewBox='0 0 {width} {height}'>{''.join(bars)}</svg></figure>"
    )


def histogram(
    title: str, buckets: Sequence[tuple[str, int]], *, width: int = 560, unit: str = ""
) -> str:
    """Vertical bars over ordered buckets."""
    if not buckets or not any(v for _, v in buckets):
        return f"<figure><figcaption>{_e(title)}</figcaption><p class='muted'>none</p></figure>"
    height, base = 220, 180
    n = len(buckets)
    slot = (width - 40) / n
    top = max(v for _, v in buckets) or 1
    out = []
    for i, (label, value) in enumerate(buckets):
        h = (base - 20) * value / top
        x = 30 + i * slot
        out.append(
            f"<rect x='{x + 2:.1f}' y='{base - h:.1f}' width='{slot - 4:.1f}' height='{h:.1f}' "
            f"fill='{PALETTE[0]}'><title>{_e(label)}{_e(unit)}: {value}</title></rect>"
            f"<text x='{x + slot / 2:.1f}' y='{base - h - 3:.1f}' text-anchor='middle' "
            f"class='small'>{value or ''}</text>"
            f"<text x='{x + slot / 2:.1f}' y='{base + 14}' text-anchor='middle' "
            f"class='small'>{_e(label)}</text>"
        )
    out.append(f"<line x1='28' y1='{base}' x2='{width - 8}' y2='{base}' stroke='#999'/>")
    return (
        f"<figure><figcaption>{_e(title)}</figcaption><svg role='img' width='{width}' "
        f"height='{height}' viewBox='0 0 {width} {height}'>{''.join(out)}</svg></figure>"
    )


def _gap_buckets(result: Result) -> list[tuple[str, int]]:
    edges = [-math.inf, -1000, -100, -10, 0, 10, 100, 1000, math.inf]
    names = ["≤-1000", "-999…-100", "-99…-10", "-9…-1", "1…9", "10…99", "100…999", "≥1000"]
    rows = result.con.execute(
        "SELECT points FROM corrections WHERE target = 'loyalty' AND points <> 0"
    ).fetchall()
    counts = [0] * len(names)
    for (points,) in rows:
        p = int(points)
        for i in range(len(names)):
            lo, hi = edges[i], edges[i + 1]
            if (p < 0 and lo < p <= hi) or (p > 0 and lo <= p < hi):
                if p < 0 and p == hi and hi == 0:
                    continue
                counts[i] += 1
                break
    return list(zip(names, counts, strict=True))


def _lag_buckets(result: Result) -> list[tuple[str, int]]:
    edges = [(0, "<1h"), (1, "1–6h"), (6, "6–24h"), (24, "1–2d"), (48, "2–7d"), (168, "≥7d")]
    rows = result.con.execute(
        "SELECT epoch(first_at - trig) / 3600.0 FROM oj "
        "WHERE n_earn > 0 AND triggered AND first_at >= trig"
    ).fetchall()
    counts = [0] * len(edges)
    for (hours,) in rows:
        idx = 0
        for i, (lo, _name) in enumerate(edges):
            if hours >= lo:
                idx = i
        counts[idx] += 1
    early = result.con.execute(
        "SELECT count(*) FROM oj WHERE n_earn > 0 AND (NOT triggered OR first_at < trig)"
    ).fetchone()
    return [("before trigger", int(early[0]) if early else 0)] + [
        (name, c) for (_, name), c in zip(edges, counts, strict=True)
    ]


def _table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_e('' if v is None else v)}</td>" for v in r) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_report(result: Result) -> str:
    s = result.summary
    by_class = sorted(s["by_class"].items(), key=lambda kv: -kv[1])
    by_handoff = sorted(s["by_handoff"].items(), key=lambda kv: -kv[1])
    flags = [
        (
            name,
            f["records"],
            f["matching"],
            f"{100 * f['match_rate']:.1f}%" if f["match_rate"] is not None else "—",
        )
        for name, f in sorted(s["flag_sync"].items())
    ]
    liab = s["liability"]
    worst = result.con.execute(
        "SELECT finding_id, class, handoff, direction, customer_id, member_id, order_id, "
        "expected, actual, delta, detail FROM findings "
        "ORDER BY abs(coalesce(d, 0)) DESC, class, finding_id LIMIT 50"
    ).fetchall()
    matrix = [
        (cls, ", ".join(f"{h} {n}" for h, n in sorted(hs.items(), key=lambda kv: -kv[1])))
        for cls, hs in sorted(s["by_class_and_handoff"].items())
    ]
    css = (
        "body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}"
        "h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:3px 7px;"
        "text-align:left;vertical-align:top}th{background:#f3f3f3}.muted{color:#777}"
        "figure{display:inline-block;margin:0 1.5em 1em 0;vertical-align:top}"
        "figcaption{font-weight:600;margin-bottom:.3em}svg text{font-size:12px}"
        "svg text.small{font-size:10px}.kpi{display:inline-block;margin-right:2em}"
        ".kpi b{display:block;font-size:1.6em}"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>handoff reconciliation — {_e(s["as_of"])}</title><style>{css}</style></head>
<body>
<h1>Reconciliation as of {_e(s["as_of"])}</h1>
<p class="muted">Systems judged: {_e(", ".join(s["systems_judged"]))}. Program: {_e(s["program"])}.</p>
<div>
<span class="kpi"><b>{s["findings"]}</b>findings</span>
<span class="kpi"><b>{liab["expected_points"]}</b>points owed ({_e(liab["expected_value"])} {_e(liab["currency"])})</span>
<span class="kpi"><b>{liab["reported_points"]}</b>points shown by loyalty</span>
<span class="kpi"><b>{sum(v["rows"] for v in s["corrections"].values())}</b>corrections planned</span>
</div>
<h2>Where it breaks</h2>
{bar_chart("Findings by class", by_class)}
{bar_chart("Findings by handoff", by_handoff)}
{_table(["class", "handoffs"], matrix)}
<h2>Balances and lag</h2>
{histogram("Loyalty balance gaps (points the plan adjusts)", _gap_buckets(result))}
{histogram("Earn lag after the trigger (orders that earned)", _lag_buckets(result))}
<h2>VIP flag sync per destination</h2>
{_table(["destination", "records judged", "matching", "match rate"], flags)}
<h2>Largest findings</h2>
{_table(["finding", "class", "handoff", "direction", "customer", "member", "order", "expected", "actual", "delta", "detail"], worst)}
<p class="muted">Every finding, with its evidence: findings.jsonl. The repair plan: corrections.csv
(`handoff reconcile apply DIR`).</p>
</body></html>
"""
