"""`rexdrug sweep --source entrez` end to end through Spark against the local fake NCBI (issue 11, class 13).

The nightly sweep of the design card: E-utilities by date window (new and revised records), landed
under the warehouse, ingested, split, extracted (rule engine) and tabled.  The E-utilities settings
come from the sweep's config (``entrez:`` section) and the environment (NCBI_EMAIL, NCBI_API_KEY), and
the fake server records what reached it.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import yaml

from etl.config import load_config
from etl.pubmed.entrez import parse_day
from etl.warehouse import connect_readonly
from jobs.cli import main
from jobs.sweep import SweepConfig
from tests.fakes.ncbi_server import FakeNcbi, articles_from_efetch_file

BASELINE = Path(__file__).parent / "data" / "sweep" / "baseline" / "pubmed99n0001.xml"
FIXTURE_PMIDS = {"9058098", "2581512", "1129034", "20551640", "6089554"}
EMAIL, API_KEY, TOOL = "sweep-tests@example.org", "key-from-the-environment", "rexdrug-sweep-e2e"


def query(warehouse: Path, sql: str) -> list[tuple]:
    with connect_readonly(warehouse) as con:  # the views resolve relative to the warehouse
        return con.execute(sql).fetchall()


@pytest.fixture
def ncbi():
    server = FakeNcbi()
    # the five sweep fixture records, two per entry day from 2024-01-01 (revised 30 days later)
    server.state.articles = articles_from_efetch_file(BASELINE, dt.date(2024, 1, 1), per_day=2)
    server.start()
    yield server
    server.stop()


@pytest.mark.spark
def test_entrez_sweep_ingests_and_extracts_with_the_eutilities_settings(
    spark, ncbi, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("NCBI_EMAIL", EMAIL)
    monkeypatch.setenv("NCBI_API_KEY", API_KEY)
    warehouse = tmp_path / "wh"
    config = tmp_path / "sweep.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "entrez": {
                    "base_url": ncbi.eutils_base_url,
                    "tool": TOOL,
                    "batch_size": 3,
                    "backoff_base_s": 0.001,
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

    # the nightly form: no --until (up to yesterday), new and revised records
    assert main([*base, "--since", "2024-01-01"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["n_articles"] == 5 and first["n_candidates"] > 0 and first["n_combinations"] > 0
    assert first["n_extracted"] == first["n_candidates"] and first["n_failed"] == 0
    assert query(warehouse, "SELECT count(DISTINCT pmid) FROM current_articles") == [(5,)]
    assert {r[0] for r in query(warehouse, "SELECT DISTINCT pmid FROM current_combinations")} <= FIXTURE_PMIDS
    assert query(warehouse, "SELECT DISTINCT source_kind FROM ingest_ledger") == [("entrez",)]
    assert query(warehouse, "SELECT count(*) FROM current_combinations") == [(first["n_combinations"],)]

    searches = ncbi.requests_to("esearch.fcgi")
    fetches = ncbi.requests_to("efetch.fcgi")
    yesterday = f"{dt.date.today() - dt.timedelta(days=1):%Y/%m/%d}"
    assert sorted(p["datetype"] for _, _, p in searches) == ["edat", "mdat"]
    assert {(p["mindate"], p["maxdate"]) for _, _, p in searches} == {("2024/01/01", yesterday)}
    # 5 records in batches of 3 (entrez.batch_size), for each date type
    assert sorted(int(p["retmax"]) for _, _, p in fetches) == [2, 2, 3, 3]
    for _, _, params in searches + fetches:
        assert (params.get("email"), params.get("api_key"), params.get("tool")) == (EMAIL, API_KEY, TOOL)

    # an explicit window in E-utilities' own date form: landed again, nothing new to extract
    assert main([*base, "--since", "2024/01/01", "--until", "2024/01/02", "datetype=edat"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert (second["n_articles"], second["n_candidates"], second["n_extracted"]) == (0, 0, 0)
    assert second["n_skipped"] == first["n_candidates"]
    last = ncbi.requests_to("esearch.fcgi")[-1][2]
    assert (last["datetype"], last["mindate"], last["maxdate"]) == ("edat", "2024/01/01", "2024/01/02")
    assert query(warehouse, "SELECT count(DISTINCT pmid) FROM current_articles") == [(5,)]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-01-05", dt.date(2024, 1, 5)),  # ISO, as `rexdrug ingest` takes it
        ("2024/01/05", dt.date(2024, 1, 5)),  # E-utilities' own form, as the README's sweep shows it
        (" 2024/1/5 ", dt.date(2024, 1, 5)),
        (dt.date(2024, 1, 5), dt.date(2024, 1, 5)),  # YAML reads an unquoted 2024-01-05 as a date
        (dt.datetime(2024, 1, 5, 13, 0), dt.date(2024, 1, 5)),
        ("01/05/2024", None),
        ("2024-13-01", None),
        ("yesterday", None),
        (20240105, None),
    ],
)
def test_parse_day(value, expected):
    if expected is None:
        with pytest.raises(ValueError, match="YYYY-MM-DD or YYYY/MM/DD"):
            parse_day(value, "since")
    else:
        assert parse_day(value, "since") == expected


@pytest.mark.parametrize(
    ("overrides", "env", "message"),
    [
        (["since=2024/02/01", "until=2024-01-01"], {"NCBI_EMAIL": EMAIL}, "before since"),
        (["since=2024-01-01"], {}, "email address is required"),
        (["since=soon"], {"NCBI_EMAIL": EMAIL}, "since must be a day"),
        (["since=2024-01-01", "entrez.batch_size=0"], {"NCBI_EMAIL": EMAIL}, "batch_size"),
        (
            ["since=2024-01-01", "entrez.rate_per_s=5"],
            {"NCBI_EMAIL": EMAIL},
            r"rate_per_s must be in \(0, 3\]",
        ),
        (["since=2024-01-01", "datetype=cdat"], {"NCBI_EMAIL": EMAIL}, "datetype"),
    ],
)
def test_entrez_sweep_configuration_errors_come_before_spark(overrides, env, message, monkeypatch, tmp_path):
    for name in ("NCBI_EMAIL", "NCBI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        load_config(SweepConfig, None, [f"warehouse={tmp_path}", "source=entrez", *overrides])


def test_entrez_sweep_window_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("NCBI_EMAIL", EMAIL)
    config = load_config(SweepConfig, None, [f"warehouse={tmp_path}", "source=entrez", "since=2024-01-01"])
    assert config.entrez_window() == (dt.date(2024, 1, 1), dt.date.today() - dt.timedelta(days=1))
    assert config.entrez_datetypes == ("edat", "mdat")  # new and revised records, as `rexdrug ingest` does
