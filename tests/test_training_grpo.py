"""CPU smoke test: one GRPO step on a tiny Llama built in the test, with registry rewards, changes the weights."""

from __future__ import annotations

from pathlib import Path

import pytest

from etl.config import load_config
from training import rewards as R
from training.data import DataConfig, build_grpo_rows, load_splits
from training.grpo import GRPOConfigFile, run_grpo
from training.tiny import build_tiny_model_dir

FIXTURE = Path(__file__).parent / "data" / "training" / "drugcomb_tiny.jsonl"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    return str(build_tiny_model_dir(tmp_path_factory.mktemp("tiny") / "model"))


def _length_reward(completions, **kwargs):
    """Test-only reward: a random tiny model scores 0 on every real reward, so advantages would all be 0;
    this one varies within a group, which gives the policy gradient something to follow."""
    return [len(R.completion_text(c)) / 100.0 for c in completions]


@pytest.fixture(scope="module", autouse=True)
def test_reward():
    if "test_length" not in R.REWARDS:
        R.register("test_length")(_length_reward)
    yield
    R.REWARDS.pop("test_length", None)


def test_grpo_rows_carry_reward_columns():
    cfg = DataConfig(train_file=str(FIXTURE), dev_fraction=0.2)
    cfg.prompt.variant = "rexdrug_answer_only"
    rows = build_grpo_rows(load_splits(cfg).train, cfg)
    assert {"prompt", "gold", "sentence", "task", "doc_id"} <= set(rows[0])
    # the rewards accept these rows as they are: a perfect answer to row 0 scores 1 on accuracy
    gold = rows[0]["gold"]
    perfect = (
        "<answer>" + gold + "</answer>"
        if gold != "[]"
        else '<answer>[{"type": "NO_COMB", "ent_set": []}]</answer>'
    )
    assert R.accuracy_reward([perfect], gold=[gold], sentence=[rows[0]["sentence"]], task=["drugcomb"]) == [
        1.0
    ]


def test_batch_must_hold_whole_groups():
    with pytest.raises(ValueError, match="multiple"):
        load_config(GRPOConfigFile, None, ["grpo.batch_size=6", "grpo.num_generations=4"])
    with pytest.raises(ValueError, match="unknown reward"):
        load_config(GRPOConfigFile, None, ["rewards.nonsense=1"])


def test_one_grpo_step_changes_weights(tiny_model, tmp_path):
    from safetensors.torch import load_file

    out = tmp_path / "grpo"
    cfg = load_config(
        GRPOConfigFile,
        None,
        [
            f"model.name_or_path={tiny_model}",
            "model.dtype=float32",
            f"data.train_file={FIXTURE}",
            "data.dev_fraction=0.2",
            "data.prompt.variant=rexdrug_answer_only",
            "data.prompt.context=sentence",
            "data.limit=2",
            f"grpo.output_dir={out}",
            "grpo.max_steps=1",
            "grpo.batch_size=4",
            "grpo.num_generations=4",
            "grpo.max_completion_length=12",
            "grpo.learning_rate=0.05",
            "grpo.warmup_ratio=0",
            "lora.r=4",
            "lora.alpha=8",
            "export.merge=true",
        ],
    )
    cfg.rewards = {"format": 0.05, "accuracy": 0.8, "test_length": 1.0}
    summary = run_grpo(cfg)
    assert summary["global_steps"] == 1
    logged = summary["reward_history"][0]
    assert "rewards/accuracy/mean" in logged and "rewards/test_length/mean" in logged
    adapter = load_file(str(out / "adapter_model.safetensors"))
    lora_b = [v for k, v in adapter.items() if "lora_B" in k]
    assert lora_b and any(float(v.abs().sum()) > 0 for v in lora_b)
    assert (out / "merged" / "config.json").is_file()
