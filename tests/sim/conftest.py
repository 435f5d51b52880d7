"""Small scenario configs shared by the simulator tests (kept small so the suite stays fast)."""

from __future__ import annotations

from typing import Any

from handoff.sim.scenario_config import (
    BusinessConfig,
    FaultConfig,
    NoiseConfig,
    ScenarioConfig,
    no_faults,
)

QUIET_NOISE = NoiseConfig(
    placeholder_email_rate=0,
    typo_email_rate=0,
    no_email_rate=0,
    staff_email_rate=0,
    placeholder_phone_rate=0,
    no_phone_rate=0,
    nickname_rate=0,
    name_case_rate=0,
    household_rate=0,
    cross_location_duplicate_rate=0,
)


def small(
    customers: int = 30, seed: int = 11, *, faults: FaultConfig | None = None, **tables: Any
) -> ScenarioConfig:
    """A small scenario; `faults=None` keeps the default (noisy) fault set."""
    data: dict[str, Any] = {"scenario": BusinessConfig(customers=customers, seed=seed)}
    if faults is not None:
        data["faults"] = faults
    data.update(tables)
    return ScenarioConfig(**data)


def clean(customers: int = 30, seed: int = 11, **tables: Any) -> ScenarioConfig:
    """No faults and no identity noise: every system agrees with the truth."""
    return small(customers, seed, faults=no_faults(), noise=QUIET_NOISE, **tables)


def only(customers: int = 30, seed: int = 11, **fault_overrides: Any) -> ScenarioConfig:
    """No identity noise and exactly the given faults switched on."""
    faults = no_faults().model_copy(update=fault_overrides)
    return small(customers, seed, faults=faults, noise=QUIET_NOISE)
