"""`rexdrug ingest`: PubMed XML (files/folders, or an E-utilities sweep) -> the Parquet + DuckDB warehouse.

Prints the run summary as one JSON object on stdout.  Exit code: 0 when every file parsed without an
error row, 1 when some file produced error rows (everything else is still written, and the error rows
are in the ``ingest_errors`` table: a scheduler sees the failure, nothing is lost) or when E-utilities
could not be reached, 2 for a configuration error (a missing input, an unwritable warehouse, a bad
date or override: all found before Spark starts).

E-utilities settings are ``KEY=VALUE`` overrides (``--set KEY=VALUE``, or bare anywhere on the line,
also after ``--input``); dates are YYYY-MM-DD or YYYY/MM/DD.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import date, timedelta
from pathlib import Path

from jobs.cli._args import (
    PathsThenOverrides,
    all_overrides,
    day,
    require_existing_inputs,
    require_writable_dir,
)

log = logging.getLogger(__name__)

DATETYPES = ("edat", "mdat")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--input",
        nargs="+",
        action=PathsThenOverrides,
        metavar="FILE_OR_DIR",
        help="XML files (.xml/.xml.gz) or folders; KEY=VALUE tokens among them are overrides",
    )
    parser.add_argument(
        "--source",
        choices=("files", "entrez"),
        default="files",
        help="files (default, with --input) or entrez (an E-utilities sweep by date window)",
    )
    parser.add_argument("--warehouse", required=True, type=Path, metavar="DIR", help="warehouse folder")
    parser.add_argument(
        "--kind",
        choices=("auto", "baseline", "update", "file"),
        default="auto",
        help="source kind of --input files (auto: NLM folder names baseline/ and updatefiles/)",
    )
    parser.add_argument("--force", action="store_true", help="re-ingest files already in the ledger")
    parser.add_argument("--master", help="Spark master URL (default local[*], or spark-submit's)")
    parser.add_argument("--run-id", help="run identifier recorded in the ledger (default: timestamp)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    entrez = parser.add_argument_group("E-utilities (--source entrez)")
    entrez.add_argument(
        "--since", type=day, metavar="YYYY-MM-DD", help="first day of the window (or YYYY/MM/DD)"
    )
    entrez.add_argument(
        "--until",
        type=day,
        metavar="YYYY-MM-DD",
        help="last day of the window (or YYYY/MM/DD; default: yesterday)",
    )
    entrez.add_argument(
        "--datetype",
        choices=(*DATETYPES, "both"),
        default="both",
        help="edat (new records), mdat (revised records) or both (default)",
    )
    entrez.add_argument(
        "--config", type=Path, help="YAML file for the E-utilities settings (email, api_key...)"
    )
    entrez.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override an E-utilities setting (repeatable)",
    )
    parser.add_argument(
        "extra_overrides", nargs="*", metavar="KEY=VALUE", help="E-utilities overrides, as --set KEY=VALUE"
    )


def _entrez_files(args: argparse.Namespace) -> list[Path]:
    """Land the window's efetch XML under WAREHOUSE/raw/entrez (resumable), return the files."""
    from etl.config import load_config
    from etl.pubmed.entrez import EntrezConfig
    from jobs.ingest import land_entrez

    if args.input:
        raise ValueError("--input and --source entrez are exclusive")
    if args.since is None:
        raise ValueError("--source entrez needs --since YYYY-MM-DD")
    until = args.until or (date.today() - timedelta(days=1))
    if until < args.since:
        raise ValueError(f"--until {until} is before --since {args.since}")
    config = load_config(EntrezConfig, args.config, args.overrides)
    datetypes = DATETYPES if args.datetype == "both" else (args.datetype,)
    return land_entrez(config, args.since, until, datetypes, args.warehouse)


def run(args: argparse.Namespace) -> int:
    from etl.pubmed.entrez import EntrezError, redact
    from jobs.ingest import run_ingest
    from jobs.spark import get_spark

    if args.source == "entrez":
        args.overrides = all_overrides(args, "overrides", "extra_overrides")
        require_writable_dir(args.warehouse)
        try:
            inputs, kind = _entrez_files(args), "entrez"
        except EntrezError as exc:  # the server is down or unreachable: one line, not a traceback
            log.error(
                "E-utilities failed: %s (is the network up? the server is entrez base_url)", redact(str(exc))
            )
            return 1
        if not inputs:
            log.warning("the E-utilities window returned no records; refreshing the warehouse only")
    else:
        if not args.input:
            raise ValueError("give --input FILE_OR_DIR... (or --source entrez --since DATE)")
        overrides = all_overrides(args, "overrides", "extra_overrides")
        if overrides or args.config:
            given = ", ".join(overrides) or f"--config {args.config}"
            raise ValueError(f"E-utilities settings ({given}) need --source entrez; files take none")
        require_existing_inputs(args.input)
        require_writable_dir(args.warehouse)
        inputs, kind = args.input, args.kind
    spark = get_spark("rexdrug-ingest", master=args.master)
    summary = run_ingest(
        spark, inputs, args.warehouse, kind, args.run_id, force=args.force, show_progress=not args.no_progress
    )
    json.dump(summary.to_dict(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    if summary.files_with_errors:
        log.warning(
            "%d file(s) had errors; see the ingest_errors table: %s",
            len(summary.files_with_errors),
            ", ".join(summary.files_with_errors[:10]),
        )
        return 1
    return 0
