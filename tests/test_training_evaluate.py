"""End-of-training dev evaluation: the one evaluation path, prompted exactly as training prompted."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.engines.base import Engine, EngineResult
from model.evaluation.run import evaluate_drugcomb
from model.prompting import format_target
from tests.prompt_fields import read_prompt_fields
from training.data import DataConfig, build_sft_rows, hints_function, load_splits
from training.evaluate import dev_runner, evaluate_dev
from training.tiny import build_tiny_model_dir

FIXTURE = Path(__file__).parent / "data" / "training" / "drugcomb_tiny.jsonl"
OFFICIAL_KEYS = {"any_partial", "pos_partial", "any_exact", "pos_exact"}


class _Mention:
    def __init__(self, start, end, surface):
        self.start, self.end, self.surface, self.id, self.is_class = (
            start,
            end,
            surface,
            surface.lower(),
            False,
        )


class FixtureMatcher:
    """Finds a few drugs of the fixture (not all of its mentions, so it differs from the gold spans)."""

    VOCAB = ("prednisone", "chlorambucil", "aspirin", "clopidogrel", "ketoconazole")

    def find(self, text):
        low = text.lower()
        return [
            _Mention(low.find(n), low.find(n) + len(n), text[low.find(n) : low.find(n) + len(n)])
            for n in self.VOCAB
            if n in low
        ]


class GoldEngine(Engine):
    """Answers each prompt with its record's gold relations; records the hints each prompt listed."""

    model_id = "gold"

    def __init__(self, records):
        self.gold = {r.sentence: r.relations for r in records}
        self.hints: dict[str, list[str]] = {}

    def generate(self, batch, sampling=None):
        out = []
        for messages in batch:
            fields = read_prompt_fields(messages)
            self.hints[fields["sentence"]] = fields["hints"]
            out.append(EngineResult(format_target(self.gold[fields["sentence"]])))
        return out


def _config(hints_source: str) -> DataConfig:
    cfg = DataConfig(train_file=str(FIXTURE), dev_fraction=0.5, hints_source=hints_source)
    cfg.prompt.variant = "rexdrug_answer_only"
    cfg.prompt.hints = True
    return cfg


@pytest.mark.parametrize("hints_source", ["spans", "matcher"])
def test_dev_prompts_carry_training_hints_and_gold_scores_one(hints_source, monkeypatch):
    import etl.drugs

    monkeypatch.setattr(etl.drugs, "default_matcher", FixtureMatcher)
    cfg = _config(hints_source)
    dev = load_splits(cfg).dev
    # what training would have put in the prompt of these sentences
    rows, _ = build_sft_rows(dev, cfg, hints_function(cfg))
    trained_prompts = [r["prompt"] for r in rows]
    engine = GoldEngine(dev)
    summary = evaluate_drugcomb([r.raw for r in dev], dev_runner(engine, cfg, dev), progress=False).summary
    for record, prompt in zip(dev, trained_prompts):
        assert engine.hints[record.sentence] == read_prompt_fields(prompt)["hints"]
    if hints_source == "spans":
        assert all(engine.hints[r.sentence] == r.mentions for r in dev)
    else:  # candidate_hints over the matcher: in sentence order, not the gold spans
        assert engine.hints[dev[0].sentence] == ["chlorambucil", "prednisone"] != dev[0].mentions
    assert any(engine.hints[r.sentence] for r in dev)
    assert summary["sentences"] == len(dev) and summary["parse_failure_rate"] == 0.0
    assert set(summary["official"]) == OFFICIAL_KEYS
    assert summary["official"]["any_exact"] == 1.0  # gold answers score perfectly through the one path


def test_evaluate_dev_on_in_memory_model_restores_its_state(tmp_path):
    from training.common import ModelSettings, load_model

    model, tokenizer = load_model(
        ModelSettings(name_or_path=str(build_tiny_model_dir(tmp_path / "m")), dtype="float32")
    )
    tokenizer.padding_side = "right"
    model.train()
    cfg = _config("spans")
    dev = load_splits(cfg).dev[:2]
    summary = evaluate_dev(model, tokenizer, dev, cfg, max_new_tokens=4, batch_size=2, progress=False)
    assert summary["sentences"] == 2 and set(summary["official"]) == OFFICIAL_KEYS
    assert 0.0 <= summary["parse_failure_rate"] <= 1.0
    assert sum(summary["parse_status"].values()) == 2
    assert tokenizer.padding_side == "right" and model.training
