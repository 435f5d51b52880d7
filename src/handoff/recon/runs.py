"""Reconciliation runs on disk: the directories `handoff reconcile --out RUNS/NAME` writes under
`[reconcile] runs_dir`, each with its summary.json (the dashboard lists them, the alert rule
reads the newest)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from handoff.recon.apply import already_applied


@dataclass(frozen=True)
class Run:
    name: str
    path: Path
    summary: dict[str, Any]
    modified: datetime
    applied: int  # corrections already sent (applied.jsonl)

    @property
    def findings(self) -> int:
        return int(self.summary.get("findings") or 0)


def run_at(root: Path, name: str) -> Run | None:
    if not name or "/" in name or "\\" in name or name.startswith("."):
        return None
    path = root / name
    summary_path = path / "summary.json"
    if not summary_path.is_file():
        return None
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    modified = datetime.fromtimestamp(summary_path.stat().st_mtime).astimezone()
    return Run(name, path, summary, modified, len(already_applied(path)))


def list_runs(root: Path) -> list[Run]:
    """The run directories under `root`, newest first (a directory without summary.json is
    not a run: an unfinished one is written elsewhere and renamed in)."""
    if not root.is_dir():
        return []
    runs = [run_at(root, p.name) for p in root.iterdir() if p.is_dir()]
    return sorted((r for r in runs if r is not None), key=lambda r: r.modified, reverse=True)
