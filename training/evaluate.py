"""Dev-split evaluation of the model just trained (end of SFT), through the project's one evaluation path.

The in-memory model and tokenizer are wrapped in ``model.engines.transformers_engine.TransformersEngine``
(greedy, batched), prompts are built by ``model.extraction.ExtractionRunner`` with training's prompt
config and hints source, and ``model.evaluation.run.evaluate_drugcomb`` parses and scores officially,
exactly as ``rexdrug eval drugcomb --model`` does for a saved model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from model.extraction import ExtractionRunner
from model.items import ExtractionItem
from training.data import DataConfig, Record, drug_matcher, hints_function


class _RecordHintsRunner(ExtractionRunner):
    """A runner whose hints come from the records themselves (``data.hints_source=spans``: the gold
    mentions), looked up by doc_id and sentence, since ``evaluate_drugcomb`` builds its own items."""

    def __init__(self, engine, prompt_config, hints: dict[tuple[str, str], list[str]], **kwargs):
        super().__init__(engine, prompt_config, **kwargs)
        self._hints = hints

    def hints_for(self, item: ExtractionItem) -> list[str] | None:
        key = (item.fields.get("doc_id"), item.sentence)
        if key in self._hints:
            item = dataclasses.replace(item, hints=tuple(self._hints[key]))
        return super().hints_for(item)


def dev_runner(engine, data: DataConfig, records: Sequence[Record]) -> ExtractionRunner:
    """An extraction runner prompting as training did: same prompt config, same hints source."""
    sampling = getattr(getattr(engine, "config", None), "sampling", None)
    if data.prompt.hints and data.hints_source == "spans":
        hints_fn = hints_function(data)
        hints = {(r.doc_id, r.sentence): hints_fn(r) for r in records}
        return _RecordHintsRunner(engine, data.prompt, hints, sampling=sampling)
    matcher = drug_matcher() if data.prompt.hints else None
    return ExtractionRunner(engine, data.prompt, matcher=matcher, sampling=sampling)


def evaluate_dev(
    model,
    tokenizer,
    records: Sequence[Record],
    data: DataConfig,
    *,
    max_new_tokens: int = 256,
    batch_size: int = 8,
    progress: bool = True,
) -> dict[str, Any]:
    """Official DrugComb metrics (``evaluate_drugcomb``'s summary) of an in-memory model on ``records``.

    Greedy decoding.  The tokenizer's padding side and the model's train/eval mode are restored afterwards
    (the tokenizer may still be saved with the merged weights).
    """
    from model.engines.base import EngineConfig, SamplingConfig
    from model.engines.transformers_engine import TransformersEngine
    from model.evaluation.run import evaluate_drugcomb

    config = EngineConfig(
        kind="transformers",
        batch_size=batch_size,
        sampling=SamplingConfig(max_new_tokens=max_new_tokens, temperature=0.0),
    )
    config.validate()
    padding_side, was_training = tokenizer.padding_side, model.training
    try:
        engine = TransformersEngine(config, model=model, tokenizer=tokenizer)
        runner = dev_runner(engine, data, records)
        return evaluate_drugcomb([r.raw for r in records], runner, progress=progress).summary
    finally:
        tokenizer.padding_side = padding_side
        model.train(was_training)
