"""Run an extraction runner over DrugComb records and score it: the one evaluation path.

Used by ``rexdrug eval drugcomb --model``, the training dev evaluation and the end-to-end sweep
check, so a model is always scored the same way: parsed once (``model.parsing``), drug names resolved
to gold span ids (``prediction_rows``), official allenai scores plus RexDrug's variant kept apart.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from model.evaluation.drugcomb import (
    gold_answer,
    gold_relations,
    prediction_rows,
    relations_from_official,
    score_official,
    score_rexdrug_variant,
)


@dataclass
class DrugCombEvaluation:
    summary: dict[str, Any]
    predictions: list[dict]  # official format rows
    outputs: list[dict]  # runner results (raw output, parsed relations, status)
    errors: list[dict]  # sentences whose prediction differs from gold, with the reason


def drugcomb_items(records: Sequence[dict]) -> list[dict]:
    """Runner items of DrugComb records: the sentence, with its paragraph as context."""
    return [{"doc_id": r["doc_id"], "sentence": r["sentence"], "context": r.get("paragraph")} for r in records]


def run_with_progress(runner, items: list[dict], desc: str, *, progress: bool = True) -> list[dict]:
    """``runner`` over ``items`` chunk by chunk, with a progress bar on stderr."""
    from tqdm import tqdm

    results: list[dict] = []
    with tqdm(total=len(items), desc=desc, file=sys.stderr, unit="sent", disable=not progress) as bar:
        for chunk in runner.iter_chunks(items):
            results.extend(chunk)
            bar.update(len(chunk))
    return results


def evaluate_drugcomb(records: Sequence[dict], runner, *, progress: bool = True) -> DrugCombEvaluation:
    """Generate for each record's sentence (context: its paragraph), parse, score officially."""
    items = drugcomb_items(records)
    started = time.perf_counter()
    results = run_with_progress(runner, items, f"eval {runner.engine.model_id}", progress=progress)
    gen_s = time.perf_counter() - started
    # the decision priors in force (a bundled model's calibrated ones unless overridden)
    return score_drugcomb(records, results, model_id=runner.engine.model_id, prompt_version=runner.version,
                          label_bias=getattr(runner.engine, "label_bias", None) or None, generation_seconds=gen_s)


def score_drugcomb(records: Sequence[dict], results: Sequence[dict], *, model_id: str, prompt_version: str,
                   label_bias: dict | None = None, generation_seconds: float = 0.0) -> DrugCombEvaluation:
    """Score runner results (one per record, same order) officially: the scoring half of ``evaluate_drugcomb``
    (a benchmark that times engines chunk by chunk scores their results here, the same way)."""
    gen_s = generation_seconds
    pred_rows, per_sentence, gold_all = [], [], []
    for rec, res in zip(records, results, strict=True):
        rows, problems = prediction_rows(rec, res["parsed"])
        pred_rows.extend(rows)
        gold = gold_relations(rec)
        gold_all.extend(gold)
        gold_sets = sorted((g.label, list(g.drugs)) for g in gold)
        pred_sets = sorted((r["relation_label"], r["drug_idxs"]) for r in rows)
        if gold_sets != pred_sets or problems or res["parse_status"] != "ok":
            per_sentence.append({"doc_id": rec["doc_id"], "sentence": rec["sentence"], "gold": gold_sets,
                                 "pred": pred_sets, "parse_status": res["parse_status"],
                                 "parse_reason": res["parse_reason"], "problems": problems,
                                 "raw_output": res["raw_output"]})
    official = score_official(gold_all, relations_from_official(pred_rows))
    variant = score_rexdrug_variant([gold_answer(r) for r in records],
                                    [[{"type": p["label"], "ent_set": [d["name"] for d in p["drugs"]]}
                                      for p in res["parsed"]] for res in results])
    statuses: dict[str, int] = {}
    for res in results:
        statuses[res["parse_status"]] = statuses.get(res["parse_status"], 0) + 1
    failures = sum(v for k, v in statuses.items() if k not in ("ok", "repaired"))
    summary = {
        "model_id": model_id,
        "prompt_version": prompt_version,
        "label_bias": label_bias,
        "sentences": len(records),
        "official": {k: round(v["f1"], 5) for k, v in official.items()},
        "official_detail": official,
        "rexdrug_variant_counts_no_comb": {k: round(v["f1"], 5) for k, v in variant.items()},
        "parse_status": statuses,
        "parse_failure_rate": round(failures / len(results), 4) if results else 0.0,
        "sentences_with_errors": len(per_sentence),
        "generation_seconds": round(gen_s, 2),
        "sentences_per_second": round(len(results) / gen_s, 3) if gen_s > 0 else None,
    }
    return DrugCombEvaluation(summary, pred_rows, results, per_sentence)


@dataclass
class SentenceEvaluation:
    summary: dict[str, Any]
    outputs: list[dict]  # runner results of the sentences sent to the model
    errors: list[dict]  # sentences whose predicted sets differ from gold


def sweep_view(record: dict, matcher, rows_by_paragraph: dict | None = None) -> dict:
    """What the sweep knows of a gold sentence: its drug mentions and whether it is a candidate.

    The record's paragraph goes through the sweep's own sentence stage (``etl.candidates.sentence_rows``:
    abbreviations defined elsewhere in the abstract count), and the row starting at the record's
    ``sentence_start`` is the sentence; without a paragraph or a matching row, the sentence alone.
    ``rows_by_paragraph`` keeps each paragraph's rows, so an abstract with several gold sentences is
    split and matched once.
    """
    from etl.candidates import sentence_rows

    doc, sentence = str(record["doc_id"]), record["sentence"]
    paragraph, start = record.get("paragraph"), record.get("sentence_start")
    rows: list[dict] = []
    if paragraph and start is not None:
        cache = {} if rows_by_paragraph is None else rows_by_paragraph
        if paragraph not in cache:
            cache[paragraph] = sentence_rows(doc, 1, paragraph, matcher)
        rows = cache[paragraph]
    found = [r for r in rows if r["start"] == start and r["text"] == sentence]
    if not found:  # no paragraph, or our splitter cuts it elsewhere: the sentence is its own abstract
        found = [r for r in sentence_rows(doc, 1, sentence, matcher) if r["text"] == sentence]
    if not found:
        return {"mentions": [], "is_candidate": False}
    return {"mentions": found[0]["mentions"], "is_candidate": found[0]["is_candidate"]}


def stored_relations(parsed: Sequence[dict], mentions: Sequence[dict]) -> list[dict]:
    """Parsed relations as the sweep stores them: only their drug members (``etl.combinations.drug_members``:
    classes, other substances, non-drugs and names that are no known drug left out), each drug once."""
    from etl.combinations import drug_members
    from etl.drugs.normalize import normalize

    out = []
    for rel in parsed:
        kept, _ = drug_members(rel.get("drugs") or [], normalize, mentions)
        drugs = list({(d["surface"], d["start"], d["end"]): {"name": d["surface"], "start": d["start"],
                                                              "end": d["end"]} for d in kept}.values())
        out.append({**rel, "drugs": drugs})
    return out


def evaluate_sentences(records: Sequence[dict], runner, matcher, *, all_sentences: bool = False,
                       progress: bool = True) -> SentenceEvaluation:
    """The sweep over annotated sentences, scored: candidates (as the sweep selects them, or every
    sentence with ``all_sentences``) go to the runner with their paragraph as context, and their
    relations are scored as the combinations stage stores them (``stored_relations``)."""
    from model.evaluation.sentences import score_sentences, sentence_errors
    from schemas.drugs import DRUG_KINDS

    rows_by_paragraph: dict = {}
    views = {r["doc_id"]: sweep_view(r, matcher, rows_by_paragraph) for r in records}
    chosen = [r for r in records if all_sentences or views[r["doc_id"]]["is_candidate"]]
    items = [{"doc_id": r["doc_id"], "sentence": r["sentence"], "context": r.get("paragraph")} for r in chosen]
    started = time.perf_counter()
    results = run_with_progress(runner, items, f"eval {runner.engine.model_id}", progress=progress)
    gen_s = time.perf_counter() - started
    relations = {res["doc_id"]: stored_relations(res["parsed"], views[res["doc_id"]]["mentions"])
                 for res in results}
    scores = score_sentences(records, relations,
                             mentions={k: [m for m in v["mentions"] if m.get("kind") in DRUG_KINDS]
                                       for k, v in views.items()},
                             candidates={k: v["is_candidate"] for k, v in views.items()})
    statuses: dict[str, int] = {}
    for res in results:
        statuses[res["parse_status"]] = statuses.get(res["parse_status"], 0) + 1
    summary = {"model_id": runner.engine.model_id, "prompt_version": runner.version,
               "sent_to_model": "all sentences" if all_sentences else "candidates (the sweep's rule)",
               **scores, "parse_status": statuses, "generation_seconds": round(gen_s, 2)}
    return SentenceEvaluation(summary, results, sentence_errors(records, relations))
