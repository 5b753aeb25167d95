"""``rexdrug parse FILE...``: one JSON object per record (articles, deletions, errors) on stdout.

Each object is the record's row (keys of ``schemas.articles``) plus ``"kind"``: ``article``,
``deletion`` or ``error``.  A folder argument means its ``*.xml`` / ``*.xml.gz`` files, sorted by
name.  Logs go to stderr.  Exit code 0, or 1 when some file failed completely (it produced error
rows and not a single article or deletion).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

log = logging.getLogger("rexdrug.parse")

KINDS = ("article", "deletion", "error")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "files", nargs="+", type=Path, help="PubMed XML files (.xml or .xml.gz) or folders of them"
    )
    parser.add_argument(
        "--kind",
        action="append",
        choices=KINDS,
        help="only print records of this kind (repeatable; default: all kinds)",
    )


def expand_inputs(paths: list[Path]) -> list[Path]:
    """Files as given; folders replaced by their PubMed XML files in name order."""
    result: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.name.endswith((".xml", ".xml.gz")) and p.is_file())
            if not found:
                log.warning("%s: no .xml or .xml.gz files in this folder", path)
            result.extend(found)
        else:
            result.append(path)  # a missing file becomes an error row, like any unreadable input
    return result


def run(args: argparse.Namespace) -> int:
    from etl.pubmed.parser import iter_records

    wanted = set(args.kind or KINDS)
    out = sys.stdout
    failed_files = 0
    for path in expand_inputs(args.files):
        counts = dict.fromkeys(KINDS, 0)
        for kind, row in iter_records(path, path.name):
            counts[kind] += 1
            if kind in wanted:
                out.write(json.dumps({"kind": kind, **row}, ensure_ascii=False, default=str))
                out.write("\n")
        log.info(
            "%s: %d articles, %d deletions, %d errors",
            path,
            counts["article"],
            counts["deletion"],
            counts["error"],
        )
        if counts["error"] and not (counts["article"] or counts["deletion"]):
            failed_files += 1
            log.error("%s: no record could be read", path)
    out.flush()
    return 1 if failed_files else 0
