"""Taiyi-style multi-task rows: three tasks, two languages, dev hold-out respected, DDI targets scorable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training import rewards as R
from training.data import load_drugcomb, split_train_dev
from training.multitask import MultitaskConfig, build_multitask_rows, read_rows, write_rows

FIXTURE = Path(__file__).parent / "data" / "training" / "drugcomb_tiny.jsonl"


def test_rows_for_all_tasks_and_languages(tmp_path):
    cfg = MultitaskConfig(drugcomb_file=str(FIXTURE), dev_fraction=0.2, limit_per_task=8)
    rows, counts = build_multitask_rows(cfg)
    tasks = {r["task"] for r in rows}
    assert tasks == {"drugcomb", "ddi", "ner"}
    assert {r["lang"] for r in rows} == {"en", "zh"}
    assert sum(counts.values()) == len(rows) == 8 + 8 + 8
    # the DrugComb dev hold-out never leaks into the rows
    _train, dev = split_train_dev(load_drugcomb(FIXTURE), 0.2, 13)
    assert not {d.doc_id for d in dev} & {r["source_id"] for r in rows if r["task"] != "ddi"}
    zh = next(r for r in rows if r["lang"] == "zh" and r["task"] == "drugcomb")
    assert "药物" in zh["prompt"][-1]["content"]
    # DDI targets are what the DDI rewards score as perfect
    ddi = next(r for r in rows if r["task"] == "ddi")
    gold = ddi["completion"][0]["content"].removeprefix("<answer>").removesuffix("</answer>")
    assert R.ddi_accuracy_reward([ddi["completion"]], gold=[gold], task=["ddi"]) == [1.0]
    path = write_rows(rows, tmp_path / "rows.jsonl")
    back = read_rows(path)
    assert len(back) == len(rows) and set(back[0]) == {"prompt", "completion"}
    assert json.loads(path.read_text().splitlines()[0])["task"] in ("drugcomb", "ddi", "ner")


def test_unknown_task_is_a_config_error():
    with pytest.raises(ValueError, match="subset"):
        build_multitask_rows(MultitaskConfig(tasks=["drugcomb", "qa"]))
