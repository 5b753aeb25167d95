"""The ingest Spark job end to end on the shared local SparkSession (few, small runs: Spark is slow here)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pytest

from etl.pubmed.envelope import envelope_tables, parse_file_envelope
from etl.warehouse import (
    ARTICLE_TABLES,
    WarehouseLayout,
    connect_readonly,
    read_ledger,
)
from jobs import ingest as ingest_job
from jobs.ingest import nlm_file_order, resolve_inputs, run_ingest

pytestmark = pytest.mark.spark

DATA = Path(__file__).resolve().parent / "data" / "warehouse"
INPUTS = [DATA / "real", DATA / "bad", DATA / "nlm"]
PUBMED_DATA = Path(__file__).resolve().parent / "data" / "pubmed"
SORT_KEYS = {
    "articles": ["source_file", "record_position"],
    "deletions": ["source_file", "record_position"],
    "ingest_errors": ["source_file", "reason"],
    "ingest_ledger": ["source_file"],
}


def warehouse_tables(root: Path) -> dict[str, pa.Table]:
    """Every dataset of the warehouse, read through its DuckDB view, sorted."""
    with connect_readonly(root) as con:
        return {
            spec.name: con.sql(f"SELECT * FROM {spec.name}")
            .to_arrow_table()
            .sort_by([(k, "ascending") for k in SORT_KEYS[spec.name]])
            for spec in ARTICLE_TABLES
        }


def without(table: pa.Table, *columns: str) -> pa.Table:
    return table.drop_columns([c for c in columns if c in table.column_names])


def pure_tables(paths: list[Path], root: Path) -> dict[str, pa.Table]:
    """What the job must produce, computed without Spark by the same per-file stage."""
    layout = WarehouseLayout(root)
    parts: dict[str, list[pa.Table]] = {"articles": [], "deletions": [], "errors": []}
    for item in resolve_inputs(paths, layout):
        tables = envelope_tables(parse_file_envelope(str(item.path), item.source_file, item.file_order, 0))
        for name, collected in parts.items():
            collected.append(tables[name])
    return {name: pa.concat_tables(tables) for name, tables in parts.items()}


def assert_matches_pure_stage(tables: dict[str, pa.Table], inputs: list[Path], tmp_path: Path) -> dict:
    """Whole tables equal the pure per-file stage's output (Spark adds nothing, loses nothing)."""
    expected = pure_tables(inputs, tmp_path)
    for name, view in (("articles", "articles"), ("deletions", "deletions"), ("errors", "ingest_errors")):
        want = expected[name].sort_by([(k, "ascending") for k in SORT_KEYS[view]])
        assert without(tables[view], "ingested_at").to_pylist() == without(want, "ingested_at").to_pylist(), (
            name
        )
    return expected


def test_ingest_is_complete_idempotent_and_tolerant(spark, tmp_path):
    root = tmp_path / "wh"
    summary = run_ingest(spark, INPUTS, root, run_id="run-1", show_progress=False)
    assert (summary.files, summary.ingested, summary.skipped) == (7, 7, 0)
    assert summary.files_with_errors == ["malformed.xml", "pubmed20n1016_truncated.xml.gz"]
    assert summary.incomplete_files == ["malformed.xml", "pubmed20n1016_truncated.xml.gz"]
    first = warehouse_tables(root)

    expected = assert_matches_pure_stage(first, INPUTS, tmp_path)
    assert (summary.articles, summary.deletions, summary.errors) == (
        expected["articles"].num_rows,
        expected["deletions"].num_rows,
        expected["errors"].num_rows,
    )
    ledger = first["ingest_ledger"]
    assert set(ledger["run_id"].to_pylist()) == {"run-1"}
    assert len(set(first["articles"]["ingested_at"].to_pylist() + ledger["ingested_at"].to_pylist())) == 1
    by_file = {row["source_file"]: row for row in ledger.to_pylist()}
    assert by_file["pubmed20n1016.xml"]["source_kind"] == "update"
    assert by_file["pubmed99n0001.xml"]["source_kind"] == "baseline"
    assert by_file["malformed.xml"]["complete"] is False and by_file["malformed.xml"]["n_articles"] == 2
    assert (
        by_file["pubmed20n1016.xml"]["complete"] is True
        and by_file["pubmed20n1016.xml"]["n_deletions"] == 218
    )
    # the good records around the broken one survive; the broken one is an error row with its PMID
    assert {"200001", "200003"} <= set(first["articles"]["pmid"].to_pylist())
    assert "200002" in first["ingest_errors"]["pmid"].to_pylist()
    # baseline before updates, updates in file order
    assert (
        by_file["pubmed99n0001.xml"]["file_order"]
        < by_file["pubmed99n0002.xml"]["file_order"]
        < by_file["pubmed99n0003.xml"]["file_order"]
    )

    # Same input again: everything skipped, tables byte-for-byte the same.
    again = run_ingest(spark, INPUTS, root, run_id="run-2", show_progress=False)
    assert (again.ingested, again.skipped) == (0, 7)
    assert warehouse_tables(root) == first

    # Forced: everything rewritten in place, nothing duplicated; only the ingest time/run id differ.
    forced = run_ingest(spark, INPUTS, root, run_id="run-3", force=True, show_progress=False)
    assert forced.ingested == 7
    third = warehouse_tables(root)
    for name in first:
        assert without(third[name], "ingested_at", "run_id") == without(
            first[name], "ingested_at", "run_id"
        ), name


def test_reingesting_a_changed_file_replaces_its_rows(spark, tmp_path, caplog):
    src = tmp_path / "in"
    shutil.copytree(DATA / "nlm", src)
    root = tmp_path / "wh"
    run_ingest(spark, [src], root, show_progress=False)
    with connect_readonly(root) as con:
        assert con.sql("SELECT pmid FROM current_articles WHERE pmid = '100004'").fetchall() == []

    # Update file 0002 changes: no deletion block any more, a title revised, one record dropped.
    changed = src / "updatefiles" / "pubmed99n0002.xml"
    text = changed.read_text()
    text = text[: text.index("<DeleteCitation>")] + "</PubmedArticleSet>\n"
    text = text.replace("Alpha revised", "Alpha revised twice")
    changed.write_text(text)
    summary = run_ingest(spark, [src], root, run_id="rerun", show_progress=False)
    assert (summary.ingested, summary.skipped) == (1, 2)
    assert (summary.articles, summary.deletions) == (4, 0)
    tables = warehouse_tables(root)
    titles = [r["title"] for r in tables["articles"].to_pylist() if r["source_file"] == "pubmed99n0002.xml"]
    assert titles == ["Alpha revised twice", "Beta v2", "Epsilon first", "Epsilon second"]
    assert "pubmed99n0002.xml" not in tables["deletions"]["source_file"].to_pylist()  # old partition gone
    assert tables["articles"].num_rows == 4 + 4 + 2
    with connect_readonly(root) as con:
        current = con.sql(
            "SELECT pmid, title FROM current_articles WHERE pmid IN ('100001', '100004')"
        ).fetchall()
    assert sorted(current) == [("100001", "Alpha revised twice"), ("100004", "Delta")]  # deletion withdrawn

    # The CLI on the same warehouse: a bad file makes exit code 1, summary JSON on stdout.
    from jobs.cli import main

    shutil.copy(DATA / "bad" / "malformed.xml", src / "malformed.xml")
    import io
    import sys

    out = io.StringIO()
    real_stdout, sys.stdout = sys.stdout, out
    try:
        code = main(["ingest", "--input", str(src), "--warehouse", str(root), "--no-progress"])
    finally:
        sys.stdout = real_stdout
    report = json.loads(out.getvalue())
    assert code == 1
    assert (report["ingested"], report["skipped"], report["errors"]) == (1, 3, 1)
    assert report["files_with_errors"] == ["malformed.xml"]


def test_an_interrupted_run_is_redone_by_the_next_one(spark, tmp_path, monkeypatch):
    """Killed after Spark wrote but before the ledger was updated: the files are not marked done, so
    the next run ingests them again and the warehouse ends up as after one clean run."""
    root = tmp_path / "wh"
    (root / "articles" / ".spark-staging-dead").mkdir(parents=True)  # what a killed job leaves

    def crash(*_args, **_kwargs):
        raise KeyboardInterrupt("simulated kill")

    monkeypatch.setattr(ingest_job, "remove_empty_partitions", crash)
    with pytest.raises(KeyboardInterrupt):
        run_ingest(spark, [DATA / "nlm"], root, run_id="r", show_progress=False)
    assert read_ledger(WarehouseLayout(root)).num_rows == 0  # nothing marked done
    monkeypatch.undo()

    summary = run_ingest(spark, [DATA / "nlm"], root, run_id="r", show_progress=False)
    assert (summary.ingested, summary.skipped) == (3, 0)
    assert not (root / "articles" / ".spark-staging-dead").exists()
    tables = warehouse_tables(root)
    assert_matches_pure_stage(tables, [DATA / "nlm"], tmp_path)
    assert tables["ingest_ledger"]["source_file"].to_pylist() == [f"pubmed99n000{i}.xml" for i in (1, 2, 3)]


def test_file_order_follows_nlm_load_order():
    layout = WarehouseLayout("/nonexistent-warehouse")
    files = resolve_inputs([DATA / "nlm"], layout)
    assert [f.source_file for f in files] == ["pubmed99n0001.xml", "pubmed99n0002.xml", "pubmed99n0003.xml"]
    assert [f.source_kind for f in files] == ["baseline", "update", "update"]
    assert nlm_file_order("pubmed99n0001.xml", "baseline") < nlm_file_order("pubmed99n0002.xml", "update")


def test_entrez_sweep_lands_then_ingests(spark, tmp_path, capsys):
    """`rexdrug ingest --source entrez` against the local fake NCBI: files land under raw/entrez/,
    are ingested as kind "entrez"; the same command again fetches and ingests nothing new."""
    import datetime as dt

    from jobs.cli import main
    from tests.fakes.ncbi_server import FakeNcbi, articles_from_efetch_file

    start = dt.date(2024, 1, 1)
    server = FakeNcbi()
    server.state.articles = articles_from_efetch_file(
        Path(__file__).resolve().parent / "data" / "pubmed" / "nlm" / "pubmed22n1115.xml.gz", start, per_day=2
    )
    server.start()
    try:
        root = tmp_path / "wh"
        argv = [
            "ingest",
            "--source",
            "entrez",
            "--since",
            "2024-01-01",
            "--until",
            "2024-01-07",
            "--warehouse",
            str(root),
            "--no-progress",
            "--set",
            f"base_url={server.eutils_base_url}",
            "--set",
            "email=rexdrug-tests@example.org",
            "--set",
            "batch_size=5",
            "--set",
            "api_key=test-key",
            "--set",
            "rate_per_s=10",
            "--set",
            "backoff_base_s=0.001",
        ]
        assert main(argv) == 0
        first = json.loads(capsys.readouterr().out)
        efetches = len(server.requests_to("efetch.fcgi"))
        assert main(argv) == 0
        second = json.loads(capsys.readouterr().out)
        assert len(server.requests_to("efetch.fcgi")) == efetches  # nothing fetched again
    finally:
        server.stop()
    # 7 days x 2 records by entry date; their mdat lies 30 days later in the fake, outside the window
    assert first["articles"] == 14 and first["errors"] == 0 and first["ingested"] == first["files"] >= 3
    assert (second["ingested"], second["skipped"]) == (0, first["files"])
    ledger = read_ledger(WarehouseLayout(root))
    assert set(ledger["source_kind"].to_pylist()) == {"entrez"}
    assert all(name.startswith("entrez/edat/") for name in ledger["source_file"].to_pylist())
    with connect_readonly(root) as con:
        assert con.sql("SELECT count(DISTINCT pmid) FROM current_articles").fetchall() == [(14,)]


@pytest.mark.slow
def test_kill_9_during_the_spark_write_then_rerun_converges(spark, tmp_path):
    """A real `kill -9` of a running `rexdrug ingest` (driver and its JVM), then a normal run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    root = tmp_path / "wh"
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobs", "ingest", "--input", str(DATA / "nlm"), str(DATA / "real"),
         "--warehouse", str(root), "--no-progress"],
        cwd=Path(__file__).resolve().parents[1], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the JVM dies with it
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while not (root / "articles").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # the first write job has started
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    summary = run_ingest(spark, [DATA / "nlm", DATA / "real"], root, show_progress=False)
    assert (summary.files, summary.ingested) == (5, 5)  # killed mid-write: nothing was marked done
    tables = warehouse_tables(root)
    assert_matches_pure_stage(tables, [DATA / "nlm", DATA / "real"], tmp_path)
    assert tables["ingest_ledger"].num_rows == 5


def test_two_different_files_of_the_same_name_never_replace_each_other(spark, tmp_path, caplog):
    """Issue 11, class 1: two exports both called pubmed_result.xml, from two folders."""
    first, second = tmp_path / "monday" / "pubmed_result.xml", tmp_path / "tuesday" / "pubmed_result.xml"
    for source, target in (
        (DATA / "real" / "pubmed1.xml", first),
        (PUBMED_DATA / "efetch" / "pubmed6.xml", second),
    ):
        target.parent.mkdir(parents=True)
        shutil.copy(source, target)
    expected = {
        path: {r["pmid"] for r in pure_tables([path], tmp_path)["articles"].to_pylist()}
        for path in (first, second)
    }
    assert expected[first] and expected[second] and not expected[first] & expected[second]
    root = tmp_path / "wh"
    one = run_ingest(spark, [first], root, run_id="monday", show_progress=False)
    two = run_ingest(spark, [second], root, run_id="tuesday", show_progress=False)
    assert (one.ingested, two.ingested, two.skipped) == (1, 1, 0)
    tables = warehouse_tables(root)
    assert set(tables["articles"]["pmid"].to_pylist()) == expected[first] | expected[second]  # both kept
    assert tables["ingest_ledger"]["source_file"].to_pylist() == ["pubmed_result.xml", "pubmed_result.xml"]
    assert sorted(tables["ingest_ledger"]["run_id"].to_pylist()) == ["monday", "tuesday"]

    # the same files again, from their folders or from a copy elsewhere: nothing to do, nothing changed
    copy = tmp_path / "copy" / "pubmed_result.xml"
    copy.parent.mkdir()
    shutil.copy(first, copy)
    again = run_ingest(spark, [first.parent, second.parent, copy], root, show_progress=False)
    assert (again.files, again.ingested, again.skipped) == (2, 0, 2)
    assert warehouse_tables(root) == tables

    # an NLM file is identified by its name: a changed content replaces it, with a warning naming both digests
    nlm = tmp_path / "updatefiles" / "pubmed99n0002.xml"
    nlm.parent.mkdir()
    shutil.copy(DATA / "nlm" / "updatefiles" / "pubmed99n0002.xml", nlm)
    run_ingest(spark, [nlm], root, show_progress=False)
    old_digest = ingest_job.sha256_file(nlm)
    nlm.write_text(nlm.read_text().replace("Alpha revised", "Alpha revised again"))
    caplog.clear()
    with caplog.at_level("WARNING", logger="jobs.ingest"):
        replaced = run_ingest(spark, [nlm], root, show_progress=False)
    assert replaced.ingested == 1
    assert (
        old_digest in caplog.text
        and ingest_job.sha256_file(nlm) in caplog.text
        and "content changed" in caplog.text
    )
    titles = [
        r["title"] for r in warehouse_tables(root)["articles"].to_pylist() if r["source_file"] == nlm.name
    ]
    assert "Alpha revised again" in titles and "Alpha revised" not in titles  # replaced, not duplicated
