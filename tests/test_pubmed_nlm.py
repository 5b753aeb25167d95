"""NLM file naming/order and the download client, driven over real HTTP against the fake NCBI server."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import pytest

from etl.pubmed.nlm import (
    NlmDownloadError,
    NlmFileClient,
    file_order,
    parse_listing,
    parse_md5,
    parse_name,
)
from etl.pubmed.parser import parse_to_tables
from etl.pubmed.retry import Backoff
from tests.fakes.ncbi_server import FakeNcbi

DATA = Path(__file__).resolve().parent / "data" / "pubmed"
UPDATE_NAME = "pubmed22n1115.xml.gz"
BASELINE_NAME = "pubmed22n0001.xml.gz"
FAST = Backoff(base_s=0.001, max_s=0.01)


@pytest.fixture
def fake():
    server = FakeNcbi().start()
    server.add_nlm_file("update", UPDATE_NAME, (DATA / "nlm" / UPDATE_NAME).read_bytes())
    server.add_nlm_file(
        "update", "pubmed22n1116.xml.gz", gzip.compress((DATA / "handmade" / "edge_cases.xml").read_bytes())
    )
    server.add_nlm_file(
        "baseline", BASELINE_NAME, gzip.compress((DATA / "nlm" / "pubmed20n1016.xml").read_bytes())
    )
    server.state.slow_s = 0.5
    yield server
    server.stop()


@pytest.fixture
def client(fake):
    with NlmFileClient(fake.nlm_base_url, timeout_s=0.25, max_retries=4, backoff=FAST, progress=False) as c:
        yield c


# --- names and order ----------------------------------------------------------------------------------


def test_file_order_baseline_before_updates_and_updates_in_order():
    base_last = file_order("pubmed25n1274.xml.gz", "baseline")
    first_update = file_order("pubmed25n1275.xml.gz", "update")
    second_update = file_order("pubmed25n1276.xml.gz", "update")
    assert file_order("pubmed25n0001.xml.gz", "baseline") < base_last < first_update < second_update
    # a new year's baseline replaces the previous year's updates
    assert file_order("pubmed26n0001.xml.gz", "baseline") > file_order("pubmed25n1400.xml.gz", "update")
    # the kind comes from the listing, not from the number
    assert file_order("pubmed25n0005.xml.gz", "update") > file_order("pubmed25n1274.xml.gz", "baseline")


def test_bad_names_and_kinds_are_errors():
    assert parse_name("/x/pubmed20n1016.xml") == (20, 1016)
    with pytest.raises(ValueError):
        parse_name("medline16n0902.xml.gz")
    with pytest.raises(ValueError):
        file_order("pubmed25n0001.xml.gz", "daily")


def test_listing_and_md5_parsing():
    html = '<a href="pubmed25n0002.xml.gz">x</a><a href="pubmed25n0002.xml.gz.md5">m</a><a href="pubmed25n0001.xml.gz">y</a>'
    assert parse_listing(html) == ["pubmed25n0001.xml.gz", "pubmed25n0002.xml.gz"]
    digest = "0123456789abcdef0123456789ABCDEF"
    assert parse_md5(f"MD5(pubmed25n0001.xml.gz)= {digest}\n") == digest.lower()
    assert parse_md5(f"{digest}  pubmed25n0001.xml.gz") == digest.lower()
    with pytest.raises(ValueError):
        parse_md5("nothing here")


# --- listing and downloading over HTTP ----------------------------------------------------------------


def test_list_files_per_kind(client):
    assert [f.name for f in client.list_files("update")] == [UPDATE_NAME, "pubmed22n1116.xml.gz"]
    (base,) = client.list_files("baseline")
    assert (
        base.name == BASELINE_NAME
        and base.kind == "baseline"
        and base.url.endswith("/baseline/" + BASELINE_NAME)
    )


def test_download_verifies_and_lands_atomically(client, fake, tmp_path):
    files = client.list_files("update")
    path = client.download(files[0], tmp_path)
    expected = (DATA / "nlm" / UPDATE_NAME).read_bytes()
    assert path == tmp_path / UPDATE_NAME and path.read_bytes() == expected
    assert hashlib.md5(expected).hexdigest() in (tmp_path / (UPDATE_NAME + ".md5")).read_text()
    assert not list(tmp_path.glob("*.part"))
    tables = parse_to_tables(path, path.name)
    assert (tables["articles"].num_rows, tables["deletions"].num_rows) == (28, 48)
    # a second call finds it verified on disk: no new file request
    before = len(fake.requests_to(UPDATE_NAME))
    assert client.download(files[0], tmp_path) == path
    assert len(fake.requests_to(UPDATE_NAME)) == before


def test_download_survives_429_500_slow_and_truncated_body(client, fake, tmp_path):
    fake.inject("listing", 500)
    fake.inject("md5", 429)
    fake.inject("file", 429, 500, "truncate", "slow")
    files = client.list_files("update")
    path = client.download(files[0], tmp_path)
    assert path.read_bytes() == (DATA / "nlm" / UPDATE_NAME).read_bytes()
    file_requests = fake.requests_to("/updatefiles/" + UPDATE_NAME)
    assert len(file_requests) == 5  # 429, 500, truncated, slow (timed out), then the good one


def test_truncated_transfer_resumes_with_range(client, fake, tmp_path):
    fake.inject("file", "truncate")
    path = client.download(UPDATE_NAME, tmp_path, kind="update")
    good = (DATA / "nlm" / UPDATE_NAME).read_bytes()
    assert path.read_bytes() == good
    first, second = fake.requests_to("/updatefiles/" + UPDATE_NAME)
    assert "_range" not in first[2]
    assert second[2]["_range"] == f"bytes={len(good) // 2}-"  # resumed where the truncated body stopped


def test_stale_part_file_with_wrong_bytes_is_detected_by_md5(client, tmp_path):
    good = (DATA / "nlm" / UPDATE_NAME).read_bytes()
    (tmp_path / (UPDATE_NAME + ".part")).write_bytes(b"\x00" * len(good))  # complete length, wrong content
    path = client.download(UPDATE_NAME, tmp_path, kind="update")
    assert path.read_bytes() == good


def test_skip_set_means_no_request(client, fake, tmp_path):
    assert client.download(UPDATE_NAME, tmp_path, skip={UPDATE_NAME}, kind="update") is None
    assert fake.requests_to(UPDATE_NAME) == []


def test_missing_file_fails_fast_and_retries_are_bounded(client, fake, tmp_path):
    with pytest.raises(NlmDownloadError, match="404"):
        client.download("pubmed22n9999.xml.gz", tmp_path, kind="update")
    fake.inject("md5", 500, 500, 500, 500, 500)
    with pytest.raises(NlmDownloadError, match="giving up after 5 attempts"):
        client.download(UPDATE_NAME, tmp_path, kind="update")


def test_bare_name_needs_a_kind(client, tmp_path):
    with pytest.raises(ValueError, match="kind"):
        client.download(UPDATE_NAME, tmp_path)


# --- rexdrug fetch ------------------------------------------------------------------------------------


def test_cli_fetch_lists_and_downloads(fake, tmp_path, capsys):
    from jobs.cli import main

    assert main(["fetch", "--kind", "update", "--list", "--base-url", fake.nlm_base_url]) == 0
    assert capsys.readouterr().out.split() == [UPDATE_NAME, "pubmed22n1116.xml.gz"]
    code = main(
        ["fetch", "--kind", "update", "--dest", str(tmp_path), "--base-url", fake.nlm_base_url,
         "--skip", UPDATE_NAME, "--no-progress"]
    )  # fmt: skip
    assert code == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / "pubmed22n1116.xml.gz")]
    assert not (tmp_path / UPDATE_NAME).exists()
    code = main(
        [
            "fetch",
            "--kind",
            "baseline",
            "--dest",
            str(tmp_path),
            "--base-url",
            fake.nlm_base_url,
            "--limit",
            "1",
        ]
    )
    assert code == 0 and (tmp_path / BASELINE_NAME).exists()


def test_cli_fetch_configuration_errors(fake):
    from jobs.cli import main

    assert main(["fetch", "--kind", "update", "--base-url", fake.nlm_base_url]) == 2  # no --dest
    assert main(["fetch", "--list", "--base-url", "ftp://example.org/"]) == 2
