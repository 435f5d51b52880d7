"""The web surface of each part (identity, ledger, delivery, reconciliation, dashboard).

Each part's module adds its own routes through `register(app, hub, run_worker=…)` and returns
the background tasks (a delivery worker, an alert evaluator) the server must start and stop with
its lifespan; `run_worker=False` (`handoff serve --no-worker`) asks for routes only.
"""

from __future__ import annotations

from typing import Protocol

from fastapi import FastAPI

from handoff.hub import Hub


class Background(Protocol):
    def start(self) -> None: ...

    def stop(self, timeout: float = 10.0) -> None: ...


def register_all(app: FastAPI, hub: Hub, *, run_worker: bool) -> list[Background]:
    from handoff.pipeline import read_back
    from handoff.web import dashboard, delivery_api, identity_api, ledger_api

    tasks: list[Background] = []
    for module in (identity_api, ledger_api, delivery_api, dashboard, read_back):
        tasks += module.register(app, hub, run_worker=run_worker)
    return tasks


def background_tasks(hub: Hub) -> list[Background]:
    """The parts' background work for a process that serves no HTTP (`handoff worker`).

    The parts declare their background tasks where they add their routes; registering them on
    an app that is never served is how a worker process gets the same tasks `serve` runs."""
    return register_all(FastAPI(), hub, run_worker=True)
