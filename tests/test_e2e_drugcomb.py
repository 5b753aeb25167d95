"""End-to-end quality check on a small slice: DrugComb test abstracts -> PubMed XML -> sweep -> scores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from etl.drugcomb_xml import pmid_of, write_pubmed_xml
from etl.pubmed.parser import parse_to_tables
from jobs.e2e_drugcomb import run_e2e

pytestmark = pytest.mark.spark

DRUGCOMB = Path(__file__).resolve().parents[1] / "data" / "drugcomb" / "final_test_set.jsonl"


def records(n: int) -> list[dict]:
    with DRUGCOMB.open() as fh:
        return [json.loads(line) for _, line in zip(range(n), fh)]


def test_converted_xml_parses_back_to_the_same_abstracts(tmp_path):
    recs = records(5)
    path = tmp_path / "dc.xml.gz"
    mapping = write_pubmed_xml(recs, path)
    articles = parse_to_tables(path, path.name)["articles"].to_pylist()
    assert [a["pmid"] for a in articles] == [pmid_of(r) for r in recs] == [mapping[r["doc_id"]] for r in recs]
    # the parser turns exotic spaces (NBSP) into plain ones; offsets stay aligned
    assert [len(a["abstract"]) for a in articles] == [len(r["paragraph"]) for r in recs]
    assert [a["abstract"].split() for a in articles] == [r["paragraph"].split() for r in recs]


def test_pipeline_loses_nothing_against_the_model_only_evaluation(spark, tmp_path):
    result = run_e2e(
        records(40), tmp_path / "wh", ["engine.kind=rule_all_drugs"], model_only=True, spark=spark
    )
    pipeline, model_only = result["pipeline"], result["model_only"]
    assert pipeline["n_gold_relations"] > 20
    # what the pipeline loses before the model is accounted for, reason by reason
    assert sum(pipeline["loss_reasons"].values()) == pipeline["gold_relations_lost_before_model"]
    for metric, scores in model_only["official"].items():
        # the rule sees the same sentences either way; only sentences cut differently may cost a little
        assert pipeline["official"][metric]["f1"] >= scores["f1"] - 0.03, metric
    assert pipeline["official"]["any_exact"]["f1"] > 0.3
