"""RL rewards for GRPO: a registry of pure reward functions (trl ``reward_funcs`` convention).

Each function is ``f(completions, **kwargs) -> list[float | None]``: ``completions`` are strings or chat
message lists (trl passes ``[{"role": "assistant", "content": ...}]`` for conversational data); the gold
answer and the sentence come through the dataset columns trl forwards as keyword arguments:

* ``gold``: the gold answer, a JSON text (or list) of ``{"type", "ent_set"}`` relations; ``[]`` or the
  NO_COMB answer for "no combination".  ``solution`` (a ``<answer>...</answer>`` text, open-r1/RexDrug
  naming) is accepted instead.
* ``sentence`` (optional): the target sentence, for grounding.
* ``task`` (optional): ``drugcomb`` or ``ddi``; a reward of the other task returns ``None`` for that
  row, which trl ignores, so one reward list serves a mixed-task dataset.

Every completion is parsed once by ``model.parsing.parse_completion`` (cached across the reward
functions of one batch) and set comparisons go through the shared matcher
``model.evaluation.matching`` — the evaluator's definition of a hit.  No reward raises on model output.

Definitions (RexDrug's reward plugin, re-derived; ranges tested in tests/test_rewards.py):

=============  =======  ==================================================================================
name           range    definition
=============  =======  ==================================================================================
format         [0, 1]   0.5 when both ``<think></think>`` and ``<answer></answer>`` pairs are present, +0.5
                        when the answer is, unrepaired, a valid JSON list of valid relations
think          {0, 1}   1 when the think block has the four section markers ``[1]``..``[4]`` in order,
                        each opening a line or following whitespace (RexDrug also accepts ``1.``, which
                        any decimal such as "0.1." satisfies; we do not)
coverage       [-1, 1]  label-blind: mean over gold sets of the best Jaccard with a predicted set sharing
                        >= 2 drugs, minus the duplicate share (predicted combination items whose drug set
                        occurs more than once / all predicted combination items), floored at -1.
                        NO_COMB cases as RexDrug: both none 1; gold none but predicted sets 0; gold sets
                        but predicted NO_COMB -1; an inconsistent item (POS/COMB/NEG without drugs, or
                        NO_COMB with drugs) -1; an unparseable answer 0
accuracy       [0, 1]   0.33 partial F1 + 0.67 exact F1 of (label, drug set) rows of the sentence,
                        type-aware (labels must be equal), via ``matching.relation_f1``; both none 1;
                        unparseable 0
grounding      [0, 1]   share of predicted drug names found in the sentence (1 when nothing predicted);
                        ``None`` without a sentence.  Not in RexDrug; weight 0 by default
ddi_format     [0, 1]   as ``format`` with DDI labels (EFFECT/MECHANISM/ADVISE/INT, NO_COMB)
ddi_coverage   [-1, 1]  exact pair recall minus duplicate share, NO_COMB cases as ``coverage``
ddi_accuracy   [0, 1]   micro F1 of exact (label, pair) rows; both none 1; unparseable 0
=============  =======  ==================================================================================

Default weights are RexDrug's shipped ones: format 0.05, think 0.05, coverage 0.10, accuracy 0.80.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

from model.evaluation.matching import best_overlap, normalize_drug_name, relation_f1
from model.parsing import FORMAT_REPAIRS, ParsedCompletion, Repair, ddi_items, parse_completion
from schemas.answer import COMBINATION_LABELS, DDI_LABELS, DDI_TASK, DRUGCOMB_TASK, NO_COMB

RewardFunc = Callable[..., list[float | None]]

REWARDS: dict[str, RewardFunc] = {}

DEFAULT_WEIGHTS: dict[str, float] = {"format": 0.05, "think": 0.05, "coverage": 0.10, "accuracy": 0.80}

PARTIAL_WEIGHT, EXACT_WEIGHT = 0.33, 0.67

_SECTION_MARKERS = [re.compile(rf"(?:^|(?<=\s))\[{k}\]") for k in (1, 2, 3, 4)]


def register(name: str) -> Callable[[RewardFunc], RewardFunc]:
    """Add a reward to the registry under ``name`` (also its ``__name__``, which trl logs)."""

    def wrap(fn: RewardFunc) -> RewardFunc:
        if name in REWARDS:
            raise ValueError(f"reward {name!r} registered twice")
        fn.__name__ = name
        REWARDS[name] = fn
        return fn

    return wrap


def get_reward(name: str) -> RewardFunc:
    if name not in REWARDS:
        raise ValueError(f"unknown reward {name!r}; known: {', '.join(sorted(REWARDS))}")
    return REWARDS[name]


def resolve_rewards(weights: dict[str, float] | None = None) -> tuple[list[RewardFunc], list[float]]:
    """(functions, weights) for ``GRPOTrainer(reward_funcs=..., args=GRPOConfig(reward_weights=...))``.

    Rewards with weight 0 are left out (trl would still compute and log them).
    """
    weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
    if not weights:
        raise ValueError("at least one reward is needed")
    for name, w in weights.items():
        get_reward(name)
        if not isinstance(w, (int, float)) or isinstance(w, bool) or w < 0:
            raise ValueError(f"reward weight of {name!r} must be a number >= 0, got {w!r}")
    chosen = [(get_reward(n), float(w)) for n, w in weights.items() if w > 0]
    if not chosen:
        raise ValueError("all reward weights are 0")
    return [f for f, _ in chosen], [w for _, w in chosen]


def combined_reward(completions, weights: dict[str, float] | None = None, **kwargs) -> list[float]:
    """Weighted sum of the rewards (None counts as 0): what the trainer optimises, for evaluation."""
    funcs, ws = resolve_rewards(weights)
    totals = [0.0] * len(completions)
    for fn, w in zip(funcs, ws):
        for i, r in enumerate(fn(completions, **kwargs)):
            totals[i] += w * (r or 0.0)
    return totals


# --- inputs: completion text, parse cache, gold ------------------------------------------------------------


def completion_text(completion: Any) -> str:
    """The generated text of a completion given as a string or a list of chat messages."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return str(completion.get("content") or "")
    if isinstance(completion, (list, tuple)):
        parts = [completion_text(m) for m in completion if not isinstance(m, dict) or m.get("role") != "user"]
        return "".join(parts)
    return "" if completion is None else str(completion)


@lru_cache(maxsize=8192)
def _parse_cached(text: str, sentence: str | None, task: str) -> ParsedCompletion:
    return parse_completion(text, sentence, task)


def parsed(completion: Any, sentence: str | None = None, task: str = DRUGCOMB_TASK) -> ParsedCompletion:
    """Parse once: every reward of a batch reads the same cached parse of a completion (per task: the
    task's labels are its relations)."""
    return _parse_cached(completion_text(completion), sentence if isinstance(sentence, str) else None, task)


def _column(kwargs: dict[str, Any], name: str, n: int) -> list[Any]:
    value = kwargs.get(name)
    if value is None:
        return [None] * n
    if isinstance(value, (list, tuple)) and len(value) == n:
        return list(value)
    raise ValueError(
        f"reward column {name!r} has {len(value) if hasattr(value, '__len__') else '?'} rows, expected {n}"
    )


def gold_items(gold: Any) -> list[dict]:
    """Gold answer as a list of {"type", "ent_set"} dicts; accepts a list, JSON text or ``<answer>`` text."""
    if gold is None:
        return []
    if isinstance(gold, str):
        text = gold.strip()
        if "<answer>" in text.lower():
            value = parse_completion(text).raw_answer
        else:
            try:
                value = json.loads(text) if text else []
            except json.JSONDecodeError:
                value = parse_completion(text).raw_answer
        gold = value if isinstance(value, list) else []
    if isinstance(gold, dict):
        gold = [gold]
    return [g for g in gold if isinstance(g, dict)]


def _label(item: dict) -> str:
    return str(item.get("type") or item.get("label") or "").strip().upper()


def _names(item: dict) -> list[str]:
    ents = item.get("ent_set", item.get("drugs"))
    if not isinstance(ents, (list, tuple)):
        return []
    return [
        str(e)
        for e in ents
        if isinstance(e, (str, int, float)) and not isinstance(e, bool) and str(e).strip()
    ]


def _key_set(names: Sequence[str]) -> frozenset[str]:
    return frozenset(k for k in (normalize_drug_name(n) for n in names) if k)


def _relation_rows(items: list[dict], labels: Sequence[str]) -> list[tuple[str, frozenset[str]]]:
    """(label, normalized drug set) of the items that are combinations (label known, >= 2 drugs)."""
    rows = []
    for item in items:
        label = _label(item)
        drugs = _key_set(_names(item))
        if label in labels and len(drugs) >= 2:
            rows.append((label, drugs))
    return rows


def _rows(kwargs: dict[str, Any], completions: Sequence[Any], task: str):
    """Per completion: (parse, gold items, sentence) or None when the row belongs to another task."""
    n = len(completions)
    golds = _column(kwargs, "gold", n)
    if all(g is None for g in golds):
        golds = _column(kwargs, "solution", n)
    sentences = _column(kwargs, "sentence", n)
    tasks = _column(kwargs, "task", n)
    for completion, gold, sentence, row_task in zip(completions, golds, sentences, tasks):
        if row_task is not None and str(row_task) != task:
            yield None
            continue
        yield parsed(completion, sentence, task), gold_items(gold), sentence


def _safe(fn: Callable[[], float | None]) -> float | None:
    try:
        return fn()
    except Exception:  # noqa: BLE001 - a reward must never stop training; a bug scores 0
        return 0.0


# --- structure rewards ------------------------------------------------------------------------------------


def _format_score(p: ParsedCompletion, strict_list: bool) -> float:
    score = 0.5 if (p.has_think_tags and p.has_answer_tags) else 0.0
    return score + (0.5 if strict_list else 0.0)


@register("format")
def format_reward(completions, **kwargs) -> list[float | None]:
    """0.5 for both tag pairs + 0.5 for a valid answer list (DrugComb labels).  Range [0, 1]."""
    out = []
    for row in _rows(kwargs, completions, DRUGCOMB_TASK):
        out.append(
            None if row is None else _safe(lambda r=row: _format_score(r[0], r[0].answer_is_valid_list))
        )
    return out


def has_four_sections(think: str | None) -> bool:
    """All of ``[1]``..``[4]`` present as section markers, in increasing order."""
    if not think:
        return False
    pos = -1
    for marker in _SECTION_MARKERS:
        m = marker.search(think, pos + 1)
        if m is None:
            return False
        pos = m.start()
    return True


@register("think")
def think_reward(completions, **kwargs) -> list[float | None]:
    """1 when a closed ``<think>`` block holds the four sections [1]..[4], else 0 (any task)."""
    out = []
    for completion, sentence in zip(completions, _column(kwargs, "sentence", len(completions))):

        def score(c=completion, s=sentence) -> float:
            p = parsed(c, s)  # same cache key as the other rewards of the batch
            return 1.0 if p.has_think_tags and has_four_sections(p.think) else 0.0

        out.append(_safe(score))
    return out


# --- DrugComb content rewards ------------------------------------------------------------------------------


def _inconsistent(items: list | None) -> bool:
    """RexDrug's consistency penalty: a combination label without drugs, or NO_COMB with drugs."""
    for item in items or []:
        if not isinstance(item, dict):
            continue
        label, names = _label(item), _names(item)
        if label == NO_COMB and names:
            return True
        if label and label != NO_COMB and not names:
            return True
    return False


def _duplicate_share(items: list | None, labels: Sequence[str]) -> float:
    """Predicted combination items whose drug set occurs more than once, over all combination items."""
    sets = [
        drugs for _label_, drugs in _relation_rows([i for i in items or [] if isinstance(i, dict)], labels)
    ]
    if not sets:
        return 0.0
    counts = Counter(sets)
    return sum(c for c in counts.values() if c > 1) / len(sets)


def _predicted_no_comb(p: ParsedCompletion) -> bool:
    """The model said "no combination": an explicit NO_COMB answer or an empty list.

    A list that is empty only because the output was cut off mid-object is no claim at all.
    """
    if p.relations:
        return False
    return p.declared_no_comb or (p.n_items == 0 and Repair.TRUNCATED_JSON not in p.repair_codes)


def _coverage(p: ParsedCompletion, gold: list[dict]) -> float:
    if not p.ok:
        return 0.0
    if _inconsistent(p.raw_answer):
        return -1.0
    gold_sets = {drugs for _label_, drugs in _relation_rows(gold, COMBINATION_LABELS)}
    pred_sets = [_key_set(r.drugs) for r in p.relations]
    pred_none = _predicted_no_comb(p)
    if not gold_sets:
        return 1.0 if pred_none else 0.0
    if pred_none:
        return -1.0
    if not pred_sets:  # items were there but none is a usable combination
        return 0.0
    base = sum(best_overlap(g, pred_sets) for g in gold_sets) / len(gold_sets)
    return max(base - _duplicate_share(p.raw_answer, COMBINATION_LABELS), -1.0)


@register("coverage")
def coverage_reward(completions, **kwargs) -> list[float | None]:
    """Label-blind best-Jaccard coverage of the gold sets minus duplicate share.  Range [-1, 1]."""
    return [
        None if row is None else _safe(lambda r=row: _coverage(r[0], r[1]))
        for row in _rows(kwargs, completions, DRUGCOMB_TASK)
    ]


def _accuracy(p: ParsedCompletion, gold: list[dict]) -> float:
    if not p.ok:
        return 0.0
    gold_pairs = [(label, sorted(drugs)) for label, drugs in _relation_rows(gold, COMBINATION_LABELS)]
    pred_pairs = [(r.label, [normalize_drug_name(d) for d in r.drugs]) for r in p.relations]
    partial = relation_f1(gold_pairs, pred_pairs, exact=False, mode="typed", key=str).f1
    exact = relation_f1(gold_pairs, pred_pairs, exact=True, mode="typed", key=str).f1
    return PARTIAL_WEIGHT * partial + EXACT_WEIGHT * exact


@register("accuracy")
def accuracy_reward(completions, **kwargs) -> list[float | None]:
    """0.33 partial F1 + 0.67 exact F1, type-aware, per sentence.  Range [0, 1]."""
    return [
        None if row is None else _safe(lambda r=row: _accuracy(r[0], r[1]))
        for row in _rows(kwargs, completions, DRUGCOMB_TASK)
    ]


def _grounding(p: ParsedCompletion, sentence: str | None) -> float | None:
    if not isinstance(sentence, str):
        return None
    flags = [g for r in p.relations for g in (r.grounded or ())]
    return sum(flags) / len(flags) if flags else 1.0


@register("grounding")
def grounding_reward(completions, **kwargs) -> list[float | None]:
    """Share of predicted drug names found in the sentence; None without a sentence.  Range [0, 1]."""
    return [
        None if row is None else _safe(lambda r=row: _grounding(r[0], r[2]))
        for row in _rows(kwargs, completions, DRUGCOMB_TASK)
    ]


# --- DDI13 variants (pairs, labels EFFECT/MECHANISM/ADVISE/INT) ------------------------------------------


def _ddi_strict_list(items: list | None) -> bool:
    if not items:
        return False
    for item in items:
        label, names = _label(item), _names(item)
        if set(item) != {"type", "ent_set"}:
            return False
        if label == NO_COMB:
            if names:
                return False
        elif label not in DDI_LABELS or len(_key_set(names)) < 2:
            return False
    return True


@register("ddi_format")
def ddi_format_reward(completions, **kwargs) -> list[float | None]:
    """0.5 for both tag pairs + 0.5 for a valid DDI answer list.  Range [0, 1]."""
    out = []
    for row in _rows(kwargs, completions, DDI_TASK):

        def score(r=row) -> float:
            p = r[0]
            unrepaired = not (p.repair_codes & FORMAT_REPAIRS)  # the answer's text was valid as written
            strict = p.has_answer_tags and unrepaired and _ddi_strict_list(ddi_items(p))
            return _format_score(p, strict)

        out.append(None if row is None else _safe(score))
    return out


def _ddi_no_comb(items: list[dict]) -> bool:
    return not _relation_rows(items, DDI_LABELS) and (not items or any(_label(i) == NO_COMB for i in items))


def _ddi_coverage(p: ParsedCompletion, gold: list[dict]) -> float:
    items = ddi_items(p)
    if items is None:
        return 0.0
    if _inconsistent(items):
        return -1.0
    gold_sets = {drugs for _l, drugs in _relation_rows(gold, DDI_LABELS)}
    pred_sets = {drugs for _l, drugs in _relation_rows(items, DDI_LABELS)}
    pred_none = _ddi_no_comb(items)
    if not gold_sets:
        return 1.0 if pred_none else 0.0
    if pred_none:
        return -1.0
    if not pred_sets:
        return 0.0
    base = len(gold_sets & pred_sets) / len(gold_sets)
    return max(base - _duplicate_share(items, DDI_LABELS), -1.0)


@register("ddi_coverage")
def ddi_coverage_reward(completions, **kwargs) -> list[float | None]:
    """Exact pair recall (label-blind) minus duplicate share.  Range [-1, 1]."""
    return [
        None if row is None else _safe(lambda r=row: _ddi_coverage(r[0], r[1]))
        for row in _rows(kwargs, completions, DDI_TASK)
    ]


def _ddi_accuracy(p: ParsedCompletion, gold: list[dict]) -> float:
    items = ddi_items(p)
    if items is None:
        return 0.0
    g = set(_relation_rows(gold, DDI_LABELS))
    q = set(_relation_rows(items, DDI_LABELS))
    if not g and not q:
        return 1.0 if _ddi_no_comb(items) else 0.0
    tp = len(g & q)
    precision = tp / len(q) if q else 0.0
    recall = tp / len(g) if g else 0.0
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


@register("ddi_accuracy")
def ddi_accuracy_reward(completions, **kwargs) -> list[float | None]:
    """Micro F1 of exact (label, pair) rows per sentence.  Range [0, 1]."""
    return [
        None if row is None else _safe(lambda r=row: _ddi_accuracy(r[0], r[1]))
        for row in _rows(kwargs, completions, DDI_TASK)
    ]
