"""Delivery fixtures: a hub with destinations, a loopback Standard Webhooks receiver, a clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from handoff.config import Settings, parse_config
from handoff.delivery.outbox import use_destinations
from handoff.hub import Hub
from handoff.sim.clock import SimClock
from handoff.sim.faults import LoyaltyMember
from handoff.sim.receiver import WebhookReceiver
from handoff.sim.stack import ServedApp, SimStack
from handoff.sim.vendors.shopify import ShopCustomerState
from handoff.sim.vendors.zendesk import ZendeskUser

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OLD_SECRET = "whsec_dGhlLW9sZC1zZWNyZXQtMzItYnl0ZXMtbG9uZw=="
ENV = {"HOOK_SECRET": SECRET, "HOOK_SECRET_OLD": OLD_SECRET}
EMAIL = "ana.silva@example.com"


def hook_destination(url: str, **overrides: Any) -> dict[str, Any]:
    return {
        "vendor": "webhook",
        "role": "comms",
        "base_url": url,
        "token_env": "HOOK_SECRET",
    } | overrides


def settings_for(db_url: str, destinations: dict[str, Any], **delivery: Any) -> Settings:
    data: dict[str, Any] = {"destinations": destinations}
    if delivery:
        data["delivery"] = delivery
    return Settings(config=parse_config(data), database_url=db_url, config_path=None)


@pytest.fixture
def clock() -> SimClock:
    """A manual clock that starts at the wall clock's second, so independent verifiers (which
    read the wall clock) accept the signatures; it moves only when a test moves it."""
    return SimClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def serve() -> Iterator[Callable[[Any], ServedApp]]:
    apps: list[ServedApp] = []

    def start(app: Any) -> ServedApp:
        served = ServedApp(app, "test-receiver")
        served.start()
        apps.append(served)
        return served

    yield start
    for app in apps:
        app.stop()


@pytest.fixture
def receiver(clock: SimClock) -> WebhookReceiver:
    return WebhookReceiver([SECRET], clock)


@pytest.fixture
def make_hub(
    db_url: str, clock: SimClock, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Hub]]:
    hubs: list[Hub] = []
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)

    def build(
        destinations: dict[str, Any], env: dict[str, str] | None = None, **delivery: Any
    ) -> Hub:
        hub = Hub.build(settings_for(db_url, destinations, **delivery), env=env or ENV, clock=clock)
        use_destinations(hub.db.url, hub.settings.config.destinations)
        hubs.append(hub)
        return hub

    yield build
    for hub in hubs:
        hub.close()


@pytest.fixture
def hook_hub(
    make_hub: Callable[..., Hub], serve: Callable[[Any], ServedApp], receiver: WebhookReceiver
) -> Hub:
    """A hub with one webhook destination: the receiver, served on loopback."""
    return make_hub({"hook": hook_destination(serve(receiver).url)})


@pytest.fixture
def stack(clock: SimClock) -> Iterator[SimStack]:
    with SimStack(clock) as s:
        now = clock.now()
        s.apis.shopify.customers[501] = ShopCustomerState(501, EMAIL, None, "Ana", "Silva", "10001")
        s.apis.zendesk.users[9001] = ZendeskUser(9001, "Ana Silva", EMAIL, None, now, now)
        s.apis.loyaltylion.members["501"] = LoyaltyMember(
            "501", 1, "C-1", "P-1", now - timedelta(days=1), EMAIL, None, "Ana", "Silva", "10001"
        )
        yield s
