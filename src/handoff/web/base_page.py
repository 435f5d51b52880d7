"""What every dashboard page shares: the templates, the sign-in check and the action guard.

Kept apart from `dashboard.py` so that each group of pages lives in a module of its own
(`customers_page`, `review_page`, `recon_page`) and all of them enforce the same rules: a page
needs a session, an action needs the operator role and the session's CSRF token, and viewers
see personal data masked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from handoff.hub import Hub
from handoff.store.users import Session
from handoff.web import session as auth

HERE = Path(__file__).parent
PAGE = 50


class NeedLogin(Exception):
    """Raised by a page without a session; the app answers with a redirect to /login."""


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["mask_email"] = auth.mask_email
    templates.env.filters["mask_phone"] = auth.mask_phone
    return templates


@dataclass(frozen=True)
class Kit:
    hub: Hub
    templates: Jinja2Templates

    def page(self, request: Request, role: str = "viewer") -> Session:
        session = auth.current(request, self.hub)
        if session is None:
            raise NeedLogin
        if not auth.allowed(session, role):
            raise HTTPException(403, f"this needs the {role} role")
        return session

    def action(self, request: Request, csrf_token: str | None, role: str = "operator") -> Session:
        """A state-changing request: signed in, the role, and the session's CSRF token."""
        session = auth.current(request, self.hub)
        if session is None:
            raise HTTPException(401, "sign in first")
        token = csrf_token or request.headers.get("x-csrf-token")
        if not auth.csrf_ok(session, token):
            raise HTTPException(403, "missing or wrong CSRF token")
        if not auth.allowed(session, role):
            raise HTTPException(403, f"this needs the {role} role")
        return session

    def render(
        self, request: Request, name: str, session: Session | None, **context: Any
    ) -> HTMLResponse:
        viewer = session is None or not auth.allowed(session, "operator")
        return self.templates.TemplateResponse(
            request,
            name,
            {"session": session, "masked": viewer, "now": self.hub.clock.now(), **context},
        )
