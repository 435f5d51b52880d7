"""Typed settings: the environment plus one TOML file describing the retailer's systems.

Secrets never live in the file; a source names the environment variable that holds its secret.
A bad file fails loudly, naming the key, the value given and what is allowed.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from handoff.domain.ledger.program import Program

Vendor = Literal["shopify", "hubspot", "standard", "zendesk", "quickbooks", "loyaltylion", "hmac"]
Role = Literal["pos", "storefront", "erp", "loyalty", "crm", "helpdesk", "comms"]

DEFAULT_DATABASE_URL = "sqlite:///./handoff.db"
DEFAULT_CONFIG_PATH = "handoff.toml"


class ConfigError(Exception):
    """A configuration problem, phrased for the operator who has to fix the file."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(_Strict):
    """One system that posts webhooks to `POST /hooks/{name}`."""

    vendor: Vendor
    role: Role
    secret_env: str = Field(min_length=1)
    previous_secret_env: str | None = None  # the second active secret while rotating
    tolerance_seconds: int = Field(default=300, ge=1, le=3600)
    transient_status: Literal[503, 429] = 503
    public_url: str | None = None  # URL the vendor signs over (HubSpot v3) when behind a proxy
    default_region: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    options: dict[str, Any] = Field(default_factory=dict)  # vendor-specific knobs


class GatewayConfig(_Strict):
    body_limit_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    batch_max: int = Field(default=256, ge=1, le=10_000)


class ProcessorConfig(_Strict):
    batch_size: int = Field(default=100, ge=1, le=10_000)
    idle_poll_seconds: float = Field(default=0.2, gt=0, le=60)


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    # HTTP processes for the gateway and API; above 1 the processor runs in its own process
    workers: int = Field(default=1, ge=1, le=64)


DestinationVendor = Literal[
    "shopify", "hubspot", "zendesk", "klaviyo", "loyaltylion", "gorgias", "webhook"
]
ChangeKind = Literal["attribute", "points", "profile"]


class RateLimitConfig(_Strict):
    """A destination's throttle, modelled on the vendor's (docs/delivery.md §Rate limits)."""

    model: Literal["leaky_bucket", "cost_bucket", "fixed_windows", "none"]
    capacity: float = Field(default=40, gt=0)  # bucket size (requests or cost points)
    rate: float = Field(default=2, gt=0)  # leak / restore per second
    cost: float = Field(default=1, gt=0)  # what one request takes from a cost bucket
    windows: list[tuple[int, float]] = Field(default_factory=list)  # (limit, seconds) pairs


class RetryConfig(_Strict):
    """When to try a failed delivery again; the default is the Standard Webhooks schedule."""

    schedule: list[float] = Field(
        default_factory=lambda: [0.0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400],
        min_length=1,
    )
    jitter: float = Field(default=0.2, ge=0, le=1)
    throttle_floor_seconds: float = Field(default=60, ge=0)  # at least this after a timeout/429
    timeout_seconds: float = Field(default=15, gt=0, le=300)


class BreakerConfig(_Strict):
    failure_ratio: float = Field(default=0.7, gt=0, le=1)
    min_requests: int = Field(default=10, ge=1)
    window_seconds: float = Field(default=300, gt=0)
    open_seconds: float = Field(default=30, gt=0)  # before half-open probes
    probes: int = Field(default=1, ge=1)


class DestinationConfig(_Strict):
    """One system handoff writes to (`[destinations.NAME]`): what it gets and how."""

    vendor: DestinationVendor
    role: Role
    base_url: str = Field(min_length=1)
    token_env: str | None = None  # API token (vendors) or whsec_ secret (webhook)
    previous_token_envs: list[str] = Field(default_factory=list)  # webhook secret rotation
    system: str | None = None  # identity system holding this destination's ids; default NAME
    changes: list[ChangeKind] | None = None  # default by vendor (docs/delivery.md §Flows)
    fields: dict[str, str | dict[str, str]] = Field(default_factory=dict)
    verify: bool = False  # read the record back after writing and compare
    rate_limit: RateLimitConfig | None = None  # default: the vendor's documented limit
    retry: RetryConfig = RetryConfig()
    breaker: BreakerConfig = BreakerConfig()
    options: dict[str, Any] = Field(default_factory=dict)


class DeliveryConfig(_Strict):
    batch_size: int = Field(default=100, ge=1, le=5_000)
    lease_seconds: float = Field(default=60, ge=1, le=3600)
    idle_poll_seconds: float = Field(default=0.1, gt=0, le=60)
    concurrency: int = Field(default=16, ge=1, le=256)  # requests in flight per worker


class AlertsConfig(_Strict):
    """`[alerts]`: the rules' thresholds (the field's defaults) and where alerts are sent."""

    evaluate_every_seconds: float = Field(default=60, gt=0, le=3600)
    failure_rate: float = Field(default=0.02, gt=0, lt=1)  # per handoff over a rolling 24 h
    failure_min_events: int = Field(default=20, ge=1)  # below this, 24 h says too little
    dead_letter_minutes: float = Field(default=15, gt=0)  # a failed write unresolved this long
    undelivered_minutes: float = Field(default=15, gt=0)  # a change not confirmed in this window
    process_lag_seconds: float = Field(default=300, gt=0)  # received but not processed
    silence_factor: float = Field(default=10, gt=1)  # silent: 10 times the source's usual gap …
    silence_min_minutes: float = Field(default=60, gt=0)  # … and at least this long
    review_max_age_hours: float = Field(default=72, gt=0)  # an identity review item undecided
    reconcile_findings_max: int = Field(default=0, ge=0)  # the newest run may have this many
    repeat_first_minutes: float = Field(default=15, gt=0)  # repeats back off: 15 min, 30, 60 …
    repeat_max_hours: float = Field(default=24, gt=0)
    slack_webhook_env: str | None = None  # env var holding a Slack-compatible incoming webhook
    smtp_host: str | None = None
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_from: str = "handoff@localhost"
    smtp_to: list[str] = Field(default_factory=list)
    smtp_starttls: bool = False
    smtp_user_env: str | None = None
    smtp_password_env: str | None = None
    webhook_url: str | None = None  # generic receiver, signed as Standard Webhooks
    webhook_secret_env: str | None = None


class ReconcileConfig(_Strict):
    """Where the dashboard looks for reconciliation runs (`handoff reconcile --out DIR`)."""

    # a relative path is taken from the config file's directory; unset: see `reconcile_runs_dir`
    runs_dir: Path | None = None


Survivorship = Literal["most_recent", "most_trusted", "first_seen"]


class IdentityConfig(_Strict):
    """Identity resolution's thresholds, guards and golden-record rules (docs/identity.md).

    The same values drive the live stage and `handoff identity dedupe`."""

    merge_threshold: float = Field(default=0.99, gt=0, lt=1)  # match probability → merge
    review_threshold: float = Field(default=0.80, gt=0, lt=1)  # … → review queue
    max_people_per_value: int = Field(default=6, ge=1)  # the frequency rule
    max_cluster_size: int = Field(default=50, ge=2)
    exclusive_systems: list[str] = Field(default_factory=list)  # one account per person there
    placeholder_emails: list[str] = Field(default_factory=list)  # added to the built-in list
    placeholder_email_domains: list[str] = Field(default_factory=list)
    placeholder_phones: list[str] = Field(default_factory=list)  # digits, added to the list
    household_guard: bool = False
    # golden record: per field (email, phone, first_name, last_name, zip, birth_date) the rule
    # that picks its value; unlisted fields take the most recent trusted value
    survivorship: dict[str, Survivorship] = Field(default_factory=dict)
    trust: list[str] = Field(default_factory=list)  # systems, most trusted first

    @model_validator(mode="after")
    def _consistent(self) -> IdentityConfig:
        if self.review_threshold > self.merge_threshold:
            raise ValueError("review_threshold must not be above merge_threshold")
        fields = {"email", "phone", "first_name", "last_name", "zip", "birth_date"}
        unknown = sorted(set(self.survivorship) - fields)
        if unknown:
            raise ValueError(
                f"survivorship names unknown fields {unknown}; known: {sorted(fields)}"
            )
        if "most_trusted" in self.survivorship.values() and not self.trust:
            raise ValueError("a most_trusted survivorship rule needs `trust`, systems in order")
        return self


class HandoffConfig(_Strict):
    server: ServerConfig = ServerConfig()
    gateway: GatewayConfig = GatewayConfig()
    processor: ProcessorConfig = ProcessorConfig()
    program: Program = Program()  # the loyalty rules the expected ledger follows
    sources: dict[str, SourceConfig] = Field(default_factory=dict)
    delivery: DeliveryConfig = DeliveryConfig()
    destinations: dict[str, DestinationConfig] = Field(default_factory=dict)
    alerts: AlertsConfig = AlertsConfig()
    reconcile: ReconcileConfig = ReconcileConfig()
    identity: IdentityConfig = IdentityConfig()

    @field_validator("sources", "destinations")
    @classmethod
    def _source_names_are_url_safe(cls, value: dict[str, Any], info: ValidationInfo) -> Any:
        kind = "source" if info.field_name == "sources" else "destination"
        for name in value:
            if not name or not all(c.isalnum() or c in "-_" for c in name):
                raise ValueError(
                    f"{kind} name {name!r} must be letters, digits, '-' or '_' (it is a URL path)"
                )
        return value


class Settings(BaseModel):
    """Everything a process needs: the parsed file plus the environment it runs in."""

    model_config = ConfigDict(frozen=True)

    config: HandoffConfig
    database_url: str
    config_path: Path | None

    def secrets_for(self, source: str, env: Mapping[str, str] | None = None) -> list[bytes]:
        """The active secrets of a source (current first); empty if none is set."""
        environ = os.environ if env is None else env
        cfg = self.config.sources[source]
        names = [cfg.secret_env] + ([cfg.previous_secret_env] if cfg.previous_secret_env else [])
        return [environ[n].encode() for n in names if environ.get(n)]

    def missing_secrets(self, env: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
        environ = os.environ if env is None else env
        missing = []
        for name, cfg in self.config.sources.items():
            if not environ.get(cfg.secret_env):
                missing.append((name, cfg.secret_env))
        return missing


def _describe(error: Mapping[str, Any]) -> str:
    loc = ".".join(str(part) for part in error["loc"]) or "(top level)"
    kind = error["type"]
    value = error.get("input")
    if kind == "extra_forbidden":
        return f"{loc}: unknown key (value {value!r}); see docs/configuration.md for the keys"
    if kind == "missing":
        return f"{loc}: required key is missing"
    return f"{loc} = {value!r}: {error['msg']}"


def parse_config(data: Mapping[str, Any], *, origin: str = "<config>") -> HandoffConfig:
    try:
        return HandoffConfig.model_validate(data)
    except ValidationError as exc:
        lines = [f"{origin}: {_describe(e)}" for e in exc.errors()]
        raise ConfigError("\n".join(lines)) from None


def load_config(path: Path | None) -> HandoffConfig:
    if path is None:
        return HandoffConfig()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(data, origin=str(path))


def resolve_config_path(explicit: str | Path | None) -> Path | None:
    """--config wins, then HANDOFF_CONFIG, then ./handoff.toml if present; None means defaults."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("HANDOFF_CONFIG")
    if env:
        return Path(env)
    default = Path(DEFAULT_CONFIG_PATH)
    return default if default.exists() else None


def load_settings(
    config_path: str | Path | None = None, database_url: str | None = None
) -> Settings:
    path = resolve_config_path(config_path)
    return Settings(
        config=load_config(path),
        database_url=database_url or os.environ.get("HANDOFF_DATABASE_URL") or DEFAULT_DATABASE_URL,
        config_path=path,
    )


def reconcile_runs_dir(settings: Settings) -> Path:
    """The directory whose subdirectories are reconciliation runs.

    `[reconcile] runs_dir` if set (relative to the config file's directory); otherwise
    `reconcile-runs` beside a SQLite database file, else beside the config file, else in the
    working directory — next to the data the runs were judged against, and never a guess
    about a server's filesystem layout when the database is PostgreSQL."""
    base = settings.config_path.resolve().parent if settings.config_path else Path.cwd()
    configured = settings.config.reconcile.runs_dir
    if configured is not None:
        return configured if configured.is_absolute() else base / configured
    url = settings.database_url
    for prefix in ("sqlite:///", "sqlite+pysqlite:///"):
        if url.startswith(prefix):
            path = url[len(prefix) :].split("?", 1)[0]
            if path and path != ":memory:":
                return Path(path).resolve().parent / "reconcile-runs"
    return base / "reconcile-runs"
