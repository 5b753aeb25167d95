"""`rexdrug kb diff`: drug sets new since a run, changed (consensus label or evidence), or gone.

Reads the warehouse read-only; the KB of the past is recomputed from the history (``jobs.kb_diff``).
Data on stdout (a table, or one JSON object per changed set with ``--format jsonl``), a one-line
summary on stderr.  Exit 2 when ``--since`` names no run and no day.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def add_diff_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--warehouse", required=True, type=Path)
    parser.add_argument(
        "--since",
        metavar="RUN_ID|DATE",
        help="a run id of sweep_runs, or a day YYYY-MM-DD (state before that day's runs); "
        "default: the run before the latest (what the latest run changed)",
    )
    parser.add_argument("--model-id", help="only combinations extracted by this model")
    parser.add_argument("--prompt-version", help="only combinations extracted with this prompt version")
    parser.add_argument("--format", choices=["table", "jsonl"], default="table")


def run_diff(args: argparse.Namespace) -> int:
    from jobs.kb_diff import kb_diff

    baseline, changes = kb_diff(
        args.warehouse, args.since, model_id=args.model_id, prompt_version=args.prompt_version
    )
    if args.format == "jsonl":
        for change in changes:
            sys.stdout.write(json.dumps(change, ensure_ascii=False) + "\n")
    else:
        _print_table(changes)
    counts = {kind: sum(c["change"] == kind for c in changes) for kind in ("new", "changed", "removed")}
    log.info(
        "since %s: %d new, %d changed, %d removed drug set(s)",
        baseline.describe(),
        counts["new"],
        counts["changed"],
        counts["removed"],
    )
    return 0


def _print_table(changes: list[dict]) -> None:
    if not changes:
        sys.stdout.write("no change\n")
        return
    sys.stdout.write(
        f"{'change':<8} {'label':<14} {'papers':>9} {'mentions':>9}  drug set (added / removed PMIDs)\n"
    )
    for c in changes:
        label = c["consensus_label"] or "-"
        if c["change"] == "changed" and c["label_changed"]:
            label = f"{c['previous_label']}->{c['consensus_label']}"
        papers = (
            f"{c['previous_n_papers']}->{c['n_papers']}"
            if c["change"] == "changed"
            else str(c["n_papers"] or c["previous_n_papers"])
        )
        mentions = (
            f"{c['previous_n_mentions']}->{c['n_mentions']}"
            if c["change"] == "changed"
            else str(c["n_mentions"] or c["previous_n_mentions"])
        )
        names = " + ".join(c["member_names"] or []) or c["drug_set_key"]
        pmids = ""
        if c["added_pmids"] or c["removed_pmids"]:
            pmids = f"  (+{','.join(c['added_pmids'])} / -{','.join(c['removed_pmids'])})"
        sys.stdout.write(f"{c['change']:<8} {label:<14} {papers:>9} {mentions:>9}  {names}{pmids}\n")
