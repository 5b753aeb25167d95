"""rexdrug eval: score extraction on DrugComb (official scorer + RexDrug variant) and DDI13.

rexdrug eval drugcomb --gold answers.jsonl --pred pred.jsonl       # score official-format files
rexdrug eval drugcomb --model embedded [--limit N] [--out DIR]      # run a model/baseline, then score
rexdrug eval drugcomb --model rule_all_drugs
rexdrug eval ddi --pred pred.jsonl [--gold data/ddi13/test.jsonl]   # DDI13 pair-level micro-F1
rexdrug eval ddi --pred pred.jsonl --corpus official [--zip DDICorpus-2013.zip]
rexdrug eval ddi --model rule_ddi_all_pairs [--corpus official|processed|both] [--limit N] [--out DIR]
rexdrug eval realpm --models rule_all_drugs,rexdrug-smol [--split dev]    # annotated real PubMed sentences
rexdrug eval sentences --gold FILE --model M [--all-sentences] [--out DIR]  # any gold file of that format
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from pathlib import Path

from jobs.cli._model_args import add_model_arguments, engine_and_prompt, matcher_or_none

log = logging.getLogger("rexdrug.eval")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    dc = sub.add_parser("drugcomb", help="DrugComb n-ary combinations (official allenai scorer)")
    dc.add_argument("--gold", help="gold file, official format (default: data/drugcomb/answers.jsonl)")
    dc.add_argument("--pred", help="prediction file, official format (doc_id, drug_idxs, relation_label)")
    dc.add_argument(
        "--split", default="final_test_set.jsonl", help="records to run a model on (data/drugcomb/)"
    )
    dc.add_argument("--limit", type=int, help="only the first N sentences")
    dc.add_argument("--out", help="folder for predictions, per-sentence errors and summary.json")
    add_model_arguments(dc)
    ddi = sub.add_parser(
        "ddi", help="DDI13 pair-level micro-F1 (official corpus and/or RexDrug's processed copy)"
    )
    ddi.add_argument("--gold", help="processed-copy gold JSONL (default: data/ddi13/test.jsonl)")
    ddi.add_argument("--zip", help="official corpus zip (default: data/ddi13/DDICorpus-2013.zip)")
    ddi.add_argument(
        "--pred",
        help="score this predictions JSONL ({id, relations: [{type, ent_sets}]}) instead of running --model",
    )
    ddi.add_argument(
        "--corpus",
        choices=("official", "processed", "both"),
        help="gold set(s): default processed with --pred, both with --model",
    )
    ddi.add_argument(
        "--limit", type=int, help="only the first N sentences with candidate pairs of each corpus"
    )
    ddi.add_argument("--out", help="folder for predictions, raw outputs and summary.json")
    ddi.add_argument(
        "--entities",
        choices=("gold", "found"),
        default="gold",
        help="--model: the prompt's drug hints are the corpus entities (gold, the default) or found by our "
        "drug matcher as in the sweep (found: end to end, as zero-shot LLM results on DDI13 are reported)",
    )
    add_model_arguments(ddi)
    sen = sub.add_parser(
        "sentences",
        aliases=["realpm"],
        help="annotated real PubMed sentences, end to end as the sweep runs (data/realpm)",
    )
    sen.add_argument(
        "--gold",
        help="gold JSONL in DrugComb's row format with a split field (default: data/realpm/gold.jsonl)",
    )
    sen.add_argument("--split", default="dev", help="dev (default, for choices) | train | all")
    sen.add_argument(
        "--models",
        help="comma-separated models scored side by side (each as --model), "
        "e.g. rule_all_drugs,rule_cue,rexdrug-smol",
    )
    sen.add_argument(
        "--all-sentences",
        action="store_true",
        help="send every gold sentence to the model, not only the sweep's candidates",
    )
    sen.add_argument("--format", choices=("json", "table"), default="json", help="stdout format")
    sen.add_argument("--out", help="folder for each model's outputs, per-sentence errors and summary.json")
    add_model_arguments(sen)


def run(args: argparse.Namespace) -> int:
    if args.benchmark == "ddi":
        return _ddi(args)
    if args.benchmark in ("sentences", "realpm"):
        return _sentences(args)
    if args.pred:
        return _score_files(args)
    return _run_model(args)


def _score_files(args) -> int:
    from etl.paths import data_path
    from model.evaluation.drugcomb import score_official_files

    gold = args.gold or data_path("drugcomb", "answers.jsonl")
    scores = score_official_files(gold, args.pred)
    print(
        json.dumps(
            {
                "scorer": "official (allenai drug-combo-extraction)",
                "gold": str(gold),
                "pred": args.pred,
                "scores": scores,
            },
            indent=2,
        )
    )
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


def _sentences(args) -> int:
    import copy

    from etl.drugs import default_matcher
    from etl.paths import data_path
    from model.engines import create_engine
    from model.evaluation.drugcomb import read_jsonl
    from model.evaluation.run import evaluate_sentences
    from model.evaluation.sentences import select_split
    from model.extraction import ExtractionRunner

    if args.models and args.model:
        raise ValueError("eval sentences: give --model M or --models A,B,..., not both")
    models = [m.strip() for m in (args.models or args.model or "rexdrug-smol").split(",") if m.strip()]
    gold_path = args.gold or data_path("realpm", "gold.jsonl")
    records = select_split(read_jsonl(gold_path), args.split)
    matcher = default_matcher()
    summaries = []
    for model in models:
        margs = copy.copy(args)
        margs.model = model
        engine_config, prompt = engine_and_prompt(margs)
        engine = create_engine(engine_config, matcher=matcher)
        try:
            runner = ExtractionRunner(engine, prompt, matcher=matcher, sampling=engine_config.sampling)
            result = evaluate_sentences(records, runner, matcher, all_sentences=args.all_sentences)
        finally:
            engine.close()
        summary = {"model": model, "gold": str(gold_path), "split": args.split, **result.summary}
        summaries.append(summary)
        if args.out:
            out = Path(args.out) / re.sub(r"[^\w.-]+", "_", model)
            out.mkdir(parents=True, exist_ok=True)
            _write_jsonl(out / "outputs.jsonl", result.outputs)
            _write_jsonl(out / "errors.jsonl", result.errors)
            (out / "summary.json").write_text(json.dumps(summary, indent=2))
            log.info("wrote %s", out)
    if args.format == "table":
        print(_sentence_table(summaries))
    else:
        print(json.dumps(summaries[0] if len(summaries) == 1 else {"models": summaries}, indent=2))
    return 0


def _sentence_table(summaries: list[dict]) -> str:
    """A markdown table of the headline numbers, one row per model."""
    head = (
        "| model | any-exact P | R | F1 | any-partial F1 | pos-exact F1 | labels agree | mention P | "
        "mention R | sent to model | predicted |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for s in summaries:
        c, m = s["combinations"], s.get("drug_mentions", {})
        lines.append(
            f"| {s['model']} | {c['any_exact']['precision']:.3f} | {c['any_exact']['recall']:.3f} | "
            f"{c['any_exact']['f1']:.3f} | {c['any_partial']['f1']:.3f} | {c['pos_exact']['f1']:.3f} | "
            f"{s['labels']['agreement'] if s['labels']['agreement'] is not None else '-'} | "
            f"{m.get('precision', '-')} | {m.get('recall', '-')} | "
            f"{s['selection']['share_sent_to_model']:.3f} | {s['predicted_combinations']} |"
        )
    return "\n".join(lines)


def _ddi(args) -> int:
    if args.pred and args.model:
        raise ValueError("eval ddi: give --pred FILE (score a file) or --model M (run a model), not both")
    if not args.pred and not args.model:
        raise ValueError("eval ddi: give --pred FILE to score a prediction file or --model M to run a model")
    if args.limit is not None and args.limit < 1:
        raise ValueError("--limit must be >= 1")
    return _ddi_score_file(args) if args.pred else _ddi_run_model(args)


def _ddi_score_file(args) -> int:
    from model.evaluation.drugcomb import read_jsonl

    corpus = args.corpus or "processed"
    if corpus == "both":
        raise ValueError(
            "eval ddi --pred scores one corpus (sentence ids differ): --corpus official or processed"
        )
    pred = read_jsonl(args.pred)
    if corpus == "processed":
        from etl.paths import data_path
        from model.evaluation.ddi import PROCESSED_LABEL, score_ddi

        gold_path = args.gold or data_path("ddi13", "test.jsonl")
        label = PROCESSED_LABEL if args.gold is None else f"ddi13-processed format (custom gold: {gold_path})"
        print(json.dumps({"benchmark": label, "scores": score_ddi(read_jsonl(gold_path), pred)}, indent=2))
        return 0
    from model.evaluation.ddi_official import read_official
    from model.evaluation.run import official_ddi_result

    corpus = read_official(args.zip, "test")
    print(
        json.dumps(
            official_ddi_result(corpus.sentences, pred, corpus.errors, subset=False, zip_path=args.zip),
            indent=2,
        )
    )
    return 0


def _ddi_run_model(args) -> int:
    from model.engines import create_engine
    from model.evaluation.run import evaluate_ddi
    from model.extraction import ExtractionRunner

    corpora = ("official", "processed") if (args.corpus or "both") == "both" else (args.corpus,)
    # DDI13 gives the entities: the ddi prompt lists them as hints.  The DrugComb label priors shipped
    # with a bundled model bias DrugComb labels, so they are off unless the user sets them (--set).
    # The ddi prompt has no context field: a bundled model's trained context must not show in its version.
    args.prompt, args.hints, args.context = args.prompt or "ddi", True, args.context or "abstract"
    args.overrides = ["label_bias={}", *(args.overrides or [])]
    engine_config, prompt = engine_and_prompt(args)
    if prompt.variant != "ddi":
        raise ValueError(
            f"eval ddi needs the ddi prompt (DDI types); --prompt {prompt.variant} asks for DrugComb labels"
        )
    started = time.perf_counter()
    engine = create_engine(engine_config)
    load_s = time.perf_counter() - started
    matcher = None
    if args.entities == "found":
        from etl.drugs import default_matcher

        matcher = default_matcher()
    runner = ExtractionRunner(engine, prompt, sampling=engine_config.sampling, matcher=matcher)
    summary: dict = {
        "engine": engine_config.kind,
        "model_id": engine.model_id,
        "prompt_version": runner.version,
        "max_new_tokens": engine_config.sampling.max_new_tokens,
        "limit": args.limit,
        "load_seconds": round(load_s, 2),
    }
    out = Path(args.out) if args.out else None
    try:
        for corpus in corpora:
            evaluation = evaluate_ddi(
                corpus,
                runner,
                gold_path=args.gold,
                zip_path=args.zip,
                limit=args.limit,
                entities=args.entities,
            )
            summary[corpus] = evaluation.result
            if out:
                (out / corpus).mkdir(parents=True, exist_ok=True)
                _write_jsonl(out / corpus / "predictions.jsonl", evaluation.predictions)
                _write_jsonl(out / corpus / "outputs.jsonl", evaluation.outputs)
    finally:
        engine.close()
    if out:
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        log.info("wrote %s", out)
    print(json.dumps(summary, indent=2))
    return 0


def _write_jsonl(path: Path, rows) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
