"""Alert rules: which handoffs are failing right now, from a snapshot of facts. Pure.

The rules are the field's: a handoff failing more than 2% in 24 hours; a failed write left
unresolved for 15 minutes; a change not confirmed within its window; a source gone quiet for
much longer than its usual gap (a POS that stopped sending webhooks is the most common failure
of all); receipts waiting too long to be processed; identity review items left undecided past their
maximum age; a reconciliation run that found more mismatches than allowed. Each firing says what,
where, since when, how many customers, and what to do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass(frozen=True)
class SourceFacts:
    source: str
    role: str
    received_24h: int
    failed_24h: int  # quarantined
    last_received_at: datetime | None
    typical_gap_seconds: float | None  # None: not enough history to know what is usual
    oldest_pending_at: datetime | None


@dataclass(frozen=True)
class DestinationFacts:
    destination: str
    finished_24h: int  # delivered or dead-lettered in the window
    dead_24h: int
    oldest_dead_at: datetime | None  # a dead-lettered change nobody replayed
    dead_customers: int
    oldest_waiting_at: datetime | None  # created and still not confirmed
    waiting_customers: int


@dataclass(frozen=True)
class ReviewFacts:
    open_items: int
    oldest_open_at: datetime | None
    customers: int  # distinct customers the open items are about


@dataclass(frozen=True)
class ReconFacts:
    """The newest reconciliation run."""

    run: str
    finished_at: datetime
    findings: int
    by_handoff: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Facts:
    now: datetime
    sources: tuple[SourceFacts, ...]
    destinations: tuple[DestinationFacts, ...]
    review: ReviewFacts | None = None
    recon: ReconFacts | None = None


@dataclass(frozen=True)
class Thresholds:
    failure_rate: float = 0.02
    failure_min_events: int = 20
    dead_letter: timedelta = timedelta(minutes=15)
    undelivered: timedelta = timedelta(minutes=15)
    process_lag: timedelta = timedelta(minutes=5)
    silence_factor: float = 10.0
    silence_min: timedelta = timedelta(hours=1)
    review_max_age: timedelta = timedelta(hours=72)
    recon_findings: int = 0  # a run with more findings than this opens an alert
    repeat_first: timedelta = timedelta(minutes=15)
    repeat_max: timedelta = timedelta(hours=24)


@dataclass(frozen=True)
class Firing:
    rule: str
    key: str  # the handoff it is about (a source or a destination name)
    summary: str
    advice: str
    since: datetime
    customers: int | None = None


def _failure_rate(s: SourceFacts, t: Thresholds, now: datetime) -> Firing | None:
    if s.received_24h < t.failure_min_events:
        return None
    rate = s.failed_24h / s.received_24h
    if rate <= t.failure_rate:
        return None
    return Firing(
        "failure_rate",
        s.source,
        f"{s.source} → handoff: {rate:.1%} of {s.received_24h:,} webhooks failed in 24 h "
        f"(threshold {t.failure_rate:.0%})",
        "Open Quarantine for the reasons; fix the mapping or the sender, then retry them.",
        now - timedelta(hours=24),
    )


def _silence(s: SourceFacts, t: Thresholds, now: datetime) -> Firing | None:
    if s.last_received_at is None or s.typical_gap_seconds is None:
        return None
    allowed = max(t.silence_min, timedelta(seconds=s.typical_gap_seconds * t.silence_factor))
    quiet = now - s.last_received_at
    if quiet <= allowed:
        return None
    hours = quiet.total_seconds() / 3600
    return Firing(
        "source_silent",
        s.source,
        f"{s.source} has sent nothing for {hours:.1f} h; it usually sends every "
        f"{s.typical_gap_seconds / 60:.0f} min",
        f"Check that the {s.role} system still has its webhook subscription (vendors delete "
        "subscriptions after repeated failures) and that it can reach handoff.",
        s.last_received_at,
    )


def _process_lag(s: SourceFacts, t: Thresholds, now: datetime) -> Firing | None:
    if s.oldest_pending_at is None or now - s.oldest_pending_at <= t.process_lag:
        return None
    minutes = (now - s.oldest_pending_at).total_seconds() / 60
    return Firing(
        "process_lag",
        s.source,
        f"{s.source}: webhooks received {minutes:.0f} min ago are still not processed",
        "Check that a `handoff worker` (or `handoff serve` without --no-worker) is running.",
        s.oldest_pending_at,
    )


def _dead_letters(d: DestinationFacts, t: Thresholds, now: datetime) -> Firing | None:
    if d.oldest_dead_at is None or now - d.oldest_dead_at <= t.dead_letter:
        return None
    return Firing(
        "dead_letter",
        d.destination,
        f"handoff → {d.destination}: failed writes unresolved since "
        f"{d.oldest_dead_at:%Y-%m-%d %H:%M} UTC",
        "Open Deliveries, read the last error, fix the destination, then replay.",
        d.oldest_dead_at,
        d.dead_customers,
    )


def _undelivered(d: DestinationFacts, t: Thresholds, now: datetime) -> Firing | None:
    if d.oldest_waiting_at is None or now - d.oldest_waiting_at <= t.undelivered:
        return None
    minutes = (now - d.oldest_waiting_at).total_seconds() / 60
    return Firing(
        "undelivered",
        d.destination,
        f"handoff → {d.destination}: a change waits {minutes:.0f} min for confirmation",
        "The destination is slow, rate-limited or down: check its breaker and last errors.",
        d.oldest_waiting_at,
        d.waiting_customers,
    )


def _delivery_failures(d: DestinationFacts, t: Thresholds, now: datetime) -> Firing | None:
    if d.finished_24h < t.failure_min_events:
        return None
    rate = d.dead_24h / d.finished_24h
    if rate <= t.failure_rate:
        return None
    return Firing(
        "failure_rate",
        d.destination,
        f"handoff → {d.destination}: {rate:.1%} of {d.finished_24h:,} deliveries failed in 24 h "
        f"(threshold {t.failure_rate:.0%})",
        "Open Deliveries for the errors; fix the destination, then replay the dead letters.",
        now - timedelta(hours=24),
        d.dead_customers,
    )


def _review_age(r: ReviewFacts, t: Thresholds, now: datetime) -> Firing | None:
    if r.oldest_open_at is None or now - r.oldest_open_at <= t.review_max_age:
        return None
    hours = (now - r.oldest_open_at).total_seconds() / 3600
    return Firing(
        "review_age",
        "identity",
        f"identity: {r.open_items:,} review item(s) undecided, the oldest for {hours:.0f} h "
        f"(maximum {t.review_max_age.total_seconds() / 3600:.0f} h)",
        "Open Review on the dashboard (or `handoff identity review list`): merge each pair or "
        "keep it apart; until then their points, flags and history stay split.",
        r.oldest_open_at,
        r.customers,
    )


def _recon_findings(rc: ReconFacts, t: Thresholds) -> Firing | None:
    if rc.findings <= t.recon_findings:
        return None
    worst = max(rc.by_handoff.items(), key=lambda kv: kv[1], default=None)
    where = f"; most at {worst[0]} ({worst[1]:,})" if worst else ""
    return Firing(
        "reconciliation_findings",
        "reconciliation",
        f"reconciliation run {rc.run}: {rc.findings:,} finding(s) (threshold "
        f"{t.recon_findings:,}){where}",
        "Open Reconciliation on the dashboard: read the findings by handoff, trace a few, fix "
        "the broken handoff, then apply the corrections.",
        rc.finished_at,
    )


def evaluate(facts: Facts, t: Thresholds) -> list[Firing]:
    """Every rule over every handoff; what comes back is what is wrong now."""
    now = facts.now
    out: list[Firing | None] = []
    for s in facts.sources:
        out += [_failure_rate(s, t, now), _silence(s, t, now), _process_lag(s, t, now)]
    for d in facts.destinations:
        out += [_delivery_failures(d, t, now), _dead_letters(d, t, now), _undelivered(d, t, now)]
    if facts.review is not None:
        out.append(_review_age(facts.review, t, now))
    if facts.recon is not None:
        out.append(_recon_findings(facts.recon, t))
    return [f for f in out if f is not None]


def next_notice(last: datetime, sent: int, t: Thresholds) -> datetime:
    """When an alert that is still open is sent again: 15 min, then 30, 60 … at most daily."""
    delay: timedelta = min(t.repeat_first * (2 ** max(0, sent - 1)), t.repeat_max)
    return last + delay
