"""Nightly Entrez sweeps: the window continues from the ledger, the same night twice adds nothing, a
failed night is covered by the next window, and stdout ends with one JSON line a scheduler reads.

The ledger rules on hand-written ``sweep_runs`` files (no Spark); the nights themselves through Spark
against the fake NCBI (tests/fakes/ncbi_server.py), with the rule engine.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from etl.warehouse import connect_readonly, refresh
from jobs.cli import main
from jobs.nightly import last_window_end, resolve_window
from schemas.extraction import SWEEP_RUNS
from tests.fakes.ncbi_server import FakeNcbi, articles_from_efetch_file

BASELINE = Path(__file__).parent / "data" / "sweep" / "baseline" / "pubmed99n0001.xml"
EMAIL = "nightly-tests@example.org"
D = dt.date


def ledger(warehouse: Path, runs: list[tuple[str, str, D | None]]) -> Path:
    """``sweep_runs`` rows (source, status, window_until), one file per run as the sweep writes them."""
    for i, (source, status, until) in enumerate(runs):
        path = warehouse / "sweep_runs" / f"run-r{i}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        row = {
            "run_id": f"r{i}",
            "status": status,
            "source": source,
            "window_until": until,
            "window_since": until and until - dt.timedelta(days=1),
            "started_at": dt.datetime(2026, 1, 1 + i, tzinfo=dt.UTC),
        }
        pq.write_table(pa.Table.from_pylist([row], schema=SWEEP_RUNS), path)
    refresh(warehouse)
    return warehouse


@pytest.mark.parametrize(
    ("runs", "expected"),
    [
        ([], None),
        ([("files", "committed", None)], None),  # NLM files have no window
        ([("entrez", "committed", D(2026, 1, 5))], D(2026, 1, 5)),
        # a failed night (every extraction failed) does not move the start: the next window covers it
        ([("entrez", "committed", D(2026, 1, 5)), ("entrez", "failed", D(2026, 1, 9))], D(2026, 1, 5)),
        # a backfill of old days after the nightly runs does not move the start back
        ([("entrez", "committed", D(2026, 1, 5)), ("entrez", "committed", D(2025, 6, 30))], D(2026, 1, 5)),
        ([("entrez", "committed", D(2026, 1, 5)), ("files", "committed", None)], D(2026, 1, 5)),
    ],
)
def test_last_window_end(tmp_path, runs, expected):
    assert last_window_end(ledger(tmp_path / "wh", runs)) == expected


def test_last_window_end_of_no_warehouse(tmp_path):
    assert last_window_end(tmp_path / "none") is None


@pytest.mark.parametrize(
    ("since", "until", "expected"),
    [
        (None, "2026-01-09", (D(2026, 1, 6), D(2026, 1, 9))),  # continues the day after the last window
        (None, "2026-01-06", (D(2026, 1, 6), D(2026, 1, 6))),
        (None, "2026-01-05", None),  # the same night again: nothing left to fetch
        (None, "2026-01-01", None),
        ("2026/01/01", "2026-01-03", (D(2026, 1, 1), D(2026, 1, 3))),  # explicit bounds override the ledger
    ],
)
def test_resolve_window(tmp_path, since, until, expected):
    warehouse = ledger(tmp_path / "wh", [("entrez", "committed", D(2026, 1, 5))])
    assert resolve_window(since, until, warehouse) == expected


def test_first_night_needs_since(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NCBI_EMAIL", EMAIL)
    with pytest.raises(ValueError, match="give --since for the first night"):
        resolve_window(None, None, tmp_path)
    rc = main(
        ["sweep", "--warehouse", str(tmp_path / "wh"), "--source", "entrez", "--engine", "rule_all_drugs"]
    )
    assert rc == 2
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and json.loads(out[0])["status"] == "config_error"


# ---- the nights, through Spark ------------------------------------------------------------------


@pytest.fixture
def ncbi():
    server = FakeNcbi()
    # the five sweep fixture records, two per entry day from 2024-01-01 (edat 01-01, 01-01, 01-02, 01-02,
    # 01-03), each revised 30 days later (mdat)
    server.state.articles = articles_from_efetch_file(BASELINE, D(2024, 1, 1), per_day=2)
    server.start()
    yield server
    server.stop()


def windows(ncbi) -> list[tuple[str, str, str]]:
    return [(p["datetype"], p["mindate"], p["maxdate"]) for _, _, p in ncbi.requests_to("esearch.fcgi")]


@pytest.mark.spark
def test_nightly_windows_from_the_ledger(spark, ncbi, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NCBI_EMAIL", EMAIL)
    warehouse = tmp_path / "wh"
    config = tmp_path / "sweep.yaml"
    term = '"drug therapy, combination"[MeSH Terms]'
    config.write_text(
        yaml.safe_dump(
            {
                "entrez": {
                    "base_url": ncbi.eutils_base_url,
                    "backoff_base_s": 0.001,
                    "max_retries": 0,
                    "term": term,
                }
            }
        )
    )
    base = [
        "sweep",
        "--warehouse",
        str(warehouse),
        "--source",
        "entrez",
        "--config",
        str(config),
        "--engine",
        "rule_all_drugs",
        "--no-kb",
    ]

    def night(*extra: str) -> tuple[int, dict]:
        rc = main([*base, *extra])
        out = capsys.readouterr().out.splitlines()
        assert len(out) == 1, out  # one line of JSON, nothing else on stdout
        return rc, json.loads(out[0])

    # first night: explicit start
    rc, first = night("--since", "2024-01-01", "--until", "2024-01-02")
    assert rc == 0 and first["status"] == "committed" and first["n_articles"] == 4
    assert (first["window_since"], first["window_until"]) == ("2024-01-01", "2024-01-02")
    assert windows(ncbi) == [("edat", "2024/01/01", "2024/01/02"), ("mdat", "2024/01/01", "2024/01/02")]

    # next night: no --since, continues the day after
    rc, second = night("--until", "2024-01-05")
    assert rc == 0 and second["n_articles"] == 1
    assert windows(ncbi)[2:] == [("edat", "2024/01/03", "2024/01/05"), ("mdat", "2024/01/03", "2024/01/05")]

    # the same night again: nothing fetched, nothing run, no ledger row
    rc, again = night("--until", "2024-01-05")
    assert (rc, again["status"]) == (0, "up_to_date") and len(windows(ncbi)) == 4

    # a failed night (E-utilities down): exit 1, the JSON says why, the ledger does not move
    ncbi.inject("esearch", 500)
    rc, failed = night("--until", "2024-01-20")
    assert (rc, failed["status"]) == (1, "error") and "E-utilities failed" in failed["error"]

    # the next night's window covers the failed one: the revisions of 2024-01-31 .. 02-02 arrive
    rc, after = night("--until", "2024-02-05")
    assert rc == 0 and after["window_since"] == "2024-01-06" and after["window_until"] == "2024-02-05"
    assert windows(ncbi)[-2:] == [("edat", "2024/01/06", "2024/02/05"), ("mdat", "2024/01/06", "2024/02/05")]

    with connect_readonly(warehouse) as con:
        rows = con.execute(
            "SELECT status, window_since, window_until, datetype FROM sweep_runs ORDER BY started_at"
        ).fetchall()
        assert rows == [
            ("committed", D(2024, 1, 1), D(2024, 1, 2), "both"),
            ("committed", D(2024, 1, 3), D(2024, 1, 5), "both"),
            ("committed", D(2024, 1, 6), D(2024, 2, 5), "both"),
        ]
        assert con.execute("SELECT count(DISTINCT pmid) FROM current_articles").fetchall() == [(5,)]
        filters = [json.loads(r[0]) for r in con.execute("SELECT filters FROM sweep_runs").fetchall()]
    # the E-utilities query is recorded with each run, and it is the query that reached NCBI
    assert {f["entrez_term"] for f in filters} == {term}
    assert {p["term"] for _, _, p in ncbi.requests_to("esearch.fcgi")} == {term}


# ---- the shipped scheduler files ----------------------------------------------------------------

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def deploy_commands() -> list[list[str]]:
    """Every rexdrug command line in the systemd units and the crontab (argv after the binary)."""
    import shlex

    lines = [
        line.split("=", 1)[1]
        for line in (DEPLOY / "rexdrug-sweep.service").read_text().splitlines()
        if line.startswith(("ExecStart=", "ExecStartPost="))
    ]
    cron = [
        line for line in (DEPLOY / "crontab").read_text().splitlines() if line and not line.startswith("#")
    ]
    assert len(cron) == 1 and len(cron[0].split()) > 5
    lines += cron[0].split(None, 5)[5].split("&&")
    commands = []
    for line in lines:
        tokens = shlex.split(line)
        starts = [i for i, t in enumerate(tokens) if t.endswith("/bin/rexdrug")]
        for i in starts:
            argv = []
            for token in tokens[i + 1 :]:
                if token.startswith((">", "2>", "<", "|")):
                    break
                argv.append(token)
            commands.append(argv)
    return commands


def test_scheduler_files_run_real_commands(monkeypatch, tmp_path):
    from jobs.cli import build_parser
    from jobs.cli.sweep import config_from_args

    monkeypatch.setenv("NCBI_EMAIL", EMAIL)
    commands = deploy_commands()
    assert sorted(c[0] for c in commands) == ["report", "report", "sweep", "sweep"]
    for argv in commands:
        args = build_parser(only=argv[0]).parse_args(argv)  # SystemExit on an unknown option
        if argv[0] == "sweep":
            config = config_from_args(args)
            assert (config.source, config.since) == (
                "entrez",
                None,
            )  # the nightly form: window from the ledger


@pytest.mark.skipif(not Path("/usr/bin/systemd-analyze").exists(), reason="no systemd-analyze")
def test_systemd_units_verify():
    import subprocess

    proc = subprocess.run(
        [
            "systemd-analyze",
            "verify",
            "--man=no",
            str(DEPLOY / "rexdrug-sweep.service"),
            str(DEPLOY / "rexdrug-sweep.timer"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    complaints = [line for line in proc.stderr.splitlines() if line.strip()]
    # the only complaint allowed: the binary is not installed on this machine
    assert all("is not executable" in line for line in complaints), complaints
