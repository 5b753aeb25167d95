"""Label priors: the logits processor on a tiny tokenizer/model built here, and the dev-split search."""

from __future__ import annotations

import pytest

from model.calibration import LabelEvidence, choose_label, decide, no_comb_auc, search_label_bias
from model.engines.base import EngineConfig, SamplingConfig, engine_model_id
from model.engines.label_bias import LABELS, LabelBiasProcessor, label_first_tokens, validate_label_bias


@pytest.fixture(scope="module")
def tiny():
    from training.tiny import build_tiny_model, build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    return tok, build_tiny_model(tok)


# --- the processor ---------------------------------------------------------------------------------


def test_label_first_tokens_are_distinct(tiny):
    tok, _ = tiny
    first = label_first_tokens(tok)
    assert set(first) == set(LABELS) and len(set(first.values())) == 4
    assert tok.decode([first["NO_COMB"]]) == "NO"


def test_labels_sharing_a_first_token_are_refused():
    class CharTokenizer:  # one token per character: NEG and NO_COMB both start with "N"
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [ord(c) for c in text]}

    with pytest.raises(ValueError, match="share a first token"):
        label_first_tokens(CharTokenizer())


def test_processor_biases_only_rows_at_a_type_slot_and_records_unbiased_scores(tiny):
    import torch

    tok, _ = tiny
    prompt = tok("Sentence: x", add_special_tokens=False)["input_ids"]
    at_slot = tok('<answer>[{"type": "', add_special_tokens=False)["input_ids"]
    elsewhere = tok('<answer>[{"ent_set', add_special_tokens=False)["input_ids"]
    width = max(len(at_slot), len(elsewhere))
    pad = tok.pad_token_id
    rows = [
        prompt + [pad] * (width - len(at_slot)) + at_slot,
        prompt + [pad] * (width - len(elsewhere)) + elsewhere,
    ]
    proc = LabelBiasProcessor(tok, {"NO_COMB": -2.0, "COMB": 1.5}, prompt_length=len(prompt), batch_size=2)
    scores = torch.zeros(2, len(tok))
    out = proc(torch.tensor(rows), scores.clone())
    first = proc.first_tokens
    assert float(out[0, first["NO_COMB"]]) == -2.0 and float(out[0, first["COMB"]]) == 1.5
    assert float(out[0, first["POS"]]) == 0.0
    assert torch.equal(out[1], torch.zeros(len(tok)))  # not at a slot: untouched
    expected = -torch.log(torch.tensor(float(len(tok))))  # uniform scores: every token log(1/V)
    assert proc.first_slot_logprobs[0]["POS"] == pytest.approx(float(expected), abs=1e-5)
    assert proc.first_slot_logprobs[1] is None
    # the first slot's scores are kept: a later slot does not overwrite them
    proc(torch.tensor(rows), torch.ones(2, len(tok)))
    assert proc.first_slot_logprobs[0]["POS"] == pytest.approx(float(expected), abs=1e-5)


@pytest.mark.parametrize("label", ["POS", "NO_COMB"])
def test_engine_applies_label_bias_under_constrained_decoding(tiny, label):
    """A random tiny model must pick the strongly biased label once the schema forces a type slot."""
    from model.engines.transformers_engine import TransformersEngine

    tok, model = tiny
    config = EngineConfig(
        batch_size=2, label_bias={label: 50.0}, sampling=SamplingConfig(max_new_tokens=40, constrained=True)
    )
    config.validate()
    engine = TransformersEngine(config, model=model, tokenizer=tok)
    engine.record_label_logprobs = True
    results = engine.generate([[{"role": "user", "content": "Sentence: cisplatin plus gemcitabine ."}]] * 2)
    for text, scores in ((r.text, r.first_slot_logprobs) for r in results):
        assert f'"type": "{label}' in text.replace('":"', '": "'), text
        assert scores is not None and set(scores) == set(LABELS)


def test_label_bias_config_validation_and_model_id():
    with pytest.raises(ValueError, match="unknown label"):
        validate_label_bias({"MAYBE": 1.0})
    with pytest.raises(ValueError, match="finite"):
        validate_label_bias({"POS": float("nan")})
    with pytest.raises(ValueError, match="transformers"):
        EngineConfig(kind="openai", label_bias={"NO_COMB": -1.0}).validate()
    EngineConfig(kind="openai", label_bias={}).validate()  # "no bias" is fine anywhere
    plain = engine_model_id(EngineConfig(model="some/model"))
    assert (
        engine_model_id(EngineConfig(model="some/model", label_bias={"NO_COMB": -0.5}))
        == plain + "+label_bias:NO_COMB=-0.5"
    )


# --- the search ------------------------------------------------------------------------------------


def _record(doc: str, gold: list[list[int]]) -> dict:
    names = ["cisplatin", "gemcitabine", "paclitaxel"]
    sentence = " , ".join(names) + " ."
    spans, pos = [], 0
    for i, name in enumerate(names):
        spans.append({"span_id": i, "text": name, "start": pos, "end": pos + len(name)})
        pos += len(name) + 3
    return {
        "doc_id": doc,
        "sentence": sentence,
        "spans": spans,
        "paragraph": sentence,
        "rels": [{"class": "POS", "spans": g} for g in gold],
    }


def _rel(*names: str, label: str = "POS") -> dict:
    return {"label": label, "drugs": [{"name": n} for n in names]}


def _evidence(no_comb_minus_pos: float, forced: list[dict]) -> LabelEvidence:
    return LabelEvidence(
        {"POS": -1.0, "COMB": -4.0, "NEG": -5.0, "NO_COMB": -1.0 + no_comb_minus_pos}, forced
    )


def test_decide_relabels_the_forced_answer_or_drops_it():
    ev = _evidence(0.3, [_rel("cisplatin", "gemcitabine"), _rel("cisplatin", "paclitaxel")])
    assert decide(ev, {}) == []  # NO_COMB preferred by 0.3
    assert [r["label"] for r in decide(ev, {"NO_COMB": -0.5})] == ["POS", "POS"]
    assert [r["label"] for r in decide(ev, {"NO_COMB": -0.5, "COMB": 3.5})] == ["COMB", "POS"]
    assert decide(LabelEvidence(None, [_rel("a", "b")]), {"NO_COMB": 5}) == [_rel("a", "b")]
    assert choose_label({label: 0.0 for label in LABELS}, {}) == "POS"  # ties: the first label


def test_search_finds_the_threshold_that_recovers_hesitant_combinations():
    # Two real combinations the model hesitates on (NO_COMB ahead by 0.4), one true negative it is sure of.
    records = [_record("a", [[0, 1]]), _record("b", [[1, 2]]), _record("c", [])]
    evidence = [
        _evidence(0.4, [_rel("cisplatin", "gemcitabine")]),
        _evidence(0.4, [_rel("gemcitabine", "paclitaxel")]),
        _evidence(3.0, [_rel("cisplatin", "paclitaxel")]),
    ]
    result = search_label_bias(records, evidence, grid={"NO_COMB": [-4.0, -1.0, -0.5, 0.0, 1.0]})
    assert result.unbiased_dev_f1["any_exact"] == 0.0
    assert result.label_bias == {"NO_COMB": -0.5}  # the smallest offset reaching the best score
    assert result.dev_f1 == {"any_partial": 1.0, "pos_partial": 1.0, "any_exact": 1.0, "pos_exact": 1.0}


def test_search_keeps_no_bias_when_bias_does_not_help():
    records = [_record("a", [[0, 1]]), _record("c", [])]
    evidence = [
        _evidence(-1.0, [_rel("cisplatin", "gemcitabine")]),
        _evidence(1.0, [_rel("cisplatin", "paclitaxel")]),
    ]
    result = search_label_bias(records, evidence, grid={"NO_COMB": [-2.0, -0.5, 0.0, 0.5]})
    assert result.label_bias == {} and result.dev_f1 == result.unbiased_dev_f1


def test_no_comb_auc_measures_how_well_the_model_separates_no_comb_sentences():
    records = [_record("a", [[0, 1]]), _record("b", [[1, 2]]), _record("c", []), _record("d", [])]
    margins = {
        "perfect": [-2.0, -1.0, 1.0, 2.0],
        "inverted": [2.0, 1.0, -1.0, -2.0],
        "tied": [0.0] * 4,
        "half": [-1.0, 1.0, 2.0, -2.0],
        "quarter": [-1.0, 1.0, 0.5, -2.0],
    }
    expected = {"perfect": 1.0, "inverted": 0.0, "tied": 0.5, "half": 0.5, "quarter": 0.25}
    for name, values in margins.items():
        assert no_comb_auc(records, [_evidence(m, []) for m in values]) == expected[name], name
    # sentences without a slot are left out; one class alone has no AUC
    assert (
        no_comb_auc(
            records,
            [_evidence(-1.0, []), LabelEvidence(None, []), _evidence(1.0, []), LabelEvidence(None, [])],
        )
        == 1.0
    )
    assert no_comb_auc(records[:2], [_evidence(0.0, []), _evidence(1.0, [])]) is None
    result = search_label_bias(
        records, [_evidence(m, []) for m in margins["perfect"]], grid={"NO_COMB": [0.0]}
    )
    assert result.no_comb_auc == 1.0 and result.as_dict()["no_comb_auc"] == 1.0


def test_search_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="evidence"):
        search_label_bias([_record("a", [])], [])
    with pytest.raises(ValueError, match="unknown labels"):
        search_label_bias([_record("a", [])], [_evidence(0, [])], grid={"MAYBE": [0.0]})
