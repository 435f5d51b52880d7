"""The `[program]` table: the loyalty rules the expected ledger is computed under.

Defaults are exactly those of `contracts/reconcile.md`. Every further key is a policy on which the
anchor platforms (Open Loyalty, Smile.io, LoyaltyLion, Yotpo) differ, so that handoff can model the
platform a retailer actually runs and explain why its balances differ. Errors name the key, the
value given and what is allowed, both through `parse_program` and inside the configuration file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import cached_property
from itertools import pairwise
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from handoff.domain.money import MoneyError, to_minor

Trigger = Literal["paid", "fulfilled"]
Basis = Literal["net_merchandise", "gross_merchandise"]
Rounding = Literal["floor", "half_up", "ceil"]
PartialRefunds = Literal["proportional", "all_or_nothing"]
ReversalRate = Literal["original", "current"]
NegativeBalance = Literal["floor", "allow"]
Expiry = Literal["never", "inactivity"]
TierBasis = Literal["spend", "points"]
SpendBasis = Literal["net_merchandise", "earning_basis"]
TierWindow = Literal["lifetime", "rolling_12_months", "calendar_year"]
TierDowngrade = Literal["immediate", "never", "after_days"]

_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class ProgramError(ValueError):
    """A `[program]` table that cannot be used, phrased for the operator who fixes the file."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = tuple(problems)


def _decimal(value: Any) -> Decimal:
    """Config numbers as exact decimals: ints and strings as given, a TOML float by its text."""
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int | float | str):
        try:
            result = Decimal(str(value).strip())
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a decimal number") from None
    else:
        raise ValueError(f"{value!r} is not a decimal number")
    if not result.is_finite():
        raise ValueError(f"{value!r} is not finite")
    if result < 0:
        raise ValueError(f"{value!r} must not be negative")
    return result


def _amount_text(value: Any) -> str:
    """Money amounts stay decimal strings (converted to minor units once the currency is known)."""
    if isinstance(value, bool | float):
        raise ValueError(f'{value!r} must be a decimal string like "500" or "12.50"')
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, str):
        return value.strip()
    raise ValueError(f'{value!r} must be a decimal string like "500" or "12.50"')


def _aware(value: Any) -> Any:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{value!r} is not an ISO 8601 time") from None
    if isinstance(value, datetime) and (value.tzinfo is None or value.utcoffset() is None):
        raise ValueError(f"{value.isoformat()} has no UTC offset; add one, e.g. Z")
    return value


Rate = Annotated[Decimal, BeforeValidator(_decimal)]
AmountText = Annotated[str, BeforeValidator(_amount_text)]
AwareTime = Annotated[datetime, BeforeValidator(_aware)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Tier(_Strict):
    """A tier and its entry threshold: `min_spend` (major units) or `min_points`."""

    name: str = Field(min_length=1)
    min_spend: AmountText | None = None
    min_points: int | None = Field(default=None, ge=0)


class RateChange(_Strict):
    """From `effective_from` on, the program earns `points_per_unit` ('current'-rate reversals)."""

    effective_from: AwareTime
    points_per_unit: Rate


DEFAULT_TIERS = (
    Tier(name="Bronze", min_spend="0"),
    Tier(name="Silver", min_spend="500"),
    Tier(name="Gold", min_spend="2000"),
)


class Program(_Strict):
    """Loyalty rules. Field order matters: later validators read earlier fields."""

    # Defaults are checked too: default tiers are spend tiers, default vip_tiers name "Gold".
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    # -- reconcile.md [program] -------------------------------------------------------------
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    points_per_unit: Rate = Decimal(1)
    basis: Basis = "net_merchandise"
    trigger: Trigger = "fulfilled"
    rounding: Rounding = "floor"
    pending_days: int = Field(default=0, ge=0, le=3650)
    timing_tolerance: str = "24h"
    tier_basis: TierBasis = "spend"
    tiers: tuple[Tier, ...] = DEFAULT_TIERS
    vip_tiers: tuple[str, ...] = ("Gold",)
    # -- policies the anchor platforms differ on -------------------------------------------
    include_tax: bool = False
    include_shipping: bool = False
    earn_channels: tuple[str, ...] | None = None
    rate_changes: tuple[RateChange, ...] = ()
    partial_refunds: PartialRefunds = "proportional"
    reversal_rate: ReversalRate = "original"
    negative_balance: NegativeBalance = "floor"
    expiry: Expiry = "never"
    expiry_days: int = Field(default=365, ge=1, le=36500)
    spend_basis: SpendBasis = "net_merchandise"
    tier_window: TierWindow = "lifetime"
    tier_downgrade: TierDowngrade = "immediate"
    tier_downgrade_days: int = Field(default=365, ge=1, le=36500)
    vip_min_spend: AmountText | None = None
    vip_manual_override: bool = True
    vip_flag_attribute: str = Field(default="is_vip", min_length=1)
    vip_flag_sources: tuple[str, ...] = ()
    # -- liability ---------------------------------------------------------------------------
    point_value: Rate = Decimal("0.01")
    breakage_rate: Rate | None = None

    @field_validator("trigger", mode="before")
    @classmethod
    def _never_on_placement(cls, value: Any) -> Any:
        if value == "placed":
            raise ValueError(
                "'placed' is not allowed: points earned on placement stay on orders that are "
                "later cancelled or never paid; allowed: 'paid' or 'fulfilled'"
            )
        return value

    @field_validator("timing_tolerance")
    @classmethod
    def _duration(cls, value: str) -> str:
        if _DURATION.match(value) is None:
            raise ValueError(
                f"{value!r} is not a duration; allowed: a whole number and s, m, h or d ('24h')"
            )
        return value

    @field_validator("tiers")
    @classmethod
    def _tiers(cls, value: tuple[Tier, ...], info: ValidationInfo) -> tuple[Tier, ...]:
        currency = info.data.get("currency", "USD")
        basis = info.data.get("tier_basis", "spend")
        names = [tier.name for tier in value]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"tier names must be unique; repeated: {', '.join(duplicates)}")
        previous: int | None = None
        for index, tier in enumerate(value):
            if basis == "spend":
                if tier.min_spend is None:
                    raise ValueError(
                        f"[{index}] {tier.name!r} needs min_spend (tier_basis='spend')"
                    )
                try:
                    threshold = to_minor(tier.min_spend, currency)
                except MoneyError as exc:
                    raise ValueError(f"[{index}] {tier.name!r} min_spend: {exc}") from None
                if threshold < 0:
                    raise ValueError(f"[{index}] {tier.name!r} min_spend must not be negative")
            else:
                if tier.min_points is None:
                    raise ValueError(
                        f"[{index}] {tier.name!r} needs min_points (tier_basis='points')"
                    )
                threshold = tier.min_points
            if previous is not None and threshold <= previous:
                raise ValueError(
                    f"[{index}] {tier.name!r}: thresholds must increase from tier to tier"
                )
            previous = threshold
        return value

    @field_validator("vip_tiers")
    @classmethod
    def _vip_tiers_exist(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        tiers: tuple[Tier, ...] | None = info.data.get("tiers")
        if tiers is None:  # tiers failed validation; that error is reported already
            return value
        allowed = [tier.name for tier in tiers]
        for name in value:
            if name not in allowed:
                shown = ", ".join(repr(n) for n in allowed) or "(no tiers defined)"
                raise ValueError(f"{name!r} is not a tier; allowed: {shown}")
        return value

    @field_validator("rate_changes")
    @classmethod
    def _rate_changes_increase(cls, value: tuple[RateChange, ...]) -> tuple[RateChange, ...]:
        for before, after in pairwise(value):
            if after.effective_from <= before.effective_from:
                raise ValueError("effective_from must strictly increase from change to change")
        return value

    @field_validator("expiry_days")
    @classmethod
    def _expiry_after_vesting(cls, value: int, info: ValidationInfo) -> int:
        pending = info.data.get("pending_days", 0)
        if info.data.get("expiry") == "inactivity" and value <= pending:
            raise ValueError(
                f"{value} must exceed pending_days ({pending}): points would expire before vesting"
            )
        return value

    @field_validator("vip_min_spend")
    @classmethod
    def _vip_min_spend(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            try:
                to_minor(value, info.data.get("currency", "USD"))
            except MoneyError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("breakage_rate")
    @classmethod
    def _breakage_is_a_fraction(cls, value: Decimal | None) -> Decimal | None:
        if value is not None and value > 1:
            raise ValueError(f"{value} must be between 0 and 1 (a share of outstanding points)")
        return value

    # -- derived values (integers and exact ratios) ------------------------------------------

    @property
    def trigger_event(self) -> str:
        return f"order.{self.trigger}"

    @property
    def tolerance(self) -> timedelta:
        match = _DURATION.match(self.timing_tolerance)
        assert match is not None  # validated
        return timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])

    @cached_property
    def threshold_table(self) -> tuple[tuple[str, int], ...]:
        if self.tier_basis == "spend":
            return tuple(
                (tier.name, to_minor(tier.min_spend or "0", self.currency)) for tier in self.tiers
            )
        return tuple((tier.name, tier.min_points or 0) for tier in self.tiers)

    def tier_thresholds(self) -> tuple[tuple[str, int], ...]:
        """(name, threshold) ascending: minor units of spend, or points."""
        return self.threshold_table

    def vip_min_spend_minor(self) -> int | None:
        return None if self.vip_min_spend is None else to_minor(self.vip_min_spend, self.currency)


def _describe(error: Mapping[str, Any], prefix: str) -> str:
    loc = ".".join(str(part) for part in (prefix, *error["loc"]) if part != "")
    kind = error["type"]
    value = error.get("input")
    if kind == "extra_forbidden":
        return f"{loc}: unknown key (value {value!r})"
    if kind == "missing":
        return f"{loc}: required key is missing"
    if kind == "literal_error":
        return f"{loc} = {value!r}: not allowed; allowed: {error['ctx']['expected']}"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{loc} = {value!r}: {message}"


def parse_program(table: Mapping[str, Any] | None, *, prefix: str = "program") -> Program:
    """The `[program]` table (already parsed from TOML) → Program, or ProgramError naming keys."""
    try:
        return Program.model_validate(dict(table or {}))
    except ValidationError as exc:
        raise ProgramError([_describe(e, prefix) for e in exc.errors()]) from None
