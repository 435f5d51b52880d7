"""The ledger stage through the processor, on both databases, with real connector fixtures."""

from __future__ import annotations

from collections.abc import Callable

from handoff.domain.changes import AttributeChange
from handoff.hub import Hub
from handoff.pipeline.ledger_stage import LedgerStage
from handoff.pipeline.processor import Processor
from handoff.store import ledger as ls
from tests.ledger.helpers import NOW, Collect, FixedClock, MapIdentity, by_external_id, erp
from tests.ledger.helpers import erp_fixture as fx


def build(hub: Hub, identity: MapIdentity) -> tuple[Processor, Collect]:
    hub.clock = FixedClock(NOW)
    outbox = Collect()
    stage = LedgerStage.from_hub(hub)
    return Processor(hub, stages=[identity, stage, outbox], batch_size=50), outbox


def test_paid_order_and_refund_from_erp(hub_factory: Callable[..., Hub]) -> None:
    hub = hub_factory(program={"trigger": "paid"})
    processor, outbox = build(hub, MapIdentity(by_external_id({"C-42": 7})))
    hub_seed = [erp("r1", fx("order_paid")), erp("r2", fx("order_refunded"))]
    from tests.ledger.helpers import seed

    seed(hub, hub_seed)
    result = processor.drain()
    assert result.quarantined == 0
    with hub.db.read() as conn:
        entries = ls.entries_of(conn, 7)
        projection = ls.projection_of(conn, 7)
    assert [(e.kind.value, e.points) for e in entries] == [("earn", 110), ("reverse", -24)]
    assert projection is not None and projection.balance == 86
    tiers = [c for c in outbox.changes if isinstance(c, AttributeChange)]
    assert {c.attribute for c in tiers} == {"tier", "is_vip"}
