"""`rexdrug report`: the numbers on the page are the warehouse's, untrusted text is escaped, an empty
warehouse gets a page that says so, and the page loads in headless Chromium without an error.

Hand-made tables on an in-memory DuckDB (expectations computed by hand below), one real warehouse
swept with the rule engine through Spark, and the browser tests (marker ``browser``; skipped without
a ``chromium`` binary).
"""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from etl.kb import build_kb
from etl.report import collect_report, highlight, pmid_link, render_html
from etl.warehouse import connect_readonly
from jobs.cli import main
from schemas.articles import ARTICLES, INGEST_ERRORS
from schemas.extraction import COMBINATION_DRUGS, COMBINATIONS, EXTRACTION_ERRORS, EXTRACTIONS, SWEEP_RUNS
from tests import browser

FIXTURES = Path(__file__).parent / "data" / "sweep"
EVIL = '<script>console.error("injected")</script> A & C <img src=x onerror=alert(1)>'
DATA_KEY = re.compile(r'data-key="([^"]+)">([^<]*)<')


def data_keys(page: str) -> dict[str, str]:
    return {html.unescape(k): html.unescape(v) for k, v in DATA_KEY.findall(page)}


# ---- hand-made tables ---------------------------------------------------------------------------


def drug(cid, surface, start=None, end=None):
    return {
        "surface": surface,
        "start": start,
        "end": end,
        "grounded": start is not None,
        "canonical_id": cid,
        "preferred_name": cid.title() if cid != "CLS" else "Some class",
        "is_class": cid == "CLS",
        "normalized": True,
    }


def combo(pmid, idx, label, drugs, sentence):
    ids = sorted({d["canonical_id"] for d in drugs})
    return {
        "combination_id": f"{pmid}-{idx}",
        "extraction_key": f"k{pmid}-{idx}",
        "pmid": pmid,
        "pmid_version": 1,
        "sentence_index": idx,
        "sentence_text": sentence,
        "relation_index": 0,
        "label": label,
        "drugs": drugs,
        "drug_set_key": " + ".join(ids),
        "drug_set_ids": ids,
        "n_drugs": len(ids),
        "model_id": "m",
        "prompt_version": "p",
        "run_id": "r2",
    }


COMBOS = [
    combo("1", 0, "POS", [drug("A", "a", 0, 1), drug("B", "b", 7, 8)], "a with b helped"),
    combo("2", 3, "POS", [drug("B", "b", 0, 1), drug("A", "a", 6, 7)], "b and a helped"),
    combo("2", 4, "NEG", [drug("A", "a"), drug("B", "b")], "a and b failed"),  # no offsets: found by name
    combo("3", 0, "NEG", [drug("A", "a", 0, 1), drug("C", "c", 6, 7)], "a and c failed"),
    combo("4", 0, "POS", [drug("A", "A"), drug("C", "C")], EVIL),
    combo("5", 0, "COMB", [drug("A", "a", 0, 1), drug("CLS", "cls", 6, 9)], "a and cls together"),
]
YEARS = {"1": 2001, "2": 2010, "3": 2005, "4": 2007, "5": None}
CONFIDENCE = [0.9, 0.7, 0.2, 0.5, 0.5, 1.0]  # A+B: mean 0.6


def tables(with_confidence: bool = False) -> dict[str, pa.Table]:
    rows = [{**c, "confidence": conf} for c, conf in zip(COMBOS, CONFIDENCE)] if with_confidence else COMBOS
    combos = pa.Table.from_pylist(rows, schema=COMBINATIONS)  # the schema has the column; values or nulls
    arts = pa.Table.from_pylist(
        [
            {
                "pmid": p,
                "pmid_version": 1,
                "record_type": "article",
                "pub_year": y,
                "title": f"<i>Title {p}</i>",
                "source_file": "f",
                "record_position": 0,
            }
            for p, y in YEARS.items()
        ],
        schema=ARTICLES,
    )
    drugs = pa.Table.from_pylist(
        [
            {
                "combination_id": c["combination_id"],
                "pmid": c["pmid"],
                "pmid_version": 1,
                "label": c["label"],
                "drug_set_key": c["drug_set_key"],
                "position": i,
                "surface": d["surface"],
                "canonical_id": d["canonical_id"],
                "preferred_name": d["preferred_name"],
                "model_id": "m",
                "prompt_version": "p",
                "run_id": "r2",
            }
            for c in COMBOS
            for i, d in enumerate(c["drugs"])
        ],
        schema=COMBINATION_DRUGS,
    )

    def extraction(key, status, n):
        return {
            "extraction_key": key,
            "pmid": "9",
            "pmid_version": 1,
            "sentence_index": 0,
            "parse_status": status,
            "n_relations": n,
            "model_id": "m",
            "prompt_version": "p",
            "run_id": "r2",
        }

    # six answered sentences with relations, two answered with none (NO_COMB), one engine failure
    extractions = pa.Table.from_pylist(
        [extraction(f"e{i}", "ok", 1) for i in range(6)]
        + [extraction("n1", "ok", 0), extraction("n2", "repaired", 0), extraction("f1", "engine_error", 0)],
        schema=EXTRACTIONS,
    )
    errors = pa.Table.from_pylist(
        [
            {
                "stage": "engine",
                "reason": "timeout <after 30 s>",
                "model_id": "m",
                "prompt_version": "p",
                "run_id": "r2",
            }
        ]
        * 2
        + [
            {
                "stage": "parse",
                "reason": "invalid_json",
                "model_id": "m",
                "prompt_version": "p",
                "run_id": "r2",
            }
        ],
        schema=EXTRACTION_ERRORS,
    )
    runs = pa.Table.from_pylist(
        [
            {
                "run_id": rid,
                "status": status,
                "source": "files",
                "model_id": "m",
                "n_articles": na,
                "n_candidates": nc,
                "n_extracted": nc,
                "n_combinations": ncomb,
                "n_errors": ne,
                "n_failed": 0,
                "stage_seconds": [{"stage": "ingest", "seconds": 2.0}, {"stage": "extract", "seconds": s}],
                "started_at": datetime(2026, 1, day, 2, 0, tzinfo=UTC),
            }
            for rid, status, na, nc, ncomb, ne, s, day in [
                ("r1", "committed", 3, 4, 2, 0, 5.0, 1),
                ("r2", "failed", 2, 5, 4, 3, 7.5, 2),
            ]
        ],
        schema=SWEEP_RUNS,
    )
    ingest_errors = pa.Table.from_pylist(
        [{"source_file": "f", "stage": "record", "reason": "bad record"}], schema=INGEST_ERRORS
    )
    return {
        "current_combinations": combos,
        "current_articles": arts,
        "current_combination_drugs": drugs,
        "current_extractions": extractions,
        "current_extraction_errors": errors,
        "sweep_runs": runs,
        "ingest_errors": ingest_errors,
    }


def connection(with_confidence: bool = False, kb: str = "stored") -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for name, table in tables(with_confidence).items():
        con.register(name, table)
    stored = build_kb(con) if kb == "stored" else build_kb(con).schema.empty_table()
    con.register("combination_kb", stored)
    return con


# ---- pure pieces --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "drugs", "expected"),
    [
        ("a with b", [{"start": 0, "end": 1}, {"start": 7, "end": 8}], "<mark>a</mark> with <mark>b</mark>"),
        # overlapping and touching spans merge into one mark
        (
            "gemcitabine-oxaliplatin",
            [{"start": 0, "end": 11}, {"start": 5, "end": 23}],
            "<mark>gemcitabine-oxaliplatin</mark>",
        ),
        # no offsets: the first case-insensitive match of the surface
        ("Cisplatin and cisplatin", [{"surface": "CISPLATIN"}], "<mark>Cisplatin</mark> and cisplatin"),
        ("script c", [{"surface": "c"}], "script <mark>c</mark>"),  # whole words only
        # offsets outside the sentence are not trusted; unknown surfaces mark nothing
        ("x & y", [{"start": 3, "end": 40, "surface": "z"}], "x &amp; y"),
        # text inside and outside marks is escaped
        ("<b>A</b> & B", [{"start": 3, "end": 4}], "&lt;b&gt;<mark>A</mark>&lt;/b&gt; &amp; B"),
        (None, None, ""),
    ],
)
def test_highlight(text, drugs, expected):
    assert highlight(text, drugs) == expected


@pytest.mark.parametrize(
    ("pmid", "expected"),
    [
        (
            "20551640",
            '<a href="https://pubmed.ncbi.nlm.nih.gov/20551640/" rel="noopener noreferrer">PMID 20551640</a>',
        ),
        ('1" onclick="x', "1&quot; onclick=&quot;x"),  # not a PMID: shown escaped, never a link
        ("javascript:alert(1)", "javascript:alert(1)"),
    ],
)
def test_pmid_link(pmid, expected):
    assert pmid_link(pmid) == expected


# ---- collected numbers (hand-computed from the tables above) -------------------------------------


def test_collected_numbers_are_the_tables():
    data = collect_report(connection())
    assert data.totals == {
        "articles": 5,
        "ingest_errors": 1,
        "runs": 2,
        "combinations": 6,
        "drug_sets": 3,
        "extraction_errors": 3,
        "label:POS": 3,
        "label:NEG": 2,
        "label:COMB": 1,
        "label:NO_COMB": 2,
    }
    assert sorted(data.years, key=repr) == sorted(
        [
            (2001, "POS", 1),
            (2005, "NEG", 1),
            (2007, "POS", 1),
            (2010, "NEG", 1),
            (2010, "POS", 1),
            (None, "COMB", 1),
        ],
        key=repr,
    )
    assert [(p["canonical_id"], p["n_partners"], p["n_sets"]) for p in data.partners] == [
        ("A", 3, 3),
        ("B", 1, 1),
        ("C", 1, 1),
        ("CLS", 1, 1),
    ]
    assert data.error_reasons == [("engine", "timeout <after 30 s>", 2), ("parse", "invalid_json", 1)]
    assert [r["run_id"] for r in data.runs] == ["r1", "r2"]
    assert data.runs[1]["stage_seconds"] == {"ingest": 2.0, "extract": 7.5}
    top = data.top_sets[0]
    assert (top["drug_set_key"], top["n_papers"], top["n_mentions"], top["consensus_label"]) == (
        "A + B",
        2,
        3,
        "POS",
    )
    assert [p["pmid"] for p in top["papers"]] == ["2", "1"]  # most recent first
    assert [e["sentence_text"] for e in top["examples"]] == [
        "b and a helped",
        "a and b failed",
        "a with b helped",
    ]
    assert data.has_confidence is False and top["confidence"] is None


def test_confidence_is_the_mean_of_the_rows_when_the_column_exists():
    data = collect_report(connection(with_confidence=True))
    conf = {s["drug_set_key"]: s["confidence"] for s in data.top_sets}
    assert data.has_confidence
    assert (
        conf["A + B"] == pytest.approx(0.6) and conf["A + C"] == pytest.approx(0.5) and conf["A + CLS"] == 1.0
    )
    page = render_html(data)
    assert 'data-key="confidence">0.60<' in page
    assert "confidence" not in render_html(collect_report(connection()))


def test_kb_computed_when_the_stored_kb_is_empty():
    stored, computed = collect_report(connection()), collect_report(connection(kb="empty"))
    assert computed.kb_source == "computed" and computed.totals["drug_sets"] == 3
    assert [s["drug_set_key"] for s in computed.top_sets] == [s["drug_set_key"] for s in stored.top_sets]
    assert "computed from the current combinations" in render_html(computed)


def test_page_shows_the_numbers_and_escapes_untrusted_text():
    data = collect_report(connection(), warehouse="<wh>")
    page = render_html(data)
    keys = data_keys(page)
    assert {k: keys[k] for k in data.totals} == {k: str(v) for k, v in data.totals.items()}
    assert keys["year:unknown"] == "1"
    for raw in ("<script", "<img", "<i>Title", "<wh>", "timeout <after"):
        assert raw not in page
    assert "&lt;script&gt;" in page and "&lt;i&gt;Title 2&lt;/i&gt;" in page
    assert "<mark>A</mark> &amp; <mark>C</mark>" in page  # drugs found by name in the escaped sentence
    assert page.count('href="https://pubmed.ncbi.nlm.nih.gov/') >= 5
    # self-contained: no resource is referenced, the plots are inline SVG
    assert not re.search(
        r'\b(src|href)="(?!#|https://pubmed\.ncbi\.nlm\.nih\.gov/\d+/)', page
    )  # '#': SVG-internal
    assert not re.search(r"url\((?!#)", page) and "@import" not in page
    assert "<script" not in page and page.count("<svg") == 3


# ---- empty and missing warehouses (real warehouse folders, no Spark) ------------------------------


@pytest.mark.parametrize("kind", ["ingest-only", "swept-nothing"])
def test_empty_warehouse_gets_a_page_that_says_so(tmp_path, capsys, kind):
    from etl.warehouse import refresh, refresh_duckdb

    warehouse = tmp_path / "wh"
    refresh_duckdb(warehouse) if kind == "ingest-only" else refresh(warehouse)
    output = tmp_path / "out" / "r.html"
    assert main(["report", "--warehouse", str(warehouse), "--output", str(output)]) == 0
    assert capsys.readouterr().out.strip() == str(output)
    page = output.read_text()
    assert "Nothing extracted yet" in page
    assert data_keys(page)["articles"] == "0"


def test_missing_warehouse_is_a_configuration_error(tmp_path, capsys):
    assert main(["report", "--warehouse", str(tmp_path / "nothing")]) == 2
    assert not (tmp_path / "nothing" / "report.html").exists()


# ---- a real warehouse, swept with the rule engine -----------------------------------------------


@pytest.fixture(scope="module")
def swept(spark, tmp_path_factory) -> Path:
    """Two nights: the baseline file, then the update file (deletes, revises, adds a version)."""
    from etl.config import load_config
    from jobs.kb import build_and_store_kb
    from jobs.sweep import SweepConfig, run_sweep

    warehouse = tmp_path_factory.mktemp("report") / "wh"
    for inputs in ([FIXTURES / "baseline"], [FIXTURES / "baseline", FIXTURES / "updatefiles"]):
        config = load_config(
            SweepConfig,
            None,
            [
                f"warehouse={warehouse}",
                "source=files",
                f"inputs={json.dumps([str(p) for p in inputs])}",
                "engine.kind=rule_all_drugs",
            ],
        )
        run_sweep(config, spark=spark)
    build_and_store_kb(warehouse)
    return warehouse


@pytest.mark.spark
def test_report_numbers_equal_sql_on_a_swept_warehouse(swept, tmp_path, capsys):
    output = tmp_path / "report.html"
    assert main(["report", "--warehouse", str(swept), "--output", str(output)]) == 0
    page = output.read_text()
    keys = data_keys(page)
    with connect_readonly(swept) as con:
        one = lambda sql: str(con.execute(sql).fetchone()[0])
        assert keys["runs"] == one("SELECT count(*) FROM sweep_runs") == "2"
        assert keys["articles"] == one("SELECT count(*) FROM current_articles")
        assert keys["combinations"] == one("SELECT count(*) FROM current_combinations")
        assert int(keys["combinations"]) > 0
        assert keys["drug_sets"] == one("SELECT count(*) FROM combination_kb")
        assert keys["extraction_errors"] == one("SELECT count(*) FROM current_extraction_errors")
        for label, n in con.execute(
            "SELECT label, count(*) FROM current_combinations GROUP BY label"
        ).fetchall():
            assert keys[f"label:{label}"] == str(n)
        for run_id, n in con.execute("SELECT run_id, n_combinations FROM sweep_runs").fetchall():
            assert f'data-run="{run_id}" data-col="n_combinations">{n}<' in page
        top = [
            r[0]
            for r in con.execute(
                "SELECT drug_set_key FROM combination_kb ORDER BY n_papers DESC, n_mentions DESC, drug_set_key LIMIT 20"
            ).fetchall()
        ]
        current_pmids = {
            r[0] for r in con.execute("SELECT DISTINCT pmid FROM current_combinations").fetchall()
        }
    assert re.findall(r'<div class="set" data-set="([^"]+)"', page) == [html.escape(k) for k in top]
    # what the latest run changed, as `rexdrug kb diff` computes it
    from jobs.kb_diff import kb_diff

    _, changes = kb_diff(swept)
    assert changes  # the update file revised, added and deleted articles
    for kind in ("new", "changed", "removed"):
        assert keys[f"changes:{kind}"] == str(sum(c["change"] == kind for c in changes))
    linked = set(re.findall(r'href="https://pubmed\.ncbi\.nlm\.nih\.gov/(\d+)/"', page))
    assert linked == current_pmids  # the deleted article (1129034) is in history, not on the page
    assert "1129034" not in linked


# ---- in the browser -----------------------------------------------------------------------------

needs_chromium = pytest.mark.skipif(browser.chromium_binary() is None, reason="no chromium binary")


@pytest.mark.browser
@needs_chromium
def test_report_loads_in_headless_chromium(tmp_path):
    con = connection(with_confidence=True)
    data = collect_report(con, warehouse=str(tmp_path))
    page = tmp_path / "report.html"
    page.write_text(render_html(data), encoding="utf-8")
    loaded = browser.load_page(page.as_uri())
    assert loaded.errors == []  # the injected <script> stayed text; nothing tried to load
    assert loaded.title == f"rexdrug report: {tmp_path}"
    # the numbers as the browser shows them are the tables' numbers
    assert {k: loaded.data_keys[k] for k in data.totals} == {k: str(v) for k, v in data.totals.items()}
    assert loaded.data_keys["combinations"] == str(
        con.execute("SELECT count(*) FROM current_combinations").fetchone()[0]
    )
    assert browser.pixel_stddev(loaded.screenshot_png) > 10


@pytest.mark.browser
@pytest.mark.spark
@needs_chromium
def test_swept_warehouse_report_loads_in_headless_chromium(swept, tmp_path):
    output = tmp_path / "report.html"
    assert main(["report", "--warehouse", str(swept), "--output", str(output)]) == 0
    loaded = browser.load_page(output.as_uri())
    assert loaded.errors == []
    with connect_readonly(swept) as con:
        for key, sql in (
            ("combinations", "SELECT count(*) FROM current_combinations"),
            ("runs", "SELECT count(*) FROM sweep_runs"),
            ("drug_sets", "SELECT count(*) FROM combination_kb"),
        ):
            assert loaded.data_keys[key] == str(con.execute(sql).fetchall()[0][0])
    assert browser.pixel_stddev(loaded.screenshot_png) > 10


@pytest.mark.browser
@needs_chromium
def test_browser_check_sees_errors_and_blank_pages(tmp_path):
    """The checks above can fail: a script error, a console error and a failed load are seen; a blank page is blank."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<html><body><script>console.error("e"); missing();</script>'
        '<img src="http://127.0.0.1:9/none.png"></body></html>'
    )
    loaded = browser.load_page(bad.as_uri())
    assert len(loaded.errors) == 3, loaded.errors
    blank = tmp_path / "blank.html"
    blank.write_text("<html><body></body></html>")
    assert browser.pixel_stddev(browser.load_page(blank.as_uri()).screenshot_png) == 0
