"""The Fellegi-Sunter model: m and u per comparison level, a prior, match weight → probability.

For a pair of records and a comparison at level `l`, m = P(l | same person) and
u = P(l | different people). The pair's match weight is log2 of the prior odds plus, per field,
log2(m / u) (a missing value contributes 0). The posterior probability is 2^W / (1 + 2^W).

The prior is the probability that two records drawn at random are the same person, so it depends
on how many records there are: `for_population` rescales it (a store ten times larger makes any
given pair ten times less likely a priori). Term-frequency adjustment replaces the average u of an
exact agreement with the frequency of the agreed value itself, so agreeing on "smith" counts for
less than agreeing on "sondergeld" (`TermFrequencies`).

Parameters are estimated without labels by `em.train`; a model is versioned by a fingerprint of
its parameters and ships as JSON (`default_model.json` in this package).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import Any

from handoff.domain.identity.comparisons import NULL, Comparison, build_comparisons
from handoff.domain.identity.decisions import FieldEvidence, Match
from handoff.domain.identity.guards import DEFAULT_GUARDS, GuardConfig
from handoff.domain.identity.normalize import NormalizedProfile

FORMAT = 1
MIN_PROBABILITY = 1e-9  # floor for m and u so a weight is always finite
_TF_CACHE_LIMIT = 1_000_000  # values per field whose adjusted weight a scorer keeps


@dataclass(frozen=True, slots=True)
class FieldParams:
    """m and u per level (strongest level first); `tf` turns on term-frequency adjustment."""

    levels: tuple[str, ...]
    m: tuple[float, ...]
    u: tuple[float, ...]
    tf: bool = False

    def __post_init__(self) -> None:
        if not (len(self.levels) == len(self.m) == len(self.u)):
            raise ValueError("levels, m and u must have the same length")
        if any(not (0.0 < p <= 1.0) for p in (*self.m, *self.u)):
            raise ValueError("m and u must be probabilities in (0, 1]")

    def weight(self, level: int) -> float:
        if level == NULL:
            return 0.0
        return math.log2(self.m[level] / self.u[level])


@dataclass(frozen=True, slots=True)
class Model:
    """A versioned Fellegi-Sunter parameter set.

    `prior` is P(two random records are the same person) for a population of `population`
    records. `version` is a fingerprint of the parameters unless given.
    """

    fields: Mapping[str, FieldParams]
    prior: float
    population: int
    version: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (0.0 < self.prior < 1.0):
            raise ValueError("prior must be in (0, 1)")
        if self.population < 2:
            raise ValueError("population must be at least 2")
        if not self.version:
            object.__setattr__(self, "version", self.fingerprint())

    # ---- weights and probabilities

    @property
    def prior_weight(self) -> float:
        return math.log2(self.prior / (1.0 - self.prior))

    def level_weight(self, name: str, level: int) -> float:
        params = self.fields.get(name)
        return 0.0 if params is None else params.weight(level)

    @staticmethod
    def probability(weight: float) -> float:
        """Posterior probability from a total match weight (log2 odds)."""
        if weight >= 0:
            return 1.0 / (1.0 + math.pow(2.0, -weight))
        odds = math.pow(2.0, weight)
        return odds / (1.0 + odds)

    @staticmethod
    def weight_for(probability: float) -> float:
        """Inverse of `probability` (for thresholds expressed as probabilities)."""
        p = min(max(probability, 1e-15), 1 - 1e-15)
        return math.log2(p / (1.0 - p))

    def for_population(self, population: int) -> Model:
        """The same model with its prior rescaled to a population of `population` records.

        The expected number of other records that are the same person stays constant, so the
        per-pair prior scales with 1 / (population - 1).
        """
        if population == self.population or population < 2:
            return self
        per_record = self.prior * (self.population - 1)
        prior = min(max(per_record / (population - 1), 1e-15), 0.5)
        return replace(self, prior=prior, population=population, version="")

    # ---- serialisation

    def params_dict(self) -> dict[str, Any]:
        """The parameters as JSON-ready data (6 significant digits: the stored precision)."""
        return {
            "format": FORMAT,
            "prior": _round(self.prior),
            "population": self.population,
            "comparisons": {
                name: {
                    "levels": list(p.levels),
                    "m": [_round(x) for x in p.m],
                    "u": [_round(x) for x in p.u],
                    "tf": p.tf,
                }
                for name, p in self.fields.items()
            },
        }

    def fingerprint(self) -> str:
        """A version id derived from the parameters (same parameters → same version)."""
        canonical = json.dumps(self.params_dict(), sort_keys=True, separators=(",", ":"))
        return "fs-" + hashlib.sha256(canonical.encode()).hexdigest()[:12]

    def to_dict(self) -> dict[str, Any]:
        data = self.params_dict()
        data["version"] = self.version
        data["meta"] = dict(self.meta)
        return data

    def to_json(self) -> str:
        """Readable JSON: one line per comparison field's list."""
        data = self.to_dict()
        comps = data.pop("comparisons")
        head = json.dumps(data, indent=2)[:-2]
        lines = [head + ',\n  "comparisons": {']
        for i, (name, spec) in enumerate(comps.items()):
            sep = "," if i < len(comps) - 1 else ""
            inner = ",\n".join(f"      {json.dumps(k)}: {json.dumps(v)}" for k, v in spec.items())
            lines.append(f"    {json.dumps(name)}: {{\n{inner}\n    }}{sep}")
        lines.append("  }\n}\n")
        return "\n".join(lines)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Model:
        if data.get("format") != FORMAT:
            raise ValueError(f"unsupported model format {data.get('format')!r}")
        fields = {
            name: FieldParams(
                levels=tuple(str(label) for label in spec["levels"]),
                m=tuple(float(x) for x in spec["m"]),
                u=tuple(float(x) for x in spec["u"]),
                tf=bool(spec.get("tf", False)),
            )
            for name, spec in data["comparisons"].items()
        }
        return cls(
            fields=fields,
            prior=float(data["prior"]),
            population=int(data["population"]),
            version=str(data.get("version") or ""),
            meta=dict(data.get("meta") or {}),
        )

    @classmethod
    def from_json(cls, text: str) -> Model:
        return cls.from_dict(json.loads(text))


def _round(x: float) -> float:
    return float(f"{x:.6g}")


def default_model() -> Model:
    """The model that ships with the package (see docs/identity.md for how it was trained)."""
    text = resources.files(__package__).joinpath("default_model.json").read_text(encoding="utf-8")
    return Model.from_json(text)


# --------------------------------------------------------------------------------------------
# term frequencies


class TermFrequencies:
    """How often each value occurs, per field, in the population being resolved.

    Built from the batch itself (`from_profiles`) or, live, from the store's own counts. A value
    not in the table counts as seen once.
    """

    def __init__(self, counts: Mapping[str, Mapping[str, int]], total: int) -> None:
        self._counts = counts
        self.total = max(total, 1)

    def frequency(self, name: str, value: str) -> float | None:
        table = self._counts.get(name)
        if table is None:
            return None
        return max(table.get(value, 1), 1) / self.total

    @classmethod
    def from_profiles(
        cls,
        profiles: Iterable[NormalizedProfile],
        comparisons: tuple[Comparison, ...] | None = None,
    ) -> TermFrequencies:
        comps = [c for c in (comparisons or build_comparisons()) if c.tf]
        counts: dict[str, dict[str, int]] = {c.name: {} for c in comps}
        total = 0
        for p in profiles:
            total += 1
            for c in comps:
                value = c.value(p)
                if value is not None:
                    table = counts[c.name]
                    table[value] = table.get(value, 0) + 1
        return cls(counts, total)


# --------------------------------------------------------------------------------------------
# scoring


class Scorer:
    """Scores pairs of normalised profiles with a model (and optional term frequencies).

    `levels` + `total_weight` are the fast path used for millions of candidate pairs; `match`
    builds the full per-field evidence for the pairs that matter.
    """

    def __init__(
        self,
        model: Model,
        *,
        tf: TermFrequencies | None = None,
        guards: GuardConfig = DEFAULT_GUARDS,
    ) -> None:
        self.model = model
        self.tf = tf
        self.comparisons = build_comparisons(guards)
        weights: list[tuple[float, ...]] = []
        top_m: list[float] = []
        for comp in self.comparisons:
            params = model.fields.get(comp.name)
            if params is None:
                weights.append(tuple(0.0 for _ in comp.levels))
                top_m.append(0.0)
                continue
            if params.levels != comp.levels:
                raise ValueError(
                    f"model {model.version} has levels {params.levels} for {comp.name}, "
                    f"the engine uses {comp.levels}"
                )
            weights.append(tuple(params.weight(i) for i in range(len(comp.levels))))
            top_m.append(params.m[0] if (params.tf and comp.tf) else 0.0)
        self._weights = tuple(weights)
        self._top_m = tuple(top_m)
        self._funcs = tuple(c.compare for c in self.comparisons)
        self._tf_index = tuple(i for i, m0 in enumerate(self._top_m) if m0 > 0.0 and tf is not None)
        self._tf_cache: tuple[dict[str, float | None], ...] = tuple({} for _ in self.comparisons)
        self.prior_weight = model.prior_weight

    def levels(self, a: NormalizedProfile, b: NormalizedProfile) -> tuple[int, ...]:
        return tuple(f(a, b) for f in self._funcs)

    def _tf_weight(self, i: int, a: NormalizedProfile, b: NormalizedProfile) -> float | None:
        if self.tf is None:
            return None
        comp = self.comparisons[i]
        va = comp.value(a)
        if va is None or va != comp.value(b):
            return None
        return self._tf_value_weight(i, va)

    def _tf_value_weight(self, i: int, value: str) -> float | None:
        """The term-frequency adjusted weight of an exact agreement on `value` (memoised: it
        depends on the value alone, and a batch asks for the same few thousand values millions
        of times)."""
        cache = self._tf_cache[i]
        if value in cache:
            return cache[value]
        assert self.tf is not None
        freq = self.tf.frequency(self.comparisons[i].name, value)
        weight = None if freq is None else math.log2(self._top_m[i] / max(freq, MIN_PROBABILITY))
        if len(cache) < _TF_CACHE_LIMIT:
            cache[value] = weight
        return weight

    def total_weight(
        self, levels: tuple[int, ...], a: NormalizedProfile, b: NormalizedProfile
    ) -> float:
        total = self.prior_weight
        weights = self._weights
        for i, level in enumerate(levels):
            if level != NULL:
                total += weights[i][level]
        for i in self._tf_index:
            if levels[i] == 0:
                adjusted = self._tf_weight(i, a, b)
                if adjusted is not None:
                    total += adjusted - weights[i][0]
        return total

    def probability(self, a: NormalizedProfile, b: NormalizedProfile) -> float:
        return Model.probability(self.total_weight(self.levels(a, b), a, b))

    def match(
        self,
        a: NormalizedProfile,
        b: NormalizedProfile,
        levels: tuple[int, ...] | None = None,
    ) -> Match:
        """Score a pair with per-field evidence."""
        levels = self.levels(a, b) if levels is None else levels
        evidence: list[FieldEvidence] = []
        for i, (comp, level) in enumerate(zip(self.comparisons, levels, strict=True)):
            note = _guard_note(comp.name, a, b)
            if level == NULL:
                evidence.append(
                    FieldEvidence(comp.name, "null", 0.0, comp.value(a), comp.value(b), note)
                )
                continue
            weight = self._weights[i][level]
            if level == 0 and i in self._tf_index:
                adjusted = self._tf_weight(i, a, b)
                if adjusted is not None:
                    weight = adjusted
                    note = "term-frequency adjusted"
            if comp.name == "phone" and level == 1 and a.phone is not None and a.phone == b.phone:
                note = "same number seen too far apart in time: partial evidence only"
            evidence.append(
                FieldEvidence(
                    comp.name, comp.levels[level], weight, comp.value(a), comp.value(b), note
                )
            )
        total = self.prior_weight + sum(e.weight for e in evidence)
        return Match(
            record_a=a.record_id,
            record_b=b.record_id,
            probability=Model.probability(total),
            weight=total,
            evidence=tuple(evidence),
            model_version=self.model.version,
        )


_FLAG_KIND = {"street": "address", "street_number": "address", "address2": "address"}


def _guard_note(name: str, a: NormalizedProfile, b: NormalizedProfile) -> str | None:
    """Why a field gave no evidence when a guard flagged its value (placeholder or shared)."""
    kinds = {name, _FLAG_KIND.get(name, name)}
    for p in (a, b):
        for flag in sorted(p.flags):
            kind, _, what = flag.partition(":")
            if kind in kinds and what in {"placeholder", "shared"}:
                return f"ignored: {flag}"
    return None
