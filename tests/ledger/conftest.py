"""Each ledger test starts with an empty event cache: tests reuse delivery ids for other facts."""

from __future__ import annotations

import pytest

from handoff.store import ledger as ls


@pytest.fixture(autouse=True)
def _fresh_event_cache() -> None:
    ls.forget_events()
