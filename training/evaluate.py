"""Dev-split evaluation of an in-memory model (end of SFT/GRPO): generate, parse, score officially.

Generation is a plain batched ``model.generate`` with left padding (greedy), so the model just trained is
scored without saving and reloading it.  Parsing is ``model.parsing`` and scoring is
``model.evaluation.drugcomb`` (official allenai semantics over span ids), the same as ``rexdrug eval``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from model.evaluation.drugcomb import gold_relations, prediction_rows, score_official
from model.evaluation.matching import SetRelation
from model.parsing import parse_completion
from model.prompting import PromptConfig, build_messages, prompt_version

log = logging.getLogger(__name__)


def generate_texts(model, tokenizer, conversations: Sequence[list[dict]], *, max_new_tokens: int,
                   batch_size: int = 8) -> list[str]:
    import torch

    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    texts: list[str] = []
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(conversations), batch_size):
            chunk = conversations[start:start + batch_size]
            prompts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in chunk]
            enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            with torch.no_grad():
                out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                     pad_token_id=tokenizer.pad_token_id)
            texts += tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    finally:
        tokenizer.padding_side = side
        if was_training:
            model.train()
    return texts


def evaluate_records(model, tokenizer, records: Sequence[Any], prompt: PromptConfig, *,
                     hints_fn: Callable[[Any], list[str]] | None = None, max_new_tokens: int = 256,
                     batch_size: int = 8) -> dict[str, Any]:
    """Official DrugComb metrics of the model on ``records`` (training.data.Record with ``raw``)."""
    started = time.perf_counter()
    conversations = [build_messages(r.sentence, r.paragraph, prompt, hints=hints_fn(r) if hints_fn else None)
                     for r in records]
    texts = generate_texts(model, tokenizer, conversations, max_new_tokens=max_new_tokens, batch_size=batch_size)
    gold: list[SetRelation] = []
    pred: list[SetRelation] = []
    statuses: dict[str, int] = {}
    for record, text in zip(records, texts):
        parsed = parse_completion(text, record.sentence)
        statuses[parsed.status] = statuses.get(parsed.status, 0) + 1
        gold += gold_relations(record.raw)
        rows, _problems = prediction_rows(record.raw, [r.as_dict() for r in parsed.relations])
        pred += [SetRelation.make(row["doc_id"], row["drug_idxs"], row["relation_label"]) for row in rows]
    failed = sum(n for s, n in statuses.items() if s not in ("ok", "repaired"))
    return {
        "sentences": len(records),
        "prompt_version": prompt_version(prompt),
        "official": score_official(gold, pred),
        "parse_status": statuses,
        "parse_failure_rate": failed / len(records) if records else 0.0,
        "seconds": round(time.perf_counter() - started, 2),
    }
