"""rexdrug extract: JSONL in (sentence, context[, hints], any other keys), JSONL out (plus results).

  rexdrug extract --input items.jsonl [--output out.jsonl] [--model embedded] [--hints]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from jobs.cli._model_args import add_model_arguments, engine_and_prompt, matcher_or_none

log = logging.getLogger("rexdrug.extract")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, help="JSONL file of items ('-' for stdin)")
    parser.add_argument("--output", help="JSONL output file (default stdout)")
    add_model_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from model.engines import create_engine
    from model.extraction import ExtractionRunner

    engine_config, prompt = engine_and_prompt(args)
    items, bad = [], 0
    src = sys.stdin if args.input == "-" else open(args.input, encoding="utf-8")
    with src:
        for n, line in enumerate(src, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                if not isinstance(item, dict):
                    raise ValueError("not an object")
                items.append(item)
            except ValueError as exc:  # a bad line becomes an error row, the run continues
                bad += 1
                items.append({"line": n, "sentence": None, "input_error": str(exc)})
    matcher = matcher_or_none(prompt.hints or engine_config.kind.startswith("rule_"))
    engine = create_engine(engine_config, matcher=matcher)
    runner = ExtractionRunner(engine, prompt, matcher=matcher, sampling=engine_config.sampling)
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    try:
        for chunk in runner.iter_chunks(items):
            for row in chunk:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
            out.flush()
    finally:
        if args.output:
            out.close()
        engine.close()
    if bad:
        log.warning("%d input line(s) were not JSON objects (kept as error rows)", bad)
    return 0
