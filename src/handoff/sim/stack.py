"""The assembled simulator: a `Simulation` (pure data) and a `SimStack` (live look-alikes).

    from handoff.sim.stack import SIM_SECRETS, SIM_SOURCES, SimStack, Simulation
    from handoff.sim.clock import SimClock

    sim = Simulation.build(load_scenario_config("retailer.toml"))   # or Simulation.build()
    sim.write(out_dir)                        # truth/ and exports/ — pure, byte-reproducible
    clock = SimClock(sim.scenario.start)
    hub = Hub.build(settings_with(SIM_SOURCES), env=SIM_SECRETS, clock=clock)  # same clock
    with SimStack(clock).start() as stack:    # every look-alike on its own 127.0.0.1 port
        report = stack.run(sim, hub_url)      # fire every webhook at handoff, hours in seconds
        stack.write_exports(out_dir / "after")

`Simulation.build` generates the scenario, applies the faults, builds every vendor's webhook
messages and plans their delivery against a perfect receiver (`delivery.plan`), so the
ground truth already says which messages are lost, duplicated or redelivered and why.
`SimStack.run` plays the same messages at a real gateway under the shared SimClock and
returns both the live and the planned report; `RunReport.mismatches()` lists any message
whose live fate differs from the plan (it is empty when the receiver answered in time).
"""

from __future__ import annotations

import asyncio
import base64
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvicorn
from starlette.types import ASGIApp

from handoff.sim.clock import SimClock
from handoff.sim.delivery import (
    POLICIES,
    DeliveryReport,
    Endpoint,
    HttpTransport,
    Message,
    ModelTransport,
    Signer,
    Transport,
    WebhookSender,
)
from handoff.sim.exports import write_exports
from handoff.sim.faults import FaultLabel, MessageFaults, World, apply_faults
from handoff.sim.scenario import Scenario, generate
from handoff.sim.scenario_config import ScenarioConfig
from handoff.sim.truth import write_truth
from handoff.sim.vendors import erp, hubspot, klaviyo, loyaltylion, shopify, zendesk

T = TypeVar("T")

SYSTEMS = ("shopify", "erp", "hubspot", "loyaltylion")
"""The systems that fire webhooks; each is a handoff source of the same name by default."""

SIM_SECRETS: dict[str, str] = {
    "SIM_SHOPIFY_SECRET": "sim-shopify-client-secret",
    "SIM_ERP_SECRET": "whsec_"
    + base64.b64encode(b"sim-erp-standard-webhooks-key-32b").decode("ascii"),
    "SIM_HUBSPOT_SECRET": "sim-hubspot-client-secret",
    "SIM_LOYALTYLION_SECRET": "sim-loyaltylion-site-secret",
}
"""The simulator's own signing secrets, by the environment variable names in SIM_SOURCES."""

SIM_SOURCES: dict[str, dict[str, Any]] = {
    # the simulated retailer is in the US: phones typed without +1 are US numbers
    "shopify": {
        "vendor": "shopify",
        "role": "pos",
        "secret_env": "SIM_SHOPIFY_SECRET",
        "default_region": "US",
    },
    "erp": {
        "vendor": "standard",
        "role": "erp",
        "secret_env": "SIM_ERP_SECRET",
        "default_region": "US",
    },
    "hubspot": {
        "vendor": "hubspot",
        "role": "crm",
        "secret_env": "SIM_HUBSPOT_SECRET",
        "default_region": "US",
    },
    "loyaltylion": {
        "vendor": "loyaltylion",
        "role": "loyalty",
        "secret_env": "SIM_LOYALTYLION_SECRET",
        "default_region": "US",
        # the simulated LoyaltyLion runs on the simulated Shopify store: merchant_id is the
        # Shopify customer id
        "options": {"merchant_id_system": "shopify"},
    },
}
"""handoff `[sources.*]` tables that accept the simulator's webhooks."""

SIM_TOKENS: dict[str, str] = {
    "shopify": "shpat_sim_token",
    "hubspot": "pat-sim-hubspot-token",
    "loyaltylion": "ll_sim_token",
    "zendesk": "zd_sim_token",
    "klaviyo": "pk_sim_token",
    "erp": "erp_sim_token",
}
"""The API credentials each look-alike accepts (handoff's destination config uses these)."""


def run_sync(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from sync code, even inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    result: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(factory()))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


def signers(secrets: Mapping[str, str] | None = None, *, shop_domain: str) -> dict[str, Signer]:
    env = dict(SIM_SECRETS if secrets is None else secrets)
    return {
        "shopify": shopify.ShopifySigner(env["SIM_SHOPIFY_SECRET"], shop_domain=shop_domain),
        "erp": erp.StandardSigner(env["SIM_ERP_SECRET"]),
        "hubspot": hubspot.HubSpotSigner(env["SIM_HUBSPOT_SECRET"]),
        "loyaltylion": loyaltylion.LoyaltyLionSigner(env["SIM_LOYALTYLION_SECRET"]),
    }


@dataclass
class Simulation:
    """One scenario with its faults, messages and planned deliveries (all pure data)."""

    config: ScenarioConfig
    scenario: Scenario
    world: World
    messages: list[Message]
    planned: DeliveryReport

    @classmethod
    def build(cls, config: ScenarioConfig | None = None) -> Simulation:
        config = config or ScenarioConfig()
        scenario = generate(config)
        world = apply_faults(scenario)
        messages = (
            shopify.webhook_messages(world)
            + erp.webhook_messages(world)
            + hubspot.webhook_messages(world)
            + loyaltylion.webhook_messages(world)
        )
        sim = cls(config, scenario, world, messages, DeliveryReport([], {}, {}))
        sim.planned = run_sync(lambda: sim._play(ModelTransport(), "http://model.invalid", None))
        world.labels.extend(sim.planned.labels())
        return sim

    def fault_for(self, message: Message) -> MessageFaults:
        return self.world.message_faults(
            message.system, message.message_id, order_id=message.order_id
        )

    def endpoints(
        self,
        hub_url: str,
        *,
        sources: Mapping[str, str] | None = None,
        secrets: Mapping[str, str] | None = None,
    ) -> dict[str, Endpoint]:
        """Where each system posts: `{hub_url}/hooks/{source}` (source defaults to the system)."""
        names = {system: system for system in SYSTEMS} | dict(sources or {})
        signing = signers(secrets, shop_domain=self.config.scenario.shop_domain)
        base = hub_url.rstrip("/")
        return {
            system: Endpoint(
                system, f"{base}/hooks/{names[system]}", signing[system], POLICIES[system]
            )
            for system in SYSTEMS
        }

    async def _play(
        self,
        transport: Transport,
        hub_url: str,
        clock: SimClock | None,
        *,
        sources: Mapping[str, str] | None = None,
        secrets: Mapping[str, str] | None = None,
        until: datetime | None = None,
        concurrency: int = 1,
        batch_window: float = 0.0,
        timeout_scale: float = 1.0,
    ) -> DeliveryReport:
        sender = WebhookSender(
            clock or SimClock(self.scenario.start),
            transport,
            self.endpoints(hub_url, sources=sources, secrets=secrets),
            seed=self.config.seed,
            windows=self.config.faults.windows,
            start=self.scenario.start,
            fault_for=self.fault_for,
            concurrency=concurrency,
            batch_window=batch_window,
            timeout_scale=timeout_scale,
        )
        sender.add(self.messages)
        return await sender.run(until)

    def labels(self) -> list[FaultLabel]:
        return self.world.labels_with_ids()

    def write(self, out_dir: str | Path) -> list[Path]:
        """Ground truth (`truth/`) and every system's export (`exports/`) as of the end."""
        out = Path(out_dir)
        written = write_truth(out / "truth", self.world, self.planned.records)
        clock = SimClock(self.scenario.end)
        apis = build_apis(clock, self)
        written += write_exports(
            out / "exports",
            erp=apis.erp,
            loyalty=apis.loyaltylion,
            crm=apis.hubspot,
            shop=apis.shopify,
            helpdesk=apis.zendesk,
            comms=apis.klaviyo,
            as_of=self.scenario.end,
        )
        return written


# --- the look-alike APIs --------------------------------------------------------------------------


@dataclass
class Apis:
    shopify: shopify.ShopifyApi
    hubspot: hubspot.HubSpotApi
    loyaltylion: loyaltylion.LoyaltyLionApi
    zendesk: zendesk.ZendeskApi
    klaviyo: klaviyo.KlaviyoApi
    erp: erp.ErpApi

    def items(self) -> list[tuple[str, Any]]:
        return [
            ("shopify", self.shopify),
            ("hubspot", self.hubspot),
            ("loyaltylion", self.loyaltylion),
            ("zendesk", self.zendesk),
            ("klaviyo", self.klaviyo),
            ("erp", self.erp),
        ]


def build_apis(
    clock: SimClock,
    simulation: Simulation | None = None,
    *,
    tokens: Mapping[str, str] | None = None,
) -> Apis:
    """Every look-alike API over `clock`, loaded with the simulation's state if given."""
    tok = SIM_TOKENS | dict(tokens or {})
    config = simulation.config if simulation else ScenarioConfig()
    common: dict[str, Any] = {
        "seed": config.seed,
        "windows": config.faults.windows,
        "origin": simulation.scenario.start if simulation else clock.start,
    }
    apis = Apis(
        shopify=shopify.ShopifyApi(clock, token=tok["shopify"], **common),
        hubspot=hubspot.HubSpotApi(clock, token=tok["hubspot"], **common),
        loyaltylion=loyaltylion.LoyaltyLionApi(
            clock, token=tok["loyaltylion"], rules=config.program, **common
        ),
        zendesk=zendesk.ZendeskApi(clock, token=tok["zendesk"], **common),
        klaviyo=klaviyo.KlaviyoApi(clock, token=tok["klaviyo"], **common),
        erp=erp.ErpApi(clock, token=tok["erp"], **common),
    )
    if simulation is not None:
        for _name, api in apis.items():
            api.load(simulation.world)
    return apis


class ServedApp:
    """An ASGI app served by uvicorn on a free 127.0.0.1 port, in a daemon thread."""

    def __init__(self, app: ASGIApp, name: str = "") -> None:
        self.name = name
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = int(self._sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self._sock]}, daemon=True, name=name
        )

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"look-alike {self.name} did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(10)
        self._sock.close()


@dataclass
class RunReport:
    """What a live run did, next to what the plan said it would do."""

    live: DeliveryReport
    planned: DeliveryReport
    mismatched: list[tuple[Message, tuple[Any, ...], tuple[Any, ...]]] = field(default_factory=list)

    def mismatches(self) -> list[tuple[Message, tuple[Any, ...], tuple[Any, ...]]]:
        return self.mismatched

    def expected_receipts(self) -> dict[tuple[str, str], int]:
        return self.live.expected_receipts()


class SimStack:
    """Every look-alike as an ASGI app (and, once started, a loopback server) on one clock."""

    def __init__(self, clock: SimClock, *, tokens: Mapping[str, str] | None = None) -> None:
        self.clock = clock
        self.tokens = SIM_TOKENS | dict(tokens or {})
        self.apis = build_apis(clock, None, tokens=self.tokens)
        self.simulation: Simulation | None = None
        self.servers: dict[str, ServedApp] = {}

    # --- lifecycle --------------------------------------------------------------------------------

    @property
    def apps(self) -> dict[str, ASGIApp]:
        return {name: api.app for name, api in self.apis.items()}

    @property
    def urls(self) -> dict[str, str]:
        return {name: served.url for name, served in self.servers.items()}

    def load(self, simulation: Simulation) -> None:
        """Seed every look-alike's state from the simulation (its fault windows included)."""
        self.simulation = simulation
        self.apis = build_apis(self.clock, simulation, tokens=self.tokens)

    def start(self) -> SimStack:
        """Serve every look-alike on its own free 127.0.0.1 port (in-process, threads)."""
        if self.servers:
            return self
        for name, _api in self.apis.items():
            served = ServedApp(_Dispatch(self, name), name=f"sim-{name}")
            served.start()
            self.servers[name] = served
        return self

    def stop(self) -> None:
        for served in self.servers.values():
            served.stop()
        self.servers.clear()

    def __enter__(self) -> SimStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- firing webhooks --------------------------------------------------------------------------

    async def run_async(
        self,
        simulation: Simulation,
        hub_url: str,
        *,
        sources: Mapping[str, str] | None = None,
        secrets: Mapping[str, str] | None = None,
        until: datetime | None = None,
        concurrency: int = 1,
        batch_window: float = 0.0,
        timeout_scale: float = 1.0,
        client: httpx.AsyncClient | None = None,
    ) -> RunReport:
        """Fire the simulation's webhooks at `hub_url` under this stack's clock.

        `sources` maps a system (shopify, erp, hubspot, loyaltylion) to its handoff source name;
        `secrets` the SIM_SECRETS env names to values. The clock is moved to each due time
        (manual clock) or waited for (flowing clock). `timeout_scale` multiplies the vendors'
        real-second timeouts."""
        if self.simulation is not simulation:
            self.load(simulation)
        if self.clock.now() < simulation.scenario.start:
            self.clock.advance_to(simulation.scenario.start)
        owned = client is None
        http = client or httpx.AsyncClient(limits=httpx.Limits(max_connections=max(4, concurrency)))
        try:
            live = await simulation._play(
                HttpTransport(http),
                hub_url,
                self.clock,
                sources=sources,
                secrets=secrets,
                until=until,
                concurrency=concurrency,
                batch_window=batch_window,
                timeout_scale=timeout_scale,
            )
        finally:
            if owned:
                await http.aclose()
        for key, when in live.deleted_subscriptions.items():
            system, _, topic = key.partition(":")
            if system == "shopify":
                self.apis.shopify.subscriptions[topic] = when
        planned = {r.message.message_id: r for r in simulation.planned.records}
        mismatched = []
        for record in live.records:
            plan = planned.get(record.message.message_id)
            if plan is None or until is not None:
                continue
            exact = batch_window == 0
            if plan.signature(times=exact) != record.signature(times=exact):
                mismatched.append(
                    (record.message, plan.signature(times=exact), record.signature(times=exact))
                )
        return RunReport(live, simulation.planned, mismatched)

    def run(self, simulation: Simulation, hub_url: str, **options: Any) -> RunReport:
        """`run_async` from sync code."""
        return run_sync(lambda: self.run_async(simulation, hub_url, **options))

    def write_exports(self, out_dir: str | Path, as_of: datetime | None = None) -> list[Path]:
        """Every system's export as the look-alikes hold it now (handoff's writes included)."""
        a = self.apis
        return write_exports(
            Path(out_dir),
            erp=a.erp,
            loyalty=a.loyaltylion,
            crm=a.hubspot,
            shop=a.shopify,
            helpdesk=a.zendesk,
            comms=a.klaviyo,
            as_of=as_of,
        )


class _Dispatch:
    """Routes to the stack's *current* app for a vendor, so `load` can swap state under a server."""

    def __init__(self, stack: SimStack, name: str) -> None:
        self.stack = stack
        self.name = name

    async def __call__(
        self,
        scope: Any,
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        app = getattr(self.stack.apis, self.name).app
        await app(scope, receive, send)
