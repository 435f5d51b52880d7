"""Reconciliation and repair over exports (docs/reconciliation.md, contracts/reconcile.md).

`engine.reconcile` loads the files into DuckDB, links people across systems, classifies every
mismatch and plans the corrections; `output.write_run` writes them; `apply.apply_plan` sends the
plan through the delivery outbox; `trace` shows one order or customer side by side.
"""
