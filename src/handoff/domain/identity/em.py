"""Unsupervised training of the Fellegi-Sunter model by expectation-maximisation.

No labels: the model learns from the store's own profiles.

* u (P(level | different people)) comes from pairs drawn at random — almost all random pairs are
  different people. Exact-agreement u is computed exactly from value counts; the other levels
  from a seeded random sample.
* m (P(level | same person)) comes from EM over the candidate pairs of each blocking pass, with
  u held fixed and the fields the pass blocked on left out (on that pass agreement on them is
  guaranteed, so it says nothing). The passes' expected counts are pooled.
* The prior (P(two random records are the same person)) is the fixed point of: expected matches
  among all candidate pairs / number of pairs that could match.

Everything is deterministic given the seed. Levels with no data keep the base model's values, so
a store without emails still ships sensible email parameters.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from handoff.domain.identity.blocking import DEFAULT_RULES, BlockIndex, BlockingRule
from handoff.domain.identity.comparisons import NULL, Comparison, build_comparisons
from handoff.domain.identity.guards import DEFAULT_GUARDS, GuardConfig
from handoff.domain.identity.model import MIN_PROBABILITY, FieldParams, Model
from handoff.domain.identity.normalize import NormalizedProfile

Pattern = tuple[int, ...]

# Hand-set starting points (and fallbacks for fields a store has no data for). m: how often the
# same person's two records reach each level; u: how often two different people do, for a
# population of INITIAL_POPULATION records.
INITIAL_POPULATION = 10_000
_INITIAL: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "first_name": ((0.80, 0.03, 0.06, 0.04, 0.07), (0.005, 0.002, 0.005, 0.03, 0.958)),
    "last_name": ((0.85, 0.06, 0.03, 0.06), (0.002, 0.003, 0.02, 0.975)),
    "dob": ((0.85, 0.08, 0.02, 0.05), (1e-4, 0.002, 0.01, 0.9879)),
    "zip": ((0.88, 0.06, 0.06), (0.005, 0.03, 0.965)),
    "street_number": ((0.85, 0.15), (0.02, 0.98)),
    "street": ((0.80, 0.08, 0.04, 0.08), (1e-3, 2e-3, 0.01, 0.987)),
    "address2": ((0.80, 0.08, 0.12), (5e-3, 0.01, 0.985)),
    "city": ((0.85, 0.08, 0.07), (5e-3, 0.01, 0.985)),
    "state": ((0.90, 0.10), (0.25, 0.75)),
    "email": ((0.70, 0.03, 0.07, 0.20), (2e-4, 5e-5, 1e-3, 0.99875)),
    "phone": ((0.60, 0.05, 0.05, 0.30), (1e-4, 2e-4, 1e-3, 0.9987)),
}


def initial_model(comparisons: Sequence[Comparison] | None = None) -> Model:
    """The hand-set model EM starts from when no trained model is given."""
    comps = comparisons or build_comparisons()
    fields: dict[str, FieldParams] = {}
    for comp in comps:
        m, u = _INITIAL[comp.name]
        fields[comp.name] = FieldParams(comp.levels, m, u, comp.tf)
    return Model(
        fields=fields,
        prior=1.0 / INITIAL_POPULATION,
        population=INITIAL_POPULATION,
        meta={"source": "hand-set initial values (em.initial_model)"},
    )


@dataclass(frozen=True, slots=True)
class PassReport:
    rule: str
    pairs: int
    expected_matches: float
    iterations: int
    converged: bool


@dataclass(frozen=True, slots=True)
class TrainingReport:
    records: int
    u_samples: int
    passes: tuple[PassReport, ...]
    prior_iterations: int
    candidate_pairs: int
    expected_matches: float
    fields_from_base: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class TrainingResult:
    model: Model
    report: TrainingReport


def _eligible(a: NormalizedProfile, b: NormalizedProfile, guards: GuardConfig) -> bool:
    """Pairs that could ever be merged (two ids of one exclusive system never can)."""
    if a.system is not None and a.system == b.system and a.system in guards.exclusive_systems:
        return a.external_id is not None and a.external_id == b.external_id
    return True


@dataclass(slots=True)
class _UStats:
    """What u is estimated from: exact-agreement pair counts and a random-pair sample."""

    exact_pairs: list[float]  # per comparison: pairs agreeing exactly (from value counts)
    present_pairs: list[float]  # per comparison: pairs with both values present
    sample: Counter[Pattern]  # comparison patterns of random pairs


def _u_stats(
    profiles: Sequence[NormalizedProfile],
    comparisons: Sequence[Comparison],
    *,
    samples: int,
    seed: int,
    guards: GuardConfig,
) -> _UStats:
    rng = random.Random(seed)
    n = len(profiles)
    sample: Counter[Pattern] = Counter()
    drawn = attempts = 0
    while drawn < samples and attempts < samples * 4 and n > 1:
        attempts += 1
        i, j = rng.randrange(n), rng.randrange(n)
        if i == j:
            continue
        a, b = profiles[i], profiles[j]
        if not _eligible(a, b, guards):
            continue
        drawn += 1
        sample[tuple(c.compare(a, b) for c in comparisons)] += 1
    exact_pairs: list[float] = []
    present_pairs: list[float] = []
    for comp in comparisons:
        values = Counter(v for p in profiles if (v := comp.value(p)) is not None)
        present = sum(values.values())
        exact_pairs.append(sum(c * (c - 1) / 2 for c in values.values()))
        present_pairs.append(present * (present - 1) / 2)
    return _UStats(exact_pairs, present_pairs, sample)


def _estimate_u(
    stats: _UStats,
    comparisons: Sequence[Comparison],
    *,
    match_exact: Sequence[float],
    match_present: Sequence[float],
    sample_posterior: dict[Pattern, float],
) -> list[list[float]]:
    """u per comparison and level, with the (estimated) true matches taken out.

    Random pairs include a few true matches, and in a small file full of duplicates they dominate
    the exact-agreement counts of discriminating fields (birth dates). The first round passes
    zeros; later rounds subtract the expected matches found by the model so far.
    """
    out: list[list[float]] = []
    for k, comp in enumerate(comparisons):
        levels = len(comp.levels)
        denom = stats.present_pairs[k] - match_present[k]
        exact = (stats.exact_pairs[k] - match_exact[k]) / denom if denom > 0 else 0.0
        floor = 1.0 / max(stats.present_pairs[k], 1.0)
        u0 = min(max(exact, floor, MIN_PROBABILITY), 0.5)
        rest = [0.0] * levels
        for pattern, count in stats.sample.items():
            level = pattern[k]
            if level > 0:
                rest[level] += count * (1.0 - sample_posterior.get(pattern, 0.0))
        rest_total = sum(rest[1:])
        u = [u0]
        for level in range(1, levels):
            share = (rest[level] + 0.5) / (rest_total + 0.5 * (levels - 1))
            u.append(max(share * (1.0 - u0), MIN_PROBABILITY))
        out.append(u)
    return out


def _rule_patterns(
    profiles: Sequence[NormalizedProfile],
    rule: BlockingRule,
    comparisons: Sequence[Comparison],
    *,
    guards: GuardConfig,
    max_pairs: int,
    rng: random.Random,
) -> Counter[Pattern]:
    """Comparison patterns of the pairs one blocking pass produces, its own fields nulled."""
    blocks: dict[str, list[int]] = {}
    for i, p in enumerate(profiles):
        key = rule.key(p)
        if key:
            blocks.setdefault(key, []).append(i)
    sizes = [len(v) for v in blocks.values() if 1 < len(v) <= guards.max_block_size]
    total = sum(s * (s - 1) // 2 for s in sizes)
    keep = 1.0 if total <= max_pairs else max_pairs / total
    excluded = {k for k, c in enumerate(comparisons) if c.name in rule.fields}
    patterns: Counter[Pattern] = Counter()
    for key in sorted(blocks):
        members = blocks[key]
        if not (1 < len(members) <= guards.max_block_size):
            continue
        for x in range(len(members)):
            for y in range(x + 1, len(members)):
                if keep < 1.0 and rng.random() >= keep:
                    continue
                a, b = profiles[members[x]], profiles[members[y]]
                if not _eligible(a, b, guards):
                    continue
                patterns[
                    tuple(
                        NULL if k in excluded else c.compare(a, b)
                        for k, c in enumerate(comparisons)
                    )
                ] += 1
    return patterns


def _posterior(pattern: Pattern, log_prior_odds: float, logw: list[list[float]]) -> float:
    z = log_prior_odds
    for k, level in enumerate(pattern):
        if level != NULL:
            z += logw[k][level]
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def _em_pass(
    patterns: Counter[Pattern],
    m: list[list[float]],
    u: list[list[float]],
    *,
    max_iter: int,
    tol: float,
) -> tuple[list[list[float]], float, int, bool]:
    """EM with u fixed: returns expected match counts per comparison/level, expected matches,
    iterations, converged."""
    items = list(patterns.items())
    total = sum(patterns.values())
    lam = 0.5
    m = [row[:] for row in m]
    counts: list[list[float]] = [[0.0] * len(row) for row in m]
    expected = 0.0
    for iteration in range(1, max_iter + 1):
        logw = _log_weights(m, u)
        log_prior_odds = math.log(lam / (1.0 - lam))
        counts = [[0.0] * len(row) for row in m]
        expected = 0.0
        for pattern, count in items:
            g = _posterior(pattern, log_prior_odds, logw) * count
            expected += g
            for k, level in enumerate(pattern):
                if level != NULL:
                    counts[k][level] += g
        new_lam = min(max(expected / total, 1e-9), 1 - 1e-9)
        delta = abs(new_lam - lam)
        for k, row in enumerate(counts):
            mass = sum(row)
            if mass < 1e-6:
                continue
            new_row = [max(c / mass, MIN_PROBABILITY) for c in row]
            delta = max(delta, max(abs(x - y) for x, y in zip(new_row, m[k], strict=True)))
            m[k] = new_row
        lam = new_lam
        if delta < tol:
            return counts, expected, iteration, True
    return counts, expected, max_iter, False


def _candidate_patterns(
    profiles: Sequence[NormalizedProfile],
    comparisons: Sequence[Comparison],
    *,
    rules: Sequence[BlockingRule],
    guards: GuardConfig,
    max_pairs: int,
    rng: random.Random,
) -> dict[Pattern, float]:
    """Patterns of the candidate pairs the resolver would score (each pair once).

    Past `max_pairs` (estimated), a random sample of records contributes its candidate pairs,
    weighted up, so training a million profiles does not score every pair twice.
    """
    index = BlockIndex(profiles, rules, max_block_size=guards.max_block_size)
    bound = index.pair_count_bound()
    keep = 1.0 if bound <= max_pairs else max_pairs / bound
    patterns: dict[Pattern, float] = {}
    for i in range(len(profiles)):
        if keep < 1.0 and rng.random() >= keep:
            continue
        a = profiles[i]
        for j in index.later_neighbours(i):
            b = profiles[j]
            if _eligible(a, b, guards):
                pattern = tuple(c.compare(a, b) for c in comparisons)
                patterns[pattern] = patterns.get(pattern, 0.0) + 1.0 / keep
    return patterns


def _log_weights(m: list[list[float]], u: list[list[float]]) -> list[list[float]]:
    return [
        [math.log(mi / ui) for mi, ui in zip(mr, ur, strict=True)]
        for mr, ur in zip(m, u, strict=True)
    ]


def _estimate_prior(
    patterns: dict[Pattern, float],
    logw: list[list[float]],
    possible: float,
    *,
    max_iter: int,
) -> tuple[float, int, float]:
    """Fixed point of: expected matches among candidate pairs / pairs that could match."""
    n_candidates = sum(patterns.values())
    lam = min(max(n_candidates / possible / 2, 1e-12), 0.5)
    expected = 0.0
    iterations = 0
    for iterations in range(1, max_iter + 1):  # noqa: B007 - the count is reported
        log_prior_odds = math.log(lam / (1.0 - lam))
        expected = sum(
            _posterior(pattern, log_prior_odds, logw) * count for pattern, count in patterns.items()
        )
        new_lam = min(max(expected / possible, 1e-15), 0.5)
        done = abs(math.log(new_lam / lam)) < 1e-9
        lam = new_lam
        if done:
            break
    return lam, iterations, expected


def _keep_unreached(
    learned: Sequence[float], base: Sequence[float], reached: Sequence[float], minimum: float = 5
) -> tuple[float, ...]:
    """Base values for levels reached by fewer than `minimum` candidate pairs; the learned
    values of the other levels rescaled so the row still sums to one."""
    keep = [r < minimum for r in reached]
    if not any(keep) or all(keep):
        return tuple(learned)
    fixed = sum(b for b, k in zip(base, keep, strict=True) if k)
    free = sum(x for x, k in zip(learned, keep, strict=True) if not k)
    scale = (1.0 - fixed) / free if free > 0 else 0.0
    return tuple(
        b if k else max(x * scale, MIN_PROBABILITY)
        for x, b, k in zip(learned, base, keep, strict=True)
    )


def train(
    profiles: Sequence[NormalizedProfile],
    *,
    base: Model | None = None,
    rules: Sequence[BlockingRule] = DEFAULT_RULES,
    guards: GuardConfig = DEFAULT_GUARDS,
    seed: int = 0,
    u_samples: int = 200_000,
    max_pairs_per_rule: int = 1_000_000,
    max_candidate_pairs: int = 3_000_000,
    max_iter: int = 200,
    tol: float = 1e-6,
    rounds: int = 3,
    meta: dict[str, str] | None = None,
) -> TrainingResult:
    """Estimate m, u and the prior from (screened) profiles without labels.

    `base` supplies starting m values and the fallback for fields without data (default: the
    hand-set `initial_model`). Each round re-estimates u with the matches found so far taken
    out, then m per blocking pass, then the prior. Deterministic for a given seed.
    """
    comparisons = build_comparisons(guards)
    base = base or initial_model(comparisons)
    n_comp = len(comparisons)
    stats = _u_stats(profiles, comparisons, samples=u_samples, seed=seed, guards=guards)
    rng = random.Random(seed)
    candidates = _candidate_patterns(
        profiles,
        comparisons,
        rules=rules,
        guards=guards,
        max_pairs=max_candidate_pairs,
        rng=rng,
    )
    pass_patterns: list[tuple[str, Counter[Pattern]]] = []
    for rule in rules:
        if not rule.fields:
            continue  # same-source-id pairs teach nothing about the fields
        patterns = _rule_patterns(
            profiles, rule, comparisons, guards=guards, max_pairs=max_pairs_per_rule, rng=rng
        )
        if sum(patterns.values()) >= 10:
            pass_patterns.append((rule.name, patterns))

    n = len(profiles)
    possible = n * (n - 1) / 2
    by_system = Counter(p.system for p in profiles if p.system in guards.exclusive_systems)
    possible = max(possible - sum(c * (c - 1) / 2 for c in by_system.values()), 1.0)

    present = [sum(1 for p in profiles if c.value(p) is not None) for c in comparisons]
    match_exact = [0.0] * n_comp
    match_present = [0.0] * n_comp
    sample_posterior: dict[Pattern, float] = {}
    m = [list(base.fields[c.name].m) for c in comparisons]
    u: list[list[float]] = []
    prior = base.prior
    reports: list[PassReport] = []
    from_base: list[str] = []
    prior_iterations = 0
    expected = 0.0
    for _round in range(max(rounds, 1)):
        u = _estimate_u(
            stats,
            comparisons,
            match_exact=match_exact,
            match_present=match_present,
            sample_posterior=sample_posterior,
        )
        pooled = [[0.0] * len(c.levels) for c in comparisons]
        reports = []
        for name, patterns in pass_patterns:
            counts, pass_expected, iterations, converged = _em_pass(
                patterns, m, u, max_iter=max_iter, tol=tol
            )
            reports.append(
                PassReport(name, sum(patterns.values()), pass_expected, iterations, converged)
            )
            for k, row in enumerate(counts):
                for level, value in enumerate(row):
                    pooled[k][level] += value
        from_base = []
        for k, comp in enumerate(comparisons):
            mass = sum(pooled[k])
            if mass < 5.0 or present[k] < 2:
                # no evidence about this field in the data: keep the base model's parameters
                from_base.append(comp.name)
                m[k] = list(base.fields[comp.name].m)
                u[k] = list(base.fields[comp.name].u)
                continue
            levels = len(comp.levels)
            m[k] = [max((c + 0.01) / (mass + 0.01 * levels), MIN_PROBABILITY) for c in pooled[k]]
        logw = _log_weights(m, u)
        prior, prior_iterations, expected = _estimate_prior(
            candidates, logw, possible, max_iter=max_iter
        )
        # expected true matches among candidates, per field, to correct u in the next round
        log_prior_odds = math.log(prior / (1.0 - prior))
        match_exact = [0.0] * n_comp
        match_present = [0.0] * n_comp
        for pattern, count in candidates.items():
            g = _posterior(pattern, log_prior_odds, logw) * count
            for k, level in enumerate(pattern):
                if level != NULL:
                    match_present[k] += g
                    if level == 0:
                        match_exact[k] += g
        sample_posterior = {
            pattern: _posterior(pattern, log_prior_odds, logw) for pattern in stats.sample
        }

    # Levels the data never reaches (a stale phone in a file without dates) keep the base
    # model's m and u; EM would otherwise drive their m to zero and turn them into evidence
    # *against* a match.
    reached = [[0.0] * len(c.levels) for c in comparisons]
    for pattern, count in candidates.items():
        for k, level in enumerate(pattern):
            if level != NULL:
                reached[k][level] += count
    fields: dict[str, FieldParams] = {}
    for k, comp in enumerate(comparisons):
        if comp.name in from_base:
            fields[comp.name] = base.fields[comp.name]
            continue
        fields[comp.name] = FieldParams(
            comp.levels,
            _keep_unreached(m[k], base.fields[comp.name].m, reached[k]),
            _keep_unreached(u[k], base.fields[comp.name].u, reached[k]),
            comp.tf,
        )
    model_meta: dict[str, str | int | float] = {
        "source": "em.train",
        "records": n,
        "seed": seed,
        "u_samples": u_samples,
        "rounds": rounds,
    }
    model_meta.update(meta or {})
    model = Model(fields=fields, prior=prior, population=max(n, 2), meta=model_meta)
    report = TrainingReport(
        records=n,
        u_samples=u_samples,
        passes=tuple(reports),
        prior_iterations=prior_iterations,
        candidate_pairs=round(sum(candidates.values())),
        expected_matches=expected,
        fields_from_base=tuple(from_base),
    )
    return TrainingResult(model, report)
