"""The expected loyalty ledger (ARCHITECTURE.md §6): program rules, entries, projections.

Pure: no I/O, no clock. The caller passes "now" and the customer's canonical events; everything
returned is derived deterministically from them. See docs/ledger.md for every rule and policy.
"""

from handoff.domain.ledger.engine import (
    Applied,
    Ledger,
    advance,
    apply,
    apply_adjustment,
    diff_entries,
    empty,
    extend,
    rebuild,
)
from handoff.domain.ledger.entries import (
    Adjustment,
    AttributeChange,
    Entry,
    EntryKind,
    Held,
    Note,
    RecordedPoints,
    VipFlag,
)
from handoff.domain.ledger.liability import AgeBucket, LiabilityReport, liability_report
from handoff.domain.ledger.program import Program, ProgramError, RateChange, Tier, parse_program
from handoff.domain.ledger.projection import (
    TIER_ATTRIBUTE,
    VIP_ATTRIBUTE,
    Projection,
    StatementLine,
    attribute_changes,
    attribute_history,
    fold,
    format_statement,
    next_change_at,
    project,
    statement,
)

__all__ = [
    "TIER_ATTRIBUTE",
    "VIP_ATTRIBUTE",
    "Adjustment",
    "AgeBucket",
    "Applied",
    "AttributeChange",
    "Entry",
    "EntryKind",
    "Held",
    "Ledger",
    "LiabilityReport",
    "Note",
    "Program",
    "ProgramError",
    "Projection",
    "RateChange",
    "RecordedPoints",
    "StatementLine",
    "Tier",
    "VipFlag",
    "advance",
    "apply",
    "apply_adjustment",
    "attribute_changes",
    "attribute_history",
    "diff_entries",
    "empty",
    "extend",
    "fold",
    "format_statement",
    "liability_report",
    "next_change_at",
    "parse_program",
    "project",
    "rebuild",
    "statement",
]
