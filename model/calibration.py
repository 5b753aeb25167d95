"""Choosing a model's label priors (``engine.label_bias``) by measurement on a dev split.

One generation run collects, per sentence, the model's own log-probabilities of the four labels at its
first answer slot and the combination it writes once NO_COMB is ruled out there ("forced" answer).
Every candidate bias vector is then scored without generating again: the biased argmax label decides
between "no combination" and the forced answer relabelled.  The search is a grid over offsets relative
to POS (fixed at 0), maximising the mean of the four official DrugComb F1; ties go to the smallest
offsets, so the result is deterministic and stays at "no bias" unless bias measurably helps.

The simulation relabels only the first relation; a real biased run also biases later slots, so the
chosen priors are always re-measured by a real run (the CLI in ``training.calibrate`` does).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from model.evaluation.drugcomb import gold_relations, prediction_rows, relations_from_official, score_official
from model.evaluation.run import drugcomb_items
from schemas.answer import COMB, LABELS, NEG, NO_COMB, POS

log = logging.getLogger(__name__)

FORCE = 30.0  # a log-probability offset no label overcomes: rules NO_COMB out at the slot


@dataclass
class LabelEvidence:
    """One sentence: the model's label log-probabilities at its first slot (None: it opened none) and
    the relations it writes when made to start a combination."""

    logprobs: dict[str, float] | None
    forced: list[dict]


@dataclass
class CalibrationResult:
    label_bias: dict[str, float]
    dev_f1: dict[str, float]
    unbiased_dev_f1: dict[str, float]
    sentences: int
    grid: dict[str, list[float]] = field(default_factory=dict)
    no_comb_auc: float | None = None  # how well the model's own scores separate NO_COMB sentences

    def as_dict(self) -> dict:
        return {
            "label_bias": self.label_bias,
            "objective": "mean of the four official DrugComb F1",
            "dev_f1_simulated": _rounded(self.dev_f1),
            "dev_f1_unbiased": _rounded(self.unbiased_dev_f1),
            "dev_sentences": self.sentences,
            "no_comb_auc": self.no_comb_auc,
            "grid": self.grid,
        }


DEFAULT_GRID = {
    NO_COMB: [x / 2 for x in range(-12, 7)],  # -6 .. +3
    COMB: [x / 2 for x in range(-4, 13)],  # -2 .. +6
    NEG: [x / 2 for x in range(-4, 13)],
}


def collect_evidence(records: Sequence[dict], runner) -> list[LabelEvidence]:
    """Generate once over ``records`` with NO_COMB forced off, recording the unbiased label scores."""
    engine = runner.engine
    if not hasattr(engine, "record_label_logprobs"):
        raise ValueError(
            f"engine {engine.model_id} cannot report label log-probabilities (use the transformers engine)"
        )
    saved = engine.label_bias, engine.record_label_logprobs, runner.keep_label_logprobs
    engine.label_bias, engine.record_label_logprobs, runner.keep_label_logprobs = (
        {NO_COMB: -FORCE},
        True,
        True,
    )
    try:
        results = runner.run(drugcomb_items(records))
    finally:
        engine.label_bias, engine.record_label_logprobs, runner.keep_label_logprobs = saved
    return [LabelEvidence(res.get("label_logprobs"), list(res["parsed"])) for res in results]


def choose_label(logprobs: dict[str, float], bias: dict[str, float]) -> str:
    """The biased argmax; ties go to the earlier label of ``LABELS`` (deterministic)."""
    return max(LABELS, key=lambda label: (logprobs[label] + bias.get(label, 0.0), -LABELS.index(label)))


def decide(evidence: LabelEvidence, bias: dict[str, float]) -> list[dict]:
    """The relations a run with ``bias`` would write, simulated from the evidence."""
    if evidence.logprobs is None:  # no slot opened: the bias never acts on this sentence
        return evidence.forced
    label = choose_label(evidence.logprobs, bias)
    if label == NO_COMB:
        return []
    relations = [dict(r) for r in evidence.forced]
    if relations:
        relations[0]["label"] = label
    return relations


def search_label_bias(
    records: Sequence[dict], evidence: Sequence[LabelEvidence], grid: dict[str, list[float]] | None = None
) -> CalibrationResult:
    """The grid point with the best mean official F1 on ``records`` (POS is the 0 reference)."""
    grid = grid or DEFAULT_GRID
    if len(records) != len(evidence):
        raise ValueError(f"{len(records)} records but {len(evidence)} evidence rows")
    unknown = set(grid) - set(LABELS) - {POS}
    if unknown:
        raise ValueError(f"calibration grid has unknown labels: {sorted(unknown)}")
    gold = [g for rec in records for g in gold_relations(rec)]
    # Rows per (sentence, chosen label) are fixed: build them once, score many bias vectors.  A sentence
    # whose model opened no slot has one outcome whatever the bias (key None).
    rows = [
        {None: prediction_rows(rec, ev.forced)[0]}
        if ev.logprobs is None
        else {label: prediction_rows(rec, decide(ev, {label: FORCE}))[0] for label in LABELS}
        for rec, ev in zip(records, evidence)
    ]
    keys = sorted(grid)
    scored: dict[tuple[str, ...], dict[str, float]] = {}

    def f1_for(bias: dict[str, float]) -> dict[str, float]:
        choice = tuple(_label_or_fixed(ev, bias) for ev in evidence)
        if choice not in scored:
            pred = [row for r, c in zip(rows, choice) for row in r[c]]
            scored[choice] = {
                k: v["f1"] for k, v in score_official(gold, relations_from_official(pred)).items()
            }
        return scored[choice]

    best_key, best_bias, best_f1 = None, {}, {}
    for values in itertools.product(*(grid[k] for k in keys)):
        bias = {k: float(v) for k, v in zip(keys, values)}
        f1 = f1_for(bias)
        key = (round(sum(f1.values()) / len(f1), 9), -sum(abs(v) for v in values), tuple(-v for v in values))
        if best_key is None or key > best_key:
            best_key, best_bias, best_f1 = key, bias, f1
    unbiased = f1_for({})
    label_bias = {k: v for k, v in best_bias.items() if v}
    log.info(
        "calibrated label_bias %s: dev mean F1 %.4f (unbiased %.4f)",
        label_bias,
        sum(best_f1.values()) / 4,
        sum(unbiased.values()) / 4,
    )
    return CalibrationResult(
        label_bias,
        best_f1,
        unbiased,
        len(records),
        {k: list(grid[k]) for k in keys},
        no_comb_auc(records, evidence),
    )


def no_comb_auc(records: Sequence[dict], evidence: Sequence[LabelEvidence]) -> float | None:
    """ROC AUC of the model's NO_COMB margin (its NO_COMB log-probability minus the best other label's)
    for telling gold "no combination" sentences from the rest; 0.5 is chance.

    Label priors only move the threshold on this margin, so this number bounds what calibration can
    do for detection.  Sentences where the model opened no slot are left out; None when one class is
    missing.
    """
    margins = [
        (ev.logprobs[NO_COMB] - max(v for k, v in ev.logprobs.items() if k != NO_COMB), not rec.get("rels"))
        for rec, ev in zip(records, evidence)
        if ev.logprobs is not None
    ]
    positives = sum(1 for _, is_no_comb in margins if is_no_comb)
    negatives = len(margins) - positives
    if not positives or not negatives:
        return None
    # Mann-Whitney U from average ranks (ties share their rank)
    ordered = sorted(m for m, _ in margins)
    first_index: dict[float, int] = {}
    counts: dict[float, int] = {}
    for i, m in enumerate(ordered):
        first_index.setdefault(m, i)
        counts[m] = counts.get(m, 0) + 1
    rank_sum = sum(first_index[m] + (counts[m] + 1) / 2 for m, is_no_comb in margins if is_no_comb)
    return round((rank_sum - positives * (positives + 1) / 2) / (positives * negatives), 4)


def _label_or_fixed(evidence: LabelEvidence, bias: dict[str, float]) -> str | None:
    return None if evidence.logprobs is None else choose_label(evidence.logprobs, bias)


def _rounded(values: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 5) for k, v in values.items()}
