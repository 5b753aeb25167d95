"""Progress of the extract stage from the driver: per-partition status files written by the tasks after
every batch, summed and logged by a driver thread (jobs/progress.py); the ingest's records the same way."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pyarrow as pa
import pytest

from jobs.progress import StatusFileProgress, progress_line, read_totals, write_status

FIXTURES = Path(__file__).parent / "data" / "sweep"


@pytest.mark.parametrize(
    ("done", "total", "errors", "elapsed", "expected"),
    [
        (0, 601, 0, 5.0, "extract: 0/601 sentences (0%), 0 errors"),
        (120, 601, 3, 60.0, "extract: 120/601 sentences (19%), 2.0/s, ETA 4m00s, 3 errors"),
        (601, 601, 1, 300.0, "extract: 601/601 sentences (100%), 2.0/s, 1 error"),
        (10, 7210, 0, 5.0, "extract: 10/7210 sentences (0%), 2.0/s, ETA 1h00m, 0 errors"),
        (0, 0, 0, 0.0, "extract: 0/0 sentences, 0 errors"),
        (120, None, 1, 60.0, "extract: 120 sentences, 2.0/s, 1 error"),  # no total known in advance: no ETA
        (0, None, 0, 1.0, "extract: 0 sentences, 0 errors"),
    ],
)
def test_progress_line(done, total, errors, elapsed, expected):
    assert progress_line("extract", "sentences", done, total, errors, elapsed) == expected


def test_status_files_sum_and_a_retried_attempt_overwrites(tmp_path):
    write_status(tmp_path, 0, 16, 1)
    write_status(tmp_path, 1, 8, 0)
    write_status(tmp_path, 1, 4, 0)  # partition 1's task retried from scratch: its new count replaces the old
    (tmp_path / "part-00002.json").write_text("{not json")  # half-written by a foreign tool: ignored
    assert read_totals(tmp_path) == (20, 1)
    assert not list(tmp_path.glob(".*tmp"))  # no temp files left behind


def test_driver_reporter_logs_at_the_end(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="jobs.progress")
    with StatusFileProgress(tmp_path / "p", 10, interval_s=3600) as progress:
        write_status(tmp_path / "p", 3, 10, 2)
    assert progress.lines[-1].startswith("extract: 10/10 sentences (100%)") and progress.lines[-1].endswith(
        "2 errors"
    )
    assert progress.lines[-1] in caplog.text
    with pytest.raises(ValueError):
        StatusFileProgress(tmp_path, 1, interval_s=0)


class _HalfBrokenRunner:
    """An engine stand-in: fails the sentences that contain "down", answers the others."""

    def run(self, items):
        return [
            {"error": "ConnectError: down"}
            if "down" in i.sentence
            else {"raw_output": "[]", "parse_status": "ok", "parsed": []}
            for i in items
        ]


def test_extract_tasks_write_their_counts_after_every_batch(tmp_path, monkeypatch):
    from jobs import sweep
    from model.engines.base import EngineConfig
    from model.prompting import PromptConfig

    monkeypatch.setattr(sweep, "_cached_runner", lambda *a: _HalfBrokenRunner())
    seen = []
    import jobs.progress

    original = jobs.progress.write_status
    monkeypatch.setattr(
        jobs.progress,
        "write_status",
        lambda d, p, done, errors: (seen.append((p, done, errors)), original(d, p, done, errors)),
    )
    rows = [
        {
            "extraction_key": f"k{i}",
            "pmid": str(i),
            "pmid_version": 1,
            "sentence_index": 0,
            "sentence_start": 0,
            "sentence_end": 10,
            "mentions": None,
            "sentence_text": "engine down" if i == 3 else f"sentence {i}",
            "text_hash": "h",
            "context": "",
            "model_id": "m",
            "prompt_version": "p",
        }
        for i in range(5)
    ]
    extract = sweep.make_extract_fn(
        EngineConfig(kind="rule_all_drugs"), PromptConfig(), 2, 1, "r1", progress_dir=str(tmp_path)
    )
    out = pa.Table.from_batches(list(extract(iter([pa.RecordBatch.from_pylist(rows)]))))
    assert out.num_rows == 5
    assert seen == [(0, 2, 0), (0, 4, 1), (0, 5, 1)]  # batches of 2: after each one, the counts so far
    assert json.loads((tmp_path / "part-00000.json").read_text()) == {"done": 5, "errors": 1}


@pytest.mark.spark
def test_sweep_reports_extract_progress_from_the_driver(spark, tmp_path, caplog):
    from etl.config import load_config
    from jobs.sweep import SweepConfig, run_sweep

    caplog.set_level(logging.INFO, logger="jobs.progress")
    config = load_config(
        SweepConfig,
        None,
        [
            f"warehouse={tmp_path / 'wh'}",
            "source=files",
            f"inputs={json.dumps([str(FIXTURES / 'baseline')])}",
            "engine.kind=rule_all_drugs",
            "progress_interval_s=0.05",
        ],
    )
    summary = run_sweep(config, spark=spark)
    lines = [r.getMessage() for r in caplog.records if r.name == "jobs.progress"]
    split = [line for line in lines if line.startswith("sentences:")]
    assert split and split[-1].startswith(
        f"sentences: {summary.n_articles}/{summary.n_articles} articles (100%)"
    )
    lines = [line for line in lines if line.startswith("extract:")]
    # the counts can only come from the tasks' status files: the driver sees no rows until the write ends
    assert lines and lines[-1].startswith(
        f"extract: {summary.n_candidates}/{summary.n_candidates} sentences (100%)"
    )
    assert lines[-1].endswith("0 errors")
    assert not (tmp_path / "wh" / "_staging").exists() or not any((tmp_path / "wh" / "_staging").iterdir())


@pytest.mark.spark
def test_ingest_reports_records_parsed_from_the_driver(spark, tmp_path, caplog):
    from jobs.ingest import run_ingest

    caplog.set_level(logging.INFO, logger="jobs.progress")
    inputs = [Path(__file__).parent / "data" / "warehouse" / "nlm"]
    summary = run_ingest(spark, inputs, tmp_path / "wh", show_progress=False, progress_interval_s=0.05)
    lines = [
        r.getMessage()
        for r in caplog.records
        if r.name == "jobs.progress" and r.getMessage().startswith("ingest:")
    ]
    # the records of every file, counted by the parsing tasks (the driver sees no row until the write ends)
    records = summary.articles + summary.deletions + summary.errors
    assert records > 0 and lines and lines[-1].startswith(f"ingest: {records} records parsed, ")
    assert lines[-1].endswith(f"{summary.errors} error{'s' if summary.errors != 1 else ''}")
    assert not (tmp_path / "wh" / "_staging").exists() or not any((tmp_path / "wh" / "_staging").iterdir())
