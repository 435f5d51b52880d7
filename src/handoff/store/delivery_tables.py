"""Tables of the delivery part, on the shared metadata (migration 0004 creates them)."""

from __future__ import annotations

from handoff.store.tables import metadata

__all__ = ["metadata"]
