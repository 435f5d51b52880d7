"""The demo runs end to end (small story) and every webhook is accounted for."""

from __future__ import annotations

import io

from rich.console import Console

from handoff.sim.demo import run_demo


def test_demo_accounts_for_every_webhook() -> None:
    out = io.StringIO()
    result = run_demo(customers=6, seed=3, console=Console(file=out, width=120))
    assert result.mismatches() == []
    answers = [o.answer for o in result.outcomes]
    assert answers.count("rejected") == 2
    assert answers.count("duplicate") == 1
    assert answers.count("quarantined") == 2
    text = out.getvalue()
    assert "Sent by the simulated stack" in text and "0 surprises" in text
    assert result.workdir is not None and not result.workdir.exists()  # cleaned up
