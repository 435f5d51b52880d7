"""What every `handoff` sub-command shares: option types, consoles, settings, rendering."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from handoff.config import ConfigError, Settings, load_settings
from handoff.hub import Hub
from handoff.store import migrate

console = Console()
err = Console(stderr=True)

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML file (default: $HANDOFF_CONFIG, ./handoff.toml)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def settings(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as exc:
        raise fail(str(exc)) from None


def hub(config: Path | None, *, pool_size: int = 5) -> Hub:
    try:
        return Hub.build(settings(config), pool_size=pool_size)
    except ValueError as exc:
        raise fail(str(exc)) from None


def ensure_schema(hub: Hub) -> None:
    """An empty SQLite database is created on the spot; anything else is upgraded on purpose."""
    current = migrate.current_revision(hub.db)
    if current == migrate.head_revision(hub.db):
        return
    if hub.db.is_sqlite and current is None:
        migrate.upgrade(hub.db)
        return
    raise fail(
        f"database schema is at {current or 'nothing'}, expected {migrate.head_revision(hub.db)}: "
        "run `handoff db upgrade`"
    )


def dump(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=json_default) + "\n")


def json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(type(value).__name__)


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "—"


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    out = Table(title=title, title_justify="left", header_style="bold")
    for col in columns:
        out.add_column(col, overflow="fold")
    for row in rows:
        out.add_row(*[str(v) if v is not None else "—" for v in row])
    return out
