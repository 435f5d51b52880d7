"""Bearer-token auth for /api/*. Roles are ordered: admin ⊇ operator ⊇ viewer."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from handoff.hub import Hub
from handoff.store import tokens
from handoff.store.tokens import TokenRow

RANK = {"viewer": 0, "operator": 1, "admin": 2}
_bearer = HTTPBearer(auto_error=False, description="A token from `handoff tokens create`.")


def get_hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


def require(role: str) -> Callable[..., TokenRow]:
    def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> TokenRow:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "a bearer token is required",
                headers={"WWW-Authenticate": "Bearer"},
            )
        hub = get_hub(request)
        with hub.db.read() as conn:
            row = tokens.find_active(conn, credentials.credentials)
        if row is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "unknown or revoked token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if RANK[row.role] < RANK[role]:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"this needs the {role} role")
        now = hub.clock.now()
        if row.last_used_at is None or now - row.last_used_at > timedelta(minutes=1):
            with hub.db.write() as conn:  # at most one write a minute per token
                tokens.touch(conn, row.id, now)
        return row

    return dependency
