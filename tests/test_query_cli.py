"""`rexdrug query`: formats, outputs and errors, on a small warehouse built without Spark."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from etl.pubmed.envelope import envelope_tables, parse_file_envelope
from etl.warehouse import (
    WarehouseLayout,
    connect_readonly,
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


# ----------------------------------------------------------------------------------------------------
# User SQL is sandboxed: reads of the warehouse only, no writes, no extensions, locked settings.
# Each escape below worked before the sandbox (COPY wrote anywhere, read_text returned the
# environment, INSTALL went to the network); a private warehouse per test, since a working escape
# would damage it.
# ----------------------------------------------------------------------------------------------------


def _build_warehouse(root: Path) -> Path:
    layout = WarehouseLayout(root)
    for order, path in enumerate(sorted((DATA / "nlm").rglob("*.xml")), start=1):
        write_file_partitions(
            layout, path.name, envelope_tables(parse_file_envelope(str(path), path.name, order, 0))
        )
    refresh_duckdb(root)
    return root


@pytest.fixture
def private_warehouse(tmp_path) -> Path:
    return _build_warehouse(tmp_path / "wh")


def _parquet_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.parquet"))}


def _query(warehouse: Path, sql: str, *extra: str) -> int:
    return main(["query", "--warehouse", str(warehouse), sql, *extra])


def test_copy_to_a_file_outside_the_warehouse_is_refused(private_warehouse, tmp_path, caplog, capsys):
    target = tmp_path / "outside" / "dump.csv"
    target.parent.mkdir()
    for sql in (
        f"COPY (SELECT * FROM current_articles) TO '{target}'",
        f"EXPLAIN ANALYZE COPY (SELECT 1 AS a) TO '{target}'",  # EXPLAIN ANALYZE runs its statement
        f"SELECT 1; COPY (SELECT 2 AS a) TO '{target}'",  # a second statement is checked too
    ):
        caplog.clear()
        assert _query(private_warehouse, sql) == 1, sql
        assert not target.exists(), sql
        assert "refused" in caplog.text and "COPY" in caplog.text, caplog.text
    assert capsys.readouterr().out == ""


def test_copy_over_the_warehouses_own_parquet_is_refused(private_warehouse, caplog):
    before = _parquet_bytes(private_warehouse)
    victim = next(p for p in sorted(private_warehouse.rglob("*.parquet")) if "articles" in p.parts)
    new_file = victim.with_name("injected.parquet")
    for sql in (
        f"COPY (SELECT * FROM current_articles WHERE false) TO '{victim}' (FORMAT parquet)",
        f"COPY (SELECT * FROM current_articles) TO '{new_file}' (FORMAT parquet)",
        f"EXPLAIN ANALYZE COPY (SELECT * FROM current_articles WHERE false) TO '{victim}' (FORMAT parquet)",
        f"EXPORT DATABASE '{private_warehouse / 'export'}'",
    ):
        caplog.clear()
        assert _query(private_warehouse, sql) == 1, sql
        assert "refused" in caplog.text, caplog.text
    assert _parquet_bytes(private_warehouse) == before  # no file changed, none added
    assert not (private_warehouse / "export").exists()
    with connect_readonly(private_warehouse) as con:
        assert con.sql("SELECT count(*) FROM current_article_versions").fetchall() == [(5,)]


@pytest.mark.parametrize(
    "reader",
    [
        "SELECT * FROM read_text('/proc/self/environ')",
        "SELECT * FROM read_csv('/proc/self/environ', header = false, sep = '\\x01')",
        "SELECT * FROM read_text('{secret_file}')",
        "SELECT * FROM read_csv('{secret_file}')",
        "SELECT * FROM read_text('{warehouse}/../secret.txt')",  # `..` out of the warehouse
        "SELECT * FROM glob('/*')",
    ],
)
def test_reading_files_outside_the_warehouse_is_refused(
    private_warehouse, tmp_path, monkeypatch, caplog, capsys, reader
):
    monkeypatch.setenv("REXDRUG_TEST_API_KEY", "sk-test-do-not-leak")
    secret_file = tmp_path / "secret.txt"  # beside the warehouse folder, not inside it
    secret_file.write_text("name\nsk-file-do-not-leak\n")
    sql = reader.format(secret_file=secret_file, warehouse=private_warehouse)
    assert _query(private_warehouse, sql, "--format", "json") == 1
    out = capsys.readouterr().out
    assert "do-not-leak" not in out and out == ""
    assert "refused" in caplog.text and "warehouse's own files" in caplog.text, caplog.text


def test_environment_is_not_readable_from_a_real_query_process(private_warehouse):
    """The CLI as users run it: a separate process whose environment holds an API key."""
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo), "OPENAI_API_KEY": "sk-proc-do-not-leak"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "jobs",
            "query",
            "--warehouse",
            str(private_warehouse),
            "--format",
            "csv",
            "SELECT content FROM read_text('/proc/self/environ')",
        ],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert "do-not-leak" not in proc.stdout + proc.stderr
    assert "refused" in proc.stderr


@pytest.mark.parametrize(
    "sql",
    [
        "INSTALL httpfs",
        "FORCE INSTALL httpfs",
        "LOAD httpfs",
        "INSTALL json FROM 'http://127.0.0.1:9/'",
        "LOAD '/tmp/x.duckdb_extension'",
    ],
)
def test_extensions_are_neither_installed_nor_loaded(private_warehouse, caplog, sql):
    # Refused before DuckDB runs the statement: no download is attempted.
    assert _query(private_warehouse, sql) == 1
    assert "refused" in caplog.text and "LOAD" in caplog.text, caplog.text


def test_extension_autoload_is_off(private_warehouse, caplog):
    # An https URL made DuckDB auto-install httpfs (a download) and load it: both off now.
    assert _query(private_warehouse, "SELECT * FROM read_csv('https://127.0.0.1:9/x.csv')") == 1
    assert "automatically install" not in caplog.text, caplog.text
    assert "refused" in caplog.text or "SQL error" in caplog.text


@pytest.mark.parametrize(
    "sql",
    [
        "SET enable_external_access = true",
        "RESET enable_external_access",
        "SET lock_configuration = false",
        "SET allowed_directories = ['/']",
        "PRAGMA enable_external_access = true",
        "CALL pragma_show_tables()",
    ],
)
def test_settings_cannot_be_changed_from_sql(private_warehouse, caplog, sql):
    assert _query(private_warehouse, sql) == 1
    assert "refused" in caplog.text, caplog.text


def test_sandbox_locks_the_configuration(private_warehouse, tmp_path):
    """Below the statement check, the DuckDB settings themselves are locked."""
    import duckdb

    from jobs.cli.query import sandboxed

    outside = tmp_path / "outside.txt"
    outside.write_text("x\n")
    con = connect_readonly(private_warehouse)
    try:
        with sandboxed(con, private_warehouse):  # from inside the folder: the views' paths are relative
            for sql in (
                "SET enable_external_access = true",
                "SET lock_configuration = false",
                "SET allowed_directories = ['/']",
                "SET autoload_known_extensions = true",
            ):
                with pytest.raises(duckdb.Error, match="locked"):
                    con.execute(sql)
            with pytest.raises(duckdb.PermissionException):
                con.sql(f"SELECT * FROM read_text('{outside}')").fetchall()
            assert con.sql("SELECT count(*) FROM current_article_versions").fetchall() == [(5,)]
    finally:
        con.close()


@pytest.mark.parametrize("where", ["outside", "inside"])
def test_attach_of_a_new_database_file_is_refused(private_warehouse, tmp_path, caplog, where):
    target = (tmp_path if where == "outside" else private_warehouse) / "new.duckdb"
    assert _query(private_warehouse, f"ATTACH '{target}' AS extra") == 1
    assert not target.exists()
    assert "refused" in caplog.text and "ATTACH" in caplog.text, caplog.text


def test_attach_of_another_database_is_refused(private_warehouse, tmp_path, caplog, capsys):
    import duckdb

    other = tmp_path / "other.duckdb"  # someone else's database beside the warehouse
    with duckdb.connect(str(other)) as con:
        con.execute("CREATE TABLE secrets AS SELECT 'sk-attached-do-not-leak' AS key")
    sql = f"ATTACH '{other}' AS other (READ_ONLY); SELECT key FROM other.secrets"
    assert _query(private_warehouse, sql, "--format", "json") == 1
    assert "do-not-leak" not in capsys.readouterr().out
    assert "refused" in caplog.text and "ATTACH" in caplog.text, caplog.text


@pytest.mark.parametrize(
    "sql, expected",
    [
        ("SELECT count(*) AS n FROM current_article_versions", [{"n": 5}]),
        (
            "WITH v AS (SELECT pmid FROM current_article_versions) SELECT count(DISTINCT pmid) AS n FROM v",
            [{"n": 4}],
        ),
        ("SELECT count(*) AS n FROM (SHOW TABLES) WHERE name = 'current_articles'", [{"n": 1}]),
        (
            "SELECT column_name FROM (DESCRIBE current_articles) WHERE column_name = 'pmid'",
            [{"column_name": "pmid"}],
        ),
        ("SELECT count(*) AS n FROM read_parquet('{warehouse}/articles/*/*.parquet')", None),  # its own files
        ("SELECT 1 AS a; SELECT 2 AS a", [{"a": 2}]),
    ],
)
def test_reads_of_the_warehouse_still_work(private_warehouse, capsys, sql, expected):
    assert _query(private_warehouse, sql.format(warehouse=private_warehouse), "--format", "json") == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    if expected is None:
        assert rows[0]["n"] > 0
    else:
        assert rows == expected


def test_explain_of_a_select_still_works(private_warehouse, capsys):
    assert _query(private_warehouse, "EXPLAIN SELECT * FROM current_articles") == 0
    assert "physical_plan" in capsys.readouterr().out


def test_parquet_output_is_written_by_rexdrug_not_by_sql(private_warehouse, tmp_path):
    out = tmp_path / "elsewhere" / "result.parquet"  # outside the warehouse: our writer, not COPY
    assert _query(private_warehouse, SQL, "--format", "parquet", "--output", str(out)) == 0
    assert pq.read_table(out).num_rows == 5


@pytest.mark.parametrize("name", ["o'brien", "with space"])  # glob characters: issue 11 class 4 (views)
def test_sandbox_allows_the_warehouse_by_any_name_and_through_a_symlink(tmp_path, capsys, name):
    warehouse = _build_warehouse(tmp_path / name)
    link = tmp_path / "link"
    link.symlink_to(warehouse, target_is_directory=True)
    for root in (warehouse, link):
        assert _query(root, "SELECT count(*) AS n FROM current_article_versions", "--format", "json") == 0
        assert json.loads(capsys.readouterr().out) == {"n": 5}


def test_sandbox_reads_views_with_paths_relative_to_the_warehouse(tmp_path, monkeypatch):
    """Views over ``articles/*.parquet`` found through ``file_search_path`` (a copied or moved warehouse
    reads its own files): DuckDB checks such a path against the working directory, so the sandbox runs
    the query from inside the warehouse folder, and puts the working directory back afterwards."""
    import os

    import duckdb

    from jobs.cli.query import sandboxed

    root = tmp_path / "wh"
    (root / "articles").mkdir(parents=True)
    (tmp_path / "secret.txt").write_text("sk-relative-do-not-leak\n")
    monkeypatch.chdir(root)
    with duckdb.connect(str(root / "views.duckdb")) as con:
        con.execute("COPY (SELECT 7 AS pmid) TO 'articles/part-0.parquet' (FORMAT parquet)")
        con.execute("CREATE VIEW current_articles AS SELECT * FROM read_parquet('articles/*.parquet')")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    con = duckdb.connect(str(root / "views.duckdb"), read_only=True, config={"file_search_path": str(root)})
    try:
        with sandboxed(con, root):
            assert con.sql("SELECT pmid FROM current_articles").fetchall() == [(7,)]
            for escape in ("../secret.txt", "articles/../../secret.txt", str(tmp_path / "secret.txt")):
                with pytest.raises(duckdb.PermissionException):
                    con.sql(f"SELECT * FROM read_text('{escape}')").fetchall()
        assert os.getcwd() == str(elsewhere)
    finally:
        con.close()
