"""The extraction contract: candidate row -> item -> prompt -> engine result -> rows (hand-made cases)."""

from __future__ import annotations

import pytest

from model.engines import EngineConfig, create_engine
from model.engines.base import Engine, EngineResult
from model.extraction import ExtractionRunner, extraction_rows
from model.items import ExtractionItem, Prompt, valid_span
from model.prompting import PromptConfig, build_messages
from schemas.extraction import CANDIDATES, SENTENCE_KEY
from tests.test_model_engines import FakeMatcher

# the target sentence occurs twice: the sweep's sentence row knows which one it is (the second)
ABSTRACT = (
    "Cisplatin plus docetaxel was given. Toxicity was low. Arm B followed. "
    "Cisplatin plus docetaxel was given. Survival improved."
)
SECOND = ABSTRACT.rindex("Cisplatin plus docetaxel was given.")
SENTENCE = "Cisplatin plus docetaxel was given."


def candidate(**kw):
    row = {
        "extraction_key": "k",
        "pmid": "1",
        "pmid_version": 1,
        "sentence_index": 3,
        "sentence_start": SECOND,
        "sentence_end": SECOND + len(SENTENCE),
        "sentence_text": SENTENCE,
        "text_hash": "h",
        "mentions": [
            {
                "start": 0,
                "end": 9,
                "surface": "Cisplatin",
                "id": "DB00515",
                "preferred_name": "Cisplatin",
                "is_class": False,
                "kind": "drug",
            }
        ],
        "context": ABSTRACT,
        "model_id": "m",
        "prompt_version": "p",
    }
    return {**row, **kw}


def test_candidate_schema_holds_the_sentence_key_and_what_the_item_reads():
    assert set(SENTENCE_KEY) <= set(CANDIDATES.names)
    assert {"context", "mentions", "model_id", "prompt_version"} <= set(CANDIDATES.names)


@pytest.mark.parametrize(
    "span, context, expected",
    [
        ((SECOND, SECOND + len(SENTENCE)), ABSTRACT, (SECOND, SECOND + len(SENTENCE))),
        ((0, len(SENTENCE)), ABSTRACT, (0, len(SENTENCE))),
        ((1, len(SENTENCE) + 1), ABSTRACT, None),  # does not hold the sentence
        ((SECOND, SECOND + len(SENTENCE)), "", None),  # no context
        ((None, None), ABSTRACT, None),
        (None, ABSTRACT, None),
        ((-1, 10), ABSTRACT, None),
    ],
)
def test_valid_span(span, context, expected):
    assert valid_span(span, SENTENCE, context) == expected


def test_item_from_a_candidate_row():
    item = ExtractionItem.from_candidate(candidate())
    assert (item.sentence, item.context, item.span, item.hints) == (
        SENTENCE,
        ABSTRACT,
        (SECOND, SECOND + 35),
        None,
    )
    assert item.mentions[0]["id"] == "DB00515"
    assert ExtractionItem.from_candidate(candidate(context=None)).context == ""  # no abstract: sentence alone


@pytest.mark.parametrize(
    "config, at_offsets, by_text",
    [
        # the window around the second occurrence, where the sentence row is; located by text (what the
        # sweep did before it passed offsets) it was the first occurrence's
        (
            PromptConfig(variant="compact", context="window", window=1),
            "Context: Arm B followed. Cisplatin plus docetaxel was given. Survival improved.",
            "Context: Cisplatin plus docetaxel was given. Toxicity was low.",
        ),
        (
            PromptConfig(variant="compact", context="window", window=0),
            "Context: Cisplatin plus docetaxel was given.",
            "Context: Cisplatin plus docetaxel was given.",
        ),
        # a long abstract is clipped around the sentence: 100 characters centred on the second occurrence
        (
            PromptConfig(variant="compact", max_context_chars=100),
            "Context: " + ABSTRACT[SECOND - 50 : SECOND + 50],
            "Context: " + ABSTRACT[:100],
        ),
    ],
)
def test_the_context_is_cut_at_the_sentence_rows_offsets(config, at_offsets, by_text):
    item = ExtractionItem.from_candidate(candidate())
    assert (
        build_messages(item.sentence, item.context, config, span=item.span)[-1]["content"].splitlines()[-1]
        == at_offsets
    )
    # without offsets (a corpus record) the sentence is located by text, as before: its first occurrence
    assert build_messages(SENTENCE, ABSTRACT, config)[-1]["content"].splitlines()[-1] == by_text


class Recorder(Engine):
    model_id = "recorder"

    def __init__(self, results):
        self.results, self.prompts = results, []

    def generate(self, batch, sampling=None):
        raise AssertionError("the runner calls complete()")

    def complete(self, prompts, sampling=None):
        self.prompts.extend(prompts)
        return self.results[: len(prompts)]


def test_runner_hands_the_item_and_its_prompt_hints_to_the_engine_and_reads_its_results():
    answer = '<answer>[{"type": "POS", "ent_set": ["Cisplatin", "docetaxel"]}]</answer>'
    slot = {"logprobs": {"POS": -0.1, "COMB": -3.0, "NEG": -4.0, "NO_COMB": -2.5}, "label": "POS"}
    engine = Recorder([EngineResult(answer, slots=(slot,)), EngineResult("", "HTTP 503")])
    runner = ExtractionRunner(
        engine, PromptConfig(variant="compact", hints=True, context="window"), matcher=FakeMatcher()
    )
    rows = extraction_rows([candidate(), candidate(extraction_key="k2")], runner, "run")
    first = engine.prompts[0]
    assert first.item.span == (SECOND, SECOND + len(SENTENCE)) and first.hints == ("Cisplatin", "docetaxel")
    assert rows[0]["parse_status"] == "ok" and rows[0]["mentions"] == candidate()["mentions"]
    assert rows[0]["relations"][0]["label_logprobs"][0] == {"label": "POS", "logprob": -0.1}
    assert (rows[1]["parse_status"], rows[1]["error"]) == ("engine_error", "engine_error: HTTP 503")
    # label log-probs on the row only when asked (calibration)
    runner.keep_label_logprobs = True
    engine.results = [EngineResult(answer, slots=(slot,))]
    (row,) = runner.run([{"sentence": SENTENCE}])
    assert row["label_logprobs"] == slot["logprobs"] and row["parse_repairs"] == []


def test_an_engine_that_returns_something_else_than_results_fails_per_item():
    engine = Recorder(["<answer>[]</answer>"])
    (row,) = ExtractionRunner(engine).run([{"sentence": SENTENCE, "id": 7}])
    assert row["id"] == 7 and row["parse_status"] == "engine_error"
    assert row["parse_reason"] == "bad_response: the engine returned str, not an EngineResult"


def test_rules_answer_from_the_item_not_the_prompt_text():
    engine = create_engine(EngineConfig(kind="rule_all_drugs"), matcher=FakeMatcher())
    # messages that name other drugs: a rule that read the prompt text would answer gemcitabine
    decoy = [{"role": "user", "content": "Sentence: Gemcitabine plus docetaxel ."}]
    (result,) = engine.complete([Prompt(decoy, ExtractionItem("Cisplatin plus docetaxel ."))])
    assert result.error is None and '["Cisplatin", "docetaxel"]' in result.text
    ddi = create_engine(EngineConfig(kind="rule_ddi_all_pairs"), matcher=FakeMatcher())
    (pairs,) = ddi.complete([Prompt(decoy, ExtractionItem("A and B."), hints=("A", "B"))])
    assert '"ent_set": ["A", "B"]' in pairs.text


@pytest.mark.parametrize(
    "span, expected",
    [
        ([SECOND, SECOND + len(SENTENCE)], (SECOND, SECOND + len(SENTENCE))),
        ([0, 5], None),
        (None, None),
        ("x", None),
    ],
)
def test_item_from_a_runner_dict_keeps_a_span_only_when_it_holds_the_sentence(span, expected):
    item = ExtractionItem.from_dict({"id": 1, "sentence": SENTENCE, "context": ABSTRACT, "span": span})
    assert item.span == expected and item.row_fields()["id"] == 1
