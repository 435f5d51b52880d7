"""Blocking: every pair sharing a key exactly once, oversized blocks skipped and reported."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from handoff.domain.identity import NormalizedProfile, candidate_pairs
from handoff.domain.identity.blocking import BlockIndex, BlockingRule

RULES = (
    BlockingRule("a", lambda p: p.zip, frozenset({"zip"})),
    BlockingRule("b", lambda p: p.last_name, frozenset({"last_name"})),
)


def people(values: list[tuple[str | None, str | None]]) -> list[NormalizedProfile]:
    return [
        NormalizedProfile(record_id=f"r{i}", zip=z, last_name=last)
        for i, (z, last) in enumerate(values)
    ]


@settings(max_examples=100)
@given(
    st.lists(
        st.tuples(
            st.one_of(st.none(), st.sampled_from(["1", "2", "3"])),
            st.one_of(st.none(), st.sampled_from(["x", "y"])),
        ),
        max_size=25,
    )
)
def test_pairs_are_exactly_the_pairs_sharing_a_key(
    values: list[tuple[str | None, str | None]],
) -> None:
    profiles = people(values)
    got = list(candidate_pairs(profiles, RULES, max_block_size=1000))
    assert len(got) == len(set(got))
    assert all(i < j for i, j in got)
    expected = {
        (i, j)
        for i, j in itertools.combinations(range(len(values)), 2)
        if (values[i][0] is not None and values[i][0] == values[j][0])
        or (values[i][1] is not None and values[i][1] == values[j][1])
    }
    assert set(got) == expected


def test_oversized_blocks_are_skipped_but_other_keys_still_pair() -> None:
    profiles = people([("1", "x"), ("1", "x"), ("1", "y"), ("2", "y")])
    index = BlockIndex(profiles, RULES, max_block_size=2)
    assert index.skipped == [("a:1", 3)]
    assert set(index.pairs()) == {(0, 1), (2, 3)}
