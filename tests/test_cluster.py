"""The jobs on a real Spark standalone cluster: a master and two 1-core workers on 127.0.0.1, started
from the pyspark pip distribution (``jobs.standalone``), one cluster for the whole module.

``rexdrug ingest`` and ``rexdrug sweep`` (the rule engine, then the embedded model rexdrug-smol on 3
candidates) run as driver processes with ``--master spark://127.0.0.1:PORT`` from a cwd and an
environment that are not the executors': the workers (hence the executors) get only PATH, LANG and a
HOME of their own, no PYTHONPATH, no REXDRUG_CACHE, and run in their own folders.  The tables must equal
those of the same commands in local mode (content hashes of the sorted rows, run ids and timestamps
left out).  Then one worker is killed (kill -9 of its JVM, its executor and Python workers) while the
embedded model extracts: the sweep finishes on the other worker or fails cleanly, and a rerun gives the
local-mode tables.

Marked ``cluster`` (skipped by ``make test``); ``.ci/run`` runs it: ``pytest -m cluster tests/test_cluster.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jobs.standalone import StandaloneCluster
from tests.test_sweep import BASELINE, UPDATE, table_hashes

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.timeout(1800),
    pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs Java 17"),
]

REPO = Path(__file__).resolve().parents[1]
INPUTS = [str(BASELINE.parent), str(UPDATE.parent)]
MODEL_CANDIDATES = 3
# The driver's commands, in order, against one warehouse: ingest the baseline, sweep baseline + update
# with the rule engine, then the embedded model on a few candidates (one sentence per engine call, so
# that no batch padding depends on how the candidates were spread over tasks).
INGEST = ["ingest", "--no-progress", "--warehouse", "wh", "--input", str(BASELINE.parent)]
RULE_SWEEP = ["sweep", "--warehouse", "wh", "--input", *INPUTS, "--engine", "rule_all_drugs"]
MODEL_SWEEP = [
    "sweep",
    "--warehouse",
    "wh",
    "--input",
    *INPUTS,
    "--max-candidates",
    str(MODEL_CANDIDATES),
    "batch_size=1",
]


def driver_env() -> dict[str, str]:
    """The driver's environment: the test's own, with this checkout first on the path."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "SPARK_LOCAL_IP": "127.0.0.1"}


def rexdrug(args: list[str], master: str, cwd: Path, timeout_s: float = 600) -> subprocess.CompletedProcess:
    """One `rexdrug` command as its own process (its own process group: nothing outlives a timeout)."""
    cwd.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobs", *args, "--master", master],
        cwd=cwd,
        env=driver_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout_s)
    finally:
        _kill_group(proc)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=60)


def check(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"{result.args[3:5]} exited {result.returncode}:\n{result.stderr[-4000:]}"
    return result


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def run_all(master: str, cwd: Path) -> tuple[Path, Path]:
    """The three commands from ``cwd``; returns the warehouse and a copy of it taken before the model sweep."""
    check(rexdrug(INGEST, master, cwd))
    check(rexdrug(RULE_SWEEP, master, cwd))
    before_model = cwd.parent / f"{cwd.name}-before-model"
    shutil.copytree(cwd / "wh", before_model)
    summary = last_json(check(rexdrug(MODEL_SWEEP, master, cwd)).stdout)
    assert summary["n_extracted"] == MODEL_CANDIDATES and summary["n_failed"] == 0, summary
    return cwd / "wh", before_model


@pytest.fixture(scope="module")
def executor_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("executor-home")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, executor_home):
    """Master + two workers (1 core, 1g each); stopped (every JVM killed) whatever happens."""
    env = {"PATH": os.environ["PATH"], "HOME": str(executor_home), "LANG": "C.UTF-8"}
    if "JAVA_HOME" in os.environ:
        env["JAVA_HOME"] = os.environ["JAVA_HOME"]
    cluster = StandaloneCluster(
        tmp_path_factory.mktemp("cluster"), workers=2, cores=1, memory="1g", worker_env=env
    )
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def local_run(tmp_path_factory) -> tuple[Path, Path]:
    return run_all("local[2]", tmp_path_factory.mktemp("local") / "driver")


@pytest.fixture(scope="module")
def cluster_run(cluster, tmp_path_factory) -> tuple[Path, Path]:
    return run_all(cluster.master_url, tmp_path_factory.mktemp("on-cluster") / "driver")


def test_both_workers_registered(cluster):
    workers = cluster.alive_workers()
    assert len(workers) == 2 and all(w["host"] == "127.0.0.1" and w["cores"] == 1 for w in workers)


def test_cluster_tables_equal_local_mode(cluster_run, local_run):
    from etl.warehouse import connect_readonly

    cluster_wh, _ = cluster_run
    local_wh, _ = local_run
    assert table_hashes(cluster_wh) == table_hashes(local_wh)
    # not vacuous: both engines wrote rows (the model's through the executors' own Python workers)
    with connect_readonly(cluster_wh) as con:
        models = dict(
            con.execute(
                "SELECT split_part(model_id, '@', 1), count(*) FROM extractions GROUP BY 1"
            ).fetchall()
        )
    assert models == {"rule:all_drugs": 12, "rexdrug-smol": MODEL_CANDIDATES}


def test_executors_used_the_drivers_model_cache(cluster_run, executor_home):
    """The converted embedded model came from the driver's cache location (it travels with the job as
    spark.executorEnv.REXDRUG_CACHE); an executor never converted its own copy under its HOME."""
    assert not (executor_home / ".cache" / "rexdrug").exists()


def test_executors_import_the_drivers_code(cluster, tmp_path):
    """A job's Python workers import the rexdrug code of the driver (this checkout), not another copy
    their interpreter finds, and see the driver's cache location, from a cwd that is not the driver's."""
    probe = (
        "import json, os, sys\n"
        "from jobs.spark import get_spark\n"
        "sc = get_spark('probe', master=sys.argv[1]).sparkContext\n"
        "def where(_):\n"
        "    import etl.drugs, jobs.sweep\n"
        "    from etl.drugs import default_matcher\n"
        "    n = len(default_matcher().find('cisplatin plus gemcitabine'))\n"
        "    yield [jobs.sweep.__file__, os.environ.get('REXDRUG_CACHE'), os.getcwd(), n]\n"
        "print(json.dumps(sc.parallelize(range(2), 2).mapPartitions(where).collect()))\n"
    )
    cwd = tmp_path / "driver"
    cwd.mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", probe, cluster.master_url],
        cwd=cwd,
        env=driver_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    from etl.paths import cache_location

    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(seen) == 2
    for module_file, cache, executor_cwd, n_mentions in seen:
        assert Path(module_file).resolve() == REPO / "jobs" / "sweep.py"
        assert cache == str(cache_location())
        assert Path(executor_cwd).resolve().is_relative_to(cluster.root) and n_mentions == 2


def wait_for_first_extraction(proc: subprocess.Popen, warehouse: Path, timeout_s: float) -> None:
    """Until a task of the extract stage has written its first batch's counts (the model is running)."""
    deadline = time.monotonic() + timeout_s
    while not list(warehouse.glob("_staging/*/work/extract_progress/part-*.json")):
        if proc.poll() is not None:
            pytest.fail(f"the sweep ended before extracting: {proc.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail("the sweep did not start extracting in time")
        time.sleep(0.2)


def test_worker_killed_mid_sweep_then_rerun_equals_local_mode(cluster, cluster_run, local_run, tmp_path):
    """kill -9 one worker (JVM, executor, Python workers) while the model extracts: the sweep finishes on
    the other worker with the local tables, or fails cleanly (exit 1, a JSON status line) and a rerun
    leaves the local tables.  Runs last: the module's cluster has one worker afterwards."""
    _, before_model = cluster_run
    local_wh, _ = local_run
    cwd = tmp_path / "driver"
    cwd.mkdir()
    shutil.copytree(before_model, cwd / "wh")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobs", *MODEL_SWEEP, "--master", cluster.master_url],
        cwd=cwd,
        env=driver_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        wait_for_first_extraction(proc, cwd / "wh", timeout_s=300)
        cluster.kill_worker(0)
        out, err = proc.communicate(timeout=600)
    finally:
        _kill_group(proc)
    if proc.returncode == 0:  # finished on the surviving worker: nothing lost, nothing twice
        assert last_json(out)["status"] == "committed"
    else:  # or failed cleanly (exit 1, the scheduler's JSON line, no traceback), and a rerun finishes it
        assert proc.returncode == 1 and last_json(out)["status"] == "error", err[-3000:]
        assert "Traceback" not in err, err[-3000:]
        rerun = check(rexdrug(MODEL_SWEEP, cluster.master_url, cwd))
        assert last_json(rerun.stdout)["status"] == "committed"
    # (not a rerun after a committed run: --max-candidates caps each run, so it would extract 3 more)
    assert table_hashes(cwd / "wh") == table_hashes(local_wh)
