"""Identity resolution: pure domain engine (normalise, guard, block, score, decide, cluster).

No I/O beyond reading this package's data files (the default model, the nickname table). The
live pipeline step calls `normalize` → `screen` → `blocking_keys` (to look candidates up) →
`decide`; the batch command calls `resolve_batch`; `train` fits the model to a store's data.
See docs/identity.md.
"""

from handoff.domain.identity.blocking import (
    DEFAULT_RULES,
    BlockingRule,
    blocking_keys,
    candidate_pairs,
)
from handoff.domain.identity.comparisons import NULL, Comparison, build_comparisons
from handoff.domain.identity.decisions import (
    Decision,
    DecisionKind,
    FieldEvidence,
    GuardBreach,
    Match,
    ReviewItem,
    Rule,
    split,
)
from handoff.domain.identity.em import TrainingReport, TrainingResult, initial_model, train
from handoff.domain.identity.guards import (
    DEFAULT_GUARDS,
    GuardConfig,
    SharedValue,
    find_shared,
    identifier_values,
    is_placeholder_email,
    is_placeholder_phone,
    person_conflict,
    prepare,
    screen,
)
from handoff.domain.identity.model import (
    FieldParams,
    Model,
    Scorer,
    TermFrequencies,
    default_model,
)
from handoff.domain.identity.normalize import (
    DEFAULT_NORMALIZE,
    NormalizeConfig,
    NormalizedProfile,
    Profile,
    normalize,
)
from handoff.domain.identity.resolver import (
    DEFAULT_THRESHOLDS,
    BatchResult,
    BatchStats,
    Candidate,
    CustomerInfo,
    Thresholds,
    decide,
    resolve_batch,
    resolve_prepared,
    score,
)

__all__ = [
    "DEFAULT_GUARDS",
    "DEFAULT_NORMALIZE",
    "DEFAULT_RULES",
    "DEFAULT_THRESHOLDS",
    "NULL",
    "BatchResult",
    "BatchStats",
    "BlockingRule",
    "Candidate",
    "Comparison",
    "CustomerInfo",
    "Decision",
    "DecisionKind",
    "FieldEvidence",
    "FieldParams",
    "GuardBreach",
    "GuardConfig",
    "Match",
    "Model",
    "NormalizeConfig",
    "NormalizedProfile",
    "Profile",
    "ReviewItem",
    "Rule",
    "Scorer",
    "SharedValue",
    "TermFrequencies",
    "Thresholds",
    "TrainingReport",
    "TrainingResult",
    "blocking_keys",
    "build_comparisons",
    "candidate_pairs",
    "decide",
    "default_model",
    "find_shared",
    "identifier_values",
    "initial_model",
    "is_placeholder_email",
    "is_placeholder_phone",
    "normalize",
    "person_conflict",
    "prepare",
    "resolve_batch",
    "resolve_prepared",
    "score",
    "screen",
    "split",
    "train",
]
