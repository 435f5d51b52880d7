"""Tables of the ledger part, on the shared metadata (migration 0003 creates them)."""

from __future__ import annotations

from handoff.store.tables import metadata

__all__ = ["metadata"]
