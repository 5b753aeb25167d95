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

log = logging.getLogger(__name__)

RESULT_KEYS = ("raw_output", "parsed", "parse_status", "parse_reason", "parse_repairs", "answer_items", "think",
               "model_id", "prompt_version")


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
            sentence = item.get("sentence")
            if not isinstance(sentence, str) or not sentence.strip():
                results[i] = self._error_row(item, "input_error", "item has no sentence")
                continue
            messages = build_messages(sentence, item.get("context"), self.prompt_config, self.hints_for(item))
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
                    results[i] = self._error_row(item, "engine_error", err, raw=text)
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

    def _error_row(self, item: dict, status: str, reason: str, raw: str = "") -> dict:
        return {**item, "raw_output": raw, "parsed": [], "parse_status": status, "parse_reason": reason,
                "parse_repairs": [], "answer_items": None, "think": None, "model_id": self.engine.model_id,
                "prompt_version": self.version}
