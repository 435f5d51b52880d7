"""Scenario parameters, with defaults, loadable from a TOML file.

Every knob of a simulated retailer lives here so that a run is fully described by one file
(and its seed): the shape of the business, the noise in its data, the program rules the truth
is computed with, and the faults injected per handoff. Unknown keys are errors, so a typo in
a scenario file never silently falls back to a default.

File layout (every table and key optional):

    [scenario]  seed, customers, start, days, stores, currency, shop_domain
    [noise]     placeholder_email_rate, typo_email_rate, ...
    [orders]    orders_per_customer, online_share, discount_rate, ...
    [crm]       manual_vip_rate, helpdesk_rate, comms_rate
    [program]   as in contracts/reconcile.md (points_per_unit, trigger, tiers, vip_tiers, ...)
    [faults]    silent_pos_stores, drop_rate, duplicate_rate, ... and [[faults.windows]]
"""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

Rate = float  # 0.0 ..= 1.0, validated by Field bounds


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _rate(default: float) -> Any:
    return Field(default=default, ge=0.0, le=1.0)


class ScenarioConfigError(ValueError):
    """A scenario file that does not parse, phrased for the person editing it."""


class Tier(_Strict):
    name: str = Field(min_length=1)
    min_spend: Decimal = Field(ge=0)  # major units, lifetime net spend, refunds deducted

    @property
    def min_spend_minor(self) -> int:
        return int(self.min_spend * 100)


def _default_tiers() -> tuple[Tier, ...]:
    return (
        Tier(name="Bronze", min_spend=Decimal("0")),
        Tier(name="Silver", min_spend=Decimal("500")),
        Tier(name="Gold", min_spend=Decimal("2000")),
    )


class ProgramRules(_Strict):
    """reconcile.md's `[program]` defaults: the rules the ground truth is computed with."""

    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    points_per_unit: int = Field(default=1, ge=0)
    basis: Literal["net_merchandise"] = "net_merchandise"
    trigger: Literal["fulfilled", "paid"] = "fulfilled"
    rounding: Literal["floor"] = "floor"
    pending_days: int = Field(default=0, ge=0, le=365)
    timing_tolerance: str = "24h"
    tiers: tuple[Tier, ...] = Field(default_factory=_default_tiers)
    vip_tiers: tuple[str, ...] = ("Gold",)

    @field_validator("tiers")
    @classmethod
    def _tiers_ordered(cls, value: tuple[Tier, ...]) -> tuple[Tier, ...]:
        if not value:
            raise ValueError("at least one tier")
        spends = [t.min_spend for t in value]
        if spends != sorted(spends) or spends[0] != 0:
            raise ValueError("tiers must be ordered by min_spend, the first at 0")
        return value


class BusinessConfig(_Strict):
    seed: int = 7
    customers: int = Field(default=200, ge=1, le=1_000_000)
    start: datetime = datetime(2026, 1, 5, tzinfo=UTC)
    days: int = Field(default=90, ge=1, le=3650)
    stores: tuple[str, ...] = ("S01", "S02", "S03", "S04")
    shop_domain: str = "sim-retail.myshopify.com"

    @field_validator("start")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("start needs an offset or Z")
        return value.astimezone(UTC)

    @field_validator("stores")
    @classmethod
    def _stores(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one store")
        if len(set(value)) != len(value) or "WEB" in value:
            raise ValueError("store ids must be unique and not 'WEB' (the online store)")
        return value


class NoiseConfig(_Strict):
    """The data quality the field reports, as per-profile rates."""

    placeholder_email_rate: Rate = _rate(0.06)  # test@test.com, noemail@… typed at the till
    typo_email_rate: Rate = _rate(0.05)  # gmial.com, a dropped or swapped letter
    no_email_rate: Rate = _rate(0.04)
    staff_email_rate: Rate = _rate(0.03)  # the cashier types their own address
    placeholder_phone_rate: Rate = _rate(0.03)  # 0000000000, 5555555555
    no_phone_rate: Rate = _rate(0.10)
    nickname_rate: Rate = _rate(0.08)  # Bob for Robert
    name_case_rate: Rate = _rate(0.05)  # ANA SILVA, ana silva
    household_rate: Rate = _rate(0.08)  # people living with another customer (shared email/phone)
    cross_location_duplicate_rate: Rate = _rate(0.3)  # a second store creates a new profile


class OrderConfig(_Strict):
    orders_per_customer: float = Field(default=3.0, gt=0, le=100)
    online_share: Rate = _rate(0.35)
    second_store_rate: Rate = _rate(0.15)  # an in-store order at another store than home
    discount_rate: Rate = _rate(0.3)
    gift_card_rate: Rate = _rate(0.06)
    tax_rate_bp: int = Field(default=825, ge=0, le=5000)  # basis points on net merchandise
    shipping: Decimal = Field(default=Decimal("6.95"), ge=0)  # online orders only
    free_shipping_over: Decimal = Field(default=Decimal("75"), ge=0)
    cancel_rate: Rate = _rate(0.05)
    partial_refund_rate: Rate = _rate(0.08)
    full_refund_rate: Rate = _rate(0.04)
    big_spender_rate: Rate = _rate(0.08)  # people who buy enough to cross the VIP threshold
    fulfil_days_max: int = Field(default=5, ge=0, le=60)
    refund_days_max: int = Field(default=20, ge=1, le=120)


class CrmConfig(_Strict):
    manual_vip_rate: Rate = _rate(0.03)  # CRM users ticking VIP by hand
    helpdesk_rate: Rate = _rate(0.3)  # people known to the helpdesk
    comms_rate: Rate = _rate(0.6)  # people subscribed to email/SMS


class FaultWindow(_Strict):
    """A period during which a system misbehaves, in hours from the scenario start.

    `target` is a look-alike API (`shopify`, `hubspot`, `loyaltylion`, `zendesk`, `klaviyo`,
    `erp`) or `webhooks:<system>` for the link from that system's webhook sender to the hub.
    `kind`: `outage` (every request fails with `status`), `errors` (a `rate` of requests fail
    with 500/502/503), `throttle` (a 429 storm with `retry_after` seconds).
    """

    target: str
    kind: Literal["outage", "errors", "throttle"]
    start_hours: float = Field(ge=0)
    duration_hours: float = Field(gt=0)
    rate: Rate = _rate(1.0)
    status: int = Field(default=503, ge=400, le=599)
    retry_after: int = Field(default=10, ge=1)


class FaultConfig(_Strict):
    """Faults per handoff; each injected instance is labelled in the ground truth."""

    silent_pos_stores: tuple[str, ...] = ("S04",)  # POS never fires profile/order webhooks
    loyalty_crm_relay_off: bool = False  # loyalty → CRM relay switched off
    drop_rate: Rate = _rate(0.01)  # webhooks silently never sent (every sender)
    drop_rates: dict[str, Rate] = Field(default_factory=dict)  # per system, overrides drop_rate
    duplicate_rate: Rate = _rate(0.02)  # an acknowledged delivery sent again (same id)
    slow_ack_rate: Rate = _rate(0.02)  # the ack arrives after the vendor's timeout → redelivery
    out_of_order_rate: Rate = _rate(0.3)  # of refunded orders: the refund arrives first
    erp_loyalty_on_placement_rate: Rate = _rate(0.03)  # ERP → loyalty fires on placement
    points_on_gross_rate: Rate = _rate(0.03)  # loyalty earns on a basis with tax + shipping
    erp_loyalty_drop_rate: Rate = _rate(0.02)  # purchase never reaches loyalty
    refund_deduction_skip_rate: Rate = _rate(0.1)  # refund/cancellation deduction never applied
    loyalty_duplicate_earn_rate: Rate = _rate(0.01)  # a purchase earned twice
    enrichment_overwrite_rate: Rate = _rate(0.05)  # CRM enrichment overwrites loyalty fields
    vip_not_propagated_rate: Rate = _rate(0.4)  # a destination never got the VIP flag
    windows: tuple[FaultWindow, ...] = ()

    def drop_rate_for(self, system: str) -> float:
        return self.drop_rates.get(system, self.drop_rate)


class ScenarioConfig(_Strict):
    """Everything that defines one simulated run; the same config gives the same bytes."""

    scenario: BusinessConfig = BusinessConfig()
    noise: NoiseConfig = NoiseConfig()
    orders: OrderConfig = OrderConfig()
    crm: CrmConfig = CrmConfig()
    program: ProgramRules = ProgramRules()
    faults: FaultConfig = FaultConfig()

    @property
    def seed(self) -> int:
        return self.scenario.seed

    def with_seed(self, seed: int) -> ScenarioConfig:
        return self.model_copy(update={"scenario": self.scenario.model_copy(update={"seed": seed})})


def no_faults() -> FaultConfig:
    """Every fault off: a clean run (the truth and the systems' views agree)."""
    return FaultConfig(
        silent_pos_stores=(),
        drop_rate=0.0,
        duplicate_rate=0.0,
        slow_ack_rate=0.0,
        out_of_order_rate=0.0,
        erp_loyalty_on_placement_rate=0.0,
        points_on_gross_rate=0.0,
        erp_loyalty_drop_rate=0.0,
        refund_deduction_skip_rate=0.0,
        loyalty_duplicate_earn_rate=0.0,
        enrichment_overwrite_rate=0.0,
        vip_not_propagated_rate=0.0,
    )


def _describe(error: Any) -> str:
    loc = ".".join(str(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"{loc}: unknown key"
    if error["type"] == "missing":
        return f"{loc}: required key is missing"
    return f"{loc} = {error.get('input')!r}: {error['msg']}"


def scenario_config_from_dict(
    data: dict[str, Any], *, origin: str = "<scenario>"
) -> ScenarioConfig:
    try:
        return ScenarioConfig.model_validate(data)
    except ValidationError as exc:
        raise ScenarioConfigError(
            "\n".join(f"{origin}: {_describe(e)}" for e in exc.errors())
        ) from None


def load_scenario_config(path: str | Path) -> ScenarioConfig:
    """Read a scenario TOML file (see the module docstring for its tables)."""
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ScenarioConfigError(f"{file}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioConfigError(f"{file}: not valid TOML: {exc}") from None
    return scenario_config_from_dict(data, origin=str(file))
