"""The Fellegi-Sunter model: weights, probabilities, the prior, serialisation, term frequencies."""

from __future__ import annotations

import itertools
import math

import pytest

from handoff.domain.identity import (
    FieldParams,
    Model,
    NormalizeConfig,
    Profile,
    Scorer,
    TermFrequencies,
    build_comparisons,
    default_model,
    initial_model,
    normalize,
)

US = NormalizeConfig(default_region="US")


def test_probability_and_weight_are_inverse() -> None:
    for p in (1e-9, 0.01, 0.5, 0.8, 0.99, 0.999999):
        assert math.isclose(Model.probability(Model.weight_for(p)), p, rel_tol=1e-9)
    assert Model.probability(0.0) == 0.5
    assert Model.probability(2000.0) == 1.0
    assert Model.probability(-2000.0) == 0.0


def test_level_weight_is_log2_m_over_u() -> None:
    params = FieldParams(("exact", "else"), (0.9, 0.1), (0.01, 0.99))
    assert math.isclose(params.weight(0), math.log2(90))
    assert params.weight(-1) == 0.0
    with pytest.raises(ValueError):
        FieldParams(("exact", "else"), (0.9, 0.1), (0.0, 1.0))


def test_prior_scales_with_population() -> None:
    model = default_model()
    bigger = model.for_population(model.population * 10)
    expected = model.prior * (model.population - 1) / (bigger.population - 1)
    assert math.isclose(bigger.prior, expected)
    assert bigger.version != model.version
    assert model.for_population(model.population) is model


def test_json_round_trip_keeps_the_version() -> None:
    model = default_model()
    again = Model.from_json(model.to_json())
    assert again.version == model.version == model.fingerprint()
    assert again.fields == model.fields
    assert again.meta["trained_on"].startswith("FEBRL2")


def test_default_model_fits_the_engine() -> None:
    model = default_model()
    comps = build_comparisons()
    assert set(model.fields) == {c.name for c in comps}
    for comp in comps:
        assert model.fields[comp.name].levels == comp.levels
        # agreement is evidence for a match, disagreement against
        assert model.level_weight(comp.name, 0) > 0
        assert model.level_weight(comp.name, len(comp.levels) - 1) < 0
    Scorer(model)  # would raise on a level mismatch


def test_a_model_with_other_levels_is_refused() -> None:
    model = initial_model()
    fields = dict(model.fields)
    fields["zip"] = FieldParams(("exact", "else"), (0.9, 0.1), (0.01, 0.99))
    with pytest.raises(ValueError, match="levels"):
        Scorer(Model(fields=fields, prior=model.prior, population=model.population))


def test_common_surname_counts_for_less_than_a_rare_one() -> None:
    letters = ["".join(t) for t in itertools.product("bcdfgklmnprstvz", "aeiou", "lnrst", "aeiou")]
    people = [Profile(f"o{i}", last_name=f"{name}ova") for i, name in enumerate(letters)]
    people += [Profile(f"s{i}", first_name="Jo", last_name="Smith") for i in range(50)]
    people += [Profile("r1", first_name="X", last_name="Sondergeld")]
    people += [Profile("r2", first_name="Y", last_name="Sondergeld")]
    normalized = [normalize(p, US) for p in people]
    tf = TermFrequencies.from_profiles(normalized)
    scorer = Scorer(default_model(), tf=tf)
    smiths = scorer.match(normalized[-3], normalized[-4])
    rare = scorer.match(normalized[-2], normalized[-1])
    weight = {m: {e.field: e for e in m.evidence}["last_name"] for m in (smiths, rare)}
    assert weight[rare].weight > weight[smiths].weight + 3
    assert weight[rare].note == "term-frequency adjusted"
    plain = Scorer(default_model())
    base = {e.field: e for e in plain.match(normalized[-3], normalized[-4]).evidence}["last_name"]
    assert weight[smiths].weight < base.weight < weight[rare].weight
