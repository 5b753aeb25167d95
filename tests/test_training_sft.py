"""CPU smoke test: one SFT step on a tiny Llama built in the test changes the LoRA weights; merge works."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from etl.config import load_config
from training.data import DataConfig, build_sft_rows, load_splits
from training.sft import SFTConfigFile, run_sft
from training.tiny import build_tiny_model_dir

FIXTURE = Path(__file__).parent / "data" / "training" / "drugcomb_tiny.jsonl"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    return str(build_tiny_model_dir(tmp_path_factory.mktemp("tiny") / "model"))


def test_sft_rows_are_prompt_completion_conversations():
    cfg = DataConfig(train_file=str(FIXTURE), dev_fraction=0.2, hints_source="spans")
    cfg.prompt.variant = "rexdrug_answer_only"
    cfg.prompt.hints = True
    splits = load_splits(cfg)
    assert splits.stats["records"] == 10 and len(splits.dev) == 2 and len(splits.train) == 8
    rows, counts = build_sft_rows(splits.train, cfg, lambda r: list(r.mentions))
    assert counts == {"rows": 8, "dropped_no_trace": 0}
    row = rows[0]
    assert [m["role"] for m in row["prompt"]] == ["system", "user"]
    assert row["completion"][0]["role"] == "assistant"
    assert "Candidate drugs in the sentence:" in row["prompt"][1]["content"]
    answer = row["completion"][0]["content"]
    assert answer.startswith("<answer>") and "<think>" not in answer


def test_one_sft_step_changes_lora_weights_and_merges(tiny_model, tmp_path):
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    out = tmp_path / "run"
    cfg = load_config(
        SFTConfigFile,
        None,
        [
            f"model.name_or_path={tiny_model}",
            "model.dtype=float32",
            f"data.train_file={FIXTURE}",
            "data.dev_fraction=0.2",
            "data.prompt.variant=rexdrug",
            "data.prompt.context=sentence",
            "data.traces=template",
            "data.hints_source=spans",
            f"train.output_dir={out}",
            "train.max_steps=1",
            "train.batch_size=2",
            "train.grad_accum=1",
            "train.learning_rate=0.05",
            "train.warmup_ratio=0",
            "train.max_length=4096",
            "train.logging_steps=1",
            "lora.r=4",
            "lora.alpha=8",
            "dev_eval.limit=2",
            "dev_eval.max_new_tokens=8",
            "export.merge=true",
        ],
    )
    summary = run_sft(cfg)
    assert summary["global_steps"] == 1 and summary["train_rows"] == 8
    assert summary["dev"]["sentences"] == 2 and set(summary["dev"]["official"]) == {
        "any_partial",
        "pos_partial",
        "any_exact",
        "pos_exact",
    }
    dev_metrics = json.loads((out / "dev_metrics.json").read_text())
    assert dev_metrics["official"] == summary["dev"]["official"]
    assert dev_metrics["parse_failure_rate"] == summary["dev"]["parse_failure_rate"]
    card = json.loads((out / "rexdrug_training.json").read_text())
    assert card["kind"] == "sft" and card["config"]["data"]["traces"] == "template"

    # LoRA B matrices start at zero: after one step with a large lr they must have moved.
    adapter = load_file(str(out / "adapter_model.safetensors"))
    lora_b = [v for k, v in adapter.items() if "lora_B" in k]
    assert lora_b and any(float(v.abs().sum()) > 0 for v in lora_b)

    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    merged = AutoModelForCausalLM.from_pretrained(out / "merged")
    reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), str(out))
    name = "model.layers.0.self_attn.q_proj.weight"
    changed = (merged.state_dict()[name] - base.state_dict()[name]).abs().sum()
    assert float(changed) > 0
    assert reloaded is not None


def test_reasoning_prompt_without_traces_is_a_config_error():
    with pytest.raises(ValueError, match="reasoning"):
        load_config(SFTConfigFile, None, ["data.prompt.variant=rexdrug"])


def test_continue_mode_trains_the_starting_adapter_further(tiny_model, tmp_path):
    """adapter_mode=continue: the same LoRA (same keys, same rank) moves on, no second adapter stacked."""
    from safetensors.torch import load_file

    common = [
        f"model.name_or_path={tiny_model}",
        "model.dtype=float32",
        f"data.train_file={FIXTURE}",
        "data.dev_fraction=0.2",
        "data.prompt.variant=rexdrug_answer_only",
        "data.prompt.context=sentence",
        "data.hints_source=spans",
        "train.max_steps=1",
        "train.batch_size=2",
        "train.grad_accum=1",
        "train.learning_rate=0.05",
        "train.warmup_ratio=0",
        "train.max_length=4096",
        "lora.r=4",
        "lora.alpha=8",
        "dev_eval.enabled=false",
    ]
    first, second = tmp_path / "first", tmp_path / "second"
    run_sft(load_config(SFTConfigFile, None, [*common, f"train.output_dir={first}"]))
    run_sft(
        load_config(
            SFTConfigFile,
            None,
            [*common, f"train.output_dir={second}", f"model.adapter={first}", "model.adapter_mode=continue"],
        )
    )
    a, b = (
        load_file(str(first / "adapter_model.safetensors")),
        load_file(str(second / "adapter_model.safetensors")),
    )
    assert set(a) == set(b) and all(a[k].shape == b[k].shape for k in a)
    assert any(float((a[k] - b[k]).abs().sum()) > 0 for k in a)
    card = json.loads((second / "rexdrug_training.json").read_text())
    assert card["starting_adapter"]["mode"] == "continue"
    assert card["starting_adapter"]["record"]["config"]["train"]["output_dir"] == str(first)


def test_adapter_mode_is_validated():
    with pytest.raises(ValueError, match="adapter_mode"):
        load_config(SFTConfigFile, None, ["model.adapter_mode=stack"])


def test_calibrate_writes_a_checked_decision_into_the_training_record(tiny_model, tmp_path):
    from training.calibrate import calibrate_adapter, main

    out = tmp_path / "run"
    run_sft(
        load_config(
            SFTConfigFile,
            None,
            [
                f"model.name_or_path={tiny_model}",
                "model.dtype=float32",
                f"data.train_file={FIXTURE}",
                "data.dev_fraction=0.2",
                "data.prompt.variant=compact",
                "data.prompt.context=sentence",
                "data.hints_source=spans",
                "data.prompt.hints=true",
                f"train.output_dir={out}",
                "train.max_steps=1",
                "train.batch_size=2",
                "train.grad_accum=1",
                "train.max_length=4096",
                "lora.r=4",
                "lora.alpha=8",
                "dev_eval.enabled=false",
            ],
        )
    )
    decision = calibrate_adapter(out, max_new_tokens=12, batch_size=2)
    assert set(decision["dev_f1_measured"]) == {"any_partial", "pos_partial", "any_exact", "pos_exact"}
    assert decision["dev_sentences"] == 2 and set(decision["label_bias"]) <= {"COMB", "NEG", "NO_COMB"}
    record = json.loads((out / "rexdrug_training.json").read_text())
    assert record["decision"] == decision and record["kind"] == "sft"
    assert main(["--adapter", str(tmp_path / "missing")]) == 2  # no training record: exit code 2
