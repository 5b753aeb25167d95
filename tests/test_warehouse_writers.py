"""Every writing command (ingest, sweep, kb build) against one warehouse: the catalog survives each of
them, they exclude each other, and odd, copied or moved warehouse paths give the same answers.

Real Spark runs with the fast rule engine, real processes for the lock, real files throughout.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from etl.config import load_config
from etl.warehouse import connect_readonly
from jobs.ingest import run_ingest
from jobs.sweep import SweepConfig, run_sweep
from tests.processes import wait_for_pause

pytestmark = pytest.mark.spark

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SWEEP_DATA = TESTS / "data" / "sweep"
BASELINE = SWEEP_DATA / "baseline"
UPDATE = SWEEP_DATA / "updatefiles" / "pubmed99n0002.xml"
ENGINE = "rule_all_drugs"
# What a sweep adds to the warehouse database (written out by hand: the catalog must not drop any).
SWEEP_RELATIONS = (
    "sentences", "extractions", "combinations", "combination_drugs", "extraction_errors", "sweep_runs",
    "combination_kb", "current_sentences", "current_extractions", "current_combinations",
    "current_combination_drugs",
)  # fmt: skip
ARTICLE_RELATIONS = ("articles", "deletions", "ingest_errors", "ingest_ledger", "current_article_versions",
                     "current_articles")  # fmt: skip


def sweep_config(warehouse: Path, *inputs: Path, **extra: str) -> SweepConfig:
    overrides = [f"warehouse={warehouse}", "source=files", f"inputs={json.dumps([str(p) for p in inputs])}",
                 f"engine.kind={ENGINE}", *(f"{k}={v}" for k, v in extra.items())]  # fmt: skip
    return load_config(SweepConfig, None, overrides)


def counts(warehouse: Path, relations=SWEEP_RELATIONS + ARTICLE_RELATIONS) -> dict[str, int]:
    with connect_readonly(warehouse) as con:
        return {name: con.execute(f"SELECT count(*) FROM {name}").fetchone()[0] for name in relations}


def try_writer_lock(root: Path) -> subprocess.CompletedProcess:
    """Another process tries the warehouse's writer lock (exit 3 and the holder's name when busy)."""
    code = (
        "import sys\n"
        "from etl.warehouse import WarehouseBusy, WarehouseLayout, writer_lock\n"
        "try:\n"
        f"    with writer_lock(WarehouseLayout({str(root)!r}), 'probe'):\n"
        "        pass\n"
        "except WarehouseBusy as exc:\n"
        "    print(exc); sys.exit(3)\n"
    )
    return subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120,
                          cwd=REPO)  # fmt: skip


@pytest.fixture(scope="module")
def swept(spark, tmp_path_factory) -> dict:
    """One sweep of the baseline file (KB included) on a plain path; what it did along the way."""
    import etl.kb
    import etl.warehouse

    warehouse = tmp_path_factory.mktemp("swept") / "plain"
    refreshes, lock_seen_by_others = [], []
    real_refresh, real_build_kb = etl.warehouse.refresh_duckdb, etl.kb.build_kb

    def counting_refresh(*args, **kwargs):
        refreshes.append(args)
        return real_refresh(*args, **kwargs)

    def build_kb_watching_the_lock(*args, **kwargs):
        lock_seen_by_others.append(try_writer_lock(warehouse))
        return real_build_kb(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(etl.warehouse, "refresh_duckdb", counting_refresh)
        patch.setattr(etl.kb, "build_kb", build_kb_watching_the_lock)
        summary = run_sweep(sweep_config(warehouse, BASELINE), spark=spark)
    return {"warehouse": warehouse, "summary": summary, "refreshes": len(refreshes),
            "lock_seen_by_others": lock_seen_by_others, "counts": counts(warehouse)}  # fmt: skip


def test_a_sweep_builds_its_kb_under_its_lock_and_refreshes_twice(swept):
    summary, found = swept["summary"], swept["counts"]
    assert summary.n_extracted > 0 and summary.kb_drug_sets == found["combination_kb"] > 0
    assert "kb" in summary.stage_seconds
    (probe,) = swept["lock_seen_by_others"]  # the KB step ran once, and the lock was held meanwhile
    assert probe.returncode == 3 and "rexdrug sweep" in probe.stdout, probe.stdout + probe.stderr
    assert swept["refreshes"] == 2  # after the ingest, after the commit and the KB (was 5)


def test_ingest_after_a_sweep_keeps_every_sweep_view(spark, swept, tmp_path):
    """Issue 12's bug: `ingest` rebuilt the database with the article views only."""
    warehouse = tmp_path / "wh"
    shutil.copytree(swept["warehouse"], warehouse)
    before = swept["counts"]
    assert before["extractions"] > 0 and before["combination_kb"] > 0

    summary = run_ingest(spark, [UPDATE], warehouse, show_progress=False)  # another file, no sweep
    assert summary.ingested == 1
    after = counts(warehouse)  # every relation still answers (a missing one raises CatalogException)
    for name in (
        "sentences",
        "extractions",
        "combinations",
        "combination_drugs",
        "sweep_runs",
        "combination_kb",
    ):
        assert after[name] == before[name], name  # history untouched by an ingest
    # the update deletes an article of the baseline: its combinations drop out of the current views
    assert after["articles"] > before["articles"]
    assert 0 < after["current_combinations"] < before["current_combinations"]


def test_odd_warehouse_paths_give_the_same_sweep_as_a_plain_one(spark, swept, tmp_path):
    """Issue 11, class 4: ingest + sweep + KB on a warehouse `o'brien/wh[1]/wh*`, with the siblings a
    glob would read instead or as well: `wh[1]` matches `wh1`, `wh*` matches `wh2` (one sweep, three
    characters: a quote that broke the SQL, a character class, a wildcard)."""
    parent = tmp_path / "o'brien"
    shutil.copytree(swept["warehouse"], parent / "wh1" / "wh*")  # what `wh[1]` would read instead
    shutil.copytree(swept["warehouse"], parent / "wh[1]" / "wh2")  # what `wh*` would mix in
    warehouse = parent / "wh[1]" / "wh*"
    summary = run_sweep(sweep_config(warehouse, BASELINE), spark=spark)
    assert summary.n_articles == swept["summary"].n_articles > 0
    assert summary.kb_drug_sets == swept["summary"].kb_drug_sets
    assert counts(warehouse) == swept["counts"]


def test_a_copied_swept_warehouse_answers_alone(swept, tmp_path, capsys):
    """Issue 11, class 5: copy a warehouse, delete the one it was copied from, query the copy."""
    from jobs.cli import main
    from jobs.kb import build_and_store_kb

    original = tmp_path / "original"
    shutil.copytree(swept["warehouse"], original)
    build_and_store_kb(original)  # the original's database built where it stands
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(original, copy)
    shutil.rmtree(original)
    assert counts(copy) == swept["counts"]
    sql = "SELECT count(*) AS n FROM current_combinations"
    assert main(["query", "--warehouse", str(copy), sql, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"n": swept["counts"]["current_combinations"]}


def test_ingest_and_kb_build_during_a_sweep_fail_clearly_and_change_nothing(swept, tmp_path, caplog):
    """Issue 11, class 6: a real sweep process, paused in its extract stage, holds the writer lock."""
    from jobs.cli import EXIT_BUSY, main

    warehouse = tmp_path / "wh"
    shutil.copytree(swept["warehouse"], warehouse)
    marker = tmp_path / "paused"
    env = {**os.environ, "REXDRUG_PAUSE_AT_STAGE": "extract", "REXDRUG_PAUSE_MARKER": str(marker)}
    cmd = [sys.executable, "-m", "jobs", "sweep", "--warehouse", str(warehouse), "--input", str(BASELINE),
           str(UPDATE.parent), "--engine", ENGINE, "--master", "local[1]"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)  # fmt: skip
    try:
        wait_for_pause(proc, marker, timeout_s=300)
        database = (warehouse / "warehouse.duckdb").read_bytes()
        kb = (warehouse / "combination_kb" / "kb.parquet").read_bytes()
        during = counts(warehouse, ARTICLE_RELATIONS)  # the sweep's own ingest is done by now
        caplog.clear()
        other = tmp_path / "other" / "pubmed99n0003.xml"
        other.parent.mkdir()
        shutil.copy(TESTS / "data" / "warehouse" / "nlm" / "updatefiles" / "pubmed99n0003.xml", other)
        assert (
            main(["ingest", "--input", str(other), "--warehouse", str(warehouse), "--no-progress"])
            == EXIT_BUSY
        )
        assert main(["kb", "build", "--warehouse", str(warehouse)]) == EXIT_BUSY
        assert caplog.text.count("held by `rexdrug sweep`") == 2, caplog.text
        assert (warehouse / "warehouse.duckdb").read_bytes() == database  # nothing pulled from under it
        assert (warehouse / "combination_kb" / "kb.parquet").read_bytes() == kb
        assert "pubmed99n0003.xml" not in {
            r[0] for r in query_all(warehouse, "SELECT source_file FROM ingest_ledger")
        }
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert counts(warehouse, ARTICLE_RELATIONS) == during  # the refused ingest wrote nothing
    assert try_writer_lock(warehouse).returncode == 0  # the killed sweep's lock died with it


def query_all(warehouse: Path, sql: str) -> list[tuple]:
    with connect_readonly(warehouse) as con:
        return con.execute(sql).fetchall()


def test_two_concurrent_kb_builds_leave_one_whole_kb(swept, tmp_path):
    """Issue 11, class 7: two real `rexdrug kb build` processes at once on one warehouse."""
    from jobs.cli import EXIT_BUSY

    warehouse = tmp_path / "wh"
    shutil.copytree(swept["warehouse"], warehouse)
    expected = query_all(warehouse, "SELECT * FROM combination_kb ORDER BY drug_set_key")
    (warehouse / "combination_kb" / "kb.parquet").unlink()
    cmd = [sys.executable, "-m", "jobs", "kb", "build", "--warehouse", str(warehouse)]
    procs = [subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]  # fmt: skip
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    for code, out, err in results:
        assert code == 0 or (code == EXIT_BUSY and "held by `rexdrug kb build`" in err), (code, err[-2000:])
        if code == 0:
            assert json.loads(out)["drug_sets"] == len(expected)
    assert 0 in [code for code, _, _ in results]
    assert query_all(warehouse, "SELECT * FROM combination_kb ORDER BY drug_set_key") == expected
    assert sorted(p.name for p in (warehouse / "combination_kb").iterdir()) == ["kb.parquet"]  # no temp left
