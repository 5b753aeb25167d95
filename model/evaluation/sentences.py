"""Sentence-level evaluation of the sweep's output against an annotated gold file (pure scoring).

The gold file (``data/realpm/gold.jsonl``: real PubMed sentences annotated under the guideline in
``data/realpm/README.md``) uses DrugComb's row format — ``doc_id``, ``sentence``, ``spans``
(``span_id``, ``text``, ``start``, ``end``: every true drug mention), ``rels`` (``class``,
``spans``), ``paragraph`` — plus ``split`` (dev/train), ``source`` and ``pool``.  Unlike DrugComb's
test set, the model finds the drugs itself, so predictions are scored end to end:

* **Combinations.** A predicted drug is resolved to the gold mention it overlaps (or whose
  normalized name it has, as ``model.evaluation.drugcomb.names_to_span_ids`` does), and a set member
  is the mention's normalized text (two mentions of one drug in a sentence are one member); a drug
  that names no gold mention (a biomarker, an element, a misread abbreviation) stays in the set as
  itself, so that set can never match a gold set exactly.  Sets are then scored with the one n-ary set
  matcher (``model.evaluation.matching``): ``any_exact`` (the headline number: exact drug set, any
  combination label), ``any_partial`` (Jaccard credit, as the official DrugComb scorer),
  ``pos_exact`` and ``typed_exact`` (the label must agree too).
* **Labels.** Of the predicted sets that equal a gold set, the share with the same label.
* **Drug mentions.** The drug mentions the sweep stores for the sentence (the matcher's mentions of a
  drug kind, ``schemas.drugs.DRUG_KINDS``) against the gold mentions, one-to-one by character overlap.
* **Selection.** The share of sentences that are candidates (sent to the model) and the share of
  gold combinations that sit in a candidate sentence (the selector's recall ceiling).

Everything here is a pure function of gold records and predictions; running a model over the gold
sentences lives in ``model.evaluation.run.evaluate_sentences``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from model.evaluation.drugcomb import names_to_span_ids
from model.evaluation.matching import (
    PRF,
    SetRelation,
    normalize_drug_name,
    normalize_label,
    precision_recall_f1,
)
from schemas.answer import NO_COMB

# (metric name, exact?, mode), headline first.
SENTENCE_METRICS: tuple[tuple[str, bool, str], ...] = (
    ("any_exact", True, "any"),
    ("any_partial", False, "any"),
    ("pos_exact", True, "pos"),
    ("typed_exact", True, "typed"),
)
SPLITS = ("dev", "train", "all")


def select_split(records: Sequence[dict], split: str) -> list[dict]:
    """The gold records of one split ("all": every record); an unknown split is a configuration error."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if split == "all":
        return list(records)
    chosen = [r for r in records if r.get("split") == split]
    if not chosen:
        raise ValueError(f"the gold file has no records of split {split!r}")
    return chosen


def _span_keys(record: dict) -> dict[int, str]:
    """span id -> the mention's comparison key: its normalized text, so that two mentions of one drug
    in a sentence ("atracurium alone ... atracurium plus gentamycin") are the same set member."""
    return {s["span_id"]: normalize_drug_name(s["text"]) for s in record.get("spans") or []}


def gold_sets(record: dict) -> list[SetRelation]:
    """Gold combination rows of one record (sets of mention keys); NO_COMB sentences have none."""
    keys = _span_keys(record)
    return [
        SetRelation.make(record["doc_id"], (keys[i] for i in rel["spans"]), rel["class"])
        for rel in record.get("rels") or []
    ]


def predicted_sets(record: dict, relations: Sequence[Mapping[str, Any]]) -> list[SetRelation]:
    """Predicted combination rows of one record from parsed relations ({label, drugs: [{name, start, end}]}).

    Drugs resolve to gold mentions (then to their keys); a drug naming no gold mention is kept as
    ``("?", normalized name)``
    so the set stays as large as the model wrote it.  NO_COMB relations and sets of fewer than two
    distinct drugs carry no combination and are skipped.
    """
    keys = _span_keys(record)
    rows = []
    for rel in relations:
        label = normalize_label(rel.get("label"))
        if label == NO_COMB:
            continue
        drugs = list(rel.get("drugs") or [])
        ids, unresolved = names_to_span_ids(drugs, record)
        members: list[Hashable] = [keys[i] for i in ids] + [("?", normalize_drug_name(n)) for n in unresolved]
        row = SetRelation.make(record["doc_id"], members, label)
        if len(row.drugs) >= 2:
            rows.append(row)
    return rows


def label_agreement(gold: Sequence[SetRelation], pred: Sequence[SetRelation]) -> dict[str, Any]:
    """Of predicted rows whose drug set equals a gold set of the same sentence, how many share its label."""
    gold_labels: dict[tuple, set[str]] = {}
    for g in gold:
        gold_labels.setdefault((g.doc_id, g.drugs), set()).add(g.label)
    matched = [p for p in pred if (p.doc_id, p.drugs) in gold_labels]
    agree = sum(1 for p in matched if p.label in gold_labels[(p.doc_id, p.drugs)])
    return {
        "matched_sets": len(matched),
        "same_label": agree,
        "agreement": round(agree / len(matched), 4) if matched else None,
    }


def mention_counts(gold_spans: Sequence[Mapping], mentions: Sequence[Mapping]) -> tuple[int, int, int]:
    """(true positives, predicted, gold) of one sentence: mentions paired one-to-one by overlap."""
    used: set[int] = set()
    tp = 0
    for m in sorted(mentions, key=lambda m: (m["start"], m["end"])):
        for k, g in enumerate(gold_spans):
            if k not in used and g["start"] < m["end"] and m["start"] < g["end"]:
                used.add(k)
                tp += 1
                break
    return tp, len(mentions), len(gold_spans)


def _prf(tp: int, n_pred: int, n_gold: int) -> dict[str, Any]:
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gold if n_gold else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {
        "precision": round(p, 4),
        "recall": round(r, 4),
        "f1": round(f1, 4),
        "tp": tp,
        "n_pred": n_pred,
        "n_gold": n_gold,
    }


def _rounded(prf: PRF) -> dict[str, Any]:
    return {
        "precision": round(prf.precision, 4),
        "recall": round(prf.recall, 4),
        "f1": round(prf.f1, 4),
        "n_gold": prf.n_gold,
        "n_pred": prf.n_pred,
    }


def all_sets(
    records: Sequence[dict], relations: Mapping[Hashable, Sequence[Mapping[str, Any]]]
) -> tuple[list[SetRelation], list[SetRelation]]:
    """(gold rows, predicted rows) of every record; a record missing from ``relations`` predicted nothing."""
    gold: list[SetRelation] = []
    pred: list[SetRelation] = []
    for rec in records:
        gold.extend(gold_sets(rec))
        pred.extend(predicted_sets(rec, relations.get(rec["doc_id"]) or ()))
    return gold, pred


def sentence_errors(
    records: Sequence[dict], relations: Mapping[Hashable, Sequence[Mapping[str, Any]]]
) -> list[dict]:
    """Per-sentence disagreements (exact sets, any label): what a curator reads to see why."""
    gold, pred = all_sets(records, relations)
    by_doc: dict[Hashable, dict[str, list]] = {}
    for side, rows in (("gold", gold), ("pred", pred)):
        for r in rows:
            by_doc.setdefault(r.doc_id, {"gold": [], "pred": []})[side].append(r)
    out = []
    for rec in records:
        sides = by_doc.get(rec["doc_id"])
        if not sides:
            continue
        if {r.drugs for r in sides["gold"]} != {r.drugs for r in sides["pred"]}:
            out.append(
                {
                    "doc_id": rec["doc_id"],
                    "sentence": rec["sentence"],
                    "gold": [[r.label, _names(r.drugs)] for r in sides["gold"]],
                    "pred": [[r.label, _names(r.drugs)] for r in sides["pred"]],
                }
            )
    return out


def _names(drugs: Sequence[Hashable]) -> list[str]:
    """A scored drug set as names: gold mentions by their key, unresolved drugs marked with "?"."""
    return sorted(f"{d[1]}?" if isinstance(d, tuple) else str(d) for d in drugs)


def score_sentences(
    records: Sequence[dict],
    relations: Mapping[Hashable, Sequence[Mapping[str, Any]]],
    mentions: Mapping[Hashable, Sequence[Mapping]] | None = None,
    candidates: Mapping[Hashable, bool] | None = None,
) -> dict[str, Any]:
    """Scores of predictions against gold records (see the module doc).

    ``relations``: doc_id -> parsed relations (a sentence missing from it predicted nothing);
    ``mentions``: doc_id -> the sweep's drug mentions ({start, end} in the sentence);
    ``candidates``: doc_id -> whether the sweep would send the sentence to the model.
    """
    gold, pred = all_sets(records, relations)
    out: dict[str, Any] = {
        "sentences": len(records),
        "gold_combinations": len(gold),
        "predicted_combinations": len(pred),
        "combinations": {
            name: _rounded(precision_recall_f1(gold, pred, exact=exact, mode=mode))
            for name, exact, mode in SENTENCE_METRICS
        },
        "labels": label_agreement(gold, pred),
    }
    if mentions is not None:
        tp = n_pred = n_gold = 0
        for rec in records:
            a, b, c = mention_counts(rec.get("spans") or [], mentions.get(rec["doc_id"]) or ())
            tp, n_pred, n_gold = tp + a, n_pred + b, n_gold + c
        out["drug_mentions"] = _prf(tp, n_pred, n_gold)
    if candidates is not None:
        chosen = {rec["doc_id"] for rec in records if candidates.get(rec["doc_id"])}
        kept = [g for g in gold if g.doc_id in chosen]
        out["selection"] = {
            "candidates": len(chosen),
            "share_sent_to_model": round(len(chosen) / len(records), 4) if records else 0.0,
            "gold_combinations_in_candidates": len(kept),
            "recall_ceiling": round(len(kept) / len(gold), 4) if gold else None,
        }
    return out
