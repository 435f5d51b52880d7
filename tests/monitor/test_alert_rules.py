"""The alert rules, pure: each fires on its fault and stays quiet when the handoff is healthy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from handoff.domain.alerts import (
    DestinationFacts,
    Facts,
    ReconFacts,
    ReviewFacts,
    SourceFacts,
    Thresholds,
    evaluate,
    next_notice,
)

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
T = Thresholds()


def source(**kw: object) -> SourceFacts:
    base: dict[str, object] = {
        "source": "till",
        "role": "pos",
        "received_24h": 288,
        "failed_24h": 0,
        "last_received_at": NOW - timedelta(minutes=3),
        "typical_gap_seconds": 300.0,
        "oldest_pending_at": None,
    }
    return SourceFacts(**(base | kw))  # type: ignore[arg-type]


def destination(**kw: object) -> DestinationFacts:
    base: dict[str, object] = {
        "destination": "crm",
        "finished_24h": 500,
        "dead_24h": 0,
        "oldest_dead_at": None,
        "dead_customers": 0,
        "oldest_waiting_at": None,
        "waiting_customers": 0,
    }
    return DestinationFacts(**(base | kw))  # type: ignore[arg-type]


def rules_for(
    *, sources: tuple[SourceFacts, ...] = (), dests: tuple[DestinationFacts, ...] = ()
) -> list[str]:
    return sorted(f"{f.rule}:{f.key}" for f in evaluate(Facts(NOW, sources, dests), T))


def test_healthy_handoffs_raise_nothing() -> None:
    assert rules_for(sources=(source(),), dests=(destination(),)) == []


def test_failure_rate_above_two_percent_fires_and_at_two_percent_does_not() -> None:
    assert rules_for(sources=(source(received_24h=300, failed_24h=7),)) == ["failure_rate:till"]
    assert rules_for(sources=(source(received_24h=300, failed_24h=6),)) == []  # exactly 2%
    # too few events in the day to judge
    assert rules_for(sources=(source(received_24h=10, failed_24h=5),)) == []
    assert rules_for(dests=(destination(finished_24h=100, dead_24h=3),)) == ["failure_rate:crm"]


def test_a_silent_source_is_judged_against_its_own_rhythm() -> None:
    quiet = NOW - timedelta(minutes=70)
    assert rules_for(sources=(source(last_received_at=quiet),)) == ["source_silent:till"]
    # a source that usually sends every 2 hours is not silent after 70 minutes
    assert rules_for(sources=(source(last_received_at=quiet, typical_gap_seconds=7200.0),)) == []
    # no history, no opinion
    assert rules_for(sources=(source(last_received_at=quiet, typical_gap_seconds=None),)) == []
    [firing] = evaluate(Facts(NOW, (source(last_received_at=quiet),), ()), T)
    assert firing.since == quiet and "subscription" in firing.advice


def test_dead_letters_and_undelivered_changes_fire_after_their_windows() -> None:
    fresh = NOW - timedelta(minutes=10)
    old = NOW - timedelta(minutes=20)
    assert rules_for(dests=(destination(oldest_dead_at=fresh, dead_customers=2),)) == []
    [dead] = evaluate(Facts(NOW, (), (destination(oldest_dead_at=old, dead_customers=2),)), T)
    assert (dead.rule, dead.customers) == ("dead_letter", 2)
    assert rules_for(dests=(destination(oldest_waiting_at=old, waiting_customers=9),)) == [
        "undelivered:crm"
    ]


def test_processing_lag() -> None:
    assert rules_for(sources=(source(oldest_pending_at=NOW - timedelta(minutes=6)),)) == [
        "process_lag:till"
    ]
    assert rules_for(sources=(source(oldest_pending_at=NOW - timedelta(minutes=4)),)) == []


def test_repeats_back_off_to_daily() -> None:
    gaps = [next_notice(NOW, sent, T) - NOW for sent in (1, 2, 3, 4, 20)]
    assert gaps[:4] == [timedelta(minutes=m) for m in (15, 30, 60, 120)]
    assert gaps[4] == timedelta(hours=24)


def test_review_items_past_their_maximum_age_fire() -> None:
    fresh = ReviewFacts(3, NOW - timedelta(hours=71), 5)
    assert evaluate(Facts(NOW, (), (), review=fresh), T) == []
    assert evaluate(Facts(NOW, (), (), review=ReviewFacts(0, None, 0)), T) == []
    old = ReviewFacts(3, NOW - timedelta(hours=80), 5)
    [firing] = evaluate(Facts(NOW, (), (), review=old), T)
    assert (firing.rule, firing.key, firing.customers) == ("review_age", "identity", 5)
    assert "3 review item(s)" in firing.summary and "80 h" in firing.summary
    assert firing.since == old.oldest_open_at


def test_a_reconciliation_run_above_the_threshold_fires() -> None:
    clean = ReconFacts("2026-11-24", NOW, 0, {})
    assert evaluate(Facts(NOW, (), (), recon=clean), T) == []
    found = ReconFacts("2026-11-25", NOW, 42, {"erp->loyalty": 30, "pos->loyalty": 12})
    [firing] = evaluate(Facts(NOW, (), (), recon=found), T)
    assert firing.rule == "reconciliation_findings" and "42 finding(s)" in firing.summary
    assert "erp->loyalty (30)" in firing.summary
    lenient = Thresholds(recon_findings=50)
    assert evaluate(Facts(NOW, (), (), recon=found), lenient) == []
