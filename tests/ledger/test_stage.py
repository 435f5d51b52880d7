"""The ledger stage through the processor, on both databases, with real connector fixtures."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete

from handoff.domain.changes import AttributeChange
from handoff.domain.events import CanonicalEvent, EventType
from handoff.domain.ledger import Program
from handoff.hub import Hub
from handoff.pipeline.ledger_stage import LedgerStage, refresh_customers
from handoff.pipeline.processor import Processor
from handoff.store import ledger as ls
from handoff.store.ledger_tables import ledger_entries
from tests.ledger.helpers import (
    FIXTURES,
    NOW,
    Collect,
    FixedClock,
    MapIdentity,
    by_external_id,
    erp,
    seed,
)
from tests.ledger.helpers import erp_fixture as fx

PAID = {"trigger": "paid"}
C42 = by_external_id({"C-42": 7, "C-43": 8, "7001": 7, "65059681032": 7})


def build(
    hub: Hub, resolve: Callable[[CanonicalEvent], int | None] = C42
) -> tuple[Processor, MapIdentity, Collect]:
    if not isinstance(hub.clock, FixedClock):
        hub.clock = FixedClock(NOW)
    identity, outbox = MapIdentity(resolve), Collect()
    stages: list[Any] = [identity, LedgerStage.from_hub(hub), outbox]
    return Processor(hub, stages=stages, batch_size=50), identity, outbox


def state(hub: Hub, customer: int = 7) -> tuple[list[tuple[str, int]], ls.StoredProjection | None]:
    with hub.db.read() as conn:
        entries = [(e.kind.value, e.points) for e in ls.entries_of(conn, customer)]
        return entries, ls.projection_of(conn, customer)


def attribute_changes(outbox: Collect) -> list[tuple[int, str, Any]]:
    return [
        (c.customer_id, c.attribute, c.value)
        for c in outbox.changes
        if isinstance(c, AttributeChange)
    ]


def test_paid_order_and_refund_from_erp(hub_factory: Callable[..., Hub]) -> None:
    hub = hub_factory(program=PAID)
    processor, _, outbox = build(hub)
    seed(hub, [erp("r1", fx("order_paid")), erp("r2", fx("order_refunded"))])
    assert processor.drain().quarantined == 0
    entries, projection = state(hub)
    assert entries == [("earn", 110), ("reverse", -24)]
    assert projection is not None and (projection.balance, projection.tier) == (86, "Bronze")
    assert attribute_changes(outbox) == [(7, "tier", "Bronze"), (7, "is_vip", False)]
    # the same fact under a second delivery id is stored once and applied once
    seed(hub, [erp("r1-again", fx("order_paid"))])
    processor.drain()
    assert state(hub)[0] == entries


def test_refund_before_its_order_is_held_then_applied(hub_factory: Callable[..., Hub]) -> None:
    hub = hub_factory(program=PAID)
    processor, _, _ = build(hub)
    seed(hub, [erp("r2", fx("order_refunded"))])
    processor.drain()
    entries, projection = state(hub)
    assert entries == [] and projection is not None and projection.held == 1
    with hub.db.read() as conn:
        [held] = ls.held_of(conn, 7)
    assert "waiting for order.paid of order SO-1001" in held["reason"]
    seed(hub, [erp("r1", fx("order_paid"))])
    processor.drain()
    entries, projection = state(hub)
    assert entries == [("earn", 110), ("reverse", -24)]
    assert projection is not None and projection.held == 0
    with hub.db.read() as conn:
        assert ls.held_of(conn, 7) == []


def test_events_without_a_customer_are_held_never_dropped(
    hub_factory: Callable[..., Hub],
) -> None:
    hub = hub_factory(program=PAID)

    def only_payments(event: CanonicalEvent) -> int | None:
        return 7 if event.type is EventType.ORDER_PAID else None

    processor, _, _ = build(hub, only_payments)
    seed(hub, [erp("r2", fx("order_refunded"))])
    processor.drain()
    with hub.db.read() as conn:
        [orphan] = ls.held_of(conn, None)
    assert orphan["order_id"] == "SO-1001" and "no resolved customer" in orphan["reason"]
    # the order arrives with a customer: the held refund joins it
    seed(hub, [erp("r1", fx("order_paid"))])
    processor.drain()
    assert state(hub)[0] == [("earn", 110), ("reverse", -24)]
    # an unresolved event of an order already known goes straight to the order's customer
    seed(hub, [erp("r3", fx("order_refunded", refund_id="RMA-502", amount="10.00"))])
    processor.drain()
    assert state(hub)[0] == [("earn", 110), ("reverse", -24), ("reverse", -10)]
    with hub.db.read() as conn:
        assert ls.held_of(conn, None) == []


def test_platform_points_kept_beside_and_crm_flag_overrides(
    hub_factory: Callable[..., Hub],
) -> None:
    hub = hub_factory(program=PAID)
    processor, _, outbox = build(hub)
    points = (FIXTURES / "loyaltylion" / "points_earned.json").read_bytes()
    crm = (FIXTURES / "hubspot" / "batch.json").read_bytes()
    shopify = (FIXTURES / "shopify" / "order.json").read_bytes()
    seed(
        hub,
        [
            erp("r1", fx("order_paid")),
            ("loyalty", "loyaltylion", "ll-1", {}, points),
            ("crm", "hubspot", "hs-1", {}, crm),
            # the storefront's copy of an order: not the purchase record when an ERP is configured
            ("shop", "shopify", "sh-1", {"x-shopify-topic": "orders/paid"}, shopify),
        ],
    )
    assert processor.drain().quarantined == 0
    entries, projection = state(hub)
    assert entries == [("earn", 110)]  # nothing from the platform, nothing from Shopify
    assert projection is not None
    assert (projection.recorded_points, projection.recorded_balance) == (99, 500)
    assert (projection.tier, projection.manual_vip, projection.is_vip) == ("Bronze", True, True)
    assert (7, "is_vip", True) in attribute_changes(outbox)


def test_merge_moves_the_absorbed_customer(hub_factory: Callable[..., Hub]) -> None:
    hub = hub_factory(program=PAID)
    processor, identity, outbox = build(hub)
    big = {"order_id": "SO-2", "subtotal": "2000.00", "discount": "0", "gift_card": "0"}
    other = {"customer": {"id": "C-43"}}
    seed(hub, [erp("r1", fx("order_paid")), erp("r2", fx("order_paid", **big, **other))])
    processor.drain()
    assert state(hub, 8)[0] == [("earn", 2000)]
    before = state(hub, 7)[1]
    assert before is not None
    identity.merges = [(8, 7)]
    outbox.changes.clear()
    processor.run_once()  # an empty batch still carries the merge
    entries, projection = state(hub, 7)
    assert sorted(entries) == [("earn", 110), ("earn", 2000)]
    assert projection is not None and (projection.tier, projection.is_vip) == ("Gold", True)
    assert projection.version > before.version
    assert state(hub, 8) == ([], None)
    assert attribute_changes(outbox) == [(7, "tier", "Gold"), (7, "is_vip", True)]
    # an event resolved to the absorbed customer in the batch of the merge lands on the survivor
    identity.merges = [(8, 7)]
    seed(hub, [erp("r3", fx("order_paid", order_id="SO-3", **other))])
    processor.drain()
    assert sorted(state(hub, 7)[0]) == [("earn", 110), ("earn", 110), ("earn", 2000)]
    assert state(hub, 8) == ([], None)


def test_time_alone_vests_points_and_emits_the_new_tier(hub_factory: Callable[..., Hub]) -> None:
    hub = hub_factory(program=PAID | {"pending_days": 30})
    hub.clock = FixedClock(datetime(2026, 4, 1, 12, tzinfo=UTC))
    processor, _, outbox = build(hub)
    big = {"order_id": "SO-2", "subtotal": "2500.00", "discount": "0", "gift_card": "0"}
    seed(hub, [erp("r1", fx("order_paid", paid_at="2026-04-01T10:00:00Z", **big))])
    processor.drain()
    entries, first = state(hub)
    assert entries == [("earn", 2500), ("vest", 2500)]  # the vesting is stored, dated later
    assert first is not None and (first.balance, first.pending, first.tier) == (0, 2500, "Bronze")
    assert first.next_change_at == datetime(2026, 5, 1, 10, tzinfo=UTC)
    outbox.changes.clear()
    hub.clock = FixedClock(datetime(2026, 5, 2, tzinfo=UTC))
    processor.run_once()  # nothing new arrives; the customer is due
    _, later = state(hub)
    assert later is not None and (later.balance, later.pending, later.tier) == (2500, 0, "Gold")
    assert attribute_changes(outbox) == [(7, "tier", "Gold"), (7, "is_vip", True)]
    versions = {c.version for c in outbox.changes}
    assert versions == {later.version} and later.version > first.version


def test_refresh_customers_rederives_from_the_events(hub_factory: Callable[..., Hub]) -> None:
    hub = hub_factory(program=PAID)
    processor, _, _ = build(hub)
    seed(hub, [erp("r1", fx("order_paid")), erp("r2", fx("order_refunded"))])
    processor.drain()
    expected = state(hub)
    # another stage built with other rules (here the default trigger, `fulfilled`) changes
    # nothing: the program is the caller's argument, not the last stage built
    LedgerStage(program=Program())
    with hub.db.write() as conn:
        conn.execute(delete(ledger_entries))
        # same tier and VIP: no change
        assert refresh_customers(conn, hub.settings.config.program, [7], NOW) == []
    assert state(hub)[0] == expected[0]


def test_two_workers_on_one_customer_lose_nothing(hub_factory: Callable[..., Hub]) -> None:
    """Two processors drain the same log at once; receipts of one customer land in both."""
    hub = hub_factory(program=PAID)
    hub.clock = FixedClock(NOW)
    bodies = []
    for n in range(60):
        customer = {"id": f"C-{42 + n % 2}"}
        paid_at = f"2026-03-{1 + n % 28:02d}T10:00:00Z"
        bodies.append(
            erp(f"w{n}", fx("order_paid", order_id=f"SO-{n}", customer=customer, paid_at=paid_at))
        )
    seed(hub, bodies)
    workers = [
        Processor(hub, stages=[MapIdentity(C42), LedgerStage.from_hub(hub)], batch_size=5)
        for _ in range(2)
    ]
    threads = [threading.Thread(target=w.drain) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for customer in (7, 8):
        entries, projection = state(hub, customer)
        assert len(entries) == 30 and projection is not None
        assert projection.balance == 30 * 110
