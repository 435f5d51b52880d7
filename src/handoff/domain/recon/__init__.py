"""Reconciliation's pure rules: what each system *should* show, and what a difference means.

No I/O. The offline engine (`handoff.recon`) evaluates the same rules set-based in DuckDB over
millions of rows; `classify_order` and friends are the one-order reference that `handoff trace`
uses and that the tests hold the SQL to (docs/reconciliation.md). Money is integer minor units,
points are integers, times are aware datetimes.

The earning arithmetic is the ledger's (`handoff.domain.ledger.rules`): the same basis, rate,
rounding and proportional reversal, so the offline mode and the live ledger agree.
"""

from handoff.domain.recon.rules import (
    CLASSES,
    DIRECTIONS,
    ROLES,
    TARGETS,
    Cleared,
    Correction,
    Finding,
    LoyaltyFacts,
    OrderFacts,
    OrderVerdict,
    RefundFacts,
    classify_order,
    correction_key,
    direction_of,
    expected_reversals,
    finding_id,
    order_expectation,
    rate_fraction,
    tier_for_spend,
)

__all__ = [
    "CLASSES",
    "DIRECTIONS",
    "ROLES",
    "TARGETS",
    "Cleared",
    "Correction",
    "Finding",
    "LoyaltyFacts",
    "OrderFacts",
    "OrderVerdict",
    "RefundFacts",
    "classify_order",
    "correction_key",
    "direction_of",
    "expected_reversals",
    "finding_id",
    "order_expectation",
    "rate_fraction",
    "tier_for_spend",
]
