"""Helpers for the identity engine tests: small hand-made populations, no I/O."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import pytest

from handoff.domain.identity import (
    DEFAULT_GUARDS,
    GuardConfig,
    Model,
    NormalizeConfig,
    Profile,
    default_model,
)

_ids = itertools.count()

# A small background of distinct people, so batch tests have a realistic population to score
# against (term frequencies, prior rescaling) without any file.
_FIRST = ["olivia", "liam", "emma", "noah", "ava", "elijah", "sophia", "lucas", "mia", "mason"]
_LAST = ["nguyen", "garcia", "okafor", "schmidt", "rossi", "kowalski", "tanaka", "dubois"]


def profile(**fields: object) -> Profile:
    """A profile with a fresh record id unless one is given."""
    fields.setdefault("record_id", f"r{next(_ids)}")
    return Profile(**fields)  # type: ignore[arg-type]


def background(n: int = 40) -> list[Profile]:
    """n distinct people with distinct names, birth dates, postcodes and emails."""
    out = []
    for i in range(n):
        first = _FIRST[i % len(_FIRST)]
        last = _LAST[(i // len(_FIRST)) % len(_LAST)]
        out.append(
            profile(
                record_id=f"bg{i}",
                system="crm",
                external_id=f"bg{i}",
                first_name=first.title(),
                last_name=last.title(),
                email=f"{first}.{last}{i}@example-mail.org",
                date_of_birth=f"19{50 + i % 40}-0{1 + i % 9}-1{i % 10}",
                zip=f"{3000 + i}",
                address=f"{i + 1} Background Street",
                city="Springfield",
            )
        )
    return out


def clusters_of(decisions: Iterable[object]) -> dict[str, str]:
    return {d.record_id: d.customer_id for d in decisions}  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def model() -> Model:
    return default_model()


@pytest.fixture
def guards() -> GuardConfig:
    return DEFAULT_GUARDS


@pytest.fixture
def us() -> NormalizeConfig:
    return NormalizeConfig(default_region="US")
