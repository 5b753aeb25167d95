"""Run an extraction runner over gold records and score it: the one evaluation path.

Used by ``rexdrug eval drugcomb|sentences|ddi --model``, the training dev evaluation and the end-to-end
sweep check, so a model is always scored the same way: parsed once (``model.parsing``, by the runner),
drug names resolved to gold span ids (``prediction_rows``), official allenai scores plus RexDrug's variant
kept apart; DDI13 answers scored on the official corpus and/or RexDrug's processed copy.
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
from model.parsing import answer_item
from schemas.answer import RETRYABLE_STATUSES, USABLE_PARSE_STATUSES


@dataclass
class DrugCombEvaluation:
    summary: dict[str, Any]
    predictions: list[dict]  # official format rows
    outputs: list[dict]  # runner results (raw output, parsed relations, status)
    errors: list[dict]  # sentences whose prediction differs from gold, with the reason


def drugcomb_items(records: Sequence[dict]) -> list[dict]:
    """Runner items of DrugComb records: the sentence, with its paragraph as context."""
    return [
        {"doc_id": r["doc_id"], "sentence": r["sentence"], "context": r.get("paragraph")} for r in records
    ]


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
    return score_drugcomb(
        records,
        results,
        model_id=runner.engine.model_id,
        prompt_version=runner.version,
        label_bias=getattr(runner.engine, "label_bias", None) or None,
        generation_seconds=gen_s,
    )


def score_drugcomb(
    records: Sequence[dict],
    results: Sequence[dict],
    *,
    model_id: str,
    prompt_version: str,
    label_bias: dict | None = None,
    generation_seconds: float = 0.0,
) -> DrugCombEvaluation:
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
            per_sentence.append(
                {
                    "doc_id": rec["doc_id"],
                    "sentence": rec["sentence"],
                    "gold": gold_sets,
                    "pred": pred_sets,
                    "parse_status": res["parse_status"],
                    "parse_reason": res["parse_reason"],
                    "problems": problems,
                    "raw_output": res["raw_output"],
                }
            )
    official = score_official(gold_all, relations_from_official(pred_rows))
    variant = score_rexdrug_variant(
        [gold_answer(r) for r in records], [[answer_item(p) for p in res["parsed"]] for res in results]
    )
    statuses: dict[str, int] = {}
    for res in results:
        statuses[res["parse_status"]] = statuses.get(res["parse_status"], 0) + 1
    failures = sum(v for k, v in statuses.items() if k not in USABLE_PARSE_STATUSES)
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
        drugs = list(
            {
                (d["surface"], d["start"], d["end"]): {
                    "name": d["surface"],
                    "start": d["start"],
                    "end": d["end"],
                }
                for d in kept
            }.values()
        )
        out.append({**rel, "drugs": drugs})
    return out


def _sentence_item(record: dict):
    """The runner item of a gold sentence: its paragraph as context, and its offset there when the
    record gives one that holds the sentence (the prompt's window is then cut at it)."""
    from model.items import ExtractionItem, valid_span

    fields = {"doc_id": record["doc_id"], "sentence": record["sentence"], "context": record.get("paragraph")}
    sentence, context, start = fields["sentence"], fields["context"], record.get("sentence_start")
    if (
        not isinstance(sentence, str)
        or not sentence.strip()
        or (context is not None and not isinstance(context, str))
    ):
        return fields  # the runner reports it as an input error
    span = valid_span((start, start + len(sentence)), sentence, context) if isinstance(start, int) else None
    return ExtractionItem(sentence, context, span, fields=fields)


def evaluate_sentences(
    records: Sequence[dict], runner, matcher, *, all_sentences: bool = False, progress: bool = True
) -> SentenceEvaluation:
    """The sweep over annotated sentences, scored: candidates (as the sweep selects them, or every
    sentence with ``all_sentences``) go to the runner with their paragraph as context, and their
    relations are scored as the combinations stage stores them (``stored_relations``)."""
    from model.evaluation.sentences import score_sentences, sentence_errors
    from schemas.drugs import DRUG_KINDS

    rows_by_paragraph: dict = {}
    views = {r["doc_id"]: sweep_view(r, matcher, rows_by_paragraph) for r in records}
    chosen = [r for r in records if all_sentences or views[r["doc_id"]]["is_candidate"]]
    items = [_sentence_item(r) for r in chosen]
    started = time.perf_counter()
    results = run_with_progress(runner, items, f"eval {runner.engine.model_id}", progress=progress)
    gen_s = time.perf_counter() - started
    relations = {
        res["doc_id"]: stored_relations(res["parsed"], views[res["doc_id"]]["mentions"]) for res in results
    }
    scores = score_sentences(
        records,
        relations,
        mentions={k: [m for m in v["mentions"] if m.get("kind") in DRUG_KINDS] for k, v in views.items()},
        candidates={k: v["is_candidate"] for k, v in views.items()},
    )
    statuses: dict[str, int] = {}
    for res in results:
        statuses[res["parse_status"]] = statuses.get(res["parse_status"], 0) + 1
    summary = {
        "model_id": runner.engine.model_id,
        "prompt_version": runner.version,
        "sent_to_model": "all sentences" if all_sentences else "candidates (the sweep's rule)",
        **scores,
        "parse_status": statuses,
        "generation_seconds": round(gen_s, 2),
    }
    return SentenceEvaluation(summary, results, sentence_errors(records, relations))


# --- DDI13 -------------------------------------------------------------------------------------------


@dataclass
class DDIEvaluation:
    result: dict[str, Any]  # benchmark label, counts, scores and run statistics
    predictions: list[dict]  # {id, relations: [{type, ent_sets}], parse_status, parse_reason}
    outputs: list[dict]  # runner results


DDI_ENTITY_SOURCES = ("gold", "found")


def ddi_corpus(
    corpus: str, *, gold_path=None, zip_path=None, limit: int | None = None, entities: str = "gold"
) -> tuple[list[dict], list[dict], int, list[dict]]:
    """(gold records, runner items, sentences skipped for having no candidate pair, corpus read errors)
    of ``corpus`` ("official": the DDIExtraction 2013 test zip; "processed": RexDrug's JSONL copy).

    Only sentences with a candidate pair go to the model (elsewhere there is nothing to score); with
    ``limit`` the gold is cut to the same sentences.  The items' hints are the corpus entities
    (``entities="gold"``), or none (``"found"``: end to end, the runner's drug matcher finds the drugs
    as the sweep's does, or the model names them itself when the prompt has no hints).
    """
    from model.evaluation.drugcomb import read_jsonl

    if entities not in DDI_ENTITY_SOURCES:
        raise ValueError(f"entities must be one of {DDI_ENTITY_SOURCES}, got {entities!r}")

    if corpus == "official":
        from model.evaluation.ddi_official import read_official

        official = read_official(zip_path, "test")
        gold, errors = official.sentences, official.errors
        with_pairs = [s for s in gold if s["pairs"]]
        items = [
            {
                "id": s["id"],
                "sentence": " ".join(s["sentence"].split()),
                "hints": [e["text"] for e in s["entities"]],
            }
            for s in with_pairs
        ]
    else:
        from etl.paths import data_path

        gold, errors = read_jsonl(gold_path or data_path("ddi13", "test.jsonl")), []
        with_pairs = [r for r in gold if r.get("relations")]
        items = [
            {
                "id": r.get("id"),
                "sentence": " ".join(str(r.get("context") or "").split()),
                "hints": [e["entity"] for e in r.get("entities", [])],
            }
            for r in with_pairs
        ]
    if entities == "found":
        items = [{k: v for k, v in item.items() if k != "hints"} for item in items]
    skipped = len(gold) - len(with_pairs)
    if limit:
        with_pairs, items, skipped = with_pairs[:limit], items[:limit], 0
        gold = with_pairs
    return gold, items, skipped, errors


def ddi_prediction(row: dict) -> dict:
    """A runner row as a DDI prediction record: the model's answer items with their DDI labels, and the
    runner's one parse (DDI labels are the ``ddi`` prompt's own: no repair)."""
    if row["parse_status"] in RETRYABLE_STATUSES:  # the model never answered
        return {
            "id": row["id"],
            "relations": [],
            "parse_status": row["parse_status"],
            "parse_reason": row["parse_reason"],
        }
    items = row.get("answer_items") or []
    relations = [{"type": i.get("type"), "ent_sets": i.get("ent_set", i.get("ent_sets"))} for i in items]
    return {
        "id": row["id"],
        "relations": relations,
        "parse_status": row["parse_status"],
        "parse_reason": row["parse_reason"],
    }


def official_ddi_result(
    gold: list[dict], pred: list[dict], errors: list[dict], *, subset: bool, zip_path=None
) -> dict:
    """Scores of predictions on the official corpus, labelled with its counts (and the zip, if not the bundled one)."""
    from model.evaluation.ddi_official import (
        corpus_counts,
        name_oracle,
        official_label,
        score_official,
        score_string_pairs,
    )

    counts = corpus_counts(gold)
    label = official_label(counts, "test", subset=subset)
    if zip_path:
        label += f" [zip: {zip_path}]"
    return {
        "benchmark": label,
        "counts": counts,
        "scores": score_official(gold, pred),
        "string_pair_scores": score_string_pairs(gold, pred),
        "name_oracle": name_oracle(gold),
        "corpus_errors": errors,
    }


def processed_ddi_result(gold: list[dict], predictions: list[dict], *, gold_path=None, subset: bool) -> dict:
    """Scores of predictions on the processed copy, labelled with its counts."""
    from model.evaluation.ddi import PROCESSED_LABEL, positive_pairs, score_ddi

    label = PROCESSED_LABEL if gold_path is None else f"ddi13-processed format (custom gold: {gold_path})"
    counts = {
        "sentences": len(gold),
        "pairs": sum(len(r.get("relations") or []) for r in gold),
        "positive": sum(len(positive_pairs(r)) for r in gold),
    }
    label += (
        f" [{counts['sentences']:,} sentences, {counts['pairs']:,} pair rows, "
        f"{counts['positive']:,} positive name pairs"
    )
    label += "; subset]" if subset else "]"
    return {"benchmark": label, "counts": counts, "scores": score_ddi(gold, predictions)}


def ddi_run_stats(predictions: list[dict], skipped: int, seconds: float) -> dict:
    from collections import Counter

    from model.evaluation.ddi import predicted_pairs

    statuses = Counter(p["parse_status"] for p in predictions)
    n = len(predictions)
    return {
        "sentences_run": n,
        "sentences_without_candidate_pairs_skipped": skipped,
        "parse_status": dict(sorted(statuses.items())),
        "answers_with_ddi_pairs": sum(1 for p in predictions if predicted_pairs(p["relations"])[0]),
        "seconds": round(seconds, 2),
        "seconds_per_sentence": round(seconds / n, 4) if n else None,
    }


def evaluate_ddi(
    corpus: str,
    runner,
    *,
    gold_path=None,
    zip_path=None,
    limit: int | None = None,
    progress: bool = True,
    entities: str = "gold",
) -> DDIEvaluation:
    """Run ``runner`` (the ``ddi`` prompt) over one DDI13 corpus and score it (``ddi_corpus``); with
    ``entities="found"`` the runner needs a drug matcher (or a prompt without hints)."""
    gold, items, skipped, errors = ddi_corpus(
        corpus, gold_path=gold_path, zip_path=zip_path, limit=limit, entities=entities
    )
    started = time.perf_counter()
    rows = run_with_progress(runner, items, f"ddi13-{corpus}", progress=progress)
    seconds = time.perf_counter() - started
    predictions = [ddi_prediction(row) for row in rows]
    if corpus == "official":
        result = official_ddi_result(gold, predictions, errors, subset=bool(limit), zip_path=zip_path)
    else:
        result = processed_ddi_result(gold, predictions, gold_path=gold_path, subset=bool(limit))
    result.update(ddi_run_stats(predictions, skipped, seconds))
    result["entities"] = entities
    return DDIEvaluation(result, predictions, rows)
