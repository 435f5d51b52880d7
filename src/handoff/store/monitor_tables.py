# READ FIRST: /work/main/WORKING-AGREEMENT.md (commit rules, shared files, tests, 04:20 UTC deadline).
"""Tables of the monitor part, on the shared metadata (migration 0005 creates them)."""

from __future__ import annotations

from handoff.store.tables import metadata

__all__ = ["metadata"]
