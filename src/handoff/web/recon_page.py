"""Reconciliation runs: what each `handoff reconcile --out DIR` found, and repairing it.

A run is a directory under `[reconcile] runs_dir` (see `handoff.config.reconcile_runs_dir`)
holding `summary.json`, `findings.csv`, `findings.jsonl` and `corrections.csv`. Pages read those
files; nothing about a run is stored in the hub. The drill-down re-runs the engine over the
run's recorded input files (when they are still there) to trace one order or customer; Apply
sends the repair plan through the delivery outbox exactly as `handoff reconcile apply DIR
--yes` does, after showing how many corrections it would send.
"""

from __future__ import annotations

import csv
import json
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup

from handoff.config import reconcile_runs_dir
from handoff.domain.ledger.program import Program
from handoff.recon.apply import ApplyError, ApplyResult, apply_plan
from handoff.recon.report import bar_chart
from handoff.recon.runs import Run, list_runs, run_at
from handoff.web.base_page import PAGE, Kit


class FindingsCache:
    """Parsed findings.csv of the runs looked at lately, reread when the file changes."""

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self._rows: dict[Path, tuple[float, list[dict[str, str]]]] = {}
        self._lock = threading.Lock()

    def rows(self, run: Run) -> list[dict[str, str]]:
        path = run.path / "findings.csv"
        if not path.is_file():
            return []
        stamp = path.stat().st_mtime
        with self._lock:
            cached = self._rows.get(path)
            if cached is not None and cached[0] == stamp:
                return cached[1]
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        with self._lock:
            if len(self._rows) >= self.size:
                self._rows.pop(next(iter(self._rows)))
            self._rows[path] = (stamp, rows)
        return rows


def evidence_of(run: Run, finding_id: str) -> dict[str, Any] | None:
    """The finding's line of findings.jsonl (its evidence: ERP facts, loyalty events)."""
    path = run.path / "findings.jsonl"
    if not path.is_file():
        return None
    needle = json.dumps(finding_id)
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if needle in line:
                row = json.loads(line)
                if row.get("finding_id") == finding_id:
                    return dict(row)
    return None


class TraceCache:
    """The engine's result for the run traced last: re-running a large run takes seconds, and
    an operator drills into several findings of the same run in a row."""

    def __init__(self) -> None:
        self._key: tuple[Path, float] | None = None
        self._result: Any = None
        self._lock = threading.Lock()

    def result(self, run: Run, program: Program) -> tuple[Any, str | None]:
        from handoff.recon.engine import Options, reconcile
        from handoff.recon.inputs import InputError

        inputs = run.summary.get("inputs") or {}
        files = {name: Path(v["file"]) for name, v in inputs.items() if v.get("file")}
        missing = [str(p) for p in files.values() if not p.exists()]
        if "orders" not in files or missing:
            return None, "the run's input files are gone: " + (", ".join(missing) or "orders")
        key = (run.path, (run.path / "summary.json").stat().st_mtime)
        with self._lock:
            if self._key == key:
                return self._result, None
            as_of_text = str(run.summary.get("as_of") or "")
            as_of = (
                datetime.fromisoformat(as_of_text.replace("Z", "+00:00")) if as_of_text else None
            )
            try:
                result = reconcile(files, program, Options(as_of=as_of))
            except InputError as exc:
                return None, "; ".join(str(p) for p in exc.problems)
            if self._result is not None:
                self._result.con.close()
            self._key, self._result = key, result
            return result, None


def run_program(configured: Program, run: Run) -> Program:
    """The program rules the run was judged under: its summary records the ones that decide a
    verdict (currency, rate, trigger, tolerance); the rest come from this hub's configuration."""
    recorded = run.summary.get("program") or {}
    if not isinstance(recorded, dict) or not recorded:
        return configured
    try:
        return Program.model_validate(configured.model_dump() | recorded)
    except ValueError:
        return configured


def _chart(title: str, counts: dict[str, Any]) -> Markup:
    items = sorted(((str(k), int(v)) for k, v in counts.items()), key=lambda kv: -kv[1])
    return Markup(bar_chart(title, items))  # noqa: S704 — bar_chart escapes every label


def register(app: FastAPI, kit: Kit) -> None:
    hub = kit.hub
    findings_cache = FindingsCache()
    traces = TraceCache()

    def root() -> Path:
        return reconcile_runs_dir(hub.settings)

    def run_or_404(name: str) -> Run:
        run = run_at(root(), name)
        if run is None:
            raise HTTPException(404, f"no reconciliation run {name!r} under {root()}")
        return run

    @app.get("/reconciliation", include_in_schema=False)
    def runs_page(request: Request) -> HTMLResponse:
        session = kit.page(request)
        return kit.render(request, "recon_runs.html", session, runs=list_runs(root()), root=root())

    @app.get("/reconciliation/{name}", include_in_schema=False)
    def run_page(
        request: Request,
        name: str,
        cls: str = "",
        handoff: str = "",
        q: str = "",
        page: int = 0,
    ) -> HTMLResponse:
        session = kit.page(request)
        run = run_or_404(name)
        rows = findings_cache.rows(run)
        classes = sorted({r["class"] for r in rows})
        handoffs = sorted({r["handoff"] for r in rows if r.get("handoff")})
        text = q.strip().lower()
        shown = [
            r
            for r in rows
            if (not cls or r["class"] == cls)
            and (not handoff or r["handoff"] == handoff)
            and (
                not text
                or any(
                    text in (r.get(k) or "").lower()
                    for k in ("finding_id", "customer_id", "member_id", "contact_id", "order_id")
                )
            )
        ]
        page = max(page, 0)
        start = page * PAGE
        s = run.summary
        by_class_handoff = s.get("by_class_and_handoff") or {}
        return kit.render(
            request,
            "recon_run.html",
            session,
            run=run,
            s=s,
            rows=shown[start : start + PAGE],
            matched=len(shown),
            page=page,
            more=start + PAGE < len(shown),
            classes=classes,
            handoffs=handoffs,
            query={"cls": cls, "handoff": handoff, "q": q},
            by_class_handoff=by_class_handoff,
            class_chart=_chart("findings by class", s.get("by_class") or {}),
            handoff_chart=_chart("findings by handoff", s.get("by_handoff") or {}),
        )

    @app.get("/reconciliation/{name}/findings/{finding_id:path}", include_in_schema=False)
    def finding_page(request: Request, name: str, finding_id: str) -> HTMLResponse:
        session = kit.page(request)
        run = run_or_404(name)
        row = next((r for r in findings_cache.rows(run) if r["finding_id"] == finding_id), None)
        if row is None:
            raise HTTPException(404, f"no finding {finding_id!r} in run {name}")
        evidence = evidence_of(run, finding_id) or {}
        result, problem = traces.result(run, run_program(hub.settings.config.program, run))
        order_trace = customer_trace = None
        if result is not None:
            from handoff.recon.trace import trace_customer, trace_order

            if row.get("order_id"):
                order_trace = trace_order(result, row["order_id"])
            who = row.get("customer_id") or row.get("member_id") or row.get("contact_id")
            if who:
                customer_trace = trace_customer(result, who)
        return kit.render(
            request,
            "recon_finding.html",
            session,
            run=run,
            f=row,
            evidence=json.dumps(evidence.get("evidence"), indent=2, default=str)
            if evidence.get("evidence")
            else None,
            order_trace=order_trace,
            customer_trace=customer_trace,
            trace_problem=problem,
        )

    def preview(run: Run) -> ApplyResult:
        with hub.db.read() as conn:
            try:
                return apply_plan(conn, run.path, hub.clock.now(), send=False)
            except ApplyError as exc:
                raise HTTPException(404, str(exc)) from None

    def sendable(result: ApplyResult) -> int:
        return sum(1 for p in result.planned if p.skipped is None and p.changes)

    @app.get("/reconciliation/{name}/apply", include_in_schema=False)
    def apply_page(request: Request, name: str) -> HTMLResponse:
        session = kit.page(request)
        run = run_or_404(name)
        result = preview(run)
        return kit.render(
            request,
            "recon_apply.html",
            session,
            run=run,
            planned=result.planned[:200],
            total=len(result.planned),
            sendable=sendable(result),
            unresolved=len(result.unresolved),
            skipped=sum(1 for p in result.planned if p.skipped),
            sent=request.query_params.get("sent"),
            rows=request.query_params.get("rows"),
        )

    @app.post("/reconciliation/{name}/apply", include_in_schema=False)
    def apply_submit(
        request: Request,
        name: str,
        expected: int = Form(...),
        csrf_token: str | None = Form(None),
    ) -> Response:
        kit.action(request, csrf_token)
        run = run_or_404(name)
        with hub.db.write() as conn:
            try:
                check = apply_plan(conn, run.path, hub.clock.now(), send=False)
                if sendable(check) != expected:
                    raise HTTPException(
                        409,
                        f"the plan now has {sendable(check)} correction(s) to send, not "
                        f"{expected}: look again before applying",
                    )
                result = apply_plan(conn, run.path, hub.clock.now(), send=True)
            except ApplyError as exc:
                raise HTTPException(404, str(exc)) from None
        return RedirectResponse(
            f"/reconciliation/{name}/apply?sent={result.sent}&rows={result.outbox_rows}",
            status_code=303,
        )
