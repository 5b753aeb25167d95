"""ExtractionRunner: items -> engine -> parser -> result rows (engine faked, matcher faked)."""

from __future__ import annotations

from model.engines.base import Engine, EngineResult
from model.extraction import RESULT_KEYS, ExtractionRunner
from model.prompting import PromptConfig
from tests.prompt_fields import read_prompt_fields
from tests.test_model_engines import FakeMatcher


class EchoEngine(Engine):
    """Answers POS with the hint names it finds in the prompt; fails on request."""

    model_id = "echo"

    def __init__(self):
        self.calls = []

    def generate(self, batch, sampling=None):
        self.calls.append(len(batch))
        out = []
        for m in batch:
            fields = read_prompt_fields(m)
            if "FAIL" in fields["sentence"]:
                out.append(EngineResult("", "HTTP 500"))
                continue
            names = ", ".join(f'"{h}"' for h in fields["hints"])
            out.append(
                EngineResult(f'<think>x</think><answer>[{{"type": "POS", "ent_set": [{names}]}}]</answer>')
            )
        return out


def test_runner_rows_hints_chunks_and_errors():
    engine = EchoEngine()
    runner = ExtractionRunner(engine, PromptConfig(hints=True), matcher=FakeMatcher(), chunk_size=2)
    items = [
        {"id": 1, "sentence": "Cisplatin plus gemcitabine .", "context": "ctx"},
        {"id": 2, "sentence": "Cisplatin with docetaxel .", "hints": ["Cisplatin", "nonexistentumab"]},
        {"id": 3, "sentence": ""},
        {"id": 4, "sentence": "FAIL cisplatin docetaxel"},
    ]
    rows = runner.run(items)
    assert [r["id"] for r in rows] == [1, 2, 3, 4] and engine.calls == [2, 1]
    assert all(set(RESULT_KEYS) <= set(r) for r in rows)
    first = rows[0]
    assert first["parse_status"] == "ok" and first["prompt_version"] == "rexdrug-v1+hints"
    assert first["parsed"] == [
        {
            "label": "POS",
            "drugs": [
                {"name": "Cisplatin", "start": 0, "end": 9, "grounded": True},
                {"name": "gemcitabine", "start": 15, "end": 26, "grounded": True},
            ],
        }
    ]
    assert rows[1]["parsed"][0]["drugs"][1]["grounded"] is False and rows[1]["parse_status"] == "repaired"
    assert rows[2]["parse_status"] == "input_error"
    assert rows[3]["parse_status"] == "engine_error" and rows[3]["parse_reason"] == "HTTP 500"
    assert first["think"] == "x" and first["model_id"] == "echo"


class OddEngine(EchoEngine):
    """Returns a number instead of text for sentences containing NUMBER (an engine bug, not a crash)."""

    def generate(self, batch, sampling=None):
        out = super().generate(batch, sampling)
        return [
            EngineResult(42) if "NUMBER" in read_prompt_fields(m)["sentence"] else t
            for m, t in zip(batch, out)
        ]


def test_runner_keeps_going_past_badly_typed_items_and_non_text_outputs():
    runner = ExtractionRunner(OddEngine(), PromptConfig(hints=True), matcher=FakeMatcher())
    items = [
        {"id": 1, "sentence": "Cisplatin plus gemcitabine .", "context": 42},
        {"id": 2, "sentence": "Cisplatin plus gemcitabine .", "hints": 7},
        {"id": 3, "sentence": "NUMBER cisplatin docetaxel"},
        {"id": 4, "sentence": "Cisplatin plus gemcitabine ."},
    ]
    rows = runner.run(items)
    assert [(r["id"], r["parse_status"]) for r in rows] == [
        (1, "input_error"),
        (2, "input_error"),
        (3, "engine_error"),
        (4, "ok"),
    ]
    assert rows[0]["parse_reason"] == "'context' must be a string or null, got int"
    assert rows[1]["parse_reason"] == "'hints' must be a list of strings or null, got int"
    assert (
        rows[2]["parse_reason"] == "bad_response: the engine returned int, not text"
        and rows[2]["raw_output"] == ""
    )
