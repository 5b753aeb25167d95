"""The KB's interactions section: SQL over current interactions (in-memory DuckDB, no Spark)."""

from __future__ import annotations

import itertools
import random

import duckdb
import pyarrow as pa
import pytest

from etl.kb import build_interaction_kb, interactions_export_path
from schemas.answer import DDI_LABELS
from schemas.articles import ARTICLES
from schemas.extraction import INTERACTIONS
from schemas.kb import INTERACTION_KB

EFFECT, MECHANISM, ADVISE, INT = DDI_LABELS


def pair(pmid, kind, a, b, idx=0, sentence="s", model="m", confidence=None, n=0):
    """One interaction row; ``a``/``b`` are canonical ids, already in canonical order (as the builder
    stores them)."""

    def drug(i):
        return {"surface": i.lower(), "canonical_id": i, "preferred_name": i.title(), "is_class": i == "CLS"}

    return {
        "interaction_id": f"{pmid}-{idx}-{kind}-{model}-{n}",
        "extraction_key": f"{pmid}-{idx}-{model}",
        "pmid": pmid,
        "pmid_version": 1,
        "sentence_index": idx,
        "sentence_text": sentence,
        "relation_index": n,
        "interaction_type": kind,
        "pair_key": f"{a} + {b}",
        "drug_a": drug(a),
        "drug_b": drug(b),
        "confidence": confidence,
        "model_id": model,
        "prompt_version": "ddi-v1+hints+ctx=sentence",
        "run_id": "r",
    }


def article(pmid, year):
    return {"pmid": pmid, "pmid_version": 1, "record_type": "article", "pub_year": year,
            "source_file": "f", "record_position": 0}  # fmt: skip


ROWS = [
    # A + B: 2 EFFECT, 1 MECHANISM over papers 1 and 2 (three sentences)
    pair("1", EFFECT, "A", "B", idx=0, sentence="A raised B", confidence=0.2),
    pair("2", EFFECT, "A", "B", idx=3, sentence="B with A", confidence=0.6),
    pair("2", MECHANISM, "A", "B", idx=4, sentence="A inhibits B's CYP", confidence=0.4),
    # A + C: one ADVISE, one INT: a tie, to the type first in DDI_LABELS (ADVISE before INT)
    pair("3", INT, "A", "C", idx=1, sentence="A and C interact"),
    pair("4", ADVISE, "A", "C", idx=2, sentence="avoid A with C"),
    # A + CLS from another model
    pair("5", EFFECT, "A", "CLS", model="other", confidence=0.9),
]
YEARS = {"1": 2001, "2": 2010, "3": 2005, "4": 2007, "5": 2020}


def connect(rows):
    con = duckdb.connect()
    con.register("current_interactions", pa.Table.from_pylist(rows, schema=INTERACTIONS))
    con.register(
        "current_articles", pa.Table.from_pylist([article(p, y) for p, y in YEARS.items()], schema=ARTICLES)
    )
    return con


def by_pair(table):
    return {r["pair_key"]: r for r in table.to_pylist()}


def test_one_row_per_pair_with_type_counts_majority_papers_and_years():
    table = build_interaction_kb(connect(ROWS))
    assert table.schema == INTERACTION_KB
    kb = by_pair(table)
    ab = kb["A + B"]
    assert (ab["drug_a_id"], ab["drug_a_name"], ab["drug_b_id"], ab["drug_b_name"]) == ("A", "A", "B", "B")
    assert (ab["n_effect"], ab["n_mechanism"], ab["n_advise"], ab["n_int"]) == (2, 1, 0, 0)
    assert (ab["majority_type"], ab["majority_share"]) == (EFFECT, pytest.approx(2 / 3))
    assert (ab["n_papers"], ab["n_sentences"], ab["n_mentions"], ab["pmids"]) == (2, 3, 3, ["1", "2"])
    assert (ab["first_year"], ab["last_year"]) == (2001, 2010)
    assert (ab["max_confidence"], ab["mean_confidence"]) == (0.6, pytest.approx(0.4))
    # examples: newest paper first, then pmid, sentence index
    assert [(e["pmid"], e["label"], e["sentence"]) for e in ab["example_sentences"]] == [
        ("2", EFFECT, "B with A"),
        ("2", MECHANISM, "A inhibits B's CYP"),
        ("1", EFFECT, "A raised B"),
    ]
    ac = kb["A + C"]
    assert (ac["n_advise"], ac["n_int"], ac["majority_type"], ac["majority_share"]) == (1, 1, ADVISE, 0.5)
    assert (ac["max_confidence"], ac["mean_confidence"]) == (None, None)
    assert kb["A + CLS"]["has_class_member"] and not ab["has_class_member"]
    assert kb["A + CLS"]["model_ids"] == ["other"]
    # ranked: more papers first (A + B, A + C: 2 papers; A + B has more sentences), then the rest
    assert [r["pair_key"] for r in table.to_pylist()] == ["A + B", "A + C", "A + CLS"]
    assert table.column("evidence_rank").to_pylist() == [1, 2, 3]


@pytest.mark.parametrize(
    "counts, majority",
    [
        ((0, 0, 0, 1), INT),
        ((1, 1, 1, 1), EFFECT),
        ((0, 2, 2, 1), MECHANISM),
        ((0, 0, 3, 3), ADVISE),
        ((1, 0, 2, 0), ADVISE),
    ],
)
def test_the_majority_type_breaks_ties_by_the_ddi_label_order(counts, majority):
    rows = [
        pair("1", label, "A", "B", idx=i * 10 + k)
        for i, (label, n) in enumerate(zip(DDI_LABELS, counts))
        for k in range(n)
    ]
    (entry,) = build_interaction_kb(connect(rows)).to_pylist()
    assert entry["majority_type"] == majority
    assert entry["majority_share"] == pytest.approx(max(counts) / sum(counts))


def test_min_confidence_model_and_example_filters():
    con = connect(ROWS)
    kept = by_pair(build_interaction_kb(con, min_confidence=0.5))
    assert sorted(kept) == ["A + B", "A + CLS"]  # unknown confidences are dropped above 0
    assert (kept["A + B"]["n_mentions"], kept["A + B"]["max_confidence"]) == (1, 0.6)
    assert sorted(by_pair(build_interaction_kb(con, model_id="other"))) == ["A + CLS"]
    assert len(by_pair(build_interaction_kb(con, n_examples=1))["A + B"]["example_sentences"]) == 1
    with pytest.raises(ValueError, match="min_confidence"):
        build_interaction_kb(con, min_confidence=1.5)


def test_the_interaction_kb_does_not_depend_on_row_order():
    """One sentence from two models with two types (tied examples) and confidences whose float sum
    depends on the order: the section is the same whatever order the rows arrive in."""
    rows = [
        # the newest paper (an example for sure): two models, two types, the same sentence
        pair("5", EFFECT, "A", "B", idx=2, sentence="A plus B", model="rule", confidence=0.1),
        pair("5", MECHANISM, "A", "B", idx=2, sentence="A plus B", model="smol", confidence=0.2),
        *[pair(str(p), EFFECT, "A", "B", sentence=f"A then B ({p})", confidence=c)
          for p, c in zip(range(1, 5), (0.3, 0.7, 0.45, 0.33))],
        pair("3", ADVISE, "B", "C", confidence=0.5),
    ]  # fmt: skip
    kbs = []
    rng = random.Random(7)
    orders = list(itertools.islice(itertools.permutations(range(len(rows))), 0, 5040, 97))
    orders += [rng.sample(range(len(rows)), len(rows)) for _ in range(10)]
    for order in orders:
        kbs.append(build_interaction_kb(connect([rows[i] for i in order]), n_examples=3).to_pylist())
    assert len(kbs) > 50 and all(kb == kbs[0] for kb in kbs[1:])
    ab = by_pair(pa.Table.from_pylist(kbs[0], schema=INTERACTION_KB))["A + B"]
    assert (ab["n_effect"], ab["n_mechanism"], ab["n_sentences"], ab["n_mentions"]) == (5, 1, 5, 6)
    assert [(e["pmid"], e["label"]) for e in ab["example_sentences"]] == [
        ("5", EFFECT),
        ("5", MECHANISM),
        ("2", EFFECT),
    ]


def test_an_export_writes_the_section_beside_the_output():
    from pathlib import Path

    assert interactions_export_path(Path("out/kb.csv")) == Path("out/kb.interactions.csv")
    assert interactions_export_path(Path("kb.jsonl")) == Path("kb.interactions.jsonl")
