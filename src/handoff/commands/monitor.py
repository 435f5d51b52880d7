"""`handoff users …` (the dashboard's accounts) and `handoff alerts …`."""

from __future__ import annotations

import dataclasses
import os
from typing import Annotated

import typer

from handoff.commands.common import (
    ConfigOpt,
    JsonOpt,
    console,
    dump,
    ensure_schema,
    fail,
    hub,
    table,
    when,
)
from handoff.store import users as user_store

users_app = typer.Typer(help="Dashboard users (viewer, operator, admin).", no_args_is_help=True)
alerts_app = typer.Typer(help="Alerts: what is failing now, and what was.", no_args_is_help=True)


@users_app.command("create")
def users_create(
    username: str,
    role: Annotated[str, typer.Option(help="viewer, operator or admin.")] = "viewer",
    password_env: Annotated[
        str | None,
        typer.Option(help="Read the password from this environment variable (else prompt)."),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Create a user; the password is asked for (twice) unless --password-env names it."""
    from handoff.web.session import hash_password

    if role not in user_store.ROLES:
        raise fail(f"--role must be one of {', '.join(user_store.ROLES)}")
    if password_env:
        password = os.environ.get(password_env)
        if not password:
            raise fail(f"environment variable {password_env} is not set")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    try:
        hashed = hash_password(password)
    except ValueError as exc:
        raise fail(str(exc)) from None
    h = hub(config)
    ensure_schema(h)
    try:
        with h.db.write() as conn:
            user = user_store.create_user(
                conn, username=username, password_hash=hashed, role=role, now=h.clock.now()
            )
    except ValueError as exc:
        raise fail(str(exc)) from None
    console.print(f"created {user.role} [bold]{user.username}[/]")


@users_app.command("list")
def users_list(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Every user with role and last sign-in."""
    h = hub(config)
    ensure_schema(h)
    with h.db.read() as conn:
        rows = user_store.list_users(conn)
    if as_json:
        dump([dataclasses.asdict(u) for u in rows])
        return
    console.print(
        table(
            "users",
            ["id", "user", "role", "disabled", "created", "last sign-in"],
            [
                (u.id, u.username, u.role, u.disabled, when(u.created_at), when(u.last_login_at))
                for u in rows
            ],
        )
    )


@alerts_app.command("list")
def alerts_list(
    config: ConfigOpt = None,
    all_: Annotated[bool, typer.Option("--all", help="Resolved ones too.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Open alerts (with --all, resolved ones too), newest first."""
    from handoff.store import alerts as alert_store

    h = hub(config)
    ensure_schema(h)
    with h.db.read() as conn:
        rows = alert_store.list_alerts(conn, include_resolved=all_)
    if as_json:
        dump([dataclasses.asdict(a) for a in rows])
        return
    console.print(
        table(
            "alerts",
            ["id", "status", "rule", "handoff", "since", "customers", "acked", "summary"],
            [
                (
                    a.id,
                    a.status,
                    a.rule,
                    a.key,
                    when(a.since),
                    a.customers,
                    a.acked_by or "",
                    a.summary,
                )
                for a in rows
            ],
        )
    )


@alerts_app.command("ack")
def alerts_ack(
    alert_id: int,
    by: Annotated[str, typer.Option(help="Who acknowledges (shown to others).")] = "cli",
    config: ConfigOpt = None,
) -> None:
    """Acknowledge an open alert: it stays open until fixed, but stops repeating."""
    from handoff.store import alerts as alert_store

    h = hub(config)
    ensure_schema(h)
    with h.db.write() as conn:
        done = alert_store.ack(conn, alert_id, by, h.clock.now())
    if not done:
        raise fail(f"alert {alert_id} is not open or is already acknowledged")
    console.print(f"alert {alert_id} acknowledged")


@alerts_app.command("check")
def alerts_check(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Evaluate every alert rule once now and send what opened or resolved (cron, tests)."""
    from handoff.monitor.alerting import Evaluator

    h = hub(config)
    ensure_schema(h)
    result = Evaluator(h).run_once()
    if as_json:
        dump(dataclasses.asdict(result))
        return
    console.print(
        f"open {result.open}: opened {result.opened}, repeated {result.repeated}, "
        f"resolved {result.resolved}"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")
    app.add_typer(alerts_app, name="alerts")
