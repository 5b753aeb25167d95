"""ExtractionRunner: items (sentence + context) -> engine -> parser -> result rows.

This is what the Spark sweep calls per partition and what ``rexdrug extract``/``eval`` use: one path
from prompt to parsed relations, whatever the engine.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from model.confidence import relation_evidence
from model.engines.base import Engine, SamplingConfig
from model.parsing import ddi_items, parse_completion
from model.prompting import PromptConfig, build_messages, candidate_hints, prompt_version
from schemas.extraction import ENGINE_ERROR, INPUT_ERROR

log = logging.getLogger(__name__)

RESULT_KEYS = ("raw_output", "parsed", "parse_status", "parse_reason", "parse_repairs", "answer_items", "think",
               "model_id", "prompt_version")


def input_problem(item: dict) -> str | None:
    """Why ``item`` cannot be prompted (None if it can): the fields the prompt reads, type-checked.

    ``sentence`` a non-empty string; ``context`` a string or null; ``hints`` a list of strings or null.
    A bad item becomes an ``input_error`` row; the other items go on.
    """
    sentence = item.get("sentence")
    if not isinstance(sentence, str) or not sentence.strip():
        return "'sentence' must be a non-empty string"
    context = item.get("context")
    if context is not None and not isinstance(context, str):
        return f"'context' must be a string or null, got {type(context).__name__}"
    hints = item.get("hints")
    if hints is not None:
        if not isinstance(hints, (list, tuple)):
            return f"'hints' must be a list of strings or null, got {type(hints).__name__}"
        if not all(isinstance(h, str) for h in hints):
            return "'hints' must be a list of strings"
    return None


class ExtractionRunner:
    def __init__(self, engine: Engine, prompt_config: PromptConfig | None = None, matcher=None,
                 sampling: SamplingConfig | None = None, chunk_size: int | None = None):
        self.engine = engine
        self.prompt_config = prompt_config or PromptConfig()
        self.prompt_config.validate()
        self.matcher = matcher
        self.sampling = sampling
        # Items handed to the engine at once: the engine batches further inside (vLLM likes big chunks).
        self.chunk_size = chunk_size or max(1, getattr(getattr(engine, "config", None), "batch_size", 8)) * 4
        self.version = prompt_version(self.prompt_config)

    def hints_for(self, item: dict) -> list[str] | None:
        if not self.prompt_config.hints:
            return None
        if item.get("hints") is not None:
            return list(item["hints"])
        if self.matcher is None:
            raise ValueError("prompt.hints is on but items carry no 'hints' and no drug matcher was given")
        return candidate_hints(item["sentence"], self.matcher)

    def run(self, items: list[dict]) -> list[dict]:
        out: list[dict] = []
        for chunk in self.iter_chunks(items):
            out.extend(chunk)
        return out

    def iter_chunks(self, items: list[dict]) -> Iterator[list[dict]]:
        """Results chunk by chunk (for progress bars and streaming writers)."""
        for start in range(0, len(items), self.chunk_size):
            yield self._run_chunk(items[start:start + self.chunk_size])

    def _run_chunk(self, items: list[dict]) -> list[dict]:
        results: list[dict | None] = [None] * len(items)
        batch, where = [], []
        for i, item in enumerate(items):
            problem = input_problem(item)
            if problem:
                results[i] = self.error_row(item, INPUT_ERROR, problem)
                continue
            messages = build_messages(item["sentence"], item.get("context"), self.prompt_config, self.hints_for(item))
            batch.append(messages)
            where.append(i)
        if batch:
            texts = self.engine.generate(batch, self.sampling)
            errors = list(getattr(self.engine, "last_errors", None) or [None] * len(texts))
            if len(texts) != len(batch):
                raise RuntimeError(f"engine {self.engine.model_id} returned {len(texts)} texts for {len(batch)} prompts")
            # the model's own label preferences, when a calibration asked the engine to record them
            recorded = (getattr(self.engine, "last_label_logprobs", None)
                        if getattr(self.engine, "record_label_logprobs", False) else None)
            slot_records = getattr(self.engine, "last_slot_records", None) or []
            for j, (i, text, err) in enumerate(zip(where, texts, errors + [None] * (len(texts) - len(errors)))):
                item = items[i]
                if err:
                    results[i] = self.error_row(item, ENGINE_ERROR, err, raw=text if isinstance(text, str) else "")
                    continue
                if not isinstance(text, str):  # whatever the engine, a row's raw output is text
                    results[i] = self.error_row(
                        item, ENGINE_ERROR, f"bad_response: the engine returned {type(text).__name__}, not text")
                    continue
                parsed = parse_completion(text, item["sentence"])
                results[i] = {
                    **item,
                    "raw_output": text,
                    "parsed": [r.as_dict() for r in parsed.relations],
                    "parse_status": parsed.status,
                    "parse_reason": parsed.reason,
                    "parse_repairs": list(parsed.repairs),
                    # the answer's items as written (labels outside DrugComb's, e.g. DDI types, kept)
                    "answer_items": ddi_items(parsed),
                    "think": parsed.think,
                    "model_id": self.engine.model_id,
                    "prompt_version": self.version,
                }
                if recorded:
                    results[i]["label_logprobs"] = recorded[j]
                # each relation's label distribution at its type slot and its confidence (model.confidence)
                results[i]["relation_evidence"] = relation_evidence(
                    parsed, slot_records[j] if j < len(slot_records) else None, self.engine)
        return results  # type: ignore[return-value]

    def error_row(self, item: dict, status: str, reason: str, raw: str = "") -> dict:
        """A result row for an item that produced no model output (``input_error``/``engine_error``)."""
        return {**item, "raw_output": raw, "parsed": [], "parse_status": status, "parse_reason": reason,
                "parse_repairs": [], "answer_items": None, "think": None, "model_id": self.engine.model_id,
                "prompt_version": self.version}
