"""The sweep end to end on the shared local SparkSession, with the fast "all drugs" rule engine.

Checks whole tables (content hashes without run ids and timestamps), NLM semantics of the current
views, incremental extraction, and recovery after ``kill -9`` of a real sweep process.
"""

from __future__ import annotations

import hashlib
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
from jobs.sweep import SweepConfig, run_sweep
from tests.processes import wait_for_pause

pytestmark = pytest.mark.spark

FIXTURES = Path(__file__).parent / "data" / "sweep"
BASELINE = FIXTURES / "baseline" / "pubmed99n0001.xml"
UPDATE = FIXTURES / "updatefiles" / "pubmed99n0002.xml"
ENGINE = "rule_all_drugs"
# Columns that legitimately differ between two runs over the same input.
VOLATILE = {
    "run_id",
    "extracted_at",
    "ingested_at",
    "started_at",
    "finished_at",
    "stage_seconds",
    "source_file",
}
CONTENT_TABLES = (
    "articles",
    "deletions",
    "sentences",
    "extractions",
    "combinations",
    "combination_drugs",
    "extraction_errors",
    "current_combinations",
    "combination_kb",
)


def make_config(warehouse: Path, *extra: str, baseline_only: bool = False) -> SweepConfig:
    inputs = json.dumps(
        [str(BASELINE.parent)] if baseline_only else [str(BASELINE.parent), str(UPDATE.parent)]
    )
    return load_config(
        SweepConfig,
        None,
        [f"warehouse={warehouse}", "source=files", f"inputs={inputs}", f"engine.kind={ENGINE}", *extra],
    )


def sweep(spark, warehouse: Path, *extra: str, baseline_only: bool = False):
    from jobs.kb import build_and_store_kb

    summary = run_sweep(make_config(warehouse, *extra, baseline_only=baseline_only), spark=spark)
    build_and_store_kb(warehouse)
    return summary


def query(warehouse: Path, sql: str) -> list[tuple]:
    with connect_readonly(warehouse) as con:  # the views' paths are relative to the warehouse
        return con.execute(sql).fetchall()


def table_hashes(warehouse: Path, tables: tuple[str, ...] = CONTENT_TABLES) -> dict[str, str]:
    """sha256 of each table's rows (volatile columns dropped, rows sorted)."""
    hashes = {}
    with connect_readonly(warehouse) as con:
        for name in tables:
            cols = [c[0] for c in con.execute(f"DESCRIBE {name}").fetchall() if c[0] not in VOLATILE]
            rows = con.execute(
                f"SELECT {', '.join(map(repr, cols)).replace(chr(39), chr(34))} FROM {name}"
            ).fetchall()
            digest = hashlib.sha256()
            for row in sorted(repr(r) for r in rows):
                digest.update(row.encode())
            hashes[name] = f"{len(rows)}:{digest.hexdigest()[:16]}"
    return hashes


@pytest.fixture(scope="module")
def baseline_swept(spark, tmp_path_factory) -> Path:
    """Last night's sweep: the baseline file only."""
    warehouse = tmp_path_factory.mktemp("baseline")
    summary = sweep(spark, warehouse, baseline_only=True)
    assert summary.n_extracted > 0 and summary.n_combinations > 0
    return warehouse


@pytest.fixture(scope="module")
def reference(spark, baseline_swept, tmp_path_factory) -> Path:
    """Tonight's uninterrupted sweep with the update file: the reference other runs are compared with."""
    warehouse = tmp_path_factory.mktemp("reference") / "wh"
    shutil.copytree(baseline_swept, warehouse)
    summary = sweep(spark, warehouse)
    assert summary.n_articles == 2  # the revised and the new version; the rest was done last night
    return warehouse


def test_current_views_follow_nlm_rules(reference):
    pmids = {r[0]: r[1] for r in query(reference, "SELECT pmid, pmid_version FROM current_articles")}
    assert "1129034" not in pmids  # deleted by the update file
    assert pmids["2581512"] == 2  # the new version is current ...
    # ... and both versions stay in history
    assert query(reference, "SELECT count(DISTINCT pmid_version) FROM articles WHERE pmid = '2581512'") == [
        (2,)
    ]
    current = {r[0] for r in query(reference, "SELECT DISTINCT pmid FROM current_combinations")}
    history = {r[0] for r in query(reference, "SELECT DISTINCT pmid FROM combinations")}
    assert "1129034" in history and "1129034" not in current
    # the revised abstract (same version) is split again; only its current sentences are current
    revised = query(
        reference,
        """SELECT count(*) FROM current_sentences s JOIN current_articles a USING (pmid, pmid_version)
                                  WHERE pmid = '9058098' AND position(s.text IN a.abstract) = 0""",
    )
    assert revised == [(0,)]


def test_combinations_are_normalized_and_grounded(reference):
    rows = query(reference, """SELECT label, n_drugs, drug_set_key, all_grounded FROM current_combinations""")
    assert rows and all(label == "POS" and n >= 2 and key and grounded for label, n, key, grounded in rows)
    kb = query(reference, "SELECT drug_set_key, n_papers, n_pos FROM combination_kb")
    assert {k for k, _, _ in kb} == {r[2] for r in rows}
    assert sum(n for _, _, n in kb) == len(rows)


def test_rows_and_kb_carry_the_rule_engines_confidence(reference):
    from model.engines.rules import RULE_CONFIDENCE

    expected = RULE_CONFIDENCE[ENGINE]
    assert query(reference, "SELECT DISTINCT confidence FROM current_combinations") == [(expected,)]
    # the extraction rows carry it on each relation (what the combinations stage copied)
    assert query(
        reference,
        """SELECT DISTINCT r.confidence, r.label_logprobs IS NULL
                               FROM current_extractions, UNNEST(relations) AS t(r)""",
    ) == [(expected, True)]
    kb = query(
        reference,
        "SELECT max_confidence, mean_confidence, evidence_rank FROM combination_kb ORDER BY evidence_rank",
    )
    assert kb and all(mx == mean == expected for mx, mean, _ in kb)
    assert [rank for _, _, rank in kb] == list(range(1, len(kb) + 1))


def test_second_run_extracts_nothing_and_tables_are_identical(spark, reference, tmp_path):
    warehouse = tmp_path / "wh"
    shutil.copytree(reference, warehouse)
    before = table_hashes(reference)
    summary = sweep(spark, warehouse)
    assert (summary.n_extracted, summary.n_articles, summary.n_skipped > 0) == (0, 0, True)
    assert table_hashes(warehouse) == before


def test_new_prompt_version_adds_rows_beside_the_old(spark, reference, tmp_path):
    warehouse = tmp_path / "wh"
    shutil.copytree(reference, warehouse)
    (n_before,) = query(warehouse, "SELECT count(*) FROM extractions")[0]
    other_context = "sentence" if SweepConfig().prompt.context != "sentence" else "window"
    summary = sweep(spark, warehouse, f"prompt.context={other_context}")  # differs from the default prompt
    assert summary.n_extracted == summary.n_candidates > 0
    versions = dict(query(warehouse, "SELECT prompt_version, count(*) FROM extractions GROUP BY ALL"))
    assert len(versions) == 2 and sum(versions.values()) == n_before + summary.n_extracted


@pytest.mark.parametrize("stage", ["extract", "commit-rename"])
def test_killed_sweep_then_rerun_equals_uninterrupted_run(baseline_swept, reference, tmp_path, stage):
    """kill -9 a real sweep process while it holds a stage, run again: same tables, no duplicates."""
    warehouse = tmp_path / "wh"
    shutil.copytree(baseline_swept, warehouse)
    inputs = [str(BASELINE.parent), str(UPDATE.parent)]
    cmd = [
        sys.executable,
        "-m",
        "jobs",
        "sweep",
        "--warehouse",
        str(warehouse),
        "--input",
        *inputs,
        "--engine",
        ENGINE,
        "--master",
        "local[1]",
    ]
    marker = tmp_path / "paused"
    env = {**os.environ, "REXDRUG_PAUSE_AT_STAGE": stage, "REXDRUG_PAUSE_MARKER": str(marker)}
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        wait_for_pause(proc, marker, timeout_s=240)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    rerun = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert table_hashes(warehouse) == table_hashes(reference)


@pytest.mark.parametrize(
    "n_articles, parallelism, tasks",
    [
        (5, 2, 2),
        (1, 2, 1),
        (0, 2, 1),
        (4000, 2, 2),
        (4001, 2, 3),
        (10_000, 16, 16),
        (100_000, 16, 50),
    ],
)
def test_sentence_tasks(n_articles, parallelism, tasks):
    from jobs.sweep import sentence_tasks

    assert sentence_tasks(n_articles, parallelism) == tasks


def test_sentence_stage_spreads_the_articles_over_tasks(baseline_swept):
    """The new articles arrive as one Parquet file of one row group, which Spark reads as one task: the
    stage must still split them on every core (local[2]: two tasks, each writing sentences)."""
    import pyarrow.parquet as pq

    files = sorted((baseline_swept / "sentences").glob("run_id=*/*.parquet"))
    assert len([f for f in files if pq.read_metadata(f).num_rows]) == 2
