"""The demo end to end on a small scenario: every webhook accounted for against the truth."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from handoff.sim.demo import run_demo


def test_demo_accounts_for_every_webhook(tmp_path: Path) -> None:
    out = io.StringIO()
    result = run_demo(
        customers=12, seed=5, out=tmp_path / "sim", console=Console(file=out, width=140)
    )
    assert result.ok(), (result.missing(), result.doubled(), result.unexplained())
    assert result.report.mismatches() == []
    outcomes = result.report.live.by_outcome()
    assert outcomes["delivered"] == len(result.stored)  # one receipt per delivered webhook
    assert sum(result.stored.values()) == len(result.stored)
    text = out.getvalue()
    assert "exactly once" in text and "Faults injected" in text
    assert (tmp_path / "sim" / "truth").is_dir() and (tmp_path / "sim" / "exports").is_dir()
    assert result.workdir is not None and result.workdir.exists()  # kept because --out was given


def test_demo_cleans_up_after_itself() -> None:
    result = run_demo(customers=3, seed=1, console=Console(file=io.StringIO()))
    assert result.ok()
    assert result.workdir is not None and not result.workdir.exists()
