"""E-utilities sweeps: real Bio.Entrez HTTP code against the fake NCBI server, faults included."""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

import pytest

from etl.pubmed.entrez import EntrezConfig, EntrezError, landed_files, redact, sweep
from etl.pubmed.parser import parse_to_tables
from tests.fakes.ncbi_server import FakeNcbi, articles_from_efetch_file

DATA = Path(__file__).resolve().parent / "data" / "pubmed"
START = dt.date(2024, 1, 1)
END = dt.date(2024, 1, 14)
SECRET = "SECRET-KEY-0123456789"


@pytest.fixture
def fake():
    server = FakeNcbi()
    # 28 real records, two per entry day over 14 days
    server.state.articles = articles_from_efetch_file(DATA / "nlm" / "pubmed22n1115.xml.gz", START, per_day=2)
    server.state.recorded_error = (DATA / "eutils" / "esearch.baderror.xml").read_bytes()
    server.state.slow_s = 0.6
    server.start()
    yield server
    server.stop()


@pytest.fixture
def config(fake):
    return EntrezConfig(
        email="rexdrug-tests@example.org", api_key=SECRET, base_url=fake.eutils_base_url, batch_size=5,
        window_cap=10, max_retries=4, backoff_base_s=0.001, backoff_max_s=0.01, timeout_s=0.3, rate_per_s=10,
    )  # fmt: skip


def _pmids(paths):
    pmids = []
    for path in paths:
        tables = parse_to_tables(path, path.name)
        assert tables["errors"].num_rows == 0
        pmids += tables["articles"].column("pmid").to_pylist()
    return pmids


def test_sweep_splits_windows_and_lands_every_record(fake, config, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    paths = sweep(config, START, END, "edat", tmp_path)
    pmids = _pmids(paths)
    assert sorted(pmids) == sorted(a.pmid for a in fake.state.articles)
    assert len(pmids) == len(set(pmids)) == 28
    searches = fake.requests_to("esearch.fcgi")
    # 14 days / 28 ids with a cap of 10: the sweep had to split down to windows under the cap
    assert len(searches) > 1
    assert all(p["usehistory"] == "y" and p["datetype"] == "edat" for _, _, p in searches)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert all(w["complete"] and w["count"] < 10 for w in manifest["windows"].values())
    assert sum(w["count"] for w in manifest["windows"].values()) == 28
    fetches = fake.requests_to("efetch.fcgi")
    assert all(int(p["retmax"]) <= 5 and p["WebEnv"].startswith("MCID_") for _, _, p in fetches)
    assert landed_files(tmp_path) == paths


def test_credentials_are_sent_but_never_logged_or_stored(fake, config, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    fake.inject("efetch", 500)  # make sure a failure path is logged too
    paths = sweep(config, START, END, "edat", tmp_path)
    sent = fake.state.requests[0][2]
    assert (
        sent["api_key"] == SECRET
        and sent["email"] == "rexdrug-tests@example.org"
        and sent["tool"] == "rexdrug"
    )
    assert SECRET not in caplog.text
    assert "api_key=***" in caplog.text  # URLs are logged, redacted
    assert SECRET not in (tmp_path / "manifest.json").read_text()
    assert all(SECRET.encode() not in p.read_bytes() for p in paths)
    assert SECRET not in repr(config)
    assert (
        redact(f"https://x/efetch.fcgi?db=pubmed&api_key={SECRET}&id=1")
        == "https://x/efetch.fcgi?db=pubmed&api_key=***&id=1"
    )


def test_sweep_survives_429_500_slow_and_truncated_responses(fake, config, tmp_path):
    fake.inject("esearch", 429, "slow")
    fake.inject("efetch", 500, "truncate", 503, "slow")
    paths = sweep(config, START, END, "edat", tmp_path)
    assert len(set(_pmids(paths))) == 28
    assert not any(fake.state.faults.values())  # every injected fault was actually served


def test_interrupted_sweep_resumes_without_refetching(fake, config, tmp_path):
    fake.inject("efetch", None, None, 500, 500, 500, 500, 500)  # third batch fails past max_retries
    with pytest.raises(EntrezError, match="giving up after 5 attempts"):
        sweep(config, START, END, "edat", tmp_path)
    landed_before = landed_files(tmp_path)
    assert len(landed_before) == 2
    fake.state.requests.clear()
    paths = sweep(config, START, END, "edat", tmp_path)
    assert paths[:2] == landed_before
    assert len(set(_pmids(paths))) == 28
    fetched_again = {int(p["retstart"]) for _, _, p in fake.requests_to("efetch.fcgi")}
    assert len(fake.requests_to("efetch.fcgi")) == len(paths) - 2  # the two landed batches were not fetched
    assert fetched_again  # and the rest were
    # a finished sweep reruns without any request at all
    fake.state.requests.clear()
    assert sweep(config, START, END, "edat", tmp_path) == paths
    assert fake.state.requests == []


def test_every_request_waits_for_the_rate_limiter(fake, config, tmp_path, monkeypatch):
    """Each HTTP request passes the limiter first, and the limiter is set to the configured rate (10/s
    with a key). Counted, not timed: gaps seen by a server on a loaded machine say nothing reliable."""
    from etl.pubmed.retry import MinIntervalLimiter

    intervals = []
    original = MinIntervalLimiter.wait

    def counted(self):
        intervals.append(self.interval)
        return original(self)

    monkeypatch.setattr(MinIntervalLimiter, "wait", counted)
    sweep(config, START, END, "edat", tmp_path)
    assert len(fake.state.requests) >= 5
    assert len(intervals) == len(fake.state.requests)
    assert config.effective_rate == 10 and intervals == pytest.approx([0.1] * len(intervals))


@pytest.mark.parametrize(
    "calls,expected_sleeps",
    [
        ([0.0, 0.0, 0.0], [0.0, 0.1, 0.1]),  # back to back: each waits one interval after the previous start
        ([0.0, 0.05, 0.5], [0.0, 0.05, 0.0]),  # a late call waits for nothing
        ([1.0, 1.02, 1.03], [0.0, 0.08, 0.1]),  # the second sleeps to its slot, the third one more interval
    ],
)
def test_min_interval_limiter_on_a_fake_clock(monkeypatch, calls, expected_sleeps):
    from etl.pubmed import retry

    clock = {"now": 0.0}
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        clock["now"] += seconds

    monkeypatch.setattr(retry.time, "monotonic", lambda: clock["now"])
    monkeypatch.setattr(retry.time, "sleep", sleep)
    limiter = retry.MinIntervalLimiter(10)
    got = []
    for at in calls:
        clock["now"] = max(clock["now"], at)
        got.append(limiter.wait())
    assert got == pytest.approx(expected_sleeps)


def test_ncbi_error_document_is_an_error(fake, config, tmp_path):
    config.db = "fleegle"
    with pytest.raises(EntrezError, match="Invalid db name specified: fleegle"):
        sweep(config, START, END, "edat", tmp_path)


def test_datetype_mdat_and_empty_window(fake, config, tmp_path):
    paths = sweep(config, START, END, "mdat", tmp_path)  # mdat is 30 days after edat in the fake
    assert paths == []
    assert fake.requests_to("esearch.fcgi")[0][2]["datetype"] == "mdat"


def test_configuration_errors(monkeypatch, config, tmp_path):
    monkeypatch.delenv("NCBI_EMAIL", raising=False)
    monkeypatch.delenv("NCBI_API_KEY", raising=False)
    with pytest.raises(ValueError, match="email"):
        EntrezConfig().resolved()
    monkeypatch.setenv("NCBI_EMAIL", "env@example.org")
    monkeypatch.setenv("NCBI_API_KEY", "from-env")
    resolved = EntrezConfig().resolved()
    assert (
        resolved.email == "env@example.org"
        and resolved.api_key == "from-env"
        and resolved.effective_rate == 10
    )
    with pytest.raises(ValueError, match="rate_per_s"):
        EntrezConfig(email="a@b.c", rate_per_s=5).validate()
    with pytest.raises(ValueError, match="datetype"):
        sweep(config, START, END, "xdat", tmp_path)
    with pytest.raises(ValueError, match="before"):
        sweep(config, END, START, "edat", tmp_path)
