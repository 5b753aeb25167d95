"""rexdrug extract: JSONL in (sentence, context[, hints], any other keys), JSONL out (plus results).

  rexdrug extract --input items.jsonl [--output out.jsonl] [--model embedded] [--hints]

An item may give ``span``, the sentence's [start, end] in its context: the window/clip context is then
cut there (a span that does not hold the sentence is ignored and the sentence is located by text).
Output rows carry ``parse_repairs`` as codes (``model.parsing.Repair``); their messages are ``parse_reason``.

One output row per non-blank input line, in input order.  A line that cannot be used (not UTF-8,
not JSON, not an object, ``sentence`` not a non-empty string, ``context`` not a string, ``hints``
not a list of strings) becomes an ``input_error`` row with its ``line`` number and the reason
("line N: ..."); the other lines are extracted and written as they go.

Exit codes: 0 when at least one line was extracted (bad lines and engine errors are counted on
stderr), 1 when there were lines but none could be extracted (every row an input or engine
error; the rows are still written), 2 for a configuration error (bad options, missing input).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from itertools import islice
from pathlib import Path

from jobs.cli._model_args import add_model_arguments, engine_and_prompt, matcher_or_none
from schemas.answer import ENGINE_ERROR, INPUT_ERROR, RETRYABLE_STATUSES

log = logging.getLogger("rexdrug.extract")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Bad input lines become input_error rows (with their line number); exit 0 if any line "
        "was extracted, 1 if none could be, 2 on a configuration error."
    )
    parser.add_argument("--input", required=True, help="JSONL file of items ('-' for stdin)")
    parser.add_argument("--output", help="JSONL output file (default stdout)")
    add_model_arguments(parser)


def read_items(lines) -> Iterator[tuple[int, dict | None, str | None]]:
    """(line number, item, None) per usable line, (line number, item or None, reason) per bad one.

    ``lines`` yields raw bytes: each line is decoded on its own, so one non-UTF-8 line is one bad
    line and not the end of the file.  Blank lines are skipped.
    """
    from model.extraction import input_problem

    for n, raw in enumerate(lines, 1):
        try:
            line = raw.decode("utf-8-sig" if n == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            yield n, None, f"line {n}: not UTF-8 ({exc.reason} at byte {exc.start})"
            continue
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as exc:
            yield n, None, f"line {n}: not JSON ({exc})"
            continue
        if not isinstance(item, dict):
            yield n, None, f"line {n}: not a JSON object (a {type(item).__name__})"
            continue
        problem = input_problem(item)
        yield n, item, (f"line {n}: {problem}" if problem else None)


def run(args: argparse.Namespace) -> int:
    from model.engines import create_engine
    from model.extraction import ExtractionRunner

    if args.input != "-" and not Path(args.input).is_file():
        raise ValueError(f"input file not found: {args.input}")
    engine_config, prompt = engine_and_prompt(args)
    matcher = matcher_or_none(prompt.hints or engine_config.kind.startswith("rule_"))
    engine = create_engine(engine_config, matcher=matcher)
    runner = ExtractionRunner(engine, prompt, matcher=matcher, sampling=engine_config.sampling)
    counts = {"rows": 0, INPUT_ERROR: 0, ENGINE_ERROR: 0}
    with ExitStack() as stack:
        stack.callback(engine.close)
        src = sys.stdin.buffer if args.input == "-" else stack.enter_context(open(args.input, "rb"))
        out = stack.enter_context(open(args.output, "w", encoding="utf-8")) if args.output else sys.stdout
        entries = read_items(src)
        while chunk := list(islice(entries, runner.chunk_size)):
            results = iter(runner.run([item for _n, item, problem in chunk if problem is None]))
            for n, item, problem in chunk:
                if problem is None:
                    row = next(results)
                else:  # whatever of the item could be read, and the line number
                    row = runner.error_row({**(item or {}), "line": n}, INPUT_ERROR, problem)
                counts["rows"] += 1
                if row["parse_status"] in RETRYABLE_STATUSES:  # the row is a failure, not an answer
                    counts[row["parse_status"]] += 1
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
            out.flush()
    return _report(counts)


def _report(counts: dict[str, int]) -> int:
    rows, bad, failed = counts["rows"], counts[INPUT_ERROR], counts[ENGINE_ERROR]
    if bad:
        log.warning(
            "%d of %d input lines were bad input (written as input_error rows with their line number)",
            bad,
            rows,
        )
    if failed:
        log.warning("%d of %d lines failed in the engine (written as engine_error rows)", failed, rows)
    if rows and bad + failed == rows:
        log.error("no line could be extracted (%d input errors, %d engine errors)", bad, failed)
        return 1
    return 0
