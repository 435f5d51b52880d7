# READ FIRST: /work/main/WORKING-AGREEMENT.md (commit rules, shared files, tests, 04:20 UTC deadline).
"""Web routes of this part (filled in by its issue)."""

from __future__ import annotations

from fastapi import FastAPI

from handoff.hub import Hub
from handoff.web.parts import Background


def register(app: FastAPI, hub: Hub, *, run_worker: bool) -> list[Background]:
    """Add this part's routes to `app`; return the background tasks it needs."""
    return []
