"""Sub-commands of `handoff`, one module per part, each adding itself through `register(app)`.

Keeping each part's commands in its own module lets cli.py stay the processes and the receive
log, and lets each part (identity, ledger, delivery, reconciliation, monitoring) own its CLI.
"""

from __future__ import annotations

import typer


def register_all(app: typer.Typer) -> None:
    from handoff.commands import (
        deliveries,
        identity,
        identity_batch,
        ledger,
        monitor,
        reconcile,
    )

    for module in (identity, identity_batch, ledger, deliveries, monitor, reconcile):
        module.register(app)
