"""rexdrug eval: score extraction on DrugComb (official scorer + RexDrug variant) and DDI13.

  rexdrug eval drugcomb --gold answers.jsonl --pred pred.jsonl       # score official-format files
  rexdrug eval drugcomb --model embedded [--limit N] [--out DIR]      # run a model/baseline, then score
  rexdrug eval drugcomb --model rule_all_drugs
  rexdrug eval ddi --pred pred.jsonl [--gold data/ddi13/test.jsonl]   # DDI13 pair-level micro-F1
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from jobs.cli._model_args import add_model_arguments, engine_and_prompt, matcher_or_none

log = logging.getLogger("rexdrug.eval")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    dc = sub.add_parser("drugcomb", help="DrugComb n-ary combinations (official allenai scorer)")
    dc.add_argument("--gold", help="gold file, official format (default: data/drugcomb/answers.jsonl)")
    dc.add_argument("--pred", help="prediction file, official format (doc_id, drug_idxs, relation_label)")
    dc.add_argument("--split", default="final_test_set.jsonl", help="records to run a model on (data/drugcomb/)")
    dc.add_argument("--limit", type=int, help="only the first N sentences")
    dc.add_argument("--out", help="folder for predictions, per-sentence errors and summary.json")
    add_model_arguments(dc)
    ddi = sub.add_parser("ddi", help="DDI13 pair-level micro-F1 (processed copy)")
    ddi.add_argument("--gold", help="gold JSONL (default: data/ddi13/test.jsonl)")
    ddi.add_argument("--pred", required=True, help="predictions JSONL: {id, relations: [{type, ent_sets}]}")


def run(args: argparse.Namespace) -> int:
    if args.benchmark == "ddi":
        return _ddi(args)
    if args.pred:
        return _score_files(args)
    return _run_model(args)


def _score_files(args) -> int:
    from etl.paths import data_path
    from model.evaluation.drugcomb import score_official_files

    gold = args.gold or data_path("drugcomb", "answers.jsonl")
    scores = score_official_files(gold, args.pred)
    print(json.dumps({"scorer": "official (allenai drug-combo-extraction)", "gold": str(gold),
                      "pred": args.pred, "scores": scores}, indent=2))
    return 0


def _run_model(args) -> int:
    from etl.paths import data_path
    from model.engines import create_engine
    from model.evaluation.drugcomb import read_jsonl
    from model.evaluation.run import evaluate_drugcomb
    from model.extraction import ExtractionRunner

    engine_config, prompt = engine_and_prompt(args)
    records = read_jsonl(data_path("drugcomb", args.split))
    if args.limit:
        records = records[: args.limit]
    needs_matcher = prompt.hints or engine_config.kind.startswith("rule_")
    matcher = matcher_or_none(needs_matcher)
    started = time.perf_counter()
    engine = create_engine(engine_config, matcher=matcher)
    load_s = time.perf_counter() - started
    runner = ExtractionRunner(engine, prompt, matcher=matcher, sampling=engine_config.sampling)
    result = evaluate_drugcomb(records, runner)
    summary = {
        **result.summary,
        "engine": engine_config.kind,
        "max_new_tokens": engine_config.sampling.max_new_tokens,
        "split": args.split,
        "load_seconds": round(load_s, 2),
    }
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        _write_jsonl(out / "predictions.jsonl", result.predictions)
        _write_jsonl(out / "outputs.jsonl", result.outputs)
        _write_jsonl(out / "errors.jsonl", result.errors)
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        log.info("wrote %s", out)
    print(json.dumps(summary, indent=2))
    engine.close()
    return 0


def _ddi(args) -> int:
    from etl.paths import data_path
    from model.evaluation.ddi import PROCESSED_LABEL, score_ddi
    from model.evaluation.drugcomb import read_jsonl

    gold_path = args.gold or data_path("ddi13", "test.jsonl")
    scores = score_ddi(read_jsonl(gold_path), read_jsonl(args.pred))
    label = PROCESSED_LABEL if args.gold is None else f"custom gold: {gold_path}"
    print(json.dumps({"benchmark": label, "scores": scores}, indent=2))
    return 0


def _write_jsonl(path: Path, rows) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
