"""`handoff identity dedupe` against the batch contract: one row per record with the contract's
columns, header aliases, the three input formats giving the same answer, the live engine's
guards (placeholders, a store associate's email, phones in every format), thresholds, the review
queue file, training on the file, the summary, and malformed inputs that name file, row and
column and leave nothing half-written."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from handoff.cli import app
from handoff.domain.identity import (
    DEFAULT_GUARDS,
    NormalizeConfig,
    Profile,
    default_model,
    prepare,
    resolve_prepared,
)
from handoff.domain.identity import resolver as resolver_module

HEADER = [
    "record_id",
    "system",
    "external_id",
    "first_name",
    "last_name",
    "email",
    "phone",
    "zip",
    "address",
    "city",
    "state",
    "date_of_birth",
]

# One person across three systems (case, spaces, every phone format), a household sharing an
# email, strangers typing a placeholder, eight shoppers under a store associate's email, and a
# few singletons.
ROWS: list[dict[str, str]] = [
    {
        "record_id": "a1",
        "system": "pos",
        "external_id": "p-1",
        "first_name": "Robert",
        "last_name": "Okafor",
        "email": " Robert.Okafor@Bluewave.net",
        "phone": "(415) 555-0132",
        "zip": "94110",
        "address": "12 Valencia Street",
        "city": "San Francisco",
        "state": "CA",
        "date_of_birth": "1980-02-03",
    },
    {
        "record_id": "a2",
        "system": "web",
        "external_id": "w-1",
        "first_name": "Bob",
        "last_name": "Okafor",
        "email": "robert.okafor@bluewave.net",
        "phone": "+1 415-555-0132",
        "zip": "94110",
    },
    {
        "record_id": "a3",
        "system": "helpdesk",
        "external_id": "h-1",
        "first_name": "ROBERT",
        "last_name": "okafor",
        "phone": "415.555.0132",
    },
    {
        "record_id": "h1",
        "system": "web",
        "external_id": "w-2",
        "first_name": "Maria",
        "last_name": "Lopez",
        "email": "lopez.home@bluewave.net",
        "date_of_birth": "1975-05-06",
    },
    {
        "record_id": "h2",
        "system": "pos",
        "external_id": "p-2",
        "first_name": "Jorge",
        "last_name": "Lopez",
        "email": "lopez.home@bluewave.net",
        "date_of_birth": "1972-11-30",
    },
    {
        "record_id": "t1",
        "system": "pos",
        "external_id": "p-3",
        "first_name": "Alice",
        "last_name": "Jones",
        "email": "test@test.com",
        "zip": "10001",
    },
    {
        "record_id": "t2",
        "system": "pos",
        "external_id": "p-4",
        "first_name": "Wei",
        "last_name": "Zhang",
        "email": "TEST@test.com",
        "zip": "20002",
    },
]
_STAFF = ["Ana", "Ben", "Chloe", "Dmitri", "Eve", "Farah", "Goran", "Hana"]
_STAFF_LAST = ["Silva", "Novak", "Dubois", "Ivanov", "Moreau", "Haddad", "Petrov", "Sato"]
for k, (first, last) in enumerate(zip(_STAFF, _STAFF_LAST, strict=True)):
    ROWS.append(
        {
            "record_id": f"s{k}",
            "system": "pos",
            "external_id": f"p-s{k}",
            "first_name": first,
            "last_name": last,
            "email": "till3@shop-example.net",
            "zip": f"3{k}000",
        }
    )
for k in range(20):
    ROWS.append(
        {
            "record_id": f"z{k:02d}",
            "system": "crm",
            "external_id": f"c-{k}",
            "first_name": ["Liam", "Emma", "Noah", "Ava", "Mia"][k % 5],
            "last_name": ["Garcia", "Rossi", "Tanaka", "Kowalski"][k // 5],
            "email": f"person{k}@mailbox-example.org",
            "zip": f"{5000 + k}",
            "date_of_birth": f"19{60 + k}-0{1 + k % 9}-1{k % 10}",
        }
    )


def write_csv(path: Path, rows: list[dict[str, str]], header: list[str] = HEADER) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=header, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in header})
    return path


def write_config(tmp_path: Path) -> Path:
    """Every source writes US national numbers (the live step reads the same key)."""
    path = tmp_path / "handoff.toml"
    lines = []
    for name in ("pos", "web", "helpdesk", "crm"):
        lines += [
            f"[sources.{name}]",
            'vendor = "standard"',
            'role = "crm"',
            f'secret_env = "SECRET_{name.upper()}"',
            'default_region = "US"',
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


def read_clusters(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HANDOFF_CONFIG", raising=False)
    return CliRunner()


def dedupe(cli: CliRunner, *args: str) -> tuple[int, str]:
    result = cli.invoke(app, ["identity", "dedupe", *args])
    return result.exit_code, result.output


def test_clusters_follow_the_contract(cli: CliRunner, tmp_path: Path) -> None:
    src = write_csv(tmp_path / "profiles.csv", ROWS)
    out = tmp_path / "clusters.csv"
    config = write_config(tmp_path)
    code, output = dedupe(cli, str(src), "--out", str(out), "--config", str(config))
    assert code == 0, output

    rows = read_clusters(out)
    assert list(rows[0]) == ["record_id", "customer_id", "decision", "score", "matched_record_id"]
    assert [r["record_id"] for r in rows] == [r["record_id"] for r in ROWS]  # input order
    by_id = {r["record_id"]: r for r in rows}
    for r in rows:
        assert r["decision"] in {"merged", "review", "new"}
        if r["score"]:
            assert 0.0 <= float(r["score"]) <= 1.0
            assert r["matched_record_id"] in by_id
        if r["decision"] == "merged":
            partner = by_id[r["matched_record_id"]]
            assert partner["customer_id"] == r["customer_id"]
        if r["decision"] == "review":
            # between the thresholds and NOT merged
            assert by_id[r["matched_record_id"]]["customer_id"] != r["customer_id"]

    # one person across three systems, whatever the case, spaces and phone format
    assert by_id["a1"]["customer_id"] == by_id["a2"]["customer_id"] == by_id["a3"]["customer_id"]
    assert {by_id[x]["decision"] for x in ("a1", "a2", "a3")} == {"merged"}
    # a household sharing an email: two customers, the pair waits for a person
    assert by_id["h1"]["customer_id"] != by_id["h2"]["customer_id"]
    assert by_id["h1"]["decision"] == by_id["h2"]["decision"] == "review"
    # a placeholder email never merges strangers
    assert by_id["t1"]["customer_id"] != by_id["t2"]["customer_id"]
    # a store associate's email typed for eight shoppers identifies nobody
    assert len({by_id[f"s{k}"]["customer_id"] for k in range(8)}) == 8
    # everyone else is their own customer
    assert len({by_id[f"z{k:02d}"]["customer_id"] for k in range(20)}) == 20


def test_without_a_phone_region_national_numbers_are_not_identifiers(
    cli: CliRunner, tmp_path: Path
) -> None:
    rows = [
        {"record_id": "x1", "first_name": "Ana", "last_name": "Kim", "phone": "(415) 555-0132"},
        {"record_id": "x2", "first_name": "Bo", "last_name": "Park", "phone": "415 555 0132"},
    ]
    src = write_csv(tmp_path / "p.csv", rows)
    out = tmp_path / "c.csv"
    code, output = dedupe(cli, str(src), "--out", str(out))
    assert code == 0, output
    assert len({r["customer_id"] for r in read_clusters(out)}) == 2


def test_header_aliases_and_unknown_columns(cli: CliRunner, tmp_path: Path) -> None:
    header = [
        "Record_ID",
        "given_name",
        "surname",
        "postcode",
        "address_1",
        "address_2",
        "suburb",
        "state",
        "loyalty_tier",
    ]
    rows = [
        {
            "Record_ID": "r1",
            "given_name": "Katerina",
            "surname": "Sondergeld",
            "postcode": "2615",
            "address_1": "42 Pridham Street",
            "address_2": "Kingsford Smith Village",
            "suburb": "Kambah",
            "state": "ACT",
            "loyalty_tier": "gold",
        },
        {
            "Record_ID": "r2",
            "given_name": "Katerina",
            "surname": "Sondergeld",
            "postcode": "2615",
            "address_1": "42 Pridham St.",
            "address_2": "Kingsford Smith Village",
            "suburb": "KAMBAH",
            "state": "act",
            "loyalty_tier": "silver",
        },
        {
            "Record_ID": "r3",
            "given_name": "Tomas",
            "surname": "Brennan",
            "postcode": "4000",
            "address_1": "7 Wharf Road",
            "address_2": "",
            "suburb": "Brisbane",
            "state": "QLD",
            "loyalty_tier": "",
        },
    ]
    src = write_csv(tmp_path / "p.csv", rows, header)
    out = tmp_path / "c.csv"
    code, output = dedupe(cli, str(src), "--out", str(out))
    assert code == 0, output
    by_id = {r["record_id"]: r for r in read_clusters(out)}
    assert by_id["r1"]["customer_id"] == by_id["r2"]["customer_id"]
    assert by_id["r1"]["decision"] == "merged"
    assert by_id["r3"]["decision"] == "new"


def test_csv_jsonl_and_parquet_give_the_same_clusters(cli: CliRunner, tmp_path: Path) -> None:
    config = write_config(tmp_path)
    src = write_csv(tmp_path / "p.csv", ROWS)
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text(
        "\n".join(json.dumps({k: v for k, v in r.items() if v}) for r in ROWS) + "\n",
        encoding="utf-8",
    )
    parquet = tmp_path / "p.parquet"
    con = duckdb.connect()
    con.read_csv(str(src), all_varchar=True).write_parquet(str(parquet))
    con.close()
    outputs = []
    for path in (src, jsonl, parquet):
        out = tmp_path / f"out-{path.suffix[1:]}.csv"
        code, output = dedupe(cli, str(path), "--out", str(out), "--config", str(config))
        assert code == 0, output
        outputs.append(out.read_text(encoding="utf-8"))
    assert outputs[0] == outputs[1] == outputs[2]


def test_thresholds_review_file_and_summary(cli: CliRunner, tmp_path: Path) -> None:
    rows = [
        {
            "record_id": "k1",
            "first_name": "Katerina",
            "last_name": "Sondergeld",
            "zip": "2615",
            "address": "42 Pridham Street",
            "city": "Kambah",
            "date_of_birth": "1961-04-11",
        },
        {
            "record_id": "k2",
            "first_name": "Katerena",
            "last_name": "Sondergeld",
            "zip": "2615",
        },
        *[r for r in ROWS if r["record_id"].startswith("z")],
    ]
    src = write_csv(tmp_path / "p.csv", rows)
    out, reviews = tmp_path / "c.csv", tmp_path / "r.csv"
    code, output = dedupe(cli, str(src), "--out", str(out), "--format", "json")
    assert code == 0, output
    summary = json.loads(output)
    by_id = {r["record_id"]: r for r in read_clusters(out)}
    assert by_id["k1"]["decision"] == "merged"
    score = float(by_id["k1"]["score"])
    assert score < 0.99999  # room for a merge threshold above it
    assert summary["records"] == len(rows)
    assert summary["customers"] == len(rows) - 1
    assert summary["merges"] == 2 and summary["largest_cluster"] == 2
    assert set(summary) >= {"records", "customers", "merges", "reviews", "largest_cluster"}
    assert summary["seconds"] >= 0

    # the same pair above a review threshold but below a merge threshold: review, not merged
    code, output = dedupe(
        cli,
        str(src),
        "--out",
        str(out),
        "--threshold-merge",
        f"{min(score + (1 - score) / 2, 0.999999):.6f}",
        "--threshold-review",
        "0.5",
        "--review-out",
        str(reviews),
        "--format",
        "json",
    )
    assert code == 0, output
    by_id = {r["record_id"]: r for r in read_clusters(out)}
    assert by_id["k1"]["decision"] == by_id["k2"]["decision"] == "review"
    assert by_id["k1"]["customer_id"] != by_id["k2"]["customer_id"]
    queue = read_clusters(reviews)
    assert len(queue) == 1
    item = queue[0]
    assert {item["record_a"], item["record_b"]} == {"k1", "k2"}
    assert float(item["score"]) == pytest.approx(score, abs=1e-6)
    evidence = json.loads(item["evidence"])
    assert {e["field"] for e in evidence} >= {"first_name", "last_name", "dob", "zip"}
    assert next(e for e in evidence if e["field"] == "last_name")["level"] == "exact"

    code, output = dedupe(
        cli, str(src), "--out", str(out), "--threshold-merge", "0.5", "--threshold-review", "0.9"
    )
    assert code == 2 and "thresholds" in output


def test_train_on_the_file(cli: CliRunner, tmp_path: Path) -> None:
    src = write_csv(tmp_path / "p.csv", ROWS)
    out = tmp_path / "c.csv"
    code, output = dedupe(
        cli, str(src), "--out", str(out), "--train", "--format", "json", "--config",
        str(write_config(tmp_path)),
    )  # fmt: skip
    assert code == 0, output
    summary = json.loads(output)
    assert summary["model_version"] != default_model().version
    by_id = {r["record_id"]: r for r in read_clusters(out)}
    assert by_id["a1"]["customer_id"] == by_id["a2"]["customer_id"]  # exact email and phone
    assert by_id["t1"]["customer_id"] != by_id["t2"]["customer_id"]


BAD_INPUTS = [
    ("missing.csv", None, "no such file"),
    ("p.xlsx", "record_id\nr1\n", "unknown file type"),
    ("p.csv", "", "empty"),
    ("p.csv", "id,email\n1,a@b.com\n", "column 'record_id': the required column is missing"),
    ("p.csv", "record_id,email\nr1,a@b.com\n,b@c.com\n", "row 3, column 'record_id'"),
    ("p.csv", "record_id,email\nr1,a@b.com\nr1,b@c.com\n", "already used on row 2"),
    ("p.csv", "record_id,email\nr1,a@b.com\nr2,b@c.com,extra\n", "row 3: 3 fields"),
    ("p.csv", "record_id,zip,postcode\nr1,1,2\n", "both give zip"),
    ("p.csv", 'record_id,email\nr1,"a@b.com\n', "row"),
    ("p.jsonl", '{"record_id": "r1"}\n{"record_id": r2}\n', "row 2: not JSON"),
    ("p.jsonl", '{"record_id": "r1"}\n["r2"]\n', "row 2: expected a JSON object"),
    ("p.jsonl", '{"record_id": "r1", "email": ["a@b.com"]}\n', "row 1, column 'email'"),
    ("p.csv", "record_id\n", "no records"),
]


@pytest.mark.parametrize(("name", "content", "message"), BAD_INPUTS)
def test_malformed_input_names_the_place_and_writes_nothing(
    cli: CliRunner, tmp_path: Path, name: str, content: str | None, message: str
) -> None:
    src = tmp_path / name
    if content is not None:
        src.write_text(content, encoding="utf-8")
    out = tmp_path / "clusters.csv"
    reviews = tmp_path / "reviews.csv"
    out.write_text("previous run\n")
    code, output = dedupe(cli, str(src), "--out", str(out), "--review-out", str(reviews))
    squeezed = "".join(output.split())  # a terminal may wrap the long path anywhere
    assert code == 2, output
    assert "".join(message.split()) in squeezed
    assert name in squeezed
    assert out.read_text() == "previous run\n"  # untouched
    assert not reviews.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_invalid_utf8_names_the_row(cli: CliRunner, tmp_path: Path) -> None:
    src = tmp_path / "p.csv"
    src.write_bytes(b"record_id,last_name\nr1,Smith\nr2,M\xfcller\n")
    out = tmp_path / "c.csv"
    code, output = dedupe(cli, str(src), "--out", str(out))
    assert code == 2
    assert "not UTF-8" in output and "row" in output
    assert not out.exists()


def test_output_cannot_replace_the_input(cli: CliRunner, tmp_path: Path) -> None:
    src = write_csv(tmp_path / "p.csv", ROWS[:3])
    before = src.read_text()
    code, output = dedupe(cli, str(src), "--out", str(src))
    assert code == 2 and "overwrite the input" in output
    assert src.read_text() == before


def _synthetic(n: int) -> list[Profile]:
    """n profiles with duplicates, placeholders and shared values (no file, no labels)."""
    out: list[Profile] = []
    firsts = ["Olivia", "Liam", "Emma", "Noah", "Ava", "Lucas", "Mia", "Mason", "Zoe", "Ivan"]
    lasts = ["Nguyen", "Garcia", "Okafor", "Schmidt", "Rossi", "Tanaka", "Dubois", "Kim"]
    for k in range(n):
        person = k // 2 if k % 7 else k  # roughly every other record has a twin record
        first = firsts[person % len(firsts)]
        last = lasts[(person // len(firsts)) % len(lasts)]
        out.append(
            Profile(
                record_id=f"r{k:05d}",
                system=["pos", "web", "crm"][k % 3],
                external_id=str(k),
                first_name=first if k % 5 else first[:-1] + first[-1].upper(),
                last_name=last,
                email=f"{first}.{last}.{person}@mail-example.org" if k % 4 else "test@test.com",
                phone=f"+1 415 555 {person % 10000:04d}" if k % 3 else None,
                zip=f"{94000 + person % 400}",
                address=f"{person % 90 + 1} Market Street",
                date_of_birth=f"19{50 + person % 50}-0{1 + person % 9}-1{person % 10}",
            )
        )
    return out


def test_parallel_scoring_equals_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forked workers score record ranges; merged in order they give exactly one pass's result."""
    normalized, shared = prepare(_synthetic(3000), DEFAULT_GUARDS, NormalizeConfig())
    one = resolve_prepared(normalized, default_model(), shared=shared, workers=1)
    monkeypatch.setattr(resolver_module, "_PARALLEL_MIN_RECORDS", 10)
    two = resolve_prepared(normalized, default_model(), shared=shared, workers=2)
    assert one.stats.candidate_pairs > 1000 and one.stats.probabilistic_links > 0
    assert two.decisions == one.decisions
    assert two.reviews == one.reviews
    assert two.breaches == one.breaches
    assert two.stats == one.stats
