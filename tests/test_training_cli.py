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
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base),
        LoraConfig(r=2, lora_alpha=4, target_modules="all-linear", init_lora_weights=False),
    )
    model.save_pretrained(tmp_path / "adapter")
    assert (
        main(
            [
                "train",
                "merge",
                f"base={base}",
                f"adapter={tmp_path / 'adapter'}",
                f"output={tmp_path / 'merged'}",
                "dtype=float32",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["merged"] == str(tmp_path / "merged")
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    original = AutoModelForCausalLM.from_pretrained(base)
    name = "model.layers.0.mlp.up_proj.weight"
    assert float((merged.state_dict()[name] - original.state_dict()[name]).abs().sum()) > 0


# --- `rexdrug train calibrate|package`: the training tools behind the one CLI ----------------------------


@pytest.mark.parametrize(
    ("step", "options"),
    [
        ("calibrate", ["--adapter", "--confidence", "--from-scores"]),
        ("package", ["--run", "--name", "--into"]),
    ],
)
def test_train_tools_have_help_with_the_modules_options(step, options, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", step, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: rexdrug train {step}") and all(option in text for option in options)
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--help"])
    assert exit_.value.code == 0 and step in capsys.readouterr().out


def _options(help_text: str) -> list[str]:
    return sorted(w for w in help_text.split() if w.startswith("--"))


def test_python_m_training_tools_run_the_same_parser():
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    for step in ("calibrate", "package"):
        module = subprocess.run(
            [sys.executable, "-m", f"training.{step}", "--help"],
            capture_output=True,
            text=True,
            cwd=repo,
            check=True,
        ).stdout
        cli = subprocess.run(
            [sys.executable, "-m", "jobs", "train", step, "--help"],
            capture_output=True,
            text=True,
            cwd=repo,
            check=True,
        ).stdout
        assert _options(module) == _options(cli) and "--help" in _options(cli)


def test_train_tools_configuration_errors_exit_2(tmp_path, capsys):
    assert main(["train", "calibrate", "--adapter", str(tmp_path / "missing")]) == 2  # no training record
    assert (
        main(["train", "package", "--run", str(tmp_path), "--into", str(tmp_path / "adapters")]) == 2
    )  # no adapter
    assert capsys.readouterr().out == ""  # nothing on stdout but data
    with pytest.raises(SystemExit) as exit_:  # usage errors: argparse's exit 2
        main(["train", "package"])
    assert exit_.value.code == 2
    with pytest.raises(SystemExit) as exit_:
        main(["train", "nonsense"])
    assert exit_.value.code == 2


def test_train_package_writes_the_bundled_adapter_and_prints_its_folder(tmp_path, capsys):
    import torch
    from safetensors.torch import save_file

    run = tmp_path / "run"
    run.mkdir()
    save_file(
        {"base_model.model.layers.0.q_proj.lora_A.weight": torch.ones(2, 4)},
        str(run / "adapter_model.safetensors"),
    )
    (run / "adapter_config.json").write_text(json.dumps({"r": 2, "base_model_name_or_path": "/somewhere"}))
    assert (
        main(["train", "package", "--run", str(run), "--name", "mine", "--into", str(tmp_path / "adapters")])
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out == {"packaged": str(tmp_path / "adapters" / "mine")}
    assert json.loads((tmp_path / "adapters" / "mine" / "adapter_config.json").read_text())["r"] == 2


def test_readme_train_commands_parse():
    import shlex
    from pathlib import Path

    from jobs.cli import build_parser

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    lines = [line.split("#")[0].strip() for line in readme.splitlines() if line.startswith("rexdrug train ")]
    steps = set()
    for line in lines:
        args = build_parser(only="train").parse_args(shlex.split(line)[1:])
        steps.add(args.step)
    assert {"sft", "grpo", "traces", "calibrate", "package"} <= steps
