"""DDI13 pair-level scoring: micro P/R/F1 over effect/mechanism/advise/int, negatives excluded.

Labelled ``ddi13-processed`` when computed on data/ddi13/test.jsonl (RexDrug's processed copy, where
repeated mentions were merged; not comparable with literature numbers on the official pair set).
A pair is unordered and compared by normalized drug names; a predicted pair counts as a true positive
only with the gold type.  Records: ``{"id", "relations": [{"type", "ent_sets": [a, b]}]}``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from model.evaluation.matching import normalize_drug_name

DDI_TYPES = ("effect", "mechanism", "advise", "int")
PROCESSED_LABEL = "ddi13-processed (RexDrug copy; not comparable with official-corpus numbers)"


def positive_pairs(record: dict) -> dict[frozenset, str]:
    """{unordered normalized pair: type} of a record's positive relations (first type wins)."""
    pairs: dict[frozenset, str] = {}
    for rel in record.get("relations") or []:
        rtype = str(rel.get("type", "")).strip().lower()
        names = rel.get("ent_sets") or rel.get("ent_set") or []
        if rtype not in DDI_TYPES or len(names) != 2:
            continue
        key = frozenset(normalize_drug_name(n) for n in names)
        if len(key) == 2:
            pairs.setdefault(key, rtype)
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
    per_type = {t: _prf(tp[t], fp[t], fn[t]) for t in DDI_TYPES}
    micro = _prf(sum(tp.values()), sum(fp.values()), sum(fn.values()))
    return {"micro": micro, "per_type": per_type, "gold_records_without_prediction": missing}


def _prf(tp: int, fp: int, fn: int) -> dict:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f, "tp": tp, "fp": fp, "fn": fn}
