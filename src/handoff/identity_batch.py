"""Files for `handoff identity dedupe`: reading profiles, writing clusters and the review queue.

Input is CSV, Parquet or JSON Lines with a header (see ../shared/contracts/identity-batch.md).
Errors name the file, the row and the column, and stop the run before anything is written; the
outputs are written to a temporary file beside the target and renamed into place at the end, so
a failed or interrupted run never leaves a half-written CLUSTERS.csv.
"""

from __future__ import annotations

import csv
import json
import multiprocessing as mp
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, fields
from datetime import date, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from handoff.domain.identity import (
    DEFAULT_GUARDS,
    DEFAULT_NORMALIZE,
    DEFAULT_THRESHOLDS,
    BatchResult,
    Decision,
    GuardConfig,
    Model,
    NormalizeConfig,
    NormalizedProfile,
    Profile,
    ReviewItem,
    SharedValue,
    Thresholds,
    TrainingReport,
    default_model,
    find_shared,
    normalize,
    resolve_prepared,
    screen,
)
from handoff.domain.identity import train as train_model

if TYPE_CHECKING:
    from handoff.hub import Hub
    from handoff.store.identity_models import StoredRecord

# Header (lower-cased, trimmed) → Profile field. Unknown columns are ignored.
ALIASES: dict[str, str] = {
    "record_id": "record_id",
    "system": "system",
    "external_id": "external_id",
    "first_name": "first_name",
    "given_name": "first_name",
    "last_name": "last_name",
    "surname": "last_name",
    "email": "email",
    "phone": "phone",
    "zip": "zip",
    "postcode": "zip",
    "address": "address",
    "address_1": "address",
    "address_2": "address2",
    "city": "city",
    "suburb": "city",
    "state": "state",
    "date_of_birth": "date_of_birth",
}
MAX_FIELD = 10_000  # characters; longer values are a malformed file, not a name

FORMATS = ("csv", "parquet", "jsonl")


class InputError(ValueError):
    """A problem in the input file, with where it is (file, row, column)."""

    def __init__(
        self, path: Path, message: str, *, row: int | None = None, column: str | None = None
    ) -> None:
        where = str(path)
        if row is not None:
            where += f", row {row}"
        if column is not None:
            where += f", column {column!r}"
        super().__init__(f"{where}: {message}")
        self.path, self.row, self.column = path, row, column


def detect_format(path: Path) -> str:
    """csv, parquet or jsonl, from the file name (a .gz suffix is allowed for CSV and JSONL)."""
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if name.endswith((".csv", ".txt", ".tsv")):
        return "csv"
    raise InputError(path, "unknown file type: expected .csv, .parquet or .jsonl")


def _mapping(path: Path, header: Sequence[str]) -> dict[int, str]:
    """Column position → Profile field; checks record_id is there and no field is given twice."""
    out: dict[int, str] = {}
    seen: dict[str, str] = {}
    for pos, raw in enumerate(header):
        name = str(raw).strip().lower().lstrip("\ufeff")
        target = ALIASES.get(name)
        if target is None:
            continue
        if target in seen:
            raise InputError(
                path, f"columns {seen[target]!r} and {raw!r} both give {target}", column=str(raw)
            )
        seen[target] = str(raw)
        out[pos] = target
    if "record_id" not in seen:
        raise InputError(path, "the required column is missing", column="record_id")
    return out


def _text(path: Path, row: int, column: str, value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise InputError(path, f"expected text, found {value!r}", row=row, column=column)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, int | float):
        if isinstance(value, float) and value != value:  # NaN from a typed column
            return None
        return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    if not isinstance(value, str):
        raise InputError(
            path, f"expected text, found {type(value).__name__}", row=row, column=column
        )
    if len(value) > MAX_FIELD:
        raise InputError(path, f"value longer than {MAX_FIELD} characters", row=row, column=column)
    if "\x00" in value:
        raise InputError(path, "value contains a NUL byte", row=row, column=column)
    text = value.strip()
    return text or None


def _profile(
    path: Path, row: int, fields: dict[str, Any], header: dict[str, str], seen: dict[str, int]
) -> Profile:
    values: dict[str, str | None] = {}
    for name, raw in fields.items():
        values[name] = _text(path, row, header[name], raw)
    record_id = values.pop("record_id", None)
    if not record_id:
        raise InputError(path, "record_id is empty", row=row, column=header["record_id"])
    first = seen.get(record_id)
    if first is not None:
        raise InputError(
            path,
            f"record_id {record_id!r} already used on row {first}",
            row=row,
            column=header["record_id"],
        )
    seen[record_id] = row
    return Profile(record_id, **values)  # type: ignore[arg-type]


def _open_binary(path: Path) -> IO[bytes]:
    if path.name.lower().endswith(".gz"):
        import gzip

        return cast("IO[bytes]", gzip.open(path, "rb"))
    return path.open("rb")


def _decoded(path: Path, fh: IO[bytes]) -> Iterator[str]:
    """Lines decoded one by one, so a byte that is not UTF-8 is reported on its own row."""
    for number, raw in enumerate(fh, 1):
        try:
            yield raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(
                path, f"not UTF-8 (byte {exc.start + 1} of the line: {exc.reason})", row=number
            ) from None


def _read_csv(path: Path) -> Iterator[Profile]:
    plain = path.name.lower().removesuffix(".gz")
    with _open_binary(path) as fh:
        delimiter = "\t" if plain.endswith(".tsv") else ","
        reader = csv.reader(_decoded(path, fh), delimiter=delimiter, strict=True)
        try:
            header = next(reader)
        except StopIteration:
            raise InputError(path, "the file is empty: no header") from None
        except csv.Error as exc:
            raise InputError(path, f"unreadable header: {exc}", row=1) from None
        mapping = _mapping(path, header)
        names = {target: header[pos].strip() for pos, target in mapping.items()}
        width = len(header)
        seen: dict[str, int] = {}
        while True:
            try:
                line = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise InputError(path, f"malformed CSV: {exc}", row=reader.line_num) from None
            row = reader.line_num
            if not line:
                continue  # a blank line
            if len(line) != width:
                raise InputError(path, f"{len(line)} fields where the header has {width}", row=row)
            yield _profile(path, row, {t: line[p] for p, t in mapping.items()}, names, seen)


def _read_jsonl(path: Path) -> Iterator[Profile]:
    seen: dict[str, int] = {}
    with _open_binary(path) as fh:
        row = 0
        for line in _decoded(path, fh):
            row += 1
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(path, f"not JSON: {exc.msg}", row=row) from None
            if not isinstance(obj, dict):
                raise InputError(path, "expected a JSON object", row=row)
            keys = list(obj)
            mapping = _mapping(path, keys)
            names = {target: keys[pos] for pos, target in mapping.items()}
            fields = {target: obj[keys[pos]] for pos, target in mapping.items()}
            yield _profile(path, row, fields, names, seen)
        if row == 0:
            raise InputError(path, "the file is empty")


def _read_parquet(path: Path) -> Iterator[Profile]:
    import duckdb

    try:
        con = duckdb.connect()
        rel = con.read_parquet(str(path))
        header = list(rel.columns)
    except duckdb.Error as exc:
        raise InputError(path, f"not a readable Parquet file: {exc}") from None
    mapping = _mapping(path, header)
    names = {target: header[pos] for pos, target in mapping.items()}
    positions = sorted(mapping)
    seen: dict[str, int] = {}
    try:
        cursor = con.execute("SELECT * FROM read_parquet(?)", [str(path)])
        row = 1  # the header is row 1, as in a CSV file
        while True:
            chunk = cursor.fetchmany(10_000)
            if not chunk:
                break
            for values in chunk:
                row += 1
                fields = {mapping[p]: values[p] for p in positions}
                yield _profile(path, row, fields, names, seen)
    finally:
        con.close()


def read_profiles(path: Path, fmt: str | None = None) -> Iterator[Profile]:
    """Profiles from a CSV, Parquet or JSON Lines file (`InputError` on anything malformed)."""
    if not path.exists():
        raise InputError(path, "no such file")
    if path.is_dir():
        raise InputError(path, "is a directory")
    kind = fmt or detect_format(path)
    if kind == "parquet":
        return _read_parquet(path)
    if kind == "jsonl":
        return _read_jsonl(path)
    return _read_csv(path)


# --------------------------------------------------------------------------------------------
# output

CLUSTER_COLUMNS = ("record_id", "customer_id", "decision", "score", "matched_record_id")
REVIEW_COLUMNS = ("record_a", "record_b", "score", "rule", "reason", "evidence")


def _score(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"


def cluster_rows(decisions: Sequence[Decision]) -> Iterator[tuple[str, ...]]:
    """One row per record: the contract's decision is merged, review or new."""
    for d in decisions:
        kind = d.kind.value
        yield (
            d.record_id,
            d.customer_id or d.record_id,
            "merged" if kind == "merge" else kind,
            _score(d.score),
            d.matched_record_id or "",
        )


def review_rows(reviews: Sequence[ReviewItem]) -> Iterator[tuple[str, ...]]:
    for r in reviews:
        evidence = (
            json.dumps(
                [
                    {"field": e.field, "level": e.level, "weight": round(e.weight, 3)}
                    | ({"a": e.a, "b": e.b} if e.a or e.b else {})
                    | ({"note": e.note} if e.note else {})
                    for e in r.match.evidence
                ],
                separators=(",", ":"),
            )
            if r.match is not None
            else ""
        )
        yield (r.record_a, r.record_b, _score(r.score), r.rule.value, r.reason, evidence)


@contextmanager
def atomic_writer(path: Path) -> Iterator[IO[str]]:
    """A text file that appears at `path` only when the block ends without an error."""
    directory = path.resolve().parent
    if not directory.is_dir():
        raise OSError(f"{path}: directory {directory} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    umask = os.umask(0)
    os.umask(umask)
    Path(tmp).chmod(0o666 & ~umask)  # what a plain open() would have made, not mkstemp's 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_outputs(
    result: BatchResult,
    out: Path,
    review_out: Path | None = None,
    *,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Write CLUSTERS.csv (and the review queue): both appear together or neither does."""
    with ExitStack() as stack:
        fh = stack.enter_context(atomic_writer(out))
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(CLUSTER_COLUMNS)
        batch: list[tuple[str, ...]] = []
        for row in cluster_rows(result.decisions):
            batch.append(row)
            if len(batch) >= 50_000:
                writer.writerows(batch)
                if progress is not None:
                    progress(len(batch))
                batch.clear()
        writer.writerows(batch)
        if progress is not None:
            progress(len(batch))
        if review_out is not None:
            rh = stack.enter_context(atomic_writer(review_out))
            rw = csv.writer(rh, lineterminator="\n")
            rw.writerow(REVIEW_COLUMNS)
            rw.writerows(review_rows(result.reviews))


@dataclass(frozen=True, slots=True)
class Summary:
    records: int
    customers: int
    merges: int
    reviews: int
    review_items: int
    largest_cluster: int
    candidate_pairs: int
    shared_values: int
    guard_breaches: int
    model_version: str
    seconds: float
    phases: dict[str, float]

    @classmethod
    def of(
        cls, result: BatchResult, seconds: float, phases: dict[str, float] | None = None
    ) -> Summary:
        merges = reviews = 0
        for d in result.decisions:
            kind = d.kind.value
            if kind == "merge":
                merges += 1
            elif kind == "review":
                reviews += 1
        s = result.stats
        return cls(
            records=s.records,
            customers=s.clusters,
            merges=merges,
            reviews=reviews,
            review_items=len(result.reviews),
            largest_cluster=s.largest_cluster,
            candidate_pairs=s.candidate_pairs,
            shared_values=len(result.shared),
            guard_breaches=len(result.breaches),
            model_version=s.model_version,
            seconds=round(seconds, 2),
            phases=dict(phases or {}),
        )


# --------------------------------------------------------------------------------------------
# running a batch

Progress = Callable[[str, int, int | None], None]


def _no_progress(_phase: str, _n: int, _total: int | None) -> None:
    return None


def run_dedupe(
    path: Path,
    *,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    guards: GuardConfig = DEFAULT_GUARDS,
    normalize_config: NormalizeConfig = DEFAULT_NORMALIZE,
    model: Model | None = None,
    train: bool = False,
    input_format: str | None = None,
    workers: int = 0,
    progress: Progress = _no_progress,
    timings: dict[str, float] | None = None,
) -> BatchResult:
    """Read, normalise, screen, (train,) and resolve a file of profiles.

    The whole file is read and checked before any resolving starts, so a malformed row fails the
    run early and nothing is written. `timings` receives the seconds of each phase.
    """
    phases: dict[str, float] = {} if timings is None else timings
    mark = time.perf_counter()

    def phase(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        phases[name] = round(phases.get(name, 0.0) + now - mark, 2)
        mark = now

    def step(name: str, n: int, total: int | None) -> None:
        if name == "scoring" and "blocking" not in phases:
            phase("blocking")  # term frequencies and the block index, before the first range
        progress(name, n, total)

    profiles: list[Profile] = []
    for p in read_profiles(path, input_format):
        profiles.append(p)
        if len(profiles) % 10_000 == 0:
            progress("reading", 10_000, None)
    progress("reading", len(profiles) % 10_000, len(profiles))
    if not profiles:
        raise InputError(path, "no records after the header")
    phase("reading")
    normalized = normalize_all(profiles, normalize_config, workers=workers, progress=progress)
    del profiles
    phase("normalising")
    shared = find_shared(normalized, guards)
    keys = frozenset((s.kind, s.value) for s in shared)
    normalized = [screen(p, guards, keys) for p in normalized]
    phase("screening")
    if train:
        progress("training", 0, 1)
        model = train_model(normalized, guards=guards, meta={"trained_on": str(path.name)}).model
        progress("training", 1, 1)
        rescale = False
        phase("training")
    else:
        rescale = True
    result = resolve_prepared(
        normalized,
        model or default_model(),
        thresholds,
        guards,
        shared=shared,
        rescale_prior=rescale,
        workers=workers,
        progress=step,
    )
    phase("scoring and clustering")
    return result


_TO_NORMALIZE: tuple[Sequence[Profile], NormalizeConfig] | None = None  # set before forking
PARALLEL_MIN_RECORDS = 20_000


def _normalize_chunk(bounds: tuple[int, int]) -> list[NormalizedProfile]:
    assert _TO_NORMALIZE is not None
    profiles, config = _TO_NORMALIZE
    return [normalize(p, config) for p in profiles[bounds[0] : bounds[1]]]


def normalize_all(
    profiles: Sequence[Profile],
    config: NormalizeConfig = DEFAULT_NORMALIZE,
    *,
    workers: int = 0,
    progress: Progress = _no_progress,
) -> list[NormalizedProfile]:
    """Normalise every profile, in forked worker processes for a large file (0: one per core).

    Chunks come back in order, so the result is the one a single process gives.
    """
    global _TO_NORMALIZE
    total = len(profiles)
    chunk = 20_000
    bounds = [(lo, min(lo + chunk, total)) for lo in range(0, total, chunk)]
    if workers <= 0:
        workers = os.cpu_count() or 1
    out: list[NormalizedProfile] = []
    if workers == 1 or total < PARALLEL_MIN_RECORDS or "fork" not in mp.get_all_start_methods():
        for lo, hi in bounds:
            out.extend(_normalize_chunk_with(profiles, config, lo, hi))
            progress("normalising", hi - lo, total)
        return out
    _TO_NORMALIZE = (profiles, config)
    try:
        with mp.get_context("fork").Pool(workers) as pool:
            for (lo, hi), part in zip(
                bounds, pool.imap(_normalize_chunk, bounds, chunksize=1), strict=True
            ):
                out.extend(part)
                progress("normalising", hi - lo, total)
    finally:
        _TO_NORMALIZE = None
    return out


def _normalize_chunk_with(
    profiles: Sequence[Profile], config: NormalizeConfig, lo: int, hi: int
) -> list[NormalizedProfile]:
    return [normalize(p, config) for p in profiles[lo:hi]]


# --------------------------------------------------------------------------------------------
# the live store: training, audit, suspicious values


def stored_profile(record_id: str, data: dict[str, Any]) -> Profile:
    """A stored profile (the JSON the live step keeps) back as a `Profile`."""
    known = {f.name for f in fields(Profile)}
    values = {k: v for k, v in data.items() if k in known}
    values["record_id"] = record_id
    seen = values.get("seen_at")
    if isinstance(seen, str) and seen:
        values["seen_at"] = datetime.fromisoformat(seen)
    return Profile(**values)


def prepare_stored(
    records: Sequence[StoredRecord], config: NormalizeConfig, guards: GuardConfig = DEFAULT_GUARDS
) -> tuple[list[NormalizedProfile], list[int], list[SharedValue]]:
    """Normalise and screen the store's profiles; their customers; the shared values."""
    normalized = [normalize(stored_profile(r.record_id, r.profile), config) for r in records]
    shared = find_shared(normalized, guards)
    keys = frozenset((s.kind, s.value) for s in shared)
    screened = [screen(p, guards, keys) for p in normalized]
    return screened, [r.customer_id for r in records], shared


def training_report(report: TrainingReport) -> dict[str, Any]:
    """The training report as JSON-ready data (stored beside the model)."""
    return {
        "records": report.records,
        "u_samples": report.u_samples,
        "candidate_pairs": report.candidate_pairs,
        "expected_matches": round(report.expected_matches, 3),
        "prior_iterations": report.prior_iterations,
        "fields_from_base": list(report.fields_from_base),
        "passes": [
            {
                "rule": p.rule,
                "pairs": p.pairs,
                "expected_matches": round(p.expected_matches, 3),
                "iterations": p.iterations,
                "converged": p.converged,
            }
            for p in report.passes
        ],
    }


def audit_store(
    hub: Hub,
    config: NormalizeConfig,
    *,
    top: int = 10,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    guards: GuardConfig = DEFAULT_GUARDS,
) -> dict[str, Any]:
    """The monthly duplicate audit: how the store's customers compare with a fresh batch run.

    The store's profiles are resolved again as one batch with the model the live step uses. A
    batch cluster spanning several live customers is a likely duplicate the live step missed (a
    profile that arrived before its match, or a review never decided); a live customer whose
    profiles the batch puts in several clusters is a merge the batch would not make.
    """
    from handoff.store import identity_models as models

    with hub.db.read() as conn:
        records = list(models.iter_profiles(conn))
        moved = models.merged_away(conn)
        customers = models.count_live_customers(conn)
        reviews = models.open_reviews(conn)
        model = models.load_current_model(conn) or default_model()

    def survivor(cid: int) -> int:
        for _ in range(64):
            nxt = moved.get(cid)
            if nxt is None:
                return cid
            cid = nxt
        return cid

    normalized, owners, shared = prepare_stored(records, config, guards)
    owners = [survivor(c) for c in owners]
    result = (
        resolve_prepared(normalized, model, thresholds, guards, shared=shared)
        if normalized
        else None
    )
    per_customer: dict[int, list[int]] = {}
    for i, cid in enumerate(owners):
        per_customer.setdefault(cid, []).append(i)
    duplicates: list[dict[str, Any]] = []
    split_customers = 0
    if result is not None:
        cluster_of = [d.customer_id or d.record_id for d in result.decisions]
        spans: dict[str, set[int]] = {}
        members: dict[str, list[str]] = {}
        for i, cluster in enumerate(cluster_of):
            spans.setdefault(cluster, set()).add(owners[i])
            members.setdefault(cluster, []).append(normalized[i].record_id)
        for cluster, found in spans.items():
            if len(found) > 1:
                duplicates.append({"customers": sorted(found), "records": sorted(members[cluster])})
        for indices in per_customer.values():
            if len({cluster_of[i] for i in indices}) > 1:
                split_customers += 1
    duplicates.sort(key=lambda d: (-len(d["customers"]), d["customers"]))
    duplicate_customers = sum(len(d["customers"]) - 1 for d in duplicates)
    largest = sorted(per_customer.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:top]
    profiles_n = len(records)
    customers_with_profiles = len(per_customer)
    return {
        "profiles": profiles_n,
        "customers": customers,
        "merged_profiles": profiles_n - customers_with_profiles,
        "merge_rate": (profiles_n - customers_with_profiles) / profiles_n if profiles_n else 0.0,
        "duplicate_customers": duplicate_customers,
        "duplicate_rate": duplicate_customers / customers if customers else 0.0,
        "split_customers": split_customers,
        "open_reviews": reviews,
        "model_version": model.version,
        "largest": [
            {
                "customer_id": cid,
                "profiles": len(idx),
                "systems": sorted({normalized[i].system or "" for i in idx} - {""}),
            }
            for cid, idx in largest
        ],
        "duplicates": duplicates,
        "suspicious": [asdict(v) for v in shared],
    }
