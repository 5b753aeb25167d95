"""ExtractionRunner: items (sentence + context) -> engine -> parser -> result rows; and the sweep's
extraction rows.

This is what the Spark sweep calls per partition (``extraction_rows``) and what ``rexdrug extract``/``eval``
use: one path from prompt to parsed relations, whatever the engine (``model.items`` has the contract).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from model.confidence import relation_evidence, relations_with_evidence
from model.engines.base import Engine, EngineResult, SamplingConfig, redact_secrets
from model.items import ExtractionItem, Prompt
from model.parsing import ddi_items, parse_completion
from model.prompting import (
    PromptConfig,
    build_messages,
    candidate_hints,
    mention_hints,
    prompt_version,
    unique_names,
)
from schemas.answer import DDI_TASK, ENGINE_ERROR, INPUT_ERROR, RETRYABLE_STATUSES
from schemas.extraction import SENTENCE_KEY

log = logging.getLogger(__name__)

# The keys of a runner row, after the item's own fields (``ExtractionItem.row_fields``).  A row with a model
# answer also has ``relation_evidence`` (per parsed relation: label log-probs and confidence) and, when the
# runner was asked for them, ``label_logprobs`` (the answer's first type slot).
RESULT_KEYS = (
    "raw_output",
    "parsed",
    "parse_status",
    "parse_reason",
    "parse_repairs",
    "answer_items",
    "think",
    "model_id",
    "prompt_version",
)


def input_problem(item: Mapping[str, Any]) -> str | None:
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
    def __init__(
        self,
        engine: Engine,
        prompt_config: PromptConfig | None = None,
        matcher=None,
        sampling: SamplingConfig | None = None,
        chunk_size: int | None = None,
    ):
        self.engine = engine
        self.prompt_config = prompt_config or PromptConfig()
        self.prompt_config.validate()
        self.matcher = matcher
        self.sampling = sampling
        # Items handed to the engine at once: the engine batches further inside (vLLM likes big chunks).
        self.chunk_size = chunk_size or max(1, getattr(getattr(engine, "config", None), "batch_size", 8)) * 4
        self.version = prompt_version(self.prompt_config)
        # the task whose labels the answers carry: the ddi prompt asks for DDI13 types
        self.task = self.prompt_config.task
        # rows carry ``label_logprobs`` (the first type slot's); calibration turns it on
        self.keep_label_logprobs = False
        # combinations whose drugs the sentence contrasts ("A versus B") are dropped with a repair code
        # (model.contrast; the raw output keeps them); False reads answers as written
        self.drop_contrasted = True

    def hints_for(self, item: ExtractionItem) -> list[str] | None:
        if not self.prompt_config.hints:
            return None
        if item.hints is not None:
            return list(item.hints)
        if self.task == DDI_TASK and item.mentions is not None:
            # a sweep candidate's stored mentions (the candidates stage found them): the drugs whose
            # pairs the ddi prompt asks about, without running the matcher again
            return mention_hints(item.sentence, item.mentions)
        if self.matcher is None:
            raise ValueError("prompt.hints is on but items carry no 'hints' and no drug matcher was given")
        return candidate_hints(item.sentence, self.matcher)

    def prompt(self, item: ExtractionItem) -> Prompt:
        """The engine request for ``item``: its messages and the hint names they list."""
        hints = self.hints_for(item)
        messages = build_messages(item.sentence, item.context, self.prompt_config, hints, span=item.span)
        return Prompt(messages, item, tuple(unique_names(hints or [])), task=self.task)

    def run(self, items: Sequence[ExtractionItem | Mapping[str, Any]]) -> list[dict]:
        out: list[dict] = []
        for chunk in self.iter_chunks(items):
            out.extend(chunk)
        return out

    def iter_chunks(self, items: Sequence[ExtractionItem | Mapping[str, Any]]) -> Iterator[list[dict]]:
        """Results chunk by chunk (for progress bars and streaming writers)."""
        for start in range(0, len(items), self.chunk_size):
            yield self._run_chunk(items[start : start + self.chunk_size])

    def _run_chunk(self, items: Sequence[ExtractionItem | Mapping[str, Any]]) -> list[dict]:
        results: list[dict | None] = [None] * len(items)
        prompts, where = [], []
        for i, raw in enumerate(items):
            if not isinstance(raw, ExtractionItem):
                problem = input_problem(raw)
                if problem:
                    results[i] = self.error_row(raw, INPUT_ERROR, problem)
                    continue
                raw = ExtractionItem.from_dict(raw)
            elif not isinstance(raw.sentence, str) or not raw.sentence.strip():
                results[i] = self.error_row(raw, INPUT_ERROR, "'sentence' must be a non-empty string")
                continue
            prompts.append(self.prompt(raw))
            where.append(i)
        if prompts:
            answers = self.engine.complete(prompts, self.sampling)
            if len(answers) != len(prompts):
                raise RuntimeError(
                    f"engine {self.engine.model_id} returned {len(answers)} results for "
                    f"{len(prompts)} prompts"
                )
            for i, prompt, answer in zip(where, prompts, answers):
                results[i] = self.result_row(prompt.item, answer)
        return results  # type: ignore[return-value]

    def result_row(self, item: ExtractionItem, answer: EngineResult) -> dict:
        """The runner row of one engine result: parsed once, with each relation's evidence."""
        if not isinstance(answer, EngineResult):
            return self.error_row(
                item,
                ENGINE_ERROR,
                f"bad_response: the engine returned {type(answer).__name__}, not an EngineResult",
            )
        text = answer.text
        if answer.error:
            return self.error_row(item, ENGINE_ERROR, answer.error, raw=text if isinstance(text, str) else "")
        if not isinstance(text, str):  # whatever the engine, a row's raw output is text
            return self.error_row(
                item, ENGINE_ERROR, f"bad_response: the engine returned {type(text).__name__}, not text"
            )
        parsed = parse_completion(text, item.sentence, self.task, drop_contrasted=self.drop_contrasted)
        row = {
            **item.row_fields(),
            "raw_output": text,
            "parsed": [r.as_dict() for r in parsed.relations],
            "parse_status": parsed.status,
            "parse_reason": parsed.reason,
            "parse_repairs": [note.code for note in parsed.repairs],
            # the answer's items as written (duplicates and NO_COMB items kept: the DDI scorer reads them)
            "answer_items": ddi_items(parsed),
            "think": parsed.think,
            "model_id": self.engine.model_id,
            "prompt_version": self.version,
        }
        if self.keep_label_logprobs:
            row["label_logprobs"] = answer.first_slot_logprobs
        # each relation's label distribution at its type slot and its confidence (model.confidence)
        row["relation_evidence"] = relation_evidence(parsed, answer.slots, self.engine)
        return row

    def error_row(
        self, item: ExtractionItem | Mapping[str, Any], status: str, reason: str, raw: str = ""
    ) -> dict:
        """A result row for an item that produced no model output (``input_error``/``engine_error``)."""
        fields = item.row_fields() if isinstance(item, ExtractionItem) else dict(item)
        return {
            **fields,
            "raw_output": raw,
            "parsed": [],
            "parse_status": status,
            "parse_reason": reason,
            "parse_repairs": [],
            "answer_items": None,
            "think": None,
            "model_id": self.engine.model_id,
            "prompt_version": self.version,
        }


def extraction_rows(candidates: list[dict[str, Any]], runner, run_id: str) -> list[dict[str, Any]]:
    """The sweep's extraction rows (``schemas.extraction.EXTRACTIONS``) of candidate rows
    (``schemas.extraction.CANDIDATES``); an engine failure becomes an error on each row, not a crash."""
    items = [ExtractionItem.from_candidate(c) for c in candidates]
    now = datetime.now(UTC)
    try:
        results = runner.run(items)
    except Exception as exc:  # noqa: BLE001 - any engine failure becomes an error on each row
        # the message may quote a URL with credentials in it: stored and logged without them
        reason = redact_secrets(f"{type(exc).__name__}: {exc}")
        log.error("engine failed on a batch of %d sentences: %s", len(items), reason)
        results = [{"error": reason} for _ in items]
    rows = []
    for cand, res in zip(candidates, results, strict=True):
        relations = relations_with_evidence(res)  # parsed relations + label log-probs and confidence
        if res.get("parse_status") in RETRYABLE_STATUSES:
            res = {**res, "error": f"{res['parse_status']}: {res.get('parse_reason')}"}
        rows.append(
            {
                **{k: cand[k] for k in SENTENCE_KEY},
                "raw_output": res.get("raw_output"),
                "think": res.get("think"),
                "parse_status": res.get("parse_status") or (ENGINE_ERROR if res.get("error") else None),
                "parse_reason": res.get("parse_reason"),
                "relations": relations,
                "n_relations": len(relations),
                "error": res.get("error"),
                "mentions": cand.get("mentions"),
                "model_id": cand["model_id"],
                "prompt_version": cand["prompt_version"],
                "run_id": run_id,
                "extracted_at": now,
            }
        )
    return rows
