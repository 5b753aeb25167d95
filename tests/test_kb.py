"""The combination KB: SQL over current combinations (in-memory DuckDB, no Spark)."""

from __future__ import annotations

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
        "drugs": [{"surface": i.lower(), "canonical_id": i, "preferred_name": i.title(), "is_class": i == "CLS"} for i in ids],
        "drug_set_key": " + ".join(sorted(ids)),
        "drug_set_ids": sorted(ids),
        "n_drugs": len(ids),
        "model_id": model,
        "prompt_version": "p",
        "run_id": "r",
    }


def article(pmid, year):
    return {"pmid": pmid, "pmid_version": 1, "record_type": "article", "pub_year": year, "source_file": "f", "record_position": 0}


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
    arts = pa.Table.from_pylist([article(p, y) for p, y in [("1", 2001), ("2", 2010), ("3", 2005), ("4", 2007), ("5", 2020)]], schema=ARTICLES)
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
