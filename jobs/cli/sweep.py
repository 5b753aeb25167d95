"""`rexdrug sweep`: PubMed in, a warehouse of normalized drug combinations out.

Exit code: 0 when the run committed (or, nightly, when an earlier run already covered the window:
status "up_to_date"), 1 when it committed but every one of its extractions failed (an engine outage:
the rows are kept and the next sweep retries them; ``sweep_runs`` says "failed") or E-utilities or the
disk failed, 2 for a configuration error.  Whatever happens, stdout ends with one line of JSON: the
run's summary, with ``status`` ("committed", "failed", "up_to_date", "error", "config_error").
``--source entrez`` without ``--since`` starts the day after the last committed Entrez sweep's window.  ``--source entrez`` takes the E-utilities settings as ``entrez.KEY=VALUE``
overrides or an ``entrez:`` section of ``--config`` (email, api_key, tool, base_url, batch_size, ...),
with NCBI_EMAIL / NCBI_API_KEY from the environment when unset, as ``rexdrug ingest`` does.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from jobs.cli._args import (
    PathsThenOverrides,
    all_overrides,
    day,
    require_existing_inputs,
    require_writable_dir,
)
from model.engines import ENGINE_KINDS  # the one set engine.kind is validated against

log = logging.getLogger(__name__)

EXPLORE_SQL = """\
-- explore the warehouse:
rexdrug query --warehouse {wh} "SELECT label, count(*) FROM current_combinations GROUP BY label"
rexdrug query --warehouse {wh} "SELECT pmid, label, drug_set_key, sentence_text FROM current_combinations LIMIT 20"
rexdrug query --warehouse {wh} "SELECT drug_set_key, n_papers, consensus_label FROM combination_kb ORDER BY n_papers DESC LIMIT 20"
rexdrug query --warehouse {wh} "SELECT stage, reason, count(*) FROM current_extraction_errors GROUP BY ALL"
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--warehouse", required=True, type=Path, help="warehouse folder (created if missing)")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--demo", action="store_true", help="use the bundled real PubMed samples")
    src.add_argument(
        "--input",
        nargs="+",
        action=PathsThenOverrides,
        metavar="PATH",
        help="NLM XML files or folders (.xml/.xml.gz); KEY=VALUE tokens among them are overrides",
    )
    src.add_argument(
        "--source",
        choices=["entrez"],
        help="fetch through NCBI E-utilities (settings: entrez.email=..., entrez.api_key=... or "
        "NCBI_EMAIL, NCBI_API_KEY)",
    )
    parser.add_argument(
        "--since",
        type=day,
        help="E-utilities window start, YYYY-MM-DD or YYYY/MM/DD (default: the day after the last "
        "committed Entrez sweep's window, from sweep_runs)",
    )
    parser.add_argument(
        "--until", type=day, help="E-utilities window end, YYYY-MM-DD or YYYY/MM/DD (default: yesterday)"
    )
    parser.add_argument("--config", type=Path, help="YAML config (SweepConfig fields)")
    parser.add_argument(
        "--engine",
        choices=ENGINE_KINDS,
        metavar="KIND",
        help=f"engine.kind: {', '.join(ENGINE_KINDS)} (default transformers with engine.model "
        "rexdrug-smol, the embedded model)",
    )
    parser.add_argument("--max-candidates", type=int, help="extract at most this many candidate sentences")
    parser.add_argument("--master", help="Spark master URL (default local[*]; ignored under spark-submit)")
    parser.add_argument("--no-kb", action="store_true", help="do not rebuild the combination KB at the end")
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. engine.batch_size=8"
    )


def config_from_args(args: argparse.Namespace):
    from etl.config import load_config
    from jobs.sweep import SweepConfig

    overrides = [f"warehouse={json.dumps(str(args.warehouse))}", *all_overrides(args, "overrides")]
    if args.demo:
        overrides.append("source=demo")
    elif args.input:
        overrides += ["source=files", "inputs=" + json.dumps(args.input)]
    elif args.source:
        overrides.append(f"source={args.source}")
    for key, value in (("since", args.since), ("until", args.until), ("master", args.master)):
        if value:  # dates as ISO text: the one form every reader of the config takes
            overrides.append(f"{key}={json.dumps(str(value))}")
    if args.engine:
        overrides.append(f"engine.kind={json.dumps(args.engine)}")
    if args.max_candidates is not None:
        overrides.append(f"max_candidates={args.max_candidates}")
    if args.no_kb:
        overrides.append("build_kb=false")
    return load_config(SweepConfig, args.config, overrides)


def _emit(result: dict) -> None:
    """The one JSON line a scheduler reads (the last line of stdout)."""
    sys.stdout.write(json.dumps(result, default=str, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def run(args: argparse.Namespace) -> int:
    from etl.pubmed.entrez import EntrezError, redact

    try:
        return _run(args)
    except EntrezError as exc:  # E-utilities down or unreachable after its retries: one line, exit 1
        message = f"E-utilities failed: {redact(str(exc))}"
        _emit({"status": "error", "error": message, "warehouse": str(args.warehouse)})
        log.error("%s (the next nightly sweep's window covers this one)", message)
        return 1
    except ValueError as exc:  # the dispatcher logs it and exits 2
        _emit({"status": "config_error", "error": str(exc), "warehouse": str(args.warehouse)})
        raise
    except OSError as exc:  # the dispatcher logs it and exits 1
        from jobs.cli import describe_os_error

        _emit({"status": "error", "error": describe_os_error(exc), "warehouse": str(args.warehouse)})
        raise
    except Exception as exc:
        reason = spark_failure(exc)
        if reason is None:
            raise
        # A Spark job that gave up (e.g. executors lost more often than spark.task.maxFailures): one line
        # and the JSON status; the staged run is discarded or rolled forward by the next sweep.
        _emit({"status": "error", "error": reason, "warehouse": str(args.warehouse)})
        log.error("%s (run the sweep again: it recovers the staged run)", reason)
        log.debug("traceback", exc_info=True)
        return 1


def spark_failure(exc: BaseException) -> str | None:
    """A short reason when ``exc`` is a failed Spark job (a JVM-side error), else None."""
    try:
        from py4j.protocol import Py4JError
        from pyspark.errors import PySparkException
    except ImportError:  # pragma: no cover - pyspark is a dependency
        return None
    if not isinstance(exc, Py4JError | PySparkException):
        return None
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    return f"Spark job failed: {first[:500]}"


def _run(args: argparse.Namespace) -> int:
    from jobs.sweep import run_sweep

    config = config_from_args(args)
    # Checked before run_sweep starts Spark (a JVM start) or takes the warehouse lock.
    if config.source == "files":
        require_existing_inputs(config.inputs)
    require_writable_dir(config.warehouse)
    summary = run_sweep(config)  # the KB is built inside the run, under its lock (unless --no-kb)
    result = summary.as_dict()
    if summary.status == "up_to_date":
        _emit(result)
        sys.stderr.write(
            f"up to date: the E-utilities window up to {config.until or 'yesterday'} was swept "
            "already; nothing to do\n"
        )
        return 0
    _emit(result)  # the KB was built inside the run, under its lock (unless --no-kb)
    _print_human_summary(result, config.warehouse)
    if summary.status == "failed":
        log.error(
            "run %s: all %d extractions failed; they are retried by the next sweep",
            summary.run_id,
            summary.n_extracted,
        )
        return 1
    return 0


def _print_human_summary(result: dict, warehouse: Path) -> None:
    lines = [
        (
            f"run {result['run_id']}: {result['n_input_files']} files, {result['n_articles']} new articles, "
            f"{result['n_sentences']} sentences, {result['n_candidates']} candidates "
            f"({result['n_skipped']} already extracted, {result['n_retried']} retried"
            + (
                f", {result['n_resumed']} taken from an interrupted run's checkpoints"
                if result.get("n_resumed")
                else ""
            )
            + f"), {result['n_combinations']} combinations, {result['n_errors']} extraction errors "
            f"({result['n_failed']} failed, retried next time)"
        ),
        "time per stage: " + ", ".join(f"{k} {v:.1f}s" for k, v in result["stage_seconds"].items()),
    ]
    from schemas.answer import SWEEP_INTERACTIONS

    interactions = SWEEP_INTERACTIONS in (result.get("tasks") or [])
    if interactions:
        lines.append(f"interactions task: {result['n_interactions']} drug-drug interactions")
    if result.get("kb_drug_sets") is not None:
        lines.append(
            f"knowledge base: {result['kb_drug_sets']} drug sets"
            + (f", {result['kb_interaction_pairs']} interacting pairs" if interactions else "")
        )
    sys.stderr.write("\n".join(lines) + "\n\n" + EXPLORE_SQL.format(wh=warehouse))
