"""Combination confidence: raw scores from label distributions, the calibration fits, slot alignment,
and per-slot recording on the tiny model (training/tiny.py)."""

from __future__ import annotations

import math

import pytest

from model.confidence import (
    CONFIDENCE_FILE,
    ConfidenceCalibration,
    combination_score,
    expected_calibration_error,
    fit_isotonic,
    fit_platt,
    label_distribution,
    load_confidence_calibration,
    logprobs_from_rows,
    logprobs_rows,
    model_confidence,
    relations_with_evidence,
    reliability_table,
    slots_of_relations,
    write_confidence_calibration,
)
from model.parsing import parse_completion

L = math.log
IDENTITY = ConfidenceCalibration("platt", {"a": 1.0, "b": 0.0})


# --- raw score and confidence: hand-made distributions ------------------------------------------------


@pytest.mark.parametrize(
    "logprobs, score",
    [
        # already normalised: POS .5 + COMB .2 + NEG .1 = .8
        ({"POS": L(0.5), "COMB": L(0.2), "NEG": L(0.1), "NO_COMB": L(0.2)}, 0.8),
        # uniform over the four labels: 3/4
        ({"POS": L(0.25), "COMB": L(0.25), "NEG": L(0.25), "NO_COMB": L(0.25)}, 0.75),
        # first tokens hold only half the mass (the rest is other tokens): renormalised (.2+.1+.1)/.5
        ({"POS": L(0.2), "COMB": L(0.1), "NEG": L(0.1), "NO_COMB": L(0.1)}, 0.8),
        # NO_COMB masked off (constrained decoding / forced): every bit of mass is a combination
        ({"POS": L(0.3), "COMB": L(0.1), "NEG": L(0.1), "NO_COMB": -math.inf}, 1.0),
        # only NO_COMB possible
        ({"POS": -math.inf, "COMB": -math.inf, "NEG": -math.inf, "NO_COMB": L(0.4)}, 0.0),
        # a label missing from the record counts as impossible: .6 / (.6 + .2)
        ({"POS": L(0.6), "NO_COMB": L(0.2)}, 0.75),
        (None, None),
        ({}, None),
        ({"POS": -math.inf, "COMB": -math.inf, "NEG": -math.inf, "NO_COMB": -math.inf}, None),
    ],
)
def test_combination_score_of_hand_made_distributions(logprobs, score):
    got = combination_score(logprobs)
    assert got == score if score is None else got == pytest.approx(score, abs=1e-12)


def test_label_distribution_sums_to_one_over_the_labels():
    dist = label_distribution({"POS": L(0.2), "COMB": L(0.1), "NEG": L(0.1), "NO_COMB": L(0.1)})
    assert dist == pytest.approx({"POS": 0.4, "COMB": 0.2, "NEG": 0.2, "NO_COMB": 0.2})


@pytest.mark.parametrize(
    "calibration, logprobs, expected",
    [
        (IDENTITY, {"POS": L(0.5), "COMB": L(0.2), "NEG": L(0.1), "NO_COMB": L(0.2)}, 0.8),
        # a = 2: sigmoid(2 * logit .8) = sigmoid(2 ln 4) = 16 / 17
        (ConfidenceCalibration("platt", {"a": 2.0, "b": 0.0}), {"POS": L(0.8), "NO_COMB": L(0.2)}, 16 / 17),
        # b = -ln 4 cancels logit .8 = ln 4: 1/2
        (ConfidenceCalibration("platt", {"a": 1.0, "b": -L(4)}), {"POS": L(0.8), "NO_COMB": L(0.2)}, 0.5),
        # isotonic steps: score .8 falls in the (.5, .9] step
        (
            ConfidenceCalibration("isotonic", steps=((0.5, 0.1), (0.9, 0.6), (1.0, 0.95))),
            {"POS": L(0.8), "NO_COMB": L(0.2)},
            0.6,
        ),
        (None, {"POS": L(0.8), "NO_COMB": L(0.2)}, None),  # no calibration: no confidence
        (IDENTITY, None, None),  # no slot: no confidence
    ],
)
def test_model_confidence_is_the_calibrated_score(calibration, logprobs, expected):
    got = model_confidence(logprobs, calibration)
    assert got == expected if expected is None else got == pytest.approx(expected, abs=1e-9)


# --- calibration fits on tiny hand-made sets ---------------------------------------------------------


def test_platt_fit_recovers_the_exact_frequencies_of_two_score_groups():
    # score .5 (logit 0): 1 of 4 right; score .8 (logit ln 4): 3 of 4 right.  Two groups, two
    # parameters: the maximum-likelihood fit passes through both frequencies exactly, so
    # b = logit(1/4) = -ln 3 and a ln 4 + b = ln 3, i.e. a = ln 3 / ln 2.
    pairs = [(0.5, True)] + [(0.5, False)] * 3 + [(0.8, True)] * 3 + [(0.8, False)]
    cal = fit_platt(pairs)
    assert cal.params["b"] == pytest.approx(-L(3), abs=1e-4)
    assert cal.params["a"] == pytest.approx(L(3) / L(2), abs=1e-4)
    assert cal.apply(0.5) == pytest.approx(0.25, abs=1e-5) and cal.apply(0.8) == pytest.approx(0.75, abs=1e-5)
    assert cal.fitted_on == {"n": 8, "accuracy": 0.5, "prior": 0.0}


def test_platt_prior_pulls_towards_the_raw_score_and_tames_separable_data():
    pairs = [(0.5, True)] + [(0.5, False)] * 3 + [(0.8, True)] * 3 + [(0.8, False)]
    mle, shrunk = fit_platt(pairs), fit_platt(pairs, prior=1000.0)
    assert abs(shrunk.params["a"] - 1) < abs(mle.params["a"] - 1) and abs(shrunk.params["b"]) < abs(
        mle.params["b"]
    )
    assert shrunk.params == pytest.approx(
        {"a": 1.0, "b": 0.0}, abs=0.02
    )  # a strong prior: nearly the identity
    # separable (right exactly when the score is high): the plain fit runs off, the prior keeps it finite
    separable = [(0.3, False)] * 5 + [(0.7, True)] * 5
    tame, wild = fit_platt(separable, prior=1.0), fit_platt(separable)
    assert 1.0 < tame.params["a"] < 5 < wild.params["a"] and math.isfinite(wild.params["a"])
    # symmetric data: b stays 0, and the map sharpens the raw score without reaching certainty
    assert tame.params["b"] == pytest.approx(0.0, abs=1e-9)
    assert 0.7 < tame.apply(0.7) < 0.95 and tame.apply(0.3) == pytest.approx(1 - tame.apply(0.7))
    with pytest.raises(ValueError, match="prior"):
        fit_platt(pairs, prior=-1.0)


def test_isotonic_fit_pools_adjacent_violators():
    # 0.1:F 0.2:T 0.3:F 0.4:T 0.5:T -> .2/.3 violate and pool to 1/2; .4 and .5 tie at 1 and pool
    pairs = [(0.1, False), (0.2, True), (0.3, False), (0.4, True), (0.5, True)]
    cal = fit_isotonic(pairs)
    assert cal.steps == ((0.1, 0.0), (0.3, 0.5), (0.5, 1.0))
    assert [cal.apply(s) for s in (0.05, 0.1, 0.25, 0.45, 0.9)] == [0.0, 0.0, 0.5, 1.0, 1.0]


@pytest.mark.parametrize(
    "pairs, message",
    [
        ([], "no \\(score, correct\\) pairs"),
        ([(0.4, True), (0.9, True)], "both right and wrong"),
        ([(1.4, True), (0.2, False)], "must lie in \\[0, 1\\]"),
    ],
)
def test_fits_refuse_unusable_dev_pairs(pairs, message):
    for fit in (fit_platt, fit_isotonic):
        with pytest.raises(ValueError, match=message):
            fit(pairs)


def test_reliability_table_and_ece_by_hand():
    pairs = [(0.1, False), (0.3, False), (0.3, True), (0.9, True), (1.0, True), (0.95, False)]
    table = reliability_table(pairs, bins=2)
    # [0, .5): .1 .3 .3 -> mean .7/3, 1 of 3 right; [.5, 1]: .9 1 .95 -> mean 2.85/3, 2 of 3 right
    assert [(r["bin"], r["n"]) for r in table] == [("[0.00, 0.50)", 3), ("[0.50, 1.00]", 3)]
    assert table[0]["mean_confidence"] == pytest.approx(0.7 / 3) and table[0]["accuracy"] == pytest.approx(
        1 / 3
    )
    assert table[1]["mean_confidence"] == pytest.approx(0.95) and table[1]["accuracy"] == pytest.approx(2 / 3)
    assert expected_calibration_error(pairs, bins=2) == pytest.approx(
        0.5 * (1 / 3 - 0.7 / 3) + 0.5 * (0.95 - 2 / 3)
    )


def test_calibration_file_round_trip_and_bad_files(tmp_path):
    cal = ConfidenceCalibration("platt", {"a": 1.5, "b": -0.25}, fitted_on={"n": 10})
    write_confidence_calibration(tmp_path, cal, {"report": {"x": 1}})
    back = load_confidence_calibration(tmp_path)
    assert back == cal and back.apply(0.7) == pytest.approx(cal.apply(0.7))
    assert load_confidence_calibration(tmp_path / "missing") is None
    (tmp_path / CONFIDENCE_FILE).write_text('{"method": "magic"}')
    with pytest.raises(ValueError, match="unreadable confidence calibration"):
        load_confidence_calibration(tmp_path)


def test_logprob_rows_round_trip():
    lp = {"POS": -0.5, "COMB": -1.0, "NEG": -2.0, "NO_COMB": -3.0}
    rows = logprobs_rows(lp)
    assert [r["label"] for r in rows] == ["POS", "COMB", "NEG", "NO_COMB"]
    assert logprobs_from_rows(rows) == lp and logprobs_rows(None) is None and logprobs_from_rows(None) is None
    masked = logprobs_rows({**lp, "NO_COMB": -math.inf})
    assert masked[3] == {"label": "NO_COMB", "logprob": None}
    assert combination_score(logprobs_from_rows(masked)) == 1.0


# --- which slot belongs to which relation ----------------------------------------------------------


def slot(label, pos):
    return {
        "logprobs": {"POS": L(pos), "COMB": L(0.1), "NEG": L(0.1), "NO_COMB": L(0.8 - pos)},
        "label": label,
    }


TWO = (
    '<answer>[{"type": "POS", "ent_set": ["cisplatin", "gemcitabine"]}, '
    '{"type": "COMB", "ent_set": ["paclitaxel", "carboplatin"]}]</answer>'
)


def test_each_relation_gets_its_own_slot_and_a_think_slot_is_skipped():
    parsed = parse_completion(TWO)
    think, first, second = slot("NEG", 0.1), slot("POS", 0.6), slot("COMB", 0.3)
    assert slots_of_relations(parsed.relations, parsed.raw_answer, [first, second]) == [first, second]
    # a `"type": "` inside the reasoning opened a slot before the answer: the answer's are the last ones
    assert slots_of_relations(parsed.relations, parsed.raw_answer, [think, first, second]) == [first, second]


def test_dropped_items_and_label_mismatches_lend_no_slot():
    text = (
        '<answer>[{"type": "NO_COMB", "ent_set": []}, {"type": "POS", "ent_set": ["a"]}, '
        '{"type": "NEG", "ent_set": ["cisplatin", "gemcitabine"]}]</answer>'
    )
    parsed = parse_completion(text)
    assert [r.label for r in parsed.relations] == ["NEG"] and parsed.relations[0].item_index == 2
    slots = [slot("NO_COMB", 0.1), slot("POS", 0.5), slot("NEG", 0.2)]
    assert slots_of_relations(parsed.relations, parsed.raw_answer, slots) == [slots[2]]
    # the slot recorded where the item says NEG generated POS: misaligned, so no distribution
    wrong = [slot("NO_COMB", 0.1), slot("POS", 0.5), slot("POS", 0.2)]
    assert slots_of_relations(parsed.relations, parsed.raw_answer, wrong) == [None]
    # fewer slots than typed items (a slot the recorder missed): nothing is guessed
    assert slots_of_relations(parsed.relations, parsed.raw_answer, slots[1:]) == [None]


def test_relations_with_evidence_merges_in_order_and_pads():
    result = {
        "parsed": [{"label": "POS", "drugs": []}, {"label": "NEG", "drugs": []}],
        "relation_evidence": [{"label_logprobs": [{"label": "POS", "logprob": -0.1}], "confidence": 0.7}],
    }
    assert relations_with_evidence(result) == [
        {
            "label": "POS",
            "drugs": [],
            "label_logprobs": [{"label": "POS", "logprob": -0.1}],
            "confidence": 0.7,
        },
        {"label": "NEG", "drugs": [], "label_logprobs": None, "confidence": None},
    ]


# --- per-slot recording on the tiny model ------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    from training.tiny import build_tiny_model, build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    return tok, build_tiny_model(tok)


class ForceText:
    """A logits processor (placed after the recorder) that makes the model write ``target`` exactly."""

    def __init__(self, target_ids, prompt_length, eos):
        self.target, self.prompt_length, self.eos = target_ids, prompt_length, eos

    def __call__(self, input_ids, scores):
        step = input_ids.shape[1] - self.prompt_length
        token = self.target[step] if step < len(self.target) else self.eos
        forced = scores.new_full(scores.shape, -math.inf)
        forced[:, token] = 0.0
        return forced


def test_two_relations_give_two_unbiased_distributions_at_their_slots(tiny):
    import torch
    from transformers import LogitsProcessorList

    from model.engines.label_bias import LabelBiasProcessor

    tok, model = tiny
    prompt = tok("Sentence: cisplatin plus gemcitabine .", return_tensors="pt", add_special_tokens=False)
    target = tok(TWO, add_special_tokens=False)["input_ids"]
    width = prompt["input_ids"].shape[1]
    recorder = LabelBiasProcessor(tok, {"NEG": 3.0}, prompt_length=width, batch_size=1)
    with torch.inference_mode():
        out = model.generate(
            **prompt,
            max_new_tokens=len(target) + 1,
            do_sample=False,
            pad_token_id=tok.pad_token_id,
            logits_processor=LogitsProcessorList([recorder, ForceText(target, width, tok.eos_token_id)]),
        )
    assert tok.decode(out[0, width:], skip_special_tokens=True) == TWO
    slots = recorder.slot_logprobs[0]
    assert len(slots) == 2 and recorder.slot_labels[0] == ["POS", "COMB"]
    assert recorder.first_slot_logprobs == [slots[0]]
    # each dict is the model's own (unbiased: the NEG prior is not in it) log-softmax at that slot
    with torch.inference_mode():
        logits = model(out).logits[0].float()
    text_ids = out[0].tolist()
    first = recorder.first_tokens
    seen = []
    for position in range(width, len(text_ids)):
        if text_ids[position] in (first["POS"], first["COMB"]) and tok.decode(
            text_ids[width:position]
        ).endswith('"type": "'):
            seen.append(torch.log_softmax(logits[position - 1], dim=-1))
    assert len(seen) == 2
    for recorded, expected in zip(slots, seen):
        for label, token in first.items():
            assert recorded[label] == pytest.approx(float(expected[token]), abs=1e-4)
    assert slots[0] != slots[1]


def test_runner_rows_carry_one_distribution_per_relation(tiny, monkeypatch):
    """Through the engine and the runner: 2 relations written, 2 label distributions and confidences."""
    from model.engines.base import EngineConfig, SamplingConfig
    from model.engines.transformers_engine import TransformersEngine
    from model.extraction import ExtractionRunner

    tok, model = tiny
    config = EngineConfig(
        batch_size=2, label_bias={}, sampling=SamplingConfig(max_new_tokens=60, constrained=True)
    )
    engine = TransformersEngine(config, model=model, tokenizer=tok)
    engine.confidence_calibration = IDENTITY
    target = tok(TWO, add_special_tokens=False)["input_ids"]

    def forcing():  # constrained decoding's hook, made to allow exactly the target text
        start = {}

        def allowed(batch_id, sent):
            step = len(sent) - start.setdefault(batch_id, len(sent))  # first call: the prompt alone
            return [target[step] if step < len(target) else tok.eos_token_id]

        return allowed

    monkeypatch.setattr(engine, "_prefix_allowed_tokens_fn", forcing)
    results = []  # the engine's results, as the runner received them
    generate = engine.generate
    monkeypatch.setattr(
        engine, "generate", lambda batch, sampling=None: results.extend(generate(batch, sampling)) or results
    )
    rows = ExtractionRunner(engine).run(
        [{"sentence": "Cisplatin plus gemcitabine; paclitaxel and carboplatin."}]
    )
    assert rows[0]["raw_output"] == TWO, rows[0]["raw_output"]
    assert [s["label"] for s in results[0].slots] == ["POS", "COMB"]
    evidence = rows[0]["relation_evidence"]
    assert len(evidence) == len(rows[0]["parsed"]) == 2
    for ev, rec in zip(evidence, results[0].slots):
        # masked labels (-inf) are stored as null and read back as absent, i.e. impossible again
        assert logprobs_from_rows(ev["label_logprobs"]) == {
            k: v for k, v in rec["logprobs"].items() if math.isfinite(v)
        }
        assert combination_score(logprobs_from_rows(ev["label_logprobs"])) == combination_score(
            rec["logprobs"]
        )
        # constrained decoding masks all but the forced token before the recorder: the constrained
        # distribution puts all mass on the written combination label, so the raw score is 1
        assert combination_score(rec["logprobs"]) == 1.0
        assert ev["confidence"] == pytest.approx(1.0, abs=1e-5)  # the identity map clips at 1 - 1e-6


# --- engines without a model distribution -------------------------------------------------------------


def test_rules_have_one_documented_constant_each_and_other_engines_none():
    from model.engines.base import Engine
    from model.engines.rules import RULE_CONFIDENCE, RULES

    assert set(RULE_CONFIDENCE) == set(RULES)
    for kind, cls in RULES.items():
        value = cls(matcher=object()).relation_confidence(None)
        assert value == RULE_CONFIDENCE[kind] and (value is None or 0.0 < value < 1.0)
    # the default for engines that report no log-probabilities (vLLM, OpenAI-compatible)
    assert Engine.relation_confidence(object(), {"POS": -0.1}) is None


def test_sweep_rows_carry_relation_confidence_and_the_threshold_is_validated():
    from jobs.sweep import SweepConfig
    from model.extraction import extraction_rows

    class FakeRunner:
        def run(self, items):
            return [
                {
                    "raw_output": TWO,
                    "parse_status": "ok",
                    "parse_reason": "",
                    "parsed": [{"label": "POS", "drugs": []}, {"label": "COMB", "drugs": []}],
                    "relation_evidence": [
                        {"label_logprobs": [{"label": "POS", "logprob": -0.2}], "confidence": 0.6},
                        {"label_logprobs": None, "confidence": None},
                    ],
                }
                for _ in items
            ]

    cand = {
        "extraction_key": "k",
        "pmid": "1",
        "pmid_version": 1,
        "sentence_index": 0,
        "sentence_start": 0,
        "sentence_end": 5,
        "sentence_text": "x y z",
        "text_hash": "h",
        "model_id": "m",
        "prompt_version": "p",
    }
    (row,) = extraction_rows([cand], FakeRunner(), "run")
    assert [(r["label"], r["confidence"]) for r in row["relations"]] == [("POS", 0.6), ("COMB", None)]
    assert row["relations"][0]["label_logprobs"] == [{"label": "POS", "logprob": -0.2}]
    assert SweepConfig().min_confidence == 0.0
    with pytest.raises(ValueError, match="min_confidence"):
        SweepConfig(source="demo", min_confidence=1.2).validate()


def test_refitting_the_confidence_map_keeps_the_adapter_model_id(tmp_path):
    """The map changes no output, so the sweep's incremental key (model id) must not change with it."""
    from model.engines.base import _adapter_fingerprint

    (tmp_path / "adapter_config.json").write_text('{"r": 8}')
    (tmp_path / "adapter_model.safetensors").write_bytes(b"weights")
    before = _adapter_fingerprint(str(tmp_path))
    write_confidence_calibration(tmp_path, IDENTITY)
    assert _adapter_fingerprint(str(tmp_path)) == before
    (tmp_path / "rexdrug_training.json").write_text("{}")  # the training record (label priors) does count
    assert _adapter_fingerprint(str(tmp_path)) != before


# --- the dev pairs the shipped map is fitted on (training.calibrate) --------------------------------


def test_relation_outcomes_right_only_for_an_exact_gold_set():
    from training.calibrate import fit_confidence, relation_outcomes

    sentence = "Cisplatin plus gemcitabine, or docetaxel."
    spans = [
        {"span_id": 0, "text": "Cisplatin", "start": 0, "end": 9},
        {"span_id": 1, "text": "gemcitabine", "start": 15, "end": 26},
        {"span_id": 2, "text": "docetaxel", "start": 31, "end": 40},
    ]
    record = {
        "doc_id": "d",
        "sentence": sentence,
        "spans": spans,
        "rels": [{"class": "POS", "spans": [0, 1]}],
    }

    def rel(label, *names):
        return {
            "label": label,
            "drugs": [{"name": n, "start": None, "end": None, "grounded": True} for n in names],
        }

    result = {
        "parsed": [
            rel("COMB", "gemcitabine", "cisplatin"),  # right set, other label: right
            rel("POS", "cisplatin", "gemcitabine", "docetaxel"),  # superset: wrong
            rel("POS", "cisplatin", "gemcitabine", "aspirin"),
        ],  # unannotated name: wrong
        "relation_evidence": [
            {"label_logprobs": logprobs_rows({"POS": L(0.6), "NO_COMB": L(0.4)})},
            {"label_logprobs": logprobs_rows({"POS": L(0.9), "NO_COMB": L(0.1)})},
            {"label_logprobs": None},
        ],
    }
    rows = relation_outcomes(record, result)
    assert [r["correct"] for r in rows] == [True, False, False]
    assert (
        rows[0]["score"] == pytest.approx(0.6)
        and rows[1]["score"] == pytest.approx(0.9)
        and rows[2]["score"] is None
    )
    calibration, report = fit_confidence(rows + [{**rows[0], "correct": False}], method="isotonic")
    # scored pairs: (.6, T), (.9, F), (.6, F): .6 pools to 1/2, then .9 (0) violates and pools: 1/3
    assert calibration.steps == (pytest.approx((0.9, 1 / 3)),)
    assert (report["relations"], report["scored"], report["unscored"]) == (4, 3, 1)


def test_platt_later_offset_recovers_three_groups_exactly():
    # first relations as in the two-group case; later relations at score .8 are right 1 in 4:
    # a ln 4 + b + later = logit(1/4) = -ln 3 and a ln 4 + b = ln 3, so later = -2 ln 3
    first = [(0.5, True)] + [(0.5, False)] * 3 + [(0.8, True)] * 3 + [(0.8, False)]
    later = [(0.8, True)] + [(0.8, False)] * 3
    cal = fit_platt(first + later, positions=[0] * 8 + [1] * 4)
    assert cal.params == pytest.approx({"a": L(3) / L(2), "b": -L(3), "later": -2 * L(3)}, abs=1e-4)
    assert cal.apply(0.8) == pytest.approx(0.75, abs=1e-5) and cal.apply(0.8, position=1) == pytest.approx(
        0.25, abs=1e-5
    )
    assert model_confidence({"POS": L(0.8), "NO_COMB": L(0.2)}, cal, position=2) == pytest.approx(
        0.25, abs=1e-5
    )
    back = ConfidenceCalibration.from_dict(cal.as_dict())
    assert back.apply(0.8, 1) == pytest.approx(cal.apply(0.8, 1))
