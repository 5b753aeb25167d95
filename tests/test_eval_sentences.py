"""Sentence-level (real PubMed) evaluation on a tiny hand-made gold file with hand-computed scores.

Gold (tests/data/realpm/gold_tiny.jsonl, dev split):
  s1 "Gemcitabine plus nab-paclitaxel improved survival."      POS {0 gemcitabine, 1 nab-paclitaxel}
  s2 "Cisplatin versus carboplatin was compared ..."           none (a comparison)
  s3 "Imatinib ... with interferon, and dasatinib plus nilotinib with interferon ..."
                                                                COMB {0, 1}, POS {2, 3, 4}
Predictions (PRED below), five combination rows:
  s1 POS {Gemcitabine, nab-paclitaxel} (names only)   -> {0, 1}: exact hit, same label
  s1 POS {Gemcitabine, survival}                      -> {0, "survival"?}: no gold mention -> miss
  s2 POS {Cisplatin, carboplatin}                     -> {0, 1}: no gold combination -> miss
  s3 POS {Imatinib, interferon} (offsets)             -> {0, 1}: exact set, label COMB != POS
  s3 POS {dasatinib, nilotinib} (offsets)             -> {2, 3}: partial of {2, 3, 4}, Jaccard 2/3
any_exact:   P = 2/5, R = 2/3 (gold s1, s3a found; s3b not)
any_partial: P = (1 + 0 + 0 + 1 + 2/3) / 5 = 8/15, R = (1 + 1 + 2/3) / 3 = 8/9
pos_exact:   gold POS rows s1, s3b; P = 1/5 (only s1), R = 1/2
typed_exact: P = 1/5, R = 1/3;   labels: 2 sets matched, 1 with the same label
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model.evaluation.drugcomb import read_jsonl
from model.evaluation.sentences import (
    label_agreement,
    mention_counts,
    predicted_sets,
    score_sentences,
    select_split,
    sentence_errors,
)

GOLD = Path(__file__).resolve().parent / "data" / "realpm" / "gold_tiny.jsonl"


def _drug(name, start=None, end=None):
    return {"name": name, "start": start, "end": end}


PRED = {
    "s1": [
        {"label": "POS", "drugs": [_drug("Gemcitabine"), _drug("nab-paclitaxel")]},
        {"label": "POS", "drugs": [_drug("Gemcitabine"), _drug("survival")]},
    ],
    "s2": [{"label": "POS", "drugs": [_drug("Cisplatin", 0, 9), _drug("carboplatin", 17, 28)]}],
    "s3": [
        {"label": "POS", "drugs": [_drug("Imatinib", 0, 8), _drug("interferon", 24, 34)]},
        {"label": "POS", "drugs": [_drug("dasatinib", 40, 49), _drug("nilotinib", 55, 64)]},
        {"label": "NO_COMB", "drugs": []},
    ],
}


@pytest.fixture
def dev():
    return select_split(read_jsonl(GOLD), "dev")


def test_split_selection():
    records = read_jsonl(GOLD)
    assert [r["doc_id"] for r in select_split(records, "dev")] == ["s1", "s2", "s3"]
    assert [r["doc_id"] for r in select_split(records, "train")] == ["t1"]
    assert len(select_split(records, "all")) == 4
    with pytest.raises(ValueError, match="unknown split"):
        select_split(records, "test")


@pytest.mark.parametrize(
    "name,precision,recall",
    [
        ("any_exact", 2 / 5, 2 / 3),
        ("any_partial", 8 / 15, 8 / 9),
        ("pos_exact", 1 / 5, 1 / 2),
        ("typed_exact", 1 / 5, 1 / 3),
    ],
)
def test_combination_scores(dev, name, precision, recall):
    scores = score_sentences(dev, PRED)
    got = scores["combinations"][name]
    assert got["precision"] == pytest.approx(precision, abs=1e-4)
    assert got["recall"] == pytest.approx(recall, abs=1e-4)
    assert scores["predicted_combinations"] == 5 and scores["gold_combinations"] == 3


def test_label_agreement(dev):
    assert score_sentences(dev, PRED)["labels"] == {"matched_sets": 2, "same_label": 1, "agreement": 0.5}
    assert label_agreement([], []) == {"matched_sets": 0, "same_label": 0, "agreement": None}


def test_unresolved_drug_stays_in_the_set(dev):
    (s1,) = [r for r in dev if r["doc_id"] == "s1"]
    rows = predicted_sets(s1, PRED["s1"])
    assert [set(r.drugs) for r in rows] == [
        {"gemcitabine", "nabpaclitaxel"},
        {"gemcitabine", ("?", "survival")},
    ]
    # a relation whose drugs collapse to one gold mention carries no combination
    assert predicted_sets(s1, [{"label": "POS", "drugs": [_drug("Gemcitabine"), _drug("gemcitabine")]}]) == []


@pytest.mark.parametrize(
    "mentions,expected",
    [
        ([], (0, 0, 2)),
        ([{"start": 0, "end": 11}, {"start": 17, "end": 31}], (2, 2, 2)),
        (
            [{"start": 0, "end": 11}, {"start": 3, "end": 8}],
            (1, 2, 2),
        ),  # two mentions on one gold span: one hit
        (
            [{"start": 20, "end": 25}, {"start": 41, "end": 49}],
            (1, 2, 2),
        ),  # partial overlap counts, "survival" not
    ],
)
def test_mention_counts(dev, mentions, expected):
    assert mention_counts(dev[0]["spans"], mentions) == expected


def test_mentions_and_selection(dev):
    mentions = {
        "s1": [{"start": 0, "end": 11}, {"start": 17, "end": 31}, {"start": 41, "end": 49}],
        "s2": [{"start": 0, "end": 9}, {"start": 17, "end": 28}, {"start": 45, "end": 53}],
        "s3": [{"start": s["start"], "end": s["end"]} for s in dev[2]["spans"]],
    }
    scores = score_sentences(dev, PRED, mentions=mentions, candidates={"s1": True, "s2": True, "s3": False})
    m = scores["drug_mentions"]
    assert (m["tp"], m["n_pred"], m["n_gold"]) == (9, 11, 9)
    assert m["precision"] == pytest.approx(9 / 11, abs=1e-4) and m["recall"] == 1.0
    assert scores["selection"] == {
        "candidates": 2,
        "share_sent_to_model": pytest.approx(2 / 3, abs=1e-4),
        "gold_combinations_in_candidates": 1,
        "recall_ceiling": pytest.approx(1 / 3, abs=1e-4),
    }


def test_sentence_errors_name_the_drugs(dev):
    errors = {e["doc_id"]: e for e in sentence_errors(dev, PRED)}
    assert set(errors) == {"s1", "s2", "s3"}  # s1 has an extra set, s2 a false one, s3 a partial one
    assert sorted(names for _, names in errors["s1"]["pred"]) == [
        ["gemcitabine", "nabpaclitaxel"],
        ["gemcitabine", "survival?"],
    ]
    assert errors["s2"]["gold"] == []


def test_nothing_predicted_scores_zero(dev):
    scores = score_sentences(dev, {})
    assert scores["combinations"]["any_exact"] == {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "n_gold": 3,
        "n_pred": 0,
    }


def test_cli_scores_rules_side_by_side(tmp_path, capsys):
    from jobs.cli import main

    code = main(
        [
            "eval",
            "realpm",
            "--gold",
            str(GOLD),
            "--models",
            "rule_all_drugs,rule_no_comb",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    by_model = {s["model"]: s for s in result["models"]}
    assert by_model["rule_no_comb"]["predicted_combinations"] == 0
    assert by_model["rule_no_comb"]["combinations"]["any_exact"]["recall"] == 0.0
    rule = by_model["rule_all_drugs"]
    assert rule["sentences"] == 3 and rule["gold_combinations"] == 3
    # the rule puts every matcher drug of a candidate sentence into one set: s1 right, s2 wrong
    assert rule["combinations"]["any_exact"]["n_pred"] >= 2
    assert (tmp_path / "rule_all_drugs" / "summary.json").is_file()
    assert main(["eval", "realpm", "--gold", str(GOLD), "--model", "rule_no_comb", "--split", "test"]) == 2


def test_two_mentions_of_one_drug_are_one_member(dev):
    """s3 names interferon twice; a model naming it without offsets resolves to the first mention, and
    the set still equals the gold set that used the second one."""
    (s3,) = [r for r in dev if r["doc_id"] == "s3"]
    pred = {"s3": [{"label": "POS", "drugs": [_drug("dasatinib"), _drug("nilotinib"), _drug("interferon")]}]}
    scores = score_sentences([s3], pred)["combinations"]
    assert scores["any_exact"]["precision"] == 1.0 and scores["any_exact"]["recall"] == 0.5
    assert scores["typed_exact"]["precision"] == 1.0


def test_relations_are_scored_as_the_sweep_stores_them():
    """Known non-drugs leave a predicted set before scoring, as in the combinations stage."""
    from model.evaluation.run import stored_relations

    sentence = "Iron and sulfur with cisplatin plus gemcitabine."
    mentions = [
        {"start": 0, "end": 4, "surface": "Iron", "id": "x", "kind": "other_substance"},
        {"start": 9, "end": 15, "surface": "sulfur", "id": "y", "kind": "other_substance"},
    ]
    parsed = [
        {"label": "POS", "drugs": [_drug("Iron", 0, 4), _drug("sulfur", 9, 15)]},
        {
            "label": "POS",
            "drugs": [_drug("Iron", 0, 4), _drug("cisplatin", 21, 30), _drug("gemcitabine", 36, 47)],
        },
    ]
    assert sentence[21:30] == "cisplatin" and sentence[36:47] == "gemcitabine"
    stored = stored_relations(parsed, mentions)
    assert [[d["name"] for d in r["drugs"]] for r in stored] == [[], ["cisplatin", "gemcitabine"]]
