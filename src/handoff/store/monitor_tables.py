"""Tables of the monitor part, on the shared metadata (migration 0005 creates them)."""

from __future__ import annotations

from handoff.store.tables import metadata

__all__ = ["metadata"]
