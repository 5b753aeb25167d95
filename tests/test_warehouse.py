"""The DuckDB side of the warehouse and the pure per-file ingest stage (no Spark here)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from etl.warehouse import (
    ARTICLE_TABLES,
    ARTICLE_VIEWS,
    FLAT_GLOB,
    TableSpec,
    ViewSpec,
    WarehouseLayout,
    connect_readonly,
    envelope_tables,
    file_key,
    ledger_upsert,
    ledger_without,
    parse_file_envelope,
    read_ledger,
    refresh_duckdb,
    write_file_partitions,
    write_parquet_atomic,
)
from schemas.articles import ARTICLES, DELETIONS, INGEST_ERRORS, INGEST_LEDGER

DATA = Path(__file__).resolve().parent / "data" / "warehouse"
NLM_FILES = [  # hand-made NLM series, in load order (see data/warehouse/README.md)
    (DATA / "nlm" / "baseline" / "pubmed99n0001.xml", 1),
    (DATA / "nlm" / "updatefiles" / "pubmed99n0002.xml", 2),
    (DATA / "nlm" / "updatefiles" / "pubmed99n0003.xml", 3),
]
T0 = 1_700_000_000_000_000  # an ingest time, microseconds


def parse(path: Path, file_order: int = 1) -> dict[str, pa.Table]:
    return envelope_tables(parse_file_envelope(str(path), path.name, file_order, T0))


def load_without_spark(root: Path, files: list[tuple[Path, int]]) -> WarehouseLayout:
    """Write each file's rows where the Spark job puts them (one partition per source file)."""
    layout = WarehouseLayout(root)
    for path, order in files:
        write_file_partitions(layout, path.name, parse(path, order))
    refresh_duckdb(root)
    return layout


def query(root: Path, sql: str) -> list[tuple]:
    with connect_readonly(root) as con:
        return con.sql(sql).fetchall()


# --- the per-file stage --------------------------------------------------------------------------------


def test_envelope_fills_load_fields_and_summary():
    tables = parse(DATA / "real" / "updatefiles" / "pubmed20n1016.xml", file_order=7)
    assert tables["articles"].schema == ARTICLES
    assert tables["deletions"].schema == DELETIONS
    assert (tables["articles"].num_rows, tables["deletions"].num_rows, tables["errors"].num_rows) == (
        10,
        218,
        0,
    )
    assert set(tables["articles"]["file_order"].to_pylist()) == {7}
    assert set(tables["deletions"]["file_order"].to_pylist()) == {7}
    assert {t.timestamp() for t in tables["articles"]["ingested_at"].to_pylist()} == {T0 / 1e6}
    assert tables["files"].to_pylist() == [
        {
            "source_file": "pubmed20n1016.xml",
            "n_articles": 10,
            "n_deletions": 218,
            "n_errors": 0,
            "complete": True,
        }
    ]


def test_envelope_of_a_missing_file_is_one_error_row_not_an_exception():
    tables = envelope_tables(parse_file_envelope("/nonexistent/pubmed.xml", "pubmed.xml", 1, T0))
    assert tables["articles"].num_rows == 0
    (error,) = tables["errors"].to_pylist()
    assert (
        error["source_file"] == "pubmed.xml" and error["stage"] == "read" and error["record_position"] is None
    )
    assert tables["errors"].schema == INGEST_ERRORS
    assert tables["files"]["complete"].to_pylist() == [False]


def test_truncated_gzip_keeps_the_records_before_the_fault():
    full = parse(DATA / "real" / "updatefiles" / "pubmed20n1016.xml")["articles"]
    cut = parse(DATA / "bad" / "pubmed20n1016_truncated.xml.gz")
    kept = cut["articles"]
    assert 0 < kept.num_rows < full.num_rows
    columns = ["pmid", "pmid_version", "title", "abstract", "record_position"]
    assert kept.select(columns).to_pylist() == full.slice(0, kept.num_rows).select(columns).to_pylist()
    (error,) = cut["errors"].to_pylist()
    assert error["stage"] == "read" and error["records_before_fault"] == kept.num_rows
    assert cut["files"]["complete"].to_pylist() == [False]


def test_file_key_is_safe_and_distinct():
    names = [
        "pubmed20n1016.xml",
        "entrez/2024-01-01/edat: a=b.xml",
        "entrez/2024-01-01/edat_ a_b.xml",
        "é/ü.xml",
    ]
    keys = [file_key(n) for n in names]
    assert len(set(keys)) == len(keys)
    for key in keys:
        assert key.isascii() and "/" not in key and "=" not in key and ":" not in key and " " not in key
    assert keys[0].startswith("pubmed20n1016.xml-")


# --- DuckDB views --------------------------------------------------------------------------------------


def test_current_articles_applies_nlm_rules(tmp_path):
    load_without_spark(tmp_path, NLM_FILES)
    current = query(
        tmp_path, "SELECT pmid, pmid_version, title, source_file FROM current_article_versions ORDER BY ALL"
    )
    assert current == [
        ("100001", 1, "Alpha revised", "pubmed99n0002.xml"),  # a later record replaces the baseline one
        ("100002", 1, "Beta v1", "pubmed99n0001.xml"),  # versions are distinct records
        ("100002", 2, "Beta v2", "pubmed99n0002.xml"),
        ("100003", 1, "Gamma re-added", "pubmed99n0003.xml"),  # re-added after its deletion: back
        ("100006", 1, "Zeta added after the deletion block", "pubmed99n0003.xml"),
        # 100004 deleted in 0002; 100005 (two copies in 0002, the second would win) deleted in 0003
    ]
    latest = query(tmp_path, "SELECT pmid, pmid_version FROM current_articles ORDER BY ALL")
    assert latest == [("100001", 1), ("100002", 2), ("100003", 1), ("100006", 1)]
    # history is kept: every record of every file stays in `articles`
    assert query(tmp_path, "SELECT count(*) FROM articles") == [(10,)]


def test_later_duplicate_in_the_same_file_wins(tmp_path):
    load_without_spark(tmp_path, NLM_FILES[:2])  # before 0003 deletes 100005
    rows = query(tmp_path, "SELECT title FROM current_articles WHERE pmid = '100005'")
    assert rows == [("Epsilon second",)]
    assert query(tmp_path, "SELECT pmid FROM current_articles WHERE pmid IN ('100003', '100004')") == []


def test_load_order_not_file_name_decides(tmp_path):
    # The same files with the order of the two updates swapped: now 0002 comes last, so its deletion
    # of 100003 follows the re-add, and its 100005 copy follows the deletion in 0003.
    files = [NLM_FILES[0], (NLM_FILES[1][0], 3), (NLM_FILES[2][0], 2)]
    load_without_spark(tmp_path, files)
    pmids = [r[0] for r in query(tmp_path, "SELECT DISTINCT pmid FROM current_articles ORDER BY 1")]
    assert pmids == ["100001", "100002", "100005", "100006"]


def test_empty_warehouse_gives_empty_views_with_the_schema_columns(tmp_path):
    refresh_duckdb(tmp_path)
    with connect_readonly(tmp_path) as con:
        for spec in ARTICLE_TABLES:
            described = con.sql(f"DESCRIBE {spec.name}").fetchall()
            assert [row[0] for row in described] == spec.schema.names
            assert con.execute(f"SELECT count(*) FROM {spec.name}").fetchall() == [(0,)]
        for view in ARTICLE_VIEWS:
            assert con.execute(f"SELECT count(*) FROM {view.name}").fetchall() == [(0,)]
        types = dict(con.sql("SELECT column_name, column_type FROM (DESCRIBE articles)").fetchall())
    assert types["pmid_version"] == "INTEGER"
    assert types["ingested_at"] == "TIMESTAMP WITH TIME ZONE"
    assert types["languages"] == "VARCHAR[]"
    assert types["abstract_sections"] == 'STRUCT("label" VARCHAR, nlm_category VARCHAR, "text" VARCHAR)[]'


def test_views_have_the_declared_types_once_data_exists(tmp_path):
    load_without_spark(tmp_path, NLM_FILES[:1])
    with connect_readonly(tmp_path) as con:
        table = con.sql("SELECT * FROM articles").to_arrow_table()
    assert table.schema.names == ARTICLES.names
    for field in ARTICLES:
        got = table.schema.field(field.name).type
        if pa.types.is_timestamp(field.type):  # DuckDB names the zone as the machine does (UTC, Etc/UTC)
            assert pa.types.is_timestamp(got) and got.unit == field.type.unit and got.tz, field.name
        else:
            assert got == field.type, field.name


def test_spark_leftovers_and_temp_files_are_never_read(tmp_path):
    layout = load_without_spark(tmp_path, NLM_FILES[:1])
    stray = parse(NLM_FILES[1][0])["articles"]
    staging = layout.articles / ".spark-staging-0" / f"file_key={file_key('x.xml')}" / "part-0.parquet"
    temporary = layout.articles / "_temporary" / "0" / f"file_key={file_key('y.xml')}" / "part-0.parquet"
    for path in (staging, temporary):
        path.parent.mkdir(parents=True)
        pq.write_table(stray, path)
    refresh_duckdb(tmp_path)
    assert query(tmp_path, "SELECT count(*) FROM articles") == [(4,)]


def test_refresh_is_atomic_and_a_failed_refresh_keeps_the_old_database(tmp_path):
    load_without_spark(tmp_path, NLM_FILES[:1])
    layout = WarehouseLayout(tmp_path)
    before = layout.duckdb.read_bytes()
    reader = connect_readonly(tmp_path)  # a reader holding the old database open
    with pytest.raises(duckdb.Error):
        refresh_duckdb(
            tmp_path, ARTICLE_TABLES, (*ARTICLE_VIEWS, ViewSpec("broken", "SELECT nope FROM articles"))
        )
    assert layout.duckdb.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left behind
    refresh_duckdb(tmp_path)  # renamed over the file the reader has open
    assert reader.execute("SELECT count(*) FROM current_articles").fetchall() == [(4,)]
    reader.close()


def test_refresh_is_general_for_other_datasets(tmp_path):
    """What the sweep does: its own flat or partitioned datasets and views, beside the article ones."""
    schema = pa.schema([pa.field("pmid", pa.string()), pa.field("drugs", pa.list_(pa.string()))])
    spec = TableSpec("combinations", "combinations", schema, glob=FLAT_GLOB)
    (tmp_path / "combinations").mkdir()
    pq.write_table(
        pa.table({"pmid": ["100001"], "drugs": [["cisplatin", "paclitaxel"]], "extra": [1]}),
        tmp_path / "combinations" / "a.parquet",
    )
    load_without_spark(tmp_path, NLM_FILES)
    view = ViewSpec(
        "current_combinations",
        "SELECT c.* FROM combinations c JOIN current_articles a USING (pmid)",
    )
    refresh_duckdb(tmp_path, (*ARTICLE_TABLES, spec), (*ARTICLE_VIEWS, view))
    assert query(tmp_path, "SELECT * FROM current_combinations") == [("100001", ["cisplatin", "paclitaxel"])]
    with pytest.raises(ValueError, match="duplicate"):
        refresh_duckdb(tmp_path, (*ARTICLE_TABLES, spec, spec), ARTICLE_VIEWS)


def test_ledger_upsert_replaces_rows_of_the_same_file(tmp_path):
    layout = WarehouseLayout(tmp_path)
    assert read_ledger(layout).num_rows == 0

    def row(name, sha, n):
        return {
            "source_file": name,
            "source_kind": "update",
            "file_order": 1,
            "content_sha256": sha,
            "n_articles": n,
            "n_deletions": 0,
            "n_errors": 0,
            "complete": True,
            "run_id": "r",
            "ingested_at": None,
        }

    first = pa.Table.from_pylist([row("b.xml", "1", 1), row("a.xml", "1", 2)], schema=INGEST_LEDGER)
    write_parquet_atomic(ledger_upsert(read_ledger(layout), first), layout.ledger)
    second = pa.Table.from_pylist([row("b.xml", "2", 5)], schema=INGEST_LEDGER)
    write_parquet_atomic(ledger_upsert(read_ledger(layout), second), layout.ledger)
    ledger = read_ledger(layout)
    assert ledger.select(["source_file", "content_sha256", "n_articles"]).to_pylist() == [
        {"source_file": "a.xml", "content_sha256": "1", "n_articles": 2},
        {"source_file": "b.xml", "content_sha256": "2", "n_articles": 5},
    ]
    assert ledger_without(ledger, ["a.xml"])["source_file"].to_pylist() == ["b.xml"]


def test_exclusive_lock_refuses_a_second_holder_and_is_released(tmp_path):
    from etl.warehouse import exclusive_lock

    lock = tmp_path / "wh" / ".lock"
    with exclusive_lock(lock, "busy"):
        with pytest.raises(ValueError, match="busy"):
            with exclusive_lock(lock, "busy"):
                pass
    with exclusive_lock(lock, "busy"):  # released after the block
        pass
