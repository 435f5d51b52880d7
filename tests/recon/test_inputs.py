"""Malformed inputs: every problem names the file, the row and the column; nothing is written."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from handoff.cli import app
from handoff.domain.ledger.program import Program
from handoff.recon.engine import reconcile
from handoff.recon.inputs import InputError

HEADER = "order_id,customer_id,currency,subtotal,status,placed_at,fulfilled_at\n"
GOOD = "SO-1,C-1,USD,10.00,fulfilled,2026-01-05T10:00:00Z,2026-01-05T10:01:00Z\n"


def orders(tmp_path: Path, body: str, header: str = HEADER) -> Path:
    path = tmp_path / "orders.csv"
    path.write_text(header + body)
    return path


def problems(files: dict[str, Path]) -> list[str]:
    with pytest.raises(InputError) as info:
        reconcile(files, Program())
    return [str(p) for p in info.value.problems]


def test_missing_required_column(tmp_path: Path) -> None:
    path = orders(
        tmp_path,
        "SO-1,C-1,USD,10.00,2026-01-05T10:00:00Z\n",
        "order_id,customer_id,currency,subtotal,placed_at\n",
    )
    found = problems({"orders": path})
    assert found == [f"{path}, column 'status': required column is missing"]


@pytest.mark.parametrize(
    ("row", "column", "message"),
    [
        ("SO-2,C-1,USD,10.00,fulfilled,yesterday,", "placed_at", "not an ISO 8601 time"),
        ("SO-2,C-1,USD,10.00,fulfilled,2026-01-05T10:00:00,", "placed_at", "no UTC offset"),
        ("SO-2,C-1,USD,-5.00,fulfilled,2026-01-05T10:00:00Z,", "subtotal", "negative amount"),
        ("SO-2,C-1,USD,ten,fulfilled,2026-01-05T10:00:00Z,", "subtotal", "not a decimal"),
        ("SO-2,C-1,USD,10.00,shipped,2026-01-05T10:00:00Z,", "status", "unknown value"),
        ("SO-2,,USD,10.00,paid,2026-01-05T10:00:00Z,", "customer_id", "required value is empty"),
        ("SO-1,C-1,USD,10.00,paid,2026-01-05T10:00:00Z,", "order_id", "duplicate id"),
    ],
)
def test_bad_values_name_file_row_and_column(
    tmp_path: Path, row: str, column: str, message: str
) -> None:
    path = orders(tmp_path, GOOD + row + "\n")
    found = problems({"orders": path})
    assert any(p.startswith(f"{path}, row 2, column '{column}'") and message in p for p in found), (
        found
    )


def test_bad_events_file_and_nothing_written(tmp_path: Path) -> None:
    path = orders(tmp_path, GOOD)
    events = tmp_path / "events.csv"
    events.write_text(
        "event_id,member_id,kind,points,occurred_at\n"
        "E1,M1,earn,10,2026-01-05T10:01:00Z\n"
        "E2,M1,gift,1.5,2026-01-05T10:01:00Z\n"
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "reconcile",
            "--orders",
            str(path),
            "--loyalty-events",
            str(events),
            "--out",
            str(out),
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 2
    # the terminal may wrap a long path anywhere: compare without whitespace
    text = "".join(result.output.split())
    assert "".join(f"{events}, row 2, column 'kind': unknown value".split()) in text
    assert "".join(f"{events}, row 2, column 'points': not a whole number".split()) in text
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_parquet_and_jsonl_are_accepted(tmp_path: Path) -> None:
    import duckdb

    csv_path = orders(tmp_path, GOOD)
    con = duckdb.connect()
    pq = tmp_path / "orders.parquet"
    con.execute(
        f"COPY (SELECT * FROM read_csv('{csv_path}', all_varchar=true)) TO '{pq}' (FORMAT PARQUET)"
    )
    jl = tmp_path / "orders.jsonl"
    jl.write_text(
        '{"order_id":"SO-1","customer_id":"C-1","currency":"USD","subtotal":"10.00",'
        '"status":"fulfilled","placed_at":"2026-01-05T10:00:00Z"}\n'
    )
    for path in (pq, jl):
        result = reconcile({"orders": path}, Program())
        assert result.loaded.tables["orders"] == 1
