"""DDI13 pair-level scoring: micro P/R/F1 over effect/mechanism/advise/int, negatives excluded.

Labelled ``ddi13-processed`` when computed on data/ddi13/test.jsonl (RexDrug's processed copy, where
repeated mentions were merged; not comparable with literature numbers on the official pair set).
A pair is unordered and compared by normalized drug names; a predicted pair counts as a true positive
only with the gold type.  Records: ``{"id", "relations": [{"type", "ent_sets": [a, b]}]}``.

``predicted_pairs`` is the one reading of relation items as typed name pairs, shared with the
official-corpus scorer (``model.evaluation.ddi_official``): types are case-insensitive (a model writes
``EFFECT``), items of other types (``other``, ``NO_COMB``, DrugComb labels) are not positive pairs, and
a set of more than two names counts as every pair of its names.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from itertools import combinations

from model.evaluation.matching import normalize_drug_name
from schemas.answer import DDI_TYPES, NO_COMB

_NEGATIVE_TYPES = ("other", NO_COMB.lower(), "negative", "none", "false")
PROCESSED_LABEL = "ddi13-processed (RexDrug copy; not comparable with official-corpus numbers)"


def predicted_pairs(relations: Iterable[dict]) -> tuple[list[tuple[str, str, str]], int]:
    """(typed unordered name pairs ``(type, a, b)`` in order, number of items ignored) of relation items.

    Negative types (``other``, ``NO_COMB``...) are skipped silently; counted as ignored: non-dict items,
    unknown types (e.g. DrugComb labels), fewer than two distinct names.  Items of a DDI type with more
    than two names give all their pairs.
    """
    pairs: list[tuple[str, str, str]] = []
    ignored = 0
    for rel in relations or []:
        if not isinstance(rel, dict):
            ignored += 1
            continue
        rtype = str(rel.get("type", "")).strip().lower()
        names = rel.get("ent_sets") or rel.get("ent_set") or []
        if rtype in _NEGATIVE_TYPES:  # an explicit "no interaction": nothing to score, nothing wrong
            continue
        if rtype not in DDI_TYPES or not isinstance(names, (list, tuple)):
            ignored += 1
            continue
        distinct: dict[str, str] = {}
        for n in names:
            if isinstance(n, str) and normalize_drug_name(n):
                distinct.setdefault(normalize_drug_name(n), n.strip())
        if len(distinct) < 2:
            ignored += 1
            continue
        pairs += [(rtype, a, b) for a, b in combinations(distinct.values(), 2)]
    return pairs, ignored


def positive_pairs(record: dict) -> dict[frozenset, str]:
    """{unordered normalized pair: type} of a record's positive relations (first type wins)."""
    pairs: dict[frozenset, str] = {}
    for rtype, a, b in predicted_pairs(record.get("relations") or [])[0]:
        pairs.setdefault(frozenset((normalize_drug_name(a), normalize_drug_name(b))), rtype)
    return pairs


def score_ddi(gold: Iterable[dict], pred: Iterable[dict]) -> dict:
    """Micro P/R/F1 (and per type) of predicted against gold records, joined on ``id``."""
    pred_by_id = {str(p.get("id")): p for p in pred}
    tp, fp, fn = Counter(), Counter(), Counter()
    missing = 0
    for g in gold:
        gid = str(g.get("id"))
        gp = positive_pairs(g)
        p = pred_by_id.get(gid)
        if p is None:
            missing += 1
        pp = positive_pairs(p) if p else {}
        for pair, rtype in pp.items():
            if gp.get(pair) == rtype:
                tp[rtype] += 1
            else:
                fp[rtype] += 1
        for pair, rtype in gp.items():
            if pp.get(pair) != rtype:
                fn[rtype] += 1
    per_type = {t: prf(tp[t], fp[t], fn[t]) for t in DDI_TYPES}
    micro = prf(sum(tp.values()), sum(fp.values()), sum(fn.values()))
    return {"micro": micro, "per_type": per_type, "gold_records_without_prediction": missing}


def prf(tp: int, fp: int, fn: int) -> dict:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f, "tp": tp, "fp": fp, "fn": fn}
