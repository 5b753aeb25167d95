"""`rexdrug eval` end to end on the bundled files."""

from __future__ import annotations

import json

from etl.paths import data_path
from jobs.cli import main


def test_eval_drugcomb_scores_files(capsys):
    rc = main(
        [
            "eval",
            "drugcomb",
            "--gold",
            str(data_path("drugcomb", "unittest_gold.jsonl")),
            "--pred",
            str(data_path("drugcomb", "unittest_pred.jsonl")),
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and round(out["scores"]["any_partial"]["f1"], 5) == 0.59505


def test_eval_drugcomb_runs_a_baseline(tmp_path, capsys):
    rc = main(["eval", "drugcomb", "--model", "rule_no_comb", "--limit", "6", "--out", str(tmp_path)])
    summary = json.loads(capsys.readouterr().out)
    assert rc == 0 and summary["sentences"] == 6 and summary["parse_failure_rate"] == 0.0
    assert summary["official"]["any_exact"] == 0.0  # predicting nothing finds nothing
    assert json.loads((tmp_path / "summary.json").read_text())["model_id"] == "rule:no_comb"
    assert (tmp_path / "errors.jsonl").read_text().strip()  # gold relations were missed: listed


def test_eval_ddi_scores_gold_against_itself(tmp_path, capsys):
    gold = data_path("ddi13", "test.jsonl")
    rc = main(["eval", "ddi", "--pred", str(gold)])
    out = json.loads(capsys.readouterr().out)
    micro = out["scores"]["micro"]
    assert rc == 0 and micro["f1"] == 1.0 and micro["fp"] == micro["fn"] == 0 and micro["tp"] > 800
    assert "processed" in out["benchmark"]


def test_bad_config_exits_2(capsys):
    assert main(["eval", "drugcomb", "--model", "embedded", "--set", "batch_size=0", "--limit", "1"]) == 2
