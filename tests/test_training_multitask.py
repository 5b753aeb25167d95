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


DDI_FIXTURE = Path(__file__).parent / "data" / "training" / "ddi_tiny.jsonl"


class FakeMatcher:
    """Finds the names it was given, in sentence order (stands in for the drug matcher)."""

    def __init__(self, names):
        self.names = names

    def __call__(self, sentence):
        low = sentence.lower()
        return sorted((n for n in self.names if n.lower() in low), key=lambda n: low.index(n.lower()))


def test_samples_are_seeded_with_the_positive_share(monkeypatch):
    cfg = MultitaskConfig(
        tasks=["ddi"], ddi_file=str(DDI_FIXTURE), zh_fraction=0.0, samples={"ddi": 4}, ddi_positive_share=0.5
    )
    rows, counts = build_multitask_rows(cfg)
    again, _ = build_multitask_rows(cfg)
    assert rows == again and counts == {"ddi/en": 4}
    negatives = [r for r in rows if "NO_COMB" in r["completion"][0]["content"]]
    assert len(negatives) == 2  # 4 * 0.5 from the 2 negative sentences, 2 from the 4 positive ones
    assert all("positive" not in r for r in rows)  # the sampling mark is not written


def test_ddi_rows_are_the_request_eval_ddi_sends(monkeypatch):
    """English DDI rows are model.prompting's ddi prompt; with ddi_hints=found its Drugs line is the
    matcher's list, as an end-to-end run and the sweep build it."""
    import training.multitask as M
    from model.prompting import PromptConfig, build_messages

    monkeypatch.setattr(M, "candidate_drug_finder", lambda: FakeMatcher(["cefazolin", "GL"]))
    cfg = MultitaskConfig(tasks=["ddi"], ddi_file=str(DDI_FIXTURE), zh_fraction=0.0, ddi_hints="found")
    rows, _ = build_multitask_rows(cfg)
    row = next(r for r in rows if "cefazolin against" in r["prompt"][0]["content"])
    sentence = "Synergism was observed when GL was combined with cefazolin against Bacillus subtilis and Klebsiella oxytoca ."
    assert row["prompt"] == build_messages(
        sentence, None, PromptConfig(variant="ddi", hints=True, context="sentence"), ["GL", "cefazolin"]
    )
    assert (
        row["completion"][0]["content"]
        == '<answer>[{"type": "EFFECT", "ent_set": ["GL", "cefazolin"]}]</answer>'
    )
    # a sentence where the matcher finds nothing has no Drugs line (the ddi prompt without hints)
    bare = next(r for r in rows if "ibogaine enhances" in r["prompt"][0]["content"])
    assert "\nDrugs:" not in bare["prompt"][0]["content"]


def test_drugcomb_rows_in_the_shipped_prompt_equal_the_sft_rows(monkeypatch):
    """drugcomb_prompt=compact + hints: a stage-2 replay row is exactly the SFT row rexdrug-smol trained on."""
    import training.multitask as M
    from training.data import DataConfig, build_sft_rows, load_splits

    names = ["cisplatin", "gemcitabine", "paclitaxel", "carboplatin", "bevacizumab", "5-FU", "leucovorin"]
    monkeypatch.setattr(M, "candidate_drug_finder", lambda: FakeMatcher(names))
    cfg = MultitaskConfig(
        tasks=["drugcomb"],
        drugcomb_file=str(FIXTURE),
        dev_fraction=0.2,
        context="window",
        drugcomb_prompt="compact",
        drugcomb_hints=True,
    )
    rows, counts = build_multitask_rows(cfg)
    data = DataConfig(train_file=str(FIXTURE), dev_fraction=0.2)
    data.prompt.variant, data.prompt.hints, data.prompt.context = "compact", True, "window"
    finder = FakeMatcher(names)
    sft, _ = build_sft_rows(load_splits(data).train, data, lambda r: finder(r.sentence))
    assert counts == {"drugcomb/en": 8}
    assert sorted(json.dumps(r["prompt"]) for r in rows) == sorted(json.dumps(r["prompt"]) for r in sft)


@pytest.mark.parametrize(
    "override, message",
    [
        ("drugcomb_prompt=long", "drugcomb_prompt"),
        ("drugcomb_prompt=rexdrug", "reasoning"),
        ("ddi_hints=matcher", "ddi_hints"),
        ("samples={qa: 3}", "samples"),
        ("samples={ddi: 0}", "samples"),
        ("ddi_positive_share=1.5", "ddi_positive_share"),
    ],
)
def test_multitask_config_errors(override, message):
    from etl.config import load_config

    with pytest.raises(ValueError, match=message):
        load_config(MultitaskConfig, None, [override])


def test_two_stage_schedule_on_the_tiny_model(tmp_path):
    """Stage 1 (task data) then stage 2 (all tasks) from stage 1's adapter: both stages move the weights."""
    from safetensors.torch import load_file

    from etl.config import load_config
    from training.sft import SFTConfigFile, run_sft
    from training.tiny import build_tiny_model_dir

    base = build_tiny_model_dir(tmp_path / "base")
    stage1 = MultitaskConfig(
        output=str(tmp_path / "stage1.jsonl"),
        tasks=["drugcomb"],
        drugcomb_file=str(FIXTURE),
        dev_fraction=0.2,
    )
    stage2 = MultitaskConfig(
        output=str(tmp_path / "stage2.jsonl"),
        tasks=["drugcomb", "ddi", "ner"],
        drugcomb_file=str(FIXTURE),
        dev_fraction=0.2,
        ddi_file=str(DDI_FIXTURE),
        samples={"drugcomb": 2, "ddi": 4, "ner": 2},
    )
    for cfg in (stage1, stage2):
        write_rows(build_multitask_rows(cfg)[0], cfg.output)
    common = [
        f"model.name_or_path={base}",
        "model.dtype=float32",
        "data.prompt.variant=compact",
        "train.max_steps=1",
        "train.batch_size=2",
        "train.grad_accum=1",
        "train.learning_rate=0.05",
        "train.warmup_ratio=0",
        "train.max_length=2048",
        "lora.r=4",
        "lora.alpha=8",
        "dev_eval.enabled=false",
    ]
    one, two = tmp_path / "stage1", tmp_path / "stage2"
    s1 = run_sft(
        load_config(
            SFTConfigFile, None, [*common, f"data.rows_file={stage1.output}", f"train.output_dir={one}"]
        )
    )
    s2 = run_sft(
        load_config(
            SFTConfigFile,
            None,
            [
                *common,
                f"data.rows_file={stage2.output}",
                f"train.output_dir={two}",
                f"model.adapter={one}",
                "model.adapter_mode=continue",
            ],
        )
    )
    assert s1["data"] == {"rows_file": stage1.output} and s2["data"] == {"rows_file": stage2.output}
    a = load_file(str(one / "adapter_model.safetensors"))
    b = load_file(str(two / "adapter_model.safetensors"))
    # LoRA's B matrices start at zero: stage 1 moved them; stage 2 moved them further, same adapter
    assert any(float(a[k].abs().sum()) > 0 for k in a if "lora_B" in k)
    assert set(a) == set(b) and any(float((a[k] - b[k]).abs().sum()) > 0 for k in a)
