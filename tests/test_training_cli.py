"""`rexdrug train`: --config/override parsing, configuration errors (exit 2), merge of a LoRA adapter."""

from __future__ import annotations

import argparse
import json

import pytest

from jobs.cli import main
from jobs.cli.train import split_config_option
from training.tiny import build_tiny_model_dir


def test_config_option_anywhere_among_overrides():
    args = argparse.Namespace(config=None, overrides=["a.b=1", "--config", "x.yaml", "c=2"])
    split_config_option(args)
    assert args.config == "x.yaml" and args.overrides == ["a.b=1", "c=2"]
    args = argparse.Namespace(config=None, overrides=["--config=y.yaml"])
    split_config_option(args)
    assert args.config == "y.yaml" and args.overrides == []
    with pytest.raises(ValueError, match="unknown option"):
        split_config_option(argparse.Namespace(config=None, overrides=["--nope"]))


def test_bad_config_exits_2(tmp_path):
    assert main(["train", "sft", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert main(["train", "grpo", "grpo.num_generations=1"]) == 2
    assert main(["train", "sft", "data.prompt.variant=rexdrug"]) == 2  # reasoning without traces


def test_merge_command(tmp_path, capsys):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = build_tiny_model_dir(tmp_path / "base")
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=2, lora_alpha=4, target_modules="all-linear", init_lora_weights=False))
    model.save_pretrained(tmp_path / "adapter")
    assert main(["train", "merge", f"base={base}", f"adapter={tmp_path / 'adapter'}",
                 f"output={tmp_path / 'merged'}", "dtype=float32"]) == 0
    assert json.loads(capsys.readouterr().out)["merged"] == str(tmp_path / "merged")
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    original = AutoModelForCausalLM.from_pretrained(base)
    name = "model.layers.0.mlp.up_proj.weight"
    assert float((merged.state_dict()[name] - original.state_dict()[name]).abs().sum()) > 0
