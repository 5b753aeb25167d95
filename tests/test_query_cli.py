"""`rexdrug query`: formats, outputs and errors, on a small warehouse built without Spark."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from etl.warehouse import (
    WarehouseLayout,
    connect_readonly,
    envelope_tables,
    parse_file_envelope,
    refresh_duckdb,
    write_file_partitions,
)
from jobs.cli import main

DATA = Path(__file__).resolve().parent / "data" / "warehouse"
SQL = "SELECT pmid, pmid_version, title, languages, ingested_at FROM current_article_versions ORDER BY pmid, pmid_version"


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("wh")
    layout = WarehouseLayout(root)
    files = sorted((DATA / "nlm").rglob("*.xml"))
    for order, path in enumerate(files, start=1):
        write_file_partitions(
            layout, path.name, envelope_tables(parse_file_envelope(str(path), path.name, order, 0))
        )
    refresh_duckdb(root)
    return root


def expected_rows(warehouse: Path) -> list[dict]:
    with connect_readonly(warehouse) as con:
        return con.sql(SQL).to_arrow_table().to_pylist()


def test_json_lines(warehouse, capsys):
    assert main(["query", "--warehouse", str(warehouse), SQL, "--format", "json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    expected = expected_rows(warehouse)
    assert len(rows) == len(expected) == 5
    for got, want in zip(rows, expected):
        assert got == {**want, "ingested_at": want["ingested_at"].isoformat()}
    assert rows[0]["languages"] == ["eng"]


def test_csv_has_header_and_json_for_nested_values(warehouse, capsys):
    assert main(["query", "--warehouse", str(warehouse), SQL, "--format", "csv"]) == 0
    table = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert table[0] == ["pmid", "pmid_version", "title", "languages", "ingested_at"]
    expected = expected_rows(warehouse)
    assert [row[:3] for row in table[1:]] == [
        [r["pmid"], str(r["pmid_version"]), r["title"]] for r in expected
    ]
    assert {row[3] for row in table[1:]} == {'["eng"]'}


def test_parquet_needs_output_and_round_trips(warehouse, tmp_path, capsys):
    assert main(["query", "--warehouse", str(warehouse), SQL, "--format", "parquet"]) == 2
    out = tmp_path / "result.parquet"
    assert (
        main(["query", "--warehouse", str(warehouse), SQL, "--format", "parquet", "--output", str(out)]) == 0
    )
    assert capsys.readouterr().out == ""
    assert pq.read_table(out).to_pylist() == expected_rows(warehouse)


def test_table_format_for_humans_and_output_file(warehouse, tmp_path, capsys):
    assert (
        main(["query", "--warehouse", str(warehouse), "SELECT pmid, title FROM current_articles ORDER BY 1"])
        == 0
    )
    text = capsys.readouterr().out
    assert "pmid" in text and "varchar" in text
    assert all(pmid in text for pmid in ("100001", "100002", "100003", "100006"))
    assert main(["query", "--warehouse", str(warehouse), "SELECT * FROM range(100)", "--max-rows", "4"]) == 0
    assert "100 rows" in capsys.readouterr().out  # elided, with the true row count
    out = tmp_path / "out.json"
    assert main(["query", "--warehouse", str(warehouse), SQL, "--format", "json", "--output", str(out)]) == 0
    assert capsys.readouterr().out == ""
    assert len(out.read_text().splitlines()) == 5


def test_sql_errors_are_reported_with_exit_code_1(warehouse, capsys, caplog):
    assert main(["query", "--warehouse", str(warehouse), "SELECT nope FROM current_articles"]) == 1
    assert "SQL error" in caplog.text and "nope" in caplog.text  # logged to stderr
    assert capsys.readouterr().out == ""
    # the database is opened read-only: writes are refused
    assert main(["query", "--warehouse", str(warehouse), "DROP VIEW current_articles"]) == 1
    assert (
        main(
            [
                "query",
                "--warehouse",
                str(warehouse),
                "SELECT count(*) AS n FROM current_article_versions",
                "--format",
                "json",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out) == {"n": 5}


def test_missing_warehouse_is_a_configuration_error(tmp_path, caplog):
    assert main(["query", "--warehouse", str(tmp_path / "none"), "SELECT 1"]) == 2
    assert "rexdrug ingest" in caplog.text
