"""The alert evaluator: facts from the store, rules from the domain, notices to the sinks.

Each run opens an alert for every new firing, repeats open ones on a back-off, and resolves the
ones whose rule no longer fires — alerts end by themselves once the handoff is healthy. Notices
are sent after the transaction that recorded them commits.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from handoff import logs
from handoff.config import AlertsConfig, reconcile_runs_dir
from handoff.domain import alerts as rules
from handoff.hub import Hub
from handoff.monitor.sinks import Notice, Sink, build_sinks, deliver
from handoff.store import alerts as store

log = logs.get(__name__)


def thresholds(cfg: AlertsConfig) -> rules.Thresholds:
    return rules.Thresholds(
        failure_rate=cfg.failure_rate,
        failure_min_events=cfg.failure_min_events,
        dead_letter=timedelta(minutes=cfg.dead_letter_minutes),
        undelivered=timedelta(minutes=cfg.undelivered_minutes),
        process_lag=timedelta(seconds=cfg.process_lag_seconds),
        silence_factor=cfg.silence_factor,
        silence_min=timedelta(minutes=cfg.silence_min_minutes),
        review_max_age=timedelta(hours=cfg.review_max_age_hours),
        recon_findings=cfg.reconcile_findings_max,
        repeat_first=timedelta(minutes=cfg.repeat_first_minutes),
        repeat_max=timedelta(hours=cfg.repeat_max_hours),
    )


@dataclass
class RunResult:
    opened: int = 0
    repeated: int = 0
    resolved: int = 0
    open: int = 0


class Evaluator:
    def __init__(self, hub: Hub, sinks: list[Sink] | None = None) -> None:
        self.hub = hub
        cfg = hub.settings.config.alerts
        self.thresholds = thresholds(cfg)
        self.sinks = build_sinks(cfg, hub.env) if sinks is None else sinks

    def run_once(self) -> RunResult:
        hub = self.hub
        now = hub.clock.now()
        roles = {name: src.config.role for name, src in hub.sources.items()}
        notices: list[Notice] = []
        result = RunResult()
        with hub.db.write() as conn:
            facts = rules.Facts(
                now,
                tuple(store.source_facts(conn, roles, now)),
                tuple(store.destination_facts(conn, list(hub.settings.config.destinations), now)),
                store.review_facts(conn),
                newest_reconciliation(reconcile_runs_dir(hub.settings)),
            )
            firing = {(f.rule, f.key): f for f in rules.evaluate(facts, self.thresholds)}
            current = {(a.rule, a.key): a for a in store.open_alerts(conn)}
            for key, f in firing.items():
                alert = current.get(key)
                if alert is None:
                    alert_id = store.open_alert(conn, f, now)
                    notices.append(self._notice(alert_id, "opened", f, now))
                    result.opened += 1
                    continue
                store.refresh(conn, alert.id, f)
                due = rules.next_notice(
                    alert.last_notified_at or alert.opened_at, alert.notifications, self.thresholds
                )
                if alert.acked_at is None and now >= due:
                    notices.append(self._notice(alert.id, "repeat", f, now))
                    result.repeated += 1
            for key, alert in current.items():
                if key not in firing:
                    store.resolve(conn, alert.id, now)
                    gone = rules.Firing(
                        alert.rule,
                        alert.key,
                        alert.summary,
                        alert.advice,
                        alert.since,
                        alert.customers,
                    )
                    notices.append(self._notice(alert.id, "resolved", gone, now))
                    result.resolved += 1
            result.open = len(firing)
        for notice in notices:
            deliver(self.sinks, notice)
            with hub.db.write() as conn:
                store.notified(conn, notice.alert_id, now)
            log.warning("alert", state=notice.state, rule=notice.rule, handoff=notice.key)
        return result

    @staticmethod
    def _notice(alert_id: int, state: str, f: rules.Firing, now: datetime) -> Notice:
        return Notice(
            alert_id, state, f.rule, f.key, f.summary, f.advice, f.since, f.customers, now
        )


class AlertLoop:
    """Runs the evaluator every `evaluate_every_seconds` in a thread (started by `serve`)."""

    def __init__(self, evaluator: Evaluator, every: float) -> None:
        self.evaluator = evaluator
        self.every = every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="alerts", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.evaluator.run_once()
            except Exception as exc:  # the database away: try again next round
                log.error("alert evaluation failed", error=type(exc).__name__)
            self._stop.wait(self.every)


def newest_reconciliation(root: Path) -> rules.ReconFacts | None:
    """The newest run under the reconciliation runs directory, as the alert rule sees it."""
    from handoff.recon.runs import list_runs

    runs = list_runs(root)
    if not runs:
        return None
    newest = runs[0]
    by_handoff = newest.summary.get("by_handoff") or {}
    return rules.ReconFacts(
        newest.name,
        newest.modified.astimezone(UTC),
        newest.findings,
        {str(k): int(v) for k, v in by_handoff.items()} if isinstance(by_handoff, dict) else {},
    )
