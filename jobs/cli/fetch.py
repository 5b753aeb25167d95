"""``rexdrug fetch``: list or download (resumable, md5-verified) NLM baseline/update files.

Prints the local path of each file downloaded (or, with ``--list``, the file names on the server) to
stdout, one per line; progress and logs go to stderr.  Files named in ``--skip``/``--skip-from``
(e.g. the warehouse ledger's ingested files) and files already present and verified in ``--dest`` are
not downloaded again.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

log = logging.getLogger("rexdrug.fetch")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from etl.pubmed.nlm import DEFAULT_BASE_URL

    parser.add_argument("--kind", choices=("baseline", "update"), default="update", help="which NLM folder")
    parser.add_argument("--dest", type=Path, help="folder to download into (required unless --list)")
    parser.add_argument(
        "--base-url", default=DEFAULT_BASE_URL, help=f"NLM PubMed base URL (default {DEFAULT_BASE_URL})"
    )
    parser.add_argument("--limit", type=int, help="at most this many files (the first ones in load order)")
    parser.add_argument("--names", nargs="+", help="only these file names")
    parser.add_argument("--list", action="store_true", help="only list the files on the server")
    parser.add_argument("--skip", nargs="+", default=[], help="file names already ingested: not downloaded")
    parser.add_argument(
        "--skip-from", type=Path, help="text file with one already-ingested file name per line"
    )
    parser.add_argument("--retries", type=int, default=5, help="retries per request on 429/5xx/timeouts")
    parser.add_argument("--timeout", type=float, default=60.0, help="HTTP timeout in seconds")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _skip_names(args: argparse.Namespace) -> set[str]:
    names = set(args.skip)
    if args.skip_from is not None:
        if not args.skip_from.is_file():
            raise ValueError(f"--skip-from file not found: {args.skip_from}")
        names.update(line.strip() for line in args.skip_from.read_text().splitlines() if line.strip())
    return names


def run(args: argparse.Namespace) -> int:
    from etl.pubmed.nlm import NlmDownloadError, NlmFileClient

    if args.limit is not None and args.limit < 0:
        raise ValueError("--limit must be >= 0")
    if not args.list and args.dest is None:
        raise ValueError("--dest is required to download (or use --list)")
    skip = _skip_names(args)
    out = sys.stdout
    with NlmFileClient(
        args.base_url, timeout_s=args.timeout, max_retries=args.retries, progress=not args.no_progress
    ) as client:
        files = client.list_files(args.kind)
        if args.names:
            wanted = set(args.names)
            missing = wanted - {f.name for f in files}
            if missing:
                raise ValueError(f"not in the {args.kind} listing: {', '.join(sorted(missing))}")
            files = [f for f in files if f.name in wanted]
        if args.limit is not None:
            files = files[: args.limit]
        if args.list:
            for f in files:
                out.write(f"{f.name}\n")
            return 0
        failures = 0
        for f in files:
            try:
                path = client.download(f, args.dest, skip=skip)
            except NlmDownloadError as exc:
                failures += 1
                log.error("%s", exc)
                continue
            if path is not None:
                out.write(f"{path}\n")
                out.flush()
    log.info("%d file(s) processed, %d failed", len(files), failures)
    return 1 if failures else 0
