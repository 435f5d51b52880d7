"""The processor's stages, in order: identity, then the ledger, then the delivery outbox.

Order matters: the ledger keys on the golden customer identity resolved, and the outbox stores
the changes the stages before it produced, all in one transaction.
"""

from __future__ import annotations

from handoff.hub import Hub
from handoff.pipeline.identity_stage import IdentityStage
from handoff.pipeline.ledger_stage import LedgerStage
from handoff.pipeline.outbox_stage import OutboxStage
from handoff.pipeline.processor import Processor, Stage


def build_stages(hub: Hub) -> list[Stage]:
    """The stages a running hub processes every new event through."""
    stages: list[Stage] = []
    stages.append(IdentityStage.from_hub(hub))  # first: every later stage keys on its customer
    stages.append(LedgerStage.from_hub(hub))  # second: after identity, before the outbox
    stages.append(OutboxStage.from_hub(hub))  # last: stores what the stages before decided
    return stages


def build_processor(hub: Hub) -> Processor:
    """The processor `serve`, `worker` and the demo run: configured batch size, every stage."""
    return Processor(
        hub, stages=build_stages(hub), batch_size=hub.settings.config.processor.batch_size
    )
