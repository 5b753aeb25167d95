"""A killed sweep resumes its extraction: finished partitions are never sent to the engine again.

A real `rexdrug sweep` process (one core, four extract partitions) reads through the ``openai`` engine
from a local OpenAI-compatible fake that answers as ``rule_all_drugs`` and records every request, so the
engine calls are counted where they happen.  The process pauses in its extract task right after the
second partition's checkpoint (``REXDRUG_PAUSE_AT_STAGE=extract-checkpoint``, ``REXDRUG_PAUSE_AFTER=2``)
and is killed with SIGKILL, the Spark worker that paused too.  The rerun (on the test's SparkSession,
with another parallelism) must send exactly the candidates the checkpoints do not hold, and leave the
same tables as an uninterrupted run with the same engine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from etl.checkpoints import committed_checkpoints
from etl.config import load_config
from etl.warehouse import WarehouseLayout, connect_readonly
from jobs.sweep import SweepConfig, run_sweep
from tests.fakes.openai_server import FakeOpenAI
from tests.processes import wait_for_pause
from tests.test_sweep import table_hashes

pytestmark = pytest.mark.spark

BASELINE_DIR = Path(__file__).parent / "data" / "sweep" / "baseline"
PARTITIONS, KILL_AFTER = 4, 2


@pytest.fixture
def fake_openai():
    server = FakeOpenAI("rule_all_drugs").start()
    yield server
    server.stop()


def write_config(path: Path, server: FakeOpenAI) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "engine": {
                    "kind": "openai",
                    "model": "fake-rule",
                    "base_url": server.base_url,
                    "max_retries": 0,
                    "timeout_s": 30,
                    "concurrency": 1,
                },
                "extract_partitions": PARTITIONS,
                "batch_size": 2,  # several engine calls per partition: a checkpoint holds a whole partition
            }
        )
    )
    return path


def sweep_in_process(spark, warehouse: Path, config: Path):
    overrides = [f"warehouse={warehouse}", "source=files", f'inputs=["{BASELINE_DIR}"]']
    return run_sweep(load_config(SweepConfig, config, overrides), spark=spark)


def checkpoint_files(warehouse: Path) -> list[Path]:
    root = WarehouseLayout(warehouse).checkpoints / "extractions"
    return [f for d in sorted(root.iterdir()) for f in committed_checkpoints(d)] if root.is_dir() else []


def kill_after_partitions(warehouse: Path, config: Path, tmp_path: Path) -> None:
    """Run the CLI in its own process group until the pause point, then SIGKILL it and the paused worker."""
    cmd = [
        sys.executable,
        "-m",
        "jobs",
        "sweep",
        "--warehouse",
        str(warehouse),
        "--config",
        str(config),
        "--input",
        str(BASELINE_DIR),
        "--master",
        "local[1]",
    ]
    marker = tmp_path / "paused"
    env = {
        **os.environ,
        "REXDRUG_PAUSE_AT_STAGE": "extract-checkpoint",
        "REXDRUG_PAUSE_AFTER": str(KILL_AFTER),
        "REXDRUG_PAUSE_MARKER": str(marker),
    }
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        wait_for_pause(proc, marker, timeout_s=300)
        worker = int(marker.read_text())  # the Spark Python worker that paused inside its task
        os.killpg(proc.pid, signal.SIGKILL)
        try:
            os.kill(worker, signal.SIGKILL)
        except ProcessLookupError:
            pass  # already gone with its parent
    finally:
        proc.wait(timeout=60)


def test_killed_sweep_resumes_without_redoing_finished_partitions(spark, fake_openai, tmp_path):
    config = write_config(tmp_path / "sweep.yaml", fake_openai)

    reference = sweep_in_process(spark, tmp_path / "reference", config)  # uninterrupted, same engine
    n = reference.n_candidates
    assert n > PARTITIONS and len(fake_openai.requests) == n and reference.n_resumed == 0
    assert not WarehouseLayout(tmp_path / "reference").checkpoints.exists()  # the commit removed them

    warehouse = tmp_path / "wh"
    kill_after_partitions(warehouse, config, tmp_path)
    sent_before_kill = len(fake_openai.requests) - n
    files = checkpoint_files(warehouse)
    in_checkpoints = sum(pq.read_metadata(f).num_rows for f in files)
    assert len(files) == KILL_AFTER
    # the kill came right after the second partition's checkpoint: all that was sent is checkpointed
    assert 0 < in_checkpoints == sent_before_kill < n

    rerun = sweep_in_process(spark, warehouse, config)
    sent_by_rerun = len(fake_openai.requests) - n - sent_before_kill
    assert rerun.recovered_runs == []  # the killed run was discarded (no commit marker) ...
    assert rerun.n_resumed == in_checkpoints  # ... but its finished partitions were not
    assert sent_by_rerun == n - in_checkpoints  # only the unfinished partitions went to the engine
    assert (rerun.n_candidates, rerun.n_extracted, rerun.n_failed) == (n, n, 0)
    with connect_readonly(warehouse) as con:
        assert con.execute("SELECT n_resumed, n_extracted FROM sweep_runs").fetchall() == [
            (in_checkpoints, n)
        ]
        assert con.execute("SELECT count(DISTINCT run_id) FROM extractions").fetchall() == [(1,)]
    assert table_hashes(warehouse) == table_hashes(tmp_path / "reference")
    assert not WarehouseLayout(warehouse).checkpoints.exists()
