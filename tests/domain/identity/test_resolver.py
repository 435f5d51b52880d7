"""The live decision (`decide`), pair scoring (`score`) and the batch clusterer."""

from __future__ import annotations

import json
from dataclasses import replace

from handoff.domain.identity import (
    DEFAULT_GUARDS,
    Candidate,
    CustomerInfo,
    DecisionKind,
    GuardConfig,
    Model,
    NormalizeConfig,
    NormalizedProfile,
    Profile,
    Rule,
    Scorer,
    Thresholds,
    blocking_keys,
    decide,
    normalize,
    resolve_batch,
    score,
    screen,
    split,
)
from tests.domain.identity.conftest import background, clusters_of, profile

US = NormalizeConfig(default_region="US")


def n(p: Profile) -> NormalizedProfile:
    return screen(normalize(p, US))


def ada(**kw: object) -> NormalizedProfile:
    fields: dict[str, object] = {
        "first_name": "Ada",
        "last_name": "Lovelace",
        "date_of_birth": "1815-12-10",
        "zip": "02139",
        "address": "12 Analytical Street",
        "city": "Cambridge",
    }
    fields.update(kw)
    return n(profile(**fields))


# ------------------------------------------------------------------------------------------
# score


def test_score_gives_per_field_evidence(model: Model) -> None:
    a = ada(email="ada@engine.org")
    b = ada(first_name="Adda", email="ADA@engine.org ")
    match = score(a, b, model)
    assert match.probability > 0.99
    fields = {e.field: e for e in match.evidence}
    assert fields["email"].level == "exact"
    assert fields["first_name"].level == "jw_0.92"
    assert fields["phone"].level == "null" and fields["phone"].weight == 0.0
    assert abs(match.weight - (model.prior_weight + sum(e.weight for e in match.evidence))) < 1e-9


def test_different_people_score_low(model: Model) -> None:
    a = ada()
    b = n(profile(first_name="Grace", last_name="Hopper", date_of_birth="1906-12-09", zip="10001"))
    assert score(a, b, model).probability < 0.01


def test_placeholder_values_are_shown_as_ignored(model: Model) -> None:
    a = ada(email="test@test.com")
    b = ada(email="test@test.com")
    fields = {e.field: e for e in score(a, b, model).evidence}
    assert fields["email"].level == "null"
    assert fields["email"].note == "ignored: email:placeholder"


# ------------------------------------------------------------------------------------------
# decide (live)


def cand(p: NormalizedProfile, customer: str) -> Candidate:
    return Candidate(profile=p, customer_id=customer)


def test_no_candidates_means_a_new_customer(model: Model) -> None:
    d = decide(ada(), [], model)
    assert d.kind is DecisionKind.NEW and d.rule is Rule.NO_CANDIDATES


def test_same_source_id_merges(model: Model) -> None:
    old = ada(system="pos", external_id="C-9", first_name="Ada")
    new = ada(system="pos", external_id="C-9", first_name="Augusta", date_of_birth=None)
    d = decide(new, [cand(old, "cus_1")], model)
    assert d.kind is DecisionKind.MERGE and d.rule is Rule.SAME_SOURCE_ID
    assert d.customer_id == "cus_1" and d.score == 1.0


def test_exact_email_merges_deterministically(model: Model) -> None:
    old = ada(email="ada@engine.org", system="web", external_id="1")
    new = n(profile(first_name="Ada", email="Ada@Engine.org", system="pos", external_id="7"))
    d = decide(new, [cand(old, "cus_1")], model)
    assert d.kind is DecisionKind.MERGE and d.rule is Rule.EXACT_EMAIL
    assert d.match is not None and d.match.record_b == old.record_id


def test_probabilistic_merge_review_and_new(model: Model) -> None:
    old = ada()
    strong = ada(first_name="Adah")
    d = decide(strong, [cand(old, "cus_1")], model)
    assert d.kind is DecisionKind.MERGE and d.rule is Rule.PROBABILISTIC

    weak = n(profile(first_name="Ada", last_name="Lovelace"))  # a name and nothing else
    p = score(weak, old, model).probability
    between = Thresholds(merge=min(0.999999, p + (1 - p) / 2), review=p / 2)
    d = decide(weak, [cand(old, "cus_1")], model, between)
    assert d.kind is DecisionKind.REVIEW and d.customer_id == "cus_1"
    assert d.reviews and d.reviews[0].match is not None

    stranger = n(profile(first_name="Grace", last_name="Hopper", zip="02139"))
    d = decide(stranger, [cand(old, "cus_1")], model)
    assert d.kind is DecisionKind.NEW and d.rule is Rule.BELOW_THRESHOLD
    assert d.score is not None and d.score < 0.5


def test_household_email_goes_to_review_live(model: Model) -> None:
    john = n(profile(first_name="John", last_name="Smith", email="smiths@home.net", zip="02139"))
    jane = n(profile(first_name="Jane", last_name="Smith", email="smiths@home.net", zip="02139"))
    d = decide(jane, [cand(john, "cus_1")], model)
    assert d.kind is DecisionKind.REVIEW and d.rule is Rule.CONFLICT


def test_a_conflict_with_any_member_blocks_the_customer(model: Model) -> None:
    john = n(profile(first_name="John", last_name="Smith", email="smiths@home.net"))
    j = n(profile(first_name="J", last_name="Smith", email="smiths@home.net"))
    jane = n(profile(first_name="Jane", last_name="Smith", email="smiths@home.net"))
    d = decide(jane, [cand(j, "cus_1"), cand(john, "cus_1")], model)
    assert d.kind is not DecisionKind.MERGE


def test_new_profile_matching_two_customers_merges_once_and_flags_the_pair(model: Model) -> None:
    a = ada(email="ada@engine.org")
    b = ada(phone="+1 617 555 0142")
    new = ada(email="ada@engine.org", phone="+1 617 555 0142")
    d = decide(new, [cand(a, "cus_1"), cand(b, "cus_2")], model)
    assert d.kind is DecisionKind.MERGE
    winner, other = (a, b) if d.customer_id == "cus_1" else (b, a)
    assert d.matched_record_id == winner.record_id
    assert [r.record_b for r in d.reviews] == [other.record_id]
    assert len(d.reviews) == 1 and "maybe one customer" in d.reviews[0].reason


def test_cluster_guards_live(model: Model) -> None:
    guards = GuardConfig(exclusive_systems=frozenset({"loyalty"}), max_cluster_size=3)
    member = ada(email="ada@engine.org", system="loyalty", external_id="L1")
    other = ada(email="ada@engine.org", system="loyalty", external_id="L2")
    info = {"cus_1": CustomerInfo(size=2, source_keys=frozenset({("loyalty", "L1")}))}
    d = decide(other, [cand(member, "cus_1")], model, guards=guards, customers=info)
    assert d.kind is DecisionKind.REVIEW
    # an exclusive system's other id is not even a candidate in the batch; live it is refused
    web = ada(email="ada@engine.org", system="web", external_id="W")
    full = {"cus_1": CustomerInfo(size=3, source_keys=frozenset({("loyalty", "L1")}))}
    d = decide(web, [cand(member, "cus_1")], model, guards=guards, customers=full)
    assert d.kind is DecisionKind.REVIEW and d.rule is Rule.MAX_CLUSTER_SIZE
    assert d.breaches and d.breaches[0].guard == "max_cluster_size"


def test_decisions_are_json_data(model: Model) -> None:
    d = decide(ada(email="a@b.co"), [cand(ada(email="a@b.co"), "cus_1")], model)
    text = json.dumps(d.to_dict())
    assert '"kind": "merge"' in text and '"evidence"' in text
    s = split("cus_1", ("r1", "r2"), reason="two sisters")
    assert s.kind is DecisionKind.SPLIT and s.records == ("r1", "r2") and s.note == "two sisters"


def test_scorer_reuse_matches_score(model: Model) -> None:
    scorer = Scorer(model)
    a, b = ada(), ada(first_name="Adah")
    assert scorer.match(a, b).probability == score(a, b, model).probability


# ------------------------------------------------------------------------------------------
# blocking keys for the live lookup


def test_blocking_keys_exclude_guarded_values() -> None:
    keys = blocking_keys(ada(email="ada@engine.org", phone="+1 617 555 0142"))
    assert "em:ada@engine.org" in keys and "ph:+16175550142" in keys
    assert any(k.startswith("zl:02139|") for k in keys)
    placeholder = blocking_keys(ada(email="test@test.com"))
    assert not any("test@test.com" in k for k in placeholder)


def test_swapped_names_share_a_key() -> None:
    a = ada()
    b = ada(first_name="Lovelace", last_name="Ada")
    assert {k for k in blocking_keys(a) if k.startswith("nm:")} == {
        k for k in blocking_keys(b) if k.startswith("nm:")
    }


# ------------------------------------------------------------------------------------------
# batch


def test_batch_clusters_and_decides_every_record(model: Model) -> None:
    dupes = [
        profile(record_id="x1", first_name="Ada", last_name="Lovelace", email="ada@engine.org"),
        profile(record_id="x2", first_name="Ada", last_name="Lovelace", email="ADA@engine.org"),
        profile(
            record_id="x3",
            first_name="Ada",
            last_name="Lovelace",
            date_of_birth="1815-12-10",
            zip="02139",
            address="12 Analytical St",
            email="ada.l@other.net",
        ),
        profile(
            record_id="x4",
            first_name="Adah",
            last_name="Lovelace",
            date_of_birth="1815-12-10",
            zip="02139",
            address="12 Analytical Street",
        ),
    ]
    people = background()
    # the background stands in for a population: 40 people on one street, ten per surname, are
    # only told apart by how common that street and surname are (term frequencies, which a batch
    # this small does not use by default)
    result = resolve_batch([*people, *dupes], model, normalize_config=US, term_frequencies=True)
    assert len(result.decisions) == len(people) + len(dupes)
    clusters = clusters_of(result.decisions)
    assert clusters["x1"] == clusters["x2"] == "x1"  # cluster id: the smallest record id
    assert clusters["x3"] == clusters["x4"]
    assert len({clusters[p.record_id] for p in people}) == len(people)
    by_id = {d.record_id: d for d in result.decisions}
    assert by_id["x2"].rule is Rule.EXACT_EMAIL and by_id["x2"].matched_record_id == "x1"
    assert by_id["x4"].rule is Rule.PROBABILISTIC
    assert all(by_id[p.record_id].kind is DecisionKind.NEW for p in people)
    assert result.stats.records == len(people) + len(dupes)
    assert result.clusters()["x1"] == ["x1", "x2"]


def test_deterministic_only_ignores_probabilistic_links(model: Model) -> None:
    a = profile(first_name="Ada", last_name="Lovelace", date_of_birth="1815-12-10", zip="02139")
    b = profile(first_name="Ada", last_name="Lovelace", date_of_birth="1815-12-10", zip="02139")
    both = resolve_batch([*background(), a, b], model, normalize_config=US)
    assert clusters_of(both.decisions)[a.record_id] == clusters_of(both.decisions)[b.record_id]
    det = resolve_batch([*background(), a, b], model, normalize_config=US, deterministic_only=True)
    assert clusters_of(det.decisions)[a.record_id] != clusters_of(det.decisions)[b.record_id]


def test_oversized_blocks_are_skipped_and_reported(model: Model) -> None:
    crowd = [profile(first_name="Ann", last_name=f"Lee{i}", zip="02139") for i in range(12)]
    guards = replace(DEFAULT_GUARDS, max_block_size=10)
    result = resolve_batch(crowd, model, guards=guards, normalize_config=US)
    assert result.stats.skipped_blocks >= 1
    assert any(b.guard == "max_block_size" for b in result.breaches)
