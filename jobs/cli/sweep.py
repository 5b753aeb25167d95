"""`rexdrug sweep`: PubMed in, a warehouse of normalized drug combinations out."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)

EXPLORE_SQL = """\
-- explore the warehouse:
rexdrug query --warehouse {wh} "SELECT label, count(*) FROM current_combinations GROUP BY label"
rexdrug query --warehouse {wh} "SELECT pmid, label, drug_set_key, sentence_text FROM current_combinations LIMIT 20"
rexdrug query --warehouse {wh} "SELECT drug_set_key, n_papers, consensus_label FROM combination_kb ORDER BY n_papers DESC LIMIT 20"
rexdrug query --warehouse {wh} "SELECT stage, reason, count(*) FROM extraction_errors GROUP BY ALL"
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--warehouse", required=True, type=Path, help="warehouse folder (created if missing)")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--demo", action="store_true", help="use the bundled real PubMed samples")
    src.add_argument("--input", nargs="+", metavar="PATH", help="NLM XML files or folders (.xml/.xml.gz)")
    src.add_argument("--source", choices=["entrez"], help="fetch through NCBI E-utilities")
    parser.add_argument("--since", help="E-utilities window start, YYYY/MM/DD")
    parser.add_argument("--until", help="E-utilities window end, YYYY/MM/DD (default: today)")
    parser.add_argument("--config", type=Path, help="YAML config (SweepConfig fields)")
    parser.add_argument("--engine", help="engine kind shortcut (embedded, transformers, vllm, openai, rule-all-drugs, ...)")
    parser.add_argument("--max-candidates", type=int, help="extract at most this many candidate sentences")
    parser.add_argument("--master", help="Spark master URL (default local[*]; ignored under spark-submit)")
    parser.add_argument("--no-kb", action="store_true", help="do not rebuild the combination KB at the end")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. engine.batch_size=8")


def config_from_args(args: argparse.Namespace):
    from etl.config import load_config
    from jobs.sweep import SweepConfig

    overrides = [f"warehouse={args.warehouse}", *args.overrides]
    if args.demo:
        overrides.append("source=demo")
    elif args.input:
        overrides += ["source=files", "inputs=" + json.dumps(args.input)]
    elif args.source:
        overrides.append(f"source={args.source}")
    for key, value in (("since", args.since), ("until", args.until), ("master", args.master)):
        if value:
            overrides.append(f"{key}={json.dumps(value)}")
    if args.engine:
        overrides.append(f"engine.kind={args.engine}")
    if args.max_candidates is not None:
        overrides.append(f"max_candidates={args.max_candidates}")
    if args.no_kb:
        overrides.append("build_kb=false")
    return load_config(SweepConfig, args.config, overrides)


def run(args: argparse.Namespace) -> int:
    from jobs.kb import build_and_store_kb
    from jobs.sweep import run_sweep

    config = config_from_args(args)
    summary = run_sweep(config)
    result = summary.as_dict()
    if config.build_kb:
        kb = build_and_store_kb(config.warehouse, min_confidence=config.min_confidence)
        result["kb_drug_sets"] = kb.num_rows
    json.dump(result, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
    _print_human_summary(result, config.warehouse)
    return 0


def _print_human_summary(result: dict, warehouse: Path) -> None:
    lines = [
        f"run {result['run_id']}: {result['n_input_files']} files, {result['n_articles']} new articles, "
        f"{result['n_sentences']} sentences, {result['n_candidates']} candidates "
        f"({result['n_skipped']} already extracted), {result['n_combinations']} combinations, "
        f"{result['n_errors']} extraction errors",
        "time per stage: " + ", ".join(f"{k} {v:.1f}s" for k, v in result["stage_seconds"].items()),
    ]
    if "kb_drug_sets" in result:
        lines.append(f"knowledge base: {result['kb_drug_sets']} drug sets")
    sys.stderr.write("\n".join(lines) + "\n\n" + EXPLORE_SQL.format(wh=warehouse))
