"""EM training: deterministic for a seed, learns sensible m and u, keeps fields without data."""

from __future__ import annotations

import random

from handoff.domain.identity import (
    NormalizedProfile,
    Profile,
    default_model,
    initial_model,
    prepare,
    resolve_prepared,
    train,
)

FIRST = [
    "olivia",
    "liam",
    "emma",
    "noah",
    "ava",
    "elijah",
    "sophia",
    "lucas",
    "mia",
    "mason",
    "harper",
    "logan",
    "ella",
    "james",
    "aria",
    "henry",
    "chloe",
    "jack",
    "zoe",
    "owen",
]
LAST = [
    "nguyen",
    "garcia",
    "okafor",
    "schmidt",
    "rossi",
    "kowalski",
    "tanaka",
    "dubois",
    "silva",
    "murphy",
    "cohen",
    "larsen",
    "popescu",
    "novak",
    "haddad",
    "fischer",
    "moreau",
    "kaur",
]
STREETS = ["oak", "maple", "cedar", "pine", "elm", "birch", "willow", "aspen", "spruce", "alder"]


def typo(rng: random.Random, text: str) -> str:
    if len(text) < 3:
        return text
    i = rng.randrange(len(text) - 1)
    return text[:i] + text[i + 1] + text[i] + text[i + 2 :]


def population(seed: int = 7, people: int = 250) -> tuple[list[Profile], dict[str, int]]:
    """People with 0-2 noisy duplicates each; returns profiles and record → person."""
    rng = random.Random(seed)
    profiles: list[Profile] = []
    truth: dict[str, int] = {}
    for i in range(people):
        base = {
            "first_name": rng.choice(FIRST),
            "last_name": rng.choice(LAST),
            "date_of_birth": f"{rng.randint(1940, 2005)}-{rng.randint(1, 12)}-{rng.randint(1, 28)}",
            "zip": f"{rng.randint(10000, 10999)}",
            "address": f"{rng.randint(1, 300)} {rng.choice(STREETS)}{rng.choice(STREETS)} street",
            "city": rng.choice(["springfield", "riverton", "lakeside", "fairview"]),
        }
        for k in range(1 + rng.choice([0, 0, 1, 1, 2])):
            fields = dict(base)
            if k:
                field = rng.choice(["first_name", "last_name", "address", "date_of_birth", "zip"])
                fields[field] = typo(rng, fields[field]) if rng.random() < 0.8 else None
            rid = f"p{i}-{k}"
            truth[rid] = i
            profiles.append(Profile(rid, system="crm", external_id=rid, **fields))  # type: ignore[arg-type]
    return profiles, truth


def screened(profiles: list[Profile]) -> list[NormalizedProfile]:
    return prepare(profiles)[0]


def test_training_is_deterministic_for_a_seed() -> None:
    profiles, _ = population()
    data = screened(profiles)
    a = train(data, seed=3, u_samples=20_000)
    b = train(data, seed=3, u_samples=20_000)
    assert a.model.version == b.model.version
    assert a.model.fields == b.model.fields


def test_training_learns_m_above_u_and_a_plausible_prior() -> None:
    profiles, truth = population()
    result = train(screened(profiles), seed=1, u_samples=20_000)
    model = result.model
    for name in ("first_name", "last_name", "dob", "zip", "street"):
        params = model.fields[name]
        assert params.m[0] > 0.5, name
        assert params.m[0] > 10 * params.u[0], name
    assert model.fields["city"].m[0] > model.fields["city"].u[0]  # four cities: weak evidence
    true_pairs = sum(n * (n - 1) / 2 for n in _counts(truth).values())
    possible = len(profiles) * (len(profiles) - 1) / 2
    assert 0.3 < model.prior * possible / true_pairs < 3.0
    assert model.population == len(profiles)
    assert {p.rule for p in result.report.passes} >= {"zl", "db", "nm"}


def test_fields_without_data_keep_the_base_values() -> None:
    profiles, _ = population()
    result = train(screened(profiles), seed=1, u_samples=20_000)
    base = initial_model()
    assert result.model.fields["email"] == base.fields["email"]
    assert result.model.fields["phone"] == base.fields["phone"]
    assert set(result.report.fields_from_base) == {"email", "phone", "address2", "state"}


def test_trained_model_resolves_its_own_data() -> None:
    profiles, truth = population(seed=11)
    data, shared = prepare(profiles)
    model = train(data, seed=0, u_samples=20_000).model
    result = resolve_prepared(data, model, shared=shared)
    predicted = {d.record_id: d.customer_id for d in result.decisions}
    pairs = [(a, b) for a in predicted for b in predicted if a < b]
    tp = sum(1 for a, b in pairs if predicted[a] == predicted[b] and truth[a] == truth[b])
    fp = sum(1 for a, b in pairs if predicted[a] == predicted[b] and truth[a] != truth[b])
    fn = sum(1 for a, b in pairs if predicted[a] != predicted[b] and truth[a] == truth[b])
    assert fp <= 1
    assert tp / (tp + fn) > 0.9
    # and the shipped model, not trained on this data, is not far behind
    shipped = resolve_prepared(data, default_model(), shared=shared)
    predicted = {d.record_id: d.customer_id for d in shipped.decisions}
    tp2 = sum(1 for a, b in pairs if predicted[a] == predicted[b] and truth[a] == truth[b])
    assert tp2 / (tp + fn) > 0.8


def _counts(truth: dict[str, int]) -> dict[int, int]:
    out: dict[int, int] = {}
    for person in truth.values():
        out[person] = out.get(person, 0) + 1
    return out
