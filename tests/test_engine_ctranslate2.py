"""The ctranslate2 engine: conversion into the cache, its answers, the label priors, its configuration.

Conversion is exercised on the tiny Llama (``training.tiny``) with a LoRA built here, in a temp cache;
answers and priors on the bundled rexdrug-smol (135M, converted once into the user's cache like the
embedded model), against the transformers engine on the same prompt.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from model.engines import EngineConfig, SamplingConfig, create_engine, engine_model_id


@pytest.fixture(scope="module")
def tiny_with_adapter(tmp_path_factory):
    """A tiny base folder and a LoRA adapter on it whose weights are not zero (so merging changes them)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from training.tiny import build_tiny_model_dir

    root = tmp_path_factory.mktemp("ct2")
    base = build_tiny_model_dir(root / "base")
    model = AutoModelForCausalLM.from_pretrained(base)
    lora = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    lora.save_pretrained(root / "adapter")
    return str(base), str(root / "adapter")


def _tiny_config(base, adapter, **kw):
    return EngineConfig(
        kind="ctranslate2",
        model=base,
        adapter_path=adapter,
        compute_type=kw.pop("compute_type", "int8"),
        **kw,
    )


# --- conversion into the cache --------------------------------------------------------------------------


def test_conversion_is_atomic_keyed_and_done_once(tiny_with_adapter, tmp_path, monkeypatch):
    from model.engines import ctranslate2_engine as ct2

    monkeypatch.setenv("REXDRUG_CACHE", str(tmp_path / "cache"))
    base, adapter = tiny_with_adapter
    config = _tiny_config(base, adapter)
    calls = []
    real = ct2._merge_and_convert

    def counting(*args):
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(ct2, "_merge_and_convert", counting)
    folder = ct2.ensure_converted_model(config)
    assert (
        ct2.is_converted(folder)
        and (folder / "model.bin").is_file()
        and (folder / "tokenizer.json").is_file()
    )
    marker = json.loads((folder / "rexdrug-ct2.json").read_text())
    assert marker["compute_type"] == "int8" and marker["eos_token_ids"]
    assert sorted(p.name for p in folder.parent.iterdir()) == sorted([folder.name, folder.name + ".lock"])
    assert ct2.ensure_converted_model(config) == folder and len(calls) == 1  # second call reuses it
    # the key: compute type and adapter are part of it
    assert ct2.converted_model_dir(_tiny_config(base, adapter, compute_type="float32")) != folder
    assert ct2.converted_model_dir(_tiny_config(base, None)) != folder


def test_a_failed_conversion_leaves_nothing_behind(tiny_with_adapter, tmp_path, monkeypatch):
    from model.engines import ctranslate2_engine as ct2

    monkeypatch.setenv("REXDRUG_CACHE", str(tmp_path / "cache"))
    base, adapter = tiny_with_adapter

    def half_written(config, merged, out):
        out.mkdir(parents=True)
        (out / "model.bin").write_bytes(b"partial")
        raise RuntimeError("killed mid-conversion")

    monkeypatch.setattr(ct2, "_merge_and_convert", half_written)
    config = _tiny_config(base, adapter)
    with pytest.raises(RuntimeError, match="mid-conversion"):
        ct2.ensure_converted_model(config)
    target = ct2.converted_model_dir(config)
    assert not target.exists()
    assert [p.name for p in target.parent.iterdir()] == [target.name + ".lock"]  # no temp folder left


def test_tiny_engine_generates_within_its_budget(tiny_with_adapter, tmp_path, monkeypatch):
    monkeypatch.setenv("REXDRUG_CACHE", str(tmp_path / "cache"))
    base, adapter = tiny_with_adapter
    engine = create_engine(_tiny_config(base, adapter, compute_type="float32", batch_size=2))
    messages = [
        [{"role": "user", "content": "Sentence: cisplatin plus gemcitabine ."}],
        [
            {
                "role": "user",
                "content": "Sentence: Paclitaxel plus carboplatin was well tolerated in patients .",
            }
        ],
    ]
    results = engine.generate(messages * 2, SamplingConfig(max_new_tokens=5))
    texts = [r.text for r in results]
    assert len(texts) == 4 and texts[:2] == texts[2:]  # order kept whatever the length sorting
    assert 4 <= engine.stats["generated_tokens"] <= 4 * 5  # at most 5 new tokens a prompt (ids, not text:
    # a random model's byte tokens decode to replacement characters that re-encode longer)
    assert [r.error for r in results] == [None] * 4


# --- the priors at a type slot, on hand-made logits -------------------------------------------------------


@pytest.fixture(scope="module")
def slot_checker():
    """A CTranslate2Engine with only what the slot check reads (the tiny tokenizer), no model."""
    from model.engines.ctranslate2_engine import CTranslate2Engine
    from model.engines.label_bias import label_first_tokens
    from training.tiny import build_tiny_tokenizer

    engine = CTranslate2Engine.__new__(CTranslate2Engine)
    engine.tokenizer = build_tiny_tokenizer()
    engine.first_tokens = label_first_tokens(engine.tokenizer)
    engine._label_of_token = {tok: label for label, tok in engine.first_tokens.items()}
    engine._greedy = True
    return engine


# logits at the slot: NO_COMB 2.0 and POS 1.7 (margin 0.3), COMB 1.0, other tokens 0
@pytest.mark.parametrize(
    ("bias", "expected"),
    [
        ({}, "NO_COMB"),  # no priors: the decoded token stands
        ({"NO_COMB": -0.2}, "NO_COMB"),  # 1.8 > 1.7: still NO_COMB
        ({"NO_COMB": -0.5}, "POS"),  # 1.5 < 1.7: POS
        ({"NO_COMB": -0.5, "COMB": 0.9}, "COMB"),  # COMB 1.9 beats POS 1.7 and NO_COMB 1.5
        ({"POS": -5.0}, "NO_COMB"),
    ],
)
def test_priors_choose_the_biased_label_at_the_slot(slot_checker, bias, expected):
    tok = slot_checker.tokenizer
    first = slot_checker.first_tokens
    prefix = tok('<answer>[{"type": "', add_special_tokens=False)["input_ids"]
    ids = (
        prefix
        + [first["NO_COMB"]]
        + tok('_COMB", "ent_set": []}]</answer>', add_special_tokens=False)["input_ids"]
    )
    logits = [np.zeros(len(tok), dtype=np.float32) for _ in ids]
    for step in range(len(ids)):
        logits[step][ids[step]] = 5.0  # every decoded token is the argmax of its step
    slot = len(prefix)
    logits[slot][:] = 0.0
    logits[slot][first["NO_COMB"]], logits[slot][first["POS"]], logits[slot][first["COMB"]] = 2.0, 1.7, 1.0
    slot_checker.label_bias = bias
    cut, forced, records = slot_checker._check_slots([], ids, logits)
    assert len(records) == 1 and records[0]["label"] == expected
    # the recorded distribution is the unbiased one: log-softmax of the logits
    row = logits[slot].astype(np.float64)
    expected_lp = row[first["POS"]] - np.log(np.exp(row).sum())
    assert records[0]["logprobs"]["POS"] == pytest.approx(expected_lp)
    if expected == "NO_COMB":
        assert (cut, forced) == (len(ids), None)  # nothing to redo
    else:
        assert (cut, forced) == (slot, first[expected])  # decode again from the slot with this token


def test_misaligned_logits_are_an_error_not_a_silent_wrong_decision(slot_checker):
    tok = slot_checker.tokenizer
    ids = tok('<answer>[{"type": "POS', add_special_tokens=False)["input_ids"]
    logits = [np.zeros(len(tok), dtype=np.float32) for _ in ids]
    logits[-1][slot_checker.first_tokens["NEG"]] = 3.0  # the slot's argmax is not the decoded POS
    slot_checker.label_bias = {}
    with pytest.raises(RuntimeError, match="do not match"):
        slot_checker._check_slots([], ids, logits)


# --- the bundled model: answers parse, priors decide like the transformers engine -------------------------

# DrugComb test sentence 3 (vincristine + methotrexate): rexdrug-smol answers NO_COMB on its own and
# COMB with its shipped priors (COMB +0.5, NO_COMB -0.5) under the transformers engine.
_FLIP_RECORD = 2


def _records(n: int):
    from etl.paths import data_path

    with open(data_path("drugcomb", "final_test_set.jsonl"), encoding="utf-8") as fh:
        return [json.loads(line) for _, line in zip(range(n), fh)]


def _runner(kind: str, label_bias, tokens: int, compute_type: str = "float32"):
    from etl.drugs import default_matcher
    from model.embedded import bundled_prompt_config
    from model.extraction import ExtractionRunner

    config = EngineConfig(
        kind=kind,
        model="rexdrug-smol",
        compute_type=compute_type,
        label_bias=label_bias,
        batch_size=2,
        sampling=SamplingConfig(max_new_tokens=tokens),
    )
    return ExtractionRunner(
        create_engine(config),
        bundled_prompt_config("rexdrug-smol"),
        matcher=default_matcher(),
        sampling=config.sampling,
    )


def test_bundled_model_answers_parse_with_label_distributions():
    from model.evaluation.run import drugcomb_items

    runner = _runner("ctranslate2", None, 64, compute_type="int8")
    rows = runner.run(drugcomb_items(_records(2)))
    assert [r["parse_status"] for r in rows] == ["ok", "ok"], [r["raw_output"] for r in rows]
    assert rows[0]["parsed"] and rows[0]["model_id"].startswith("ctranslate2-int8:rexdrug-smol@")
    # the slot's label distribution is recorded, so the relation gets the calibrated confidence
    evidence = rows[0]["relation_evidence"]
    assert evidence and evidence[0]["label_logprobs"] and evidence[0]["confidence"] is not None


def test_priors_flip_the_decision_as_in_the_transformers_engine():
    from model.evaluation.run import drugcomb_items

    item = drugcomb_items(_records(_FLIP_RECORD + 1))[_FLIP_RECORD:]
    labels = {}
    for kind in ("transformers", "ctranslate2"):
        for priors, bias in (("off", {}), ("on", None)):
            row = _runner(kind, bias, 12).run(item)[0]
            labels[(kind, priors)] = (
                row["raw_output"].split('"type": "')[1][:7]
                if '"type": "' in row["raw_output"]
                else row["raw_output"]
            )
    assert labels[("transformers", "off")].startswith("NO_COMB") and labels[
        ("transformers", "on")
    ].startswith("COMB")
    assert labels[("ctranslate2", "off")] == labels[("transformers", "off")]
    assert labels[("ctranslate2", "on")] == labels[("transformers", "on")]


# --- configuration ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"compute_type": "int4"}, "compute_type must be one of"),
        ({"device": "cuda"}, "runs on the CPU"),
        ({"sampling": SamplingConfig(constrained=True)}, "no constrained decoding"),
        ({"sampling": SamplingConfig(temperature=0.7)}, "greedy decoding only"),  # rexdrug-smol ships priors
        ({"sampling": SamplingConfig(temperature=0.7), "label_bias": {"POS": 1.0}}, "greedy decoding only"),
    ],
)
def test_configuration_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        EngineConfig(kind="ctranslate2", model="rexdrug-smol", **overrides).validate()


def test_valid_configurations_and_model_id():
    EngineConfig(kind="ctranslate2", model="rexdrug-smol", label_bias={"NO_COMB": -0.5}).validate()
    EngineConfig(
        kind="ctranslate2", model="rexdrug-smol", label_bias={}, sampling=SamplingConfig(temperature=0.7)
    ).validate()  # sampling without priors is fine
    default = engine_model_id(EngineConfig(kind="ctranslate2", model="some/model"))
    assert default == "ctranslate2-float32:some/model"  # the exact one: transformers' answers
    assert (
        engine_model_id(EngineConfig(kind="ctranslate2", model="some/model", compute_type="int8"))
        == "ctranslate2-int8:some/model"
    )  # other answers: another model id (the sweep re-extracts)
    with pytest.raises(ValueError, match="transformers, ctranslate2 or vllm"):
        EngineConfig(kind="openai", label_bias={"NO_COMB": -0.5}).validate()


@pytest.mark.parametrize(
    ("lengths", "size", "spread", "expected"),
    [
        ([5, 3, 4], 8, 24, [[1, 2, 0]]),  # sorted by length
        (
            [10, 40, 12, 41, 90],
            8,
            24,
            [[0, 2], [1, 3], [4]],
        ),  # a new batch when a prompt is 24+ tokens longer
        ([1, 1, 1, 1, 1], 2, 24, [[0, 1], [2, 3], [4]]),  # and at the batch size
        ([], 4, 24, []),
    ],
)
def test_batches_hold_prompts_of_similar_length(lengths, size, spread, expected):
    from model.engines.ctranslate2_engine import length_groups

    assert length_groups(lengths, size, spread) == expected
