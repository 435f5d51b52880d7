"""`handoff identity dedupe|train|models|audit|suspicious`: the batch side of identity.

`dedupe` resolves a file (the contract in ../shared/contracts/identity-batch.md) with the live
engine's rules, thresholds and scorer; `train` fits the model to the store's own profiles and
stores it as a new version (the live step then scores with it); `audit` and `suspicious` read
the live store without changing it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from handoff.commands.common import (
    ConfigOpt,
    JsonOpt,
    console,
    dump,
    ensure_schema,
    err,
    fail,
    hub,
    settings,
    table,
    when,
)
from handoff.commands.identity import identity_app
from handoff.config import Settings

if TYPE_CHECKING:
    from handoff.domain.identity import GuardConfig


def normalize_config_of(s: Settings) -> Any:
    """The phone region per source, exactly as the live step reads it (`default_region`)."""
    from handoff.pipeline.identity_stage import normalize_config

    return normalize_config(s)


def _guards(s: Settings) -> GuardConfig:
    """The live stage's guards, from `[identity]`."""
    from handoff.pipeline.identity_stage import engine_settings

    return engine_settings(s.config.identity)[1]


Step = Callable[[str, int, int | None], None]  # (phase, advance by, total) for the progress bar


@contextmanager
def _progress(enabled: bool) -> Iterator[Step]:
    """A Rich progress bar on a terminal (stderr), silent otherwise."""
    if not enabled:
        yield lambda _phase, _n, _total: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    tasks: dict[str, Any] = {}
    with Progress(
        TextColumn("{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    ) as bar:

        def step(phase: str, n: int, total: int | None) -> None:
            task = tasks.get(phase)
            if task is None:
                task = tasks[phase] = bar.add_task(phase, total=total)
            elif total is not None:
                bar.update(task, total=total)
            bar.advance(task, n)

        yield step


@identity_app.command("dedupe")
def dedupe(
    profiles: Annotated[Path, typer.Argument(help="CSV, Parquet or JSON Lines with a header.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="CLUSTERS.csv to write.")],
    threshold_merge: Annotated[
        float | None,
        typer.Option(help="Merge at or above this probability (default: [identity], 0.99)."),
    ] = None,
    threshold_review: Annotated[
        float | None,
        typer.Option(help="Review at or above this probability (default: [identity], 0.80)."),
    ] = None,
    config: ConfigOpt = None,
    train: Annotated[
        bool, typer.Option("--train", help="Fit the model to the file itself first (EM).")
    ] = False,
    review_out: Annotated[
        Path | None, typer.Option("--review-out", help="Write the review queue here (CSV).")
    ] = None,
    output_format: Annotated[
        str, typer.Option("--format", help="Closing summary: table or json.")
    ] = "table",
    input_format: Annotated[
        str | None, typer.Option("--input-format", help="csv, parquet or jsonl (default: by name).")
    ] = None,
    workers: Annotated[
        int, typer.Option(help="Processes for normalising and scoring (0: one per core).")
    ] = 0,
) -> None:
    """Resolve a file of profiles into customers (one CLUSTERS.csv row per record)."""
    from handoff.domain.identity import Thresholds
    from handoff.identity_batch import FORMATS, InputError, Summary, run_dedupe, write_outputs
    from handoff.pipeline.identity_stage import engine_settings

    if output_format not in ("table", "json"):
        raise fail("--format must be table or json")
    if input_format is not None and input_format not in FORMATS:
        raise fail(f"--input-format must be one of {', '.join(FORMATS)}")
    s = settings(config)
    configured, guards = engine_settings(s.config.identity)  # the live stage's [identity]
    try:
        thresholds = Thresholds(
            merge=configured.merge if threshold_merge is None else threshold_merge,
            review=configured.review if threshold_review is None else threshold_review,
        )
    except ValueError as exc:
        raise fail(f"thresholds: {exc}") from None
    for target in (out, review_out):
        if target is not None and target.resolve() == profiles.resolve():
            raise fail(f"{target}: would overwrite the input file")
    started = time.perf_counter()
    phases: dict[str, float] = {}
    with _progress(console.is_terminal) as step:
        try:
            result = run_dedupe(
                profiles,
                thresholds=thresholds,
                guards=guards,
                normalize_config=normalize_config_of(s),
                train=train,
                input_format=input_format,
                workers=workers,
                progress=step,
                timings=phases,
            )
        except InputError as exc:
            raise fail(str(exc)) from None
        try:
            write_outputs(
                result,
                out,
                review_out,
                progress=lambda n: step("writing", n, result.stats.records),
            )
        except OSError as exc:
            raise fail(f"cannot write the output: {exc}") from None
        phases["writing"] = round(time.perf_counter() - started - sum(phases.values()), 2)
    summary = Summary.of(result, time.perf_counter() - started, phases)
    if output_format == "json":
        dump(asdict(summary))
        return
    console.print(
        table(
            f"identity dedupe: {profiles}",
            ["", "value"],
            [
                ("records", f"{summary.records:,}"),
                ("customers", f"{summary.customers:,}"),
                ("merged records", f"{summary.merges:,}"),
                ("records in review", f"{summary.reviews:,}"),
                ("review items", f"{summary.review_items:,}"),
                ("largest cluster", summary.largest_cluster),
                ("candidate pairs", f"{summary.candidate_pairs:,}"),
                ("shared values", summary.shared_values),
                ("guard breaches", summary.guard_breaches),
                ("model", summary.model_version),
                ("time", f"{summary.seconds:.1f} s"),
            ],
        )
    )


@identity_app.command("train")
def train_command(
    config: ConfigOpt = None,
    seed: Annotated[int, typer.Option(help="Random seed (training is deterministic).")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Fit the model (EM, no labels) to the store's own profiles and keep it as a new version."""
    from handoff.domain.identity import train
    from handoff.identity_batch import prepare_stored, training_report
    from handoff.store import identity_models as models

    h = hub(config)
    ensure_schema(h)
    with h.db.read() as conn:
        records = list(models.iter_profiles(conn))
    if len(records) < 10:
        raise fail(f"only {len(records)} stored profile(s): too few to train on", code=1)
    guards = _guards(h.settings)
    normalized, _owners, _shared = prepare_stored(records, normalize_config_of(h.settings), guards)
    result = train(normalized, guards=guards, seed=seed, meta={"trained_on": "store"})
    report = training_report(result.report)
    with h.db.write() as conn:
        row_id, created = models.save_model(conn, result.model, report, h.clock.now())
    out = {
        "id": row_id,
        "version": result.model.version,
        "created": created,
        "records": result.report.records,
        "prior": result.model.prior,
        "report": report,
    }
    if as_json:
        dump(out)
        return
    verb = "stored" if created else "already stored (same parameters)"
    console.print(
        f"model {result.model.version} {verb}: {result.report.records:,} profiles, "
        f"{result.report.candidate_pairs:,} candidate pairs, "
        f"{result.report.expected_matches:,.0f} expected matches; the live step uses it now"
    )


@identity_app.command("models")
def models_command(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Trained model versions, newest (the one in use) first."""
    from handoff.domain.identity import default_model
    from handoff.store import identity_models as models

    h = hub(config)
    ensure_schema(h)
    with h.db.read() as conn:
        rows = models.list_models(conn)
    shipped = default_model().version
    if as_json:
        dump(
            {
                "current": rows[0].version if rows else shipped,
                "default": shipped,
                "models": [asdict(r) for r in rows],
            }
        )
        return
    if not rows:
        console.print(f"no trained model: the live step uses the shipped default ({shipped})")
        return
    console.print(
        table(
            "identity models",
            ["id", "version", "created", "profiles", "expected matches", "in use"],
            [
                (
                    r.id,
                    r.version,
                    when(r.created_at),
                    f"{r.records:,}" if r.records is not None else None,
                    f"{float(r.report.get('expected_matches', 0.0)):,.0f}",
                    "yes" if i == 0 else "",
                )
                for i, r in enumerate(rows)
            ],
        )
    )


@identity_app.command("audit")
def audit_command(
    config: ConfigOpt = None,
    top: Annotated[int, typer.Option(help="How many of the largest clusters to list.")] = 10,
    as_json: JsonOpt = False,
) -> None:
    """The duplicate audit of the live store: duplicate rate, largest clusters, shared values."""
    from handoff.identity_batch import audit_store

    h = hub(config)
    ensure_schema(h)
    from handoff.pipeline.identity_stage import engine_settings

    thresholds, guards = engine_settings(h.settings.config.identity)
    report = audit_store(
        h, normalize_config_of(h.settings), top=top, thresholds=thresholds, guards=guards
    )
    if as_json:
        dump(report)
        return
    console.print(
        table(
            "identity audit",
            ["", "value"],
            [
                ("stored profiles", f"{report['profiles']:,}"),
                ("customers", f"{report['customers']:,}"),
                ("profiles merged into another", f"{report['merged_profiles']:,}"),
                ("merge rate", f"{report['merge_rate']:.2%}"),
                ("customers that look like duplicates", f"{report['duplicate_customers']:,}"),
                ("duplicate rate", f"{report['duplicate_rate']:.2%}"),
                ("customers the engine would split", f"{report['split_customers']:,}"),
                ("open review items", f"{report['open_reviews']:,}"),
                ("suspicious values", len(report["suspicious"])),
                ("model", report["model_version"]),
            ],
        )
    )
    console.print(
        table(
            "largest customers",
            ["customer", "profiles", "systems"],
            [(c["customer_id"], c["profiles"], ", ".join(c["systems"])) for c in report["largest"]],
        )
    )
    if report["duplicates"]:
        console.print(
            table(
                "likely duplicates (customers the engine would merge)",
                ["customers", "records"],
                [
                    (", ".join(str(c) for c in d["customers"]), ", ".join(d["records"][:6]))
                    for d in report["duplicates"][:top]
                ],
            )
        )
    _print_shared(report["suspicious"][:top])


def _print_shared(rows: list[dict[str, Any]]) -> None:
    console.print(
        table(
            "suspicious values (shared by more distinct people than the guard allows)",
            ["kind", "value", "people", "profiles"],
            [(r["kind"], r["value"], r["people"], r["records"]) for r in rows],
        )
    )


@identity_app.command("suspicious")
def suspicious_command(
    config: ConfigOpt = None,
    limit: Annotated[int, typer.Option(help="Show at most this many values.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Identifier values shared by more distinct people than the limit (e.g. a store email)."""
    from handoff.identity_batch import prepare_stored
    from handoff.store import identity_models as models

    h = hub(config)
    ensure_schema(h)
    with h.db.read() as conn:
        records = list(models.iter_profiles(conn))
    _normalized, _owners, shared = prepare_stored(
        records, normalize_config_of(h.settings), _guards(h.settings)
    )
    rows = [asdict(v) for v in shared[:limit]]
    if as_json:
        dump(rows)
        return
    if not rows:
        console.print("no shared values: every identifier belongs to few enough people")
        return
    _print_shared(rows)


def register(app: typer.Typer) -> None:
    """The commands attach to `identity_app`, which `commands.identity` registers."""
