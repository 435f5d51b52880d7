"""Shared steps of the delivery tests."""

from __future__ import annotations

from typing import Any

from handoff.clock import Clock
from handoff.delivery.worker import Worker
from handoff.domain.changes import AttributeChange
from handoff.hub import Hub
from handoff.sim.clock import SimClock
from handoff.store import outbox as store


def vip(customer: int, value: Any, version: int, clock: Clock) -> AttributeChange:
    return AttributeChange(customer, "is_vip", value, version, f"test-{version}", clock.now())


def run_until_done(worker: Worker, hub: Hub, clock: SimClock, max_steps: int = 500) -> int:
    """Deliver, then jump the clock to the next due row, until nothing is pending."""
    for step in range(max_steps):
        worker.drain()
        with hub.db.read() as conn:
            due = store.next_due(conn)
        if due is None:
            return step
        clock.advance_to(due)
    raise AssertionError("deliveries still pending after max_steps")
