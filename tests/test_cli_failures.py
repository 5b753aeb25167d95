"""How `rexdrug ingest` / `rexdrug sweep` fail: clear one-line messages and exit codes, before Spark.

Spark is never started here: ``jobs.spark.get_spark`` is replaced by a recorder that fails the test
if the command reaches it, so "checked before Spark" is asserted, not timed.  The real-process tests
run ``python -m jobs`` and look at its stderr for a traceback.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.cli import build_parser, main
from jobs.cli._args import all_overrides

REPO = Path(__file__).resolve().parents[1]
NLM = REPO / "tests" / "data" / "warehouse" / "nlm"


class SparkStarted(Exception):
    pass


@pytest.fixture
def spark_starts(monkeypatch) -> list[str]:
    """Records every attempt to start Spark, and stops the command there."""
    import jobs.spark

    calls: list[str] = []

    def recorder(app_name, *args, **kwargs):
        calls.append(app_name)
        raise SparkStarted(app_name)

    monkeypatch.setattr(jobs.spark, "get_spark", recorder)
    return calls


def parse(*argv: str):
    return build_parser(only=argv[0]).parse_args(list(argv))


def run_cli(*argv: str, env: dict | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "jobs", *argv],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        timeout=timeout,
        check=False,
    )


# ----------------------------------------------------------------------------------------------------
# KEY=VALUE overrides after --input are overrides, not input paths
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, inputs, overrides",
    [
        (["--input", "a.xml", "b/", "engine.batch_size=8"], ["a.xml", "b/"], ["engine.batch_size=8"]),
        (["--input", "a.xml", "seed=1", "b/", "x.y=2"], ["a.xml", "b/"], ["seed=1", "x.y=2"]),
        (["k=1", "--input", "a.xml", "m=2"], ["a.xml"], ["k=1", "m=2"]),
        (["--input", "data/run=1/a.xml", "./c=d.xml"], ["data/run=1/a.xml", "./c=d.xml"], []),  # paths
    ],
)
def test_sweep_overrides_after_input_are_overrides(argv, inputs, overrides):
    args = parse("sweep", "--warehouse", "wh", *argv)
    assert args.input == inputs
    assert all_overrides(args, "overrides") == overrides


def test_sweep_config_takes_overrides_placed_after_input(tmp_path):
    from jobs.cli.sweep import config_from_args

    args = parse(
        "sweep", "--warehouse", str(tmp_path), "--input", str(NLM), "engine.batch_size=3", "batch_size=5"
    )
    config = config_from_args(args)
    assert config.inputs == [str(NLM)]
    assert (config.engine.batch_size, config.batch_size) == (3, 5)


def test_sweep_engine_choices_are_the_kinds_the_config_accepts(tmp_path, capsys):
    from jobs.cli.sweep import config_from_args
    from model.engines import ENGINE_KINDS

    for kind in ENGINE_KINDS:  # every advertised kind reaches engine.kind and passes its validation
        config = config_from_args(
            parse(
                "sweep",
                "--warehouse",
                str(tmp_path),
                "--demo",
                "--engine",
                kind,
                "engine.base_url=http://127.0.0.1:9/v1",
            )
        )
        assert config.engine.kind == kind
        config.engine.validate()
    # the spellings the old help advertised are usage errors (exit 2) that list the real kinds
    for wrong in ("rule-all-drugs", "embedded"):
        with pytest.raises(SystemExit) as exit_:
            parse("sweep", "--warehouse", str(tmp_path), "--demo", "--engine", wrong)
        assert exit_.value.code == 2
        assert "rule_all_drugs" in capsys.readouterr().err


def test_ingest_overrides_after_input_are_overrides():
    args = parse("ingest", "--warehouse", "wh", "--input", "a.xml", "email=x@y.z", "--set", "tool=t")
    assert args.input == ["a.xml"]
    assert all_overrides(args, "overrides", "extra_overrides") == ["tool=t", "email=x@y.z"]
    bare = parse("ingest", "--source", "entrez", "--since", "2026-11-01", "--warehouse", "wh", "email=a@b.c")
    assert all_overrides(bare, "overrides", "extra_overrides") == ["email=a@b.c"]


def test_input_with_only_overrides_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as caught:
        parse("sweep", "--warehouse", "wh", "--input", "engine.batch_size=8")
    assert caught.value.code == 2
    assert "--input needs at least one path" in capsys.readouterr().err


def test_ingest_of_files_refuses_e_utilities_settings(tmp_path, spark_starts, caplog):
    rc = main(["ingest", "--warehouse", str(tmp_path / "wh"), "--input", str(NLM), "email=x@y.z"])
    assert rc == 2 and spark_starts == []
    assert "E-utilities settings (email=x@y.z) need --source entrez" in caplog.text


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("extract_partitions=abc", "extract_partitions must be an integer, got 'abc'"),
        ("max_candidates=1.5", "max_candidates must be an integer or null, got 1.5"),
        ("prompt=null", "prompt is a section"),
        ("engine.sampling=3", "engine.sampling is a section"),
        ("engine.batch_size=[1", "not valid YAML"),
    ],
)
def test_sweep_bad_override_after_input_is_exit_2_before_spark(
    tmp_path, spark_starts, caplog, override, fragment
):
    rc = main(["sweep", "--warehouse", str(tmp_path / "wh"), "--input", str(NLM), override])
    assert rc == 2
    assert spark_starts == []
    assert fragment in caplog.text


# ----------------------------------------------------------------------------------------------------
# A missing --input is reported before Spark starts
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["ingest", "sweep"])
def test_missing_input_is_reported_before_spark(tmp_path, spark_starts, caplog, command):
    missing = tmp_path / "no-such-folder"
    rc = main([command, "--warehouse", str(tmp_path / "wh"), "--input", str(NLM), str(missing)])
    assert rc == 2
    assert spark_starts == []  # the check came first: no JVM was started for a typo
    assert f"input not found: {missing}" in caplog.text
    assert not (tmp_path / "wh").exists()  # nothing created either


# ----------------------------------------------------------------------------------------------------
# A warehouse that cannot be written
# ----------------------------------------------------------------------------------------------------


def _unwritable(tmp_path: Path, how: str) -> Path:
    """A warehouse path that cannot be written, three ways.

    ``read_only_dir``: a real chmod 0555 folder; skipped when it is writable anyway (running as root,
    where permission bits do not stop writes).  ``file_in_the_way``: the path goes through a regular
    file, so no folder can be made (works for root too).  ``proc``: below /proc, where no folder can
    be created (the read-only-mount case for root).
    """
    if how == "read_only_dir":
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o555)
        try:
            (folder / "probe").touch()
        except PermissionError:
            return folder / "wh"
        (folder / "probe").unlink()
        folder.chmod(0o755)
        pytest.skip("permission bits do not stop this user (root); the other cases cover it")
    if how == "file_in_the_way":
        blocker = tmp_path / "a-file"
        blocker.write_text("not a folder")
        return blocker / "wh"
    return Path("/proc") / f"rexdrug-test-wh-{os.getpid()}"


@pytest.mark.parametrize("how", ["read_only_dir", "file_in_the_way", "proc"])
@pytest.mark.parametrize("command", ["ingest", "sweep"])
def test_unwritable_warehouse_is_a_clear_error_before_spark(tmp_path, spark_starts, caplog, command, how):
    warehouse = _unwritable(tmp_path, how)
    try:
        rc = main([command, "--warehouse", str(warehouse), "--input", str(NLM)])
    finally:
        if how == "read_only_dir":
            warehouse.parent.chmod(0o755)
    assert rc == 2
    assert spark_starts == []
    assert f"warehouse {warehouse} is not writable" in caplog.text


def test_warehouse_that_is_a_file_is_a_clear_error(tmp_path, spark_starts, caplog):
    blocker = tmp_path / "wh"
    blocker.write_text("")
    assert main(["ingest", "--warehouse", str(blocker), "--input", str(NLM)]) == 2
    assert spark_starts == [] and f"warehouse {blocker} is a file, not a folder" in caplog.text


def test_unwritable_warehouse_real_process_has_no_traceback(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    proc = run_cli("ingest", "--warehouse", str(blocker / "wh"), "--input", str(NLM))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "is not writable: Not a directory" in proc.stderr


def test_io_error_during_a_command_is_one_line_not_a_traceback(tmp_path):
    """The dispatcher's net: an OSError the command did not foresee (here: query --output below a file)."""
    from tests.test_query_cli import _build_warehouse

    warehouse = _build_warehouse(tmp_path / "wh")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    proc = run_cli(
        "query",
        "--warehouse",
        str(warehouse),
        "SELECT 1 AS a",
        "--format",
        "json",
        "--output",
        str(blocker / "out.json"),
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "ERROR" in line]
    assert len(lines) == 1 and "I/O error on" in lines[0] and str(blocker) in lines[0], proc.stderr


# ----------------------------------------------------------------------------------------------------
# An unreachable E-utilities host
# ----------------------------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again on leaving: nothing listens there


def test_unreachable_e_utilities_host_is_one_line_and_exit_1(tmp_path):
    port = _closed_port()
    proc = run_cli(
        "ingest", "--source", "entrez", "--since", "2026-11-01", "--until", "2026-11-02",
        "--warehouse", str(tmp_path / "wh"),
        "--set", f"base_url=http://127.0.0.1:{port}/", "--set", "email=dev@rexdrug.invalid",
        "--set", "max_retries=0", "--set", "api_key=secret-key-do-not-leak",
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "E-utilities failed" in proc.stderr and "Connection refused" in proc.stderr
    assert "do-not-leak" not in proc.stderr
    assert proc.stdout == ""


# ----------------------------------------------------------------------------------------------------
# Dates: YYYY-MM-DD and YYYY/MM/DD in both commands, through one parser
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["2026-11-01", "2026/11/01"])
def test_both_date_forms_in_both_commands(tmp_path, monkeypatch, text):
    from jobs.cli.sweep import config_from_args

    monkeypatch.setenv("NCBI_EMAIL", "curator@example.org")  # an E-utilities sweep needs one (validated)

    ingest = parse("ingest", "--source", "entrez", "--since", text, "--until", text, "--warehouse", "wh")
    assert ingest.since == ingest.until == dt.date(2026, 11, 1)
    sweep = parse("sweep", "--warehouse", str(tmp_path), "--source", "entrez", "--since", text)
    assert sweep.since == dt.date(2026, 11, 1)
    assert config_from_args(sweep).since == "2026-11-01"


@pytest.mark.parametrize("command", ["ingest", "sweep"])
@pytest.mark.parametrize("text", ["2026.11.01", "01/11/2026", "2026-13-01", "yesterday"])
def test_bad_date_is_a_usage_error(capsys, command, text):
    with pytest.raises(SystemExit) as caught:
        parse(command, "--warehouse", "wh", "--source", "entrez", "--since", text)
    assert caught.value.code == 2
    assert "YYYY-MM-DD or YYYY/MM/DD" in capsys.readouterr().err


def test_readme_ingest_command_parses():
    """The README's `rexdrug ingest --source entrez --since 2026/11/01 ...` line, as written."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    line = next(line for line in readme.splitlines() if line.startswith("rexdrug ingest --source entrez"))
    argv = shlex.split(line.split("#")[0])[1:]
    args = parse(*argv)
    assert args.since == dt.date(2026, 11, 1)


@pytest.mark.parametrize(
    "error, code, status",
    [
        ("spark", 1, "error"),  # a Spark job that gave up: one line + the JSON status, exit 1
        ("other", None, None),  # anything else is a bug: it propagates (a traceback)
    ],
)
def test_sweep_spark_job_failure_is_exit_1_with_status(tmp_path, monkeypatch, capsys, error, code, status):
    from pyspark.errors import PySparkException

    import jobs.sweep

    def failing_sweep(config):
        if error == "spark":
            raise PySparkException(
                message="Job aborted due to stage failure: Task 1 failed 4 times\n\tat ..."
            )
        raise RuntimeError("a bug")

    monkeypatch.setattr(jobs.sweep, "run_sweep", failing_sweep)
    argv = ["sweep", "--warehouse", str(tmp_path / "wh"), "--input", str(NLM), "--engine", "rule_all_drugs"]
    if code is None:
        with pytest.raises(RuntimeError, match="a bug"):
            main(argv)
        return
    assert main(argv) == code
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["status"] == status
    assert result["error"] == "Spark job failed: Job aborted due to stage failure: Task 1 failed 4 times"
