"""The vLLM paths' configuration and glue that need no vLLM: these run in the main suite.

(The real vLLM runs are the ``vllm``-marked tests: tests/test_vllm_engine.py, test_vllm_serve.py and
test_vllm_sweep.py, in ``.venv-vllm`` via ``make test-vllm``.)
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from model.engines import EngineConfig, SamplingConfig, create_engine

ROOT = Path(__file__).resolve().parents[1]
ADAPTER = ROOT / "model" / "adapters" / "rexdrug-smol"


def test_shipped_gpu_sweep_config_loads_and_validates():
    from etl.config import load_config
    from jobs.sweep import SweepConfig

    config = load_config(SweepConfig, ROOT / "configs" / "sweep_rexdrug_vllm.yaml", ["source=demo"])
    config.validate()
    assert config.engine.kind == "vllm" and config.engine.model == "DUTIR-BioNLP/RexDrug-base"
    assert config.engine.allow_download and config.engine.adapter_path
    assert config.prompt.variant == "rexdrug" and config.prompt_warning() is None
    assert config.engine.label_bias is None  # the released weights ship no priors: none are applied


@pytest.mark.parametrize(
    ("bias", "extra_args"),
    [
        (
            {"COMB": 0.5, "NO_COMB": -0.5},
            {"rexdrug_label_bias.COMB": 0.5, "rexdrug_label_bias.NO_COMB": -0.5},
        ),
        ({"POS": 0.0, "NEG": 2}, {"rexdrug_label_bias.NEG": 2.0}),  # a zero offset is no request
        ({}, {}),
        (None, {}),
    ],
)
def test_label_priors_travel_as_flat_extra_args(bias, extra_args):
    from model.engines.vllm_engine import bias_extra_args, bias_from_extra_args

    assert bias_extra_args(bias) == extra_args
    assert bias_from_extra_args(extra_args) == {k: float(v) for k, v in (bias or {}).items() if v}
    assert json.loads(json.dumps(extra_args)) == extra_args  # what vllm serve's vllm_xargs can carry


@pytest.mark.parametrize(
    ("extra_args", "message"),
    [
        ({"rexdrug_label_bias.MAYBE": 1.0}, "unknown label 'MAYBE'"),
        ({"rexdrug_label_bias.POS": "high"}, "must be a finite number"),
        ({"rexdrug_label_bias.POS": float("nan")}, "must be a finite number"),
    ],
)
def test_bad_priors_in_a_request_are_refused(extra_args, message):
    from model.engines.vllm_engine import bias_from_extra_args

    with pytest.raises(ValueError, match=message):
        bias_from_extra_args(extra_args)
    assert bias_from_extra_args({"other_plugin": "x"}) == {}  # another plugin's arguments are not ours


@pytest.mark.parametrize(
    ("generated", "at_slot"),
    [
        ('<answer>[{"type": "', True),
        ('[{"type":"', True),
        ('[{"type" : "', True),
        ('<answer>[{"type": "POS', False),  # the label is already written
        ('[{"type": "POS", "ent_set": ["a", "b"]}, {"type": "', True),  # the second relation's slot
        ('[{"kind": "', False),
        ('"type"', False),
        ("", False),
    ],
)
def test_type_slot_is_recognised_from_the_generated_tokens(generated, at_slot):
    """The one slot definition both engines' logits hooks use, on token ids as the engines see them."""
    from model.engines.label_bias import rows_at_slot
    from training.tiny import build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    ids = tok(generated, add_special_tokens=False)["input_ids"] if generated else []
    assert rows_at_slot(tok, [ids, tok("no slot here", add_special_tokens=False)["input_ids"]]) == (
        [0] if at_slot else []
    )


@pytest.fixture
def fake_vllm(monkeypatch, tmp_path):
    calls: dict = {}

    class SamplingParams:
        def __init__(self, **kw):
            self.kw = kw

    class LLM:
        def __init__(self, **kw):
            calls["init"] = kw

        def chat(self, batch, params, use_tqdm=False, **kw):
            calls["chat"] = (params, kw)
            out = types.SimpleNamespace(text='<answer>[{"type": "NO_COMB", "ent_set": []}]</answer>')
            return [types.SimpleNamespace(outputs=[out]) for _ in batch]

    class LoRARequest:
        def __init__(self, name, lora_id, path):
            self.name, self.lora_id, self.path = name, lora_id, path

    vllm = types.ModuleType("vllm")
    vllm.LLM, vllm.SamplingParams = LLM, SamplingParams
    lora = types.ModuleType("vllm.lora")
    request = types.ModuleType("vllm.lora.request")
    request.LoRARequest = LoRARequest
    for name, module in (("vllm", vllm), ("vllm.lora", lora), ("vllm.lora.request", request)):
        monkeypatch.setitem(sys.modules, name, module)
    (tmp_path / "config.json").write_text("{}")
    yield calls, str(tmp_path)
    from model.engines import vllm_engine

    vllm_engine._ACTIVE.clear()


def test_vllm_engine_registers_the_priors_processor_and_asks_for_the_priors(fake_vllm):
    from model.engines.vllm_engine import LABEL_BIAS_PROCESSOR

    calls, model = fake_vllm
    engine = create_engine(
        EngineConfig(kind="vllm", model=model, adapter_path=str(ADAPTER), label_bias={"COMB": 1.5})
    )
    init = calls["init"]
    assert (
        init["logits_processors"] == [LABEL_BIAS_PROCESSOR]
        and init["enable_lora"]
        and init["max_lora_rank"] == 16
    )
    msgs = [{"role": "user", "content": "x"}]
    engine.generate([msgs], SamplingConfig(max_new_tokens=8))
    params, kw = calls["chat"]
    assert params.kw["extra_args"] == {"rexdrug_label_bias.COMB": 1.5} and kw["lora_request"].path == str(
        ADAPTER
    )
    engine.label_bias = {}  # asked without priors: no extra_args at all
    engine.generate([msgs], SamplingConfig(max_new_tokens=8))
    assert "extra_args" not in calls["chat"][0].kw
    engine.close()
    module, _cls = LABEL_BIAS_PROCESSOR.split(":")
    assert (ROOT / (module.replace(".", "/") + ".py")).is_file()


def test_label_priors_are_for_engines_that_bias_logits():
    EngineConfig(kind="vllm", label_bias={"COMB": 1.0}).validate()
    EngineConfig(kind="ctranslate2", label_bias={"COMB": 1.0}).validate()
    with pytest.raises(ValueError, match="transformers, ctranslate2 or vllm engine"):
        EngineConfig(kind="openai", label_bias={"COMB": 1.0}).validate()
