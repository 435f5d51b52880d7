"""The configured destinations at run time: writer, limits, retry schedule, breaker, and which
changes each one wants (the flows).

Flows: an attribute change goes to every destination that maps the attribute in `fields`
(a webhook destination with no `fields` takes every attribute); points adjustments and profile
relays go to the destinations whose `changes` include them. Defaults by vendor: LoyaltyLion
takes points, HubSpot attributes and profiles, a webhook everything, the others attributes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from handoff.config import DestinationConfig, Settings
from handoff.connectors.writers.base import Writer
from handoff.connectors.writers.gorgias import GorgiasWriter
from handoff.connectors.writers.hubspot import HubSpotWriter
from handoff.connectors.writers.klaviyo import KlaviyoWriter
from handoff.connectors.writers.loyaltylion import LoyaltyLionWriter
from handoff.connectors.writers.shopify import ShopifyWriter
from handoff.connectors.writers.webhook import WebhookWriter
from handoff.connectors.writers.zendesk import ZendeskWriter
from handoff.delivery.breaker import Policy
from handoff.delivery.limits import VENDOR_LIMITS, Limit
from handoff.delivery.policy import Schedule

DEFAULT_CHANGES: dict[str, tuple[str, ...]] = {
    "loyaltylion": ("points",),
    "hubspot": ("attribute", "profile"),
    "webhook": ("attribute", "points", "profile"),
}


class DestinationError(Exception):
    """A destination cannot be built (a missing token, say); the message names it."""


@dataclass(frozen=True)
class Destination:
    name: str
    config: DestinationConfig
    writer: Writer
    limit: Limit
    schedule: Schedule
    breaker: Policy

    @property
    def system(self) -> str:
        return self.config.system or self.name

    @property
    def keeps_sent_ledger(self) -> bool:
        return bool(getattr(self.writer, "needs_sent_ledger", False))


def _limit(cfg: DestinationConfig) -> Limit:
    if cfg.rate_limit is None:
        return VENDOR_LIMITS[cfg.vendor]
    r = cfg.rate_limit
    return Limit(
        r.model, r.capacity, r.rate, r.cost, tuple((int(n), float(s)) for n, s in r.windows)
    )


def _token(name: str, env_name: str | None, env: Mapping[str, str]) -> str:
    if not env_name:
        raise DestinationError(f"destinations.{name}: token_env is required")
    value = env.get(env_name)
    if not value:
        raise DestinationError(f"destinations.{name}: environment variable {env_name} is not set")
    return value


def build_writer(name: str, cfg: DestinationConfig, env: Mapping[str, str]) -> Writer:
    token = _token(name, cfg.token_env, env)
    fields = cfg.fields
    if cfg.vendor == "webhook":
        previous = [env[n] for n in cfg.previous_token_envs if env.get(n)]
        return WebhookWriter(cfg.base_url, [token, *previous], timeout=cfg.retry.timeout_seconds)
    if cfg.vendor == "shopify":
        rate = cfg.rate_limit.rate if cfg.rate_limit else VENDOR_LIMITS["shopify"].rate
        return ShopifyWriter(cfg.base_url, token, fields, verify=cfg.verify, restore_rate=rate)
    if cfg.vendor == "hubspot":
        return HubSpotWriter(cfg.base_url, token, fields, verify=cfg.verify)
    if cfg.vendor == "zendesk":
        return ZendeskWriter(cfg.base_url, token, fields, verify=cfg.verify)
    if cfg.vendor == "klaviyo":
        return KlaviyoWriter(cfg.base_url, token, fields, verify=cfg.verify)
    if cfg.vendor == "loyaltylion":
        return LoyaltyLionWriter(cfg.base_url, token)
    return GorgiasWriter(cfg.base_url, token, fields)


def build_destinations(
    settings: Settings, env: Mapping[str, str] | None = None
) -> dict[str, Destination]:
    """Every configured destination; DestinationError on the first one that cannot be built."""
    built, disabled = build_available(settings, env)
    if disabled:
        raise DestinationError(next(iter(disabled.values())))
    return built


def build_available(
    settings: Settings, env: Mapping[str, str] | None = None
) -> tuple[dict[str, Destination], dict[str, str]]:
    """The destinations that can run, and why each of the others cannot (name → reason).

    A missing token disables its destination instead of stopping the process: its deliveries
    keep being enqueued and wait, and the worker reports the destination as disabled."""
    environ = os.environ if env is None else env
    out = {}
    disabled: dict[str, str] = {}
    for name, cfg in settings.config.destinations.items():
        try:
            writer = build_writer(name, cfg, environ)
        except DestinationError as exc:
            disabled[name] = str(exc)
            continue
        out[name] = Destination(
            name=name,
            config=cfg,
            writer=writer,
            limit=_limit(cfg),
            schedule=Schedule(
                tuple(cfg.retry.schedule), cfg.retry.jitter, cfg.retry.throttle_floor_seconds
            ),
            breaker=Policy(
                cfg.breaker.failure_ratio,
                cfg.breaker.min_requests,
                cfg.breaker.window_seconds,
                cfg.breaker.open_seconds,
                cfg.breaker.probes,
            ),
        )
    return out, disabled


def token_status(
    settings: Settings, env: Mapping[str, str] | None = None
) -> list[tuple[str, str, str | None, bool]]:
    """(destination, role of the variable, variable name, set?) for every token a destination
    reads; values never leave this function. Role: "token" or "previous" (webhook rotation)."""
    environ = os.environ if env is None else env
    out: list[tuple[str, str, str | None, bool]] = []
    for name, cfg in settings.config.destinations.items():
        out.append(
            (name, "token", cfg.token_env, bool(cfg.token_env and environ.get(cfg.token_env)))
        )
        for prev in cfg.previous_token_envs:
            out.append((name, "previous", prev, bool(environ.get(prev))))
    return out


def wants(cfg: DestinationConfig, kind: str, attribute: str = "") -> bool:
    """Whether a destination's flow takes a change of this kind (and attribute)."""
    changes = (
        cfg.changes if cfg.changes is not None else DEFAULT_CHANGES.get(cfg.vendor, ("attribute",))
    )
    if kind not in changes:
        return False
    if kind != "attribute":
        return True
    if not cfg.fields:
        return cfg.vendor == "webhook"
    return attribute in cfg.fields
