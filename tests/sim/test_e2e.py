"""End to end: the simulator fires a scenario's webhooks at a live handoff on loopback.

handoff runs in-process (uvicorn thread, SQLite) on the *same* SimClock as the simulator, so
signature windows hold while days of history and hours of retries pass in seconds. Every
webhook that reached the gateway must be in the receive log exactly once, mapped without
quarantine; every one that never arrived must be labelled in the ground truth.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from handoff.hub import Hub
from handoff.sim.clock import SimClock
from handoff.sim.scenario_config import FaultWindow
from handoff.sim.stack import SIM_SECRETS, SIM_SOURCES, SimStack, Simulation
from handoff.store import receipts as rs
from tests.conftest import LiveServer, make_settings
from tests.sim.conftest import small


@pytest.fixture
def sim() -> Simulation:
    config = small(customers=10, seed=4)
    faults = config.faults.model_copy(
        update={
            "drop_rate": 0.05,
            "duplicate_rate": 0.08,
            "slow_ack_rate": 0.08,
            "out_of_order_rate": 0.5,
            "windows": (
                # a long outage of the Shopify → hub link: Shopify gives up after 4 h
                # and deletes the subscriptions it was failing on
                FaultWindow(
                    target="webhooks:shopify", kind="outage", start_hours=200, duration_hours=400
                ),
                # a burst of 5xx on the ERP link: Standard Webhooks retries ride it out
                FaultWindow(
                    target="webhooks:erp",
                    kind="errors",
                    start_hours=500,
                    duration_hours=48,
                    rate=0.7,
                ),
            ),
        }
    )
    return Simulation.build(config.model_copy(update={"faults": faults}))


@pytest.fixture
def hub(sim: Simulation, db_url: str) -> Iterator[tuple[LiveServer, SimClock]]:
    """handoff on each database (db_url is migrated and empty), on the simulator's clock."""
    clock = SimClock(sim.scenario.start)
    hub = Hub.build(make_settings(db_url, sources=SIM_SOURCES), env=SIM_SECRETS, clock=clock)
    server = LiveServer(hub)
    yield server, clock
    server.stop()
    hub.close()


def _receipts(server: LiveServer) -> list[rs.ReceiptRow]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with server.hub.db.read() as conn:
            if rs.count_pending(conn) == 0:
                return rs.list_receipts(conn, rs.ReceiptFilter(), 100_000)
        time.sleep(0.05)
    raise AssertionError("handoff did not process the receive log in time")


def test_every_webhook_lands_once_or_is_labelled(
    sim: Simulation, hub: tuple[LiveServer, SimClock], tmp_path: Path
) -> None:
    server, clock = hub
    outcomes = sim.planned.by_outcome()
    # the scenario exercises what it should
    assert outcomes.get("dropped") and outcomes.get("never_fired")
    assert outcomes.get("subscription_deleted") and outcomes.get("exhausted")
    with SimStack(clock) as stack:
        report = stack.run(sim, server.url)
        deleted = {t for t, at in stack.apis.shopify.subscriptions.items() if at is not None}
        assert deleted and deleted == {
            key.removeprefix("shopify:") for key in report.live.deleted_subscriptions
        }
    assert report.mismatches() == []  # the live run did exactly what the truth planned
    rows = _receipts(server)
    stored = Counter((r.source, r.delivery_id) for r in rows)
    expected = report.expected_receipts()
    assert set(stored) == set(expected)
    assert set(stored.values()) == {1}  # exactly once, however many times it was sent
    assert max(expected.values()) >= 2  # … and some were sent more than once
    assert {r.status for r in rows} == {"processed"}, Counter(
        (r.source, r.status, r.status_reason) for r in rows if r.status != "processed"
    )
    labelled = {(label.system, label.ref) for label in sim.labels()}
    lost = [r for r in report.live.records if not r.reached_receiver]
    assert lost
    for record in lost:
        assert (record.message.system, record.message.delivery_id) not in stored
        assert (record.message.system, record.message.ref) in labelled, record.message.ref
    # the look-alikes' exports before handoff writes anything equal the pure ones
    stack.write_exports(tmp_path / "live", as_of=sim.scenario.end)
    sim.write(tmp_path / "pure")
    for path in sorted((tmp_path / "pure" / "exports").iterdir()):
        assert (tmp_path / "live" / path.name).read_bytes() == path.read_bytes(), path.name
