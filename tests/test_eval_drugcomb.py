"""DrugComb scorer: the official allenai self-test, the test split, RexDrug's variant."""

from __future__ import annotations

import json

import pytest

from etl.paths import data_path
from model.evaluation.drugcomb import (
    gold_answer,
    gold_relations,
    names_to_span_ids,
    prediction_rows,
    read_jsonl,
    relations_from_official,
    score_official,
    score_official_files,
    score_rexdrug_variant,
)

# Published by the official scorer for data/unittest_{gold,pred}.jsonl (F1, P, R).
SELF_TEST = {
    "any_partial": (0.5950540958268934, 0.6481481481481481, 0.55),
    "pos_partial": (0.4426523297491039, 0.4523809523809524, 0.4333333333333333),
    "any_exact": (0.3157894736842105, 0.3333333333333333, 0.3),
    "pos_exact": (0.16666666666666666, 0.14285714285714285, 0.2),
}


def test_official_self_test_reproduced():
    scores = score_official_files(
        data_path("drugcomb", "unittest_gold.jsonl"), data_path("drugcomb", "unittest_pred.jsonl")
    )
    for name, (f, p, r) in SELF_TEST.items():
        got = scores[name]
        assert (got["f1"], got["precision"], got["recall"]) == pytest.approx((f, p, r), abs=1e-12), name


def test_gold_of_test_split_equals_official_answers_and_scores_perfectly():
    records = read_jsonl(data_path("drugcomb", "final_test_set.jsonl"))
    gold = [r for rec in records for r in gold_relations(rec)]
    answers = relations_from_official(read_jsonl(data_path("drugcomb", "answers.jsonl")))
    assert sorted(gold, key=repr) == sorted(answers, key=repr)
    assert all(m["f1"] == 1.0 for m in score_official(gold, answers).values())


def test_predicted_names_map_to_span_ids():
    rec = {
        "doc_id": "x",
        "sentence": "A and b plus A again with c .",
        "spans": [
            {"span_id": 0, "text": "A", "start": 0, "end": 1},
            {"span_id": 1, "text": "b", "start": 6, "end": 7},
            {"span_id": 2, "text": "A", "start": 13, "end": 14},
            {"span_id": 3, "text": "c", "start": 26, "end": 27},
        ],
    }
    ids, unresolved = names_to_span_ids(
        [{"name": "a", "start": 13, "end": 14}, {"name": "B"}, {"name": "zzz"}], rec
    )
    assert ids == [2, 1] and unresolved == ["zzz"]
    rows, problems = prediction_rows(rec, [{"label": "POS", "drugs": [{"name": "c"}, {"name": "zzz"}]}])
    assert rows == [] and {p["kind"] for p in problems} == {"unresolved_drug", "unscorable_relation"}


def test_rexdrug_variant_counts_no_comb_rows_and_differs_from_official():
    rec_no = {"doc_id": "n", "spans": [{"span_id": 0, "text": "a"}, {"span_id": 1, "text": "b"}], "rels": []}
    rec_pos = {
        "doc_id": "p",
        "spans": [{"span_id": 0, "text": "a"}, {"span_id": 1, "text": "b"}],
        "rels": [{"class": "POS", "spans": [0, 1]}],
    }
    gold = [gold_answer(rec_no), gold_answer(rec_pos)]
    assert gold[0] == [{"type": "NO_COMB", "ent_set": []}]
    pred = [[], [{"type": "COMB", "ent_set": ["A", "B"]}]]  # agreed NO_COMB; right set, wrong label
    variant = score_rexdrug_variant(gold, pred)
    assert variant["any_exact"]["f1"] == 1.0  # any: label ignored, NO_COMB agreement counted
    # pos: every row is scored; the gold POS row's partner is class 0 (COMB), so recall is 1/2
    assert variant["pos_exact"]["recall"] == pytest.approx(0.5)
    official = score_official(
        gold_relations(rec_no) + gold_relations(rec_pos),
        relations_from_official([{"doc_id": "p", "drug_idxs": [0, 1], "relation_label": "COMB"}]),
    )
    assert official["pos_exact"]["f1"] == 0.0 and official["any_exact"]["f1"] == 1.0


def test_malformed_file_is_a_configuration_error(tmp_path):
    bad = tmp_path / "pred.jsonl"
    bad.write_text(json.dumps({"doc_id": 1, "drug_idxs": [0, 1]}) + "\n{oops\n")
    with pytest.raises(ValueError, match="pred.jsonl:2"):
        read_jsonl(bad)
    bad.write_text(json.dumps({"doc_id": 1}) + "\n")
    with pytest.raises(ValueError, match="drug_idxs"):
        relations_from_official(read_jsonl(bad))
