"""DrugComb scoring: the official allenai scorer's semantics, and RexDrug's own variant (labelled).

Official (Tiktinsky et al. 2022, leaderboard/eval.py): relations in the official format
``{"doc_id", "drug_idxs": [span ids], "relation_label": POS|COMB|NEG}``, scored four ways:
exact/partial set matching x ``pos`` (POS vs rest) / ``any`` (any combination vs NO_COMB).
The matching itself lives in ``model.evaluation.matching`` (shared with the RL rewards).

RexDrug variant (DUTIR-BioNLP/RexDrug eval/eval_DrugComb.py): the same matcher, but per-sentence
answers are compared by drug *names*, NO_COMB rows are scored too (an agreed "no combination"
counts as a hit) and two empty NO_COMB sets match.  It inflates numbers on a corpus with many
NO_COMB sentences, so it is always reported under its own key and never mixed with the official ones.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

from model.evaluation.matching import (
    SetRelation,
    canonical_set,
    normalize_drug_name,
    normalize_label,
    precision_recall_f1,
)
from schemas.answer import NO_COMB, no_comb_answer

log = logging.getLogger(__name__)

# (metric name, exact?, mode) in the order the official scorer prints them.
OFFICIAL_METRICS: tuple[tuple[str, bool, str], ...] = (
    ("any_partial", False, "any"),
    ("pos_partial", False, "pos"),
    ("any_exact", True, "any"),
    ("pos_exact", True, "pos"),
)


def read_jsonl(path: str | Path) -> list[dict]:
    """Rows of a JSONL file; a malformed line is a configuration error naming file and line."""
    rows = []
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"file not found: {p}")
    with p.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{p}:{n}: not valid JSON ({exc.msg})") from exc
    return rows


def relations_from_official(rows: Iterable[dict], *, source: str = "input") -> list[SetRelation]:
    """Official-format rows -> relation rows; rows missing fields are a configuration error."""
    out = []
    for n, row in enumerate(rows, 1):
        try:
            out.append(SetRelation.make(row["doc_id"], row["drug_idxs"], row["relation_label"]))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{source} row {n}: expected doc_id, drug_idxs, relation_label ({exc})") from exc
    return out


def score_official(gold: Sequence[SetRelation], pred: Sequence[SetRelation]) -> dict[str, dict]:
    """The four official metrics, each {precision, recall, f1, n_gold, n_pred}."""
    return {
        name: precision_recall_f1(gold, pred, exact=exact, mode=mode).as_dict()
        for name, exact, mode in OFFICIAL_METRICS
    }


def score_official_files(gold_path: str | Path, pred_path: str | Path) -> dict[str, dict]:
    gold = relations_from_official(read_jsonl(gold_path), source=str(gold_path))
    pred = relations_from_official(read_jsonl(pred_path), source=str(pred_path))
    return score_official(gold, pred)


# --- the test split: gold relations, and predicted names -> span ids --------------------------------


def gold_relations(record: dict) -> list[SetRelation]:
    """Gold relation rows (span ids) of one DrugComb record; NO_COMB sentences have none."""
    return [SetRelation.make(record["doc_id"], rel["spans"], rel["class"]) for rel in record.get("rels", [])]


def gold_answer(record: dict) -> list[dict]:
    """Gold answer of a record in the model's format (drug names as written in the sentence)."""
    text = {s["span_id"]: s["text"] for s in record["spans"]}
    answer = [
        {"type": rel["class"], "ent_set": [text[i] for i in rel["spans"]]} for rel in record.get("rels", [])
    ]
    return answer or no_comb_answer()


def names_to_span_ids(drugs: Sequence[dict], record: dict) -> tuple[list[int], list[str]]:
    """Map predicted drugs ({name, start, end}) to span ids of the record's sentence.

    A drug is resolved by character overlap with a gold-annotated mention when the parser grounded
    it, else by normalized name equality with a mention (first unused one).  Returns (span ids,
    names that name no annotated mention); the latter cannot be scored and are reported.
    """
    spans = record["spans"]
    ids: list[int] = []
    unresolved: list[str] = []
    for drug in drugs:
        sid = _span_by_offsets(drug, spans)
        if sid is None:
            key = normalize_drug_name(drug.get("name", ""))
            candidates = [s["span_id"] for s in spans if normalize_drug_name(s["text"]) == key]
            unused = [c for c in candidates if c not in ids]
            sid = (unused or candidates or [None])[0]
        if sid is None:
            unresolved.append(str(drug.get("name", "")))
        elif sid not in ids:
            ids.append(sid)
    return ids, unresolved


def _span_by_offsets(drug: dict, spans: Sequence[dict]) -> int | None:
    start, end = drug.get("start"), drug.get("end")
    if start is None or end is None:
        return None
    for s in spans:
        if s["start"] < end and start < s["end"]:
            return s["span_id"]
    return None


def prediction_rows(record: dict, relations: Sequence[dict]) -> tuple[list[dict], list[dict]]:
    """Official-format prediction rows of one sentence from parsed relations, plus problems found.

    Relations with fewer than two resolvable drugs cannot be scored and are reported as problems.
    """
    rows, problems = [], []
    for rel in relations:
        label = normalize_label(rel.get("label"))
        if label == NO_COMB:
            continue
        ids, unresolved = names_to_span_ids(rel.get("drugs", []), record)
        if unresolved:
            problems.append({"kind": "unresolved_drug", "names": unresolved, "label": label})
        if len(ids) < 2:
            problems.append(
                {
                    "kind": "unscorable_relation",
                    "label": label,
                    "drugs": [d.get("name") for d in rel.get("drugs", [])],
                }
            )
            continue
        rows.append({"doc_id": record["doc_id"], "drug_idxs": sorted(ids), "relation_label": label})
    return rows, problems


# --- RexDrug's own variant ------------------------------------------------------------------------------


def score_rexdrug_variant(
    gold_answers: Sequence[list[dict]], pred_answers: Sequence[list[dict]]
) -> dict[str, dict]:
    """RexDrug's scorer variant over per-sentence answers ({type, ent_set} with names).

    Counts NO_COMB rows (an agreed NO_COMB is a hit), empty sets match each other, names compared
    case/spacing/hyphen-insensitively.  Sentence i of gold pairs with sentence i of pred.
    """
    if len(gold_answers) != len(pred_answers):
        raise ValueError(f"{len(gold_answers)} gold answers but {len(pred_answers)} predicted answers")
    gold = _answer_rows(gold_answers)
    pred = _answer_rows(pred_answers, empty_means_no_comb=True)
    return {
        name: precision_recall_f1(
            gold, pred, exact=exact, mode=mode, count_all_rows=True, empty_sets_match=True
        ).as_dict()
        for name, exact, mode in OFFICIAL_METRICS
    }


def _answer_rows(answers: Sequence[list[dict]], empty_means_no_comb: bool = False) -> list[SetRelation]:
    rows = []
    for i, answer in enumerate(answers):
        items = list(answer or [])
        if not items and empty_means_no_comb:
            items = no_comb_answer()
        for item in items:
            label = normalize_label(item.get("type"))
            names = [] if label == NO_COMB else item.get("ent_set") or []
            rows.append(SetRelation(i, canonical_set(normalize_drug_name(n) for n in names), label))
    return rows
