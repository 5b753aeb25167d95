"""The confidence map refit on the real-PubMed set (``training.calibrate --confidence --realpm-outputs``):
each stored combination's raw score and rightness, the refit report, the min-confidence curve.

Gold: tests/data/realpm/gold_tiny.jsonl, split "all" (s1 and t1 one POS pair each; s2 a comparison, no
combination; s3 the pair {imatinib, interferon} and the triple {dasatinib, nilotinib, interferon}: 4 gold
sets).  Outputs (hand-made, as `rexdrug eval realpm --out` writes them), raw score P(POS+COMB+NEG) at each
type slot:
  s1  POS {gemcitabine, nab-paclitaxel}  0.9  right
  t1  POS {gemcitabine, nab-paclitaxel}  0.8  right
  s2  POS {cisplatin, carboplatin}       0.6  wrong (a comparison)
  s3  COMB {imatinib, interferon}        0.5  stored as {imatinib} ("interferon" is no KB drug): no row
  s3  POS {dasatinib, nilotinib}         0.7  wrong (a partial set: interferon missing)
  s3  NO_COMB                            -    no combination row, left out
With confidence = raw score: min 0 keeps 4 (P 2/4, R 2/4); 0.65 keeps 3 (P 2/3, R 2/4); 0.75 keeps 2
(P 1, R 2/4); 0.85 keeps s1 (P 1, R 1/4); 0.95 keeps none (P 0, R 0).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from training.calibrate import calibrate_realpm_confidence, min_confidence_curve, realpm_scores

GOLD = Path(__file__).resolve().parent / "data" / "realpm" / "gold_tiny.jsonl"


def _lp(score):
    return [
        {"label": "POS", "logprob": math.log(score)},
        {"label": "COMB", "logprob": None},
        {"label": "NEG", "logprob": None},
        {"label": "NO_COMB", "logprob": math.log(1 - score)},
    ]


def _rel(label, sentence, names):
    drugs = []
    for name in names:
        start = sentence.index(name)
        drugs.append({"name": name, "start": start, "end": start + len(name)})
    return {"label": label, "drugs": drugs}


def _outputs(tmp_path):
    gold = {r["doc_id"]: r for r in map(json.loads, GOLD.read_text().splitlines())}
    s1, s2, s3 = (gold[k]["sentence"] for k in ("s1", "s2", "s3"))
    rows = [
        {
            "doc_id": "s1",
            "parsed": [_rel("POS", s1, ["Gemcitabine", "nab-paclitaxel"])],
            "relation_evidence": [{"label_logprobs": _lp(0.9), "confidence": 0.5}],
        },
        {
            "doc_id": "t1",
            "parsed": [_rel("POS", s1, ["Gemcitabine", "nab-paclitaxel"])],
            "relation_evidence": [{"label_logprobs": _lp(0.8), "confidence": 0.5}],
        },
        {
            "doc_id": "s2",
            "parsed": [_rel("POS", s2, ["Cisplatin", "carboplatin"])],
            "relation_evidence": [{"label_logprobs": _lp(0.6), "confidence": 0.5}],
        },
        {
            "doc_id": "s3",
            "parsed": [
                _rel("COMB", s3, ["Imatinib", "interferon"]),
                _rel("POS", s3, ["dasatinib", "nilotinib"]),
                {"label": "NO_COMB", "drugs": []},
            ],
            "relation_evidence": [
                {"label_logprobs": _lp(0.5), "confidence": 0.5},
                {"label_logprobs": _lp(0.7), "confidence": 0.5},
                {"label_logprobs": None, "confidence": None},
            ],
        },
    ]
    path = tmp_path / "outputs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_stored_combinations_and_their_rightness(tmp_path):
    rows, records, _ = realpm_scores(_outputs(tmp_path), GOLD, "all")
    assert len(records) == 4
    got = [(r["doc_id"], r["relation_index"], round(r["score"], 6), r["correct"]) for r in rows]
    assert got == [("s1", 0, 0.9, True), ("t1", 0, 0.8, True), ("s2", 0, 0.6, False), ("s3", 1, 0.7, False)]


def test_min_confidence_curve(tmp_path):
    rows, records, runs = realpm_scores(_outputs(tmp_path), GOLD, "all")
    curve = min_confidence_curve(
        rows, records, runs, lambda r: r["score"], grid=(0.0, 0.65, 0.75, 0.85, 0.95)
    )
    assert [(c["min_confidence"], c["predicted"], c["precision"], c["recall"]) for c in curve] == [
        (0.0, 4, 0.5, 0.5),
        (0.65, 3, 0.6667, 0.5),
        (0.75, 2, 1.0, 0.5),
        (0.85, 1, 1.0, 0.25),
        (0.95, 0, 0.0, 0.0),
    ]


def test_refit_writes_the_map_and_reports_before_and_after(tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    out = calibrate_realpm_confidence(adapter, outputs=_outputs(tmp_path), gold=GOLD, split="all")
    assert out["relations"] == 4 and out["right"] == 2
    assert out["report"]["accuracy"] == 0.5
    assert "ece_shipped_map" not in out["before"]  # no map shipped in this folder
    # raw scores 0.9/0.8/0.6/0.7 against 1/1/0/0: bins [.6,.8) hold 0.6, 0.7 (acc 0), [.8,1] 0.8, 0.9 (acc 1)
    assert out["before"]["ece_raw"] == pytest.approx(0.5 * 0.65 + 0.5 * (1 - 0.85))
    written = json.loads((adapter / "confidence_calibration.json").read_text())
    assert written["method"] == "platt" and "realpm all" in written["fitted_on"]["split"]
    assert [c["min_confidence"] for c in out["min_confidence_curve"]] == [
        0.0,
        0.1,
        0.2,
        0.3,
        0.4,
        0.5,
        0.6,
        0.7,
        0.8,
        0.9,
    ]


def test_outputs_of_another_split_are_refused(tmp_path):
    with pytest.raises(ValueError, match="not dev sentences"):  # t1 is a train sentence
        realpm_scores(_outputs(tmp_path), GOLD, "dev")
