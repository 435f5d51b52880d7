"""The input files of contracts/reconcile.md: their columns, loading into DuckDB, validation.

Each input is read once, only its known columns, into a typed DuckDB table. Every check (a
required column missing, a value that is not a number, a time or a boolean, a negative amount,
an unknown status or kind, a time without an offset, a duplicate id) is counted in the same
pass; only when one fails is the file looked at again to name the rows (file, row, column,
value). Rows are numbered from 1 for the first data row (the header is row 0), so row N is
line N + 1 of a CSV file without embedded newlines.
"""

from __future__ import annotations

import contextlib
import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import duckdb

from handoff.domain.money import exponent

Kind = Literal["text", "money", "int", "time", "bool", "enum", "tags"]


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind = "text"
    required: bool = False
    values: tuple[str, ...] = ()  # allowed values of an enum
    nonnegative: bool = False
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class InputSpec:
    name: str  # the CLI option without dashes and with underscores
    id_column: str | None
    columns: tuple[Column, ...]
    unique: tuple[str, ...] = ()

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


_PROFILE = (
    Column("email"),
    Column("phone"),
    Column("first_name"),
    Column("last_name"),
    Column("zip", aliases=("postcode",)),
)

SPECS: dict[str, InputSpec] = {
    "orders": InputSpec(
        "orders",
        "order_id",
        (
            Column("order_id", required=True),
            Column("customer_id", required=True),
            Column("currency", required=True),
            Column("subtotal", "money", required=True, nonnegative=True),
            Column(
                "status", "enum", required=True, values=("placed", "paid", "fulfilled", "cancelled")
            ),
            Column("placed_at", "time", required=True),
            *_PROFILE,
            Column("channel", "enum", values=("pos", "online")),
            Column("store_id"),
            Column("discount", "money", nonnegative=True),
            Column("tax", "money", nonnegative=True),
            Column("shipping", "money", nonnegative=True),
            Column("gift_card", "money", nonnegative=True),
            Column("paid_at", "time"),
            Column("fulfilled_at", "time"),
            Column("cancelled_at", "time"),
        ),
        unique=("order_id",),
    ),
    "refunds": InputSpec(
        "refunds",
        "refund_id",
        (
            Column("refund_id", required=True),
            Column("order_id", required=True),
            Column("refunded_at", "time", required=True),
            Column("amount", "money", required=True, nonnegative=True),
        ),
        unique=("refund_id",),
    ),
    "loyalty_events": InputSpec(
        "loyalty_events",
        "event_id",
        (
            Column("event_id", required=True),
            Column("member_id", required=True),
            Column(
                "kind",
                "enum",
                required=True,
                values=("earn", "reverse", "adjust", "redeem", "expire"),
            ),
            Column("points", "int", required=True),
            Column("occurred_at", "time", required=True),
            Column("order_id"),
            Column("email"),
            Column("reason"),
        ),
        unique=("event_id",),
    ),
    "loyalty_members": InputSpec(
        "loyalty_members",
        "member_id",
        (
            Column("member_id", required=True),
            Column("points_balance", "int", required=True),
            *_PROFILE,
            Column("tier"),
            Column("customer_id"),
            Column("created_at", "time"),  # beyond the contract: when the member was created
        ),
        unique=("member_id",),
    ),
    "crm_contacts": InputSpec(
        "crm_contacts",
        "contact_id",
        (
            Column("contact_id", required=True),
            *_PROFILE,
            Column("is_vip", "bool"),
            Column("tier"),
            Column("lifetime_spend", "money", nonnegative=True),
            Column("points_balance", "int"),
            Column("updated_at", "time"),
        ),
        unique=("contact_id",),
    ),
}
for _dest in ("pos_customers", "helpdesk_users", "comms_profiles"):
    SPECS[_dest] = InputSpec(
        _dest,
        "id",
        (
            Column("id", required=True),
            Column("email"),
            Column("phone"),
            Column("first_name"),
            Column("last_name"),
            Column("name"),  # beyond the contract: a full name (helpdesk users have one)
            Column("is_vip", "bool"),
            Column("tags", "tags"),
        ),
        unique=("id",),
    )

DESTINATIONS = {"pos_customers": "pos", "helpdesk_users": "helpdesk", "comms_profiles": "comms"}
_SQL_TYPE = {
    "text": "VARCHAR",
    "enum": "VARCHAR",
    "tags": "VARCHAR",
    "money": "BIGINT",
    "int": "BIGINT",
    "time": "TIMESTAMPTZ",
    "bool": "BOOLEAN",
}
TRUE = ("true", "t", "yes", "y", "1")
FALSE = ("false", "f", "no", "n", "0")


@dataclass(frozen=True)
class Problem:
    file: str
    row: int | None  # 1 = first data row; None: the whole file
    column: str | None
    message: str
    value: str | None = None

    def __str__(self) -> str:
        where = self.file
        if self.row is not None:
            where += f", row {self.row}"
        if self.column is not None:
            where += f", column {self.column!r}"
        shown = f" (value {self.value!r})" if self.value is not None else ""
        return f"{where}: {self.message}{shown}"


class InputError(ValueError):
    """One or more input files that cannot be reconciled; each problem names file, row, column."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass
class Loaded:
    """What was loaded: the tables present and, per table, the optional columns it had."""

    tables: dict[str, int] = field(default_factory=dict)  # name → rows
    columns: dict[str, frozenset[str]] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)

    def has(self, table: str, column: str | None = None) -> bool:
        if table not in self.tables:
            return False
        return column is None or column in self.columns[table]


def _format(path: Path) -> str:
    suffix = "".join(path.suffixes[-2:]).lower()
    if suffix.endswith(".parquet") or suffix.endswith(".pq"):
        return "parquet"
    if suffix.endswith(".jsonl") or suffix.endswith(".ndjson") or suffix.endswith(".json"):
        return "jsonl"
    return "csv"


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def header_of(path: Path) -> list[str]:
    fmt = _format(path)
    if fmt == "csv":
        with path.open(newline="", encoding="utf-8-sig") as fh:
            row = next(csv.reader(fh), None)
        return [c.strip() for c in row] if row else []
    if fmt == "jsonl":
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    data = json.loads(line)
                    return list(data) if isinstance(data, dict) else []
        return []
    con = duckdb.connect()
    try:
        return [
            r[0]
            for r in con.execute(
                f"DESCRIBE SELECT * FROM read_parquet({_quote(str(path))})"
            ).fetchall()
        ]
    finally:
        con.close()


def _source(path: Path, names: Sequence[str]) -> str:
    fmt = _format(path)
    p = _quote(str(path))
    if fmt == "csv":
        return f"read_csv({p}, header=true, all_varchar=true, auto_detect=true, delim=',', quote='\"', escape='\"')"
    if fmt == "jsonl":
        cols = ", ".join(f"{_quote(n)}: 'VARCHAR'" for n in names)
        return f"read_json({p}, format='newline_delimited', columns={{{cols}}})"
    return f"read_parquet({p})"


def _money_sql(raw: str, scale: int) -> str:
    return f"CAST(round(TRY_CAST({raw} AS DECIMAL(18,4)) * {10**scale}) AS BIGINT)"


def _cleaned(raw: str) -> str:
    return f"NULLIF(trim(CAST({raw} AS VARCHAR)), '')"


def load_input(
    con: duckdb.DuckDBPyConnection,
    spec: InputSpec,
    path: Path,
    *,
    currency: str,
    table: str | None = None,
) -> tuple[int, frozenset[str], list[Problem]]:
    """Load one file into table `spec.name` (or `table`); returns rows, optional columns present
    and the problems found (empty when it is usable)."""
    table = table or spec.name
    label = str(path)
    if not path.exists():
        return 0, frozenset(), [Problem(label, None, None, "no such file")]
    try:
        header = header_of(path)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, duckdb.Error) as exc:
        return 0, frozenset(), [Problem(label, None, None, f"cannot be read: {exc}")]
    lowered = {h.lower(): h for h in header}
    chosen: dict[str, str] = {}
    for col in spec.columns:
        for candidate in (col.name, *col.aliases):
            if candidate in lowered:
                chosen[col.name] = lowered[candidate]
                break
    missing = [c.name for c in spec.columns if c.required and c.name not in chosen]
    if missing:
        return (
            0,
            frozenset(),
            [Problem(label, None, name, "required column is missing") for name in missing],
        )
    scale = exponent(currency)
    if _format(path) == "csv":
        fast = _load_typed(con, spec, path, header, chosen, table, scale)
        if fast is not None:
            return fast, _present(spec, chosen), _duplicates(con, spec, table, label)
    selects: list[str] = []
    checks: list[tuple[str, str, str]] = []  # (sql predicate of a bad row, column, message)
    for col in spec.columns:
        if col.name not in chosen:
            selects.append(f"CAST(NULL AS {_SQL_TYPE[col.kind]}) AS {_ident(col.name)}")
            continue
        raw = _cleaned(_ident(chosen[col.name]))
        name = _ident(col.name)
        if col.required:
            checks.append((f"{raw} IS NULL", col.name, "required value is empty"))
        if col.kind == "text":
            selects.append(f"{raw} AS {name}")
        elif col.kind == "enum":
            selects.append(f"lower({raw}) AS {name}")
            allowed = ", ".join(_quote(v) for v in col.values)
            checks.append(
                (
                    f"{raw} IS NOT NULL AND lower({raw}) NOT IN ({allowed})",
                    col.name,
                    f"unknown value; allowed: {', '.join(col.values)}",
                )
            )
        elif col.kind == "money":
            selects.append(f"{_money_sql(raw, scale)} AS {name}")
            checks.append(
                (
                    f"{raw} IS NOT NULL AND TRY_CAST({raw} AS DECIMAL(18,4)) IS NULL",
                    col.name,
                    'not a decimal amount (e.g. "12.50")',
                )
            )
            checks.append(
                (
                    f"TRY_CAST({raw} AS DECIMAL(18,4)) IS NOT NULL AND "
                    f"TRY_CAST({raw} AS DECIMAL(18,4)) * {10**scale} <> "
                    f"round(TRY_CAST({raw} AS DECIMAL(18,4)) * {10**scale})",
                    col.name,
                    f"more decimals than {currency} has",
                )
            )
            if col.nonnegative:
                checks.append(
                    (f"TRY_CAST({raw} AS DECIMAL(18,4)) < 0", col.name, "negative amount")
                )
        elif col.kind == "int":
            selects.append(f"TRY_CAST({raw} AS BIGINT) AS {name}")
            checks.append(
                (
                    f"{raw} IS NOT NULL AND (TRY_CAST({raw} AS BIGINT) IS NULL "
                    f"OR position('.' IN {raw}) > 0)",
                    col.name,
                    "not a whole number",
                )
            )
        elif col.kind == "time":
            selects.append(f"TRY_CAST({raw} AS TIMESTAMPTZ) AS {name}")
            checks.append(
                (
                    f"{raw} IS NOT NULL AND TRY_CAST({raw} AS TIMESTAMPTZ) IS NULL",
                    col.name,
                    "not an ISO 8601 time",
                )
            )
            checks.append(
                (
                    f"{raw} IS NOT NULL AND NOT (right({raw}, 1) IN ('Z', 'z') OR "
                    f"substr({raw}, -6, 1) IN ('+', '-') OR substr({raw}, -5, 1) IN ('+', '-') "
                    f"OR substr({raw}, -3, 1) IN ('+', '-'))",
                    col.name,
                    "time has no UTC offset (add Z or +hh:mm)",
                )
            )
        elif col.kind == "bool":
            selects.append(
                f"CASE WHEN lower({raw}) IN ({', '.join(map(_quote, TRUE))}) THEN true "
                f"WHEN lower({raw}) IN ({', '.join(map(_quote, FALSE))}) THEN false END AS {name}"
            )
            checks.append(
                (
                    f"{raw} IS NOT NULL AND lower({raw}) NOT IN "
                    f"({', '.join(map(_quote, TRUE + FALSE))})",
                    col.name,
                    "not a boolean (true/false)",
                )
            )
        elif col.kind == "tags":
            selects.append(f"{raw} AS {name}")
    bits = [
        f"(CASE WHEN {pred} THEN {1 << i} ELSE 0 END)" for i, (pred, _c, _m) in enumerate(checks)
    ]
    err = " + ".join(bits) if bits else "0"
    src = _source(path, list(chosen.values()))
    try:
        con.execute(
            f"CREATE OR REPLACE TABLE {table} AS SELECT {', '.join(selects)}, "
            f"CAST({err} AS BIGINT) AS _err FROM {src}"
        )
    except duckdb.Error as exc:
        return 0, frozenset(), [Problem(label, None, None, f"cannot be parsed: {_first_line(exc)}")]
    flags, rows = con.execute(f"SELECT bit_or(_err), count(*) FROM {table}").fetchone() or (0, 0)
    problems: list[Problem] = []
    if flags:
        problems += _locate(con, table, label, chosen, checks, src)
    problems += _duplicates(con, spec, table, label)
    return int(rows or 0), _present(spec, chosen), problems


def _present(spec: InputSpec, chosen: Mapping[str, str]) -> frozenset[str]:
    return frozenset(chosen) - {c.name for c in spec.columns if c.required}


def _duplicates(
    con: duckdb.DuckDBPyConnection, spec: InputSpec, table: str, label: str
) -> list[Problem]:
    problems: list[Problem] = []
    for key in spec.unique:
        dup = con.execute(
            f"SELECT {_ident(key)}, count(*) FROM {table} WHERE {_ident(key)} IS NOT NULL "
            f"GROUP BY 1 HAVING count(*) > 1 LIMIT 5"
        ).fetchall()
        for value, count in dup:
            rows_of = [
                r[0]
                for r in con.execute(
                    f"SELECT rn FROM (SELECT row_number() OVER () AS rn, {_ident(key)} AS k "
                    f"FROM {table}) WHERE k = ? ORDER BY rn LIMIT 5",
                    [value],
                ).fetchall()
            ]
            problems.append(
                Problem(
                    label,
                    rows_of[1] if len(rows_of) > 1 else None,
                    key,
                    f"duplicate id ({count} rows: {', '.join(map(str, rows_of))})",
                    str(value),
                )
            )
    return problems


def _load_typed(
    con: duckdb.DuckDBPyConnection,
    spec: InputSpec,
    path: Path,
    header: Sequence[str],
    chosen: Mapping[str, str],
    table: str,
    scale: int,
) -> int | None:
    """The fast path for a well-formed CSV file: one typed read (amounts as decimals, counts as
    integers), the remaining rules checked in the same pass. Returns the row count, or None
    when any row breaks a rule: the caller then runs the validating path, which names them."""
    if len(set(header)) != len(header) or not header:
        return None
    kind_of = {chosen[c.name]: c.kind for c in spec.columns if c.name in chosen}
    types = {"money": "DECIMAL(18,6)", "int": "BIGINT"}
    columns = ", ".join(
        f"{_quote(h)}: '{types.get(kind_of.get(h, 'text'), 'VARCHAR')}'" for h in header
    )
    rejects = f"{table}_rejects"
    src = (
        f"read_csv({_quote(str(path))}, header=true, auto_detect=false, delim=',', quote='\"', "
        f"escape='\"', columns={{{columns}}}, store_rejects=true, "
        f"rejects_table='{rejects}', rejects_scan='{rejects}_scan')"
    )
    unit = 10**scale
    selects: list[str] = []
    bad: list[str] = []
    for col in spec.columns:
        name = _ident(col.name)
        if col.name not in chosen:
            selects.append(f"CAST(NULL AS {_SQL_TYPE[col.kind]}) AS {name}")
            continue
        src_col = _ident(chosen[col.name])
        raw = src_col if col.kind in ("money", "int") else _cleaned(src_col)
        if col.required:
            bad.append(f"{raw} IS NULL")
        if col.kind in ("text", "tags"):
            selects.append(f"{raw} AS {name}")
        elif col.kind == "enum":
            selects.append(f"lower({raw}) AS {name}")
            bad.append(f"lower({raw}) NOT IN ({', '.join(_quote(v) for v in col.values)})")
        elif col.kind == "money":
            selects.append(f"CAST(round({raw} * {unit}) AS BIGINT) AS {name}")
            bad.append(f"{raw} * {unit} <> round({raw} * {unit})")
            if col.nonnegative:
                bad.append(f"{raw} < 0")
        elif col.kind == "int":
            selects.append(f"{raw} AS {name}")
        elif col.kind == "time":
            selects.append(f"TRY_CAST({raw} AS TIMESTAMPTZ) AS {name}")
            bad.append(
                f"{raw} IS NOT NULL AND (TRY_CAST({raw} AS TIMESTAMPTZ) IS NULL OR NOT "
                f"(right({raw}, 1) IN ('Z', 'z') OR substr({raw}, -6, 1) IN ('+', '-') "
                f"OR substr({raw}, -5, 1) IN ('+', '-') OR substr({raw}, -3, 1) IN ('+', '-')))"
            )
        elif col.kind == "bool":
            selects.append(
                f"CASE WHEN lower({raw}) IN ({', '.join(map(_quote, TRUE))}) THEN true "
                f"WHEN lower({raw}) IN ({', '.join(map(_quote, FALSE))}) THEN false END AS {name}"
            )
            bad.append(f"lower({raw}) NOT IN ({', '.join(map(_quote, TRUE + FALSE))})")
    err = " OR ".join(f"coalesce({b}, false)" for b in bad) or "false"
    try:
        con.execute(
            f"CREATE OR REPLACE TABLE {table} AS SELECT {', '.join(selects)}, "
            f"CAST({err} AS BIGINT) AS _err FROM {src}"
        )
        rejected = con.execute(f"SELECT count(*) FROM {rejects}").fetchone()
    except duckdb.Error:
        return None
    finally:
        for name in (rejects, f"{rejects}_scan"):
            with contextlib.suppress(duckdb.Error):
                con.execute(f"DROP TABLE IF EXISTS {name}")
    flags, rows = con.execute(f"SELECT max(_err), count(*) FROM {table}").fetchone() or (0, 0)
    if (rejected and rejected[0]) or flags:
        return None
    return int(rows or 0)


def _locate(
    con: duckdb.DuckDBPyConnection,
    table: str,
    label: str,
    chosen: Mapping[str, str],
    checks: Sequence[tuple[str, str, str]],
    src: str,
    limit: int = 20,
) -> list[Problem]:
    """Name the rows behind the failed checks (only runs when something failed)."""
    rows = con.execute(
        f"SELECT rn, _err FROM (SELECT row_number() OVER () AS rn, _err FROM {table}) "
        f"WHERE _err <> 0 ORDER BY rn LIMIT {limit}"
    ).fetchall()
    wanted = {int(rn) for rn, _ in rows}
    raw: dict[int, dict[str, Any]] = {}
    if wanted:
        cols = ", ".join(f"{_ident(v)} AS {_ident(k)}" for k, v in chosen.items())
        placeholders = ", ".join(str(w) for w in sorted(wanted))
        for rec in con.execute(
            f"SELECT * FROM (SELECT row_number() OVER () AS rn, {cols} FROM {src}) "
            f"WHERE rn IN ({placeholders})"
        ).fetchall():
            raw[int(rec[0])] = dict(zip(["rn", *chosen.keys()], rec, strict=True))
    out: list[Problem] = []
    for rn, err in rows:
        for i, (_pred, column, message) in enumerate(checks):
            if int(err) & (1 << i):
                value = raw.get(int(rn), {}).get(column)
                out.append(
                    Problem(label, int(rn), column, message, None if value is None else str(value))
                )
    return out


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return " ".join(text[:3]) if text else type(exc).__name__


def load_all(con: duckdb.DuckDBPyConnection, files: Mapping[str, Path], *, currency: str) -> Loaded:
    """Load every given file; raise InputError listing every problem of every file."""
    loaded = Loaded()
    problems: list[Problem] = []
    for name, path in files.items():
        rows, present, found = load_input(con, SPECS[name], path, currency=currency)
        problems += found
        if not found:
            loaded.tables[name] = rows
            loaded.columns[name] = present
            loaded.files[name] = path
    if problems:
        raise InputError(problems)
    return loaded
