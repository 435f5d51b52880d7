"""The last stage: store the batch's outbound changes in the delivery outbox.

It runs inside the processing transaction, after identity and the ledger, so a tier change and
the deliveries that announce it commit together (the transactional outbox).
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import Connection

from handoff.config import DestinationConfig
from handoff.delivery.outbox import enqueue, use_destinations
from handoff.hub import Hub
from handoff.pipeline.processor import StageBatch


class OutboxStage:
    def __init__(self, destinations: Mapping[str, DestinationConfig]) -> None:
        self.destinations = dict(destinations)

    @classmethod
    def from_hub(cls, hub: Hub) -> OutboxStage:
        use_destinations(hub.db.url, hub.settings.config.destinations)
        return cls(hub.settings.config.destinations)

    def handle(self, conn: Connection, batch: StageBatch) -> None:
        if batch.changes:
            enqueue(conn, batch.changes, batch.now, destinations=self.destinations)
