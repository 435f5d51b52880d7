"""The assembled hub: settings, database, clock and one connector per configured source.

Processes (serve, worker, CLI commands) build one Hub and pass it down; nothing reads the
environment or the config file after this point.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from handoff.clock import Clock, system_clock
from handoff.config import Settings, SourceConfig
from handoff.connectors.base import Connector, SourceOptions
from handoff.connectors.registry import build_connector
from handoff.store.db import Database


@dataclass(frozen=True)
class Source:
    name: str
    config: SourceConfig
    connector: Connector
    secrets: tuple[bytes, ...]


def source_options(name: str, cfg: SourceConfig) -> SourceOptions:
    return SourceOptions(
        name=name,
        role=cfg.role,
        tolerance_seconds=cfg.tolerance_seconds,
        public_url=cfg.public_url,
        default_region=cfg.default_region,
        extra=dict(cfg.options),
    )


@dataclass
class Hub:
    settings: Settings
    db: Database
    clock: Clock = system_clock
    sources: dict[str, Source] = field(default_factory=dict)
    # the environment secrets and tokens were read from (tests pass their own)
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        env: Mapping[str, str] | None = None,
        clock: Clock = system_clock,
        pool_size: int = 10,
    ) -> Hub:
        environ = os.environ if env is None else env
        sources = {}
        for name, cfg in settings.config.sources.items():
            connector = build_connector(cfg.vendor, source_options(name, cfg))
            secrets = tuple(settings.secrets_for(name, environ))
            sources[name] = Source(name, cfg, connector, secrets)
        hub = cls(
            settings, Database(settings.database_url, pool_size=pool_size), clock, sources, environ
        )
        # route every change this process enqueues by this configuration (delivery's outbox)
        from handoff.delivery.outbox import use_destinations

        use_destinations(hub.db.url, settings.config.destinations)
        return hub

    def close(self) -> None:
        self.db.dispose()
