"""Decision logic: merge, review or new — for one incoming profile (live) or a whole batch.

Deterministic first: the same (system, external_id), then an exact email, then an exact current
phone merge, unless a guard objects (placeholder or shared value, a first name or birth date that
says "different person", a stale phone, an exclusive-system contradiction, the cluster cap).
Then probabilistic: the Fellegi-Sunter probability of the best candidate decides — at or above
`Thresholds.merge` → merge; between `review` and `merge` → review queue; below → new customer.
Merge-first: every profile is accepted; the worst outcome is a new customer plus a review item.

`decide` is the live step's pure core: the caller looks candidates up by `blocking_keys` and
passes them in with their customer ids. `resolve_batch` clusters a whole file with union-find,
strongest links first, under the same guards.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from handoff.domain.identity.blocking import DEFAULT_RULES, BlockIndex, BlockingRule
from handoff.domain.identity.decisions import (
    Decision,
    DecisionKind,
    GuardBreach,
    Match,
    ReviewItem,
    Rule,
)
from handoff.domain.identity.guards import (
    DEFAULT_GUARDS,
    GuardConfig,
    SharedValue,
    exclusive_conflict,
    person_conflict,
    prepare,
)
from handoff.domain.identity.model import Model, Scorer, TermFrequencies
from handoff.domain.identity.normalize import (
    DEFAULT_NORMALIZE,
    NormalizeConfig,
    NormalizedProfile,
    Profile,
)


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Match probabilities: ≥ merge → automatic merge; ≥ review → review queue; else new."""

    merge: float = 0.99
    review: float = 0.80

    def __post_init__(self) -> None:
        if not (0.0 < self.review <= self.merge < 1.0):
            raise ValueError("thresholds need 0 < review <= merge < 1")


DEFAULT_THRESHOLDS = Thresholds()

# Below this many records a value's share of the batch is noise, not a frequency: a surname seen
# twice in ten profiles is not common. Small batches score without term frequencies, as the live
# stage does (it never treats its store as smaller than this either) — so live equals batch.
MIN_TF_RECORDS = 1000


def score(
    a: NormalizedProfile,
    b: NormalizedProfile,
    model: Model | Scorer,
    *,
    tf: TermFrequencies | None = None,
    guards: GuardConfig = DEFAULT_GUARDS,
) -> Match:
    """Score one pair with per-field evidence (build a `Scorer` once for many pairs)."""
    scorer = model if isinstance(model, Scorer) else Scorer(model, tf=tf, guards=guards)
    return scorer.match(a, b)


# --------------------------------------------------------------------------------------------
# pair-level rules shared by the live and the batch path

_EMAIL = "email"
_PHONE = "phone"


def _index(scorer: Scorer, name: str) -> int:
    for i, comp in enumerate(scorer.comparisons):
        if comp.name == name:
            return i
    raise KeyError(name)


@dataclass(frozen=True, slots=True)
class _PairVerdict:
    rule: Rule | None  # deterministic rule that applies, if any
    conflict: str | None  # why the shared identifier does not make one person


def _deterministic(
    a: NormalizedProfile,
    b: NormalizedProfile,
    levels: tuple[int, ...],
    email_i: int,
    phone_i: int,
    guards: GuardConfig,
) -> _PairVerdict:
    """Which deterministic rule links a pair, and whether a person conflict vetoes it."""
    sa, sb = a.source_key, b.source_key
    if sa is not None and sa == sb:
        return _PairVerdict(Rule.SAME_SOURCE_ID, None)
    rule: Rule | None = None
    if levels[email_i] == 0:
        rule = Rule.EXACT_EMAIL
    elif levels[phone_i] == 0:
        rule = Rule.EXACT_PHONE
    if rule is None:
        return _PairVerdict(None, None)
    return _PairVerdict(rule, person_conflict(a, b, strict=guards.strict_conflicts))


def _eligible(a: NormalizedProfile, b: NormalizedProfile, guards: GuardConfig) -> bool:
    if a.system is not None and a.system == b.system and a.system in guards.exclusive_systems:
        return a.external_id is not None and a.external_id == b.external_id
    return True


def _conflict_reason(rule: Rule, conflict: str) -> str:
    what = "email" if rule is Rule.EXACT_EMAIL else "phone"
    return f"shared {what} but different {conflict.replace('_', ' ')}: possibly two people"


def _household_reason(conflict: str) -> str:
    return f"strong match but different {conflict.replace('_', ' ')}: possibly two people"


# --------------------------------------------------------------------------------------------
# live: one new profile against known candidates


@dataclass(frozen=True, slots=True)
class Candidate:
    """A known profile found through a shared blocking key, and the customer it belongs to."""

    profile: NormalizedProfile
    customer_id: str


@dataclass(frozen=True, slots=True)
class CustomerInfo:
    """What the cluster guards need to know about an existing customer."""

    size: int
    source_keys: frozenset[tuple[str, str]] = frozenset()


@dataclass(slots=True)
class _Scored:
    candidate: Candidate
    levels: tuple[int, ...]
    probability: float
    verdict: _PairVerdict


def decide(
    new: NormalizedProfile,
    candidates: Sequence[Candidate],
    model: Model | Scorer,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    guards: GuardConfig = DEFAULT_GUARDS,
    *,
    customers: Mapping[str, CustomerInfo] | None = None,
    tf: TermFrequencies | None = None,
) -> Decision:
    """Decide what to do with one new (normalised and screened) profile.

    `candidates` are the known profiles sharing a blocking key with it. `customers` gives each
    candidate customer's full size and source keys (default: inferred from the candidates, which
    under-counts). The model should be rescaled to the store's size (`Model.for_population`).
    Pure: the caller persists the decision, and on MERGE attaches the profile to
    `decision.customer_id`; on REVIEW or NEW creates a customer for it.
    """
    scorer = model if isinstance(model, Scorer) else Scorer(model, tf=tf, guards=guards)
    version = scorer.model.version
    if not candidates:
        return Decision(DecisionKind.NEW, new.record_id, Rule.NO_CANDIDATES, model_version=version)
    email_i, phone_i = _index(scorer, _EMAIL), _index(scorer, _PHONE)

    info: dict[str, CustomerInfo] = dict(customers or {})
    inferred: dict[str, list[NormalizedProfile]] = {}
    for cand in candidates:
        inferred.setdefault(cand.customer_id, []).append(cand.profile)
    for cid, profiles in inferred.items():
        if cid not in info:
            keys = frozenset(k for p in profiles if (k := p.source_key) is not None)
            info[cid] = CustomerInfo(size=len(profiles), source_keys=keys)

    scored: list[_Scored] = []
    for cand in candidates:
        levels = scorer.levels(new, cand.profile)
        probability = Model.probability(scorer.total_weight(levels, new, cand.profile))
        verdict = _deterministic(new, cand.profile, levels, email_i, phone_i, guards)
        scored.append(_Scored(cand, levels, probability, verdict))
    if not scored:
        return Decision(DecisionKind.NEW, new.record_id, Rule.NO_CANDIDATES, model_version=version)

    # best candidate per customer: a deterministic link beats any probability
    def rank(s: _Scored) -> tuple[int, float, str]:
        det = s.verdict.rule is not None and s.verdict.conflict is None
        order = 0 if s.verdict.rule is Rule.SAME_SOURCE_ID else (1 if det else 2)
        return (order, -s.probability, s.candidate.profile.record_id)

    by_customer: dict[str, list[_Scored]] = {}
    for s in sorted(scored, key=rank):
        by_customer.setdefault(s.candidate.customer_id, []).append(s)

    reviews: list[ReviewItem] = []
    breaches: list[GuardBreach] = []
    new_keys = frozenset(k for k in (new.source_key,) if k is not None)

    def review_item(s: _Scored, rule: Rule, reason: str) -> ReviewItem:
        return ReviewItem(
            new.record_id,
            s.candidate.profile.record_id,
            s.probability,
            rule,
            reason,
            scorer.match(new, s.candidate.profile, s.levels),
        )

    def cluster_guard(cid: str) -> tuple[Rule, str] | None:
        """A cluster guard that stops merging into this customer."""
        cust = info[cid]
        clash = exclusive_conflict(new_keys, cust.source_keys, guards)
        if clash is not None:
            system, id_a, id_b = clash
            return Rule.CONTRADICTION, f"{system} ids {id_a} and {id_b} in one customer"
        if cust.size + 1 > guards.max_cluster_size:
            return Rule.MAX_CLUSTER_SIZE, f"customer would exceed {guards.max_cluster_size} records"
        return None

    mergeable: list[tuple[_Scored, Rule]] = []
    for cid, found in by_customer.items():
        best = found[0]
        if best.verdict.rule is Rule.SAME_SOURCE_ID:
            mergeable.append((best, Rule.SAME_SOURCE_ID))  # the same source record, updated
            continue
        conflicted = [s for s in found if s.verdict.conflict is not None]
        if conflicted:
            # a shared identifier between two people: never merged into that customer
            worst = max(conflicted, key=lambda s: s.probability)
            assert worst.verdict.rule is not None and worst.verdict.conflict is not None
            reason = _conflict_reason(worst.verdict.rule, worst.verdict.conflict)
            reviews.append(review_item(worst, Rule.CONFLICT, reason))
            continue
        deterministic = best.verdict.rule is not None
        if not deterministic and best.probability < thresholds.merge:
            if best.probability >= thresholds.review:
                reviews.append(
                    review_item(best, Rule.PROBABILISTIC, "score between the thresholds")
                )
            continue
        if not deterministic and guards.household_guard:
            conflict = person_conflict(new, best.candidate.profile, strict=guards.strict_conflicts)
            if conflict is not None:
                reviews.append(review_item(best, Rule.CONFLICT, _household_reason(conflict)))
                continue
        guard = cluster_guard(cid)
        if guard is not None:
            rule, detail = guard
            ids = (new.record_id, best.candidate.profile.record_id)
            breaches.append(GuardBreach(rule.value, ids, detail))
            reviews.append(review_item(best, rule, detail))
            continue
        mergeable.append((best, best.verdict.rule or Rule.PROBABILISTIC))

    mergeable.sort(key=lambda item: rank(item[0]))
    if mergeable:
        winner, winner_rule = mergeable[0]
        for other, other_rule in mergeable[1:]:
            reason = f"also matches customer {other.candidate.customer_id}: maybe one customer"
            reviews.append(review_item(other, other_rule, reason))
        return Decision(
            DecisionKind.MERGE,
            new.record_id,
            winner_rule,
            customer_id=winner.candidate.customer_id,
            matched_record_id=winner.candidate.profile.record_id,
            score=1.0 if winner_rule is Rule.SAME_SOURCE_ID else winner.probability,
            match=scorer.match(new, winner.candidate.profile, winner.levels),
            reviews=tuple(reviews),
            breaches=tuple(breaches),
            model_version=version,
        )
    if reviews:
        top = max(reviews, key=lambda r: r.score)
        owner = next(
            s.candidate.customer_id for s in scored if s.candidate.profile.record_id == top.record_b
        )
        return Decision(
            DecisionKind.REVIEW,
            new.record_id,
            top.rule,
            customer_id=owner,
            matched_record_id=top.record_b,
            score=top.score,
            match=top.match,
            reviews=tuple(reviews),
            breaches=tuple(breaches),
            model_version=version,
        )
    best = min(scored, key=lambda s: (-s.probability, s.candidate.profile.record_id))
    return Decision(
        DecisionKind.NEW,
        new.record_id,
        Rule.BELOW_THRESHOLD,
        matched_record_id=best.candidate.profile.record_id,
        score=best.probability,
        model_version=version,
    )


# --------------------------------------------------------------------------------------------
# batch: a whole file at once


@dataclass(frozen=True, slots=True)
class BatchStats:
    records: int
    candidate_pairs: int
    deterministic_links: int
    probabilistic_links: int
    clusters: int
    largest_cluster: int
    skipped_blocks: int
    skipped_block_examples: tuple[tuple[str, int], ...]
    model_version: str
    refined_blocks: int = 0  # oversized name/address/birth-date blocks split by secondary keys


@dataclass(frozen=True, slots=True)
class BatchResult:
    """One decision per input record (input order), the review queue, guard reports, stats.

    Per-record decisions carry no evidence (memory stays linear for a million records);
    review items do.
    """

    decisions: tuple[Decision, ...]
    reviews: tuple[ReviewItem, ...]
    breaches: tuple[GuardBreach, ...]
    shared: tuple[SharedValue, ...]
    stats: BatchStats

    def clusters(self) -> dict[str, list[str]]:
        """cluster id → record ids."""
        out: dict[str, list[str]] = {}
        for d in self.decisions:
            out.setdefault(d.customer_id or d.record_id, []).append(d.record_id)
        return out


@dataclass(slots=True)
class _Clusters:
    """Union-find with the cluster guards' bookkeeping."""

    parent: list[int]
    size: list[int]
    exclusive: list[dict[str, str] | None]
    cannot: list[set[int] | None]  # per root: records it must never be merged with

    @classmethod
    def of(cls, profiles: Sequence[NormalizedProfile], guards: GuardConfig) -> _Clusters:
        exclusive: list[dict[str, str] | None] = []
        for p in profiles:
            key = p.source_key
            if key is not None and key[0] in guards.exclusive_systems:
                exclusive.append({key[0]: key[1]})
            else:
                exclusive.append(None)
        n = len(profiles)
        return cls(list(range(n)), [1] * n, exclusive, [None] * n)

    def forbid(self, i: int, j: int) -> None:
        """A cannot-link: i and j (and so their clusters) must never be merged."""
        for x, y in ((i, j), (j, i)):
            root = self.find(x)
            bucket = self.cannot[root]
            if bucket is None:
                bucket = self.cannot[root] = set()
            bucket.add(y)

    def forbidden(self, ra: int, rb: int) -> bool:
        ca, cb = self.cannot[ra], self.cannot[rb]
        if ca is not None and (cb is None or len(ca) <= len(cb)):
            return any(self.find(x) == rb for x in ca)
        if cb is not None:
            return any(self.find(x) == ra for x in cb)
        return False

    def find(self, i: int) -> int:
        parent = self.parent
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:
            parent[i], i = root, parent[i]
        return root

    def contradiction(self, ra: int, rb: int) -> tuple[str, str, str] | None:
        ea, eb = self.exclusive[ra], self.exclusive[rb]
        if not ea or not eb:
            return None
        for system, ext in ea.items():
            other = eb.get(system)
            if other is not None and other != ext:
                return (system, ext, other)
        return None

    def union(self, ra: int, rb: int) -> None:
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] += self.size[rb]
        eb = self.exclusive[rb]
        if eb:
            ea = self.exclusive[ra]
            self.exclusive[ra] = {**eb, **(ea or {})}
        self.exclusive[rb] = None
        cb = self.cannot[rb]
        if cb:
            ca = self.cannot[ra]
            if ca is None:
                self.cannot[ra] = cb
            else:
                ca |= cb
        self.cannot[rb] = None


@dataclass(order=True, slots=True)
class _Edge:
    priority: int  # 0 same source id, 1 exact email/phone, 2 probabilistic
    neg_probability: float
    i: int
    j: int
    rule: Rule = field(compare=False)


Progress = Callable[[str, int, int | None], None]


@dataclass(frozen=True, slots=True)
class _PairContext:
    """What scoring a range of records needs (inherited by forked workers, never pickled)."""

    normalized: Sequence[NormalizedProfile]
    index: BlockIndex
    scorer: Scorer
    thresholds: Thresholds
    guards: GuardConfig
    deterministic_only: bool


@dataclass(slots=True)
class _RangeResult:
    """The links found among one range of records' candidate pairs, in pair order."""

    edges: list[tuple[int, float, int, int, Rule]] = field(default_factory=list)
    band: list[tuple[float, int, int]] = field(default_factory=list)
    conflicts: list[tuple[int, int, float, Rule, str]] = field(default_factory=list)
    refused: list[tuple[int, int, float, Rule, str]] = field(default_factory=list)
    breaches: list[GuardBreach] = field(default_factory=list)
    best: dict[int, tuple[float, int]] = field(default_factory=dict)  # record → (p, partner)
    pairs: int = 0
    det_links: int = 0
    fs_links: int = 0
    records: int = 0


def _score_range(ctx: _PairContext, lo: int, hi: int) -> _RangeResult:
    """Score every candidate pair (i, j) with lo <= i < hi, in (i, j) order."""
    out = _RangeResult(records=hi - lo)
    normalized, index, scorer, guards = ctx.normalized, ctx.index, ctx.scorer, ctx.guards
    merge_at, review_at = ctx.thresholds.merge, ctx.thresholds.review
    deterministic_only = ctx.deterministic_only
    email_i, phone_i = _index(scorer, _EMAIL), _index(scorer, _PHONE)
    names = [c.name for c in scorer.comparisons]
    first_i, last_i = names.index("first_name"), names.index("last_name")
    compare_first = scorer.comparisons[first_i].compare
    compare_last = scorer.comparisons[last_i].compare
    others = tuple(
        (k, c.compare) for k, c in enumerate(scorer.comparisons) if k not in (first_i, last_i)
    )
    width = len(names)
    # The two name levels depend on the two profiles' first name, first word and surname only
    # (nicknames, typos, swapped names): a batch meets the same few name pairs millions of times.
    name_levels: dict[tuple[str | None, ...], tuple[int, int]] = {}
    total_weight = scorer.total_weight
    exclusive = bool(guards.exclusive_systems)
    household = guards.household_guard
    strict = guards.strict_conflicts
    best = out.best
    edges, band, conflicts = out.edges, out.band, out.conflicts
    pow2 = math.pow
    pairs = det_links = fs_links = 0
    for i in range(lo, hi):
        a = normalized[i]
        a_source = a.source_key
        for j in sorted(index.later_neighbours(i)):
            b = normalized[j]
            pairs += 1
            key = (
                a.first_name,
                a.first_token,
                a.last_name,
                b.first_name,
                b.first_token,
                b.last_name,
            )
            named = name_levels.get(key)
            if named is None:
                named = (compare_first(a, b), compare_last(a, b))
                if len(name_levels) >= _NAME_MEMO_LIMIT:
                    name_levels.clear()
                name_levels[key] = named
            row = [0] * width
            row[first_i], row[last_i] = named
            for k, compare in others:
                row[k] = compare(a, b)
            levels = tuple(row)
            w = total_weight(levels, a, b)
            if w >= 0:
                p = 1.0 / (1.0 + pow2(2.0, -w))
            else:
                odds = pow2(2.0, w)
                p = odds / (1.0 + odds)
            cur = best.get(i)
            if cur is None or p > cur[0]:
                best[i] = (p, j)
            cur = best.get(j)
            if cur is None or p > cur[0]:
                best[j] = (p, i)
            if (a_source is not None and a_source == b.source_key) or (
                levels[email_i] == 0 or levels[phone_i] == 0
            ):
                verdict = _deterministic(a, b, levels, email_i, phone_i, guards)
            else:
                verdict = _NO_VERDICT
            if exclusive and not _eligible(a, b, guards):
                # two ids of one exclusive system: never linked; a strong match is reported
                strong = not deterministic_only and p >= merge_at
                if (verdict.rule is not None and verdict.conflict is None) or strong:
                    detail = (
                        f"{a.system} ids {a.external_id} and {b.external_id} look like one person"
                    )
                    ids = (a.record_id, b.record_id)
                    out.breaches.append(GuardBreach(Rule.CONTRADICTION.value, ids, detail))
                    out.refused.append((i, j, p, Rule.CONTRADICTION, detail))
                continue
            if verdict.rule is not None:
                if verdict.conflict is not None:
                    conflicts.append(
                        (i, j, p, Rule.CONFLICT, _conflict_reason(verdict.rule, verdict.conflict))
                    )
                    continue
                priority = 0 if verdict.rule is Rule.SAME_SOURCE_ID else 1
                edges.append((priority, -p, i, j, verdict.rule))
                det_links += 1
                continue
            if deterministic_only:
                continue
            if p >= merge_at:
                if household:
                    conflict = person_conflict(a, b, strict=strict)
                    if conflict is not None:
                        conflicts.append((i, j, p, Rule.CONFLICT, _household_reason(conflict)))
                        continue
                edges.append((2, -p, i, j, Rule.PROBABILISTIC))
                fs_links += 1
            elif p >= review_at:
                band.append((p, i, j))
    out.pairs, out.det_links, out.fs_links = pairs, det_links, fs_links
    return out


_NO_VERDICT = _PairVerdict(None, None)
_NAME_MEMO_LIMIT = 500_000  # name-pair levels a scoring process keeps
_CONTEXT: _PairContext | None = None  # set in the parent just before forking the workers
_PARALLEL_MIN_RECORDS = 20_000


def _score_chunk(bounds: tuple[int, int]) -> _RangeResult:
    assert _CONTEXT is not None
    return _score_range(_CONTEXT, bounds[0], bounds[1])


@dataclass(slots=True)
class _AllScored:
    edges: list[tuple[int, float, int, int, Rule]]
    band: list[tuple[float, int, int]]
    conflicts: list[tuple[int, int, float, Rule, str]]
    refused: list[tuple[int, int, float, Rule, str]]
    breaches: list[GuardBreach]
    best_p: list[float]
    best_j: list[int]
    pairs: int
    det_links: int
    fs_links: int


def _score_all(
    ctx: _PairContext, *, workers: int = 1, progress: Progress | None = None
) -> _AllScored:
    """Score all candidate pairs, in forked workers when asked, merged in record order.

    Ranges are contiguous and merged in ascending order, and within a range pairs are scored in
    (i, j) order, so every list and every "best partner" (first strict maximum) comes out
    exactly as one sequential pass would produce it.
    """
    global _CONTEXT
    n = len(ctx.normalized)
    if workers <= 0:
        workers = os.cpu_count() or 1
    parallel = workers > 1 and n >= _PARALLEL_MIN_RECORDS and "fork" in mp.get_all_start_methods()
    chunks = max(1, workers * 16 if parallel else 1 + n // 50_000)
    step = -(-n // chunks) if n else 1
    bounds = [(lo, min(lo + step, n)) for lo in range(0, n, step)]
    all_ = _AllScored([], [], [], [], [], [-1.0] * n, [-1] * n, 0, 0, 0)

    def absorb(part: _RangeResult) -> None:
        all_.edges.extend(part.edges)
        all_.band.extend(part.band)
        all_.conflicts.extend(part.conflicts)
        all_.refused.extend(part.refused)
        all_.breaches.extend(part.breaches)
        best_p, best_j = all_.best_p, all_.best_j
        for x, (p, y) in part.best.items():
            if p > best_p[x]:
                best_p[x], best_j[x] = p, y
        all_.pairs += part.pairs
        all_.det_links += part.det_links
        all_.fs_links += part.fs_links
        if progress is not None:
            progress("scoring", part.records, n)

    if not parallel:
        for lo, hi in bounds:
            absorb(_score_range(ctx, lo, hi))
        return all_
    _CONTEXT = ctx
    try:
        with mp.get_context("fork").Pool(workers) as pool:
            for part in pool.imap(_score_chunk, bounds, chunksize=1):
                absorb(part)
    finally:
        _CONTEXT = None
    return all_


def resolve_batch(
    profiles: Iterable[Profile],
    model: Model,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    guards: GuardConfig = DEFAULT_GUARDS,
    *,
    normalize_config: NormalizeConfig = DEFAULT_NORMALIZE,
    rules: Sequence[BlockingRule] = DEFAULT_RULES,
    deterministic_only: bool = False,
    rescale_prior: bool = True,
    term_frequencies: bool | None = None,
) -> BatchResult:
    """Resolve a batch of raw profiles into clusters (customers), decisions and a review queue.

    Normalises and screens them (`guards.prepare`), then `resolve_prepared`. Pass a generator
    to avoid holding the raw profiles: only the normalised ones are kept.
    """
    normalized, shared = prepare(profiles, guards, normalize_config)
    return resolve_prepared(
        normalized,
        model,
        thresholds,
        guards,
        shared=shared,
        rules=rules,
        deterministic_only=deterministic_only,
        rescale_prior=rescale_prior,
        term_frequencies=term_frequencies,
    )


def resolve_prepared(
    normalized: Sequence[NormalizedProfile],
    model: Model,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    guards: GuardConfig = DEFAULT_GUARDS,
    *,
    shared: Sequence[SharedValue] = (),
    rules: Sequence[BlockingRule] = DEFAULT_RULES,
    deterministic_only: bool = False,
    rescale_prior: bool = True,
    term_frequencies: bool | None = None,
    workers: int = 1,
    progress: Progress | None = None,
) -> BatchResult:
    """Cluster already normalised and screened profiles (the output of `guards.prepare`).

    Memory is linear in the records: candidate pairs are generated record by record from a
    compact block index (blocks capped at `guards.max_block_size`) and only links at or above
    the review threshold are kept. Links are applied strongest first (same source id, then
    exact email/phone, then probability) through union-find, each checked against the cluster
    guards. `deterministic_only` keeps the deterministic tier alone (the baseline). The
    model's prior is rescaled to the batch size unless `rescale_prior` is False.
    `term_frequencies` (default: from `MIN_TF_RECORDS` records on) weighs agreement on a
    value by how rare it is in the batch.

    `workers` > 1 scores the candidate pairs in that many forked processes (0: one per core),
    record ranges in order, so the result is the same as with one. `progress(phase, done,
    total)` is told how many records have been scored.
    """
    n = len(normalized)
    if rescale_prior:
        # as live: a store is never taken as smaller than MIN_TF_RECORDS for the prior either
        model = model.for_population(max(n, MIN_TF_RECORDS))
    use_tf = n >= MIN_TF_RECORDS if term_frequencies is None else term_frequencies
    tf = TermFrequencies.from_profiles(normalized) if use_tf else None
    scorer = Scorer(model, tf=tf, guards=guards)

    skipped: list[tuple[str, int]] = []
    index = BlockIndex(
        normalized,
        rules,
        max_block_size=guards.max_block_size,
        refine_above=guards.refine_block_size,
    )
    skipped.extend(index.skipped)
    scored = _score_all(
        _PairContext(normalized, index, scorer, thresholds, guards, deterministic_only),
        workers=workers,
        progress=progress,
    )
    edges = [_Edge(prio, neg_p, i, j, rule) for prio, neg_p, i, j, rule in scored.edges]
    band = scored.band
    conflicts = scored.conflicts
    refused = scored.refused
    breaches = scored.breaches
    best_p, best_j = scored.best_p, scored.best_j
    pairs, det_links, fs_links = scored.pairs, scored.det_links, scored.fs_links

    edges.sort()
    clusters = _Clusters.of(normalized, guards)
    for i, j, *_rest in conflicts:
        clusters.forbid(i, j)
    merged_by: list[tuple[Rule, int, float] | None] = [None] * n
    for edge in edges:
        ra, rb = clusters.find(edge.i), clusters.find(edge.j)
        if ra == rb:
            continue
        ids = (normalized[edge.i].record_id, normalized[edge.j].record_id)
        prob = -edge.neg_probability
        if edge.rule is not Rule.SAME_SOURCE_ID and clusters.forbidden(ra, rb):
            detail = "would join profiles that share an identifier but look like two people"
            breaches.append(GuardBreach(Rule.CONFLICT.value, ids, detail))
            refused.append((edge.i, edge.j, prob, Rule.CONFLICT, detail))
            continue
        clash = clusters.contradiction(ra, rb)
        if clash is not None and edge.rule is not Rule.SAME_SOURCE_ID:
            detail = f"{clash[0]} ids {clash[1]} and {clash[2]} would share a customer"
            breaches.append(GuardBreach(Rule.CONTRADICTION.value, ids, detail))
            refused.append((edge.i, edge.j, prob, Rule.CONTRADICTION, detail))
            continue
        if clusters.size[ra] + clusters.size[rb] > guards.max_cluster_size:
            detail = (
                f"clusters of {clusters.size[ra]} and {clusters.size[rb]} records would exceed "
                f"{guards.max_cluster_size}"
            )
            breaches.append(GuardBreach(Rule.MAX_CLUSTER_SIZE.value, ids, detail))
            refused.append((edge.i, edge.j, prob, Rule.MAX_CLUSTER_SIZE, detail))
            continue
        for x, y in ((edge.i, edge.j), (edge.j, edge.i)):
            if merged_by[x] is None:
                merged_by[x] = (edge.rule, y, 1.0 if edge.rule is Rule.SAME_SOURCE_ID else prob)
        clusters.union(ra, rb)

    # review queue: links that did not end up inside one cluster, best per cluster pair
    review_best: dict[tuple[int, int], tuple[float, int, int, Rule, str]] = {}
    candidates_for_review = [
        *((p, i, j, Rule.PROBABILISTIC, "score between the thresholds") for p, i, j in band),
        *((p, i, j, rule, reason) for i, j, p, rule, reason in conflicts),
        *((p, i, j, rule, reason) for i, j, p, rule, reason in refused),
    ]
    for p, i, j, rule, reason in candidates_for_review:
        ra, rb = clusters.find(i), clusters.find(j)
        if ra == rb:
            continue
        pair = (ra, rb) if ra < rb else (rb, ra)
        current = review_best.get(pair)
        if current is None or p > current[0]:
            review_best[pair] = (p, i, j, rule, reason)
    reviews: list[ReviewItem] = []
    in_review: dict[int, tuple[float, int, Rule]] = {}
    for p, i, j, rule, reason in sorted(review_best.values(), key=lambda r: (-r[0], r[1], r[2])):
        a, b = normalized[i], normalized[j]
        reviews.append(ReviewItem(a.record_id, b.record_id, p, rule, reason, scorer.match(a, b)))
        for x, y in ((i, j), (j, i)):
            if x not in in_review or p > in_review[x][0]:
                in_review[x] = (p, y, rule)

    # one decision per record
    roots = [clusters.find(i) for i in range(n)]
    cluster_name: dict[int, str] = {}
    for i, root in enumerate(roots):
        rid = normalized[i].record_id
        if root not in cluster_name or rid < cluster_name[root]:
            cluster_name[root] = rid
    decisions: list[Decision] = []
    version = model.version
    for i in range(n):
        rid = normalized[i].record_id
        cid = cluster_name[roots[i]]
        merged = merged_by[i]
        if merged is not None and clusters.size[roots[i]] > 1:
            rule, partner, prob = merged
            decisions.append(
                Decision(
                    DecisionKind.MERGE,
                    rid,
                    rule,
                    customer_id=cid,
                    matched_record_id=normalized[partner].record_id,
                    score=prob,
                    model_version=version,
                )
            )
        elif i in in_review:
            prob, partner, rule = in_review[i]
            decisions.append(
                Decision(
                    DecisionKind.REVIEW,
                    rid,
                    rule,
                    customer_id=cid,
                    matched_record_id=normalized[partner].record_id,
                    score=prob,
                    model_version=version,
                )
            )
        else:
            has = best_j[i] >= 0
            decisions.append(
                Decision(
                    DecisionKind.NEW,
                    rid,
                    Rule.BELOW_THRESHOLD if has else Rule.NO_CANDIDATES,
                    customer_id=cid,
                    matched_record_id=normalized[best_j[i]].record_id if has else None,
                    score=best_p[i] if has else None,
                    model_version=version,
                )
            )

    sizes = [clusters.size[r] for r in set(roots)]
    for key, size in skipped:
        breaches.append(
            GuardBreach(
                "max_block_size",
                (),
                f"blocking key {key!r} has {size} records (> {guards.max_block_size}); not used",
            )
        )
    stats = BatchStats(
        records=n,
        candidate_pairs=pairs,
        deterministic_links=det_links,
        probabilistic_links=fs_links,
        clusters=len(sizes),
        largest_cluster=max(sizes, default=0),
        skipped_blocks=len(skipped),
        skipped_block_examples=tuple(sorted(skipped, key=lambda s: -s[1])[:20]),
        model_version=version,
        refined_blocks=index.refined,
    )
    return BatchResult(
        decisions=tuple(decisions),
        reviews=tuple(reviews),
        breaches=tuple(breaches),
        shared=tuple(shared),
        stats=stats,
    )
