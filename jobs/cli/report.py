"""`rexdrug report`: one self-contained HTML page about a warehouse (runs, labels, top drug sets, errors).

The page needs no network when it is opened (inline CSS, plots as inline SVG, no script).  Prints the
path of the written file on stdout; exit 2 when there is no warehouse database.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import uuid
from pathlib import Path

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--warehouse", required=True, type=Path, help="warehouse folder")
    parser.add_argument("--output", type=Path, help="HTML file to write (default: WAREHOUSE/report.html)")
    parser.add_argument(
        "--top", type=int, default=20, help="drug sets shown with their evidence (default 20)"
    )
    parser.add_argument("--examples", type=int, default=3, help="example sentences per drug set (default 3)")
    parser.add_argument(
        "--partners", type=int, default=20, help="drugs listed by number of partners (default 20)"
    )


def write_report(
    warehouse: Path, output: Path, *, top: int = 20, examples: int = 3, partners: int = 20
) -> Path:
    """Collect from the warehouse (read-only) and write the page atomically; returns its path."""
    from etl.report import collect_report, render_html
    from etl.warehouse import connect_readonly

    with connect_readonly(warehouse) as con:
        data = collect_report(
            con, warehouse=str(warehouse), top_n=top, n_examples=examples, n_partners=partners
        )
    if data.runs and "combinations" in data.totals:
        from jobs.kb_diff import kb_diff

        # "what's new tonight": the KB now against the KB as it stood after the run before the latest
        baseline, data.changes = kb_diff(warehouse)
        data.changes_since = baseline.describe()
    page = render_html(data)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        tmp.write_text(page, encoding="utf-8")
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
    return output


def run(args: argparse.Namespace) -> int:
    output = args.output or args.warehouse / "report.html"
    start = time.perf_counter()
    path = write_report(args.warehouse, output, top=args.top, examples=args.examples, partners=args.partners)
    log.info("report written to %s (%d bytes, %.1fs)", path, path.stat().st_size, time.perf_counter() - start)
    sys.stdout.write(f"{path}\n")
    return 0
