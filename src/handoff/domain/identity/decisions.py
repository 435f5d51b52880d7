"""Decisions are data: every merge, review, split or new customer is a record with its evidence.

These dataclasses are what the engine returns and what storage persists (`to_dict` gives a
JSON-ready form). A decision always names the rule that produced it and, when a score was
involved, the per-field evidence behind that score, so a reviewer can see why and an operator can
undo it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class DecisionKind(StrEnum):
    MERGE = "merge"  # attached automatically to an existing customer / cluster
    REVIEW = "review"  # between the thresholds, or stopped by a guard: a person decides
    NEW = "new"  # no candidate good enough: a new customer (never rejected)
    SPLIT = "split"  # an earlier merge undone (by an operator or a reviewer)


class Rule(StrEnum):
    SAME_SOURCE_ID = "same_source_id"
    EXACT_EMAIL = "exact_email"
    EXACT_PHONE = "exact_phone"
    PROBABILISTIC = "probabilistic"
    BELOW_THRESHOLD = "below_threshold"
    NO_CANDIDATES = "no_candidates"
    CONFLICT = "identifier_conflict"  # shared email/phone, different first name or birth date
    CONTRADICTION = "contradiction"  # two ids of one exclusive system
    MAX_CLUSTER_SIZE = "max_cluster_size"
    MANUAL = "manual"


@dataclass(frozen=True, slots=True)
class FieldEvidence:
    """One field's contribution to a score: the level reached and its match weight (log2 Bayes
    factor; positive pulls towards a match). `note` says when a guard or the term-frequency
    adjustment changed the weight."""

    field: str
    level: str
    weight: float
    a: str | None
    b: str | None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Match:
    """A scored pair. `weight` is the total match weight including the prior; `probability` is the
    posterior probability that the two records are the same person."""

    record_a: str
    record_b: str
    probability: float
    weight: float
    evidence: tuple[FieldEvidence, ...]
    model_version: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class GuardBreach:
    """A guard stopped something: a merge that would exceed the cluster cap, a contradiction, a
    shared identifier, a blocking key too common to use."""

    guard: str
    records: tuple[str, ...]
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ReviewItem:
    """A candidate pair a person should look at, with the reason it was not merged."""

    record_a: str
    record_b: str
    score: float
    rule: Rule
    reason: str
    match: Match | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Decision:
    """The engine's answer for one incoming profile (live) or one record (batch).

    MERGE: `customer_id` is the customer it joins, `matched_record_id` the record that won.
    REVIEW: the profile starts as a new customer; `customer_id`/`matched_record_id` point at the
    best candidate, which waits for a person. NEW: nothing good enough was found. SPLIT: records
    taken out of `customer_id`.
    """

    kind: DecisionKind
    record_id: str
    rule: Rule
    customer_id: str | None = None
    matched_record_id: str | None = None
    score: float | None = None
    match: Match | None = None
    reviews: tuple[ReviewItem, ...] = ()
    breaches: tuple[GuardBreach, ...] = ()
    model_version: str | None = None
    records: tuple[str, ...] = field(default=())  # SPLIT: the records moved out
    note: str | None = None  # free text: a reviewer's or operator's reason, a guard's detail

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def split(customer_id: str, records: tuple[str, ...], *, reason: str) -> Decision:
    """An operator's (or reviewer's) decision to take records out of a customer."""
    if not records:
        raise ValueError("a split moves at least one record")
    return Decision(
        kind=DecisionKind.SPLIT,
        record_id=records[0],
        rule=Rule.MANUAL,
        customer_id=customer_id,
        records=records,
        note=reason,
    )
