"""`rexdrug kb build|export|diff`: the knowledge base (one row per drug set; its interactions section, one
row per drug pair)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="kb_command", required=True)
    build = sub.add_parser("build", help="(re)build the KB from the warehouse's current combinations")
    export = sub.add_parser("export", help="build and export the KB to a file")
    for p in (build, export):
        p.add_argument("--warehouse", required=True, type=Path)
        p.add_argument("--model-id", help="only combinations extracted by this model")
        p.add_argument("--prompt-version", help="only combinations extracted with this prompt version")
        p.add_argument("--examples", type=int, default=3, help="example sentences kept per drug set")
        p.add_argument(
            "--min-confidence",
            type=float,
            metavar="X",
            help="count only combination and interaction rows with confidence >= X, in [0, 1]; 0 keeps "
            "all, rows without a confidence too (default: the sweep config's min_confidence, 0.0)",
        )
    export.add_argument("--output", required=True, type=Path)
    export.add_argument("--format", choices=["parquet", "csv", "jsonl"], help="default: from the file suffix")
    export.epilog = (
        "The interactions section (drug pairs, interaction_kb) goes to a file beside the output: "
        "kb.csv -> kb.interactions.csv.  The stored warehouse KB (combination_kb, interaction_kb) is "
        "rebuilt as well, unless --min-confidence is given: an export with its own threshold writes only "
        "the files."
    )
    from jobs.cli.kb_diff import add_diff_arguments

    add_diff_arguments(sub.add_parser("diff", help="drug sets new, changed or gone since a run (read-only)"))


def run(args: argparse.Namespace) -> int:
    if args.kb_command == "diff":
        from jobs.cli.kb_diff import run_diff

        return run_diff(args)
    from etl.kb import export_kb, interactions_export_path, validate_min_confidence
    from jobs.kb import build_and_store_kbs
    from jobs.sweep import SweepConfig

    if not (args.warehouse / "warehouse.duckdb").exists() and not args.warehouse.is_dir():
        raise ValueError(f"no warehouse at {args.warehouse} (run `rexdrug sweep` first)")
    own_threshold = args.min_confidence is not None
    min_confidence = validate_min_confidence(
        args.min_confidence if own_threshold else SweepConfig().min_confidence
    )
    table, interactions = build_and_store_kbs(
        args.warehouse,
        model_id=args.model_id,
        prompt_version=args.prompt_version,
        n_examples=args.examples,
        min_confidence=min_confidence,
        store=args.kb_command == "build" or not own_threshold,
    )
    result = {
        "drug_sets": table.num_rows,
        "interaction_pairs": interactions.num_rows,
        "warehouse": str(args.warehouse),
        "min_confidence": min_confidence,
    }
    if args.kb_command == "export":
        fmt = args.format or args.output.suffix.lstrip(".").replace("json", "jsonl").replace(
            "jsonll", "jsonl"
        )
        export_kb(table, args.output, fmt)
        result["interactions_output"] = str(
            export_kb(interactions, interactions_export_path(args.output), fmt)
        )
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0
