"""The combination KB: SQL over current combinations (in-memory DuckDB, no Spark)."""

from __future__ import annotations

import itertools
import json

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from etl.kb import build_kb, export_kb
from schemas.articles import ARTICLES
from schemas.extraction import COMBINATIONS
from schemas.kb import COMBINATION_KB


def combo(pmid, label, ids, sentence="s", model="m", idx=0):
    return {
        "combination_id": f"{pmid}-{idx}-{label}",
        "extraction_key": f"{pmid}-{idx}",
        "pmid": pmid,
        "pmid_version": 1,
        "sentence_index": idx,
        "sentence_text": sentence,
        "relation_index": 0,
        "label": label,
        "drugs": [
            {"surface": i.lower(), "canonical_id": i, "preferred_name": i.title(), "is_class": i == "CLS"}
            for i in ids
        ],
        "drug_set_key": " + ".join(sorted(ids)),
        "drug_set_ids": sorted(ids),
        "n_drugs": len(ids),
        "model_id": model,
        "prompt_version": "p",
        "run_id": "r",
    }


def article(pmid, year):
    return {
        "pmid": pmid,
        "pmid_version": 1,
        "record_type": "article",
        "pub_year": year,
        "source_file": "f",
        "record_position": 0,
    }


@pytest.fixture
def con():
    c = duckdb.connect()
    combos = pa.Table.from_pylist(
        [
            combo("1", "POS", ["A", "B"], "A with B helped"),
            combo("2", "POS", ["B", "A"], "B and A helped", idx=3),
            combo("2", "NEG", ["A", "B"], "A and B failed", idx=4),
            combo("3", "NEG", ["A", "C"]),
            combo("4", "POS", ["A", "C"]),
            combo("5", "COMB", ["A", "CLS"], model="other"),
        ],
        schema=COMBINATIONS,
    )
    arts = pa.Table.from_pylist(
        [article(p, y) for p, y in [("1", 2001), ("2", 2010), ("3", 2005), ("4", 2007), ("5", 2020)]],
        schema=ARTICLES,
    )
    c.register("current_combinations", combos)
    c.register("current_articles", arts)
    return c


def test_one_row_per_drug_set_with_counts_years_and_consensus(con):
    kb = build_kb(con)
    assert kb.schema == COMBINATION_KB
    rows = {r["drug_set_key"]: r for r in kb.to_pylist()}
    ab = rows["A + B"]
    assert (ab["n_pos"], ab["n_neg"], ab["n_comb"], ab["n_papers"], ab["n_mentions"]) == (2, 1, 0, 2, 3)
    assert ab["consensus_label"] == "POS" and ab["consensus_share"] == pytest.approx(2 / 3)
    assert ab["pmids"] == ["1", "2"] and (ab["first_year"], ab["last_year"]) == (2001, 2010)
    assert ab["member_ids"] == ["A", "B"] and ab["member_names"] == ["A", "B"]
    assert rows["A + C"]["consensus_label"] == "MIXED"
    assert rows["A + CLS"]["has_class_member"] is True
    # examples: most recent first
    assert ab["example_sentences"][0]["pmid"] == "2"


def test_model_filter_and_example_limit(con):
    kb = build_kb(con, model_id="other", n_examples=1)
    assert kb.column("drug_set_key").to_pylist() == ["A + CLS"]
    assert all(len(x) <= 1 for x in build_kb(con, n_examples=1).column("example_sentences").to_pylist())
    with pytest.raises(ValueError):
        build_kb(con, n_examples=0)


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_export_formats_round_trip(con, tmp_path, fmt):
    kb = build_kb(con)
    out = export_kb(kb, tmp_path / f"kb.{fmt}", fmt)
    if fmt == "parquet":
        assert pq.read_table(out).equals(kb)
    elif fmt == "jsonl":
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert [r["drug_set_key"] for r in rows] == kb.column("drug_set_key").to_pylist()
    else:
        text = out.read_text()
        assert text.splitlines()[0].startswith('"drug_set_key"') and '[""A"", ""B""]' in text
    with pytest.raises(ValueError):
        export_kb(kb, tmp_path / "x", "xlsx")


# --- confidence: aggregation, the min-confidence filter, ranking by evidence ------------------------


@pytest.fixture
def scored():
    c = duckdb.connect()

    def row(pmid, label, ids, confidence, idx=0, model="m"):
        return {
            **combo(pmid, label, ids, f"sentence {pmid}/{idx}", model=model, idx=idx),
            "combination_id": f"{pmid}-{idx}-{model}",
            "confidence": confidence,
        }

    combos = pa.Table.from_pylist(
        [
            row("1", "POS", ["A", "B"], 0.9),
            row("2", "POS", ["A", "B"], 0.5, idx=3),
            row("2", "POS", ["A", "B"], None, idx=3, model="other"),  # same sentence, a model without one
            row("3", "NEG", ["A", "C"], 0.2),
            row("4", "COMB", ["A", "C"], 0.7),
            row("5", "COMB", ["C", "D"], None),
            row("6", "POS", ["E", "F"], 0.95),
        ],
        schema=COMBINATIONS,
    )
    years = [("1", 2001), ("2", 2010), ("3", 2005), ("4", 2007), ("5", 2020), ("6", 2021)]
    c.register("current_combinations", combos)
    c.register("current_articles", pa.Table.from_pylist([article(p, y) for p, y in years], schema=ARTICLES))
    return c


def test_kb_aggregates_confidence_sentences_and_ranks_by_evidence(scored):
    kb = build_kb(scored)
    assert kb.schema == COMBINATION_KB
    rows = {r["drug_set_key"]: r for r in kb.to_pylist()}
    ab, ac, cd = rows["A + B"], rows["A + C"], rows["C + D"]
    # A + B: 3 rows in 2 sentences of 2 papers; the null confidence is left out of max and mean
    assert (ab["n_papers"], ab["n_sentences"], ab["n_mentions"]) == (2, 2, 3)
    assert ab["max_confidence"] == pytest.approx(0.9) and ab["mean_confidence"] == pytest.approx(0.7)
    assert ac["max_confidence"] == pytest.approx(0.7) and ac["mean_confidence"] == pytest.approx(0.45)
    assert ac["consensus_share"] == pytest.approx(0.5) and (ac["first_year"], ac["last_year"]) == (2005, 2007)
    assert cd["max_confidence"] is None and cd["mean_confidence"] is None
    # two papers before one; A + B before A + C on mean confidence (.7 > .45); E + F before C + D
    # (same support, a known confidence before none)
    assert kb.column("drug_set_key").to_pylist() == ["A + B", "A + C", "E + F", "C + D"]
    assert kb.column("evidence_rank").to_pylist() == [1, 2, 3, 4]


def test_min_confidence_keeps_rows_at_or_above_it_and_drops_unknown(scored):
    kb = build_kb(scored, min_confidence=0.5)
    rows = {r["drug_set_key"]: r for r in kb.to_pylist()}
    assert set(rows) == {"A + B", "A + C", "E + F"}  # C + D had no known confidence
    # A + B keeps .9 and .5 (>=), loses the null row; A + C keeps only paper 4 (.7)
    assert (rows["A + B"]["n_mentions"], rows["A + B"]["mean_confidence"]) == (2, pytest.approx(0.7))
    assert (rows["A + C"]["n_papers"], rows["A + C"]["pmids"], rows["A + C"]["consensus_label"]) == (
        1,
        ["4"],
        "COMB",
    )
    assert kb.column("drug_set_key").to_pylist() == ["A + B", "E + F", "A + C"]
    assert build_kb(scored, min_confidence=0.0).num_rows == build_kb(scored).num_rows == 4
    assert build_kb(scored, min_confidence=1.0).num_rows == 0
    for bad in (1.5, -0.1, float("nan"), True):
        with pytest.raises(ValueError, match="min_confidence"):
            build_kb(scored, min_confidence=bad)


def test_min_confidence_sql_is_the_one_filter():
    from etl.kb import min_confidence_sql

    c = duckdb.connect()
    values = [0.2, 0.5, 0.8, None]
    kept = {
        threshold: [
            v
            for (v,) in c.execute(
                f"SELECT confidence FROM (SELECT unnest($values) AS confidence) WHERE {min_confidence_sql()}",
                {"values": values, "min_confidence": threshold},
            ).fetchall()
        ]
        for threshold in (0.0, 0.5)
    }
    assert kept[0.0] == [0.2, 0.5, 0.8, None]
    assert kept[0.5] == [0.5, 0.8]


# --- `rexdrug kb export --min-confidence` on a tiny warehouse ----------------------------------------


def tiny_warehouse(root):
    """Real NLM records (tests/data/warehouse) ingested without Spark, plus hand-made sweep rows: one
    sentence per article and one combination per sentence, with confidences .9, .4 and none."""
    import hashlib
    from pathlib import Path

    from etl.pubmed.envelope import envelope_tables, parse_file_envelope
    from etl.warehouse import WarehouseLayout, connect_readonly, refresh, write_file_partitions
    from schemas.extraction import EXTRACTIONS, SWEEP_SENTENCES

    data = Path(__file__).resolve().parent / "data" / "warehouse" / "nlm"
    layout = WarehouseLayout(root)
    for order, path in enumerate(sorted(data.rglob("*.xml")), start=1):
        write_file_partitions(
            layout, path.name, envelope_tables(parse_file_envelope(str(path), path.name, order, 0))
        )
    refresh(root)
    with connect_readonly(root) as con:
        arts = con.sql(
            "SELECT pmid, pmid_version, abstract FROM current_articles "
            "WHERE abstract IS NOT NULL ORDER BY pmid LIMIT 3"
        ).fetchall()
    assert len(arts) == 3
    sentences, combos = [], []
    for (pmid, version, abstract), (ids, confidence) in zip(
        arts, [(["A", "B"], 0.9), (["A", "C"], 0.4), (["C", "D"], None)]
    ):
        text_hash = f"t{pmid}"
        sentences.append(
            {
                "pmid": pmid,
                "pmid_version": version,
                "sentence_index": 0,
                "start": 0,
                "end": 5,
                "text": abstract[:5],
                "text_hash": text_hash,
                "n_distinct_drugs": 2,
                "n_distinct_classes": 0,
                "is_candidate": True,
                "abstract_hash": hashlib.md5(abstract.encode()).hexdigest(),
            }
        )
        combos.append(
            {
                **combo(pmid, "POS", ids),
                "pmid_version": version,
                "text_hash": text_hash,
                "confidence": confidence,
            }
        )
    # the extraction row each combination comes from: the current views follow the current extraction
    extractions = [
        {
            k: c[k]
            for k in (
                "extraction_key",
                "pmid",
                "pmid_version",
                "sentence_index",
                "text_hash",
                "model_id",
                "prompt_version",
                "run_id",
            )
        }
        | {"parse_status": "ok"}
        for c in combos
    ]
    for name, rows, schema in (
        ("sentences", sentences, SWEEP_SENTENCES),
        ("combinations", combos, COMBINATIONS),
        ("extractions", extractions, EXTRACTIONS),
    ):
        (root / name / "run_id=r1").mkdir(parents=True)
        pq.write_table(
            pa.Table.from_pylist(rows, schema=schema), root / name / "run_id=r1" / "part-0.parquet"
        )
    refresh(root)
    return root


def test_kb_export_min_confidence_filters_rows_and_leaves_the_stored_kb(tmp_path, capsys):
    from jobs.cli import main

    wh = tiny_warehouse(tmp_path / "wh")
    out = tmp_path / "trusted.jsonl"
    assert (
        main(["kb", "export", "--warehouse", str(wh), "--output", str(out), "--min-confidence", "0.5"]) == 0
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["drug_set_key"], r["max_confidence"]) for r in rows] == [("A + B", 0.9)]
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["drug_sets"] == 1
    assert not (wh / "combination_kb").exists()  # an export with its own threshold writes only the file
    # the default (the sweep config's 0.0) keeps every row, rows without a confidence too, and stores it
    everything = tmp_path / "all.csv"
    assert main(["kb", "export", "--warehouse", str(wh), "--output", str(everything)]) == 0
    assert len(everything.read_text().splitlines()) == 1 + 3
    stored = pq.read_table(wh / "combination_kb" / "kb.parquet")
    assert sorted(stored.column("drug_set_key").to_pylist()) == ["A + B", "A + C", "C + D"]
    assert main(["kb", "export", "--warehouse", str(wh), "--output", str(out), "--min-confidence", "2"]) == 2


def test_the_kb_does_not_depend_on_row_order():
    """The same drug set in one sentence from two models with two labels (a rule sweep and a model
    sweep of one warehouse), and confidences whose floating-point sum depends on the order: the KB is
    the same whatever order the rows arrive in (a cluster and a local run deliver them differently)."""
    confidences = [0.1, 0.2, 0.3, 0.7, 0.45, 0.33]
    rows = [
        combo("1", "COMB", ["A", "B"], "A plus B", model="rule", idx=2),
        combo("1", "POS", ["A", "B"], "A plus B", model="smol", idx=2),
        *[combo(str(p), "POS", ["A", "B"], f"A then B ({p})") for p in range(2, 6)],
    ]
    for i, (r, conf) in enumerate(zip(rows, confidences)):
        r["combination_id"], r["confidence"] = f"c{i}", conf
    arts = pa.Table.from_pylist([article(str(p), 2020) for p in range(1, 6)], schema=ARTICLES)
    kbs = []
    for order in itertools.islice(itertools.permutations(range(6)), 0, 720, 7):
        c = duckdb.connect()
        c.register(
            "current_combinations", pa.Table.from_pylist([rows[i] for i in order], schema=COMBINATIONS)
        )
        c.register("current_articles", arts)
        kbs.append(build_kb(c, n_examples=3).to_pylist())
    assert all(kb == kbs[0] for kb in kbs[1:])
    (entry,) = kbs[0]
    # examples: newest first, then pmid, sentence, label, sentence text (a total order of what they show)
    assert [(e["pmid"], e["label"]) for e in entry["example_sentences"]] == [
        ("1", "COMB"),
        ("1", "POS"),
        ("2", "POS"),
    ]
    assert entry["mean_confidence"] == pytest.approx(sum(confidences) / 6)
