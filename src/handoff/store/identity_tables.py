"""Tables of the identity part, on the shared metadata (migration 0002 creates them)."""

from __future__ import annotations

from handoff.store.tables import metadata

__all__ = ["metadata"]
